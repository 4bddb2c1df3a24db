"""Where an event belongs: on a person, anonymous, an invite; when an anonymous event
merges (the 5-minute window, 30-day retention) and what an identify's anonymous_id does.
The placement rule stands in its Python form and, for the set-based engines, its SQL
form beside it."""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

from cio_anon.errors import RuleViolation
from cio_anon.rules.campaigns import campaign_rule, can_trigger
from cio_anon.rules.codes import (
    MERGE_WINDOW,
    RETENTION,
    RULE_SENTENCES,
    Assignment,
    Decision,
    Placement,
    Provenance,
    Rule,
)

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


class Placed(NamedTuple):
    """Where a new event goes (`place_event`): its rule, its person (None: it stays
    anonymous, or it is an invite), how it became theirs, when an anonymous event merged,
    and whether it can trigger campaigns."""

    rule: Rule
    cio_id: str | None = None
    provenance: Provenance | None = None
    merged_at: datetime | None = None
    can_trigger: bool = False


def place_event(
    *,
    owner: str | None,
    anonymous_id: str | None,
    assignment: Assignment | None,
    merge_enabled: bool,
    timestamp: datetime,
    received_at: datetime,
) -> Placed:
    """The decision for a tracked event, the one the service and replay's bulk path both
    make: a person's event (`owner`, their cio_id) is theirs and can trigger campaigns
    within 72 hours; an anonymous one merges or stays as `placement_rule` says, judged
    on arrival when it stays; an event with neither is an invite."""
    if owner is not None:
        rule = campaign_rule(timestamp, received_at)
        return Placed(rule, owner, Provenance.TRACKED, None, rule is Rule.CAMPAIGN_ELIGIBLE)
    if anonymous_id is None:
        return Placed(Rule.INVITE, can_trigger=can_trigger(timestamp, received_at))
    rule, merged_at = placement_rule(
        received_at=received_at,
        timestamp=timestamp,
        assignment=assignment,
        merge_enabled=merge_enabled,
    )
    if merged_at is None:
        return Placed(pending_rule(rule, timestamp, received_at))
    assert assignment is not None and assignment.cio_id is not None
    return Placed(
        rule,
        assignment.cio_id,
        Provenance.MERGED,
        merged_at,
        can_trigger(timestamp, merged_at),
    )


# The same rule as SQL, for the set-based engines (`audit`, `setrules`): one arm per
# line of `placement_rule` above, in its order, over one row per anonymous event with
# `received_at`, `timestamp` (Unix seconds), `assignee` and `assigned_at` (its
# anonymous id's assignment; NULL for none) and `merged_at` (the later of received_at
# and assigned_at). Set-based, merging is on and no person is deleted, so the arms for
# a deleted person and for merging off have no SQL form. An event no one claims is
# judged on arrival (`pending_rule` at its receive time).
_WINDOW = int(MERGE_WINDOW.total_seconds())
_RETENTION = int(RETENTION.total_seconds())
PLACEMENT_SQL_ARMS: tuple[tuple[str, str], ...] = (
    (
        "assignee IS NULL",
        f"CASE WHEN timestamp < received_at - {_RETENTION} THEN '{Rule.RETENTION_EXPIRED}' "
        f"ELSE '{Rule.ANONYMOUS}' END",
    ),
    (f"received_at > assigned_at + {_WINDOW}", f"'{Rule.WINDOW_CLOSED}'"),
    (f"timestamp < merged_at - {_RETENTION}", f"'{Rule.RETENTION_EXPIRED}'"),
    ("received_at > assigned_at", f"'{Rule.MERGED_IN_WINDOW}'"),
    ("true", f"'{Rule.MERGED_ON_IDENTIFY}'"),
)
MERGING_RULES = (Rule.MERGED_IN_WINDOW, Rule.MERGED_ON_IDENTIFY)
"""The rules under which an anonymous event becomes its assignee's."""


def placement_sql() -> str:
    """SQL: `placement_rule`'s rule for an anonymous event (see PLACEMENT_SQL_ARMS)."""
    arms = " ".join(f"WHEN {when} THEN {rule}" for when, rule in PLACEMENT_SQL_ARMS)
    return f"(CASE {arms} END)"


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
_WITH_THE_IDENTIFY = (
    "It was received at the same moment as the identify that assigned its anonymous_id "
    "(in one request: SDKs send their calls in batches), which counts as before it, "
    "whatever their order in the request; it happened within the 30 days before it, so "
    "it merged then."
)
"""`merged_on_identify`'s sentence when the receive times are equal: an app that
identifies and then tracks sees its event sent after the identify, and is told why it
is not `merged_in_window`."""


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
    reason = _PLACEMENT_REASONS[rule]
    if rule is Rule.MERGED_ON_IDENTIFY and received_at == assignment.assigned_at:
        reason = _WITH_THE_IDENTIFY
    decision = Decision(rule, reason, facts)
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
    anonymous_id: str,
    timestamp: datetime,
    claimed_while_disabled: bool,
    now: datetime,
) -> Decision:
    """Why an anonymous event that is still anonymous stays so, judged at `now`. Past
    retention (30 days after it happened) it is `retention_expired`, whatever it was
    placed with: nothing can merge it any more, and purge deletes it."""
    decision = placement.decision
    facts = {
        **decision.facts,
        "anonymous_id": anonymous_id,
        "retention_expires_at": retention_deadline(timestamp),
    }
    if is_expired(timestamp, now):
        return Decision(
            Rule.RETENTION_EXPIRED,
            "It happened more than 30 days ago, so it will never merge; purge deletes it.",
            facts,
        )
    rule = pending_rule(decision.rule, timestamp, now, claimed_while_disabled)
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
    """The rule an event placed with `placed` is kept with while it stays anonymous (its
    placement's; `window_closed` stays so when the event ages past retention, as every
    engine places it; `decide_pending` judges it at a later time)."""
    if placed is Rule.WINDOW_CLOSED:
        return placed
    if is_expired(timestamp, now):
        return Rule.RETENTION_EXPIRED
    if claimed_while_disabled and placed is Rule.ANONYMOUS:
        return Rule.MERGE_DISABLED
    return placed
