"""Where `cio-anon audit` spends its time: each DuckDB statement of one audit, timed.

    python bench/audit_steps.py EXPORT [--memory-limit 1GB] [--top 15] [--explain TABLE ...]

Prints every statement's seconds as it finishes (on stderr, so a failing one is seen
with those before it; under one making a table, what the tables take by then, held in
memory and written out beyond the limit), then the slowest; an export from
`bench/audit.py`'s `write` reproduces the figures in docs/audit.md. `--explain
placed_counts` runs the statement making that table under DuckDB's profiler (`EXPLAIN
ANALYZE`, which makes the table too) and prints its operators, each with its own
seconds and rows, as a tree: which operator of a step grows with the records.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import time
from typing import Any

from cio_anon.audit import duckdb_engine
from cio_anon.cli import main as cli


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("export")
    parser.add_argument("--memory-limit", default="1GB")
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--explain", nargs="*", default=[], metavar="TABLE")
    args = parser.parse_args()
    explained = tuple(f"CREATE TABLE {table} AS " for table in args.explain)
    timings: list[tuple[float, str]] = []
    execute = duckdb_engine.DuckDB._execute

    def timed(self: duckdb_engine.DuckDB, sql: str, params: list[Any] | None = None) -> Any:
        started, text = time.perf_counter(), " ".join(sql.split())
        try:
            if not text.startswith(explained):  # (no table named: nothing starts so)
                return execute(self, sql, params)
            # (the table is made all the same; the statements making one use no result)
            plan = execute(self, f"EXPLAIN (ANALYZE, FORMAT json) {sql}", params).fetchall()
            print(f"\n{text[:60]}", file=sys.stderr)
            tree = json.loads(plan[0][1])
            for node in tree.get("operator") or tree.get("children", []):  # (2.0; 1.4)
                operators(node, 0)
            return None
        finally:
            seconds = time.perf_counter() - started
            timings.append((seconds, text))
            held = _tables_held(self) if text.startswith("CREATE TABLE") else ""
            print(f"{seconds:7.2f} s  {text[:100]}{held}", file=sys.stderr, flush=True)

    duckdb_engine.DuckDB._execute = timed  # type: ignore[method-assign]
    sys.argv = ["cio-anon", "audit", args.export, "--json", "--memory-limit", args.memory_limit]
    started = time.perf_counter()
    with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):
        cli()
    total = time.perf_counter() - started
    print(f"\naudit {total:.2f} s, of which DuckDB statements {sum(s for s, _ in timings):.2f} s")
    for seconds, text in sorted(timings, reverse=True)[: args.top]:
        print(f"{seconds:7.2f} s  {text[:100]}")


def _tables_held(db: duckdb_engine.DuckDB) -> str:
    """What the tables made so far take once a statement has made one: in DuckDB's
    memory, and written out to its spill (beyond `--memory-limit`)."""
    held, spilled = db.conn.execute(
        "SELECT memory_usage_bytes, temporary_storage_bytes FROM duckdb_memory() "
        "WHERE tag = 'IN_MEMORY_TABLE'"
    ).fetchone() or (0, 0)
    return f"\n{'':>11}(tables: {held / 1e6:,.0f} MB held, {spilled / 1e6:,.0f} MB written out)"


SHOWN = ("Join Type", "Conditions", "Groups", "Aggregates", "Table", "Function")
"""What of an operator's details `operators` prints beside its name."""


def operators(node: dict[str, Any], depth: int) -> None:
    """Print a profiled plan's operators (its JSON, as DuckDB 1.4 and later write it),
    each with its own seconds and the rows it gave, indented by depth."""
    name = node.get("name") or node.get("operator_name") or node.get("operator_type", "")
    seconds = node.get("timing", node.get("operator_timing", 0.0))
    rows = node.get("intermediate_rows", node.get("operator_cardinality", 0))
    info = node.get("extra_info") or {}
    shown = "; ".join(
        f"{key}: {' '.join(str(info[key]).split())}"[:70] for key in SHOWN if key in info
    )
    if name not in ("RESULT_COLLECTOR", "EXPLAIN_ANALYZE"):
        print(f"{seconds:7.2f} s {rows:>12,}  {'  ' * depth}{name}  {shown}", file=sys.stderr)
        depth += 1
    for child in node.get("children", []):
        operators(child, depth)


if __name__ == "__main__":
    main()
