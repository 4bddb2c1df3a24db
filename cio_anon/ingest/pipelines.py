"""Data Pipelines (Segment-spec) messages, bare or sent to `/v1/...`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from cio_anon.errors import InvalidInput
from cio_anon.ingest import (
    SEMANTIC_EVENTS,
    Alias,
    AnonymousTraits,
    DeletePerson,
    DeviceDelete,
    DeviceUpdate,
    Identify,
    MethodNotAllowed,
    ObjectDelete,
    ObjectUpdate,
    Operation,
    Relate,
    Suppress,
    Track,
    UnknownPath,
    Unmodelled,
    given_text,
    optional_object,
    optional_text,
    require_object,
    require_text,
)
from cio_anon.ingest.http import Failure, HttpApi
from cio_anon.rules.identity import message_person

MESSAGE_TYPES = ("identify", "track", "page", "screen", "alias", "group")
PATHS = {
    **{f"/v1/{kind}": kind for kind in MESSAGE_TYPES},
    # the browser SDKs (Customer.io's and Segment's analytics-next) post to the type's
    # first letter: /v1/t, /v1/i, /v1/p, /v1/s, /v1/a, /v1/g
    **{f"/v1/{kind[0]}": kind for kind in MESSAGE_TYPES},
}
"""A single message's path → its type."""
BATCH_PATHS = frozenset({"/v1/batch", "/v1/b", "/v1/import"})
"""Where a batch is posted: the long path, the browser SDKs' short one, and Segment's
historical import path."""


def parse(method: str, path: str, body: object) -> list[Operation]:
    """The operations one Data Pipelines HTTP request asks for."""
    route = path.split("?", 1)[0].rstrip("/")
    if route not in BATCH_PATHS and route not in PATHS:
        raise UnknownPath(f"{method} {path} is not a Data Pipelines call cio-anon knows.")
    if method != "POST":
        raise MethodNotAllowed(f"{method} is not allowed on {path}.")
    payload = require_object(body, f"The body of {method} {path}")
    if route in BATCH_PATHS:
        batch = payload.get("batch")
        if not isinstance(batch, list):
            raise InvalidInput("A Data Pipelines batch needs `batch` as an array.")
        return [
            parse_message(require_object(item, f"Batch message {index}"), f"Batch message {index}")
            for index, item in enumerate(batch)
        ]
    return [parse_message(payload, f"The {PATHS[route]} message", kind=PATHS[route])]


def parse_message(
    message: Mapping[str, Any], what: str = "The message", kind: str | None = None
) -> Operation:
    """One Segment-spec message: identify, track, page, screen or alias."""
    kind = kind or message.get("type")
    if kind not in MESSAGE_TYPES:
        raise InvalidInput(f"{what} has type {kind!r}; expected one of {', '.join(MESSAGE_TYPES)}.")
    user_id = optional_text(message, "userId", what)
    anonymous_id = optional_text(message, "anonymousId", what)
    if kind == "alias":
        return Alias(
            require_text(message, "userId", what), optional_text(message, "previousId", what)
        )
    if kind == "group":
        traits = dict(optional_object(message, "traits", what))
        type_id = str(message.get("objectTypeId") or traits.pop("objectTypeId", None) or "1")
        object_id = require_text(message, "groupId", what)
        return ObjectUpdate(type_id, object_id, traits, (user_id,) if user_id else ())
    if kind == "identify":
        traits = optional_object(message, "traits", what)
        context = message.get("context")
        if "traits" not in message and isinstance(context, dict):
            # RudderStack's SDKs send identify traits in context.traits (the SQL form:
            # `identify_email_sql`)
            traits = optional_object(context, "traits", f"{what} context")
        message_id = optional_text(message, "messageId", what)
        person = message_person(kind, user_id, anonymous_id, traits.get("email"))
        if person is not None:
            return Identify(person, traits, anonymous_id, message_id)
        if anonymous_id is not None:
            return AnonymousTraits(anonymous_id, traits, message_id)
        raise InvalidInput(f"{what} needs a userId, an anonymousId or traits.email.")
    person = message_person(kind, user_id, anonymous_id, None)
    if person is None and anonymous_id is None:
        raise InvalidInput(f"{what} needs a userId or an anonymousId.")
    properties = optional_object(message, "properties", what)
    if kind == "track":
        name = require_text(message, "event", what)
        if name in SEMANTIC_EVENTS:  # (the SQL form: `placed_message_sql`)
            return _semantic(name, person, properties, message, what)
    elif kind == "page":
        name = _page_name(message, properties, what)
    else:
        name = require_text(message, "name", what)
    return Track(
        name=name,
        person=person,
        anonymous_id=None if person else anonymous_id,
        type="event" if kind == "track" else kind,
        data=properties,
        timestamp=message.get("timestamp"),
        event_id=optional_text(message, "messageId", what),
        page_name=given_text(message.get("name")) if kind == "page" else None,
    )


