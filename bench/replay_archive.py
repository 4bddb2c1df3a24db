"""Replay of a month's archive (a folder per day of gzipped parts), read ahead by one
second process for all its parts, against each part read on its own.

    python bench/replay_archive.py [--days 30] [--per-day 10000] [--runs 3]

The archive is `make_month.py`'s: Data Pipelines traffic as a team keeps it, each part
far under 16 MiB. Three replays of it, each into a fresh workspace, interleaved, medians
of `--runs`:

- `each part read here`: what a part under 16 MiB got when each file was judged on its
  own (`AHEAD_BYTES` out of reach);
- `a second process per part`: each part read ahead by a process of its own;
- `one second process for all`: the replay as it is, the parts judged together (by the
  lines they hold) and read ahead, in order, by one process.

The goal: an archive replays as fast as one file holding the same records.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
from collections.abc import Iterator, Sequence
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Variant, interleaved, replayed  # noqa: E402
from make_month import write  # noqa: E402

from cio_anon.ingest.fixtures import fixture_files  # noqa: E402
from cio_anon.replay import ahead  # noqa: E402

_Reader = ahead.Reader


class _PerPart(_Reader):
    """A second process for each part, as a part of 16 MiB or more got on its own."""

    def read(self, path: Path) -> ahead.Read:
        reader = _Reader([path], ahead=True)
        try:
            yield from reader.read(path)
        finally:
            reader.close()


@contextlib.contextmanager
def _each_read_here() -> Iterator[None]:
    kept = ahead.AHEAD_BYTES
    ahead.AHEAD_BYTES = sys.maxsize
    try:
        yield
    finally:
        ahead.AHEAD_BYTES = kept


@contextlib.contextmanager
def _per_part() -> Iterator[None]:
    kept = ahead.Reader  # (the replay makes its reader as `ahead.Reader`)
    ahead.Reader = _PerPart  # type: ignore[misc]
    try:
        yield
    finally:
        ahead.Reader = kept  # type: ignore[misc]


VARIANTS: tuple[Variant, ...] = (
    ("each part read here", _each_read_here),
    ("a second process per part", _per_part),
    ("one second process for all", contextlib.nullcontext),
)


def _replay_all(db: Path, parts: Sequence[Path], records: int) -> None:
    applied = replayed(db, parts)
    assert applied == records, (applied, records)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--per-day", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        records = write(folder / "archive", args.days, args.per_day, seed=3)
        parts = fixture_files([folder / "archive"])
        packed = sum(part.stat().st_size for part in parts)
        lines = sum(map(ahead._size, parts))
        seconds = interleaved(
            VARIANTS, args.runs, folder, partial(_replay_all, parts=parts, records=records)
        )
    before = statistics.median(seconds[VARIANTS[0][0]])
    print(
        f"{records:,} records in {len(parts)} gzipped parts ({packed / 2**20:.1f} MiB, "
        f"{lines / 2**20:.0f} MiB of lines); medians of {args.runs} runs"
    )
    print("| replay | time | records/s | × each part read here |")
    print("|---|---|---|---|")
    for label, _ in VARIANTS:
        median = statistics.median(seconds[label])
        print(f"| {label} | {median:.2f} s | {records / median:,.0f} | {median / before:.2f} |")


if __name__ == "__main__":
    main()
