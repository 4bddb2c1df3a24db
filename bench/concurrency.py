"""Concurrent writers: 8 processes each tracking 500 events and identifying people into
one workspace at the same time; every event present, every merge correct, no
"database is locked" reaching anyone. Then `--fresh` rounds in which the same
processes start together on a workspace path that does not exist yet: every one of
them must open the same complete workspace.

    python bench/concurrency.py [--workers 8] [--events 500] [--fresh 100]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests import writers  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--events", type=int, default=500)
    parser.add_argument("--fresh", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        db = Path(folder) / "shared.db"
        start = time.perf_counter()
        codes = writers.run(db, args.workers, args.events)
        elapsed = time.perf_counter() - start
        problems = writers.check(db, args.workers, args.events)
        paths = [Path(folder) / f"fresh-{n}.db" for n in range(args.fresh)]
        start = time.perf_counter()
        rounds = writers.create_together(paths, args.workers)
        fresh_elapsed = time.perf_counter() - start
    failures = [error for trial in rounds for error in trial if error is not None]
    failed_rounds = sum(any(trial) for trial in rounds)
    calls = args.workers * (args.events + args.events // writers.EVENTS_PER_ID)
    print(
        f"{args.workers} processes x {args.events} events (+ {args.events // 10} identifies "
        f"each): {calls:,} write transactions in {elapsed:.1f} s ({calls / elapsed:,.0f}/s)"
    )
    print(f"exit codes: {codes}")
    print(
        "every event present, every merge correct"
        if not problems
        else "PROBLEMS:\n" + "\n".join(problems[:20])
    )
    print(
        f"{args.fresh} rounds of {args.workers} processes creating one new workspace "
        f"together in {fresh_elapsed:.1f} s: {failed_rounds} rounds with a failure"
        + (f" (first: {failures[0]})" if failures else "")
    )
    if problems or any(codes) or failures:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
