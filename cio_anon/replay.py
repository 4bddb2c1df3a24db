"""Replay fixture files: apply their records in order, all or nothing per file.

Every record becomes operations (see `ingest`), applied through the same service
functions the CLI uses, each at its own receive time. Expectations (`op: expect`)
are checked as they come.
"""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from cio_anon import rules, service
from cio_anon.errors import CioAnonError, NotFound
from cio_anon.ingest import (
    Alias,
    AnonymousTraits,
    ChangeSettings,
    DeletePerson,
    DeviceDelete,
    DeviceUpdate,
    Expect,
    Identify,
    MergePeople,
    ObjectDelete,
    ObjectUpdate,
    Operation,
    Purge,
    Relate,
    Suppress,
    Timed,
    Track,
    Unmodelled,
)
from cio_anon.ingest.fixtures import display_name, read_records, to_operations
from cio_anon.workspace import Workspace


@dataclass(frozen=True)
class Source:
    """Where an operation came from: a fixture file and line, or a request (line 0)."""

    file: str
    line: int = 0

    def __str__(self) -> str:
        return f"{self.file}:{self.line}" if self.line else self.file


@dataclass(frozen=True)
class Problem:
    """Something wrong at a line of a fixture file (`rule`: the code, if a rule refused)."""

    file: str
    line: int
    message: str
    rule: str | None = None

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


Observer = Callable[[Source, Operation, Any], None]


