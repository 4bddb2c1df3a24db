"""Start-up: `cio-anon --help` and one `cio-anon track ...` against `sqlite-utils --help`
on the same machine (goal: ratio <= 1.0).

    python bench/startup.py [--runs 15]

Both are timed as installed: `pip install` compiles a package's bytecode, so sqlite-utils
has its `.pyc` files; an editable install of cio-anon (or PYTHONDONTWRITEBYTECODE=1)
leaves none, and every run would compile the sources again. The script compiles
cio-anon's bytecode first (`compileall`, into `__pycache__`, which git ignores).
"""

from __future__ import annotations

import argparse
import compileall
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def once(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, capture_output=True, check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    cio = shutil.which("cio-anon")
    reference = shutil.which("sqlite-utils")
    if cio is None or reference is None:
        raise SystemExit("needs cio-anon and sqlite-utils on PATH (pip install -e .)")
    import cio_anon

    compileall.compile_dir(Path(cio_anon.__file__).parent, quiet=1)
    with tempfile.TemporaryDirectory() as folder:
        db = str(Path(folder) / "ws.db")
        subprocess.run([cio, "init", "--db", db], capture_output=True, check=True)
        commands = {
            "sqlite-utils --help": [reference, "--help"],
            "cio-anon --help": [cio, "--help"],
            "cio-anon track": [cio, "track", "Viewed", "--anonymous-id", "a", "--db", db],
        }
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.runs):  # interleaved: each sees the same machine load
            for name, command in commands.items():
                times[name].append(once(command))
    base = statistics.median(times["sqlite-utils --help"])
    for name, values in times.items():
        median = statistics.median(values)
        print(
            f"{name:22} median {median * 1000:6.1f} ms  ratio {median / base:.2f}"
            + ("" if name.startswith("sqlite") else "  (goal <= 1.0)")
        )
    print(f"python {sys.version.split()[0]}, {args.runs} runs each")


if __name__ == "__main__":
    main()
