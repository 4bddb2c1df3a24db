"""Replay's bulk path: runs of plain Data Pipelines tracks and identifies, applied with
their reads and their writes in bulk, leaving the workspace the service would leave.

A record is *plain* (`plain`) when it is a Data Pipelines `track` or `identify` that
the service would take without a question: a receive time, ids as strings, a person
named by id (not by email or cio_id), no semantic event, no `_update`, `id` or
`anonymous_id` trait, nothing over Customer.io's limits. Anything else — and a plain
call that meets a case the bulk path leaves to the service (an anonymous id assigned
before, traits sent for it, a suppression, merging off, a track that creates its
person, an email changing hands) — goes through the service, one call at a time,
after what came before it is written.

A run of plain calls (`CHUNK` at most) is applied in three steps: everything it reads
is read in a handful of queries (events with its message ids, the assignments of its
anonymous ids, its people, the pending events of the ids it identifies); the calls are
decided in order in memory by the same rules the service uses (`rules.placement_rule`,
`rules.pending_rule`, `rules.can_trigger`, `service.update_person`); what they changed
is written with one `executemany` per table. The differential tests
(tests/test_batch.py) hold the two paths to the same workspace, row by row.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cio_anon import jsonio, rules
from cio_anon.clock import parse_time, to_iso
from cio_anon.errors import CioAnonError
from cio_anon.ingest import SEMANTIC_EVENTS, Identify
from cio_anon.ingest.emit import track_record
from cio_anon.ingest.fixtures import Record, receive_time
from cio_anon.models import Activity, ActivityType, Event, Person
from cio_anon.pipeline import Tally
from cio_anon.rules import Assignment, IdentifierKind, Provenance, Rule
from cio_anon.service.events import new_event_id
from cio_anon.service.people import update_person
from cio_anon.service.shared import (
    anon_merge_activity,
    attach,
    merge_pending,
    recipient_in,
)
from cio_anon.workspace import Workspace, cio_id_of

CHUNK = 2_000
"""Plain calls decided together: what they read is read in one go."""
_SEMANTIC_EVENTS = frozenset(SEMANTIC_EVENTS)


class _NotPlain(Exception):
    """The record is not plain: the service takes it."""


@dataclass(slots=True)
class Call:
    """A plain track or identify, read and checked."""

    record: Record
    at: datetime
    identify: bool
    user_id: str | None
    anonymous_id: str | None
    message_id: str | None
    name: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    data_json: str = "{}"
    happened: datetime | None = None
    traits: dict[str, Any] = field(default_factory=dict)


def plain(record: Record) -> Call | None:
    """The record as a plain call, or None when the service must take it."""
    value = record.value
    if record.error is not None or not isinstance(value, dict):
        return None
    kind = value.get("type")
    if kind not in ("track", "identify") or "op" in value or "method" in value:
        return None
    if "path" in value:
        return None
    try:
        at = receive_time(value)
        if at is None:
            return None
        call = Call(
            record,
            at,
            kind == "identify",
            _text(value, "userId"),
            _text(value, "anonymousId"),
            _text(value, "messageId"),
        )
        if call.user_id is not None and rules.resolve_identifier(call.user_id)[0] is not (
            IdentifierKind.ID
        ):
            return None
        return _identify(call, value) if call.identify else _track(call, value)
    except (CioAnonError, _NotPlain):
        return None


def _text(value: dict[str, Any], key: str) -> str | None:
    """An id as the Data Pipelines parser reads it (stripped, "" as None), within
    Customer.io's limit; _NotPlain for what the parser refuses or reads otherwise."""
    text = value.get(key)
    if text is None or text == "":
        return None
    if type(text) is not str:
        raise _NotPlain
    text = text.strip()
    if not text:
        raise _NotPlain
    rules.check_identifier_limit(text)
    return text


def _track(call: Call, value: dict[str, Any]) -> Call | None:
    name = value.get("event")
    properties = value.get("properties")
    if type(name) is not str:
        return None
    name = name.strip()
    if not name or name in _SEMANTIC_EVENTS:
        return None
    if properties is not None and not isinstance(properties, dict):
        return None
    if call.user_id is None and call.anonymous_id is None:
        return None
    if call.user_id is not None:
        call.anonymous_id = None  # a person's event: its anonymousId plays no part
    call.name = name
    call.data = dict(properties or {})
    try:
        call.data_json = jsonio.dumps(call.data)
    except TypeError:
        return None
    rules.check_event_limits(call.name, call.data_json)
    stamp = value.get("timestamp")
    call.happened = call.at if stamp is None else parse_time(stamp, what="event timestamp")
    return call


