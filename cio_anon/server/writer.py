"""The one thread that touches the workspace, with group commit.

Requests are parsed on the event loop, then their operations are queued here. The
writer applies whatever is queued in one transaction: the plain tracks and
identifies of a run of requests with replay's bulk path, each other call of them alone
between its runs (`Writer._bulk`: session traffic, server libraries' batches); every
other job in a savepoint, each operation of it in its own, so one bad operation undoes
only itself (or, for an atomic job, only its job), whatever it raised. The `--record`
lines of a group are written and flushed before the commit, and cut off again if the
commit fails: a request is recorded as it was stored, what it had refused marked so
(`fixtures.REFUSED`).
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from cio_anon import jsonio, rules
from cio_anon.errors import CioAnonError, InvalidInput
from cio_anon.ingest import Identify, Operation, Timed, Track
from cio_anon.ingest.fixtures import REFUSED, Record
from cio_anon.models import Settings
from cio_anon.present import words
from cio_anon.replay import bulk
from cio_anon.replay.apply import Source, Tally, apply_operation
from cio_anon.store import Workspace
from cio_anon.streams import write_all

GROUP_SIZE = 256
"""At most this many jobs share one transaction."""


_REQUEST = Record(0)
"""What the bulk path's calls of a request are read from (a request has no line: its
events' source is the request alone)."""


class InternalError(CioAnonError):
    """Something failed that is not the request's fault; that request alone gets a 500."""

    status = 500


class NotRecorded(CioAnonError):
    """The `--record` file could not be written: nothing of the group was stored."""

    status = 503


@dataclass(frozen=True)
class Call:
    """A request as `--record` writes it: replaying its lines applies what was applied,
    and refuses again what was refused."""

    at: datetime
    method: str
    target: str
    body: Any
    batch: bool = False
    """The body is a batch whose items stand alone (`batch` of a Data Pipelines or Track
    API v2 batch): each item is recorded as it fared."""
    refused: str | None = None
    """Why the request was refused whole (before its items were applied)."""

    def records(self, stored: set[int], refused: dict[int, str]) -> list[tuple[bool, Any]]:
        """The fixture records of the request, in its order, each with whether it was
        stored: the request stored, or refused with why (`fixtures.REFUSED`); a batch
        as runs of the items stored, between the items refused, each a batch of its
        own. An item neither stored nor refused (it asked for nothing) goes with the
        stored ones beside it; nothing stored, nothing refused: no record."""
        head = {"at": self.at.isoformat(), "method": self.method, "path": self.target}
        if self.refused is not None:
            return [(False, {**head, "body": self.body, REFUSED: self.refused})]
        body = self.body
        entries = body.get("batch") if self.batch and isinstance(body, dict) else None
        if not isinstance(entries, list):  # one item
            if 0 in refused:
                return [(False, {**head, "body": body, REFUSED: refused[0]})]
            return [(True, {**head, "body": body})] if stored else []
        records: list[tuple[bool, Any]] = []
        run: list[Any] = []
        kept = False  # the run holds an item stored
        for index, entry in enumerate(entries):
            if index not in refused:
                run.append(entry)
                kept = kept or index in stored
                continue
            if kept:
                records.append((True, {**head, "body": {**body, "batch": run}}))
            run, kept = [], False
            alone = {**head, "body": {**body, "batch": [entry]}, REFUSED: refused[index]}
            records.append((False, alone))
        if kept:
            records.append((True, {**head, "body": {**body, "batch": run}}))
        return records


@dataclass
class Job:
    """Work for the writer: operations to apply (each its own outcome), or a query.

    `atomic`: any refused operation undoes the whole job. `call`: the request, recorded
    as it fared (`Call.records`); `refused` are the batch items refused before they got
    here, with why. `items`: the request item each operation came from (an item's
    operations are stored all or none)."""

    operations: list[Timed] = field(default_factory=list)
    source: Source = Source("serve")
    atomic: bool = False
    call: Call | None = None
    refused: dict[int, CioAnonError] = field(default_factory=dict)
    items: list[int] | None = None
    query: Callable[[Workspace], Any] | None = None
    done: Future[Any] = field(default_factory=Future)

    @property
    def item_of(self) -> list[int]:
        """Each operation's item (without `items`, each operation is an item)."""
        return self.items if self.items is not None else list(range(len(self.operations)))


@dataclass(frozen=True)
class _Plain:
    """A job the bulk path takes: its calls, and its `--record` lines if all of it is
    stored."""

    job: Job
    calls: list[bulk.Call]
    lines: list[str]


