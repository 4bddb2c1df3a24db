"""Helpers shared by the benchmark scripts."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def timed(action: Callable[[], T]) -> tuple[float, T]:
    """Seconds an action took, and what it returned."""
    start = time.perf_counter()
    result = action()
    return time.perf_counter() - start, result
