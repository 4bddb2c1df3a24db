"""Opening a workspace for one command, creating it, and its settings."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from cio_anon import rules
from cio_anon.errors import WorkspaceError
from cio_anon.ingest import ChangeSettings
from cio_anon.models import Settings
from cio_anon.service.shared import journal
from cio_anon.store import Workspace, remove_workspace_files


@contextlib.contextmanager
def opened(
    path: Path, now: datetime, *, write: bool, initial: Settings | None = None
) -> Iterator[Workspace]:
    """Open the workspace for one command, in one transaction.

    A write creates the file when it is missing (with the `initial` settings, by
    default created now); if the command then fails the new file is removed again,
    so bad input never leaves a workspace behind — unless another process has
    recorded something in it meanwhile. Any failure rolls the transaction back, so
    nothing is half-written.
    """
    if initial is None:
        initial = Settings(created_at=now, anonymous_merge=rules.default_anonymous_merge(now))
    workspace = Workspace.open(path, create=write, initial=initial)
    created = workspace.created
    try:
        with workspace.transaction(write=write):
            yield workspace
    except BaseException:
        workspace.close()
        if created:
            Workspace.discard(path)
        raise
    workspace.close()


def init_workspace(
    path: Path, now: datetime, *, created_at: datetime | None, force: bool
) -> Settings:
    """Create a workspace; with `force`, replace an existing one."""
    if path.exists():
        if not force:
            raise WorkspaceError(
                f"A workspace already exists at {path}: use --force to replace it."
            )
        Workspace.open(path, create=False).close()  # refuse to delete a file that is not ours
        remove_workspace_files(path)
    settings = Settings(
        created_at=created_at or now,
        anonymous_merge=rules.default_anonymous_merge(created_at or now),
    )
    with opened(path, now, write=True, initial=settings):
        pass
    return settings


def update_settings(
    workspace: Workspace,
    now: datetime,
    *,
    anonymous_merge: bool | None = None,
    created_at: datetime | None = None,
) -> Settings:
    """Show the settings, changing what is given. A new creation date without an
    explicit merge setting brings that date's default with it."""
    settings = workspace.settings()
    if created_at is not None and anonymous_merge is None:
        anonymous_merge = rules.default_anonymous_merge(created_at)
    changed = Settings(
        created_at=created_at or settings.created_at,
        anonymous_merge=settings.anonymous_merge if anonymous_merge is None else anonymous_merge,
    )
    if changed != settings:
        workspace.save_settings(changed)
        journal(workspace, now, ChangeSettings(changed.anonymous_merge, changed.created_at))
    return changed
