"""The workspace: one class over every family of tables (each in its own module)."""

from __future__ import annotations

from cio_anon.store.anonymous import AnonymousTables
from cio_anon.store.events import EventTables
from cio_anon.store.journal import JournalTables
from cio_anon.store.log import LogTables
from cio_anon.store.things import ThingTables


class Workspace(LogTables, EventTables, AnonymousTables, ThingTables, JournalTables):
    """An open workspace file: `Store` (opening, transactions, settings, the journal's
    buffer) with the statements of every table. The log's tables come with the people's
    (`LogTables` names people)."""
