"""People: identify (with the assignment of an anonymous id and the merge of its
events), traits sent for an anonymous id, Merge People, and delete.

Helpers return what they changed (`PersonUpdate`, `Assigned`); the operation that
calls them assembles its result from those.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from cio_anon import jsonio, rules
from cio_anon.errors import InvalidInput, NotFound
from cio_anon.ingest import AnonymousTraits, Identify, MergePeople
from cio_anon.models import Activity, ActivityType, Event, Person, PersonRef, Tombstone
from cio_anon.rules import Assignment, Decision, IdentifierKind, Rule
from cio_anon.service import history
from cio_anon.service.shared import (
    Warning,
    anon_merge_activity,
    anonymous_ids_of,
    find_person,
    journal,
    lasting_identifier,
    merge_pending,
    refuse_suppressed,
    stored_json,
)
from cio_anon.store import Workspace

IDENTIFIER_ATTRIBUTES = ("id", "email")


# -- attribute changes ----------------------------------------------------------------


@dataclass
class PersonUpdate:
    """What applying attributes to a person changed, and the activities that records."""

    changes: list[rules.AttributeChange] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)
    activities: list[Activity] = field(default_factory=list)


def _identifier_value(name: str, value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise InvalidInput(f"The {name} attribute must be a string, not {jsonio.dumps(value)}.")
    text = str(value).strip()
    rules.check_identifier_limit(text)
    return text


Holder = Callable[[IdentifierKind, str], "str | None"]
"""Who holds an id or email now: their cio_id, or None."""


def holder_in(workspace: Workspace) -> Holder:
    """Who holds an identifier, as the workspace says."""

    def holder(kind: IdentifierKind, value: str) -> str | None:
        found = workspace.find_person(kind, value)
        return None if found is None else found.cio_id

    return holder


def update_person(
    holder_of: Holder, person: Person, updates: Mapping[str, Any], now: datetime
) -> PersonUpdate:
    """Apply attributes to a person (in memory; the caller saves them). `holder_of`
    says who holds an id or email the updates give the person."""
    update = PersonUpdate()
    plain: dict[str, Any] = {}
    for name, value in updates.items():
        if name not in IDENTIFIER_ATTRIBUTES:
            plain[name] = value
            continue
        text = None if rules.is_removal(value) else _identifier_value(name, value)
        holder = None
        if text is not None:
            holder = holder_of(IdentifierKind.ID if name == "id" else IdentifierKind.EMAIL, text)
        outcome = rules.change_identifier(
            name,
            before=getattr(person, name),
            after=text,
            holder=holder,
            cio_id=person.cio_id,
            has_other_identifier=(person.email if name == "id" else person.id) is not None,
        )
        if isinstance(outcome, rules.AttributeChange):
            setattr(person, name, outcome.after)
            update.changes.append(outcome)
            update.activities.append(_change_activity(person.cio_id, outcome, now))
        elif outcome is not None:
            update.failed.append(outcome)
            update.activities.append(
                Activity(person.cio_id, ActivityType.FAILED_ATTRIBUTE_CHANGE, now, outcome)
            )
    person.attributes, changes = rules.apply_attributes(person.attributes, plain)
    update.changes.extend(changes)
    update.activities.extend(_change_activity(person.cio_id, change, now) for change in changes)
    return update


def _change_activity(cio_id: str, change: rules.AttributeChange, now: datetime) -> Activity:
    return Activity(
        cio_id,
        ActivityType.ATTRIBUTE_CHANGE,
        now,
        {"attribute": change.attribute, "from": change.before, "to": change.after},
    )


def _fill_from_traits(
    workspace: Workspace, person: Person, traits: Mapping[str, Any], now: datetime
) -> PersonUpdate:
    """An anonymous profile's traits fill what the person does not have yet."""
    current = {
        **person.attributes,
        **{name: value for name in IDENTIFIER_ATTRIBUTES if (value := getattr(person, name))},
    }
    present = {name: value for name, value in traits.items() if not rules.is_removal(value)}
    missing = rules.fill_missing(current, present)
    return update_person(holder_in(workspace), person, missing, now) if missing else PersonUpdate()


# -- identify -------------------------------------------------------------------------


@dataclass
class IdentifyResult:
    person: PersonRef
    created: bool
    rule: Rule | None
    anonymous_id: str | None
    merged: list[str] = field(default_factory=list)
    attribute_changes: list[rules.AttributeChange] = field(default_factory=list)
    failed_attribute_changes: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[Warning] = field(default_factory=list)


