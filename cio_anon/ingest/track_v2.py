"""Track API v2 (`/api/v2/entity`, `/api/v2/batch`): person operations."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from cio_anon.errors import InvalidInput, RuleViolation
from cio_anon.ingest import (
    DeletePerson,
    DeviceDelete,
    Identify,
    MergePeople,
    MethodNotAllowed,
    ObjectDelete,
    ObjectUpdate,
    Operation,
    Relate,
    Suppress,
    Track,
    UnknownPath,
    Unmodelled,
    optional_object,
    optional_text,
    require_object,
    require_text,
)
from cio_anon.ingest.http import Failure, HttpApi
from cio_anon.ingest.track_v1 import device_update, identifier_of

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
        return parse_entity(payload, "The entity")
    batch = payload.get("batch")
    if not isinstance(batch, list):
        raise InvalidInput("A v2 batch needs `batch` as an array.")
    return [
        op
        for index, item in enumerate(batch)
        for op in parse_entity(require_object(item, f"Batch item {index}"), f"Batch item {index}")
    ]


def parse_entity(entity: Mapping[str, Any], what: str) -> list[Operation]:
    """One v2 entity operation: on a person, an object, or a delivery (metrics)."""
    kind = entity.get("type")
    action = require_text(entity, "action", what)
    if kind == "person":
        return _person(entity, action, what)
    if kind == "object":
        return _object(entity, action, what)
    if kind == "delivery":
        return [
            Unmodelled(
                "Track API v2", f"delivery metric {action}", "POST", "/api/v2/entity", dict(entity)
            )
        ]
    raise InvalidInput(f"{what} has type {kind!r}; Track API v2 takes person, object, delivery.")


def _person(entity: Mapping[str, Any], action: str, what: str) -> list[Operation]:
    if action == "merge":
        return [
            MergePeople(
                identifier_of(entity.get("primary"), f"{what} `primary`"),
                identifier_of(entity.get("secondary"), f"{what} `secondary`"),
            )
        ]
    identifiers = require_object(entity.get("identifiers"), f"{what} `identifiers`")
    if action in EVENT_ACTIONS:
        anonymous_id = optional_text(identifiers, "anonymous_id", what)
        person = None if anonymous_id else identifier_of(identifiers, f"{what} `identifiers`")
        return [
            Track(
                name=require_text(entity, "name", what),
                person=person,
                anonymous_id=anonymous_id,
                type=EVENT_ACTIONS[action],
                data=optional_object(entity, "attributes", what),
                timestamp=entity.get("timestamp"),
                event_id=optional_text(entity, "id", what),
            )
        ]
    identifier = identifier_of(identifiers, f"{what} `identifiers`")
    if action == "identify":
        attributes = dict(optional_object(entity, "attributes", what))
        ops: list[Operation] = [Identify(identifier, attributes)]
        return ops + _relationships(identifier, entity, what, delete=False)
    if action == "delete":
        return [DeletePerson(identifier)]
    if action in ("suppress", "unsuppress"):
        return [Suppress(identifier, unsuppress=action == "unsuppress")]
    if action in ("add_device", "delete_device"):
        device = dict(require_object(entity.get("device"), f"{what} `device`"))
        device.setdefault("id", device.pop("token", None))
        if action == "delete_device":
            return [DeviceDelete(identifier, require_text(device, "id", f"{what} device"))]
        return [device_update(identifier, device, what)]
    if action in ("add_relationships", "delete_relationships"):
        return _relationships(identifier, entity, what, delete=action == "delete_relationships")
    raise InvalidInput(f"{what} has action {action!r}, which Track API v2 does not take.")


def _relationships(
    person: str, entity: Mapping[str, Any], what: str, *, delete: bool
) -> list[Operation]:
    """A person's `cio_relationships` with objects."""
    ops: list[Operation] = []
    for index, relation in enumerate(entity.get("cio_relationships") or []):
        where = f"{what} relationship {index}"
        relation = require_object(relation, where)
        ids = require_object(relation.get("identifiers"), f"{where} `identifiers`")
        ops.append(
            Relate(
                person,
                require_text(ids, "object_type_id", where),
                require_text(ids, "object_id", where),
                optional_object(relation, "relationship_attributes", where),
                delete=delete,
            )
        )
    return ops


def _object(entity: Mapping[str, Any], action: str, what: str) -> list[Operation]:
    ids = require_object(entity.get("identifiers"), f"{what} `identifiers`")
    type_id = require_text(ids, "object_type_id", what)
    object_id = require_text(ids, "object_id", what)
    people = []
    for index, relation in enumerate(entity.get("cio_relationships") or []):
        where = f"{what} relationship {index}"
        relation = require_object(relation, where)
        people.append(identifier_of(relation.get("identifiers"), f"{where} `identifiers`"))
    if action == "identify":
        attributes = optional_object(entity, "attributes", what)
        return [ObjectUpdate(type_id, object_id, attributes, tuple(people))]
    if action == "delete":
        return [ObjectDelete(type_id, object_id)]
    if action in ("add_relationships", "delete_relationships"):
        delete = action == "delete_relationships"
        return [Relate(person, type_id, object_id, {}, delete=delete) for person in people]
    raise InvalidInput(f"{what} has action {action!r}, which Track API v2 does not take.")


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
    batch_paths=frozenset({"/api/v2/batch"}),
    parse_item=parse_entity,
    partial_status=207,
)
