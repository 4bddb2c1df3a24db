"""Peak memory of `cio-anon replay` on large generated fixtures (goal: at most 300 MB,
and not growing with the number of records).

    python bench/replay_memory.py [--records 1000000 5000000]

The fixture is the replay benchmark's traffic in slices of 500,000 records with their
own ids (`make_fixture.py --slices`). Each replay runs in its own process; its peak
resident set size is read from the kernel when it ends (`ru_maxrss`). A file this
large is read ahead by a second process (`cio_anon.replay.ahead`); its peak is measured
on its own after the replay, reading the same file with nothing taking its records.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cio_anon.replay import ahead


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, nargs="+", default=[1_000_000, 5_000_000])
    args = parser.parse_args()
    here = Path(__file__).resolve().parent
    for count in args.records:
        with tempfile.TemporaryDirectory() as folder:
            fixture = Path(folder) / "big.ndjson"
            subprocess.run(
                [
                    sys.executable,
                    str(here / "make_fixture.py"),
                    str(fixture),
                    "--records",
                    str(count),
                    "--slices",
                ],
                check=True,
            )
            db = Path(folder) / "big.db"
            started = time.perf_counter()
            child = subprocess.Popen(
                [sys.executable, "-m", "cio_anon", "replay", str(fixture), "--db", str(db)]
                + ["--at", "2026-06-01T00:00:00Z", "--json"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            _, status, usage = os.wait4(child.pid, 0)
            elapsed = time.perf_counter() - started
            size = fixture.stat().st_size
            print(
                f"{count:>10,} records ({size / 1e6:,.0f} MB): peak RSS "
                f"{usage.ru_maxrss / 1024:,.0f} MB (goal <= 300 MB), {elapsed:,.0f} s, "
                f"exit {os.waitstatus_to_exitcode(status)}"
            )
            # the second process that reads a large file ahead (`replay.ahead`), alone
            reader = subprocess.Popen(
                ahead.command([fixture]),
                stdout=subprocess.DEVNULL,
            )
            _, status, usage = os.wait4(reader.pid, 0)
            print(
                f"{'':>10} reading ahead alone: peak RSS {usage.ru_maxrss / 1024:,.0f} MB, "
                f"exit {os.waitstatus_to_exitcode(status)}"
            )


if __name__ == "__main__":
    main()
