"""Reading ahead: a replay's records read, and their plain calls checked, in a second
process while this one applies them.

Reading a line and checking its calls (`bulk.plain_records`) is about a third of a
replay's time, and needs nothing from the workspace: `plain` is pure. So when this
process may run on two CPUs and a replay's files hold at least `AHEAD_BYTES` of lines
together (a gzipped file counted by the lines it holds; standard input is read here),
one child process reads them all, in order, and sends each file's records, then how the
file ended, over a pipe, in lots of `LOT` records: an archive of many small parts is
read ahead as one large file is, and the next part is read while the last runs of one
are written. A thread here takes the lots off the pipe as they come, `IN_HAND` at most,
so the child reads on while a run is written, and memory stays bounded. A record travels
as its fields and its calls' fields (strings, datetimes, small dicts: quick to pickle,
where a dataclass is not; only a call left to the service, a group in a batch, carries
its operation, a dataclass — and every plain call too when a replay's listener is told
the calls as read, `check`'s: `SAID`), a plain one without its parsed value (its line
is kept, to be read again if the service takes it). The replay sees the same records
with the same calls, in the same order, either way; `tests/test_ahead.py` holds the two
readers equal.

The child is the same Python running `main` (`command`, this `cio_anon` first on its
path): nothing of this process, its workspace or its threads is copied into it, and
no script of the caller's is run again in it (as `multiprocessing` would). It writes
each lot to its standard output as a length and a pickle. When the replay stops reading
early (Ctrl-C) the child is stopped; a file let go before its end (`Reader`) has the
rest of its messages passed over. When the replay is killed, the child's next write finds
the pipe closed, and it ends. If the child ends before the files do (it could not start,
or was killed), the rest of the file it was reading, and every file after it, is read
here.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pickle
import queue
import signal
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import cio_anon
from cio_anon.errors import CioAnonError, InvalidInput
from cio_anon.ingest.fixtures import STDIN, Record
from cio_anon.replay.bulk import Call, fewer_collections, packed, plain_records
from cio_anon.streams import write_all

AHEAD_BYTES = 16 * 2**20
"""The fewest bytes of lines a replay's files hold together for them to be read ahead
(when this process may run on two CPUs or more: `_cpus`). Starting the child takes under
0.1 s; reading ahead saves about 8 µs a record, so less would gain less than half a
second: not worth a second process."""

LOT = 2_000
"""Records sent together (fewer when they hold more than `LOT_BYTES`)."""

LOT_BYTES = 2 * 2**20

IN_HAND = 8
"""Lots received and not yet replayed, at most: about 16,000 records, 16 MiB of lines."""

PIPE_BYTES = 2**20
"""The pipe's room (64 KiB by default): 1 MiB, what Linux lets any process ask for
unless its `/proc/sys/fs/pipe-max-size` says otherwise."""

_GZIP_SMALLEST = 18
"""The fewest bytes a gzip file has: a header of 10, a trailer of 8."""

_LENGTH = struct.Struct("<Q")
"""A message's length before it: its pickle's bytes."""

Read = Iterator[tuple[Record, list[Call] | None]]


def read(path: Path, *, ahead: bool | None = None, said: bool = False) -> Read:
    """One file's records, each with its calls when it is plain (`bulk.plain_records`,
    told `said`): read ahead in a second process when the file is large (`AHEAD_BYTES`)
    and two CPUs are to be had (`_cpus`), or when `ahead` says so; else here."""
    reader = Reader([path], ahead=ahead, said=said)
    try:
        yield from reader.read(path)
    finally:
        reader.close()


class Reader:
    """The records of a replay's files, file by file, in the order given: all read ahead
    by one second process when together they hold `AHEAD_BYTES` of lines or more (or
    when `ahead` says so), so that an archive of many small parts is read ahead too, and
    the next file is read while the last runs of one are written; else here. Standard
    input is always read here. `close` stops the second process. With `said` plain calls
    keep their operations (`bulk.Call.said`: a replay's listener is told them)."""

    def __init__(
        self, paths: Sequence[Path], *, ahead: bool | None = None, said: bool = False
    ) -> None:
        self.paths = [path for path in paths if path != STDIN and path.is_file()]
        """The files the second process reads, in order: not standard input, nor a pipe
        (`<(zcat …)`: the second process could not open this one's), nor a file that is
        not there (read here, which says so)."""
        if ahead is None:
            ahead = (
                bool(sys.executable) and sum(map(_size, self.paths)) >= AHEAD_BYTES and _cpus() >= 2
            )
        self.ahead = ahead and bool(self.paths)
        self.said = said
        self.receiver: _Receiver | None = None
        self.given = 0
        """The files handed out so far (`read`) of those the second process reads."""
        self.sent = 0
        """The files whose last message (how the file ended) has come."""
        self.gone = False
        """The second process could not start or ended early: the rest is read here."""

    def read(self, path: Path) -> Read:
        """The next file's records (the files are read in the order given)."""
        index = self.given
        if not self.ahead or index == len(self.paths) or self.paths[index] != path:
            return plain_records(path, self.said)  # (standard input, a pipe)
        self.given += 1
        return self._records(index, path)

    def _records(self, index: int, path: Path) -> Read:
        self._skip(index)  # what is left of a file whose reader was let go early
        given = 0
        while not self.gone:
            kind, payload = self._next()
            if kind == "records":
                for *fields, calls in payload:
                    record = Record(*fields)
                    given += 1
                    yield record, None if calls is None else [Call(record, *c) for c in calls]
                continue
            self.sent += kind != "gone"
            if kind == "unreadable":
                raise InvalidInput(payload)
            if kind == "end":
                return
        yield from itertools.islice(plain_records(path, self.said), given, None)

    def close(self) -> None:
        """Stop the second process (done, or its records are not wanted) and its thread."""
        if self.receiver is not None:
            self.receiver.stop()
            self.receiver = None
        self.gone = True

    def _skip(self, index: int) -> None:
        """Take the messages of the files before `index` that were not read to their end."""
        while self.sent < index and not self.gone:
            kind, _ = self._next()
            self.sent += kind in ("end", "unreadable")

    def _next(self) -> tuple[str, Any]:
        """The second process's next message (started at the first); ("gone", None) once
        it cannot start or has ended early."""
        if self.receiver is None and not self.gone:
            self.receiver = _start(self.paths, self.said)
        if self.receiver is None:
            self.gone = True
            return "gone", None
        body = self.receiver.lots.get()
        if body is None:
            self.gone = True
            return "gone", None
        try:
            message: tuple[str, Any] = pickle.loads(body)  # noqa: S301 (our own child's pickles)
        except Exception:  # not one of the child's messages: something else wrote to its pipe
            self.close()  # as if it were gone: the rest is read here
            return "gone", None
        return message


def _cpus() -> float:
    """The CPUs this process may run on (fewer than the machine's under `taskset` or in a
    container given a cpuset), or fewer still when its cgroup allows less CPU time
    (`_quota`). Reading ahead needs two: on one, the two processes take turns, and the
    replay takes the child's work (pickling, a second process) on top of its own."""
    if hasattr(os, "sched_getaffinity"):  # (Linux; not macOS nor Windows)
        cpus: float = len(os.sched_getaffinity(0))
    else:
        cpus = os.cpu_count() or 1
    quota = _quota()
    return cpus if quota is None else min(cpus, quota)


CGROUPS = Path("/sys/fs/cgroup")


def _quota(root: Path = CGROUPS, own: Path = Path("/proc/self/cgroup")) -> float | None:
    """The CPUs' worth of time this process's cgroup allows (`docker run --cpus`, a
    Kubernetes pod's CPU limit): its quota over its period, the least along the cgroup's
    path (cgroup v2, or v1's `cpu` hierarchy); None when none is set or none can be
    read. A container that sees its own cgroup as the root reads its limit there."""
    try:
        lines = own.read_text().splitlines()
    except OSError:
        return None
    limits: list[float] = []
    for line in lines:
        fields = line.split(":", 2)  # hierarchy:controllers:path
        if len(fields) < 3:
            continue
        _, controllers, path = fields
        if controllers == "":  # v2: mounted at the root, or at `unified` beside v1
            base = root if (root / "cgroup.controllers").exists() else root / "unified"
            limit = _cpu_max
        elif "cpu" in controllers.split(","):
            base = root / controllers if (root / controllers).is_dir() else root / "cpu"
            limit = _cfs_quota
        else:
            continue
        folder = base / path.lstrip("/")
        if not folder.is_dir():
            folder = base
        for place in [folder, *folder.parents]:
            if found := limit(place):
                limits.append(found)
            if place == base:
                break
    return min(limits, default=None)


def _cpu_max(folder: Path) -> float | None:
    """cgroup v2's limit: `cpu.max` holds the quota and the period, or `max`."""
    try:
        quota, period = (folder / "cpu.max").read_text().split()
        return int(quota) / int(period)
    except (OSError, ValueError, ZeroDivisionError):
        return None  # none here, or `max`


def _cfs_quota(folder: Path) -> float | None:
    """cgroup v1's limit: the quota (-1: none) over the period, in files of their own."""
    try:
        quota = int((folder / "cpu.cfs_quota_us").read_text())
        period = int((folder / "cpu.cfs_period_us").read_text())
        return quota / period if quota > 0 else None
    except (OSError, ValueError, ZeroDivisionError):
        return None


def _size(path: Path) -> int:
    """The bytes of lines a file holds: a gzipped one's as its trailer gives them (modulo
    4 GiB, as the format keeps it), at least its own size."""
    try:
        size = path.stat().st_size
        if path.name.endswith(".gz") and size >= _GZIP_SMALLEST:
            with path.open("rb") as handle:
                handle.seek(-4, os.SEEK_END)
                size = max(size, int.from_bytes(handle.read(4), "little"))
        return size
    except OSError:
        return 0  # read here, which says what is wrong with it


SAID = "--said"
"""The child's first argument when plain calls are sent with their operations."""


def command(paths: Sequence[Path], said: bool = False) -> list[str]:
    """The child reading `paths` ahead: this Python running `main` (`-P`: without the
    folder it is started in first on its path, which may hold another checkout)."""
    code = "import sys; from cio_anon.replay.ahead import main; main(sys.argv[1:])"
    return [sys.executable, "-P", "-c", code, *([SAID] if said else []), *map(str, paths)]


def _start(paths: Sequence[Path], said: bool) -> _Receiver | None:
    """The second process reading `paths`, and the thread taking its messages; None when
    no process is to be had (the program gone, no room for another)."""
    root = str(Path(cio_anon.__file__).resolve().parent.parent)  # this cio_anon, first
    path_list = [root, *filter(None, [os.environ.get("PYTHONPATH")])]
    try:
        child = subprocess.Popen(  # noqa: S603 (this Python, this module, the files' paths)
            command(paths, said),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,  # a child that fails says nothing: the replay reads on
            env={**os.environ, "PYTHONPATH": os.pathsep.join(path_list)},
        )
    except OSError:
        return None
    assert child.stdout is not None
    _widen(child.stdout)
    receiver = _Receiver(child)
    receiver.start()
    return receiver


def _widen(pipe: IO[bytes]) -> None:
    """Give the pipe `PIPE_BYTES` of room where the system allows it (Linux). The thread
    taking lots off it needs the interpreter's lock for every read, and waits for it up
    to 5 ms while the replay decides a run: at 64 KiB a read, a lot of 1–2 MB took that
    wait 20–30 times over, and the child stood waiting on a full pipe."""
    if sys.platform == "linux":
        import fcntl  # noqa: PLC0415 (Linux only)

        with contextlib.suppress(OSError):  # a system that allows less: the room it gives
            fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)


