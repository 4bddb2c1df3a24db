"""Input dialects (Track API v1, Track API v2, Data Pipelines, control records) turned
into the same small set of operations the CLI uses.

Each dialect module only parses: it checks the shape of a payload and returns
operations; `replay.apply_operation` carries them out through the service.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from cio_anon.errors import CioAnonError, InvalidInput


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
)


@dataclass(frozen=True)
class Timed:
    """An operation with its receive time."""

    at: datetime
    operation: Operation


Failure = tuple[int | None, CioAnonError]
"""A refused operation: its index in a batch (None outside one) and why."""


@dataclass(frozen=True)
class HttpApi:
    """How `serve` takes one of Customer.io's APIs over HTTP, in one place: a fourth API
    is a fourth description, next to its parser."""

    name: str
    prefix: str
    """Every path of the API starts with it."""
    scheme: Literal["track", "pipelines"]
    """The credentials it takes: `track` is Basic site_id:api_key; `pipelines` the write
    key, as the Basic user or a Bearer token."""
    parse: Callable[[str, str, object], list[Operation]]
    """(method, path, body) of one request → its operations (raises for a bad one)."""
    errors: Callable[[Sequence[Failure], bool], dict[str, Any]]
    """(failures, in a batch) → the error body, in the API's own shape."""
    batch_path: str | None = None
    """Where a batch of independent items is posted; each item stands alone."""
    parse_item: Callable[[Mapping[str, Any], str], Operation] | None = None
    """One batch item (and how to name it in a message) → its operation."""
    partial_status: int = 400
    """The answer to a batch some of whose items were refused (the rest applied)."""
    permissive: bool = False
    """Refusals are answered 200 (and logged nowhere) unless the request sends
    `X-Strict-Mode: 1`; a strict batch is then all or nothing."""


# -- small shape checks shared by the dialects ----------------------------------------


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
    value = body.get(key)
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise InvalidInput(f"{what} needs `{key}` as a string, not {_kind(value)}.")
    text = str(value).strip()
    if not text:
        raise InvalidInput(f"{what} has an empty `{key}`.")
    return text


def optional_text(body: Mapping[str, Any], key: str, what: str) -> str | None:
    if body.get(key) in (None, ""):
        return None
    return require_text(body, key, what)


def _kind(value: object) -> str:
    if value is None:
        return "null"
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}.get(
        type(value), "a number"
    )
