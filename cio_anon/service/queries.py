"""Reading: the activity log's two tabs, a profile, the people, and `explain`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cio_anon import rules
from cio_anon.clock import to_iso
from cio_anon.errors import InvalidInput, NotFound
from cio_anon.models import (
    MAX_LIMIT,
    ActivityType,
    Device,
    EventCounts,
    LogRow,
    Person,
    PersonRef,
    Relationship,
)
from cio_anon.rules import Assignment, Decision, Provenance
from cio_anon.service.shared import anonymous_ids_of, campaign_of, find_person
from cio_anon.store import LogFilter, Workspace, activity_row

TABS = ("identified", "anonymous")


def _check_limit(limit: int) -> None:
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"The --limit must be between 1 and {MAX_LIMIT:,}.")


# -- the activity log -----------------------------------------------------------------


@dataclass
class LogPage:
    now: datetime
    identified: list[LogRow] | None
    anonymous: list[LogRow] | None
    next_identified: str | None = None
    next_anonymous: str | None = None

    def next_of(self, tab: str) -> str | None:
        """The cursor of a tab's next page (None: this was the last)."""
        return self.next_identified if tab == "identified" else self.next_anonymous


def _cursor(tab: str, rows: list[LogRow] | None, limit: int) -> str | None:
    """Where the next page of a tab starts, when this page was full."""
    if not rows or len(rows) < limit:
        return None
    timestamp, seq, kind = rows[-1].key
    return f"i:{timestamp!r}:{seq}:{kind}" if tab == "identified" else f"a:{timestamp!r}:{seq}"


def _parse_cursor(cursor: str) -> tuple[str, tuple[float, int, int]]:
    """The tab a cursor continues and the (timestamp, seq, kind) key it starts after."""
    parts = cursor.split(":")
    try:
        if parts[0] == "i" and len(parts) == 4:
            return "identified", (float(parts[1]), int(parts[2]), int(parts[3]))
        if parts[0] == "a" and len(parts) == 3:
            return "anonymous", (float(parts[1]), int(parts[2]), 0)
    except ValueError:
        pass
    raise InvalidInput(f"The cursor {cursor!r} is not one that log printed as `next`.")


def activity_log(
    workspace: Workspace,
    now: datetime,
    *,
    person: str | None = None,
    anonymous_id: str | None = None,
    tab: str | None = None,
    type: str | None = None,
    limit: int = 50,
    before: str | None = None,
) -> LogPage:
    """The activity log's two tabs, newest first, `limit` rows each.

    `before` (a cursor from a previous page's `next`) continues that page's tab. A
    person's Anonymous tab shows the ids that are theirs (`anonymous_ids_of`), never
    one assigned to someone else.
    """
    _check_limit(limit)
    if tab is not None and tab not in TABS:
        raise InvalidInput(f"The tab {tab!r} is not one of identified, anonymous.")
    key = None
    if before is not None:
        cursor_tab, key = _parse_cursor(before)
        if tab is not None and tab != cursor_tab:
            raise InvalidInput(f"The cursor continues the {cursor_tab} tab, not {tab}.")
        tab = cursor_tab
    cio_id = None
    their_ids: list[str] | None = None
    if person is not None:
        who = find_person(workspace, person)
        cio_id = who.cio_id
        their_ids = anonymous_ids_of(workspace, who)
    flt = LogFilter(cio_id=cio_id, anonymous_id=anonymous_id, type=type)
    identified = anonymous = None
    if tab in (None, "identified"):
        identified = workspace.identified_log(flt, limit, key)
    if tab in (None, "anonymous"):
        anonymous = workspace.anonymous_log(flt, their_ids, limit, key)
    return LogPage(
        now=now,
        identified=identified,
        anonymous=anonymous,
        next_identified=_cursor("identified", identified, limit),
        next_anonymous=_cursor("anonymous", anonymous, limit),
    )


# -- a profile, the people ------------------------------------------------------------


@dataclass
class Profile:
    now: datetime
    person: Person
    anonymous_ids: list[Assignment]
    counts: EventCounts
    merges: list[LogRow]
    """Anonymous Data Merged and profile-merge activities, as rows of the log."""
    devices: list[Device] = field(default_factory=list)
    relationships: list[Relationship] = field(default_factory=list)


def show(workspace: Workspace, now: datetime, *, identifier: str) -> Profile:
    """One person's profile: identifiers, attributes, anonymous ids, counts, merges."""
    person = find_person(workspace, identifier)
    ref = person.ref()
    return Profile(
        now=now,
        person=person,
        anonymous_ids=workspace.assignments_of(person.cio_id),
        counts=workspace.event_counts(person.cio_id),
        devices=workspace.devices_of(person.cio_id),
        relationships=workspace.relationships_of(person.cio_id),
        merges=[
            activity_row(activity, ref, seq)
            for activity, seq in workspace.activities_of(
                person.cio_id, (ActivityType.ANON_MERGE, ActivityType.PROFILE_MERGE)
            )
        ],
    )


def list_people(workspace: Workspace, *, limit: int = 100) -> list[tuple[Person, int]]:
    _check_limit(limit)
    return workspace.people(limit)


