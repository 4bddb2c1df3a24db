"""Where `cio-anon replay` spends its time, step by step, on the three shapes of traffic of
`replay.py`, against what the 0.35 x goal leaves for each.

    python bench/replay_steps.py [--records 200000] [--runs 3] [--shapes fixture,sessions,hostile]

Each step is timed with a clock around it (no profiler: a profiler slows the Python steps
several times more than SQLite's): a run's reads (`_Run.__init__`), deciding its calls
(`_Run.apply`), writing each table, the records and calls the service takes
(`_File.exact`, `_File.alone`); checking the records (`plain`: here only when the file
is too small to read ahead), waiting for the reader (the second process of `ahead`) and
loading its lots. Before the
first of these come opening the workspace and starting the reader, after the last the
commit and closing; the rest is the loop over the records (making each record and its
calls from the reader's lots, holding them for a run). The floor is `replay.py`'s, timed
in the same run; the goal's budget is floor / 0.35, and what the writes leave of it is
what every other step may take. Last, the CPU time of this process and of the reader:
what the replay's work would take spread evenly over two cores, against the budget.
"""

from __future__ import annotations

import argparse
import pickle
import resource
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_sessions import SHAPES  # noqa: E402
from replay import floor, write_shape  # noqa: E402

from cio_anon.replay import ahead, bulk, files, replay_into  # noqa: E402
from cio_anon.store import Workspace  # noqa: E402

GOAL = 0.35

WRITES = (
    ("insert_events", "writing: events"),
    ("add_activities", "writing: activities"),
    ("add_journal_rows", "writing: journal"),
    ("save_people", "writing: people"),
    ("attach_events", "writing: events merged later"),
    ("mark_messages", "writing: message ids"),
    ("add_assignments", "writing: assignments"),
    ("record_rules", "writing: rules of events left anonymous"),
)

STEPS = (
    "a run's reads",
    "deciding the calls",
    *(label for _, label in WRITES),
    "the service's records",
    "checking records (a file under 16 MiB: here)",
    "waiting for the reader",
    "loading the reader's lots",
    "opening, and starting the reader",
    "the loop over the records",
    "commit and closing",
)


class _Clock:
    """The seconds spent in each step of one replay, and when the first timed step began
    and the last one ended."""

    def __init__(self) -> None:
        self.spent: defaultdict[str, float] = defaultdict(float)
        self.first: float | None = None
        self.last = 0.0
        self.inside = False
        """A timed step is running: a step inside it is its own (the service's records
        write through the same methods as the runs)."""

    def reset(self) -> None:
        self.spent.clear()
        self.first, self.last = None, 0.0

    def wrap(self, owner: Any, name: str, step: str) -> None:
        """Add the seconds each call of `owner.name` takes to `step`."""
        function: Callable[..., Any] = getattr(owner, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            if self.inside:
                return function(*args, **kwargs)
            self.inside = True
            started = time.perf_counter()
            if self.first is None:
                self.first = started
            try:
                return function(*args, **kwargs)
            finally:
                self.last = time.perf_counter()
                self.spent[step] += self.last - started
                self.inside = False

        setattr(owner, name, timed)


clock = _Clock()


class _Loads:
    """`pickle` as `ahead` uses it, its `loads` timed."""

    def __getattr__(self, name: str) -> Any:
        return getattr(pickle, name)

    @staticmethod
    def loads(body: bytes) -> Any:
        started = time.perf_counter()
        try:
            return pickle.loads(body)  # noqa: S301 (the reader's own pickles)
        finally:
            clock.spent["loading the reader's lots"] += time.perf_counter() - started


def instrument() -> None:
    clock.wrap(bulk._Run, "__init__", "a run's reads")
    clock.wrap(bulk._Run, "apply", "deciding the calls")
    clock.wrap(files._File, "exact", "the service's records")
    clock.wrap(files._File, "alone", "the service's records")  # a call the bulk path left
    clock.wrap(bulk, "plain", "checking records (a file under 16 MiB: here)")
    for method, label in WRITES:
        clock.wrap(Workspace, method, label)
    receiver = ahead._Receiver.__init__

    def receiving(self: ahead._Receiver, child: Any) -> None:
        receiver(self, child)
        clock.wrap(self.lots, "get", "waiting for the reader")

    ahead._Receiver.__init__ = receiving  # type: ignore[method-assign]
    ahead.pickle = _Loads()  # type: ignore[assignment,attr-defined]


def one(fixture: Path, db: Path) -> dict[str, float]:
    """One replay's steps, in seconds."""
    clock.reset()
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = time.process_time()
    started = time.perf_counter()
    summary = replay_into(db, datetime.now(UTC), [fixture])
    ended = time.perf_counter()
    reader = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert summary.ok, summary.invalid[:3]
    assert clock.first is not None  # (a file with records)
    steps: dict[str, float] = dict(clock.spent)
    steps["opening, and starting the reader"] = clock.first - started
    steps["commit and closing"] = ended - clock.last
    steps["the loop over the records"] = clock.last - clock.first - sum(clock.spent.values())
    steps["total"] = ended - started
    steps["cpu: this process"] = time.process_time() - cpu
    steps["cpu: the reader"] = (reader.ru_utime + reader.ru_stime) - (
        children.ru_utime + children.ru_stime
    )
    return steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--shapes", default=",".join(("fixture", *SHAPES)))
    args = parser.parse_args()
    instrument()
    with tempfile.TemporaryDirectory() as folder:
        for shape in args.shapes.split(","):
            fixture = write_shape(shape, args.records, Path(folder))
            found: list[dict[str, float]] = []
            floors: list[float] = []
            for run in range(args.runs):  # interleaved with the floor: the same load
                db = Path(folder) / f"floor-{run}.db"
                floors.append(floor(fixture, db)[0])
                db.unlink()
                db = Path(folder) / f"ours-{run}.db"
                found.append(one(fixture, db))
                db.unlink()
            report(shape, args.records, found, statistics.median(floors))
            fixture.unlink()


def report(shape: str, count: int, found: list[dict[str, float]], floor_seconds: float) -> None:
    median = {step: statistics.median(run.get(step, 0.0) for run in found) for step in found[0]}
    total = median["total"]
    budget = floor_seconds / GOAL
    writes = sum(median.get(label, 0.0) for _, label in WRITES)
    print(f"\n{shape}: {count:,} records, medians of {len(found)} runs")
    print("| step | seconds | share |")
    print("|---|---|---|")
    for step in STEPS:
        seconds = median.get(step, 0.0)
        print(f"| {step} | {seconds:.2f} s | {seconds / total:.0%} |")
    print(f"| the whole replay | {total:.2f} s | |")
    print(
        f"floor {floor_seconds:.2f} s, so the goal's budget is {budget:.2f} s; the writes take "
        f"{writes:.2f} s of it and leave {budget - writes:.2f} s for the other steps, which "
        f"take {total - writes:.2f} s (x{(total - writes) / max(budget - writes, 0.01):.2f})",
    )
    ours, reader = median["cpu: this process"], median["cpu: the reader"]
    print(
        f"CPU: this process {ours:.2f} s, the reader {reader:.2f} s; together "
        f"{ours + reader:.2f} s, {(ours + reader) / 2:.2f} s a core on two cores "
        f"(x{(ours + reader) / 2 / budget:.2f} the budget)",
        flush=True,
    )


if __name__ == "__main__":
    main()
