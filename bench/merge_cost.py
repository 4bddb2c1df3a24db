"""An identify that merges k events costs O(k log n), not O(n): the same merge timed in
a workspace of 10,000 events and in one of 1,000,000 (goal: ratio <= 1.5).

    python bench/merge_cost.py [--small 10000] [--large 1000000] [--k 200] [--runs 7]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from seed import START, seed  # noqa: E402

from cio_anon import service  # noqa: E402
from cio_anon.store import Workspace  # noqa: E402


def add_pending(db: Path, runs: int, k: int) -> None:
    """k anonymous events for each of `runs` ids, waiting for their identify."""
    workspace = Workspace.open(db, create=False)
    with workspace.transaction():
        workspace.conn.executemany(
            "INSERT INTO events (event_id, name, type, data, timestamp, received_at, "
            "anonymous_id, rule) VALUES (?, 'Added to Cart', 'event', '{}', ?, ?, ?, "
            "'anonymous')",
            (
                (f"merge-{run}-{i}", START + i, START + i, f"merge-{run}")
                for run in range(runs)
                for i in range(k)
            ),
        )
    workspace.close()


def time_merges(db: Path, runs: int, k: int) -> list[float]:
    now = datetime.fromtimestamp(START + 86_400, UTC)
    times = []
    for run in range(runs):
        workspace = Workspace.open(db, create=False)
        start = time.perf_counter()
        with workspace.transaction():
            result = service.identify(
                workspace, now, identifier=f"shopper-{run}", anonymous_id=f"merge-{run}"
            )
        times.append(time.perf_counter() - start)
        workspace.close()
        assert len(result.merged) == k, len(result.merged)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--large", type=int, default=1_000_000)
    parser.add_argument("--k", type=int, default=200)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    medians = {}
    with tempfile.TemporaryDirectory() as folder:
        for size in (args.small, args.large):
            db = Path(folder) / f"{size}.db"
            seed(db, anonymous=size)
            add_pending(db, args.runs, args.k)
            times = time_merges(db, args.runs, args.k)
            medians[size] = statistics.median(times)
            print(
                f"workspace of {size:,} events: identify merging {args.k} events, "
                f"median {medians[size] * 1000:.1f} ms over {args.runs} runs"
            )
    ratio = medians[args.large] / medians[args.small]
    print(f"ratio {args.large:,} / {args.small:,}: {ratio:.2f} (goal <= 1.5)")


if __name__ == "__main__":
    main()
