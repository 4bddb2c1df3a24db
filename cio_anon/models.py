"""The records the workspace stores and the service passes around."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from cio_anon.clock import to_iso
from cio_anon.rules import Provenance, Rule

DEFAULT_PATH = Path("cio_anon.db")
"""The workspace file when neither --db nor CIO_ANON_DB names one."""
MAX_LIMIT = 100_000
"""The most rows one page of the log (or the people list) holds."""


@dataclass(frozen=True)
class Settings:
    created_at: datetime
    anonymous_merge: bool

    def record(self) -> dict[str, Any]:
        """The control record that sets these settings (a fixture's or the journal's)."""
        return settings_record(self.anonymous_merge, self.created_at)


def settings_record(anonymous_merge: bool | None, created_at: datetime | None) -> dict[str, Any]:
    """The control record `{"op": "settings", ...}` that changes what is given."""
    record: dict[str, Any] = {"op": "settings"}
    if created_at is not None:
        record["created_at"] = to_iso(created_at)
    if anonymous_merge is not None:
        record["anonymous_merge"] = anonymous_merge
    return record


@dataclass(slots=True)
class Person:
    cio_id: str
    id: str | None
    email: str | None
    attributes: dict[str, Any]
    created_at: datetime
    updated_at: datetime

    def ref(self) -> PersonRef:
        return PersonRef(self.cio_id, self.id, self.email)


@dataclass(frozen=True)
class PersonRef:
    """The three identifiers of a person, as the log and JSON show them."""

    cio_id: str
    id: str | None
    email: str | None

    @property
    def label(self) -> str:
        return self.email or self.id or f"cio_{self.cio_id}"


@dataclass(slots=True)
class Event:
    event_id: str
    name: str
    type: str
    data: dict[str, Any]
    timestamp: datetime
    received_at: datetime
    rule: Rule
    cio_id: str | None = None
    anonymous_id: str | None = None
    recipient: str | None = None
    provenance: Provenance | None = None
    merged_at: datetime | None = None
    can_trigger: bool = False
    source: str | None = None
    was_anonymous: bool = False
    """It was anonymous once (merged from an anonymous profile), whatever moved it since."""

    @property
    def is_invite(self) -> bool:
        return self.cio_id is None and self.anonymous_id is None and self.recipient is not None


class ActivityType:
    """Activity types other than events, as the Identified tab names them."""

    ANON_MERGE = "anon_merge"
    PROFILE_CREATE = "profile_create"
    PROFILE_MERGE = "profile_merge"
    ATTRIBUTE_CHANGE = "attribute_change"
    FAILED_ATTRIBUTE_CHANGE = "failed_attribute_change"
    DEVICE_UPDATE = "device_update"
    DEVICE_DELETE = "device_delete"
    RELATIONSHIP_ADD = "relationship_add"
    RELATIONSHIP_DELETE = "relationship_delete"
    STORED_CALL = "stored_call"
    """A call Customer.io accepts whose effect cio-anon does not model (metrics, forms,
    manual segments): kept on the person it names."""

    ALL = (
        ANON_MERGE,
        PROFILE_CREATE,
        PROFILE_MERGE,
        ATTRIBUTE_CHANGE,
        FAILED_ATTRIBUTE_CHANGE,
        DEVICE_UPDATE,
        DEVICE_DELETE,
        RELATIONSHIP_ADD,
        RELATIONSHIP_DELETE,
        STORED_CALL,
    )


@dataclass(frozen=True)
class Device:
    """A person's device (its push token is `device_id`)."""

    device_id: str
    platform: str | None
    attributes: dict[str, Any]
    last_used: datetime | None
    updated_at: datetime


@dataclass(frozen=True)
class Relationship:
    """A person's relationship with an object (and the object's own attributes)."""

    object_type_id: str
    object_id: str
    attributes: dict[str, Any]
    object_attributes: dict[str, Any]
    created_at: datetime


@dataclass(slots=True)
class Activity:
    cio_id: str
    type: str
    timestamp: datetime
    data: dict[str, Any] = field(default_factory=dict)
    anonymous_id: str | None = None
    merged_from: PersonRef | None = None
    """The profile a profile merge moved this activity from (None: the person's own)."""


@dataclass(frozen=True)
class Tombstone:
    """What is left of an event that was deleted: enough to explain why."""

    event_id: str
    name: str
    anonymous_id: str | None
    cio_id: str | None
    timestamp: datetime
    received_at: datetime
    removed_at: datetime
    rule: Rule
    reason: str


@dataclass(frozen=True)
class LogRow:
    """One row of a tab of the activity log: an event or another activity."""

    type: str
    timestamp: datetime
    received_at: datetime
    name: str | None
    event_id: str | None
    person: PersonRef | None
    anonymous_id: str | None
    data: dict[str, Any]
    event: Event | None = None
    merged_from: PersonRef | None = None
    key: tuple[float, int, int] = (0.0, 0, 0)
    """(timestamp, seq, kind): the row's place in its tab, for cursors."""


@dataclass(frozen=True)
class EventCounts:
    total: int
    tracked: int
    merged: int
    inherited: int
    campaign_eligible: int
