"""Where `cio-anon audit` spends its time: each DuckDB statement of one audit, timed.

    python bench/audit_steps.py EXPORT [--memory-limit 1GB] [--top 15]

Prints every statement's seconds as it finishes (on stderr, so a failing one is seen
with those before it), then the slowest; an export from `bench/audit.py`'s `write`
reproduces the figures in docs/audit.md.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import time
from typing import Any

from cio_anon.audit import engines
from cio_anon.cli import main as cli


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("export")
    parser.add_argument("--memory-limit", default="1GB")
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    timings: list[tuple[float, str]] = []
    execute = engines.DuckDB._execute

    def timed(self: engines.DuckDB, sql: str, params: list[Any] | None = None) -> Any:
        started = time.perf_counter()
        try:
            return execute(self, sql, params)
        finally:
            seconds, text = time.perf_counter() - started, " ".join(sql.split())
            timings.append((seconds, text))
            print(f"{seconds:7.2f} s  {text[:100]}", file=sys.stderr, flush=True)

    engines.DuckDB._execute = timed  # type: ignore[method-assign]
    sys.argv = ["cio-anon", "audit", args.export, "--json", "--memory-limit", args.memory_limit]
    started = time.perf_counter()
    with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):
        cli()
    total = time.perf_counter() - started
    print(f"\naudit {total:.2f} s, of which DuckDB statements {sum(s for s, _ in timings):.2f} s")
    for seconds, text in sorted(timings, reverse=True)[: args.top]:
        print(f"{seconds:7.2f} s  {text[:100]}")


if __name__ == "__main__":
    main()
