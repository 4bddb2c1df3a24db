"""Which of a person's events can trigger campaigns: those that became the person's within
72 hours of happening."""

from __future__ import annotations

from datetime import datetime

from cio_anon.rules.codes import CAMPAIGN_WINDOW, Decision, Provenance, Rule


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


def can_trigger_sql(timestamp: str, attached_at: str) -> str:
    """SQL: `can_trigger`, over Unix seconds."""
    return f"({attached_at} - {timestamp} <= {int(CAMPAIGN_WINDOW.total_seconds())})"


def campaign_rule(timestamp: datetime, attached_at: datetime) -> Rule:
    """The rule `campaign_eligibility` decides for an event tracked or merged at
    `attached_at`, alone."""
    return Rule.CAMPAIGN_ELIGIBLE if can_trigger(timestamp, attached_at) else Rule.SEGMENT_ONLY


def campaign_rule_sql(timestamp: str, attached_at: str) -> str:
    """SQL: `campaign_rule`, over Unix seconds."""
    eligible, segment_only = Rule.CAMPAIGN_ELIGIBLE, Rule.SEGMENT_ONLY
    return (
        f"(CASE WHEN {can_trigger_sql(timestamp, attached_at)} THEN '{eligible}' "
        f"ELSE '{segment_only}' END)"
    )


def invite_campaign(*, timestamp: datetime, received_at: datetime) -> Decision:
    """Whether an invite event can trigger campaigns: Customer.io lets invites trigger
    campaigns to people who are not in the workspace, within 72 hours of happening."""
    deadline = timestamp + CAMPAIGN_WINDOW
    facts: dict[str, datetime | str | int | bool | None] = {
        "timestamp": timestamp,
        "received_at": received_at,
        "campaign_window_ends_at": deadline,
    }
    if can_trigger(timestamp, received_at):
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
