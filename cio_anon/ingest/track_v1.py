"""Track API v1 (`/api/v1/...`), as the official Track clients send it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import unquote

from cio_anon.errors import InvalidInput
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

PREFIX = "/api/v1/"


def parse(method: str, path: str, body: object) -> list[Operation]:
    """The operations one Track API v1 request asks for."""
    parts = [unquote(part) for part in path.split("?", 1)[0][len(PREFIX) :].split("/")]
    call = f"{method} {path}"
    match parts:
        case ["customers", identifier] if identifier:
            if method == "PUT":
                attributes = require_object(body, f"The body of {call}")
                return [Identify(identifier, attributes)]
            if method == "DELETE":
                return [DeletePerson(identifier)]
        case ["customers", identifier, "suppress"] if identifier:
            if method == "POST":
                # Suppression deletes the person; cio-anon does not block re-adding them.
                return [DeletePerson(identifier)]
        case ["customers", identifier, "events"] if identifier:
            if method == "POST":
                return [_event(require_object(body, f"The body of {call}"), call, identifier)]
        case ["events"]:
            if method == "POST":
                return [_event(require_object(body, f"The body of {call}"), call, None)]
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


API = HttpApi("Track API v1", PREFIX, "track", parse, errors)
