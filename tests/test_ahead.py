"""Reading ahead (`replay.ahead`): a large file's records read and checked in a second
process. It must hand the replay exactly what reading in process does — every record,
every call, in order — leave the same workspace, say the same of a file it cannot read,
and leave no process behind when the replay stops early."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cio_anon.replay import ahead
from tests.test_batch import ROOT, assert_same_both_ways, replayed, write


def both_ways(path: Path) -> tuple[list[Any], list[Any]]:
    """The file read ahead and read here: each record's fields, and its calls."""

    def seen(read: ahead.Read) -> list[Any]:
        return [
            ((r.line, r.value, r.error, r.size, r.raw), None if calls is None else calls)
            for r, calls in read
        ]

    return seen(ahead.read(path, ahead=True)), seen(ahead.read(path, ahead=False))


ODD_LINES = [
    b'{"type": "track", "event": "Viewed", "anonymousId": "a1", "messageId": "m1",'
    b' "receivedAt": 1772000000, "properties": {"recipient": " x@example.com "}}\n',
    b"\n",
    b"not json\n",
    b'{"type": "track", "event": "Viewed", "anonymousId": "a1", "receivedAt": 1772000001}\n',
    b'{"type": "identify", "userId": "u1", "anonymousId": "a1", "traits": {"plan": "pro"},'
    b' "receivedAt": 1772000002}\n',
    b'{"op": "purge", "at": 1772000003}\n',
    b'{"type": "alias", "userId": "u1", "previousId": "u0", "receivedAt": 1772000004}\n',
    b'{"method": "POST", "path": "/v1/batch", "at": 1772000005, "body": {"batch": ['
    b'{"type": "page", "anonymousId": "a2", "properties": {"url": "https://x.test/"}},'
    b'{"type": "track", "event": "Added", "userId": "u1", "messageId": "m2"}]}}\n',
    b'{"method": "POST", "path": "/v1/batch", "at": 1772000005, "body": {"batch": ['
    b'{"type": "group", "userId": "u1", "groupId": "g1", "traits": {"name": "Acme"}},'
    b'{"type": "page", "anonymousId": "a2", "properties": {"url": "https://x.test/b"}},'
    b'{"type": "alias", "userId": "u1", "previousId": "a2"}]}}\n',
    b'{"type": "track", "event": "Viewed", "anonymousId": "a1", "receivedAt": "\xff"}\n',
    b'{"type": "track", "event": "", "anonymousId": "a1", "receivedAt": 1772000006}\n',
    b'{"type": "track", "event": "Big", "anonymousId": "a1", "receivedAt": 1772000007,'
    b' "properties": {"n": 123456789012345678901234567890}}\n',
]


def test_records_read_ahead_are_those_read_here(tmp_path: Path) -> None:
    """Plain records (their values let go, kept as lines), a track without a messageId,
    blank lines, text that is not JSON or not UTF-8, control records, an alias, recorded
    batches (one with a group and an alias, which travel as the service's operations),
    records refused by a check: the same fields and calls either way."""
    path = tmp_path / "odd.ndjson"
    path.write_bytes(b"".join(ODD_LINES))
    read_ahead, read_here = both_ways(path)
    assert read_ahead == read_here
    plain = [fields for fields, calls in read_here if calls is not None]
    assert len(plain) == 5 and all(value is None and raw for _, value, _, _, raw in plain)
    operations = [c.operation for _, calls in read_here for c in calls or [] if c.operation]
    assert [type(operation).__name__ for operation in operations] == ["ObjectUpdate", "Alias"]
    assert [calls[0].recipient for _, calls in read_here if calls][0] == "x@example.com"
    assert sum(1 for (_, _, error, _, _), _ in read_here if error) == 3  # text, UTF-8, 65 bits


@pytest.mark.parametrize("name", ["array.json", "lines.ndjson.gz"])
def test_a_json_array_and_a_gzipped_file(tmp_path: Path, name: str) -> None:
    """An array's records have no lines to read again: they travel with their values."""
    records = [
        {"type": "track", "event": "Viewed", "anonymousId": f"a{i}", "receivedAt": 1772000000 + i}
        for i in range(5_000)
    ]
    path = tmp_path / name
    if name.endswith(".gz"):
        with gzip.open(path, "wt") as handle:
            handle.writelines(json.dumps(r) + "\n" for r in records)
    else:
        path.write_text(json.dumps(records, indent=1))
    read_ahead, read_here = both_ways(path)
    assert read_ahead == read_here
    assert len(read_here) == 5_000 and all(calls for _, calls in read_here)


@pytest.mark.parametrize("shape", ["sessions", "hostile"])
def test_session_traffic_read_ahead(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shape: str
) -> None:
    """Session and hostile traffic replayed with every file read ahead (in lots smaller
    than a run, so runs span lots): every row as the service's, one call at a time."""
    sys.path.insert(0, str(ROOT / "bench"))
    from make_sessions import generate

    records = list(generate(shape, 6_000))
    files = [
        write(tmp_path / "one.ndjson", records[:3_500]),
        write(tmp_path / "two.ndjson", records[3_500:]),
    ]
    read_ahead: list[Path] = []
    reader = ahead._read_ahead

    def watched(path: Path) -> ahead.Read:
        read_ahead.append(path)
        return reader(path)

    monkeypatch.setattr(ahead, "AHEAD_BYTES", 0)
    monkeypatch.setattr(ahead, "LOT", 700)
    monkeypatch.setattr(ahead, "_read_ahead", watched)
    assert_same_both_ways(tmp_path, files, monkeypatch)
    assert read_ahead == files  # the bulk replay read both ahead; the service's, neither