class _Receiver(threading.Thread):
    """Takes the child's messages off the pipe as they come (`IN_HAND` at most): the
    child reads on while the replay writes a run, instead of waiting on a full pipe."""

    def __init__(self, child: subprocess.Popen[bytes]) -> None:
        super().__init__(name="cio-anon read ahead", daemon=True)
        assert child.stdout is not None
        self.child = child
        self.stream: IO[bytes] = child.stdout
        self.lots: queue.Queue[bytes | None] = queue.Queue(maxsize=IN_HAND)
        self.stopped = False

    def run(self) -> None:
        while True:
            try:
                body = _receive(self.stream)
            except (OSError, MemoryError, OverflowError):
                body = None  # the pipe failed, or a length is not one: as if the child were gone
            while not self.stopped:
                try:
                    self.lots.put(body, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if body is None or self.stopped:
                return

    def stop(self) -> None:
        """Stop the child (it is done, or its records are not wanted) and this thread."""
        self.stopped = True
        if self.child.poll() is None:
            self.child.kill()  # done (all it sent is here), or reading what is not wanted
        self.child.wait()
        self.join()
        self.stream.close()


def _receive(stream: IO[bytes]) -> bytes | None:
    """The next message's bytes, or None when the stream ends before one does."""
    head = stream.read(_LENGTH.size)
    if len(head) < _LENGTH.size:
        return None
    (length,) = _LENGTH.unpack(head)
    body = stream.read(length)
    return body if len(body) == length else None


def _messages(path: Path, said: bool) -> Iterator[tuple[str, object]]:
    """The child's messages: lots of records, then how it ended (the records read before
    a fault are sent first: the replay counts them, as it does reading here)."""
    lot: list[tuple[Any, ...]] = []
    ending: tuple[str, object] = ("end", None)
    try:
        with fewer_collections():
            held = 0
            for record, calls in plain_records(path, said):
                lot.append(
                    (
                        record.line,
                        record.value,
                        record.error,
                        record.size,
                        record.raw,
                        None if calls is None else [packed(call, said) for call in calls],
                    )
                )
                held += record.size
                if len(lot) == LOT or held >= LOT_BYTES:
                    yield "records", lot
                    lot, held = [], 0
    except CioAnonError as error:  # the file cannot be read on: the replay says so
        ending = ("unreadable", str(error))
    # (any other fault ends the child: the replay reads on here, and meets it)
    yield "records", lot
    yield ending


def main(paths: Sequence[str]) -> None:
    """The child: read the files in order, and write their messages to standard output
    (each file's records, then how it ended); `SAID` first: with the calls' operations."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the replay, which stops this
    out = sys.stdout.fileno()
    said = bool(paths) and paths[0] == SAID
    files = [Path(p) for p in paths[said:]]
    try:
        for message in itertools.chain.from_iterable(_messages(p, said) for p in files):
            _send(out, pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))
    except BrokenPipeError:
        os._exit(0)  # the replay stopped reading: nothing to flush, nothing to say


def _send(out: int, body: bytes) -> None:
    """Write a message whole: its length, then its pickle (`streams.write_all`: the
    replay stopped and continued, or a profiler looking in, interrupts a write to a full
    pipe part way, and `sys.stdout.buffer` is the bare file when Python runs unbuffered,
    which dropped the rest)."""
    write_all(out, _LENGTH.pack(len(body)))
    write_all(out, body)
