"""Customer.io's anonymous-activity rules as pure decisions.

Plain values and an explicit `now` go in; a `Decision` with a rule code (as the spec
spells it) and the facts it used comes out. Nothing here reads the clock, the disk or
the workspace, so every rule can be tested with a table of times.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from cio_anon import jsonio
from cio_anon.errors import InvalidInput, RuleViolation

RETENTION = timedelta(days=30)
"""How long Customer.io keeps an anonymous event that has not merged."""
MERGE_WINDOW = timedelta(minutes=5)
"""How long after an identify events for its anonymous_id still merge on arrival."""
CAMPAIGN_WINDOW = timedelta(hours=72)
"""How old an event may be, when it becomes a person's, and still trigger campaigns."""
MERGE_ON_BY_DEFAULT_SINCE = datetime(2021, 7, 1, tzinfo=UTC)
"""Workspaces created from this day on have anonymous merging on by default."""


class Rule(StrEnum):
    """The rule codes every outcome carries."""

    ANONYMOUS = "anonymous"
    INVITE = "invite"
    NO_IDENTITY = "no_identity"
    MERGED_ON_IDENTIFY = "merged_on_identify"
    MERGED_IN_WINDOW = "merged_in_window"
    WINDOW_CLOSED = "window_closed"
    ANONYMOUS_ID_TAKEN = "anonymous_id_taken"
    MERGE_DISABLED = "merge_disabled"
    RETENTION_EXPIRED = "retention_expired"
    CAMPAIGN_ELIGIBLE = "campaign_eligible"
    SEGMENT_ONLY = "segment_only"
    DUPLICATE = "duplicate"
    LIMIT_EXCEEDED = "limit_exceeded"
    SUPPRESSED = "suppressed"


class Provenance(StrEnum):
    """How an event came to be a person's."""

    TRACKED = "tracked"
    MERGED = "merged"
    INHERITED = "inherited"


class EventType(StrEnum):
    EVENT = "event"
    PAGE = "page"
    SCREEN = "screen"


Facts = Mapping[str, datetime | str | int | bool | None]


@dataclass(frozen=True)
class Decision:
    """A rule's outcome: the code, one sentence, and the facts behind it."""

    rule: Rule
    reason: str
    facts: Facts = field(default_factory=dict)


@dataclass(frozen=True)
class Assignment:
    """anonymous_id `anonymous_id` was assigned to person `cio_id` at `assigned_at`.

    An assignment is made once and kept: when its person is deleted `cio_id` becomes
    None, and the id still cannot be assigned to anyone else."""

    anonymous_id: str
    cio_id: str | None
    assigned_at: datetime


@dataclass(frozen=True)
class Placement:
    """Where an unattached anonymous event goes: to `cio_id` at `merged_at`, or nowhere."""

    decision: Decision
    cio_id: str | None = None
    merged_at: datetime | None = None

    @property
    def merges(self) -> bool:
        return self.cio_id is not None


# -- workspace defaults -------------------------------------------------------------


def default_anonymous_merge(created_at: datetime) -> bool:
    """Merging is on by default for workspaces created on or after 2021-07-01."""
    return created_at >= MERGE_ON_BY_DEFAULT_SINCE


# -- identifiers --------------------------------------------------------------------


class IdentifierKind(StrEnum):
    CIO_ID = "cio_id"
    EMAIL = "email"
    ID = "id"


def resolve_identifier(value: str) -> tuple[IdentifierKind, str]:
    """Read one identifier string as Customer.io does: `cio_<x>`, an email, or an id."""
    text = value.strip()
    if not text:
        raise InvalidInput("An identifier cannot be empty.")
    check_identifier_limit(text)
    if text.startswith("cio_") and len(text) > 4:
        return IdentifierKind.CIO_ID, text[4:]
    if "@" in text:
        return IdentifierKind.EMAIL, text
    return IdentifierKind.ID, text


