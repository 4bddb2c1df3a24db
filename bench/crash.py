"""Crash safety: a replay killed with SIGKILL at random moments leaves
`PRAGMA integrity_check` clean and the workspace exactly as before the file or
exactly as after it.

    python bench/crash.py [--trials 20] [--records 20000]
"""

from __future__ import annotations

import argparse
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_fixture import records  # noqa: E402

AT = ["--at", "2026-02-01T00:00:00Z"]


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "cio_anon", *args]


def dump(path: Path) -> str:
    conn = sqlite3.connect(path)
    try:
        if conn.execute("PRAGMA integrity_check").fetchone()[0] != "ok":
            raise SystemExit(f"integrity_check failed for {path}")
        return "\n".join(conn.iterdump())
    finally:
        conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--records", type=int, default=20_000)
    args = parser.parse_args()
    rng = random.Random(5)
    with tempfile.TemporaryDirectory() as folder:
        base = Path(folder)
        fixture = base / "fixture.ndjson"
        fixture.write_bytes(b"\n".join(orjson.dumps(r) for r in records(args.records, seed=3)))
        reference = base / "after.db"
        subprocess.run(
            cli("identify", "seed", "--db", str(reference), *AT), check=True, capture_output=True
        )
        before = dump(reference)
        start = time.perf_counter()
        subprocess.run(
            cli("replay", str(fixture), "--db", str(reference), *AT),
            check=True,
            capture_output=True,
        )
        duration = time.perf_counter() - start
        after = dump(reference)
        outcomes = {"before": 0, "after": 0}
        for trial in range(args.trials):
            db = base / f"trial-{trial}.db"
            subprocess.run(
                cli("identify", "seed", "--db", str(db), *AT), check=True, capture_output=True
            )
            process = subprocess.Popen(
                cli("replay", str(fixture), "--db", str(db), *AT),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(rng.uniform(0.05, duration * 1.1))
            process.send_signal(signal.SIGKILL)
            process.wait()
            state = dump(db)
            if state == before:
                outcomes["before"] += 1
            elif state == after:
                outcomes["after"] += 1
            else:
                raise SystemExit(f"trial {trial}: the workspace is neither before nor after")
    print(
        f"{args.trials} replays of {args.records:,} records ({duration:.1f} s each) killed "
        f"at random: integrity_check ok every time; {outcomes['before']} left the "
        f"workspace as before the file, {outcomes['after']} as after it, 0 in between"
    )


if __name__ == "__main__":
    main()
