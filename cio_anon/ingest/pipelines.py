"""Data Pipelines (Segment-spec) messages, bare or sent to `/v1/...`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from cio_anon.errors import InvalidInput
from cio_anon.ingest import (
    Alias,
    AnonymousTraits,
    Identify,
    MethodNotAllowed,
    Operation,
    Track,
    UnknownPath,
    optional_object,
    optional_text,
    require_object,
    require_text,
)
from cio_anon.ingest.http import Failure, HttpApi

MESSAGE_TYPES = ("identify", "track", "page", "screen", "alias")
PATHS = {f"/v1/{kind}": kind for kind in MESSAGE_TYPES}


def parse(method: str, path: str, body: object) -> list[Operation]:
    """The operations one Data Pipelines HTTP request asks for."""
    route = path.split("?", 1)[0].rstrip("/")
    if route != "/v1/batch" and route not in PATHS:
        raise UnknownPath(f"{method} {path} is not a Data Pipelines call cio-anon knows.")
    if method != "POST":
        raise MethodNotAllowed(f"{method} is not allowed on {path}.")
    payload = require_object(body, f"The body of {method} {path}")
    if route == "/v1/batch":
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
    if kind == "identify":
        traits = optional_object(message, "traits", what)
        message_id = optional_text(message, "messageId", what)
        if user_id is None and anonymous_id is not None:
            return AnonymousTraits(anonymous_id, traits, message_id)
        identifier = user_id or (
            traits.get("email") if isinstance(traits.get("email"), str) else None
        )
        if not identifier:
            raise InvalidInput(f"{what} needs a userId, an anonymousId or traits.email.")
        return Identify(identifier, traits, anonymous_id, message_id)
    if user_id is None and anonymous_id is None:
        raise InvalidInput(f"{what} needs a userId or an anonymousId.")
    properties = optional_object(message, "properties", what)
    if kind == "track":
        name = require_text(message, "event", what)
    elif kind == "page":
        name = _page_name(message, properties, what)
    else:
        name = require_text(message, "name", what)
    return Track(
        name=name,
        person=user_id,
        anonymous_id=None if user_id else anonymous_id,
        type="event" if kind == "track" else kind,
        data=properties,
        timestamp=message.get("timestamp"),
        event_id=optional_text(message, "messageId", what),
    )


def _page_name(message: Mapping[str, Any], properties: Mapping[str, Any], what: str) -> str:
    """Customer.io names a page event by its URL; fall back to the page's name."""
    for source, key in ((properties, "url"), (message, "name")):
        value = source.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    raise InvalidInput(f"{what} needs properties.url or a name.")


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
    batch_path="/v1/batch",
    parse_item=parse_message,
    permissive=True,
)