@dataclass
class Assigned:
    """What an identify did with its anonymous id."""

    rule: Rule
    merged: list[Event] = field(default_factory=list)
    warnings: list[Warning] = field(default_factory=list)
    traits: PersonUpdate = field(default_factory=PersonUpdate)
    activities: list[Activity] = field(default_factory=list)


def identify(
    workspace: Workspace,
    now: datetime,
    *,
    identifier: str,
    anonymous_id: str | None = None,
    attributes: Mapping[str, Any] | None = None,
    message_id: str | None = None,
) -> IdentifyResult:
    """Create or update a person; assign an anonymous_id and merge its events.

    An `anonymous_id` attribute of "" or null removes the attribute (the id stays
    assigned); a non-empty one is the anonymous id to assign. `message_id` (a Data
    Pipelines message's) is kept with the call in the journal.
    """
    call = Identify(identifier, dict(attributes or {}), anonymous_id, message_id)
    updates = dict(attributes or {})
    update_only = updates.pop("_update", False) in (True, "true", "1", 1)
    if anonymous_id is None and not rules.is_removal(updates.get("anonymous_id")):
        claimed = updates["anonymous_id"]
        if not isinstance(claimed, str):
            raise InvalidInput(
                f"The anonymous_id attribute must be a string, not {jsonio.dumps(claimed)}."
            )
        anonymous_id = claimed
    if anonymous_id is not None:
        anonymous_id = anonymous_id.strip()
        if not anonymous_id:
            raise InvalidInput("The anonymous_id cannot be empty.")
        rules.check_identifier_limit(anonymous_id)
        updates["anonymous_id"] = anonymous_id
    rules.check_attribute_limits(updates)
    for name, value in updates.items():
        stored_json(value, what=f"value of attribute {name!r}")

    kind, value = rules.resolve_identifier(identifier)
    refuse_suppressed(workspace, kind, value)
    person = workspace.find_person(kind, value)
    created = person is None
    if person is None:
        if update_only:
            raise NotFound(f"No person has the {kind} {value!r}, and _update forbids creating one.")
        if kind is IdentifierKind.CIO_ID:
            raise NotFound(
                f"No person has the cio_id {value!r}; people are created by id or email."
            )
        person = Person(
            cio_id=workspace.next_cio_id(),
            id=value if kind is IdentifierKind.ID else None,
            email=value if kind is IdentifierKind.EMAIL else None,
            attributes={},
            created_at=now,
            updated_at=now,
        )
    call = replace(call, identifier=lasting_identifier(identifier, person))
    update = update_person(holder_in(workspace), person, updates, now)
    assigned = None if anonymous_id is None else _assign(workspace, now, person, anonymous_id)
    person.updated_at = now
    workspace.save_person(person)
    activities = [Activity(person.cio_id, ActivityType.PROFILE_CREATE, now, {})] if created else []
    activities += update.activities
    if assigned is not None:
        activities += assigned.traits.activities + assigned.activities
    workspace.add_activities(activities)
    journal(workspace, now, call, [person.cio_id], anonymous_id)
    return IdentifyResult(
        person=person.ref(),
        created=created,
        rule=None if assigned is None else assigned.rule,
        anonymous_id=anonymous_id,
        merged=[] if assigned is None else [event.event_id for event in assigned.merged],
        attribute_changes=update.changes + ([] if assigned is None else assigned.traits.changes),
        failed_attribute_changes=update.failed
        + ([] if assigned is None else assigned.traits.failed),
        warnings=[] if assigned is None else assigned.warnings,
    )


def _assign(workspace: Workspace, now: datetime, person: Person, anonymous_id: str) -> Assigned:
    """Assign `anonymous_id` to `person` (when the rules allow) and merge its events.

    Events that stay anonymous keep the decision taken now, so `explain` can report it
    later whatever the settings have become.
    """
    merge_enabled = workspace.settings().anonymous_merge
    decision = rules.decide_assignment(
        anonymous_id=anonymous_id,
        cio_id=person.cio_id,
        existing=workspace.get_assignment(anonymous_id),
        merge_enabled=merge_enabled,
        now=now,
    )
    if decision.rule is Rule.ANONYMOUS_ID_TAKEN:
        return Assigned(decision.rule, warnings=[decided_warning(decision)])
    pending = workspace.pending_events(anonymous_id, with_data=False)
    if decision.rule is Rule.MERGE_DISABLED:
        workspace.record_rules(
            (event.event_id, rules.pending_rule(decision.rule, event.timestamp, now))
            for event in pending
        )
        return Assigned(decision.rule, warnings=[decided_warning(decision)])
    if not decision.facts.get("newly_assigned"):
        stayed = Counter(event.rule for event in pending)
        return Assigned(decision.rule, warnings=reassigned_warnings(anonymous_id, stayed))
    assignment = Assignment(anonymous_id, person.cio_id, now)
    workspace.add_assignment(assignment)
    traits = _fill_from_traits(workspace, person, workspace.anonymous_traits(anonymous_id), now)
    merged, left = merge_pending(pending, assignment, now)
    workspace.attach_events(merged)
    workspace.record_rules((event.event_id, event.rule) for event in left)
    stayed = Counter(event.rule for event in left)
    return Assigned(
        decision.rule,
        merged=merged,
        traits=traits,
        activities=[
            anon_merge_activity(person.cio_id, anonymous_id, [e.timestamp for e in merged], now)
        ]
        if merged
        else [],
        warnings=unmerged_warnings(anonymous_id, stayed),
    )