def identify_email_sql(traits: str, traits_email: str, context_email: str) -> str:
    """SQL: the email of an identify's traits as `parse_message` reads them — its
    `traits`, or, for a message without them, its `context.traits` (a message sent
    with `"traits": null` reads as one without)."""
    return f"CASE WHEN {traits} IS NULL THEN {context_email} ELSE {traits_email} END"


def placed_message_sql(message_type: str, event: str) -> str:
    """SQL: whether `parse_message` reads the message as a call placement looks at — an
    identify, a page, a screen, or a track of an ordinary event (not an alias, a group
    or a semantic event); NULL for a track without a name, which places nothing either."""
    return (
        f"({message_type} IN ('identify', 'page', 'screen') "
        f"OR ({message_type} = 'track' AND {ordinary_event_sql(event)}))"
    )


def ordinary_event_sql(event: str) -> str:
    """SQL: whether a track's event name is an ordinary one, not one of SEMANTIC_EVENTS
    that `parse_message` takes as a call of its own (`_semantic`); NULL for a track
    without a name, which places nothing either. (A chain of `<>`, not `NOT IN`: DuckDB
    makes a long IN list a join, which would read an export's records out of order.)"""
    names = (name.replace("'", "''") for name in SEMANTIC_EVENTS)
    return "(" + " AND ".join(f"{event} <> '{name}'" for name in names) + ")"


def _page_name(message: Mapping[str, Any], properties: Mapping[str, Any], what: str) -> str:
    """Customer.io names a page event by its URL; fall back to the page's name."""
    name = given_text(properties.get("url")) or given_text(message.get("name"))
    if name is None:
        raise InvalidInput(f"{what} needs properties.url or a name.")
    return name


def errors(failures: Sequence[Failure], batch: bool = False) -> dict[str, Any]:
    """Data Pipelines' error body in strict mode."""
    return {
        "errors": [
            {"batch_index": index, "message": str(error)} if batch else {"message": str(error)}
            for index, error in failures
        ]
    }


API = HttpApi(
    "Data Pipelines",
    "/v1/",
    "pipelines",
    parse,
    errors,
    batch_paths=BATCH_PATHS,
    parse_item=lambda message, what: [parse_message(message, what)],
    permissive=True,
)


def _semantic(
    name: str,
    user_id: str | None,
    properties: Mapping[str, Any],
    message: Mapping[str, Any],
    what: str,
) -> Operation:
    """A semantic event: Customer.io carries out what it names instead of storing it."""
    raw_context = message.get("context")
    context: Mapping[str, Any] = raw_context if isinstance(raw_context, dict) else {}
    device = properties.get("device") or context.get("device") or {}
    device = device if isinstance(device, dict) else {}
    if user_id is not None:
        if name == "Device Created or Updated":
            token = require_text(device, "token", f"{what} device")
            extra = {k: v for k, v in device.items() if k not in ("token", "type")}
            platform = device.get("type") if isinstance(device.get("type"), str) else None
            return DeviceUpdate(user_id, token, platform, extra)
        if name == "Device Deleted":
            return DeviceDelete(user_id, require_text(device, "token", f"{what} device"))
        if name == "User Deleted":
            return DeletePerson(user_id)
        if name in ("User Suppressed", "User Unsuppressed"):
            return Suppress(user_id, unsuppress=name == "User Unsuppressed")
        if name == "Relationship Deleted":
            type_id = str(properties.get("objectTypeId") or "1")
            return Relate(user_id, type_id, require_text(properties, "objectId", what), delete=True)
    if name == "Object Deleted":
        type_id = str(properties.get("objectTypeId") or "1")
        return ObjectDelete(type_id, require_text(properties, "objectId", what))
    # Delivery reports, and person events sent without a userId: kept, not modelled.
    return Unmodelled("Data Pipelines", name, "POST", "/v1/track", dict(message))