class _Undone(Exception):
    """Raised inside a job's savepoint to roll the job back."""

    def __init__(self, result: list[CioAnonError | None] | CioAnonError) -> None:
        self.result = result


class RecordFile:
    """The `--record` file: appended to (unbuffered) before each commit, cut back when
    the group is not stored."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    @classmethod
    def open(cls, path: Path) -> RecordFile:
        """Open for appending, readable by its owner only; a symlink is refused (the
        record holds every payload sent, which may be personal data)."""
        if path.name.endswith(".gz"):  # lines are appended and cut back, never compressed
            raise InvalidInput(
                f"The record {path} is named as gzipped, but it is written as NDJSON lines: "
                "give a name without .gz (and gzip it once serve has stopped)."
            )
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
        try:
            return cls(os.open(path, flags, 0o600))
        except FileNotFoundError:
            raise InvalidInput(f"Cannot write the record {path}: no such folder.") from None
        except OSError as error:
            if path.is_symlink():
                raise InvalidInput(f"The record {path} is a symbolic link: give a file.") from None
            raise InvalidInput(f"Cannot write the record {path}: {error.strerror}.") from None

    def size(self) -> int:
        try:
            return os.lseek(self.fd, 0, os.SEEK_END)
        except OSError:
            return 0

    def write(self, lines: list[str]) -> None:
        """Append the lines, all or none (raises OSError when they could not be)."""
        data = "".join(lines).encode()
        size = self.size()
        try:
            write_all(self.fd, data)
        except OSError:
            self.cut(size)
            raise

    def cut(self, size: int) -> None:
        """Cut the file back to `size`. A file that cannot be cut (a device) keeps what
        reached it; nothing more can be done."""
        with contextlib.suppress(OSError):
            os.ftruncate(self.fd, size)

    def close(self) -> None:
        os.close(self.fd)


class Writer(threading.Thread):
    """The one thread that touches the workspace."""

    def __init__(
        self,
        db: Path,
        now: datetime,
        record: RecordFile | None = None,
        *,
        create: bool = True,
        lock_seconds: float | None = None,
        decisions: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__(name="cio-anon-writer", daemon=True)
        self.jobs: queue.Queue[Job | None] = queue.Queue()
        self.record = record
        self.workspace = Workspace.open(
            db,
            create=create,
            initial=Settings(created_at=now, anonymous_merge=rules.default_anonymous_merge(now)),
            threaded=True,
        )
        if lock_seconds is not None:
            self.workspace.wait_for_locks(lock_seconds)
        self.decisions = decisions
        self.said: list[str] = []
        """The decisions of the group being applied, told once it is stored."""

    def submit(self, job: Job) -> Future[Any]:
        self.jobs.put(job)
        return job.done

    def stop(self) -> None:
        self.jobs.put(None)
        self.join()
        self.workspace.close()

    def run(self) -> None:
        stopping = False
        while not stopping:
            first = self.jobs.get()
            if first is None:
                return
            group = [first]
            while len(group) < GROUP_SIZE:
                try:
                    job = self.jobs.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    stopping = True
                    break
                group.append(job)
            self._apply(group)

    def _apply(self, group: list[Job]) -> None:
        lines: list[str] = []
        size = None if self.record is None else self.record.size()
        try:
            with self.workspace.transaction():
                results = self._jobs(group, lines)
                if self.record is not None:
                    try:
                        self.record.write(lines)
                    except OSError as error:
                        raise NotRecorded(
                            f"The record file could not be written ({error.strerror}); "
                            "nothing was stored."
                        ) from None
        except BaseException as error:  # the group failed as a whole: so did every job
            if self.record is not None and size is not None and lines:
                self.record.cut(size)
            self.said.clear()
            failure = error if isinstance(error, CioAnonError) else _internal(error)
            for job in group:
                job.done.set_exception(failure)
            return
        if self.decisions is not None:
            for line in self.said:
                self.decisions(line)
            self.said.clear()
        for job, result in zip(group, results, strict=True):
            if isinstance(result, BaseException):
                job.done.set_exception(result)
            else:
                job.done.set_result(result)

    def _jobs(self, group: list[Job], lines: list[str]) -> list[Any]:
        """Each job's outcomes, or the error that undid it, in order: a run of jobs from
        one source that the bulk path can take (`_in_bulk`) in bulk (`_bulk`), every
        other job a call at a time (`_job`)."""
        results: list[Any] = []
        plain: list[_Plain] = []
        for job in group:
            # (decisions are said from the service's results, which the bulk path does
            # not make: while they are told, every call goes to the service)
            taken = None if self.decisions is not None else _in_bulk(job)
            if plain and (taken is None or job.source != plain[0].job.source):
                results += self._bulk(plain, lines)
                plain = []
            if taken is not None:
                plain.append(taken)
            else:
                results.append(self._job(job, lines))
        return results + (self._bulk(plain, lines) if plain else [])

    def _bulk(self, jobs: list[_Plain], lines: list[str]) -> list[Any]:
        """Apply jobs with replay's bulk path, leaving the workspace one call at a time
        leaves (tests/test_serve_bulk.py holds them equal): their plain calls in runs,
        each call the bulk path leaves to the service alone (`_calls`). If it fails,
        what it did is undone and each job goes to `_job`."""
        try:
            with self.workspace.savepoint():
                outcomes = self._calls(jobs)
        except Exception:  # noqa: BLE001 — each job is applied alone, with its own outcome
            return [self._job(plain.job, lines) for plain in jobs]
        for plain, done in zip(jobs, outcomes, strict=True):
            job = plain.job
            if job.call is None:
                continue
            if any(done):  # recorded as each item fared
                pairs = zip(job.item_of, done, strict=True)
                lines += _lines(job.call, job, done, {item for item, no in pairs if no is None})
            else:
                lines += plain.lines
        return outcomes

    def _calls(self, jobs: list[_Plain]) -> list[list[CioAnonError | None]]:
        """Apply the jobs' calls in order: runs of plain calls with the bulk path (up to
        one it leaves to the service), each call for the service alone, as an item of
        its own (`_operation`); each job's outcomes."""
        file = jobs[0].job.source.file
        calls = [call for plain in jobs for call in plain.calls]
        where = [
            (index, place) for index, plain in enumerate(jobs) for place in range(len(plain.calls))
        ]
        outcomes: list[list[CioAnonError | None]] = [[None] * len(p.calls) for p in jobs]

        def alone(at: int) -> None:
            index, place = where[at]
            job = jobs[index].job
            outcomes[index][place] = self._operation(job.operations[place], job.source)

        bulk.in_runs(calls, lambda run: bulk.apply_calls(self.workspace, run, file), alone)
        return outcomes

    def _job(self, job: Job, lines: list[str]) -> Any:
        """One job in its own savepoint: its outcomes, or the error that undid it."""
        said = len(self.said)
        result: Any
        try:
            with self.workspace.savepoint():
                if job.query is not None:
                    query = job.query
                    answer = _guarded(lambda: query(self.workspace))
                    if isinstance(answer, CioAnonError):
                        raise _Undone(answer)
                    return answer
                outcomes, stored = self._items(job)
                if job.atomic and any(outcomes):
                    raise _Undone(outcomes)
                if job.call is not None:
                    lines += _lines(job.call, job, outcomes, stored)
                return outcomes
        except _Undone as undone:
            result = undone.result
            if job.call is not None and isinstance(result, list):  # an atomic job, refused
                index, why = next(
                    (i, e) for i, e in zip(job.item_of, result, strict=True) if e is not None
                )
                whole = replace(job.call, refused=refusal(index, why, job.call.batch))
                lines += _lines(whole, job, [], set())
        except CioAnonError as error:
            result = error
        del self.said[said:]  # undone: nothing of it is told
        return result

    def _items(self, job: Job) -> tuple[list[CioAnonError | None], set[int]]:
        """Apply the job's operations item by item, each item in a savepoint of its own
        (one refused operation undoes its item's others): each operation's outcome, and
        the items stored."""
        outcomes: list[CioAnonError | None] = []
        stored: set[int] = set()
        for item, group in itertools.groupby(
            zip(job.item_of, job.operations, strict=True), key=lambda pair: pair[0]
        ):
            said = len(self.said)
            try:
                with self.workspace.savepoint():
                    done = [self._operation(timed, job.source) for _, timed in group]
                    if any(done):
                        raise _Undone(done)
                stored.add(item)
            except _Undone as undone:
                assert isinstance(undone.result, list)
                done = undone.result
                del self.said[said:]
            outcomes += done
        return outcomes, stored

    def _operation(self, timed: Timed, source: Source) -> CioAnonError | None:
        """Apply one operation in its own savepoint; what refused it, if anything."""
        outcome = _guarded(lambda: self._apply_one(timed, source))
        return outcome if isinstance(outcome, CioAnonError) else None

    def _apply_one(self, timed: Timed, source: Source) -> None:
        with self.workspace.savepoint():
            # A fresh tally: the server keeps no notes (an alias note per request would
            # grow without end).
            observer = None if self.decisions is None else self._observe
            apply_operation(self.workspace, timed, source, Tally(), observer)

    def _observe(self, source: Source, op: Operation, result: Any) -> None:
        name = (
            op.name if isinstance(op, Track) else op.identifier if isinstance(op, Identify) else ""
        )
        self.said.append(words.decision_line(name, result))


