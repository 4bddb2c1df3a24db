"""Replay on one CPU: read ahead by a second process, against read here.

    python bench/replay_cpus.py [--records 200000] [--runs 3] [--shapes fixture,sessions]

The replay is pinned to one CPU (`os.sched_setaffinity`, as `taskset -c 0` pins a
command; Linux), and its second process inherits the pin. Two replays of each shape
(`replay.py`'s files), each into a fresh workspace, interleaved, medians of `--runs`:

- `read ahead`: the replay as it was on any machine, a second process reading the
  file (as for one of 16 MiB or more: 200,000 records are) while this one applies it;
- `read here`: the replay as it is where it may run on one CPU only (`ahead._cpus`),
  reading its file itself.

The goal: on one CPU, reading here is no slower than reading ahead (the two processes
can only take turns there), so the replay reads ahead only with two CPUs to run on.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
from collections.abc import Iterator
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Variant, interleaved, replayed  # noqa: E402
from replay import write_shape  # noqa: E402

from cio_anon.replay import ahead  # noqa: E402


@contextlib.contextmanager
def _read_ahead() -> Iterator[None]:
    """The replay told it has two CPUs, as it read ahead before it looked (and that any
    file is large enough, for `--records` under 16 MiB of lines)."""
    kept = ahead._cpus, ahead.AHEAD_BYTES
    ahead._cpus, ahead.AHEAD_BYTES = (lambda: 2), 0
    try:
        yield
    finally:
        ahead._cpus, ahead.AHEAD_BYTES = kept


VARIANTS: tuple[Variant, ...] = (
    ("read ahead", _read_ahead),
    ("read here", contextlib.nullcontext),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--shapes", default="fixture,sessions")
    args = parser.parse_args()
    if not hasattr(os, "sched_setaffinity"):
        sys.exit("This benchmark pins the replay to one CPU, which this system cannot do.")
    cpus = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(cpus)})
    assert ahead._cpus() == 1
    print(f"pinned to CPU {min(cpus)} of {len(cpus)}; medians of {args.runs} runs")
    print("| shape | records | read ahead | read here | here / ahead |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        for shape in args.shapes.split(","):
            fixture = write_shape(shape, args.records, folder)
            seconds = interleaved(VARIANTS, args.runs, folder, partial(replayed, files=[fixture]))
            there, here = (statistics.median(seconds[label]) for label, _ in VARIANTS)
            times = f"{there:.2f} s | {here:.2f} s | {here / there:.2f}"
            print(f"| {shape} | {args.records:,} | {times} |")


if __name__ == "__main__":
    main()
