"""The store: the workspace file and every SQL statement cio-anon runs on it (audit's
set-based SQL over exports aside). One module per family of tables, each a class over
`base.Store`; `Workspace` joins them. The store knows the domain's types (`models`,
`rules`) and nothing above them: not how calls are read (`ingest`), not the service."""

from cio_anon.store.base import JournalRow, journal_row, remove_workspace_files
from cio_anon.store.events import PURGED_NAME
from cio_anon.store.journal import JournalEntry, JournalRewrite
from cio_anon.store.log import LogFilter, activity_row
from cio_anon.store.workspace import Workspace

__all__ = [
    "PURGED_NAME",
    "JournalEntry",
    "JournalRewrite",
    "JournalRow",
    "LogFilter",
    "Workspace",
    "activity_row",
    "journal_row",
    "remove_workspace_files",
]
