"""Concurrent writers, killed replays, hostile input."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cio_anon import service
from cio_anon.store import Workspace
from tests import writers

ROOT = Path(__file__).resolve().parent.parent


pytestmark = pytest.mark.slow


def test_concurrent_writers_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    codes = writers.run(path, workers=8, events=40)
    assert codes == [0] * 8
    assert writers.check(path, workers=8, events=40) == []


def test_processes_creating_one_workspace_at_once_all_succeed(tmp_path: Path) -> None:
    paths = [tmp_path / f"new-{trial}.db" for trial in range(16)]
    assert writers.create_together(paths, workers=8) == [[None] * 8] * len(paths)
    for path in paths:
        with service.opened(path, writers.T0, write=False) as workspace:
            assert workspace.summary()["anonymous_events"] == 8
        assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".new")] == []


def test_a_failed_first_command_removes_only_an_untouched_workspace(tmp_path: Path) -> None:
    untouched, written = tmp_path / "untouched.db", tmp_path / "written.db"
    for path in (untouched, written):
        with service.opened(path, writers.T0, write=True):
            pass
    with service.opened(written, writers.T0, write=True) as workspace:
        service.track(workspace, writers.T0, name="Viewed", anonymous_id="a")
    Workspace.discard(untouched)
    Workspace.discard(written)
    assert not untouched.exists()
    with service.opened(written, writers.T0, write=False) as workspace:
        assert workspace.summary()["anonymous_events"] == 1


def _dump(path: Path) -> str:
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return "\n".join(conn.iterdump())
    finally:
        conn.close()


@pytest.mark.parametrize("delay", [0.4, 0.8, 1.2])
def test_a_killed_replay_leaves_the_workspace_before_or_after(tmp_path: Path, delay: float) -> None:
    sys.path.insert(0, str(ROOT / "bench"))
    import orjson
    from make_fixture import records

    fixture = tmp_path / "big.ndjson"
    fixture.write_bytes(b"\n".join(orjson.dumps(r) for r in records(6000, seed=11)))
    db = tmp_path / "ws.db"
    after_db = tmp_path / "after.db"
    at = ["--at", "2026-02-01T00:00:00Z"]
    for path in (db, after_db):
        subprocess.run(
            [sys.executable, "-m", "cio_anon", "identify", "seed", "--db", str(path), *at],
            check=True,
            capture_output=True,
        )
    before = _dump(db)
    process = subprocess.Popen(
        [sys.executable, "-m", "cio_anon", "replay", str(fixture), "--db", str(db), *at],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(delay)
    process.send_signal(signal.SIGKILL)
    process.wait()
    state = _dump(db)
    if state != before:
        subprocess.run(
            [sys.executable, "-m", "cio_anon", "replay", str(fixture), "--db", str(after_db), *at],
            check=True,
            capture_output=True,
        )
        assert state == _dump(after_db)