class Reader:
    """Reads (the inspection API, the pages) on a connection of their own, in a thread of
    their own: WAL lets them see what was committed while the writer works or another
    process holds the lock, so they never wait behind writes."""

    def __init__(self, db: Path) -> None:
        self.db = db
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cio-anon-reader")
        self.workspace: Workspace | None = None

    def submit(self, query: Callable[[Workspace], Any]) -> Future[Any]:
        return self.pool.submit(self._read, query)

    def _read(self, query: Callable[[Workspace], Any]) -> Any:
        if self.workspace is None:  # opened in this thread, after the writer made the file
            self.workspace = Workspace.open(self.db, create=False, threaded=True)
        workspace = self.workspace
        with workspace.transaction(write=False):
            answer = _guarded(lambda: query(workspace))
        if isinstance(answer, CioAnonError):
            raise answer
        return answer

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        if self.workspace is not None:
            self.workspace.close()


def _in_bulk(job: Job) -> _Plain | None:
    """The job as the bulk path takes it (`bulk.request_calls`), when it can: a request
    with plain tracks and identifies among its calls (session traffic, server libraries'
    batches, a `group` among them), each item of it one call (each stands or falls
    alone), that can be recorded stored. Not an atomic job: one refused call undoes it."""
    if job.query is not None or job.atomic or not job.operations:
        return None
    if len(set(job.item_of)) < len(job.operations):
        return None
    try:
        calls = bulk.request_calls(_REQUEST, job.operations)
        if all(bulk.for_service(call) for call in calls):
            return None  # nothing for the bulk path
        recorded = (
            [] if job.call is None else _lines(job.call, job, [None] * len(calls), set(job.item_of))
        )
    except Exception:  # noqa: BLE001 — refused (a limit, unrecordable), or worse: `_job`
        return None  # applies it alone and says what refused it, for that job only
    return _Plain(job, calls, recorded)


