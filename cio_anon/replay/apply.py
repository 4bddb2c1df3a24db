"""The pipeline every input goes through — replay, `serve` and `check` alike: an
operation, where it came from (`Source`), carried out through the service at its
receive time, and counted (`Tally`)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cio_anon import rules, service
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
from cio_anon.replay import expect
from cio_anon.store import Workspace


@dataclass(frozen=True)
class Source:
    """Where an operation came from: a fixture file and line, or a request (line 0)."""

    file: str
    line: int = 0

    def __str__(self) -> str:
        return self.text(self.file, self.line)

    @staticmethod
    def text(file: str, line: int) -> str:
        """How a source is written (`str`), without making one: a file and its line, or
        a file or a request alone (line 0)."""
        return f"{file}:{line}" if line else file

    @classmethod
    def parse(cls, text: str) -> Source:
        """The source `str` wrote (as an event stores it): `FILE:LINE`, or a file or a
        request alone (line 0)."""
        file, _, line = text.rpartition(":")
        return cls(file, int(line)) if file and line.isdigit() else cls(text)


@dataclass(frozen=True)
class Problem:
    """Something wrong at a line of a fixture file (`rule`: the code, if a rule refused)."""

    file: str
    line: int
    message: str
    rule: str | None = None
    unreadable: bool = False
    """The record, or the file from this line on, could not be read (not UTF-8, not
    JSON, a damaged gzip): the file is damaged, not a call refused."""

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file  # 0: the whole file
        return f"{where}: {self.message}"


Observer = Callable[[Source, Operation, Any], None]
"""Told of each track and identify the service carries out, with its result (`serve`
listens, to say what was decided)."""


@dataclass(frozen=True, slots=True)
class Heard:
    """What a track or an identify did, as a replay's listener hears it (`check`
    listens): the same whether the service or the bulk path applied the call
    (tests/test_batch.py holds the two equal)."""

    stored: bool = True
    """Whether a track was stored (not a second event with an id already there)."""
    warnings: tuple[service.Warning, ...] = ()
    """What a stored track or an identify was warned of: an anonymous event that stayed
    anonymous under another rule than `anonymous`; an identify's anonymous id taken by
    someone else, or its events that did not merge."""
    failed: tuple[dict[str, Any], ...] = ()
    """An identify's attribute changes refused (an id or email someone else holds)."""

    @classmethod
    def of(cls, result: service.TrackResult | service.IdentifyResult) -> Heard:
        """What the service's result of a call says."""
        if isinstance(result, service.TrackResult):
            return cls(result.stored, tuple(result.warnings) if result.stored else ())
        return cls(True, tuple(result.warnings), tuple(result.failed_attribute_changes))


Listener = Callable[[Source, Track | Identify, Heard], None]
"""Told of each track and identify a replay applies, in the order of the files, with
what it did (`Heard`): nothing of a record refused with --keep-going; of a file
rejected, what was applied before it was (then undone with the file)."""


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


def apply_operation(
    workspace: Workspace,
    timed: Timed,
    source: Source,
    tally: Tally,
    observer: Observer | None = None,
) -> None:
    """Carry out one operation at its receive time, counting what it did; `observer` is
    told of every track and identify with its result (`serve` listens, and a replay's
    listener hears it as `Heard`). A call for a suppressed identifier is ignored, as
    Customer.io ignores it (a warning says so)."""
    try:
        _apply(workspace, timed, source, tally, observer)
    except service.Suppressed as suppressed:
        tally.ignored += 1
        tally.warnings[str(rules.Rule.SUPPRESSED)] += 1
        tally.notes.append(Problem(source.file, source.line, str(suppressed)))


def _apply(
    workspace: Workspace,
    timed: Timed,
    source: Source,
    tally: Tally,
    observer: Observer | None,
) -> None:
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
        if observer is not None:
            observer(source, op, result)
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
        if observer is not None:
            observer(source, op, outcome)
    elif isinstance(op, AnonymousTraits):
        service.set_anonymous_traits(
            workspace, at, anonymous_id=op.anonymous_id, traits=op.traits, message_id=op.message_id
        )
    elif isinstance(op, MergePeople):
        service.merge_people(workspace, at, primary=op.primary, secondary=op.secondary)
    elif isinstance(op, DeletePerson):
        service.delete_person(workspace, at, identifier=op.identifier)
    elif isinstance(op, Alias):
        tally.notes.append(alias_note(source, op))
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
        for mismatch in expect.check(workspace, at, op.checks):
            tally.failed_expectations.append(Problem(source.file, source.line, mismatch))


def alias_note(source: Source, op: Alias) -> Problem:
    """What replaying an alias says: all it does (the bulk path says it too)."""
    return Problem(
        source.file,
        source.line,
        f"alias of {op.previous_id!r} to {op.user_id!r} recorded; it merges "
        "nothing (Customer.io uses alias only for destinations)",
    )


def _first_time(workspace: Workspace, op: Identify | AnonymousTraits, at: datetime) -> bool:
    """Whether a message with an id is seen for the first time (then it is recorded)."""
    return op.message_id is None or workspace.mark_message(op.message_id, at)
