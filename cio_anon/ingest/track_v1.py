"""Track API v1 (`/api/v1/...`), as the official Track clients send it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from cio_anon.errors import InvalidInput
from cio_anon.ingest import (
    DeletePerson,
    DeviceDelete,
    DeviceUpdate,
    Identify,
    MergePeople,
    MethodNotAllowed,
    Operation,
    Suppress,
    Track,
    UnknownPath,
    Unmodelled,
    optional_object,
    optional_text,
    path_part,
    require_object,
    require_text,
)
from cio_anon.ingest.http import Failure, HttpApi

PREFIX = "/api/v1/"


def parse(method: str, path: str, body: object) -> list[Operation]:
    """The operations one Track API v1 request asks for."""
    parts = [path_part(part, path) for part in path.split("?", 1)[0][len(PREFIX) :].split("/")]
    call = f"{method} {path}"
    match parts:
        case ["customers", identifier] if identifier:
            if method == "PUT":
                attributes = require_object(body, f"The body of {call}")
                return [Identify(identifier, attributes)]
            if method == "DELETE":
                return [DeletePerson(identifier)]
        case ["customers", identifier, ("suppress" | "unsuppress") as verb] if identifier:
            if method == "POST":
                return [Suppress(identifier, unsuppress=verb == "unsuppress")]
        case ["customers", identifier, "devices"] if identifier:
            if method == "PUT":
                payload = require_object(body, f"The body of {call}")
                device = require_object(payload.get("device"), f"{call} `device`")
                return [device_update(identifier, device, call)]
        case ["customers", identifier, "devices", device_id] if identifier and device_id:
            if method == "DELETE":
                return [DeviceDelete(identifier, device_id)]
        case ["push", "events"] | ["metrics"]:
            if method == "POST":
                payload = require_object(body, f"The body of {call}")
                metric = payload.get("event") or payload.get("metric") or "metric"
                return [_unmodelled(f"delivery metric {metric}", method, path, payload)]
        case ["forms", form_id, "submit"] if form_id:
            if method == "POST":
                payload = require_object(body, f"The body of {call}")
                data = optional_object(payload, "data", call)
                who = tuple(
                    str(data[key]) for key in ("email", "id") if isinstance(data.get(key), str)
                )[:1]
                return [_unmodelled(f"form {form_id} submitted", method, path, payload, who)]
        case ["segments", segment_id, ("add_customers" | "remove_customers") as verb]:
            if method == "POST":
                payload = require_object(body, f"The body of {call}")
                ids = payload.get("ids")
                if not isinstance(ids, list) or not all(isinstance(i, str | int) for i in ids):
                    raise InvalidInput(f"{call} needs `ids` as an array of identifiers.")
                prefix = "cio_" if "id_type=cio_id" in path else ""
                people = tuple(f"{prefix}{i}" for i in ids)
                what = f"segment {segment_id} {verb.removesuffix('_customers')}"
                return [_unmodelled(what, method, path, payload, people)]
        case ["customers", identifier, "events"] if identifier:
            if method == "POST":
                return [_event(require_object(body, f"The body of {call}"), call, identifier)]
        case ["events"]:
            if method == "POST":
                return [_event(require_object(body, f"The body of {call}"), call, None)]
        case ["accounts", "region"]:
            if method == "GET":
                return []  # read-only: answered from REGION
        case ["merge_customers"]:
            if method == "POST":
                payload = require_object(body, f"The body of {call}")
                return [
                    MergePeople(
                        identifier_of(payload.get("primary"), f"{call} `primary`"),
                        identifier_of(payload.get("secondary"), f"{call} `secondary`"),
                    )
                ]
        case _:
            raise UnknownPath(f"{call} is not a Track API v1 call cio-anon knows.")
    raise MethodNotAllowed(f"{method} is not allowed on {path}.")


def _event(body: Mapping[str, Any], call: str, person: str | None) -> Track:
    data = optional_object(body, "data", call)
    anonymous_id = None if person is not None else optional_text(body, "anonymous_id", call)
    return Track(
        name=require_text(body, "name", call),
        person=person,
        anonymous_id=anonymous_id,
        type=optional_text(body, "type", call) or "event",
        data=data,
        timestamp=body.get("timestamp"),
        event_id=optional_text(body, "id", call),
    )


def device_update(person: str, device: Mapping[str, Any], what: str) -> DeviceUpdate:
    """A device as Track API v1 and v2 send it: `id` (the token), `platform`,
    `last_used`, and other keys (or `attributes`) as its attributes."""
    device_id = require_text(device, "id", f"{what} device")
    attributes = dict(optional_object(device, "attributes", f"{what} device"))
    attributes.update(
        {k: v for k, v in device.items() if k not in ("id", "platform", "last_used", "attributes")}
    )
    return DeviceUpdate(
        person,
        device_id,
        optional_text(device, "platform", f"{what} device"),
        attributes,
        device.get("last_used"),
    )


def _unmodelled(
    what: str, method: str, path: str, body: Any, people: tuple[str, ...] = ()
) -> Unmodelled:
    return Unmodelled("Track API v1", what, method, path, body, people)


def identifier_of(value: object, what: str) -> str:
    """`{"id": ...}`, `{"email": ...}` or `{"cio_id": ...}` as one identifier string."""
    refs = require_object(value, what)
    if len(refs) != 1:
        raise InvalidInput(f"{what} must name exactly one of id, email, cio_id.")
    ((kind, _),) = refs.items()
    if kind not in ("id", "email", "cio_id"):
        raise InvalidInput(f"{what} names {kind!r}; use id, email or cio_id.")
    text = require_text(refs, kind, what)
    return f"cio_{text}" if kind == "cio_id" else text


def errors(failures: Sequence[Failure], batch: bool = False) -> dict[str, Any]:
    """Track API v1's error body."""
    return {"meta": {"errors": [str(error) for _, error in failures]}}


REGION = {"url": "https://track.customer.io", "region": "us", "environment_id": 1}
"""The answer to `GET /api/v1/accounts/region`: a local server is in no region."""

API = HttpApi(
    "Track API v1", PREFIX, "track", parse, errors, answers={"/api/v1/accounts/region": REGION}
)


def parse_unsubscribe(method: str, path: str, body: object) -> list[Operation]:
    """`POST /unsubscribe/{delivery_id}` (at the host's root): kept, not modelled — the
    delivery it names was never sent here."""
    parts = path.split("?", 1)[0].strip("/").split("/")
    if len(parts) != 2 or parts[0] != "unsubscribe" or not parts[1]:
        raise UnknownPath(f"{method} {path} is not a call cio-anon knows.")
    if method != "POST":
        raise MethodNotAllowed(f"{method} is not allowed on {path}.")
    payload = require_object(body, f"The body of {method} {path}")
    what = f"unsubscribe via delivery {path_part(parts[1], path)}"
    return [_unmodelled(what, method, path, payload)]


UNSUBSCRIBE = HttpApi(
    "Track API v1 (unsubscribe)", "/unsubscribe/", "track", parse_unsubscribe, errors
)
