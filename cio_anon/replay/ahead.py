"""Reading ahead: a large file's records read, and their plain calls checked, in a second
process while this one applies them.

Reading a line and checking its calls (`bulk.plain_records`) is about a third of a
replay's time, and needs nothing from the workspace: `plain` is pure. So for a file of at
least `AHEAD_BYTES` (not standard input) a child process does it and sends the records
over a pipe, in lots of `LOT` records; a thread here takes the lots off the pipe as
they come, `IN_HAND` at most, so the child reads on while a run is written, and memory
stays bounded. A record travels as its fields and its calls' fields (strings, datetimes,
small dicts: quick to pickle, where a dataclass is not; only a call left to the service,
a group in a batch, carries its operation, a dataclass), a plain one without its parsed
value (its line is kept, to be read again if the service takes it). The replay sees the
same records with the same calls, in the same order, either way; `tests/test_ahead.py`
holds the two readers equal.

The child is the same Python running `main` (`command`, this `cio_anon` first on its
path): nothing of this process, its workspace or its threads is copied into it, and
no script of the caller's is run again in it (as `multiprocessing` would). It writes
each lot to its standard output as a length and a pickle. When the replay stops reading
early (a file refused, Ctrl-C) the child is stopped; when the replay is killed, the
child's next write finds the pipe closed, and it ends. If the child ends before the file
does (it could not start, or was killed), the rest of the file is read here.
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
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import cio_anon
from cio_anon.errors import CioAnonError, InvalidInput
from cio_anon.ingest.fixtures import STDIN, Record
from cio_anon.replay.bulk import Call, fewer_collections, packed, plain_records

AHEAD_BYTES = 16 * 2**20
"""The smallest file read ahead. Starting the child takes under 0.1 s; reading ahead
saves about 8 µs a record, so a smaller file would gain less than half a second: not
worth a second process."""

LOT = 2_000
"""Records sent together (fewer when they hold more than `LOT_BYTES`)."""

LOT_BYTES = 2 * 2**20

IN_HAND = 8
"""Lots received and not yet replayed, at most: about 16,000 records, 16 MiB of lines."""

PIPE_BYTES = 2**20
"""The pipe's room (64 KiB by default): 1 MiB, what Linux lets any process ask for
unless its `/proc/sys/fs/pipe-max-size` says otherwise."""

_LENGTH = struct.Struct("<Q")
"""A message's length before it: its pickle's bytes."""

Read = Iterator[tuple[Record, list[Call] | None]]


def read(path: Path, *, ahead: bool | None = None) -> Read:
    """The file's records, each with its calls when it is plain (`bulk.plain_records`):
    read ahead in a second process when the file is large (`AHEAD_BYTES`), or when
    `ahead` says so; else here."""
    if ahead is None:
        ahead = path != STDIN and bool(sys.executable) and _size(path) >= AHEAD_BYTES
    return _read_ahead(path) if ahead else plain_records(path)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0  # read here, which says what is wrong with it


def command(path: Path) -> list[str]:
    """The child reading `path` ahead: this Python running `main` (`-P`: without the
    folder it is started in first on its path, which may hold another checkout)."""
    code = "import sys; from cio_anon.replay.ahead import main; main(sys.argv[1])"
    return [sys.executable, "-P", "-c", code, str(path)]


def _read_ahead(path: Path) -> Read:
    root = str(Path(cio_anon.__file__).resolve().parent.parent)  # this cio_anon, first
    paths = [root, *filter(None, [os.environ.get("PYTHONPATH")])]
    try:
        child = subprocess.Popen(  # noqa: S603 (this Python, this module, the file's path)
            command(path),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,  # a child that fails says nothing: the replay reads on
            env={**os.environ, "PYTHONPATH": os.pathsep.join(paths)},
        )
    except OSError:  # no process to be had (the program gone, no room for another): here
        yield from plain_records(path)
        return
    assert child.stdout is not None
    _widen(child.stdout)
    receiver = _Receiver(child)
    receiver.start()
    given = 0
    try:
        while True:
            body = receiver.lots.get()
            message: tuple[str, Any] = ("gone", None)
            if body is not None:
                message = pickle.loads(body)  # noqa: S301 (our own child's pickles)
            kind, payload = message
            if kind == "records":
                for *fields, calls in payload:
                    record = Record(*fields)
                    given += 1
                    yield record, None if calls is None else [Call(record, *c) for c in calls]
            elif kind == "unreadable":
                raise InvalidInput(payload)
            elif kind == "end":
                return
            else:  # the child is gone (it failed, or was killed): the rest is read here
                break
    finally:
        receiver.stop()
    yield from itertools.islice(plain_records(path), given, None)


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
            except OSError:  # the pipe failed: as if the child were gone (read on here)
                body = None
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


def _messages(path: Path) -> Iterator[tuple[str, object]]:
    """The child's messages: lots of records, then how it ended (the records read before
    a fault are sent first: the replay counts them, as it does reading here)."""
    lot: list[tuple[Any, ...]] = []
    ending: tuple[str, object] = ("end", None)
    try:
        with fewer_collections():
            held = 0
            for record, calls in plain_records(path):
                lot.append(
                    (
                        record.line,
                        record.value,
                        record.error,
                        record.size,
                        record.raw,
                        None if calls is None else [packed(call) for call in calls],
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


def main(path: str) -> None:
    """The child: read the file, and write its messages to standard output."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the replay, which stops this
    out = sys.stdout.buffer
    try:
        for message in _messages(Path(path)):
            body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
            out.write(_LENGTH.pack(len(body)))
            out.write(body)
            out.flush()
    except BrokenPipeError:
        os._exit(0)  # the replay stopped reading: nothing to flush, nothing to say
