"""`cio-anon demo`: the bundled shopper scenario, replayed into a fresh workspace."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from pathlib import Path

from cio_anon import service
from cio_anon.errors import WorkspaceError
from cio_anon.replay import ReplaySummary, replay_into

SCENARIO = "shopper.ndjson"
SHOPPER = "cust-1042"
"""The person the scenario identifies; the demo shows her profile."""


@dataclass
class DemoResult:
    summary: ReplaySummary
    log: service.LogPage
    profile: service.Profile
    path: Path


@contextlib.contextmanager
def workspace_path(db: Path | None) -> Iterator[Path]:
    """Where the demo writes: `db` if given (it must not exist yet), else a temp file."""
    if db is not None:
        if db.exists():
            raise WorkspaceError(
                f"{db} already exists; the demo writes a fresh workspace, so give a new path."
            )
        yield db
        return
    with tempfile.TemporaryDirectory(prefix="cio-anon-demo-") as folder:
        yield Path(folder) / "demo.db"


def run(path: Path, now: datetime, show_at: datetime | None = None) -> DemoResult:
    """Replay the scenario into `path`; read the log and the profile as of `show_at`
    (default: the time of the scenario's last record)."""
    with resources.as_file(resources.files("cio_anon") / "scenarios" / SCENARIO) as scenario:
        summary = replay_into(path, now, [scenario])
    when = show_at or summary.last_at or now
    with service.opened(path, when, write=False) as workspace:
        log = service.activity_log(workspace, when, limit=30)
        profile = service.show(workspace, when, identifier=SHOPPER)
    return DemoResult(summary, log, profile, path)
