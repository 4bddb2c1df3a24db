"""The rule codes every outcome carries, the decisions' shapes, and the times every rule
is written in terms of."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum

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
