"""Reading ahead (`replay.ahead`): a large file's records read and checked in a second
process. It must hand the replay exactly what reading in process does — every record,
every call, in order — leave the same workspace, say the same of a file it cannot read,
and leave no process behind when the replay stops early."""

from __future__ import annotations

import gzip
import io
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from cio_anon.errors import InvalidInput
from cio_anon.replay import ahead
from tests.test_batch import ROOT, assert_same_both_ways, replayed, write


def both_ways(path: Path, said: bool = False) -> tuple[list[Any], list[Any]]:
    """The file read ahead and read here (told `said`): each record's fields, and its
    calls."""

    def seen(read: ahead.Read) -> list[Any]:
        return [
            ((r.line, r.value, r.error, r.size, r.raw), None if calls is None else calls)
            for r, calls in read
        ]

    return (
        seen(ahead.read(path, ahead=True, said=said)),
        seen(ahead.read(path, ahead=False, said=said)),
    )


def read_everything_ahead(monkeypatch: pytest.MonkeyPatch) -> None:
    """A replay's files read ahead whatever their size, as on any machine with two CPUs."""
    monkeypatch.setattr(ahead, "AHEAD_BYTES", 0)
    monkeypatch.setattr(ahead, "_cpus", lambda: 2)


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


@pytest.mark.parametrize("said", [False, True])
def test_records_read_ahead_are_those_read_here(tmp_path: Path, said: bool) -> None:
    """Plain records (their values let go, kept as lines), a track without a messageId,
    blank lines, text that is not JSON or not UTF-8, control records, an alias, recorded
    batches (one with a group and an alias, which travel as the service's operations),
    records refused by a check: the same fields and calls either way; `said`, with the
    plain calls' operations as read (a listener is told them), else without."""
    path = tmp_path / "odd.ndjson"
    path.write_bytes(b"".join(ODD_LINES))
    read_ahead, read_here = both_ways(path, said)
    assert read_ahead == read_here
    kept = [c.said for _, calls in read_here for c in calls or [] if c.operation is None]
    assert len(kept) == 6
    assert all(op is not None for op in kept) if said else kept == [None] * 6
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
    started: list[tuple[list[Path], bool]] = []
    start = ahead._start

    def watched(paths: list[Path], said: bool) -> Any:
        started.append((list(paths), said))
        return start(paths, said)

    read_everything_ahead(monkeypatch)
    monkeypatch.setattr(ahead, "LOT", 700)
    monkeypatch.setattr(ahead, "_start", watched)
    assert_same_both_ways(tmp_path, files, monkeypatch)
    # each bulk replay read both ahead, in one process (the one with a listener with the
    # calls' operations); the service's, neither
    assert started == [(files, False), (files, True)]


