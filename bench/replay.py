"""Replay throughput against the floor a SQLite store can reach, timed in one run.

    python bench/replay.py [--records 500000] [--runs 3]

The floor parses the same fixture with orjson and inserts the same event rows with
one bare `sqlite3.executemany` into the same table layout, with the same indexes
(a fresh workspace). The goal: the replay runs at no less than half the floor's
event rate.
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import timed  # noqa: E402
from make_fixture import records  # noqa: E402

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
                "INSERT INTO events (event_id, name, type, data, timestamp, received_at, "
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=500_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        fixture = Path(folder) / "fixture.ndjson"
        with fixture.open("wb") as handle:
            for record in records(args.records, seed=7):
                handle.write(orjson.dumps(record) + b"\n")
        ours: list[float] = []
        floors: list[float] = []
        stored = rows = 0

        def run_ours() -> float:
            nonlocal stored
            db = Path(folder) / f"ours-{len(ours)}.db"
            seconds, summary = timed(lambda: replay_into(db, datetime.now(UTC), [fixture]))
            assert summary.ok, summary.invalid[:3]
            stored = summary.tally.stored
            ours.append(seconds)
            db.replace(kept)  # the last one stays, for `writes_alone`
            return seconds

        def run_floor() -> float:
            nonlocal rows
            db = Path(folder) / f"floor-{len(floors)}.db"
            seconds, rows = floor(fixture, db)
            floors.append(seconds)
            db.unlink()
            return seconds

        kept = Path(folder) / "replayed.db"
        alone: list[float] = []
        for run in range(args.runs):  # interleaved, so all see the same machine load
            run_floor()
            run_ours()
            db = Path(folder) / f"alone-{run}.db"
            seconds, written = writes_alone(kept, db)
            alone.append(seconds)
            db.unlink()
        ours_s = statistics.median(ours)
        floor_s = statistics.median(floors)
        alone_s = statistics.median(alone)
    ours_rate = stored / ours_s
    floor_rate = rows / floor_s
    print(f"records: {args.records:,}; events stored by replay: {stored:,}; floor rows: {rows:,}")
    print(
        f"replay: median {ours_s:.2f} s over {args.runs} runs = {ours_rate:,.0f} events/s "
        f"({args.records / ours_s:,.0f} records/s)"
    )
    print(f"floor : median {floor_s:.2f} s over {args.runs} runs = {floor_rate:,.0f} events/s")
    print(f"ratio (replay / floor, events/s): {ours_rate / floor_rate:.2f}  (goal: >= 0.50)")
    print(
        f"replay's own rows ({written:,} in {len(WRITTEN)} tables) written alone with "
        f"executemany: median {alone_s:.2f} s = {alone_s / floor_s:.2f} x the floor's time, "
        f"so no replay that writes them can pass {floor_s / alone_s:.2f} x the floor"
    )


if __name__ == "__main__":
    main()
