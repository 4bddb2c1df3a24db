"""Concurrent writers, shared by the test suite and bench/concurrency.py.

Each worker process tracks anonymous events and identifies people through the
service, every call in its own transaction, all into one workspace file.
"""

from __future__ import annotations

import multiprocessing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cio_anon import service

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
EVENTS_PER_ID = 10


def worker(path: str, number: int, events: int) -> None:
    """Track `events` events over `events / 10` anonymous ids, identifying each id's
    person 50 seconds after its tenth event was received."""
    db = Path(path)
    for index in range(events):
        group, offset = divmod(index, EVENTS_PER_ID)
        at = T0 + timedelta(seconds=group * 100 + offset)
        with service.opened(db, at, write=True) as workspace:
            service.track(
                workspace,
                at,
                name="Viewed",
                anonymous_id=f"w{number}-a{group}",
                event_id=f"w{number}-e{index}",
            )
        if offset == EVENTS_PER_ID - 1:
            when = T0 + timedelta(seconds=group * 100 + 50)
            with service.opened(db, when, write=True) as workspace:
                service.identify(
                    workspace,
                    when,
                    identifier=f"w{number}-p{group}",
                    anonymous_id=f"w{number}-a{group}",
                )


def run(path: Path, workers: int, events: int) -> list[int | None]:
    """Start the workers together; their exit codes."""
    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(target=worker, args=(str(path), number, events))
        for number in range(workers)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=600)
    return [process.exitcode for process in processes]


def check(path: Path, workers: int, events: int) -> list[str]:
    """What is wrong with the workspace afterwards (nothing, if all went well)."""
    problems = []
    now = T0 + timedelta(days=1)
    with service.opened(path, now, write=False) as workspace:
        people = {p.id: count for p, count in workspace.people(1_000_000)}
        for number in range(workers):
            for group in range(events // EVENTS_PER_ID):
                person = f"w{number}-p{group}"
                if people.get(person) != EVENTS_PER_ID:
                    problems.append(f"{person} has {people.get(person)} events")
        stored = sum(people.values()) + sum(
            workspace.count_pending(f"w{n}-a{g}")
            for n in range(workers)
            for g in range(events // EVENTS_PER_ID)
        )
        if stored != workers * events:
            problems.append(f"{stored} events stored, {workers * events} sent")
    return problems


def create_and_track(path: str, number: int, start: Any) -> str | None:
    """Wait for the others, then track one event into a workspace that may not exist
    yet; what went wrong, if anything."""
    start.wait()
    try:
        with service.opened(Path(path), T0, write=True) as workspace:
            service.track(
                workspace, T0, name="Viewed", anonymous_id=f"c{number}", event_id=f"c{number}"
            )
    except Exception as error:  # reported to the test, which names it
        return f"{type(error).__name__}: {error}"
    return None


def create_together(paths: list[Path], workers: int) -> list[list[str | None]]:
    """For each path in turn, `workers` processes race to create and write it."""
    context = multiprocessing.get_context("spawn")  # no fork of a threaded test runner
    with context.Manager() as manager, context.Pool(workers) as pool:
        start = manager.Barrier(workers)
        return [
            pool.starmap(create_and_track, [(str(path), n, start) for n in range(workers)])
            for path in paths
        ]
