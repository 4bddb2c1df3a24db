"""The other direction: an operation written back as a fixture record, so that what a
workspace was told can be exported and replayed (see `cio-anon export`).

Each operation becomes the call a client would make for it: Track API v1 for people,
events, merges, deletes, devices, suppression and calls kept as they came; Track API
v2 for objects and relationships; a Data Pipelines identify for traits sent for an anonymous
id and for identifies that carry a `messageId` (so a replay still deduplicates them);
control records for settings and purges. `parse` of the record gives the operation
back (a test holds the two directions together).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any
from urllib.parse import quote

from cio_anon.ingest import (
    AnonymousTraits,
    ChangeSettings,
    DeletePerson,
    DeviceDelete,
    DeviceUpdate,
    Identify,
    MergePeople,
    ObjectDelete,
    ObjectUpdate,
    Operation,
    Purge,
    Relate,
    Suppress,
    Track,
    Unmodelled,
)
from cio_anon.models import settings_record


def to_record(op: Operation) -> dict[str, Any]:
    """The fixture record (without its `at`) that replays as `op`."""
    match op:
        case Track():
            return _track(op)
        case Identify(message_id=None):
            body = dict(op.attributes)
            if op.anonymous_id is not None:
                body["anonymous_id"] = op.anonymous_id
            return _call("PUT", f"/api/v1/customers/{_segment(op.identifier)}", body)
        case Identify():
            message: dict[str, Any] = {
                "type": "identify",
                "userId": op.identifier,
                "traits": dict(op.attributes),
            }
            if op.anonymous_id is not None:
                message["anonymousId"] = op.anonymous_id
            message["messageId"] = op.message_id
            return _call("POST", "/v1/identify", message)
        case AnonymousTraits():
            message = {"type": "identify", "anonymousId": op.anonymous_id}
            message["traits"] = dict(op.traits)
            if op.message_id is not None:
                message["messageId"] = op.message_id
            return _call("POST", "/v1/identify", message)
        case MergePeople():
            body = {"primary": _reference(op.primary), "secondary": _reference(op.secondary)}
            return _call("POST", "/api/v1/merge_customers", body)
        case DeletePerson():
            return {"method": "DELETE", "path": f"/api/v1/customers/{_segment(op.identifier)}"}
        case Purge():
            return {"op": "purge"}
        case DeviceUpdate():
            device: dict[str, Any] = {"id": op.device_id, "platform": op.platform}
            if op.last_used is not None:
                device["last_used"] = op.last_used
            device["attributes"] = dict(op.attributes)
            path = f"/api/v1/customers/{_segment(op.person)}/devices"
            return _call("PUT", path, {"device": device})
        case DeviceDelete():
            path = f"/api/v1/customers/{_segment(op.person)}/devices/{_segment(op.device_id)}"
            return {"method": "DELETE", "path": path}
        case Suppress():
            verb = "unsuppress" if op.unsuppress else "suppress"
            return _call("POST", f"/api/v1/customers/{_segment(op.identifier)}/{verb}", {})
        case ObjectUpdate():
            entity: dict[str, Any] = {
                "type": "object",
                "action": "identify",
                "identifiers": {"object_type_id": op.object_type_id, "object_id": op.object_id},
                "attributes": dict(op.attributes),
            }
            if op.people:
                entity["cio_relationships"] = [{"identifiers": _reference(p)} for p in op.people]
            return _call("POST", "/api/v2/entity", entity)
        case ObjectDelete():
            ids = {"object_type_id": op.object_type_id, "object_id": op.object_id}
            return _call(
                "POST", "/api/v2/entity", {"type": "object", "action": "delete", "identifiers": ids}
            )
        case Relate():
            relation = {
                "identifiers": {"object_type_id": op.object_type_id, "object_id": op.object_id},
                "relationship_attributes": dict(op.attributes),
            }
            entity = {
                "type": "person",
                "action": "delete_relationships" if op.delete else "add_relationships",
                "identifiers": _reference(op.person),
                "cio_relationships": [relation],
            }
            return _call("POST", "/api/v2/entity", entity)
        case Unmodelled():
            return _call(op.method, op.path, op.body)
        case ChangeSettings():
            return settings_record(op.anonymous_merge, op.created_at)
    raise ValueError(f"{type(op).__name__} changes nothing and is not exported.")


def _track(op: Track) -> dict[str, Any]:
    return track_record(
        op.name, op.person, op.anonymous_id, op.type, op.data, op.timestamp, op.event_id
    )


def track_record(
    name: str,
    person: str | None,
    anonymous_id: str | None,
    type: str,
    data: Mapping[str, Any],
    timestamp: object,
    event_id: str | None,
) -> dict[str, Any]:
    """The record of a `Track` with these fields (replay's bulk path makes millions of
    these, and skips making the operation first)."""
    body: dict[str, Any] = {"name": name, "type": type, "data": dict(data)}
    if timestamp is not None:
        body["timestamp"] = timestamp
    if event_id is not None:
        body["id"] = event_id
    if person is not None:
        return _call("POST", f"/api/v1/customers/{_segment(person)}/events", body)
    if anonymous_id is not None:
        body["anonymous_id"] = anonymous_id
    return _call("POST", "/api/v1/events", body)


def _call(method: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    return {"method": method, "path": path, "body": body}


@lru_cache(maxsize=4096)  # replay names the same people over and over
def _segment(identifier: str) -> str:
    return quote(identifier, safe="")


def _reference(identifier: str) -> dict[str, str]:
    """A person in a merge body; the identifier string resolves as it would anywhere."""
    if identifier.startswith("cio_"):
        return {"cio_id": identifier.removeprefix("cio_")}
    return {"email" if "@" in identifier else "id": identifier}
