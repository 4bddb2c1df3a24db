"""Replay fixture files: apply their records in order, as they are read, all or nothing
per file.

Every record becomes operations (see `ingest`), carried out by `pipeline` through the
same service functions the CLI uses, each at its own receive time. Expectations
(`op: expect`, see `expect`) are checked as they come.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from cio_anon import service
from cio_anon.errors import CioAnonError
from cio_anon.ingest import Identify, Operation, Timed, Track
from cio_anon.ingest.fixtures import (
    Record,
    display_name,
    iter_records,
    refused_when_recorded,
    to_operations,
)
from cio_anon.replay import ahead
from cio_anon.replay.apply import (
    Heard,
    Listener,
    Observer,
    Problem,
    Source,
    Tally,
    apply_operation,
)
from cio_anon.replay.bulk import Batch, Call, fewer_collections
from cio_anon.store import Workspace


@dataclass
class ReplaySummary:
    files: list[str]
    tally: Tally = field(default_factory=Tally)
    invalid: list[Problem] = field(default_factory=list)
    rejected_files: list[str] = field(default_factory=list)
    stopped_at: dict[str, int] = field(default_factory=dict)
    """The line each rejected file stopped at (0: the file could not be read)."""
    refused_as_recorded: list[Problem] = field(default_factory=list)
    """Records the server refused when it recorded them (`fixtures.REFUSED`), not
    applied (with `retry_refused`: refused again): what happened then, never a fault
    of their file."""
    last_at: datetime | None = None

    @property
    def left_out(self) -> list[Problem]:
        """Every record of which nothing was applied: invalid now, then those refused
        when they were recorded."""
        return [*self.invalid, *self.refused_as_recorded]

    @property
    def ok(self) -> bool:
        return not self.invalid and not self.tally.failed_expectations


class _Rejected(Exception):
    def __init__(self, problem: Problem, as_recorded: bool = False) -> None:
        self.problem = problem
        self.as_recorded = as_recorded
        """The record was refused when it was recorded (and is not applied now)."""


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
    listener: Listener | None = None,
    bulk: bool = True,
    retry_refused: bool = False,
) -> ReplaySummary:
    """Apply fixture files in order. Without `keep_going` an invalid record rejects its
    whole file (the workspace keeps nothing of it); with it, only that record is
    skipped, and a file that cannot be read on (a gzip cut short) keeps what was read
    before the damage. Either way the invalid records are listed. A record the server
    refused when it recorded it (`fixtures.REFUSED`) is listed (`refused_as_recorded`),
    not applied, as the server applied nothing of it; with `retry_refused` (`check`,
    which judges every call by today's rules) it is applied apart, whole or not at all,
    and listed when it is refused again. `listener` is told of each track and identify
    applied, in order, with what it did: nothing of a record refused with --keep-going;
    of a file rejected, what was applied before it was (then undone).

    With `bulk`, runs of plain Data Pipelines calls take the bulk path (`batch`); the
    workspace, and what the listener hears, are the same either way."""
    paths = list(paths)
    summary = ReplaySummary(files=[display_name(p) for p in paths])
    # an archive's parts read ahead together; the calls as read, for a listener
    reader = ahead.Reader(paths, said=listener is not None) if bulk else None
    with (
        fewer_collections() if bulk else contextlib.nullcontext(),
        contextlib.closing(reader) if reader is not None else contextlib.nullcontext(),
    ):
        for path in paths:
            name = display_name(path)
            tally = Tally()
            context = _File(
                workspace, now, name, tally, summary, keep_going, listener, retry_refused
            )
            try:
                with workspace.savepoint():
                    _replay_file(context, path, progress, reader)
            except _Rejected as rejected:
                summary.invalid.append(rejected.problem)
                summary.rejected_files.append(name)
                summary.stopped_at[name] = rejected.problem.line
                summary.tally.records += tally.records
                continue
            summary.tally.add(tally)
            summary.refused_as_recorded += context.refused_as_recorded
            summary.last_at = _latest(summary.last_at, context.last_at)
    return summary


@dataclass
class _File:
    """One file's replay: where it goes, what it is called, what it has done."""

    workspace: Workspace
    now: datetime
    name: str
    tally: Tally
    summary: ReplaySummary
    keep_going: bool
    listener: Listener | None
    retry_refused: bool = False
    """Apply the records refused when they were recorded (else they are only listed)."""
    previous: datetime | None = None
    """The receive time of the last record read (control records without one)."""
    last_at: datetime | None = None
    """The latest receive time of a record applied (the summary's, once the file is)."""
    held: list[tuple[Source, Track | Identify, Heard]] | None = None
    """What is told of the record being applied, with --keep-going: told once it is
    applied whole (`_counted`)."""
    refused_as_recorded: list[Problem] = field(default_factory=list)
    """The file's records refused when they were recorded, not applied (the summary's,
    once the file is applied)."""

    @property
    def listening(self) -> bool:
        return self.listener is not None

    def tell(self, source: Source, call: Track | Identify, heard: Heard) -> None:
        """Tell the listener of a call applied (held until its record is, with
        --keep-going)."""
        if self.held is not None:
            self.held.append((source, call, heard))
        elif self.listener is not None:
            self.listener(source, call, heard)

    def _observer(self) -> Observer | None:
        """What the service tells of a call is told on, when someone listens."""
        return None if self.listener is None else self._observe

    def _observe(self, source: Source, op: Operation, result: Any) -> None:
        """The service's result of a track or an identify, told as what it did (`Heard`)."""
        if isinstance(op, Track | Identify):
            self.tell(source, op, Heard.of(result))

    def took(self, at: datetime | None) -> None:
        """A record is taken, in its place: the receive time of the control records
        after it that give none."""
        if at is not None:
            self.previous = at

    def applied(self, at: datetime | None) -> None:
        """A record is applied (by the service, or by the bulk path once it is written)."""
        self.tally.applied += 1
        self.last_at = _latest(self.last_at, at)

    def alone(self, call: Call, tally: Tally) -> None:
        """Apply one call of a recorded request through the service, alone, counting
        into `tally`: one the bulk path left to it, the request's others being the bulk
        path's. _Rejected when it is refused."""
        record = call.record
        try:
            if call.operation is not None:
                timed = Timed(call.at, call.operation)
            else:  # a plain call the bulk path met a case of the service's in
                timed = to_operations(record.parsed().value, call.at)[call.part]
            apply_operation(
                self.workspace, timed, Source(self.name, record.line), tally, self._observer()
            )
        except CioAnonError as error:
            raise self._refused(record, error) from None

    def whole(self, record: Record, body: Callable[[Tally], object]) -> bool:
        """With --keep-going: apply a record by `body` (the bulk path's, in pieces),
        whole or not at all; whether it was (a refused one is listed)."""
        try:
            with self._counted() as tally:
                body(tally)
        except _Rejected as rejected:
            self.summary.invalid.append(rejected.problem)
            return False
        return True

    def exact(self, record: Record) -> datetime | None:
        """Apply a record's operations through the service (not counted: see `applied`);
        their receive time. _Rejected when the record is invalid or refused, or when it
        was refused when it was recorded (as such; applied apart, whole or not at all,
        with `retry_refused`)."""
        if record.error is not None:
            raise _Rejected(Problem(self.name, record.line, record.error, unreadable=True))
        why = refused_when_recorded(record.value)
        if why is not None and not self.retry_refused:
            raise _Rejected(Problem(self.name, record.line, why), as_recorded=True)
        apart = why is not None
        try:
            with self._counted(apart) as tally:
                timed = to_operations(record.value, self.previous or self.now)
                observer = self._observer()
                for item in timed:
                    apply_operation(
                        self.workspace, item, Source(self.name, record.line), tally, observer
                    )
        except CioAnonError as error:
            raise self._refused(record, error, apart) from None
        return timed[-1].at if timed else None

    def _refused(self, record: Record, error: CioAnonError, as_recorded: bool = False) -> _Rejected:
        """What the service's refusal of a record says: its line, why, the rule's code."""
        problem = Problem(self.name, record.line, str(error), getattr(error, "rule", None))
        return _Rejected(problem, as_recorded)

    @contextlib.contextmanager
    def _counted(self, apart: bool = False) -> Iterator[Tally]:
        """What a record's operations count into. With --keep-going a refused record is
        undone whole, and so is what it counted and told: a savepoint, a tally of its
        own and what is told held back (`tell`), the tally added to the file's and what
        was told passed on when the block ends well (`check` hears nothing of a refused
        request). Without it a refused record rejects the whole file (one savepoint, one
        tally, both let go), but for one applied `apart`, which is undone alone."""
        if not (self.keep_going or apart):
            yield self.tally
            return
        tally = Tally()
        told: list[tuple[Source, Track | Identify, Heard]] = []
        outer, self.held = self.held, told
        try:
            with self.workspace.savepoint():
                yield tally
        finally:
            self.held = outer
        self.tally.add(tally)
        for call in told:
            self.tell(*call)


def _latest(one: datetime | None, other: datetime | None) -> datetime | None:
    """The later of two receive times, either of which may be missing."""
    if one is None or (other is not None and other > one):
        return other
    return one


def _replay_file(
    file: _File, path: Path, progress: Progress | None, reader: ahead.Reader | None
) -> None:
    """Apply one file's records as they are read (memory does not grow with the file):
    with a `reader`, runs of plain calls in bulk; without, every record by the service."""
    tally = file.tally
    batch = None if reader is None else Batch(file.workspace, file.name, tally, file)
    try:
        records = ((r, None) for r in iter_records(path)) if reader is None else reader.read(path)
        try:
            for record, calls in records:
                tally.records += 1
                if progress is not None:
                    progress(record.size)
                taken = None if batch is None else batch.take(record, calls)
                if taken is not None:
                    file.took(taken)  # the batch says when it is applied
                    continue
                try:
                    if batch is not None:
                        batch.flush()
                    at = file.exact(record)
                    file.took(at)
                    file.applied(at)
                except _Rejected as rejected:
                    if rejected.as_recorded:
                        file.refused_as_recorded.append(rejected.problem)
                        continue
                    if not file.keep_going:
                        raise
                    file.summary.invalid.append(rejected.problem)
            if batch is not None:
                batch.flush()
        except _Rejected:
            tally.records += _rest(records)  # all are reported, not applied
            raise
    except CioAnonError as error:  # the file cannot be read on
        if batch is not None:  # what was read before it, applied as one call at a time
            batch.flush()  # applies it (a call refused there is what rejects the file)
        why = str(error).removeprefix(f"{path}: ")
        damaged = Problem(file.name, 0, why, unreadable=True)
        if not file.keep_going or not tally.records:
            raise _Rejected(damaged) from None
        file.summary.invalid.append(damaged)  # going on: what was read stays applied
        return
    if not tally.records:
        tally.notes.append(Problem(file.name, 0, "the file holds no records"))


def _rest(records: Iterator[object]) -> int:
    """How many records are left to read, up to where the file cannot be read on (the
    record refused before it is what rejects the file)."""
    count = 0
    with contextlib.suppress(CioAnonError):
        for _ in records:
            count += 1
    return count