def test_a_file_that_cannot_be_read_says_so_either_way(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A gzipped file cut short fails while it is read: the replay rejects it with the
    same words whether it was read ahead or here, and keeps nothing of it."""
    whole = gzip.compress(b"".join(ODD_LINES[:1] * 3_000))
    path = tmp_path / "cut.ndjson.gz"
    path.write_bytes(whole[: len(whole) // 2])
    _, here = replayed(tmp_path / "here.db", [path], True, monkeypatch)
    monkeypatch.setattr(ahead, "AHEAD_BYTES", 0)
    tables, read_ahead = replayed(tmp_path / "ahead.db", [path], True, monkeypatch)
    assert read_ahead == here
    assert read_ahead["rejected_files"] == [str(path)]
    assert "cannot be read" in read_ahead["invalid"][0]["message"]
    assert tables["events"] == []


def test_stopping_early_stops_the_reader(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A replay that stops reading (refused, interrupted) stops the child, which would
    otherwise read on: no process is left behind."""
    path = tmp_path / "long.ndjson"
    path.write_bytes(ODD_LINES[0] * 200_000)
    children: list[subprocess.Popen[bytes]] = []
    popen = subprocess.Popen

    def started(*args: Any, **kwargs: Any) -> subprocess.Popen[bytes]:
        child = popen(*args, **kwargs)
        children.append(child)
        return child

    monkeypatch.setattr(ahead.subprocess, "Popen", started)
    records = ahead.read(path, ahead=True)
    first, calls = next(records)
    assert first.line == 1 and calls
    assert children[0].poll() is None  # reading on
    records.close()
    assert children[0].poll() is not None


@pytest.mark.skipif(sys.platform != "linux", reason="a pipe's room is set on Linux only")
def test_the_pipe_from_the_reader_is_widened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pipe from the child is widened to `PIPE_BYTES` (from 64 KiB), so the thread
    taking lots off it needs few turns of the interpreter's lock per lot."""
    import fcntl

    if int(Path("/proc/sys/fs/pipe-max-size").read_text()) < ahead.PIPE_BYTES:
        pytest.skip("this system gives a pipe less room")
    path = tmp_path / "long.ndjson"
    path.write_bytes(ODD_LINES[0] * 10_000)
    rooms: list[int] = []
    widen = ahead._widen

    def widened(pipe: Any) -> None:
        widen(pipe)
        rooms.append(fcntl.fcntl(pipe.fileno(), fcntl.F_GETPIPE_SZ))

    monkeypatch.setattr(ahead, "_widen", widened)
    assert sum(1 for _ in ahead.read(path, ahead=True)) == 10_000
    assert rooms == [ahead.PIPE_BYTES]


def test_a_reader_that_cannot_be_started_leaves_the_file_to_be_read_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No second process to be had (its program is gone, or the system has no room for
    another): the whole file is read here, as if it were small, not a traceback."""
    path = tmp_path / "odd.ndjson"
    path.write_bytes(b"".join(ODD_LINES * 3))
    monkeypatch.setattr(ahead, "command", lambda path: [str(tmp_path / "no-python"), path])
    read_ahead, read_here = both_ways(path)
    assert read_ahead == read_here


DIES_AFTER_TWO_LOTS = (
    "import os, sys; from cio_anon.replay import ahead; ahead.LOT = 10; "
    "messages = ahead._messages; "
    "ahead._messages = lambda path: (m for i, m in enumerate(messages(path)) "
    "if i < 2 or os._exit(1)); "
    "ahead.main(sys.argv[1])"
)


@pytest.mark.parametrize(
    "child", ["import sys; sys.exit(3)", DIES_AFTER_TWO_LOTS], ids=["fails", "dies"]
)
def test_a_child_that_ends_early_leaves_the_rest_to_be_read_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, child: str
) -> None:
    """A child that cannot start, or is killed after two lots: the records it did not
    send are read here (the file read again, those it sent skipped), each given once, in
    order."""
    path = tmp_path / "odd.ndjson"
    path.write_bytes(b"".join(ODD_LINES * 5))
    monkeypatch.setattr(ahead, "command", lambda path: [sys.executable, "-P", "-c", child, path])
    given: list[int] = []
    reading_here = ahead.plain_records

    def here(path: Path) -> ahead.Read:
        for record, calls in reading_here(path):
            given.append(record.line)
            yield record, calls

    read_ahead, read_here = both_ways(path)
    assert read_ahead == read_here
    monkeypatch.setattr(ahead, "plain_records", here)
    list(ahead.read(path, ahead=True))
    assert given == [fields[0] for fields, _ in read_here]  # the rest was read here
