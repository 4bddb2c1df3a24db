"""Helpers shared by the benchmark scripts."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def timed(action: Callable[[], T]) -> tuple[float, T]:
    """Seconds an action took, and what it returned."""
    start = time.perf_counter()
    result = action()
    return time.perf_counter() - start, result


def median_of(runs: int, action: Callable[[], float]) -> float:
    """The median of `runs` measurements (the machine is shared and noisy)."""
    return statistics.median(action() for _ in range(runs))
