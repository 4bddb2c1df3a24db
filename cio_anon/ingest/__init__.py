"""Input dialects (Track API v1, Track API v2, Data Pipelines, control records) turned
into the same small set of operations the CLI uses.

Each dialect module only parses: it checks the shape of a payload and returns
operations; `pipeline.apply_operation` carries them out through the service.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from cio_anon.errors import InvalidInput


class UnknownPath(InvalidInput):
    """A request to a path that is not part of the API."""

    status = 404


class MethodNotAllowed(InvalidInput):
    """A request with a method the path does not take."""

    status = 405


@dataclass(frozen=True)
class Track:
    name: str
    person: str | None = None
    anonymous_id: str | None = None
    type: str = "event"
    data: Mapping[str, Any] = field(default_factory=dict)
    timestamp: object = None
    event_id: str | None = None
    page_name: str | None = None
    """A page's own name (Data Pipelines' `name`), if it has one: Customer.io names the
    event by the page's URL when it has one, and a tracking plan may know the page by
    either (`check`)."""


@dataclass(frozen=True)
class Identify:
    identifier: str
    attributes: Mapping[str, Any] = field(default_factory=dict)
    anonymous_id: str | None = None
    message_id: str | None = None
    """Data Pipelines messageId: a message handled before is ignored as a duplicate."""


@dataclass(frozen=True)
class AnonymousTraits:
    anonymous_id: str
    traits: Mapping[str, Any]
    message_id: str | None = None


@dataclass(frozen=True)
class MergePeople:
    primary: str
    secondary: str


@dataclass(frozen=True)
class DeletePerson:
    identifier: str


@dataclass(frozen=True)
class Alias:
    """Data Pipelines `alias`: recorded, merges nothing."""

    user_id: str
    previous_id: str | None


@dataclass(frozen=True)
class Purge:
    pass


@dataclass(frozen=True)
class DeviceUpdate:
    """A device (push token) added to a person, or updated."""

    person: str
    device_id: str
    platform: str | None = None
    attributes: Mapping[str, Any] = field(default_factory=dict)
    last_used: object = None


@dataclass(frozen=True)
class DeviceDelete:
    person: str
    device_id: str


@dataclass(frozen=True)
class Suppress:
    """Customer.io's suppress: the person is deleted and their identifier refused until
    it is unsuppressed (`unsuppress=True`)."""

    identifier: str
    unsuppress: bool = False


@dataclass(frozen=True)
class ObjectUpdate:
    """An object (a company, an account...) created or updated, with people related to it."""

    object_type_id: str
    object_id: str
    attributes: Mapping[str, Any] = field(default_factory=dict)
    people: tuple[str, ...] = ()


@dataclass(frozen=True)
class ObjectDelete:
    object_type_id: str
    object_id: str


@dataclass(frozen=True)
class Relate:
    """A relationship between a person and an object, added (or, `delete`, removed)."""

    person: str
    object_type_id: str
    object_id: str
    attributes: Mapping[str, Any] = field(default_factory=dict)
    delete: bool = False


SEMANTIC_EVENTS = (
    "Device Created or Updated",
    "Device Deleted",
    "User Deleted",
    "User Suppressed",
    "User Unsuppressed",
    "Relationship Deleted",
    "Object Deleted",
    "Report Delivery Event",
)
"""Data Pipelines events that Customer.io acts on instead of storing them."""


@dataclass(frozen=True)
class Unmodelled:
    """A call Customer.io accepts that cio-anon stores without modelling its effect
    (delivery and push metrics, form submissions, manual segments): kept as it came,
    an activity on the person it names (if any), counted as `ignored`."""

    api: str
    call: str
    """What it is, e.g. `push metric opened`, `segment 7 add`."""
    method: str
    path: str
    body: Any
    people: tuple[str, ...] = ()


@dataclass(frozen=True)
class ChangeSettings:
    anonymous_merge: bool | None = None
    created_at: datetime | None = None


@dataclass(frozen=True)
class Expect:
    """An assertion about the workspace at this point of a replay."""

    checks: Mapping[str, Any]


Operation = (
    Track
    | Identify
    | AnonymousTraits
    | MergePeople
    | DeletePerson
    | Alias
    | Purge
    | ChangeSettings
    | Expect
    | DeviceUpdate
    | DeviceDelete
    | Suppress
    | ObjectUpdate
    | ObjectDelete
    | Relate
    | Unmodelled
)


class Timed(NamedTuple):
    """An operation with its receive time (a tuple: one is made for every record)."""

    at: datetime
    operation: Operation


# -- small shape checks shared by the dialects ----------------------------------------


def path_part(part: str, path: str) -> str:
    """One percent-escaped segment of a request path as text; bytes that are not UTF-8
    are refused (replacing them would fold `%ff` and `%fe` into one id)."""
    from urllib.parse import unquote

    try:
        return unquote(part, errors="strict")
    except UnicodeDecodeError:
        raise InvalidInput(f"The path {path} holds bytes that are not UTF-8 text.") from None


def require_object(value: object, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidInput(f"{what} must be a JSON object, not {_kind(value)}.")
    return value


def optional_object(body: Mapping[str, Any], key: str, what: str) -> dict[str, Any]:
    value = body.get(key)
    if value is None:
        return {}
    return require_object(value, f"{what} `{key}`")


def require_text(body: Mapping[str, Any], key: str, what: str) -> str:
    return _text(body.get(key), key, what)


def given_text(value: object) -> str | None:
    """A string with text, stripped; None for anything else (an empty or blank string,
    another type): a value taken when it is there, never refused."""
    if isinstance(value, str) and (text := value.strip()):
        return text
    return None


def optional_text(body: Mapping[str, Any], key: str, what: str) -> str | None:
    value = body.get(key)
    if value is None or value == "":
        return None
    return _text(value, key, what)


def _text(value: object, key: str, what: str) -> str:
    # every message has several of these: a string is taken without more ado
    if type(value) is not str:
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise InvalidInput(f"{what} needs `{key}` as a string, not {_kind(value)}.")
        value = str(value)
    text = value.strip()
    if not text:
        raise InvalidInput(f"{what} has an empty `{key}`.")
    return text


def _kind(value: object) -> str:
    if value is None:
        return "null"
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}.get(
        type(value), "a number"
    )