def _identify(call: Call, value: dict[str, Any]) -> Call | None:
    traits = value.get("traits")
    if call.user_id is None or not isinstance(traits, dict):
        return None
    if any(name in traits for name in ("_update", "id", "anonymous_id")):
        return None
    if "email" in traits:
        email = traits["email"]
        if not isinstance(email, str) or not email.strip():
            return None
        rules.check_identifier_limit(email.strip())
    call.traits = traits
    rules.check_attribute_limits(_updates(call))
    return call


def _updates(call: Call) -> dict[str, Any]:
    """The attributes an identify sets: its traits, and the anonymous id it assigns."""
    updates = dict(call.traits)
    if call.anonymous_id is not None:
        updates["anonymous_id"] = call.anonymous_id
    return updates


Exact = Callable[[Record], object]
"""Apply one record through the service (replay's own path)."""


class Batch:
    """Plain calls of one file, held until `flush` (or `CHUNK` of them) applies them."""

    def __init__(self, workspace: Workspace, file: str, tally: Tally, exact: Exact) -> None:
        self.workspace = workspace
        self.file = file
        self.tally = tally
        self.exact = exact
        self.calls: list[Call] = []

    def add(self, call: Call) -> None:
        self.calls.append(call)
        if len(self.calls) >= CHUNK:
            self.flush()

    def flush(self) -> None:
        """Apply the calls held; one the bulk path leaves to the service goes through
        `exact` once those before it are written."""
        calls, self.calls = self.calls, []
        while calls:
            run = _Run(self.workspace, calls, self.file, self.tally)
            done = run.apply()
            run.write()
            if done < len(calls):
                self.exact(calls[done].record)
            calls = calls[done + 1 :]


