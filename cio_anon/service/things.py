"""What the rest of Customer.io's calls do to people: devices, suppression, objects and
their relationships, and calls stored without a modelled effect (delivery and push
metrics, form submissions, manual segments)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from cio_anon import rules
from cio_anon.clock import parse_time
from cio_anon.ingest import (
    DeviceDelete,
    DeviceUpdate,
    ObjectDelete,
    ObjectUpdate,
    Relate,
    Suppress,
    Unmodelled,
)
from cio_anon.models import Activity, ActivityType, Device, Person
from cio_anon.rules import IdentifierKind
from cio_anon.service.events import find_or_create
from cio_anon.service.people import delete_person
from cio_anon.service.shared import journal, lasting_identifier, stored_json
from cio_anon.store import Workspace


def _person(workspace: Workspace, now: datetime, identifier: str) -> Person:
    """The person an API call names, created (as Customer.io does) when missing."""
    return find_or_create(workspace, now, identifier)[0]


# -- devices --------------------------------------------------------------------------


def update_device(workspace: Workspace, now: datetime, op: DeviceUpdate) -> Device:
    person = _person(workspace, now, op.person)
    attributes = dict(workspace.device_attributes(person.cio_id, op.device_id) or {})
    attributes, _ = rules.apply_attributes(attributes, op.attributes)
    stored_json(attributes, what=f"attributes of device {op.device_id!r}")
    last_used = None if op.last_used is None else parse_time(op.last_used, what="last_used")
    device = Device(op.device_id, op.platform, attributes, last_used, now)
    workspace.save_device(person.cio_id, device)
    data = {"device_id": op.device_id, "platform": op.platform}
    workspace.add_activities([Activity(person.cio_id, ActivityType.DEVICE_UPDATE, now, data)])
    call = DeviceUpdate(
        lasting_identifier(op.person, person),
        op.device_id,
        op.platform,
        op.attributes,
        None if last_used is None else int(last_used.timestamp()),
    )
    journal(workspace, now, call, [person.cio_id])
    return device


def delete_device(workspace: Workspace, now: datetime, op: DeviceDelete) -> bool:
    """Remove a device; False when the person or the device is not there (Customer.io
    answers 200 all the same)."""
    kind, value = rules.resolve_identifier(op.person)
    person = workspace.find_person(kind, value)
    if person is None or not workspace.delete_device(person.cio_id, op.device_id):
        return False
    data = {"device_id": op.device_id}
    workspace.add_activities([Activity(person.cio_id, ActivityType.DEVICE_DELETE, now, data)])
    call = DeviceDelete(lasting_identifier(op.person, person), op.device_id)
    journal(workspace, now, call, [person.cio_id])
    return True


# -- suppression ----------------------------------------------------------------------


def suppress(workspace: Workspace, now: datetime, op: Suppress) -> list[str]:
    """Suppress: the person (if any) is deleted and their id and email refused from now
    on; unsuppress lifts that for the identifier given. The identifiers affected."""
    kind, value = rules.resolve_identifier(op.identifier)
    person = workspace.find_person(kind, value)
    if op.unsuppress:
        keys = [(str(kind), rules.email_key(value) if kind is IdentifierKind.EMAIL else value)]
        if person is not None:
            keys += [("id", person.id)] if person.id else []
            keys += [("email", rules.email_key(person.email))] if person.email else []
        lifted = [v for k, v in keys if workspace.unsuppress(k, v)]
        if lifted:
            journal(workspace, now, op)
        return lifted
    keys = []
    if kind is not IdentifierKind.CIO_ID:
        keys.append((str(kind), rules.email_key(value) if kind is IdentifierKind.EMAIL else value))
    if person is not None:
        keys += [("id", person.id)] if person.id else []
        keys += [("email", rules.email_key(person.email))] if person.email else []
        delete_person(workspace, now, identifier=op.identifier)
    for key_kind, key_value in dict.fromkeys(keys):
        workspace.suppress(key_kind, key_value, now)
        # one entry per identifier: a replay suppresses each, the person being gone
        journal(workspace, now, Suppress(key_value))
    return [v for _, v in dict.fromkeys(keys)]


# -- objects and relationships ------------------------------------------------------


def update_object(workspace: Workspace, now: datetime, op: ObjectUpdate) -> None:
    """Create or update an object; relate the people it names (created when missing)."""
    current = workspace.get_object(op.object_type_id, op.object_id) or {}
    merged, _ = rules.apply_attributes(current, op.attributes)
    stored_json(merged, what=f"attributes of object {op.object_id!r}")
    workspace.save_object(op.object_type_id, op.object_id, merged, now)
    journal(workspace, now, ObjectUpdate(op.object_type_id, op.object_id, op.attributes))
    for person in op.people:
        relate(workspace, now, Relate(person, op.object_type_id, op.object_id))


def delete_object(workspace: Workspace, now: datetime, op: ObjectDelete) -> int:
    related = workspace.delete_object(op.object_type_id, op.object_id)
    data = {"object_type_id": op.object_type_id, "object_id": op.object_id, "deleted": True}
    workspace.add_activities(
        Activity(cio_id, ActivityType.RELATIONSHIP_DELETE, now, data) for cio_id in related
    )
    journal(workspace, now, op)
    return len(related)


def relate(workspace: Workspace, now: datetime, op: Relate) -> bool:
    """Add (or remove) a relationship between a person and an object; an object named
    for the first time is created empty."""
    if op.delete:
        kind, value = rules.resolve_identifier(op.person)
        person = workspace.find_person(kind, value)
        if person is None or not workspace.unrelate(person.cio_id, op.object_type_id, op.object_id):
            return False
        activity = ActivityType.RELATIONSHIP_DELETE
    else:
        person = _person(workspace, now, op.person)
        if workspace.get_object(op.object_type_id, op.object_id) is None:
            workspace.save_object(op.object_type_id, op.object_id, {}, now)
        attributes = dict(op.attributes)
        stored_json(attributes, what="relationship attributes")
        workspace.relate(person.cio_id, op.object_type_id, op.object_id, attributes, now)
        activity = ActivityType.RELATIONSHIP_ADD
    data = {"object_type_id": op.object_type_id, "object_id": op.object_id}
    workspace.add_activities([Activity(person.cio_id, activity, now, data)])
    named = lasting_identifier(op.person, person)
    call = Relate(named, op.object_type_id, op.object_id, op.attributes, op.delete)
    journal(workspace, now, call, [person.cio_id])
    return True


# -- calls stored as they came ------------------------------------------------------


def store_call(workspace: Workspace, now: datetime, op: Unmodelled) -> int:
    """Keep a call whose effect is not modelled: an activity on each person it names who
    exists, else a row of `other_calls`. How many people it was kept on."""
    body = stored_json(op.body, what=f"body of {op.call}")
    data: dict[str, Any] = {"api": op.api, "call": op.call, "path": op.path}
    on = []
    for identifier in op.people:
        kind, value = rules.resolve_identifier(identifier)
        person = workspace.find_person(kind, value)
        if person is not None:
            on.append(person.cio_id)
    if on:
        workspace.add_activities(
            Activity(cio_id, ActivityType.STORED_CALL, now, data) for cio_id in on
        )
    else:
        workspace.add_other_call(now, op.api, op.call, op.method, op.path, body)
    journal(workspace, now, op, on)
    return len(on)
