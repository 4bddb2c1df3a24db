"""`cio-anon check` of 100,000 fixture records against a plan of 50 events, against
`cio-anon replay` of the same fixture (goal: check at no less than half replay's speed),
and the peak memory of `cio-anon check` run on it as a command (its largest process).

    python bench/check.py [--records 100000] [--runs 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import orjson
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import timed  # noqa: E402
from make_fixture import records  # noqa: E402

from cio_anon.check import check  # noqa: E402
from cio_anon.check.plans import load_plan  # noqa: E402
from cio_anon.replay import replay_into  # noqa: E402


def plan_of_50() -> dict[str, object]:
    events: dict[str, object] = {
        name: {
            "properties": {
                "sku": {"type": "string", "required": True},
                "price": {"type": "number", "minimum": 0},
            }
        }
        for name in ("Product Viewed", "Added to Cart", "Collection Viewed")
    }
    events["Order Completed"] = {"properties": {"total": {"type": "number"}}}
    events["Late Tab Event"] = {}
    for index in range(45):
        events[f"Planned Event {index}"] = {"properties": {"value": "number"}}
    return {"naming": {"events": "Title Case"}, "events": events}


PEAK = (
    "import resource, subprocess, sys; "
    "subprocess.run([sys.executable, *sys.argv[1:]], capture_output=True); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
)
"""Runs a command and prints its peak memory (KiB, its largest process), from a small
process of its own: a child forked from this one would count this one's memory too."""


def peak_memory(arguments: list[str]) -> float:
    """The peak memory of this Python run with `arguments`, in MB."""
    done = subprocess.run(  # noqa: S603 (this Python)
        [sys.executable, "-c", PEAK, *arguments], capture_output=True, text=True, check=True
    )
    return int(done.stdout) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    now = datetime.now(UTC)
    with tempfile.TemporaryDirectory() as folder:
        fixture = Path(folder) / "fixture.ndjson"
        fixture.write_bytes(b"\n".join(orjson.dumps(r) for r in records(args.records, seed=9)))
        plan_path = Path(folder) / "plan.yaml"
        plan_path.write_text(yaml.safe_dump(plan_of_50()))
        plan = load_plan(plan_path)
        checks, replays = [], []
        for run in range(args.runs):
            seconds, report = timed(lambda: check([fixture], plan, now))
            checks.append(seconds)
            db = Path(folder) / f"replay-{run}.db"
            replays.append(timed(lambda db=db: replay_into(db, now, [fixture]))[0])  # type: ignore[misc]
        check_command = ["-m", "cio_anon", "check", str(fixture), "--plan", str(plan_path)]
        peak_mb = peak_memory(check_command)
    check_s, replay_s = statistics.median(checks), statistics.median(replays)
    print(
        f"{args.records:,} records, plan of {len(plan.events)} events: "
        f"{len(report.findings):,} findings"
    )
    print(f"check : median {check_s:.2f} s ({args.records / check_s:,.0f} records/s)")
    print(f"replay: median {replay_s:.2f} s ({args.records / replay_s:,.0f} records/s)")
    print(f"check speed / replay speed: {replay_s / check_s:.2f} (goal >= 0.50)")
    print(f"check's peak memory: {peak_mb:.0f} MB")


if __name__ == "__main__":
    main()
