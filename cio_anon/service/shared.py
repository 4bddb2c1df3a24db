"""Pieces every operation uses: warnings, finding a person, and where an anonymous
event goes (placing it, attaching it, the activity a merge writes)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cio_anon import jsonio, rules
from cio_anon.errors import InvalidInput, NotFound, RuleViolation
from cio_anon.ingest import Operation, given_text
from cio_anon.ingest.emit import to_record
from cio_anon.models import Activity, ActivityType, Event, Person
from cio_anon.rules import Assignment, Decision, IdentifierKind, Provenance, Rule
from cio_anon.store import JournalRow, Workspace, journal_row


@dataclass(frozen=True)
class Warning:
    """A rule that fired without making the request fail."""

    rule: Rule
    message: str


class Suppressed(RuleViolation):
    """A call for a suppressed identifier: Customer.io ignores it."""

    def __init__(self, kind: str, value: str) -> None:
        super().__init__(
            str(rules.Rule.SUPPRESSED),
            f"The {kind} {value!r} is suppressed: Customer.io ignores calls for it until it "
            "is unsuppressed.",
        )


def refuse_suppressed(workspace: Workspace, kind: IdentifierKind, value: str) -> None:
    """Raise Suppressed when `value` (an id or email) is on the suppression list."""
    if kind is not IdentifierKind.CIO_ID:
        key = rules.email_key(value) if kind is IdentifierKind.EMAIL else value
        if workspace.is_suppressed(str(kind), key):
            raise Suppressed(str(kind), value)


def find_person(workspace: Workspace, identifier: str) -> Person:
    """The person an identifier names, or NotFound."""
    kind, value = rules.resolve_identifier(identifier)
    person = workspace.find_person(kind, value)
    if person is None:
        raise NotFound(f"No person has the {kind} {value!r}.")
    return person


def lasting_identifier(given: str, person: Person) -> str:
    """How the journal names a person: as given, unless given as a cio_id (which another
    workspace would number differently), then by their id or email as they are now."""
    if not given.strip().startswith("cio_"):
        return given
    if person.id is not None and "@" not in person.id and not person.id.startswith("cio_"):
        return person.id
    return person.email or given


def anonymous_ids_of(workspace: Workspace, person: Person) -> list[str]:
    """The anonymous ids whose events are this person's business: those assigned to
    them, and the one their `anonymous_id` attribute names if it is assigned to nobody
    (claimed while merging was off). An id assigned to someone else never is."""
    ids = {a.anonymous_id for a in workspace.assignments_of(person.cio_id)}
    claimed = person.attributes.get("anonymous_id")
    if isinstance(claimed, str) and claimed and workspace.get_assignment(claimed) is None:
        ids.add(claimed)
    return sorted(ids)


def stored_json(value: Any, what: str) -> str:
    """Serialise a value for storage, refusing what JSON cannot carry."""
    try:
        return jsonio.dumps(value)
    except TypeError as error:
        raise InvalidInput(f"The {what} cannot be stored as JSON: {error}.") from None


def recipient_in(data: Mapping[str, Any]) -> str | None:
    """The recipient an event's data names (`data.recipient`, stripped), if any."""
    return given_text(data.get("recipient"))


def campaign_of(event: Event) -> Decision:
    """Whether a person's event (or an invite) can trigger campaigns."""
    if event.provenance is None:
        return rules.invite_campaign(timestamp=event.timestamp, received_at=event.received_at)
    return rules.campaign_eligibility(
        provenance=event.provenance,
        timestamp=event.timestamp,
        received_at=event.received_at,
        merged_at=event.merged_at,
    )


def place(event: Event, assignment: Assignment | None, merge_enabled: bool) -> rules.Placement:
    """Where an unattached anonymous event belongs now."""
    return rules.place_anonymous_event(
        received_at=event.received_at,
        timestamp=event.timestamp,
        assignment=assignment,
        merge_enabled=merge_enabled,
    )


def attach(event: Event, cio_id: str, rule: Rule, merged_at: datetime) -> None:
    """Make an anonymous event person `cio_id`'s, merged at `merged_at` by `rule`."""
    event.cio_id = cio_id
    event.provenance = Provenance.MERGED
    event.merged_at = merged_at
    event.rule = rule
    event.was_anonymous = True
    event.can_trigger = rules.can_trigger(event.timestamp, merged_at)


def settle(event: Event, placed: rules.Placed) -> None:
    """Give a new event the place `rules.place_event` decided for it."""
    if placed.merged_at is not None:
        assert placed.cio_id is not None
        attach(event, placed.cio_id, placed.rule, placed.merged_at)
        return
    event.rule = placed.rule
    event.cio_id = placed.cio_id
    event.provenance = placed.provenance
    event.can_trigger = placed.can_trigger


def merge_pending(
    events: Sequence[Event], assignment: Assignment, now: datetime
) -> tuple[list[Event], list[Event]]:
    """Place an anonymous id's pending events against its new assignment (merging on):
    those that merge are attached; the others keep the rule they are left with, decided
    `now`. The merged, then the stayed."""
    merged: list[Event] = []
    stayed: list[Event] = []
    for event in events:
        rule, merged_at = rules.placement_rule(
            received_at=event.received_at,
            timestamp=event.timestamp,
            assignment=assignment,
            merge_enabled=True,
        )
        if merged_at is not None:
            assert assignment.cio_id is not None  # a new assignment names its person
            attach(event, assignment.cio_id, rule, merged_at)
            merged.append(event)
        else:
            event.rule = rules.pending_rule(rule, event.timestamp, now)
            stayed.append(event)
    return merged, stayed


def anon_merge_activity(
    cio_id: str, anonymous_id: str, merged: Sequence[datetime], at: datetime
) -> Activity:
    """The "Anonymous Data Merged" activity for events merged together (`merged`: when
    each happened)."""
    oldest = min(merged)
    return Activity(
        cio_id=cio_id,
        type=ActivityType.ANON_MERGE,
        timestamp=at,
        anonymous_id=anonymous_id,
        data={
            "count": len(merged),
            "oldest_timestamp": int(oldest.timestamp()),
            "anonymous_id": anonymous_id,
        },
    )


def journal(
    workspace: Workspace,
    at: datetime,
    op: Operation,
    people: Iterable[str] = (),
    anonymous_id: str | None = None,
) -> None:
    """Keep in the journal the fixture record that replays `op` (see `ingest.emit`),
    naming whom it touched: cio_ids in `people`, and an `anonymous_id`."""
    workspace.add_journal_rows([journal_entry(at, op, people, anonymous_id)])


def journal_entry(
    at: datetime, op: Operation, people: Iterable[str], anonymous_id: str | None
) -> JournalRow:
    """The journal row `journal` keeps (a run of the bulk path keeps its own until it is
    written)."""
    return journal_row(at, type(op).__name__, to_record(op), people, anonymous_id)
