"""Purge of 1,000,000 expired anonymous events: linear, and never holding the write
lock for more than a second at a time (deletes in chunks).

    python bench/purge.py [--events 1000000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from seed import seed  # noqa: E402

from cio_anon import service  # noqa: E402


def purge_timed(db: Path) -> tuple[float, list[float], int]:
    """Run the chunked purge the CLI runs, timing each chunk's transaction."""
    now = datetime(2026, 3, 1, tzinfo=UTC)
    chunks: list[float] = []
    deleted = 0
    start = time.perf_counter()
    while True:
        began = time.perf_counter()
        with service.opened(db, now, write=True) as workspace:
            result = service.purge(workspace, now, limit=service.PURGE_CHUNK)
        chunks.append(time.perf_counter() - began)
        deleted += result.total
        if result.total < service.PURGE_CHUNK:
            return time.perf_counter() - start, chunks, deleted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        rates = []
        for size in (args.events // 10, args.events):
            db = Path(folder) / f"purge-{size}.db"
            seed(db, anonymous=size, expired=True)
            total, chunks, deleted = purge_timed(db)
            rates.append(deleted / total)
            full = chunks[:-1] or chunks
            third = max(1, len(full) // 3)
            first, last = sum(full[:third]) / third, sum(full[-third:]) / third
            print(
                f"{deleted:,} events purged in {total:.2f} s ({deleted / total:,.0f}/s); "
                f"{len(chunks)} chunks of {service.PURGE_CHUNK:,}; longest write lock "
                f"{max(chunks):.3f} s (goal <= 1 s); mean chunk first third {first:.3f} s, "
                f"last third {last:.3f} s (linear: no growth)"
            )
        print(
            f"events/s at {args.events:,} / events/s at {args.events // 10:,}: "
            f"{rates[1] / rates[0]:.2f} (a 10x larger file: more page-cache misses)"
        )


if __name__ == "__main__":
    main()