def search_people(
    workspace: Workspace, query: str, *, limit: int = 100
) -> list[tuple[Person, int]]:
    """People found by the start of their id or email, their cio_id, or an anonymous id
    assigned to them."""
    _check_limit(limit)
    return workspace.search_people(query, limit) if query.strip() else []


@dataclass
class AnonymousProfile:
    """An anonymous id: whom it is assigned to (if anyone), its traits, its events."""

    anonymous_id: str
    assignment: Assignment | None
    person: PersonRef | None
    traits: dict[str, Any]
    pending: int
    """Its events that are still anonymous."""


def anonymous_profile(workspace: Workspace, *, anonymous_id: str) -> AnonymousProfile:
    assignment = workspace.get_assignment(anonymous_id)
    person = None
    if assignment is not None and assignment.cio_id is not None:
        person = workspace.person_refs([assignment.cio_id])[assignment.cio_id]
    return AnonymousProfile(
        anonymous_id,
        assignment,
        person,
        workspace.anonymous_traits(anonymous_id),
        workspace.count_pending(anonymous_id),
    )


# -- explain --------------------------------------------------------------------------


@dataclass
class Explanation:
    event_id: str
    status: str
    decision: Decision
    person: PersonRef | None
    anonymous_id: str | None
    name: str
    source: str | None = None
    campaign: Decision | None = None
    """Whether it can trigger campaigns (people's events and invites; else None)."""


def explain(
    workspace: Workspace,
    now: datetime,
    *,
    event_id: str,
    claims: Mapping[str, list[str]] | None = None,
    refused: str | None = None,
) -> Explanation:
    """Why an event is where it is: its status, the rule that put it there, the times.

    The decision reported is the one taken when the event arrived (or when an identify
    or a merge moved it), under the settings in force then, as stored with the event;
    only the passing of time (retention) is judged at `now`. `claims`: the workspace's
    `anonymous_claims`, read once by whoever explains many events (`diff`); else an
    anonymous event's claimants are looked up (a reading of every person). `refused`:
    how a running serve refused a call sent with this id, said when no event has it.
    """
    event = workspace.get_event(event_id)
    if event is None:
        tombstone = workspace.get_tombstone(event_id)
        if tombstone is None:
            if refused is not None:
                raise NotFound(
                    f"No event has the id {event_id!r}: serve refused the call sent with it, "
                    f"{refused.rstrip('.')}. A call that was refused is never stored."
                )
            handled = workspace.handled_at(event_id)
            if handled is not None:
                raise NotFound(
                    f"{event_id!r} is not an event: it is the messageId of an identify, "
                    f"handled at {to_iso(handled)}. An identify is a call, not an event: "
                    "the log of the person it names shows what it did then."
                )
            raise NotFound(
                f"No event has the id {event_id!r} in this workspace. A call that was "
                "refused is never stored: serve's access log says why (`refused: …`), and "
                "`serve --record` keeps it marked so, as `replay` and `check` list it."
            )
        return Explanation(
            event_id=event_id,
            status="purged",
            decision=Decision(
                tombstone.rule,
                tombstone.reason,
                {
                    "timestamp": tombstone.timestamp,
                    "received_at": tombstone.received_at,
                    "removed_at": tombstone.removed_at,
                },
            ),
            person=None,
            anonymous_id=tombstone.anonymous_id,
            name=tombstone.name,
        )
    assignment = (
        None if event.anonymous_id is None else workspace.get_assignment(event.anonymous_id)
    )
    if event.cio_id is not None:
        person = workspace.person_refs([event.cio_id]).get(event.cio_id)
        campaign = campaign_of(event)
        decision = campaign
        if event.provenance is Provenance.MERGED:
            placed = rules.recorded_placement(
                event.rule,
                received_at=event.received_at,
                timestamp=event.timestamp,
                assignment=assignment,
            )
            decision = Decision(event.rule, placed.reason, {**placed.facts, **campaign.facts})
        return Explanation(
            event_id,
            "identified",
            decision,
            person,
            event.anonymous_id,
            event.name,
            event.source,
            campaign,
        )
    if event.is_invite:
        decision = rules.classify_unattached(None, event.recipient)
        campaign = campaign_of(event)
        return Explanation(
            event_id,
            "invite",
            Decision(decision.rule, decision.reason, {**decision.facts, **campaign.facts}),
            None,
            None,
            event.name,
            event.source,
            campaign,
        )
    assert event.anonymous_id is not None
    placed = rules.recorded_placement(
        event.rule, received_at=event.received_at, timestamp=event.timestamp, assignment=assignment
    )
    decision = rules.decide_pending(
        placement=rules.Placement(placed),
        anonymous_id=event.anonymous_id,
        timestamp=event.timestamp,
        claimed_while_disabled=assignment is None
        and bool(
            workspace.people_claiming(event.anonymous_id)
            if claims is None
            else claims.get(event.anonymous_id)
        ),
        now=now,
    )
    return Explanation(
        event_id, "anonymous", decision, None, event.anonymous_id, event.name, event.source
    )
