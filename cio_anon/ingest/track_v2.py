"""Track API v2 (`/api/v2/entity`, `/api/v2/batch`): person operations."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from cio_anon.errors import InvalidInput, RuleViolation
from cio_anon.ingest import (
    DeletePerson,
    Identify,
    MergePeople,
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
from cio_anon.ingest.track_v1 import identifier_of

EVENT_ACTIONS = {"event": "event", "page": "page", "screen": "screen"}


def parse(method: str, path: str, body: object) -> list[Operation]:
    """The operations one Track API v2 request asks for."""
    route = path.split("?", 1)[0].rstrip("/")
    if route not in ("/api/v2/entity", "/api/v2/batch"):
        raise UnknownPath(f"{method} {path} is not a Track API v2 call cio-anon knows.")
    if method != "POST":
        raise MethodNotAllowed(f"{method} is not allowed on {path}.")
    payload = require_object(body, f"The body of {method} {path}")
    if route == "/api/v2/entity":
        return [parse_entity(payload, "The entity")]
    batch = payload.get("batch")
    if not isinstance(batch, list):
        raise InvalidInput("A v2 batch needs `batch` as an array.")
    return [
        parse_entity(require_object(item, f"Batch item {index}"), f"Batch item {index}")
        for index, item in enumerate(batch)
    ]


def parse_entity(entity: Mapping[str, Any], what: str) -> Operation:
    """One v2 entity operation on a person."""
    kind = entity.get("type")
    if kind != "person":
        raise InvalidInput(f"{what} has type {kind!r}; cio-anon handles `person` operations.")
    action = require_text(entity, "action", what)
    if action == "merge":
        return MergePeople(
            identifier_of(entity.get("primary"), f"{what} `primary`"),
            identifier_of(entity.get("secondary"), f"{what} `secondary`"),
        )
    identifiers = require_object(entity.get("identifiers"), f"{what} `identifiers`")
    if action in EVENT_ACTIONS:
        anonymous_id = optional_text(identifiers, "anonymous_id", what)
        person = None if anonymous_id else identifier_of(identifiers, f"{what} `identifiers`")
        return Track(
            name=require_text(entity, "name", what),
            person=person,
            anonymous_id=anonymous_id,
            type=EVENT_ACTIONS[action],
            data=optional_object(entity, "attributes", what),
            timestamp=entity.get("timestamp"),
            event_id=optional_text(entity, "id", what),
        )
    identifier = identifier_of(identifiers, f"{what} `identifiers`")
    if action == "identify":
        return Identify(identifier, optional_object(entity, "attributes", what))
    if action == "delete":
        return DeletePerson(identifier)
    raise InvalidInput(f"{what} has action {action!r}, which cio-anon does not handle.")


def errors(failures: Sequence[Failure], batch: bool = False) -> dict[str, Any]:
    """Track API v2's error body: a reason (the rule code, when a rule refused) per
    failure, with its `batch_index` in a batch."""
    body = []
    for index, error in failures:
        reason = error.rule if isinstance(error, RuleViolation) else "invalid"
        entry: dict[str, Any] = {"reason": reason, "field": None, "message": str(error)}
        body.append({"batch_index": index, **entry} if batch and index is not None else entry)
    return {"errors": body}


API = HttpApi(
    "Track API v2",
    "/api/v2/",
    "track",
    parse,
    errors,
    batch_path="/api/v2/batch",
    parse_item=parse_entity,
    partial_status=207,
)
