"""Events: track (a person's, an anonymous one, an invite) and purge."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from cio_anon import rules
from cio_anon.clock import parse_time, to_iso
from cio_anon.errors import InvalidInput
from cio_anon.ingest import Purge, Track
from cio_anon.models import Activity, Event, Person, PersonRef
from cio_anon.rules import Assignment, Provenance, Rule
from cio_anon.service import history
from cio_anon.service.people import identify
from cio_anon.service.session import opened
from cio_anon.service.shared import (
    Warning,
    anon_merge_activity,
    find_person,
    journal,
    lasting_identifier,
    place,
    recipient_in,
    settle,
    stored_json,
)
from cio_anon.store import Workspace


def new_event_id(now: datetime) -> str:
    """A ULID: 48 bits of milliseconds then 80 random bits, in Crockford base32."""
    alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
    value = (int(now.timestamp() * 1000) << 80) | int.from_bytes(os.urandom(10))
    return "".join(alphabet[(value >> shift) & 31] for shift in range(125, -1, -5))


# -- track ----------------------------------------------------------------------------


@dataclass
class TrackResult:
    event_id: str
    stored: bool
    status: str
    rule: Rule
    person: PersonRef | None = None
    anonymous_id: str | None = None
    provenance: Provenance | None = None
    can_trigger_campaigns: bool = False
    warnings: list[Warning] = field(default_factory=list)
    person_created: bool = False


def track(
    workspace: Workspace,
    now: datetime,
    *,
    name: str,
    person: str | None = None,
    anonymous_id: str | None = None,
    recipient: str | None = None,
    type: str = "event",
    data: Mapping[str, Any] | None = None,
    timestamp: object = None,
    event_id: str | None = None,
    source: str | None = None,
    create_person: bool = False,
) -> TrackResult:
    """Record one event: a person's, an anonymous one, or an invite (`recipient`, which
    becomes `data.recipient`, or a `data.recipient` already there).

    An unknown `person` is an error, unless `create_person` (the APIs create them).
    """
    name = name.strip()
    payload = dict(data or {})
    if recipient is not None:
        payload["recipient"] = recipient
    data_json = stored_json(payload, what=f"data of event {name!r}")
    rules.check_event_limits(name, data_json, page=type == rules.EventType.PAGE)
    try:
        event_type = rules.EventType(type).value
    except ValueError:
        raise InvalidInput(f"The event type {type!r} is not one of event, page, screen.") from None
    happened = now if timestamp is None else parse_time(timestamp, what="event timestamp")
    event_id = (event_id or "").strip() or new_event_id(now)
    rules.check_identifier_limit(event_id)
    if anonymous_id is not None:
        anonymous_id = anonymous_id.strip() or None
    if anonymous_id is not None:
        rules.check_identifier_limit(anonymous_id)
    to = recipient_in(payload)

    owner, created = None, False
    if person is not None:
        if create_person:
            owner, created = find_or_create(workspace, now, person)
        else:
            owner = find_person(workspace, person)
    else:
        rules.classify_unattached(anonymous_id, to)  # rejects an event with no identity
    event = Event(
        event_id=event_id,
        name=name,
        type=event_type,
        data=payload,
        timestamp=happened,
        received_at=now,
        rule=Rule.INVITE,
        anonymous_id=anonymous_id,
        recipient=to,
        source=source,
    )
    assignment = None
    merge_enabled = True
    if owner is None and anonymous_id is not None:
        assignment = workspace.get_assignment(anonymous_id)
        merge_enabled = workspace.settings().anonymous_merge
    placed = rules.place_event(
        owner=None if owner is None else owner.cio_id,
        anonymous_id=anonymous_id,
        assignment=assignment,
        merge_enabled=merge_enabled,
        timestamp=happened,
        received_at=now,
    )
    settle(event, placed)
    status, ref, warnings = "invite", None, []
    merge: Activity | None = None
    if owner is not None:
        status, ref = "identified", owner.ref()
    elif placed.merged_at is not None:
        assert placed.cio_id is not None and anonymous_id is not None
        merge = anon_merge_activity(placed.cio_id, anonymous_id, [happened], placed.merged_at)
        status = "identified"
        ref = workspace.person_refs([placed.cio_id])[placed.cio_id]
    elif anonymous_id is not None:
        status = "anonymous"
        if placed.rule is not Rule.ANONYMOUS:
            warnings.append(pending_warning(event, assignment, merge_enabled))
    if not workspace.insert_event(event, data_json):
        return TrackResult(
            event_id,
            stored=False,
            status="duplicate",
            rule=Rule.DUPLICATE,
            person_created=created,
            warnings=[
                Warning(Rule.DUPLICATE, f"An event with id {event_id!r} already exists; ignored.")
            ],
        )
    if merge is not None:
        workspace.add_activities([merge])
    call = Track(
        name,
        None if owner is None or person is None else lasting_identifier(person, owner),
        anonymous_id,
        event_type,
        payload,
        to_iso(happened),
        event_id,
    )
    journal(workspace, now, call, [event.cio_id] if event.cio_id else [], anonymous_id)
    return TrackResult(
        event_id,
        stored=True,
        status=status,
        rule=event.rule,
        person=ref,
        anonymous_id=anonymous_id,
        provenance=event.provenance,
        can_trigger_campaigns=event.can_trigger,
        warnings=warnings,
        person_created=created,
    )


def pending_warning(event: Event, assignment: Assignment | None, merge_enabled: bool) -> Warning:
    """The warning of an anonymous event that stayed anonymous under another rule than
    `anonymous` (its `rule`, settled): the rule, and the sentence for it."""
    assert event.anonymous_id is not None
    placement = place(event, assignment, merge_enabled)
    reason = rules.decide_pending(
        placement=placement,
        anonymous_id=event.anonymous_id,
        timestamp=event.timestamp,
        claimed_while_disabled=False,
        now=event.received_at,
    ).reason
    return Warning(event.rule, reason)


def find_or_create(workspace: Workspace, now: datetime, identifier: str) -> tuple[Person, bool]:
    """The person an identifier names, created (as identify would) if missing."""
    kind, value = rules.resolve_identifier(identifier)
    person = workspace.find_person(kind, value)
    if person is not None:
        return person, False
    identify(workspace, now, identifier=identifier)  # refuses a suppressed identifier
    return find_person(workspace, identifier), True


# -- purge ----------------------------------------------------------------------------


@dataclass
class PurgeResult:
    deleted: dict[str, int]
    dry_run: bool

    @property
    def total(self) -> int:
        return sum(self.deleted.values())


PURGE_CHUNK = 20_000
"""Events deleted per transaction, so a large purge never holds the write lock long."""
PURGED = "Purged: it stayed anonymous for more than 30 days after it happened."


def purge(
    workspace: Workspace, now: datetime, *, dry_run: bool = False, limit: int | None = None
) -> PurgeResult:
    """Delete unmerged anonymous events past the 30-day retention (or, dry, count them).

    `limit` deletes at most that many (the oldest first): see `purge_in_chunks`.
    """
    cutoff = rules.retention_cutoff(now)
    if dry_run:
        return PurgeResult(deleted=workspace.count_expired(cutoff), dry_run=True)
    deleted, purged = workspace.purge_expired(cutoff, now, PURGED, limit or -1)
    result = PurgeResult(deleted=deleted, dry_run=False)
    if result.total:
        history.forget_purged(workspace, purged)
        journal(workspace, now, Purge())
    return result


def purge_in_chunks(
    path: Path, now: datetime, *, dry_run: bool = False, chunk: int = PURGE_CHUNK
) -> PurgeResult:
    """Purge in transactions of at most `chunk` events; other writers get the lock in
    between. Each chunk is whole: a stop between chunks leaves a smaller purge done."""
    total: Counter[str] = Counter()
    while True:
        with opened(path, now, write=not dry_run) as workspace:
            result = purge(workspace, now, dry_run=dry_run, limit=chunk)
        total.update(result.deleted)
        if dry_run or result.total < chunk:
            return PurgeResult(deleted=dict(total), dry_run=dry_run)
