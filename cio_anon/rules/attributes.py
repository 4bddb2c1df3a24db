"""Attributes on a profile: updates, removals, identifier changes, and what a profile
merge carries over."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cio_anon.rules.codes import RETENTION, Decision, Rule

# -- attributes ---------------------------------------------------------------------


@dataclass(frozen=True)
class AttributeChange:
    attribute: str
    before: Any
    after: Any


def apply_attributes(
    current: Mapping[str, Any], updates: Mapping[str, Any]
) -> tuple[dict[str, Any], list[AttributeChange]]:
    """Merge `updates` shallowly into `current`; a value of "" or null removes the
    attribute (a null is never stored)."""
    result = dict(current)
    changes: list[AttributeChange] = []
    for name, value in updates.items():
        before = result.get(name)
        if is_removal(value):
            if name in result:
                del result[name]
                changes.append(AttributeChange(name, before, None))
            continue
        if name not in result or before != value:
            result[name] = value
            changes.append(AttributeChange(name, before, value))
    return result, changes


def is_removal(value: object) -> bool:
    """An attribute value of "" or null removes the attribute."""
    return value is None or value == ""


def change_identifier(
    name: str,
    *,
    before: str | None,
    after: str | None,
    holder: str | None,
    cio_id: str,
    has_other_identifier: bool,
) -> AttributeChange | dict[str, Any] | None:
    """Setting a person's `id` or `email`: the change, a failure record, or nothing to do.

    An identifier that belongs to someone else (`holder`) is not applied; neither is
    removing a person's only identifier.
    """
    if after is None:
        if before is None:
            return None
        if not has_other_identifier:
            return {
                "attribute": name,
                "from": before,
                "to": None,
                "reason": f"the {name} is this person's only identifier",
            }
        return AttributeChange(name, before, None)
    if before == after:
        return None
    if holder is not None and holder != cio_id:
        return {
            "attribute": name,
            "from": before,
            "to": after,
            "reason": f"the {name} {after!r} belongs to another person",
            "held_by": holder,
        }
    return AttributeChange(name, before, after)


def fill_missing(current: Mapping[str, Any], source: Mapping[str, Any]) -> dict[str, Any]:
    """The attributes of `source` that `current` does not have yet."""
    return {name: value for name, value in source.items() if name not in current}


# -- profile merge ------------------------------------------------------------------


def inherits(timestamp: datetime, now: datetime) -> Decision:
    """Whether a secondary's event moves to the primary in a profile merge."""
    cutoff = now - RETENTION
    facts = {"timestamp": timestamp, "cutoff": cutoff}
    if timestamp >= cutoff:
        return Decision(
            Rule.SEGMENT_ONLY,
            "It was inherited from a merged profile; it counts for segments only.",
            facts,
        )
    return Decision(
        Rule.RETENTION_EXPIRED,
        "It was older than 30 days when its profile was merged into another, so it was dropped.",
        facts,
    )