def _lines(
    call: Call, job: Job, outcomes: list[CioAnonError | None], stored: set[int]
) -> list[str]:
    """The request's `--record` lines: the stored items' (_Undone when they cannot be
    written, as nothing may be stored that is not recorded), and the refused items'
    with why (left out when they cannot be written: nothing of them was stored)."""
    refused: dict[int, str] = {}
    if call.refused is None:  # the items fared each their own way
        refused = {i: refusal(i, error, call.batch) for i, error in job.refused.items()}
        for index, outcome in zip(job.item_of, outcomes, strict=True):
            if outcome is not None and index not in stored:
                refused.setdefault(index, refusal(index, outcome, call.batch))
    lines = []
    for was_stored, record in call.records(stored, refused):
        line = _guarded(functools.partial(jsonio.dumps, record))
        if not isinstance(line, CioAnonError):
            lines.append(line + "\n")
        elif was_stored:
            raise _Undone(InvalidInput(f"{line} It cannot be recorded, so nothing was stored."))
    return lines


def refusal(index: int | None, error: CioAnonError, batch: bool) -> str:
    """Why a request, or an item of a batch, was refused, as the access log and the
    record say it: a batch item's sentence names it."""
    said = str(error)
    if batch and index is not None and f"item {index} " not in said:
        return f"batch item {index}: {said}"
    return said


def _guarded(work: Callable[[], Any]) -> Any:
    """Run `work`; a failure becomes the error to answer with, never an exception that
    would undo the neighbours."""
    try:
        return work()
    except CioAnonError as error:
        return error
    except RecursionError:
        return InvalidInput("The request is nested too deeply to be handled.")
    except (TypeError, ValueError) as error:  # JSON that orjson will not write back
        return InvalidInput(f"The request cannot be stored as JSON ({error}).")
    except Exception as error:  # noqa: BLE001 (any other bug is that request's 500 only)
        return _internal(error)


def _internal(error: BaseException) -> InternalError:
    return InternalError(f"internal error: {type(error).__name__}")