def test_a_file_that_cannot_be_read_says_so_either_way(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A gzipped file cut short fails while it is read: the replay rejects it with the
    same words whether it was read ahead or here, and keeps nothing of it."""
    whole = gzip.compress(b"".join(ODD_LINES[:1] * 3_000))
    path = tmp_path / "cut.ndjson.gz"
    path.write_bytes(whole[: len(whole) // 2])
    _, here = replayed(tmp_path / "here.db", [path], True, monkeypatch)
    read_everything_ahead(monkeypatch)
    tables, read_ahead = replayed(tmp_path / "ahead.db", [path], True, monkeypatch)
    assert read_ahead == here
    assert read_ahead["rejected_files"] == [str(path)]
    assert "cannot be read" in read_ahead["invalid"][0]["message"]
    assert tables["events"] == []


@pytest.mark.parametrize("keep_going", [False, True], ids=["", "keep going"])
def test_an_archive_with_parts_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, keep_going: bool
) -> None:
    """Parts holding invalid records and a part cut short among others, all read ahead by
    one process: each refused part is rejected (or, going on, its invalid records are
    skipped, and the part cut short keeps what was read before the damage), the others
    replayed, every row as the service leaves it one call at a time."""
    read_everything_ahead(monkeypatch)
    monkeypatch.setattr(ahead, "LOT", 5)
    paths = archive(tmp_path / "archive")
    tables = assert_same_both_ways(tmp_path, paths, monkeypatch, keep_going)
    _, summary = replayed(tmp_path / "again.db", paths, True, monkeypatch, keep_going)
    rejected = () if keep_going else ("a", "b", "c")
    assert summary["rejected_files"] == [str(p) for p in paths if p.name.startswith(rejected)]
    damaged = [p for p in summary["invalid"] if p["unreadable"] and p["line"] == 0]
    assert [p["file"] for p in damaged] == [str(paths[2])]  # c, cut short, either way
    names = {str(path): path.name[0] for path in paths}
    sources = {  # (an event's source: its file and line)
        names[value.rpartition(":")[0]]
        for row in tables["events"]
        for value in row
        if isinstance(value, str) and value.rpartition(":")[0] in names
    }
    assert sources == ({"a", "b", "d"} if keep_going else {"d"})  # (c's event: a's again)
    if keep_going:  # the part cut short, alone: what was read before the damage is kept
        alone, replayed_alone = replayed(tmp_path / "c.db", paths[2:3], True, monkeypatch, True)
        assert replayed_alone["tally"]["applied"] > 100 and len(alone["events"]) == 1
        assert replayed_alone["rejected_files"] == [] and replayed_alone["invalid"]


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
    monkeypatch.setattr(ahead, "command", lambda paths, said: [str(tmp_path / "no-python"), *paths])
    read_ahead, read_here = both_ways(path)
    assert read_ahead == read_here


DIES_AFTER_TWO_LOTS = (
    "import os, sys; from cio_anon.replay import ahead; ahead.LOT = 10; "
    "messages = ahead._messages; "
    "ahead._messages = lambda path, said: (m for i, m in enumerate(messages(path, said)) "
    "if i < 2 or os._exit(1)); "
    "ahead.main(sys.argv[1:])"
)


def stray_after_two_lots(stray: bytes) -> str:
    """A child whose pipe something else (a library's print) writes `stray` to after two
    lots."""
    return DIES_AFTER_TWO_LOTS.replace("os._exit(1)", f"os.write(1, {stray!r}) or True")


@pytest.mark.parametrize(
    "child",
    [
        "import sys; sys.exit(3)",
        DIES_AFTER_TWO_LOTS,
        stray_after_two_lots(b"a library says hello\n"),
        stray_after_two_lots(ahead._LENGTH.pack(6) + b"hello\n"),
    ],
    ids=["fails", "dies", "a stray length", "a stray message"],
)
def test_a_child_that_ends_early_leaves_the_rest_to_be_read_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, child: str
) -> None:
    """A child that cannot start, is killed after two lots, or whose pipe holds something
    it did not send (a length that is not one, a message that is not a pickle): the
    records it did not send whole are read here (the file read again, those it sent
    skipped), each given once, in order, not a traceback nor a wait without end."""
    path = tmp_path / "odd.ndjson"
    path.write_bytes(b"".join(ODD_LINES * 5))
    monkeypatch.setattr(
        ahead, "command", lambda paths, said: [sys.executable, "-P", "-c", child, *paths]
    )
    given: list[int] = []
    reading_here = ahead.plain_records

    def here(path: Path, said: bool) -> ahead.Read:
        for record, calls in reading_here(path, said):
            given.append(record.line)
            yield record, calls

    read_ahead, read_here = both_ways(path)
    assert read_ahead == read_here
    monkeypatch.setattr(ahead, "plain_records", here)
    list(ahead.read(path, ahead=True))
    assert given == [fields[0] for fields, _ in read_here]  # the rest was read here


@pytest.mark.skipif(not hasattr(signal, "SIGSTOP"), reason="no job control here")
def test_a_reader_stopped_and_continued_sends_its_messages_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The replay stopped and continued again and again (Ctrl-Z, `fg`) while the child
    waits on the pipe, with Python unbuffered (`PYTHONUNBUFFERED`, as many containers
    set it): each interrupted write takes part of a message, and the child writes the
    rest. The pipe keeps the system's room (64 KiB on Linux, less than a lot), so every
    lot's write waits for it. Every record comes from the child, whole and in order; none
    is read here."""
    records = 40_000
    path = tmp_path / "long.ndjson"
    path.write_bytes(ODD_LINES[0] * records)
    monkeypatch.setenv("PYTHONUNBUFFERED", "1")
    monkeypatch.setattr(ahead, "plain_records", lambda path, said: pytest.fail("read here"))
    monkeypatch.setattr(ahead, "_widen", lambda pipe: None)
    reader = ahead.Reader([path], ahead=True)
    read = reader.read(path)
    lines = [next(read)[0].line]
    assert reader.receiver is not None
    child = reader.receiver.child.pid
    done = threading.Event()

    def stop_and_continue() -> None:
        while not done.wait(0.001):
            os.kill(child, signal.SIGSTOP)
            os.kill(child, signal.SIGCONT)

    poking = threading.Thread(target=stop_and_continue)
    poking.start()
    try:
        for record, calls in read:
            assert calls
            lines.append(record.line)
    finally:
        done.set()
        poking.join()
        reader.close()
    assert lines == list(range(1, records + 1))


def archive(folder: Path) -> list[Path]:
    """An archive's parts as a replay meets them: plain lines, a gzipped part, a part cut
    short (which cannot be read), a JSON array and an empty part."""
    folder.mkdir()
    parts = [folder / name for name in ("a.ndjson", "b.ndjson.gz", "c.ndjson.gz", "d.json")]
    parts[0].write_bytes(b"".join(ODD_LINES * 3))
    parts[1].write_bytes(gzip.compress(b"".join(ODD_LINES * 4)))
    whole = gzip.compress(b"".join(ODD_LINES[:1] * 3_000))
    parts[2].write_bytes(whole[: len(whole) // 2])
    parts[3].write_text(
        json.dumps([{**json.loads(ODD_LINES[0]), "messageId": f"d{n}"} for n in range(7)])
    )
    (folder / "e.ndjson").write_bytes(b"")
    return [*parts, folder / "e.ndjson"]


def read_all(reader: ahead.Reader, paths: list[Path], stop_after: int | None = None) -> list[Any]:
    """Each file's records through `reader` (`stop_after` of each at most: the rest let
    go), or the sentence it could not be read with."""
    seen: list[Any] = []
    for path in paths:
        try:
            records = reader.read(path)
            for n, (r, calls) in enumerate(records):
                if stop_after is not None and n == stop_after:
                    break
                seen.append((path.name, r.line, r.value, r.error, r.raw, calls))
        except InvalidInput as error:
            seen.append((path.name, str(error)))
    return seen


@pytest.mark.parametrize("stop_after", [None, 2], ids=["whole", "each let go early"])
def test_an_archive_read_ahead_by_one_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stop_after: int | None
) -> None:
    """An archive's parts, read ahead together by one second process, give each file's
    records as reading each here does — a part that cannot be read says so in the same
    words, and the parts after it are read — also when the replay lets a file go before
    its end (the rest of that file is passed over, not given to the next)."""
    paths = archive(tmp_path / "archive")
    started: list[list[Path]] = []
    start = ahead._start
    monkeypatch.setattr(
        ahead, "_start", lambda files, said: started.append(files) or start(files, said)
    )
    monkeypatch.setattr(ahead, "LOT", 5)
    reader = ahead.Reader(paths, ahead=True)
    try:
        read_ahead = read_all(reader, paths, stop_after)
    finally:
        reader.close()
    read_here = read_all(ahead.Reader(paths, ahead=False), paths, stop_after)
    assert read_ahead == read_here
    assert started == [paths]
    refused = [seen for seen in read_here if len(seen) == 2]
    if stop_after is None:  # (let go early, the part is let go before its fault)
        assert [name for name, _ in refused] == ["c.ndjson.gz"]
        assert "cannot be read" in refused[0][1]
    assert {seen[0] for seen in read_here} == {"a.ndjson", "b.ndjson.gz", "c.ndjson.gz", "d.json"}


def test_a_child_that_dies_inside_an_archive(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second process killed in the second part: the rest of that part, and every part
    after it, is read here, each record given once, in order."""
    paths = archive(tmp_path / "archive")
    monkeypatch.setattr(
        ahead,
        "command",
        lambda files, said: [sys.executable, "-P", "-c", DIES_IN_THE_SECOND_PART, *files],
    )
    reader = ahead.Reader(paths, ahead=True)
    try:
        read_ahead = read_all(reader, paths)
    finally:
        reader.close()
    assert reader.gone
    assert read_ahead == read_all(ahead.Reader(paths, ahead=False), paths)


DIES_IN_THE_SECOND_PART = (
    "import itertools, os, sys; from cio_anon.replay import ahead; ahead.LOT = 10; "
    "messages = ahead._messages; sent = itertools.count(); "
    "ahead._messages = lambda path, said: (m for m in messages(path, said) "
    "if not (path.name.startswith('b') and next(sent) == 2 and os._exit(1))); "
    "ahead.main(sys.argv[1:])"
)


def test_what_is_read_ahead(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Files are read ahead when together they hold `AHEAD_BYTES` of lines: several small
    parts as one large file, a gzipped file by the lines it holds (its trailer says), not
    by its own size; standard input never."""
    monkeypatch.setattr(ahead, "AHEAD_BYTES", 100_000)
    monkeypatch.setattr(ahead, "_cpus", lambda: 2)
    line = ODD_LINES[0]
    small = [tmp_path / f"part-{n}.ndjson" for n in range(3)]
    for path in small:
        path.write_bytes(line * (40_000 // len(line)))
    packed = tmp_path / "packed.ndjson.gz"
    packed.write_bytes(gzip.compress(line * (120_000 // len(line))))
    assert packed.stat().st_size < 10_000
    assert not ahead.Reader(small[:2]).ahead  # 80,000 bytes
    assert ahead.Reader(small).ahead  # 120,000
    assert ahead.Reader([packed]).ahead
    assert not ahead.Reader([ahead.STDIN]).ahead
    assert not ahead.Reader([tmp_path / "missing.ndjson"]).ahead
    if hasattr(os, "mkfifo"):  # a pipe (`<(zcat …)`) is read here, the others ahead
        os.mkfifo(tmp_path / "pipe")
        assert ahead.Reader([small[0], tmp_path / "pipe", packed]).paths == [small[0], packed]


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no CPU affinity here")
def test_on_one_cpu_nothing_is_read_ahead(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A replay that may run on one CPU only (`taskset`, a container's cpuset) reads its
    files itself, however large: a second process would only take turns with it (on one
    CPU, 200,000 fixture records took a quarter longer read ahead: `bench/replay_cpus.py`).
    Given two CPUs again, the same files are read ahead."""
    monkeypatch.setattr(ahead, "AHEAD_BYTES", 1_000)
    path = tmp_path / "large.ndjson"
    path.write_bytes(ODD_LINES[0] * 20)
    cpus = os.sched_getaffinity(0)
    if len(cpus) < 2:
        pytest.skip("this machine gives one CPU")
    try:
        os.sched_setaffinity(0, {min(cpus)})  # (this thread's, on Linux: as `taskset` sets it)
        one = ahead.Reader([path])
    finally:
        os.sched_setaffinity(0, cpus)
    assert not one.ahead
    assert ahead.Reader([path]).ahead


def cgroups(root: Path, own: str, limits: dict[str, str]) -> Path:
    """A cgroup tree as the kernel shows it under `root`: each file of `limits` (a path
    below `root`) with its text, and the process's own cgroups (`/proc/self/cgroup`'s
    lines) in `own`, whose path is returned."""
    for name, text in limits.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    (root / "self-cgroup").write_text(own)
    return root / "self-cgroup"


@pytest.mark.parametrize(
    ("own", "limits", "cpus"),
    [
        # cgroup v2: the job's own limit, or its parent's when that is less
        ("0::/ci/job\n", {"cgroup.controllers": "cpu", "ci/job/cpu.max": "50000 100000"}, 0.5),
        (
            "0::/ci/job\n",
            {
                "cgroup.controllers": "",
                "ci/cpu.max": "200000 100000",
                "ci/job/cpu.max": "max 100000",
            },
            2.0,
        ),
        # v2 beside v1 (`unified`, without a limit), v1's `cpu` hierarchy with one above
        # the process's own cgroup, which has none (-1)
        (
            "1:cpu:/ci/job\n0::/ci/job\n",
            {
                "unified/ci/job/cgroup.procs": "",
                "cpu/ci/cpu.cfs_quota_us": "100000\n",
                "cpu/ci/cpu.cfs_period_us": "100000\n",
                "cpu/ci/job/cpu.cfs_quota_us": "-1\n",
                "cpu/ci/job/cpu.cfs_period_us": "100000\n",
            },
            1.0,
        ),
        # v1 in a container that sees its own cgroup as the root (`/docker/…` not there)
        (
            "4:cpu,cpuacct:/docker/abc\n",
            {
                "cpu,cpuacct/cpu.cfs_quota_us": "150000\n",
                "cpu,cpuacct/cpu.cfs_period_us": "100000\n",
            },
            1.5,
        ),
        ("", {}, None),  # no cgroups at all
        ("garbled\n0::/x\n", {"cgroup.controllers": "", "x/cpu.max": "max"}, None),
    ],
    ids=["v2", "v2 parent", "v1 beside v2", "v1 in a container", "none", "garbled"],
)
def test_a_cgroups_cpu_limit(
    tmp_path: Path, own: str, limits: dict[str, str], cpus: float | None
) -> None:
    """The CPU time a cgroup allows (`docker run --cpus`, a pod's CPU limit), read as the
    kernel shows it, v2 or v1, the least along the cgroup's path."""
    assert ahead._quota(tmp_path, cgroups(tmp_path, own, limits)) == cpus
    assert ahead._quota(tmp_path, tmp_path / "missing") is None


def test_with_one_cpus_worth_of_time_nothing_is_read_ahead(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cgroup that allows one CPU's time, however many CPUs there are: read here."""
    monkeypatch.setattr(ahead, "AHEAD_BYTES", 1_000)
    path = tmp_path / "large.ndjson"
    path.write_bytes(ODD_LINES[0] * 20)
    monkeypatch.setattr(ahead, "_quota", lambda: 1.0)
    assert not ahead.Reader([path]).ahead


def test_a_real_cgroups_cpu_limit(tmp_path: Path) -> None:
    """A replay in a cgroup of its own (v1's `cpu` hierarchy, where this machine lets one
    be made) given one CPU's time reads that limit, and its files itself; given two
    CPUs' time, it reads them ahead."""
    own = Path("/proc/self/cgroup")
    lines = own.read_text().splitlines() if own.exists() else []
    path = next((line.split(":", 2)[2] for line in lines if line.split(":")[1:2] == ["cpu"]), "/")
    folder = ahead.CGROUPS / "cpu" / path.lstrip("/") / f"cio-anon-test-{os.getpid()}"
    try:
        folder.mkdir()
    except OSError:
        pytest.skip("no cgroup of its own can be made here (v1's `cpu`, as root)")
    large = tmp_path / "large.ndjson"
    large.write_bytes(ODD_LINES[0] * 20)
    code = (
        "import sys; from pathlib import Path; from cio_anon.replay import ahead; "
        "ahead.AHEAD_BYTES = 1_000; print(ahead._cpus(), ahead.Reader([Path(sys.argv[1])]).ahead)"
    )
    shell = f'echo $$ > {folder}/cgroup.procs && exec "$0" -c "$1" "$2"'
    seen = []
    try:
        (folder / "cpu.cfs_period_us").write_text("100000")
        for quota in ("100000", "200000"):
            (folder / "cpu.cfs_quota_us").write_text(quota)
            run = [sys.executable, code, str(large)]
            seen.append(
                subprocess.run(
                    ["sh", "-c", shell, *run], capture_output=True, text=True, check=True
                ).stdout.split()
            )
    finally:
        folder.rmdir()
    (one, one_ahead), (two, two_ahead) = seen
    assert (float(one), one_ahead) == (1.0, "False")
    if len(os.sched_getaffinity(0)) >= 2:
        assert (float(two), two_ahead) == (2.0, "True")


def test_standard_input_among_files_read_ahead(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Standard input among files read ahead is read here, in its place."""
    paths = archive(tmp_path / "archive")
    stdin = tmp_path / "stdin.ndjson"
    stdin.write_bytes(b"".join(ODD_LINES[4:5] * 3))
    given = [paths[0], ahead.STDIN, paths[1]]
    with stdin.open("rb") as handle:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(handle))
        reader = ahead.Reader(given, ahead=True)
        try:
            read_ahead = read_all(reader, given)
        finally:
            reader.close()
    assert reader.paths == [paths[0], paths[1]]
    assert [seen[0] for seen in read_ahead].count("-") == 3
    here = read_all(ahead.Reader(paths, ahead=False), [paths[0], paths[1]])
    assert [seen for seen in read_ahead if seen[0] != "-"] == here