def email_key(email: str) -> str:
    """Emails are unique and compared case-insensitively."""
    return email.strip().casefold()


# -- limits -------------------------------------------------------------------------

IDENTIFIER_MAX_BYTES = 150
ATTRIBUTE_NAME_MAX_BYTES = 150
ATTRIBUTE_VALUE_MAX_BYTES = 1000
ATTRIBUTES_PER_CALL_MAX = 300
EVENT_NAME_MAX_BYTES = 100
EVENT_DATA_MAX_BYTES = 100_000


def _size(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def _within(text: str, limit: int) -> bool:
    """Whether `text` is at most `limit` bytes: at once when it is short enough that
    it must be (a character is at most 4 bytes), else by encoding it."""
    return len(text) * 4 <= limit or _size(text) <= limit


def _too_big(what: str, size: int, limit: int) -> RuleViolation:
    return RuleViolation(
        Rule.LIMIT_EXCEEDED,
        f"The {what} is {size} bytes; Customer.io allows at most {limit} bytes.",
    )


def check_identifier_limit(value: str) -> None:
    if not _within(value, IDENTIFIER_MAX_BYTES):
        raise _too_big(f"identifier {value[:40]!r}...", _size(value), IDENTIFIER_MAX_BYTES)


def check_attribute_limits(attributes: Mapping[str, Any]) -> None:
    """Customer.io's limits on one identify: count, name length, value length."""
    if len(attributes) > ATTRIBUTES_PER_CALL_MAX:
        raise RuleViolation(
            Rule.LIMIT_EXCEEDED,
            f"The identify sets {len(attributes)} attributes; Customer.io allows at most "
            f"{ATTRIBUTES_PER_CALL_MAX} in one call.",
        )
    for name, value in attributes.items():
        if not name.strip():
            raise InvalidInput("An attribute name cannot be empty.")
        if not _within(name, ATTRIBUTE_NAME_MAX_BYTES):
            size = _size(name)
            raise _too_big(f"attribute name {name[:40]!r}...", size, ATTRIBUTE_NAME_MAX_BYTES)
        # measured as stored and sent: the text itself, or compact UTF-8 JSON
        try:
            text = value if isinstance(value, str) else jsonio.dumps(value)
        except TypeError as error:
            raise InvalidInput(
                f"The value of attribute {name!r} cannot be stored as JSON: {error}."
            ) from None
        if not _within(text, ATTRIBUTE_VALUE_MAX_BYTES):
            size = _size(text)
            raise _too_big(f"value of attribute {name!r}", size, ATTRIBUTE_VALUE_MAX_BYTES)


def check_event_limits(name: str, data_json: str) -> None:
    """Customer.io's limits on one event: name length and data size (as JSON)."""
    if not name:
        raise InvalidInput("An event needs a name.")
    if not _within(name, EVENT_NAME_MAX_BYTES):
        raise _too_big(f"event name {name[:40]!r}...", _size(name), EVENT_NAME_MAX_BYTES)
    if not _within(data_json, EVENT_DATA_MAX_BYTES):
        raise _too_big(f"data of event {name!r}", _size(data_json), EVENT_DATA_MAX_BYTES)


# -- where an incoming event belongs ------------------------------------------------


def classify_unattached(anonymous_id: str | None, recipient: str | None) -> Decision:
    """An event sent without a person: anonymous, an invite, or rejected."""
    if anonymous_id:
        return Decision(
            Rule.ANONYMOUS,
            f"The event carries anonymous_id {anonymous_id!r} and no person.",
            {"anonymous_id": anonymous_id},
        )
    if recipient:
        return Decision(
            Rule.INVITE,
            f"The event has no person and no anonymous_id but a recipient ({recipient}): "
            "it is an invite event, never merged and never purged.",
            {"recipient": recipient},
        )
    raise RuleViolation(
        Rule.NO_IDENTITY,
        "The event has no person, no anonymous_id and no data.recipient, so it cannot be stored.",
    )


def placement_rule(
    *,
    received_at: datetime,
    timestamp: datetime,
    assignment: Assignment | None,
    merge_enabled: bool,
) -> tuple[Rule, datetime | None]:
    """The rule `place_anonymous_event` decides, and the merge time when the event
    merges (None when it does not), without the facts and the sentence: replay's bulk
    path decides millions of these."""
    if assignment is None:
        return Rule.ANONYMOUS, None
    if received_at > assignment.assigned_at + MERGE_WINDOW:
        return Rule.WINDOW_CLOSED, None
    if assignment.cio_id is None:
        return Rule.ANONYMOUS, None
    if not merge_enabled:
        return Rule.MERGE_DISABLED, None
    in_window = received_at > assignment.assigned_at
    merged_at = received_at if in_window else assignment.assigned_at
    if timestamp < merged_at - RETENTION:
        return Rule.RETENTION_EXPIRED, None
    return (Rule.MERGED_IN_WINDOW if in_window else Rule.MERGED_ON_IDENTIFY), merged_at


_PLACEMENT_REASONS = {
    Rule.WINDOW_CLOSED: "It arrived after the 5-minute window that followed the identify which "
    "assigned its anonymous_id; re-identifying does not reopen the window.",
    Rule.MERGE_DISABLED: "Anonymous event merging is turned off in this workspace.",
    Rule.RETENTION_EXPIRED: "It happened more than 30 days before the merge, so it was past "
    "retention.",
    Rule.MERGED_IN_WINDOW: "It arrived within 5 minutes after the identify that assigned its "
    "anonymous_id, so it merged on arrival.",
    Rule.MERGED_ON_IDENTIFY: "It was received before the identify that assigned its "
    "anonymous_id and happened within the 30 days before it, so it merged then.",
}


def place_anonymous_event(
    *,
    received_at: datetime,
    timestamp: datetime,
    assignment: Assignment | None,
    merge_enabled: bool,
) -> Placement:
    """Decide whether an anonymous event belongs to the person its id was assigned to.

    The answer depends only on this event's own times and its anonymous_id's
    assignment, never on other events or on the order calls arrived in: an event
    received before the identify merges at the identify, one received within five
    minutes after it merges on arrival, later ones stay anonymous. Retention is
    judged at the moment of the merge.
    """
    rule, merged_at = placement_rule(
        received_at=received_at,
        timestamp=timestamp,
        assignment=assignment,
        merge_enabled=merge_enabled,
    )
    facts: dict[str, datetime | str | int | bool | None] = {
        "timestamp": timestamp,
        "received_at": received_at,
    }
    if assignment is None:
        reason = "Its anonymous_id has not been assigned to anyone yet."
        return Placement(Decision(rule, reason, facts))
    facts["assigned_at"] = assignment.assigned_at
    facts["window_closes_at"] = assignment.assigned_at + MERGE_WINDOW
    if rule is Rule.ANONYMOUS:
        reason = (
            "Its anonymous_id was assigned to a person who has since been deleted; "
            "nothing merges into a deleted profile, and the id cannot be assigned again."
        )
        return Placement(Decision(rule, reason, facts))
    if rule in (Rule.RETENTION_EXPIRED, Rule.MERGED_IN_WINDOW, Rule.MERGED_ON_IDENTIFY):
        at = received_at if received_at > assignment.assigned_at else assignment.assigned_at
        facts["merged_at"] = at
        facts["retention_cutoff"] = at - RETENTION
    decision = Decision(rule, _PLACEMENT_REASONS[rule], facts)
    if merged_at is None:
        return Placement(decision)
    return Placement(decision, cio_id=assignment.cio_id, merged_at=merged_at)


def recorded_placement(
    rule: Rule, *, received_at: datetime, timestamp: datetime, assignment: Assignment | None
) -> Decision:
    """The placement an event was given, rebuilt from what was stored with it: its rule,
    its times and its anonymous_id's assignment (made once, never changed).

    This is never a re-decision under today's settings: the stored rule says which
    setting was in force, and only the sentence and the facts are recomputed.
    """
    tried = [
        place_anonymous_event(
            received_at=received_at,
            timestamp=timestamp,
            assignment=assignment,
            merge_enabled=merge_enabled,
        ).decision
        for merge_enabled in (True, False)
    ]
    for decision in tried:
        if decision.rule is rule:
            return decision
    return Decision(rule, RULE_SENTENCES[rule], tried[0].facts)


RULE_SENTENCES: Mapping[Rule, str] = {
    Rule.ANONYMOUS: "It carries an anonymous_id and no person.",
    Rule.INVITE: "It is an invite event: no person, no anonymous_id, a recipient.",
    Rule.NO_IDENTITY: "It has no person, no anonymous_id and no recipient.",
    Rule.MERGED_ON_IDENTIFY: "It merged when its anonymous_id was assigned by an identify.",
    Rule.MERGED_IN_WINDOW: "It merged on arrival, within 5 minutes after the identify.",
    Rule.WINDOW_CLOSED: "It arrived after the 5-minute window that followed the identify.",
    Rule.ANONYMOUS_ID_TAKEN: "Its anonymous_id belongs to another person.",
    Rule.MERGE_DISABLED: "Anonymous event merging was turned off when it was decided.",
    Rule.RETENTION_EXPIRED: "It was past the 30-day retention when it was decided.",
    Rule.CAMPAIGN_ELIGIBLE: "It can trigger campaigns.",
    Rule.SEGMENT_ONLY: "It counts for segments but cannot trigger campaigns.",
    Rule.DUPLICATE: "An event with its id already existed.",
    Rule.LIMIT_EXCEEDED: "It broke one of Customer.io's limits.",
    Rule.SUPPRESSED: "Its person's identifier is suppressed: the call is ignored until the "
    "identifier is unsuppressed.",
}
"""One sentence per rule code, for a decision recorded without its own sentence."""


def decide_assignment(
    *,
    anonymous_id: str,
    cio_id: str,
    existing: Assignment | None,
    merge_enabled: bool,
    now: datetime,
) -> Decision:
    """What an identify of person `cio_id` with `anonymous_id` does to the assignment.

    `merged_on_identify` means the id is (now or already) this person's; the facts say
    whether it was assigned by this call (`newly_assigned`).
    """
    facts: dict[str, datetime | str | int | bool | None] = {
        "anonymous_id": anonymous_id,
        "identified_at": now,
    }
    if existing is not None:
        facts["assigned_at"] = existing.assigned_at
        facts["assigned_to"] = existing.cio_id
        if existing.cio_id is None:
            return Decision(
                Rule.ANONYMOUS_ID_TAKEN,
                f"anonymous_id {anonymous_id!r} was assigned to a person who has since been "
                "deleted; an anonymous_id is assigned once, ever, so nothing merged.",
                facts,
            )
        if existing.cio_id != cio_id:
            return Decision(
                Rule.ANONYMOUS_ID_TAKEN,
                f"anonymous_id {anonymous_id!r} was already assigned to another person; "
                "an anonymous_id is assigned once, so nothing merged.",
                facts,
            )
        facts["newly_assigned"] = False
        return Decision(
            Rule.MERGED_ON_IDENTIFY,
            f"anonymous_id {anonymous_id!r} was already assigned to this person; "
            "identifying again merges nothing new.",
            facts,
        )
    if not merge_enabled:
        return Decision(
            Rule.MERGE_DISABLED,
            "Anonymous event merging is turned off in this workspace: the anonymous_id "
            "attribute was stored, nothing was assigned or merged.",
            facts,
        )
    facts["newly_assigned"] = True
    facts["window_closes_at"] = now + MERGE_WINDOW
    return Decision(
        Rule.MERGED_ON_IDENTIFY,
        f"anonymous_id {anonymous_id!r} is now assigned to this person.",
        facts,
    )


# -- retention ----------------------------------------------------------------------


def retention_deadline(timestamp: datetime) -> datetime:
    """When an unmerged anonymous event stops being mergeable (and `purge` may delete it)."""
    return timestamp + RETENTION


def retention_cutoff(now: datetime) -> datetime:
    """Anonymous events that happened before this are past retention."""
    return now - RETENTION


def is_expired(timestamp: datetime, now: datetime) -> bool:
    """An anonymous event more than 30 days old never merges."""
    return timestamp < retention_cutoff(now)


def decide_pending(
    *,
    placement: Placement,
    timestamp: datetime,
    claimed_while_disabled: bool,
    now: datetime,
) -> Decision:
    """Why an anonymous event that is still anonymous stays so, judged at `now`."""
    decision = placement.decision
    rule = pending_rule(decision.rule, timestamp, now, claimed_while_disabled)
    if rule is Rule.WINDOW_CLOSED:
        return decision
    facts = {**decision.facts, "retention_expires_at": retention_deadline(timestamp)}
    if is_expired(timestamp, now):
        return Decision(
            Rule.RETENTION_EXPIRED,
            "It happened more than 30 days ago, so it will never merge; purge deletes it.",
            facts,
        )
    if rule is not decision.rule:
        return Decision(
            rule,
            "A person carries this anonymous_id, but it was identified while anonymous "
            "merging was off; identify them again with merging on to merge it.",
            facts,
        )
    return Decision(decision.rule, decision.reason, facts)


def pending_rule(
    placed: Rule, timestamp: datetime, now: datetime, claimed_while_disabled: bool = False
) -> Rule:
    """The rule `decide_pending` decides for an event placed with `placed`, alone."""
    if placed is Rule.WINDOW_CLOSED:
        return placed
    if is_expired(timestamp, now):
        return Rule.RETENTION_EXPIRED
    if claimed_while_disabled and placed is Rule.ANONYMOUS:
        return Rule.MERGE_DISABLED
    return placed


# -- campaigns ----------------------------------------------------------------------


def campaign_eligibility(
    *,
    provenance: Provenance,
    timestamp: datetime,
    received_at: datetime,
    merged_at: datetime | None,
) -> Decision:
    """Whether a person's event can trigger campaigns; every event counts for segments."""
    facts: dict[str, datetime | str | int | bool | None] = {
        "timestamp": timestamp,
        "provenance": str(provenance),
    }
    if provenance is Provenance.INHERITED:
        return Decision(
            Rule.SEGMENT_ONLY,
            "It was moved here by a profile merge; inherited events never trigger campaigns.",
            facts,
        )
    attached_at = received_at if provenance is Provenance.TRACKED else merged_at
    if attached_at is None:
        raise ValueError("a merged event needs merged_at")
    facts["attached_at"] = attached_at
    facts["campaign_window_ends_at"] = timestamp + CAMPAIGN_WINDOW
    when = "received" if provenance is Provenance.TRACKED else "merged"
    if can_trigger(timestamp, attached_at):
        return Decision(
            Rule.CAMPAIGN_ELIGIBLE,
            f"It was {when} within 72 hours of happening, so it can trigger campaigns.",
            facts,
        )
    return Decision(
        Rule.SEGMENT_ONLY,
        f"It was {when} more than 72 hours after it happened, so it counts for segments "
        "but cannot trigger campaigns.",
        facts,
    )


def can_trigger(timestamp: datetime, attached_at: datetime) -> bool:
    """Whether an event that became a person's at `attached_at` can trigger campaigns
    (`campaign_eligibility`'s answer, alone)."""
    return attached_at - timestamp <= CAMPAIGN_WINDOW


def campaign_rule(timestamp: datetime, attached_at: datetime) -> Rule:
    """The rule `campaign_eligibility` decides for an event tracked or merged at
    `attached_at`, alone."""
    return Rule.CAMPAIGN_ELIGIBLE if can_trigger(timestamp, attached_at) else Rule.SEGMENT_ONLY


def invite_campaign(*, timestamp: datetime, received_at: datetime) -> Decision:
    """Whether an invite event can trigger campaigns: Customer.io lets invites trigger
    campaigns to people who are not in the workspace, within 72 hours of happening."""
    deadline = timestamp + CAMPAIGN_WINDOW
    facts: dict[str, datetime | str | int | bool | None] = {
        "timestamp": timestamp,
        "received_at": received_at,
        "campaign_window_ends_at": deadline,
    }
    if received_at - timestamp <= CAMPAIGN_WINDOW:
        return Decision(
            Rule.CAMPAIGN_ELIGIBLE,
            "It is an invite received within 72 hours of happening, so it can trigger "
            "campaigns to its recipient.",
            facts,
        )
    return Decision(
        Rule.INVITE,
        "It is an invite received more than 72 hours after it happened, so it cannot "
        "trigger campaigns.",
        facts,
    )


# -- attributes ---------------------------------------------------------------------


@dataclass(frozen=True)
class AttributeChange:
    attribute: str
    before: Any
    after: Any


def apply_attributes(
    current: Mapping[str, Any], updates: Mapping[str, Any]
) -> tuple[dict[str, Any], list[AttributeChange]]:
    """Merge `updates` shallowly into `current`; a value of "" or null removes the
    attribute (a null is never stored)."""
    result = dict(current)
    changes: list[AttributeChange] = []
    for name, value in updates.items():
        before = result.get(name)
        if is_removal(value):
            if name in result:
                del result[name]
                changes.append(AttributeChange(name, before, None))
            continue
        if name not in result or before != value:
            result[name] = value
            changes.append(AttributeChange(name, before, value))
    return result, changes


def is_removal(value: object) -> bool:
    """An attribute value of "" or null removes the attribute."""
    return value is None or value == ""


def change_identifier(
    name: str,
    *,
    before: str | None,
    after: str | None,
    holder: str | None,
    cio_id: str,
    has_other_identifier: bool,
) -> AttributeChange | dict[str, Any] | None:
    """Setting a person's `id` or `email`: the change, a failure record, or nothing to do.

    An identifier that belongs to someone else (`holder`) is not applied; neither is
    removing a person's only identifier.
    """
    if after is None:
        if before is None:
            return None
        if not has_other_identifier:
            return {
                "attribute": name,
                "from": before,
                "to": None,
                "reason": f"the {name} is this person's only identifier",
            }
        return AttributeChange(name, before, None)
    if before == after:
        return None
    if holder is not None and holder != cio_id:
        return {
            "attribute": name,
            "from": before,
            "to": after,
            "reason": f"the {name} {after!r} belongs to another person",
            "held_by": holder,
        }
    return AttributeChange(name, before, after)


def fill_missing(current: Mapping[str, Any], source: Mapping[str, Any]) -> dict[str, Any]:
    """The attributes of `source` that `current` does not have yet."""
    return {name: value for name, value in source.items() if name not in current}


# -- profile merge ------------------------------------------------------------------


def inherits(timestamp: datetime, now: datetime) -> Decision:
    """Whether a secondary's event moves to the primary in a profile merge."""
    cutoff = now - RETENTION
    facts = {"timestamp": timestamp, "cutoff": cutoff}
    if timestamp >= cutoff:
        return Decision(
            Rule.SEGMENT_ONLY,
            "It was inherited from a merged profile; it counts for segments only.",
            facts,
        )
    return Decision(
        Rule.RETENTION_EXPIRED,
        "It was older than 30 days when its profile was merged into another, so it was dropped.",
        facts,
    )
