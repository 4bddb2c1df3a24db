"""`cio-anon audit` on DuckDB over generated Data Pipelines traffic: records per second
(goal: at least 500,000/s on NDJSON on this 2-core machine) and peak memory, at two
sizes to show the time grows linearly; at each size, beside it, the plain stitching a
data team would run instead (`STITCH`), on the same file in the same run; with
`--spark`, the first size on Spark (local mode) too, its time beside DuckDB's.

    python bench/audit.py [--records 2000000 20000000] [--runs 3] [--memory-limit 1GB] [--spark]

Every size is audited and stitched once a round, `--runs` rounds; the figures are the
medians (peak memory: the largest), and the growth from one size to the next is the
median of each round's (the sizes measured minutes apart, not a quarter of an hour).
"""

from __future__ import annotations

import argparse
import compileall
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_fixture import SLICE, stream  # noqa: E402

BASE = 2_000_000

STITCH = """
COPY (
    WITH calls AS (
        SELECT json ->> 'messageId' AS message_id,
               json ->> 'anonymousId' AS anonymous_id,
               json ->> 'userId' AS user_id,
               TRY_CAST(json ->> 'receivedAt' AS DOUBLE) AS received_at
        FROM read_json_objects(?, format = 'newline_delimited')
    ),
    stitched AS (
        SELECT DISTINCT anonymous_id,
               last_value(user_id IGNORE NULLS) OVER (
                   PARTITION BY anonymous_id ORDER BY received_at
                   ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING
               ) AS stitched_user_id
        FROM calls
        WHERE anonymous_id IS NOT NULL
    )
    SELECT message_id, coalesce(user_id, stitched_user_id) AS user_id
    FROM calls LEFT JOIN stitched USING (anonymous_id)
) TO ? (FORMAT parquet)
"""
"""The warehouse's usual identity stitching (dbt-segment's `segment_web_user_stitching`):
each anonymous id belongs to the last user id ever seen with it, over all time, and an
event to its own user id or else its anonymous id's. No window, no retention, no 72
hours, no duplicates dropped, no findings: the floor `audit` is compared with."""