class _Run:
    """The state a run of calls reads, read in bulk, and what they change, in memory."""

    def __init__(self, workspace: Workspace, calls: list[Call], file: str, tally: Tally) -> None:
        self.workspace = workspace
        self.calls = calls
        self.file = file
        self.tally = tally
        settings = workspace.settings()
        self.merge_enabled = settings.anonymous_merge
        self.suppressions = workspace.any_suppressed()
        tracks = [c for c in calls if not c.identify]
        identifies = [c for c in calls if c.identify]
        self.known = workspace.known_event_ids([c.message_id for c in tracks if c.message_id])
        anonymous = {c.anonymous_id for c in calls if c.anonymous_id is not None}
        self.assignments: dict[str, Assignment] = workspace.assignments_for(sorted(anonymous))
        named = sorted({c.user_id for c in calls if c.user_id is not None})
        self.people = workspace.people_by(IdentifierKind.ID, named)
        emails = {
            rules.email_key(c.traits["email"])
            for c in identifies
            if isinstance(c.traits.get("email"), str)
        }
        self.holders = {
            key: person.cio_id
            for key, person in workspace.people_by(IdentifierKind.EMAIL, sorted(emails)).items()
        }
        self.handled = workspace.handled_among([c.message_id for c in identifies if c.message_id])
        identified = sorted({c.anonymous_id for c in identifies if c.anonymous_id is not None})
        self.profiled = workspace.with_anonymous_traits(identified)
        self.stored_pending = workspace.pending_of(
            [a for a in identified if a not in self.assignments]
        )
        self.waiting: dict[str, list[Event]] = {}
        """This run's events that are still anonymous, by anonymous id."""
        self.created: int | None = None
        # what the run changed, written by `write`
        self.events: list[tuple[Event, str]] = []
        self.attached: list[Event] = []
        self.decided: list[tuple[str, Rule]] = []
        self.saved: dict[str, Person] = {}
        self.assigned: list[Assignment] = []
        self.activities: list[Activity] = []
        self.marked: list[tuple[str, datetime]] = []

    def apply(self) -> int:
        """Apply calls in order; the index of the first the service must take (or all)."""
        for index, call in enumerate(self.calls):
            taken = self._identify(call) if call.identify else self._track(call)
            if not taken:
                return index
        return len(self.calls)

    def write(self) -> None:
        workspace = self.workspace
        workspace.insert_events(self.events)
        workspace.attach_events(self.attached)
        workspace.record_rules(self.decided)
        workspace.save_people(self.saved.values())
        workspace.add_assignments(self.assigned)
        workspace.add_activities(self.activities)
        workspace.mark_messages(self.marked)
        if self.created is not None:
            workspace.set_people_created(self.created)

    # -- track --------------------------------------------------------------------------

    def _track(self, call: Call) -> bool:
        """Apply a plain track; False when the service must (it creates its person)."""
        at, happened = call.at, call.happened
        assert happened is not None
        owner = None
        if call.user_id is not None:
            owner = self.people.get(call.user_id)
            if owner is None:
                return False  # the service creates the person, as identify would
        event = Event(
            event_id=call.message_id or new_event_id(at),
            name=call.name,
            type="event",
            data=call.data,
            timestamp=happened,
            received_at=at,
            rule=Rule.INVITE,
            anonymous_id=call.anonymous_id,
            recipient=recipient_in(call.data),
            source=f"{self.file}:{call.record.line}",  # as str(Source(...)) says it
        )
        if event.event_id in self.known:
            self.tally.duplicates += 1
            self.tally.warnings[str(Rule.DUPLICATE)] += 1
            return True
        self.known.add(event.event_id)
        anonymous_id = call.anonymous_id
        if owner is not None:
            event.cio_id = owner.cio_id
            event.provenance = Provenance.TRACKED
            event.rule = rules.campaign_rule(happened, at)
            event.can_trigger = event.rule is Rule.CAMPAIGN_ELIGIBLE
        else:
            assert anonymous_id is not None
            assignment = self.assignments.get(anonymous_id)
            rule, merged_at = rules.placement_rule(
                received_at=at,
                timestamp=happened,
                assignment=assignment,
                merge_enabled=self.merge_enabled,
            )
            if merged_at is not None:
                assert assignment is not None and assignment.cio_id is not None
                attach(event, assignment.cio_id, rule, merged_at)
                self.activities.append(
                    anon_merge_activity(assignment.cio_id, anonymous_id, [happened], merged_at)
                )
                self.tally.merged += 1
            else:
                event.rule = rules.pending_rule(rule, happened, at)
                if event.rule is not Rule.ANONYMOUS:
                    self.tally.warnings[str(event.rule)] += 1
                self.waiting.setdefault(anonymous_id, []).append(event)
        self.events.append((event, call.data_json))
        self.tally.stored += 1
        record = track_record(
            call.name,
            call.user_id,
            anonymous_id,
            "event",
            call.data,
            to_iso(happened),
            event.event_id,
        )
        people = [event.cio_id] if event.cio_id else []
        self.workspace.add_journal_record(at, "Track", record, people, anonymous_id)
        return True

    # -- identify -----------------------------------------------------------------------

    def _identify(self, call: Call) -> bool:
        at, anonymous_id = call.at, call.anonymous_id
        assert call.user_id is not None
        if call.message_id is not None and call.message_id in self.handled:
            self.tally.duplicates += 1
            return True
        if self.suppressions or (
            anonymous_id is not None
            and (
                not self.merge_enabled
                or anonymous_id in self.assignments
                or anonymous_id in self.profiled
            )
        ):
            return False
        person = self.people.get(call.user_id)
        email = call.traits.get("email")  # a string with text, or absent (see `plain`)
        if person is not None and email is not None and person.email not in (None, email.strip()):
            return False  # an email changing: the service saves the one who gave it up first
        created = person is None
        if person is None:
            person = Person(self._next_cio_id(), call.user_id, None, {}, at, at)
            self.people[call.user_id] = person
        update = update_person(self._holder, person, _updates(call), at)
        if person.email is not None:
            self.holders[rules.email_key(person.email)] = person.cio_id
        activities = (
            [Activity(person.cio_id, ActivityType.PROFILE_CREATE, at, {})] if created else []
        )
        activities += update.activities
        if anonymous_id is not None:
            activities += self._assign(person.cio_id, anonymous_id, at)
        person.updated_at = at
        self.saved[person.cio_id] = person
        self.activities += activities
        if call.message_id is not None:
            self.handled.add(call.message_id)
            self.marked.append((call.message_id, at))
        journal = Identify(call.user_id, dict(call.traits), anonymous_id, call.message_id)
        self.workspace.add_journal(at, journal, [person.cio_id], anonymous_id)
        self.tally.people_created += created
        return True

    def _assign(self, cio_id: str, anonymous_id: str, at: datetime) -> list[Activity]:
        """Assign a new anonymous id to a person and merge its pending events; the
        activity that records the merge, if any did."""
        assignment = Assignment(anonymous_id, cio_id, at)
        self.assignments[anonymous_id] = assignment
        self.assigned.append(assignment)
        stored = self.stored_pending.pop(anonymous_id, [])
        merged, stayed = merge_pending(stored + self.waiting.pop(anonymous_id, []), assignment, at)
        for event in stored:  # this run's own events are written as they are now
            if event.cio_id is None:
                self.decided.append((event.event_id, event.rule))
            else:
                self.attached.append(event)
        self.tally.merged += len(merged)
        self.tally.warnings.update({str(rule): 1 for rule in {e.rule for e in stayed}})
        if not merged:
            return []
        return [anon_merge_activity(cio_id, anonymous_id, [e.timestamp for e in merged], at)]

    def _holder(self, kind: IdentifierKind, value: str) -> str | None:
        if kind is IdentifierKind.EMAIL:
            return self.holders.get(rules.email_key(value))
        person = self.people.get(value)
        return None if person is None else person.cio_id

    def _next_cio_id(self) -> str:
        if self.created is None:
            self.created = self.workspace.people_created()
        self.created += 1
        return cio_id_of(self.created)
