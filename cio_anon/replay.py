"""Replay fixture files: apply their records in order, as they are read, all or nothing
per file.

Every record becomes operations (see `ingest`), carried out by `pipeline` through the
same service functions the CLI uses, each at its own receive time. Expectations
(`op: expect`, see `expect`) are checked as they come.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from cio_anon import service
from cio_anon.errors import CioAnonError
from cio_anon.ingest import (
    Timed,
)
from cio_anon.ingest.fixtures import Record, display_name, iter_records, to_operations
from cio_anon.pipeline import Observer, Problem, Source, Tally, apply_operation
from cio_anon.workspace import Workspace


@dataclass
class ReplaySummary:
    files: list[str]
    tally: Tally = field(default_factory=Tally)
    invalid: list[Problem] = field(default_factory=list)
    rejected_files: list[str] = field(default_factory=list)
    stopped_at: dict[str, int] = field(default_factory=dict)
    """The line each rejected file stopped at (0: the file could not be read)."""
    last_at: datetime | None = None

    @property
    def ok(self) -> bool:
        return not self.invalid and not self.tally.failed_expectations


class _Rejected(Exception):
    def __init__(self, problem: Problem) -> None:
        self.problem = problem


class _NothingApplied(Exception):
    """Raised to undo the creation of a workspace that a replay put nothing into."""

    def __init__(self, summary: ReplaySummary) -> None:
        self.summary = summary


Progress = Callable[[int], None]


def replay_into(
    path: Path,
    now: datetime,
    files: Iterable[Path],
    *,
    keep_going: bool = False,
    progress: Progress | None = None,
) -> ReplaySummary:
    """Replay files into the workspace at `path`, creating it if needed; a workspace
    that did not exist and that the replay put nothing into is not left behind."""
    try:
        with service.opened(path, now, write=True) as workspace:
            summary = replay(workspace, now, files, keep_going=keep_going, progress=progress)
            if workspace.created and summary.tally.applied == 0:
                raise _NothingApplied(summary)
    except _NothingApplied as nothing:
        return nothing.summary
    return summary


def replay(
    workspace: Workspace,
    now: datetime,
    paths: Iterable[Path],
    *,
    keep_going: bool = False,
    progress: Progress | None = None,
    observer: Observer | None = None,
) -> ReplaySummary:
    """Apply fixture files in order. Without `keep_going` an invalid record rejects its
    whole file (the workspace keeps nothing of it); with it, only that record is
    skipped. Either way the invalid records are listed."""
    paths = list(paths)
    summary = ReplaySummary(files=[display_name(p) for p in paths])
    for path in paths:
        name = display_name(path)
        tally = Tally()
        try:
            with workspace.savepoint():
                _replay_file(
                    workspace, now, path, name, tally, summary, keep_going, progress, observer
                )
        except _Rejected as rejected:
            summary.invalid.append(rejected.problem)
            summary.rejected_files.append(name)
            summary.stopped_at[name] = rejected.problem.line
            summary.tally.records += tally.records
            continue
        summary.tally.add(tally)
    return summary


def _replay_file(
    workspace: Workspace,
    now: datetime,
    path: Path,
    name: str,
    tally: Tally,
    summary: ReplaySummary,
    keep_going: bool,
    progress: Progress | None,
    observer: Observer | None,
) -> None:
    """Apply one file's records as they are read (memory does not grow with the file)."""
    previous: datetime | None = None
    try:
        records = iter_records(path)
        for record in records:
            tally.records += 1
            if progress is not None:
                progress(record.size)
            try:
                timed = _apply_record(
                    workspace, now, record, previous, name, tally, keep_going, observer
                )
            except _Rejected as rejected:
                if not keep_going:
                    tally.records += sum(1 for _ in records)  # all are reported, not applied
                    raise
                summary.invalid.append(rejected.problem)
                continue
            tally.applied += 1
            previous = timed[-1].at if timed else previous
            summary.last_at = max(filter(None, (summary.last_at, previous)), default=None)
    except CioAnonError as error:  # the file cannot be read
        raise _Rejected(Problem(name, 0, str(error).removeprefix(f"{path}: "))) from None
    if not tally.records:
        tally.notes.append(Problem(name, 0, "the file holds no records"))


def _apply_record(
    workspace: Workspace,
    now: datetime,
    record: Record,
    previous: datetime | None,
    name: str,
    tally: Tally,
    keep_going: bool,
    observer: Observer | None,
) -> list[Timed]:
    """One record's operations, applied; _Rejected when it is invalid or refused."""
    if record.error is not None:
        raise _Rejected(Problem(name, record.line, record.error))
    try:
        # Without --keep-going the whole file is one savepoint: a failed record rejects
        # all of it, so it needs none of its own.
        with workspace.savepoint() if keep_going else contextlib.nullcontext():
            timed = to_operations(record.value, previous or now)
            for item in timed:
                apply_operation(workspace, item, Source(name, record.line), tally, observer)
    except CioAnonError as error:
        raise _Rejected(
            Problem(name, record.line, str(error), getattr(error, "rule", None))
        ) from None
    return timed
