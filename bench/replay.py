"""Replay throughput against the floor a SQLite store can reach, timed in one run, on
three shapes of traffic.

    python bench/replay.py [--records 500000] [--runs 3] [--shapes fixture,sessions,hostile]

The shapes: `fixture` (`make_fixture.py`: anonymous tracks over many ids, identifies
that merge, profile merges), `sessions` and `hostile` (`make_sessions.py`). For each,
the floor parses the same file with orjson and inserts the same event rows (times
parsed, duplicates ignored) with one bare `sqlite3.executemany` into the same table
layout, with the same indexes (a fresh workspace). The goal: the replay runs at no less
than 0.35 x the floor's event rate on every shape.
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import sys
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import timed  # noqa: E402
from make_fixture import records  # noqa: E402
from make_sessions import SHAPES, generate  # noqa: E402

from cio_anon.clock import parse_time  # noqa: E402
from cio_anon.models import Settings  # noqa: E402
from cio_anon.replay import replay_into  # noqa: E402
from cio_anon.store import Workspace  # noqa: E402


def floor(fixture: Path, db: Path) -> tuple[float, int]:
    """Parse every line with orjson and executemany the event rows; seconds, rows."""

    def run() -> int:
        rows = []
        with fixture.open("rb") as handle:
            for line in handle:
                message = orjson.loads(line)
                if message.get("type") != "track":
                    continue
                at = parse_time(message["receivedAt"]).timestamp()
                rows.append(
                    (
                        message["messageId"],
                        message["event"],
                        "event",
                        orjson.dumps(message["properties"]).decode(),
                        parse_time(message["timestamp"]).timestamp(),
                        at,
                        None,
                        message.get("anonymousId"),
                        None,
                        None,
                        None,
                        "anonymous",
                        0,
                        None,
                    )
                )
        now = datetime.now(UTC)
        workspace = Workspace.open(db, create=True, initial=Settings(now, True))
        with workspace.transaction():
            workspace.conn.executemany(
                "INSERT OR IGNORE INTO events (event_id, name, type, data, timestamp, received_at, "
                "cio_id, anonymous_id, recipient, provenance, merged_at, rule, can_trigger, "
                "source) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                rows,
            )
        workspace.close()
        return len(rows)

    return timed(run)


WRITTEN = ("events", "journal", "activities", "people", "assignments", "handled_messages")
"""The tables a replay of the fixture writes to."""


def writes_alone(replayed: Path, db: Path) -> tuple[float, int]:
    """Every row the replay wrote (read back from its workspace) inserted with bare
    `executemany` into a fresh workspace, as the floor inserts its events: what the
    replay's writes cost with no parsing and no deciding at all. Seconds, rows."""
    source = sqlite3.connect(replayed)
    tables = {}
    for table in WRITTEN:
        columns = [row[1] for row in source.execute(f"PRAGMA table_info({table})")]
        rows = source.execute(f"SELECT {', '.join(columns)} FROM {table} ORDER BY rowid")
        tables[table] = (columns, rows.fetchall())
    source.close()

    def run() -> int:
        workspace = Workspace.open(db, create=True, initial=Settings(datetime.now(UTC), True))
        with workspace.transaction():
            workspace.conn.execute("DELETE FROM journal")  # the new workspace's first entry
            for table, (columns, rows) in tables.items():
                marks = ", ".join("?" * len(columns))
                workspace.conn.executemany(
                    f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows
                )
        workspace.close()
        return sum(len(rows) for _, rows in tables.values())

    return timed(run)


@dataclass
class Measured:
    shape: str
    stored: int
    rows: int
    written: int
    ours: float
    floor: float
    alone: float

    @property
    def ratio(self) -> float:
        return (self.stored / self.ours) / (self.rows / self.floor)


def write_shape(shape: str, count: int, folder: Path) -> Path:
    """`count` records of `shape` (the fixture, or a `make_sessions` shape) as NDJSON in
    `folder`."""
    fixture = folder / f"{shape}.ndjson"
    made = records(count, seed=7) if shape == "fixture" else generate(shape, count)
    with fixture.open("wb") as handle:
        for record in made:
            handle.write(orjson.dumps(record) + b"\n")
    return fixture


def measure(shape: str, count: int, runs: int, folder: Path) -> Measured:
    """Medians of `runs` interleaved runs of the replay, the floor and the replay's own
    rows written alone, on `count` records of `shape`."""
    fixture = write_shape(shape, count, folder)
    kept = folder / "replayed.db"
    ours: list[float] = []
    floors: list[float] = []
    alone: list[float] = []
    stored = rows = written = 0
    for run in range(runs):  # interleaved, so all see the same machine load
        db = folder / f"floor-{run}.db"
        seconds, rows = floor(fixture, db)
        floors.append(seconds)
        db.unlink()
        db = folder / f"ours-{run}.db"
        seconds, summary = timed(partial(replay_into, db, datetime.now(UTC), [fixture]))
        assert summary.ok, summary.invalid[:3]
        stored = summary.tally.stored
        ours.append(seconds)
        db.replace(kept)
        db = folder / f"alone-{run}.db"
        seconds, written = writes_alone(kept, db)
        alone.append(seconds)
        db.unlink()
    fixture.unlink()
    return Measured(
        shape,
        stored,
        rows,
        written,
        statistics.median(ours),
        statistics.median(floors),
        statistics.median(alone),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=500_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--shapes", default=",".join(("fixture", *SHAPES)))
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as folder:
        for shape in args.shapes.split(","):
            found = measure(shape, args.records, args.runs, Path(folder))
            results.append(found)
            print(
                f"{shape}: {args.records:,} records, {found.stored:,} events stored "
                f"(floor rows {found.rows:,}); replay {found.ours:.2f} s = "
                f"{found.stored / found.ours:,.0f} events/s, floor {found.floor:.2f} s, "
                f"ratio {found.ratio:.2f}; its {found.written:,} rows alone "
                f"{found.alone:.2f} s (ceiling {found.floor / found.alone:.2f})",
                flush=True,
            )
    print(f"\nmedians of {args.runs} runs, {args.records:,} records (goal: ratio >= 0.35)")
    print("| shape | replay | floor | ratio | rows written alone | ceiling |")
    print("|---|---|---|---|---|---|")
    for m in results:
        print(
            f"| {m.shape} | {m.ours:.2f} s | {m.floor:.2f} s | {m.ratio:.2f} | "
            f"{m.alone:.2f} s | {m.floor / m.alone:.2f} |"
        )


if __name__ == "__main__":
    main()