def decided_warning(decision: Decision) -> Warning:
    """An assignment the rules refused or merge that is off: the decision, said."""
    return Warning(decision.rule, decision.reason)


def reassigned_warnings(anonymous_id: str, stayed: Counter[Rule]) -> list[Warning]:
    """An identify naming an anonymous id that is already the person's: identifying again
    reopens nothing, so one warning per rule its pending events stayed under (as decided
    when each arrived)."""
    return [
        Warning(
            rule,
            f"{count} event(s) with anonymous_id {anonymous_id!r} stay anonymous "
            f"({rule}): it was assigned earlier, and identifying again does not "
            "reopen the 5-minute window. Use a new anonymous_id.",
        )
        for rule, count in sorted(stayed.items())
    ]


def unmerged_warnings(anonymous_id: str, stayed: Counter[Rule]) -> list[Warning]:
    """A new assignment: one warning per rule its pending events that did not merge
    stayed under."""
    return [
        Warning(
            rule, f"{count} event(s) with anonymous_id {anonymous_id!r} did not merge ({rule})."
        )
        for rule, count in sorted(stayed.items())
    ]


# -- traits of an anonymous profile ---------------------------------------------------


@dataclass
class TraitsResult:
    anonymous_id: str
    traits: dict[str, Any]
    person: PersonRef | None = None
    """The person the id is assigned to, whose missing attributes the traits filled."""
    attribute_changes: list[rules.AttributeChange] = field(default_factory=list)


def set_anonymous_traits(
    workspace: Workspace,
    now: datetime,
    *,
    anonymous_id: str,
    traits: Mapping[str, Any],
    message_id: str | None = None,
) -> TraitsResult:
    """Store traits on an anonymous profile (Data Pipelines identify without userId).

    If the id is already assigned to a person, the traits also fill what that person
    lacks at once, with an `attribute_change` activity each.
    """
    anonymous_id = anonymous_id.strip()
    if not anonymous_id:
        raise InvalidInput("The anonymousId cannot be empty.")
    rules.check_identifier_limit(anonymous_id)
    rules.check_attribute_limits(traits)
    for name, value in traits.items():
        stored_json(value, what=f"value of trait {name!r}")
    merged, _ = rules.apply_attributes(workspace.anonymous_traits(anonymous_id), traits)
    workspace.save_anonymous_traits(anonymous_id, merged, now)
    result = TraitsResult(anonymous_id, merged)
    assignment = workspace.get_assignment(anonymous_id)
    holder = [] if assignment is None or assignment.cio_id is None else [assignment.cio_id]
    journal(
        workspace,
        now,
        AnonymousTraits(anonymous_id, dict(traits), message_id),
        holder,
        anonymous_id,
    )
    if assignment is None or assignment.cio_id is None:
        return result
    person = workspace.find_person(IdentifierKind.CIO_ID, assignment.cio_id)
    assert person is not None  # an assignment that names someone names a person who exists
    update = _fill_from_traits(workspace, person, traits, now)
    if update.changes or update.failed:
        person.updated_at = now
        workspace.save_person(person)
        workspace.add_activities(update.activities)
    result.person, result.attribute_changes = person.ref(), update.changes
    return result


# -- delete ---------------------------------------------------------------------------


@dataclass
class DeleteResult:
    person: PersonRef
    events: int
    assignments_kept: int
    """Their assignments, kept naming nobody: an anonymous id is assigned once, ever."""
    activities: int
    anonymous_profiles: int = 0
    dry_run: bool = False