def write(path: Path, count: int) -> None:
    """`count` records of the replay benchmark's traffic as an export holds it (profile
    merges left out), every slice's ids its own (`make_fixture.stream`). Beyond BASE
    records, copies of the first BASE with their slices renamed again: the same traffic
    from other people, written in seconds instead of generated for minutes."""
    base = b"".join(orjson.dumps(r) + b"\n" for r in stream(min(count, BASE), merges=False))
    slices = BASE // SLICE
    with path.open("wb") as out:
        out.write(base)
        written, copy = base.count(b"\n"), 1
        while written < count:
            renamed = base
            for index in range(slices):
                renamed = renamed.replace(
                    f'"s{index}-'.encode(), f'"s{copy * slices + index}-'.encode()
                )
            lines = renamed.splitlines(keepends=True)[: count - written]
            out.write(b"".join(lines))
            written += len(lines)
            copy += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, nargs="+", default=[2_000_000, 20_000_000])
    parser.add_argument("--memory-limit", default="1GB")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--spark", action="store_true")
    args = parser.parse_args()
    # timed as installed: `pip install` compiles a package's bytecode; an editable install
    # (or PYTHONDONTWRITEBYTECODE=1) leaves none, and each audit would compile it again
    import cio_anon

    compileall.compile_dir(Path(cio_anon.__file__).parent, quiet=1)
    with tempfile.TemporaryDirectory() as folder:
        exports = []
        for count in args.records:
            export = Path(folder) / f"traffic-{count}.ndjson"
            # in a process of its own: a child forked from a big parent reports the
            # parent's peak memory as its own (Linux keeps it across exec)
            writer = multiprocessing.get_context("spawn").Process(
                target=write, args=(export, count)
            )
            writer.start()
            writer.join()
            exports.append(export)
        # every size once in each round, so that each meets the machine's moods of that
        # round: the growth from one size to the next is taken run by run, minutes apart
        # at most, not between sizes measured a quarter of an hour apart
        audits: list[list[tuple[float, int, Any]]] = [[] for _ in exports]
        stitchings: list[list[tuple[float, int, Any]]] = [[] for _ in exports]
        for _ in range(args.runs):
            for index, export in enumerate(exports):
                audits[index].append(run([str(export), "--memory-limit", args.memory_limit]))
                stitchings[index].append(stitched(export, args.memory_limit))
        if args.spark:
            spark, spark_status, _ = run([str(exports[0]), "--engine", "spark"])
            print(
                f"{args.records[0]:>11,} records on Spark (local mode): {spark:,.1f} s = "
                f"{args.records[0] / spark:,.0f} records/s; "
                f"exit {os.waitstatus_to_exitcode(spark_status)}"
            )
        for index, (count, export) in enumerate(zip(args.records, exports, strict=True)):
            elapsed, status, usage = _median(audits[index])
            plain, _, plain_usage = _median(stitchings[index])
            growth = ""
            if index:
                before = args.records[index - 1]
                each = [
                    now[0] / then[0]
                    for now, then in zip(audits[index], audits[index - 1], strict=True)
                ]
                growth = (
                    f"; time ×{statistics.median(each):.1f} for records ×{count / before:.0f} "
                    f"(the median of each round's: {', '.join(f'×{g:.1f}' for g in each)})"
                )
            print(
                f"{count:>11,} records ({export.stat().st_size / 1e6:,.0f} MB): "
                f"{elapsed:,.1f} s = {count / elapsed:,.0f} records/s (goal >= 500,000); "
                f"peak RSS {usage.ru_maxrss / 1024:,.0f} MB (memory limit "
                f"{args.memory_limit}); exit {os.waitstatus_to_exitcode(status)}{growth}"
            )
            print(
                f"{'':>11} plain stitching of the same file: {plain:,.1f} s, peak RSS "
                f"{plain_usage.ru_maxrss / 1024:,.0f} MB; audit at {plain / elapsed:.2f} x "
                "its speed (goal >= 0.5)"
            )


def _median(runs: list[tuple[float, int, Any]]) -> tuple[float, int, Any]:
    """The median time of the runs, the worst status, the usage of the run with the
    largest peak memory."""
    seconds = statistics.median(elapsed for elapsed, _, _ in runs)
    status = max(status for _, status, _ in runs)
    return seconds, status, max((usage for *_, usage in runs), key=lambda u: u.ru_maxrss)


def run(arguments: list[str]) -> tuple[float, int, Any]:
    """`cio-anon audit ARGUMENTS --json` in a child process: seconds, status, usage."""
    started = time.perf_counter()
    child = subprocess.Popen(
        [sys.executable, "-m", "cio_anon", "audit", *arguments, "--json"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _, status, usage = os.wait4(child.pid, 0)
    return time.perf_counter() - started, status, usage


def stitched(export: Path, memory_limit: str) -> tuple[float, int, Any]:
    """`STITCH` over the export on DuckDB in a child process, as `run` runs `audit`, with
    the same memory limit and every core: seconds, status, usage."""
    started = time.perf_counter()
    child = subprocess.Popen([sys.executable, __file__, "--stitch", str(export), memory_limit])
    _, status, usage = os.wait4(child.pid, 0)
    return time.perf_counter() - started, status, usage


def stitch(export: str, memory_limit: str) -> None:
    import duckdb  # noqa: PLC0415 (the child's only work)

    with tempfile.TemporaryDirectory() as folder:
        connection = duckdb.connect()
        connection.execute(f"SET memory_limit = '{memory_limit}'")
        connection.execute(STITCH, [export, str(Path(folder) / "stitched.parquet")])
        connection.close()


if __name__ == "__main__" and sys.argv[1:2] == ["--stitch"]:
    stitch(sys.argv[2], sys.argv[3])
elif __name__ == "__main__":
    main()
