"""Shared test helpers: a temp workspace, a pinned clock, and the CLI runner."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pendulum
import pytest
from pendulum import DateTime
from typer.testing import CliRunner

from cio_anon import service
from cio_anon.cli import app
from cio_anon.store import Workspace
from tests.pyclients import python_clients  # noqa: F401  (a fixture)

T0 = pendulum.datetime(2026, 3, 1, 9, 0, 0, tz="UTC")


def runs_spark(nodeid: str) -> bool:
    """A test that starts Spark, here or in a process of its own, says so in its
    module's name, its own or its parameter's."""
    return "spark" in nodeid.lower()


SPARK_JIT = "-XX:TieredStopAtLevel=1"
"""The Java options of every Spark process the suite starts (drivers, executors, a
cluster's master and workers): Java's quick compiler only. A Spark audit of a few
records is mostly the JVM warming up, and Java's optimizing compiler spent half the
processor time of one (about 70 core-seconds for the shopper fixture, 37 without it),
on two cores where the rest of the suite waits for them. An option of Java's, not of
cio-anon's: what Spark computes is the same."""
SPARK_SUBMIT = (
    f"--conf spark.driver.extraJavaOptions={SPARK_JIT} "
    f"--conf spark.executor.extraJavaOptions={SPARK_JIT}"
)
"""Spark's submit options for the JIT above (PYSPARK_SUBMIT_ARGS, without its last
word, `pyspark-shell`: a test giving more options puts them between)."""


def pytest_configure(config: pytest.Config) -> None:
    """Spark's options for the suite, in this process (where the in-process tests share a
    session) and so in every process it starts; PYSPARK_SUBMIT_ARGS given from outside is
    left as it is."""
    import os

    os.environ.setdefault("PYSPARK_SUBMIT_ARGS", f"{SPARK_SUBMIT} pyspark-shell")


@pytest.fixture(autouse=True)
def _spark_said(request: pytest.FixtureRequest) -> None:
    """The name is what the suite's processes are given the Spark tests by (below): a
    test asking for Spark must carry it."""
    if "spark_ready" in request.fixturenames and not runs_spark(request.node.nodeid):
        pytest.fail(
            f"{request.node.nodeid} asks for Spark, so its name must say 'spark': the "
            "one process that runs the Spark tests is given them by it (tests/conftest.py)"
        )


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """With `--dist loadgroup` (pyproject.toml), the tests that start Spark are one unit,
    run one after another by one of the suite's processes, and first (the largest unit
    goes first): one Java virtual machine warms up in it, not one a process, and two
    Spark runs do not share two cores (540-565 s for the suite on two cores, 504 s so).
    Grouped by name, not by pytest-xdist's `xdist_group` mark, which pytest 9.2 no
    longer passes on (pytest-xdist#1386): every Spark test then ran where it fell."""
    if config.getoption("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadGroupScheduling

    class SparkTogether(LoadGroupScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            return "spark" if runs_spark(nodeid) else str(super()._split_scope(nodeid))

    return SparkTogether(config, log)


ON_A_TERMINAL_SECONDS = 300


def on_a_terminal(
    command: list[str], folder: Path, seeing: Callable[[bytes, int], None] | None = None
) -> tuple[int, bytes, bytes]:
    """Run `command` with its stderr on a pseudo-terminal: its exit code, what the
    terminal showed, and its stdout (kept in a file of `folder`: a pipe nobody reads
    while the terminal is read would fill and stop the process). `seeing` is given what
    the terminal has shown so far, and the process id, as it shows more."""
    import os
    import pty
    import select
    import subprocess
    import time

    leader, follower = pty.openpty()
    kept = folder / "stdout"
    with kept.open("wb") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=follower, env={**os.environ, "COLUMNS": "100"}
        )
    os.close(follower)
    seen = b""
    deadline = time.monotonic() + ON_A_TERMINAL_SECONDS
    while True:
        if time.monotonic() > deadline:  # a command that hangs fails the test, not the suite
            process.kill()
            pytest.fail(
                f"{command} still running after {ON_A_TERMINAL_SECONDS} s: {seen[-3000:]!r}"
            )
        # (a process it started and left behind may hold the terminal: done when the
        # process is, and the terminal has nothing more)
        if not select.select([leader], [], [], 1.0)[0]:
            if process.poll() is not None:
                break
            continue
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the terminal closed: the process is done with it
            break
        if not chunk:
            break
        seen += chunk
        if seeing is not None:
            seeing(seen, process.pid)
    process.wait(timeout=120)
    os.close(leader)
    return process.returncode, seen, kept.read_bytes()


def free_port() -> int:
    """A loopback port nobody listens on now (for a process told its port up front)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def t(**delta: float) -> DateTime:
    """A time relative to T0."""
    return T0 + pendulum.duration(**delta)


class Space:
    """A temp workspace with each operation run in its own transaction, as the CLI does."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def run(self, now: DateTime, op: Callable[..., Any], **kwargs: Any) -> Any:
        with service.opened(self.path, now, write=True) as workspace:
            return op(workspace, now, **kwargs)

    def track(self, now: DateTime, name: str = "Viewed", **kwargs: Any) -> service.TrackResult:
        return self.run(now, service.track, name=name, **kwargs)  # type: ignore[no-any-return]

    def identify(self, now: DateTime, identifier: str, **kwargs: Any) -> service.IdentifyResult:
        return self.run(now, service.identify, identifier=identifier, **kwargs)  # type: ignore[no-any-return]

    def read(self, now: DateTime, query: Callable[[Workspace], Any]) -> Any:
        with service.opened(self.path, now, write=False) as workspace:
            return query(workspace)

    def explain(self, now: DateTime, event_id: str) -> service.Explanation:
        return self.read(now, lambda ws: service.explain(ws, now, event_id=event_id))  # type: ignore[no-any-return]

    def profile(self, now: DateTime, identifier: str) -> service.Profile:
        return self.read(now, lambda ws: service.show(ws, now, identifier=identifier))  # type: ignore[no-any-return]

    def workspace(self) -> Workspace:
        return Workspace.open(self.path, create=False)


@pytest.fixture
def space(tmp_path: Path) -> Space:
    return Space(tmp_path / "ws.db")


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Any]]:
    """Run `cio-anon ARGS` against a temp workspace; returns the result (JSON parsed when
    --json is given and the exit code is 0)."""
    monkeypatch.setenv("CIO_ANON_DB", str(tmp_path / "cli.db"))
    monkeypatch.setenv("COLUMNS", "160")
    monkeypatch.delenv("CIO_ANON_NOW", raising=False)
    runner = CliRunner()

    def invoke(*args: str, code: int | None = 0) -> Any:
        """`code=None` accepts any exit code (and returns the raw result)."""
        result = runner.invoke(app, list(args))
        if code is None:
            return result
        assert result.exit_code == code, (result.output, result.exception)
        assert "Traceback" not in result.output
        if "--json" in args and code == 0:
            return json.loads(result.stdout)
        return result

    yield invoke