def delete_person(
    workspace: Workspace, now: datetime, *, identifier: str, dry_run: bool = False
) -> DeleteResult:
    """Customer.io's delete: the person, their events, activities and the traits of
    their anonymous profiles are removed, and the space scrubbed. Their anonymous ids
    stay assigned (to nobody): an id is assigned once, ever.

    With `dry_run` every step runs and is then undone, so the result counts exactly
    what would go."""
    with workspace.savepoint(keep=not dry_run):
        return _delete_person(workspace, now, identifier, dry_run)


def _delete_person(
    workspace: Workspace, now: datetime, identifier: str, dry_run: bool
) -> DeleteResult:
    person = find_person(workspace, identifier)
    anonymous_ids = anonymous_ids_of(workspace, person)
    # what names them without being theirs: invites addressed to their email, calls
    # (a form) that carried their id or email before they were a person
    invites = []
    if person.email:
        key = rules.email_key(person.email)
        invites = [
            event_id
            for event_id, recipient in workspace.invite_recipients()
            if rules.email_key(recipient) == key
        ]
    history.forget_person(workspace, now, person, anonymous_ids, invites)
    workspace.erase_mentions(invites, history.as_values(history.identifiers_of(person)))
    counts = workspace.erase_person(person.cio_id, anonymous_ids)
    return DeleteResult(
        person.ref(),
        counts["events"],
        counts["assignments"],
        counts["activities"],
        counts["anonymous_profiles"],
        dry_run,
    )


# -- merge people ---------------------------------------------------------------------


@dataclass
class MergeResult:
    primary: PersonRef
    secondary: PersonRef
    moved: list[str]
    dropped: list[str]
    filled: list[str]
    anonymous_ids: list[str]
    dry_run: bool


def merge_people(
    workspace: Workspace, now: datetime, *, primary: str, secondary: str, dry_run: bool = False
) -> MergeResult:
    """Customer.io's Merge People: the secondary folds into the primary and is deleted.

    With `dry_run` every step runs and is then undone, so the result shows exactly
    what would happen.
    """
    with workspace.savepoint(keep=not dry_run):
        return _merge_people(workspace, now, primary, secondary, dry_run)


def _merge_people(
    workspace: Workspace, now: datetime, primary: str, secondary: str, dry_run: bool
) -> MergeResult:
    first = find_person(workspace, primary)
    second = find_person(workspace, secondary)
    if first.cio_id == second.cio_id:
        raise InvalidInput(f"{primary!r} and {secondary!r} are the same person; nothing to merge.")
    secondary_ref = second.ref()
    journal(
        workspace,
        now,
        MergePeople(lasting_identifier(primary, first), lasting_identifier(secondary, second)),
        [first.cio_id, second.cio_id],
    )
    moved: list[str] = []
    dropped: list[Tombstone] = []
    for event in workspace.person_events(second.cio_id):
        decision = rules.inherits(event.timestamp, now)
        if decision.rule is Rule.SEGMENT_ONLY:
            moved.append(event.event_id)
        else:
            dropped.append(
                Tombstone(
                    event.event_id,
                    event.name,
                    event.anonymous_id,
                    second.cio_id,
                    event.timestamp,
                    event.received_at,
                    now,
                    decision.rule,
                    f"Dropped when {secondary_ref.label} was merged into {first.ref().label}: "
                    "it was older than 30 days.",
                )
            )
    workspace.remove_events(dropped)
    anonymous_ids = [a.anonymous_id for a in workspace.assignments_of(second.cio_id)]
    workspace.move_person_records(secondary_ref, first.cio_id, now)

    filled = rules.fill_missing(first.attributes, second.attributes)
    first.attributes.update(filled)
    filled_names = sorted(filled)
    for name in IDENTIFIER_ATTRIBUTES:
        if getattr(first, name) is None and getattr(second, name) is not None:
            setattr(first, name, getattr(second, name))
            filled_names.append(name)
    first.updated_at = now
    workspace.delete_person(second.cio_id)
    workspace.save_person(first)
    workspace.add_activities(
        [
            Activity(
                first.cio_id,
                ActivityType.PROFILE_MERGE,
                now,
                {
                    "secondary": {
                        "cio_id": secondary_ref.cio_id,
                        "id": secondary_ref.id,
                        "email": secondary_ref.email,
                    },
                    "moved": len(moved),
                    "dropped": len(dropped),
                    "filled": len(filled_names),
                    "attributes_filled": filled_names,
                    "anonymous_ids": anonymous_ids,
                },
            )
        ]
    )
    return MergeResult(
        primary=first.ref(),
        secondary=secondary_ref,
        moved=moved,
        dropped=[t.event_id for t in dropped],
        filled=filled_names,
        anonymous_ids=anonymous_ids,
        dry_run=dry_run,
    )
