"""Expectations (`op: expect` records): what differs between an assertion and the
workspace, as `expected ..., got ...` sentences."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from cio_anon import service
from cio_anon.errors import NotFound
from cio_anon.store import Workspace


def check(workspace: Workspace, now: datetime, checks: Mapping[str, Any]) -> list[str]:
    """What differs between an expect record and the workspace ("expected ..., got ...")."""
    if "event" in checks:
        return _check_event(workspace, now, checks)
    if "person" in checks:
        return _check_person(workspace, checks)
    return _check_anonymous_id(workspace, checks)


def _differ(label: str, expected: object, actual: object) -> list[str]:
    if expected == actual:
        return []
    return [f"expected {label} = {_show(expected)}, got {_show(actual)}"]


def _show(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _check_person(workspace: Workspace, checks: Mapping[str, Any]) -> list[str]:
    identifier = checks["person"]
    try:
        person = service.find_person(workspace, identifier)
    except NotFound:
        if checks.get("exists") is False:
            return []
        return [f"expected person {identifier!r} to exist, but no one has that identifier"]
    problems = _differ(f"person {identifier!r} exists", checks.get("exists", True), True)
    if "events" in checks:
        counts = workspace.event_counts(person.cio_id)
        for key, expected in checks["events"].items():
            problems += _differ(f"events.{key} of {identifier!r}", expected, getattr(counts, key))
    for key, expected in checks.get("attributes", {}).items():
        actual = getattr(person, key) if key in ("id", "email") else person.attributes.get(key)
        problems += _differ(f"attributes.{key} of {identifier!r}", expected, actual)
    for key in ("id", "email"):
        if key in checks:
            problems += _differ(f"{key} of {identifier!r}", checks[key], getattr(person, key))
    if "anonymous_ids" in checks:
        actual_ids = sorted(a.anonymous_id for a in workspace.assignments_of(person.cio_id))
        problems += _differ(
            f"anonymous_ids of {identifier!r}", sorted(checks["anonymous_ids"]), actual_ids
        )
    if "devices" in checks:
        devices = sorted(d.device_id for d in workspace.devices_of(person.cio_id))
        problems += _differ(f"devices of {identifier!r}", sorted(checks["devices"]), devices)
    if "relationships" in checks:
        related = sorted(
            f"{r.object_type_id}/{r.object_id}" for r in workspace.relationships_of(person.cio_id)
        )
        problems += _differ(
            f"relationships of {identifier!r}", sorted(checks["relationships"]), related
        )
    return problems


def _cio_id_of(workspace: Workspace, identifier: object) -> str | None:
    if identifier is None:
        return None
    try:
        return service.find_person(workspace, str(identifier)).cio_id
    except NotFound:
        return f"<nobody named {identifier}>"


def _check_event(workspace: Workspace, now: datetime, checks: Mapping[str, Any]) -> list[str]:
    event_id = checks["event"]
    try:
        explanation = service.explain(workspace, now, event_id=event_id)
    except NotFound:
        return [f"expected event {event_id!r} to exist, but there is no such event"]
    problems: list[str] = []
    label = f"event {event_id!r}"
    if "status" in checks:
        problems += _differ(f"status of {label}", checks["status"], explanation.status)
    if "rule" in checks:
        problems += _differ(f"rule of {label}", checks["rule"], str(explanation.decision.rule))
    if "anonymous_id" in checks:
        problems += _differ(
            f"anonymous_id of {label}", checks["anonymous_id"], explanation.anonymous_id
        )
    if "person" in checks:
        actual = explanation.person
        expected_id = _cio_id_of(workspace, checks["person"])
        if expected_id != (actual.cio_id if actual else None):
            problems.append(
                f"expected {label} on {_show(checks['person'])}, got "
                f"{_show(actual.label if actual else None)}"
            )
    event = workspace.get_event(event_id)
    if "provenance" in checks:
        actual_provenance = (
            None if event is None or event.provenance is None else str(event.provenance)
        )
        problems += _differ(f"provenance of {label}", checks["provenance"], actual_provenance)
    if "can_trigger_campaigns" in checks:
        problems += _differ(
            f"can_trigger_campaigns of {label}",
            checks["can_trigger_campaigns"],
            bool(event and event.can_trigger),
        )
    return problems


def _check_anonymous_id(workspace: Workspace, checks: Mapping[str, Any]) -> list[str]:
    anonymous_id = checks["anonymous_id"]
    problems: list[str] = []
    if "pending" in checks:
        problems += _differ(
            f"pending events of {anonymous_id!r}",
            checks["pending"],
            workspace.count_pending(anonymous_id),
        )
    if "assigned_to" in checks:
        assignment = workspace.get_assignment(anonymous_id)
        expected_id = _cio_id_of(workspace, checks["assigned_to"])
        if expected_id != (assignment.cio_id if assignment else None):
            holder = None
            if assignment is not None:
                holder = (
                    "<a deleted person>"
                    if assignment.cio_id is None
                    else workspace.person_refs([assignment.cio_id])[assignment.cio_id].label
                )
            problems.append(
                f"expected {anonymous_id!r} assigned to {_show(checks['assigned_to'])}, got "
                f"{_show(holder)}"
            )
    return problems
