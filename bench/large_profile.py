"""`log --person` and `show` for a person with 100,000 events: the first page must
render in under 0.3 s (pagination with a cursor, counts by index).

    python bench/large_profile.py [--events 100000] [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from seed import seed  # noqa: E402


def run(command: list[str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(done.stderr)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        db = Path(folder) / "big.db"
        seed(db, person_events=args.events, anonymous=args.events)
        base = [sys.executable, "-m", "cio_anon"]
        at = ["--db", str(db), "--at", "2026-03-10T00:00:00Z"]
        startup = statistics.median(run([*base, "--help"]) for _ in range(args.runs))
        print(
            f"person with {args.events:,} events, {args.events // 10:,} activities; "
            f"{args.events:,} anonymous events elsewhere"
        )
        print(f"start-up (cio-anon --help): median {startup:.3f} s")
        for label, command in (
            ("log --person big (first page)", [*base, "log", "--person", "big", *at]),
            ("log --person big --json", [*base, "log", "--person", "big", "--json", *at]),
            ("show big", [*base, "show", "big", *at]),
            ("show big --json", [*base, "show", "big", "--json", *at]),
        ):
            total = statistics.median(run(command) for _ in range(args.runs))
            print(
                f"{label:32} median {total:.3f} s  (minus start-up: {total - startup:.3f} s;"
                f" goal < 0.3 s)"
            )


if __name__ == "__main__":
    main()
