"""Helpers shared by the benchmark scripts."""

from __future__ import annotations

import contextlib
import http.client
import json
import multiprocessing
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from cio_anon.replay import replay_into

T = TypeVar("T")

Variant = tuple[str, Callable[[], contextlib.AbstractContextManager[object]]]
"""A way to run the same thing: its label, and the context it runs in."""


def timed(action: Callable[[], T]) -> tuple[float, T]:
    """Seconds an action took, and what it returned."""
    start = time.perf_counter()
    result = action()
    return time.perf_counter() - start, result


def replayed(db: Path, files: Sequence[Path]) -> int:
    """Replay `files` into the workspace `db`, as `cio-anon replay` does; the calls
    applied (none may be refused)."""
    summary = replay_into(db, datetime.now(UTC), files)
    assert summary.ok, summary.invalid[:3]
    return summary.tally.applied


def interleaved(
    variants: Sequence[Variant], runs: int, folder: Path, action: Callable[[Path], object]
) -> dict[str, list[float]]:
    """The seconds `action` took under each variant, `runs` times each: the variants in
    turn, run after run, so that all see the same machine load; each run given a fresh
    workspace in `folder`, removed after."""
    seconds: dict[str, list[float]] = {label: [] for label, _ in variants}
    for run in range(runs):
        for label, variant in variants:
            db = folder / f"replayed-{run}.db"
            with variant():
                took, _ = timed(lambda: action(db))  # noqa: B023 (called at once)
            seconds[label].append(took)
            for leftover in folder.glob(f"replayed-{run}.db*"):
                leftover.unlink()
    return seconds


@contextlib.contextmanager
def serving(db: Path, *options: str) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """`cio-anon serve --quiet` on a free loopback port with the workspace `db`, started
    from `db`'s folder (so that `PYTHONPATH` chooses the tree it runs: see "Comparing two
    commits" in README.md) and stopped after; its process and port."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "cio_anon", "serve", "--port", str(port), "--db", str(db)]
        + ["--quiet", *options],
        stdout=subprocess.PIPE,
        text=True,
        cwd=db.parent,
        env=os.environ,
    )
    assert server.stdout is not None
    server.stdout.readline()
    try:
        yield server, port
    finally:
        server.terminate()
        server.wait(timeout=60)


def posted(
    connection: http.client.HTTPConnection, path: str, body: str | bytes
) -> tuple[int, float]:
    """POST a JSON body on a keep-alive connection: the status, and the seconds the
    answer took."""
    start = time.perf_counter()
    connection.request("POST", path, body, {"Content-Type": "application/json"})
    response = connection.getresponse()
    response.read()
    return response.status, time.perf_counter() - start


def summary(port: int) -> dict[str, int]:
    """The served workspace's counts (`/_cio-anon/summary`)."""
    connection = http.client.HTTPConnection("127.0.0.1", port)
    connection.request("GET", "/_cio-anon/summary")
    counts: dict[str, int] = json.loads(connection.getresponse().read())
    connection.close()
    return counts


def in_processes(
    target: Callable[..., None], arguments: Sequence[tuple[Any, ...]]
) -> tuple[float, list[Any]]:
    """Run `target(*args, queue)` in a process for each of `arguments`, all started
    together, each putting one result on the queue: the seconds until every result was
    in, and the results (in the order they came)."""
    queue: multiprocessing.Queue[Any] = multiprocessing.Queue()
    processes = [multiprocessing.Process(target=target, args=(*args, queue)) for args in arguments]
    start = time.perf_counter()
    for process in processes:
        process.start()
    results = [queue.get() for _ in processes]
    elapsed = time.perf_counter() - start
    for process in processes:
        process.join()
    return elapsed, results


def p99(latencies: Sequence[float]) -> float:
    """The 99th percentile of latencies sorted in increasing order."""
    return latencies[int(len(latencies) * 0.99) - 1]