@dataclass
class Tally:
    """What a replay did."""

    records: int = 0
    applied: int = 0
    stored: int = 0
    merged: int = 0
    duplicates: int = 0
    people_created: int = 0
    expectations: int = 0
    ignored: int = 0
    """Calls stored without a modelled effect, or ignored as Customer.io ignores them
    (a suppressed identifier)."""
    warnings: Counter[str] = field(default_factory=Counter)
    notes: list[Problem] = field(default_factory=list)
    failed_expectations: list[Problem] = field(default_factory=list)
    observer: Observer | None = None
    """Told of every applied operation and its result (`check` listens)."""

    def add(self, other: Tally) -> None:
        for name in (
            "records",
            "applied",
            "stored",
            "merged",
            "duplicates",
            "people_created",
            "expectations",
            "ignored",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.warnings.update(other.warnings)
        self.notes.extend(other.notes)
        self.failed_expectations.extend(other.failed_expectations)


@dataclass
class ReplaySummary:
    files: list[str]
    tally: Tally = field(default_factory=Tally)
    invalid: list[Problem] = field(default_factory=list)
    rejected_files: list[str] = field(default_factory=list)
    stopped_at: dict[str, int] = field(default_factory=dict)
    """The line each rejected file stopped at (0: the file could not be read)."""
    last_at: datetime | None = None

    @property
    def ok(self) -> bool:
        return not self.invalid and not self.tally.failed_expectations


class _Rejected(Exception):
    def __init__(self, problem: Problem) -> None:
        self.problem = problem


class _NothingApplied(Exception):
    """Raised to undo the creation of a workspace that a replay put nothing into."""

    def __init__(self, summary: ReplaySummary) -> None:
        self.summary = summary


Progress = Callable[[int], None]


def count_records(paths: Iterable[Path]) -> int:
    """How many records the files hold (for a progress bar)."""
    total = 0
    for path in paths:
        try:
            total += len(read_records(path))
        except CioAnonError:
            continue
    return total


def replay_into(
    path: Path,
    now: datetime,
    files: Iterable[Path],
    *,
    keep_going: bool = False,
    progress: Progress | None = None,
) -> ReplaySummary:
    """Replay files into the workspace at `path`, creating it if needed; a workspace
    that did not exist and that the replay put nothing into is not left behind."""
    try:
        with service.opened(path, now, write=True) as workspace:
            summary = replay(workspace, now, files, keep_going=keep_going, progress=progress)
            if workspace.created and summary.tally.applied == 0:
                raise _NothingApplied(summary)
    except _NothingApplied as nothing:
        return nothing.summary
    return summary


def replay(
    workspace: Workspace,
    now: datetime,
    paths: Iterable[Path],
    *,
    keep_going: bool = False,
    progress: Progress | None = None,
    observer: Observer | None = None,
) -> ReplaySummary:
    """Apply fixture files in order. Without `keep_going` an invalid record rejects its
    whole file (the workspace keeps nothing of it); with it, only that record is
    skipped. Either way the invalid records are listed."""
    paths = list(paths)
    summary = ReplaySummary(files=[display_name(p) for p in paths])
    for path in paths:
        name = display_name(path)
        tally = Tally(observer=observer)
        try:
            with workspace.savepoint():
                _replay_file(workspace, now, path, name, tally, summary, keep_going, progress)
        except _Rejected as rejected:
            summary.invalid.append(rejected.problem)
            summary.rejected_files.append(name)
            summary.stopped_at[name] = rejected.problem.line
            summary.tally.records += tally.records
            continue
        summary.tally.add(tally)
    return summary


def _replay_file(
    workspace: Workspace,
    now: datetime,
    path: Path,
    name: str,
    tally: Tally,
    summary: ReplaySummary,
    keep_going: bool,
    progress: Progress | None,
) -> None:
    try:
        records = read_records(path)
    except CioAnonError as error:
        raise _Rejected(Problem(name, 0, str(error).removeprefix(f"{path}: "))) from None
    previous: datetime | None = None
    tally.records += len(records)  # all were read, whether or not a rejection stops the file
    for record in records:
        if progress is not None:
            progress(1)
        try:
            if record.error is not None:
                raise _Rejected(Problem(name, record.line, record.error))
            try:
                # Without --keep-going the whole file is one savepoint: a failed record
                # rejects all of it, so it needs none of its own.
                with workspace.savepoint() if keep_going else contextlib.nullcontext():
                    timed = to_operations(record.value, previous or now)
                    for item in timed:
                        apply_operation(workspace, item, Source(name, record.line), tally)
            except CioAnonError as error:
                rule = getattr(error, "rule", None)
                raise _Rejected(Problem(name, record.line, str(error), rule)) from None
        except _Rejected as rejected:
            if not keep_going:
                raise
            summary.invalid.append(rejected.problem)
            continue
        tally.applied += 1
        previous = timed[-1].at if timed else previous
        summary.last_at = max(filter(None, (summary.last_at, previous)), default=None)
    if not records:
        tally.notes.append(Problem(name, 0, "the file holds no records"))


def apply_operation(workspace: Workspace, timed: Timed, source: Source, tally: Tally) -> None:
    """Carry out one operation at its receive time, counting what it did. A call for a
    suppressed identifier is ignored, as Customer.io ignores it (a warning says so)."""
    try:
        _apply(workspace, timed, source, tally)
    except service.Suppressed as suppressed:
        tally.ignored += 1
        tally.warnings[str(rules.Rule.SUPPRESSED)] += 1
        tally.notes.append(Problem(source.file, source.line, str(suppressed)))


def _apply(workspace: Workspace, timed: Timed, source: Source, tally: Tally) -> None:
    op, at = timed.operation, timed.at
    if isinstance(op, Track):
        # The APIs create an unknown person on an event, as Customer.io does.
        result = service.track(
            workspace,
            at,
            name=op.name,
            person=op.person,
            anonymous_id=op.anonymous_id,
            type=op.type,
            data=op.data,
            timestamp=op.timestamp,
            event_id=op.event_id,
            source=str(source),
            create_person=True,
        )
        tally.stored += result.stored
        tally.people_created += result.person_created
        tally.duplicates += not result.stored
        tally.merged += result.provenance is rules.Provenance.MERGED
        tally.warnings.update(str(w.rule) for w in result.warnings)
        if tally.observer is not None:
            tally.observer(source, op, result)
    elif isinstance(op, Identify | AnonymousTraits) and not _first_time(workspace, op, at):
        tally.duplicates += 1
    elif isinstance(op, Identify):
        outcome = service.identify(
            workspace,
            at,
            identifier=op.identifier,
            anonymous_id=op.anonymous_id,
            attributes=op.attributes,
            message_id=op.message_id,
        )
        tally.people_created += outcome.created
        tally.merged += len(outcome.merged)
        tally.warnings.update(str(w.rule) for w in outcome.warnings)
        if tally.observer is not None:
            tally.observer(source, op, outcome)
    elif isinstance(op, AnonymousTraits):
        service.set_anonymous_traits(
            workspace, at, anonymous_id=op.anonymous_id, traits=op.traits, message_id=op.message_id
        )
    elif isinstance(op, MergePeople):
        service.merge_people(workspace, at, primary=op.primary, secondary=op.secondary)
    elif isinstance(op, DeletePerson):
        service.delete_person(workspace, at, identifier=op.identifier)
    elif isinstance(op, Alias):
        tally.notes.append(
            Problem(
                source.file,
                source.line,
                f"alias of {op.previous_id!r} to {op.user_id!r} recorded; it merges "
                "nothing (Customer.io uses alias only for destinations)",
            )
        )
    elif isinstance(op, Purge):
        service.purge(workspace, at)
    elif isinstance(op, ChangeSettings):
        service.update_settings(
            workspace, at, anonymous_merge=op.anonymous_merge, created_at=op.created_at
        )
    elif isinstance(op, DeviceUpdate):
        service.update_device(workspace, at, op)
    elif isinstance(op, DeviceDelete):
        service.delete_device(workspace, at, op)
    elif isinstance(op, Suppress):
        service.suppress(workspace, at, op)
    elif isinstance(op, ObjectUpdate):
        service.update_object(workspace, at, op)
    elif isinstance(op, ObjectDelete):
        service.delete_object(workspace, at, op)
    elif isinstance(op, Relate):
        service.relate(workspace, at, op)
    elif isinstance(op, Unmodelled):
        service.store_call(workspace, at, op)
        tally.ignored += 1
    elif isinstance(op, Expect):
        tally.expectations += 1
        for mismatch in check_expectation(workspace, at, op.checks):
            tally.failed_expectations.append(Problem(source.file, source.line, mismatch))


def _first_time(workspace: Workspace, op: Identify | AnonymousTraits, at: datetime) -> bool:
    """Whether a message with an id is seen for the first time (then it is recorded)."""
    return op.message_id is None or workspace.mark_message(op.message_id, at)


# -- expectations -------------------------------------------------------------------


def check_expectation(workspace: Workspace, now: datetime, checks: Mapping[str, Any]) -> list[str]:
    """What differs between an expect record and the workspace ("expected ..., got ...")."""
    if "event" in checks:
        return _check_event(workspace, now, checks)
    if "person" in checks:
        return _check_person(workspace, checks)
    return _check_anonymous_id(workspace, checks)


def _differ(label: str, expected: object, actual: object) -> list[str]:
    if expected == actual:
        return []
    return [f"expected {label} = {_show(expected)}, got {_show(actual)}"]


def _show(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _check_person(workspace: Workspace, checks: Mapping[str, Any]) -> list[str]:
    identifier = checks["person"]
    try:
        person = service.find_person(workspace, identifier)
    except NotFound:
        if checks.get("exists") is False:
            return []
        return [f"expected person {identifier!r} to exist, but no one has that identifier"]
    problems = _differ(f"person {identifier!r} exists", checks.get("exists", True), True)
    if "events" in checks:
        counts = workspace.event_counts(person.cio_id)
        for key, expected in checks["events"].items():
            problems += _differ(f"events.{key} of {identifier!r}", expected, getattr(counts, key))
    for key, expected in checks.get("attributes", {}).items():
        actual = getattr(person, key) if key in ("id", "email") else person.attributes.get(key)
        problems += _differ(f"attributes.{key} of {identifier!r}", expected, actual)
    for key in ("id", "email"):
        if key in checks:
            problems += _differ(f"{key} of {identifier!r}", checks[key], getattr(person, key))
    if "anonymous_ids" in checks:
        actual_ids = sorted(a.anonymous_id for a in workspace.assignments_of(person.cio_id))
        problems += _differ(
            f"anonymous_ids of {identifier!r}", sorted(checks["anonymous_ids"]), actual_ids
        )
    if "devices" in checks:
        devices = sorted(d.device_id for d in workspace.devices_of(person.cio_id))
        problems += _differ(f"devices of {identifier!r}", sorted(checks["devices"]), devices)
    if "relationships" in checks:
        related = sorted(
            f"{r.object_type_id}/{r.object_id}" for r in workspace.relationships_of(person.cio_id)
        )
        problems += _differ(
            f"relationships of {identifier!r}", sorted(checks["relationships"]), related
        )
    return problems


def _cio_id_of(workspace: Workspace, identifier: object) -> str | None:
    if identifier is None:
        return None
    try:
        return service.find_person(workspace, str(identifier)).cio_id
    except NotFound:
        return f"<nobody named {identifier}>"


def _check_event(workspace: Workspace, now: datetime, checks: Mapping[str, Any]) -> list[str]:
    event_id = checks["event"]
    try:
        explanation = service.explain(workspace, now, event_id=event_id)
    except NotFound:
        return [f"expected event {event_id!r} to exist, but there is no such event"]
    problems: list[str] = []
    label = f"event {event_id!r}"
    if "status" in checks:
        problems += _differ(f"status of {label}", checks["status"], explanation.status)
    if "rule" in checks:
        problems += _differ(f"rule of {label}", checks["rule"], str(explanation.decision.rule))
    if "anonymous_id" in checks:
        problems += _differ(
            f"anonymous_id of {label}", checks["anonymous_id"], explanation.anonymous_id
        )
    if "person" in checks:
        actual = explanation.person
        expected_id = _cio_id_of(workspace, checks["person"])
        if expected_id != (actual.cio_id if actual else None):
            problems.append(
                f"expected {label} on {_show(checks['person'])}, got "
                f"{_show(actual.label if actual else None)}"
            )
    event = workspace.get_event(event_id)
    if "provenance" in checks:
        actual_provenance = (
            None if event is None or event.provenance is None else str(event.provenance)
        )
        problems += _differ(f"provenance of {label}", checks["provenance"], actual_provenance)
    if "can_trigger_campaigns" in checks:
        problems += _differ(
            f"can_trigger_campaigns of {label}",
            checks["can_trigger_campaigns"],
            bool(event and event.can_trigger),
        )
    return problems


def _check_anonymous_id(workspace: Workspace, checks: Mapping[str, Any]) -> list[str]:
    anonymous_id = checks["anonymous_id"]
    problems: list[str] = []
    if "pending" in checks:
        problems += _differ(
            f"pending events of {anonymous_id!r}",
            checks["pending"],
            workspace.count_pending(anonymous_id),
        )
    if "assigned_to" in checks:
        assignment = workspace.get_assignment(anonymous_id)
        expected_id = _cio_id_of(workspace, checks["assigned_to"])
        if expected_id != (assignment.cio_id if assignment else None):
            holder = None
            if assignment is not None:
                holder = (
                    "<a deleted person>"
                    if assignment.cio_id is None
                    else workspace.person_refs([assignment.cio_id])[assignment.cio_id].label
                )
            problems.append(
                f"expected {anonymous_id!r} assigned to {_show(checks['assigned_to'])}, got "
                f"{_show(holder)}"
            )
    return problems
