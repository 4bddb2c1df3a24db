"""Helpers shared by the benchmark scripts."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from cio_anon.replay import replay_into

T = TypeVar("T")

Variant = tuple[str, Callable[[], contextlib.AbstractContextManager[object]]]
"""A way to run the same thing: its label, and the context it runs in."""


def timed(action: Callable[[], T]) -> tuple[float, T]:
    """Seconds an action took, and what it returned."""
    start = time.perf_counter()
    result = action()
    return time.perf_counter() - start, result


def replayed(db: Path, files: Sequence[Path]) -> int:
    """Replay `files` into the workspace `db`, as `cio-anon replay` does; the calls
    applied (none may be refused)."""
    summary = replay_into(db, datetime.now(UTC), files)
    assert summary.ok, summary.invalid[:3]
    return summary.tally.applied


def interleaved(
    variants: Sequence[Variant], runs: int, folder: Path, action: Callable[[Path], object]
) -> dict[str, list[float]]:
    """The seconds `action` took under each variant, `runs` times each: the variants in
    turn, run after run, so that all see the same machine load; each run given a fresh
    workspace in `folder`, removed after."""
    seconds: dict[str, list[float]] = {label: [] for label, _ in variants}
    for run in range(runs):
        for label, variant in variants:
            db = folder / f"replayed-{run}.db"
            with variant():
                took, _ = timed(lambda: action(db))  # noqa: B023 (called at once)
            seconds[label].append(took)
            for leftover in folder.glob(f"replayed-{run}.db*"):
                leftover.unlink()
    return seconds
