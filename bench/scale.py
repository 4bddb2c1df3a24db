"""A workspace of millions of events built by `cio-anon replay` itself: the replay's peak
memory and time, then `log --person`, `show` and `explain` on the result (goal: each
under 0.3 s, and the replay's memory flat in the number of records).

    python bench/scale.py [--records 10000000] [--runs 5] [--keep FOLDER]

The fixture is the replay benchmark's traffic (`make_fixture.py`), written in slices of
500,000 records, each slice's ids and times its own (so no slice repeats another's
message ids, and time runs on), streamed to disk so the generator's memory stays flat.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_fixture import SLICE, stream  # noqa: E402


def write(path: Path, count: int) -> None:
    with path.open("wb") as out:
        for record in stream(count):
            out.write(orjson.dumps(record) + b"\n")


def timed(command: list[str]) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode not in (0, 1):
        raise SystemExit(done.stderr)
    return time.perf_counter() - started, done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=10_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--keep", type=Path, help="build in this folder and keep it")
    args = parser.parse_args()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="cio-anon-scale-"))
    folder.mkdir(parents=True, exist_ok=True)
    fixture, db = folder / "traffic.ndjson", folder / "scale.db"
    if not fixture.exists():
        # in a process of its own: a child forked from a big parent reports the parent's
        # peak as its own (Linux keeps the high-water mark across exec)
        writer = multiprocessing.get_context("spawn").Process(
            target=write, args=(fixture, args.records)
        )
        writer.start()
        writer.join()
    if not db.exists():
        started = time.perf_counter()
        child = subprocess.Popen(
            [sys.executable, "-m", "cio_anon", "replay", str(fixture), "--db", str(db)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        _, status, usage = os.wait4(child.pid, 0)
        elapsed = time.perf_counter() - started
        print(
            f"replay of {args.records:,} records: {elapsed:,.0f} s "
            f"({args.records / elapsed:,.0f} records/s), "
            f"peak RSS {usage.ru_maxrss / 1024:,.0f} MB, "
            f"exit {os.waitstatus_to_exitcode(status)}"
        )
    base = [sys.executable, "-m", "cio_anon"]
    at = ["--db", str(db), "--at", "2027-01-01T00:00:00Z"]
    # a person of the last slice, and one of their events
    person = f"s{(args.records - 1) // SLICE}-cust-1000"
    _, page = timed([*base, "log", "--person", person, "--json", "--limit", "50", *at])
    rows = json.loads(page)["identified"]
    event = next(row["event_id"] for row in rows if row["event_id"])
    print(f"workspace: {db.stat().st_size / 1e9:,.1f} GB; person {person}, event {event}")
    for label, command in (
        ("--help", [*base, "--help"]),
        ("log --person", [*base, "log", "--person", person, *at]),
        ("show", [*base, "show", person, *at]),
        ("explain", [*base, "explain", str(event), *at]),
    ):
        seconds = [timed(command)[0] for _ in range(args.runs)]
        print(f"{label:>13}: median {statistics.median(seconds):.3f} s over {args.runs} runs")
    if args.keep is None:
        for path in folder.iterdir():
            path.unlink()
        folder.rmdir()


if __name__ == "__main__":
    main()
