"""The set-based placement (`cio_anon.setrules`) on generated traffic: how fast one SQL
statement places a stream, against the floor of `bench/replay.py` (parse with orjson,
one `executemany`) — the headroom a set-based replay has.

    python bench/setrules.py [--records 1000000]
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_fixture import records as generated  # noqa: E402

from cio_anon.audit import setrules  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    args = parser.parse_args()
    stream = [r for r in generated(args.records, seed=7) if "method" not in r]
    lines = [orjson.dumps(r) for r in stream]

    started = time.perf_counter()
    parsed = [orjson.loads(line) for line in lines]
    placed = setrules.place(parsed)
    set_based = time.perf_counter() - started

    started = time.perf_counter()
    rows = [orjson.loads(line) for line in lines]
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (id TEXT, a TEXT, b TEXT, data TEXT, ts REAL, r REAL)")
    conn.executemany(
        "INSERT INTO t VALUES (?, ?, ?, ?, ?, ?)",
        [
            (
                r.get("messageId"),
                r.get("anonymousId"),
                r.get("userId"),
                orjson.dumps(r.get("properties")).decode(),
                r.get("timestamp"),
                r.get("receivedAt"),
            )
            for r in rows
        ],
    )
    conn.commit()
    floor = time.perf_counter() - started
    counts: dict[str, int] = {}
    for placement in placed:
        counts[placement.rule] = counts.get(placement.rule, 0) + 1
    print(f"{len(stream):,} records, {len(placed):,} events placed")
    print(f"set-based placement: {set_based:.2f} s = {len(placed) / set_based:,.0f} events/s")
    print(f"floor (parse + executemany): {floor:.2f} s; ratio {floor / set_based:.2f}")
    print("rules:", ", ".join(f"{rule} {n:,}" for rule, n in sorted(counts.items())))


if __name__ == "__main__":
    main()
