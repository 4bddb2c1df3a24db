"""The operations of cio-anon, as functions of (workspace, now, inputs).

Each returns a plain result object that `render` turns into a table or JSON. The rules
are decided in `rules`; the SQL lives in `workspace`; this module only sequences them.
"""

from __future__ import annotations

import contextlib
import secrets
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from cio_anon import jsonio, rules
from cio_anon.clock import parse_time
from cio_anon.errors import InvalidInput, NotFound, WorkspaceError
from cio_anon.models import (
    Activity,
    ActivityType,
    Event,
    EventCounts,
    LogRow,
    Person,
    PersonRef,
    Settings,
    Tombstone,
)
from cio_anon.rules import Assignment, Decision, IdentifierKind, Provenance, Rule
from cio_anon.workspace import LogFilter, Workspace, remove_workspace_files

# -- opening a workspace ------------------------------------------------------------


@contextlib.contextmanager
def opened(
    path: Path, now: datetime, *, write: bool, initial: Settings | None = None
) -> Iterator[Workspace]:
    """Open the workspace for one command, in one transaction.

    A write creates the file when it is missing (with the `initial` settings, by
    default created now); if the command then fails the new file is removed again,
    so bad input never leaves a workspace behind — unless another process has
    recorded something in it meanwhile. Any failure rolls the transaction back, so
    nothing is half-written.
    """
    if initial is None:
        initial = Settings(created_at=now, anonymous_merge=rules.default_anonymous_merge(now))
    workspace = Workspace.open(path, create=write, initial=initial)
    created = workspace.created
    try:
        with workspace.transaction(write=write):
            yield workspace
    except BaseException:
        workspace.close()
        if created:
            Workspace.discard(path)
        raise
    workspace.close()


def init_workspace(
    path: Path, now: datetime, *, created_at: datetime | None, force: bool
) -> Settings:
    """Create a workspace; with `force`, replace an existing one."""
    if path.exists():
        if not force:
            raise WorkspaceError(
                f"A workspace already exists at {path}: use --force to replace it."
            )
        Workspace.open(path, create=False).close()  # refuse to delete a file that is not ours
        remove_workspace_files(path)
    settings = Settings(
        created_at=created_at or now,
        anonymous_merge=rules.default_anonymous_merge(created_at or now),
    )
    with opened(path, now, write=True, initial=settings):
        pass
    return settings


def update_settings(
    workspace: Workspace,
    *,
    anonymous_merge: bool | None = None,
    created_at: datetime | None = None,
) -> Settings:
    """Show the settings, changing what is given. A new creation date without an
    explicit merge setting brings that date's default with it."""
    settings = workspace.settings()
    if created_at is not None and anonymous_merge is None:
        anonymous_merge = rules.default_anonymous_merge(created_at)
    changed = Settings(
        created_at=created_at or settings.created_at,
        anonymous_merge=settings.anonymous_merge if anonymous_merge is None else anonymous_merge,
    )
    if changed != settings:
        workspace.save_settings(changed)
    return changed


# -- shared pieces ------------------------------------------------------------------


@dataclass(frozen=True)
class Warning:
    """A rule that fired without making the request fail."""

    rule: Rule
    message: str


def new_event_id(now: datetime) -> str:
    """A ULID: 48 bits of milliseconds then 80 random bits, in Crockford base32."""
    alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
    value = (int(now.timestamp() * 1000) << 80) | secrets.randbits(80)
    return "".join(alphabet[(value >> shift) & 31] for shift in range(125, -1, -5))


def find_person(workspace: Workspace, identifier: str) -> Person:
    """The person an identifier names, or NotFound."""
    kind, value = rules.resolve_identifier(identifier)
    person = workspace.find_person(kind, value)
    if person is None:
        raise NotFound(f"No person has the {kind} {value!r}.")
    return person


def parse_json_object(text: str, *, what: str) -> dict[str, Any]:
    """A JSON object from the command line, or a sentence saying what is wrong."""
    try:
        value = jsonio.loads(text)
    except jsonio.JSONDecodeError as error:
        raise InvalidInput(f"The {what} is not valid JSON: {error}.") from None
    if not isinstance(value, dict):
        raise InvalidInput(f"The {what} must be a JSON object, not {type(value).__name__}.")
    return value


def _check_json_value(value: Any, what: str) -> str:
    """Serialise a value for storage, refusing what JSON cannot carry."""
    try:
        return jsonio.dumps(value)
    except TypeError as error:
        raise InvalidInput(f"The {what} cannot be stored as JSON: {error}.") from None


def _campaign(event: Event) -> Decision:
    assert event.provenance is not None
    return rules.campaign_eligibility(
        provenance=event.provenance,
        timestamp=event.timestamp,
        received_at=event.received_at,
        merged_at=event.merged_at,
    )


def _anon_merge(cio_id: str, anonymous_id: str, merged: Sequence[Event], at: datetime) -> Activity:
    oldest = min(event.timestamp for event in merged)
    return Activity(
        cio_id=cio_id,
        type=ActivityType.ANON_MERGE,
        timestamp=at,
        anonymous_id=anonymous_id,
        data={
            "count": len(merged),
            "oldest_timestamp": int(oldest.timestamp()),
            "anonymous_id": anonymous_id,
        },
    )


def _place(event: Event, assignment: Assignment | None, merge_enabled: bool) -> rules.Placement:
    return rules.place_anonymous_event(
        received_at=event.received_at,
        timestamp=event.timestamp,
        assignment=assignment,
        merge_enabled=merge_enabled,
    )


def _attach(event: Event, placement: rules.Placement) -> None:
    """Make an anonymous event its person's, as `placement` decided."""
    event.cio_id = placement.cio_id
    event.provenance = Provenance.MERGED
    event.merged_at = placement.merged_at
    event.rule = placement.decision.rule
    event.can_trigger = _campaign(event).rule is Rule.CAMPAIGN_ELIGIBLE


# -- track --------------------------------------------------------------------------


@dataclass
class TrackResult:
    event_id: str
    stored: bool
    status: str
    rule: Rule
    person: PersonRef | None = None
    anonymous_id: str | None = None
    provenance: Provenance | None = None
    can_trigger_campaigns: bool = False
    warnings: list[Warning] = field(default_factory=list)
    person_created: bool = False


def track(
    workspace: Workspace,
    now: datetime,
    *,
    name: str,
    person: str | None = None,
    anonymous_id: str | None = None,
    type: str = "event",
    data: Mapping[str, Any] | None = None,
    timestamp: object = None,
    event_id: str | None = None,
    source: str | None = None,
    create_person: bool = False,
) -> TrackResult:
    """Record one event: a person's, an anonymous one, or an invite (data.recipient).

    An unknown `person` is an error, unless `create_person` (the APIs create them).
    """
    name = name.strip()
    payload = dict(data or {})
    data_json = _check_json_value(payload, what=f"data of event {name!r}")
    rules.check_event_limits(name, data_json)
    try:
        event_type = rules.EventType(type).value
    except ValueError:
        raise InvalidInput(f"The event type {type!r} is not one of event, page, screen.") from None
    happened = now if timestamp is None else parse_time(timestamp, what="event timestamp")
    event_id = (event_id or "").strip() or new_event_id(now)
    rules.check_identifier_limit(event_id)
    if anonymous_id is not None:
        anonymous_id = anonymous_id.strip() or None
    if anonymous_id is not None:
        rules.check_identifier_limit(anonymous_id)
    recipient = payload.get("recipient")
    recipient = recipient.strip() if isinstance(recipient, str) and recipient.strip() else None

    owner, created = None, False
    if person is not None:
        if create_person:
            owner, created = _find_or_create(workspace, now, person)
        else:
            owner = find_person(workspace, person)
    else:
        rules.classify_unattached(anonymous_id, recipient)  # rejects an event with no identity
    event = Event(
        event_id=event_id,
        name=name,
        type=event_type,
        data=payload,
        timestamp=happened,
        received_at=now,
        rule=Rule.INVITE,
        anonymous_id=anonymous_id,
        recipient=recipient,
        source=source,
    )
    result = TrackResult(
        event_id, stored=True, status="invite", rule=Rule.INVITE, person_created=created
    )
    merge: Activity | None = None
    if owner is not None:
        event.cio_id = owner.cio_id
        event.provenance = Provenance.TRACKED
        campaign = _campaign(event)
        event.rule = campaign.rule
        event.can_trigger = campaign.rule is Rule.CAMPAIGN_ELIGIBLE
        result.status, result.person = "identified", owner.ref()
    elif anonymous_id is not None:
        placement = _place(
            event, workspace.get_assignment(anonymous_id), workspace.settings().anonymous_merge
        )
        if placement.merges:
            assert placement.cio_id is not None and placement.merged_at is not None
            _attach(event, placement)
            merge = _anon_merge(placement.cio_id, anonymous_id, [event], placement.merged_at)
            result.status = "identified"
            result.person = workspace.person_refs([placement.cio_id])[placement.cio_id]
        else:
            pending = rules.decide_pending(
                placement=placement, timestamp=happened, claimed_while_disabled=False, now=now
            )
            event.rule = pending.rule
            result.status = "anonymous"
            if pending.rule is not Rule.ANONYMOUS:
                result.warnings.append(Warning(pending.rule, pending.reason))
    if not workspace.insert_event(event, data_json):
        return TrackResult(
            event_id,
            stored=False,
            status="duplicate",
            rule=Rule.DUPLICATE,
            person_created=created,
            warnings=[
                Warning(Rule.DUPLICATE, f"An event with id {event_id!r} already exists; ignored.")
            ],
        )
    if merge is not None:
        workspace.add_activities([merge])
    result.rule = event.rule
    result.anonymous_id = anonymous_id
    result.provenance = event.provenance
    result.can_trigger_campaigns = event.can_trigger
    return result


def _find_or_create(workspace: Workspace, now: datetime, identifier: str) -> tuple[Person, bool]:
    """The person an identifier names, created (as identify would) if missing."""
    kind, value = rules.resolve_identifier(identifier)
    person = workspace.find_person(kind, value)
    if person is not None:
        return person, False
    identify(workspace, now, identifier=identifier)
    return find_person(workspace, identifier), True


# -- identify -----------------------------------------------------------------------


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


IDENTIFIER_ATTRIBUTES = ("id", "email")


def _identifier_value(name: str, value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise InvalidInput(f"The {name} attribute must be a string, not {jsonio.dumps(value)}.")
    text = str(value).strip()
    rules.check_identifier_limit(text)
    return text


def _update_person(
    workspace: Workspace,
    person: Person,
    updates: Mapping[str, Any],
    now: datetime,
    result: IdentifyResult,
) -> list[Activity]:
    """Apply attributes to a person (in memory); the activities the changes call for."""
    activities: list[Activity] = []
    plain: dict[str, Any] = {}
    for name, value in updates.items():
        if name not in IDENTIFIER_ATTRIBUTES:
            plain[name] = value
            continue
        text = None if value in ("", None) else _identifier_value(name, value)
        holder = None
        if text is not None:
            kind = IdentifierKind.ID if name == "id" else IdentifierKind.EMAIL
            found = workspace.find_person(kind, text)
            holder = None if found is None else found.cio_id
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
            result.attribute_changes.append(outcome)
            activities.append(_change_activity(person.cio_id, outcome, now))
        elif outcome is not None:
            result.failed_attribute_changes.append(outcome)
            activities.append(
                Activity(person.cio_id, ActivityType.FAILED_ATTRIBUTE_CHANGE, now, outcome)
            )
    person.attributes, changes = rules.apply_attributes(person.attributes, plain)
    result.attribute_changes.extend(changes)
    activities.extend(_change_activity(person.cio_id, change, now) for change in changes)
    return activities


def _change_activity(cio_id: str, change: rules.AttributeChange, now: datetime) -> Activity:
    return Activity(
        cio_id,
        ActivityType.ATTRIBUTE_CHANGE,
        now,
        {"attribute": change.attribute, "from": change.before, "to": change.after},
    )


def collect_attributes(pairs: Sequence[str] = (), attrs_json: str | None = None) -> dict[str, Any]:
    """Attributes from `--attrs JSON` and repeated `--attr KEY=VALUE` (the latter win)."""
    attributes: dict[str, Any] = {}
    if attrs_json is not None:
        attributes.update(parse_json_object(attrs_json, what="--attrs value"))
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise InvalidInput(f"The attribute {pair!r} is not KEY=VALUE.")
        attributes[key.strip()] = value
    return attributes


def identify(
    workspace: Workspace,
    now: datetime,
    *,
    identifier: str,
    anonymous_id: str | None = None,
    attributes: Mapping[str, Any] | None = None,
) -> IdentifyResult:
    """Create or update a person; assign an anonymous_id and merge its events."""
    updates = dict(attributes or {})
    update_only = updates.pop("_update", False) in (True, "true", "1", 1)
    if anonymous_id is None and isinstance(updates.get("anonymous_id"), str):
        anonymous_id = updates["anonymous_id"]
    if anonymous_id is not None:
        anonymous_id = anonymous_id.strip()
        if not anonymous_id:
            raise InvalidInput("The anonymous_id cannot be empty.")
        rules.check_identifier_limit(anonymous_id)
        updates["anonymous_id"] = anonymous_id
    rules.check_attribute_limits(updates)
    for name, value in updates.items():
        _check_json_value(value, what=f"value of attribute {name!r}")

    kind, value = rules.resolve_identifier(identifier)
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
    activities = [Activity(person.cio_id, ActivityType.PROFILE_CREATE, now, {})] if created else []
    result = IdentifyResult(
        person=person.ref(), created=created, rule=None, anonymous_id=anonymous_id
    )
    activities += _update_person(workspace, person, updates, now, result)
    if anonymous_id is not None:
        activities += _assign(workspace, now, person, anonymous_id, result)
    person.updated_at = now
    workspace.save_person(person)
    workspace.add_activities(activities)
    result.person = person.ref()
    return result


def _assign(
    workspace: Workspace, now: datetime, person: Person, anonymous_id: str, result: IdentifyResult
) -> list[Activity]:
    """Assign `anonymous_id` to `person` (when the rules allow) and merge its events;
    the activities that calls for (the person is saved by the caller)."""
    merge_enabled = workspace.settings().anonymous_merge
    decision = rules.decide_assignment(
        anonymous_id=anonymous_id,
        cio_id=person.cio_id,
        existing=workspace.get_assignment(anonymous_id),
        merge_enabled=merge_enabled,
        now=now,
    )
    result.rule = decision.rule
    if decision.rule is not Rule.MERGED_ON_IDENTIFY:
        result.warnings.append(Warning(decision.rule, decision.reason))
        return []
    pending = workspace.pending_events(anonymous_id, with_data=False)
    if not decision.facts.get("newly_assigned"):
        if pending:
            result.warnings.append(
                Warning(
                    Rule.WINDOW_CLOSED,
                    f"{len(pending)} event(s) with anonymous_id {anonymous_id!r} stay anonymous: "
                    "it was assigned earlier, and identifying again does not reopen the "
                    "5-minute window. Use a new anonymous_id.",
                )
            )
        return []
    assignment = Assignment(anonymous_id, person.cio_id, now)
    workspace.add_assignment(assignment)
    traits = rules.fill_missing(
        {**person.attributes, **{k: v for k in IDENTIFIER_ATTRIBUTES if (v := getattr(person, k))}},
        {k: v for k, v in workspace.anonymous_traits(anonymous_id).items() if v not in ("", None)},
    )
    activities = _update_person(workspace, person, traits, now, result) if traits else []
    merged: list[Event] = []
    left: dict[Rule, int] = {}
    for event in pending:
        placement = _place(event, assignment, merge_enabled)
        if placement.merges:
            _attach(event, placement)
            merged.append(event)
        else:
            rule = rules.decide_pending(
                placement=placement,
                timestamp=event.timestamp,
                claimed_while_disabled=False,
                now=now,
            ).rule
            left[rule] = left.get(rule, 0) + 1
    if merged:
        workspace.attach_events(merged)
        activities.append(_anon_merge(person.cio_id, anonymous_id, merged, now))
    result.merged = [event.event_id for event in merged]
    for rule, count in sorted(left.items()):
        result.warnings.append(
            Warning(
                rule, f"{count} event(s) with anonymous_id {anonymous_id!r} did not merge ({rule})."
            )
        )
    return activities


def set_anonymous_traits(
    workspace: Workspace, now: datetime, *, anonymous_id: str, traits: Mapping[str, Any]
) -> dict[str, Any]:
    """Store traits on an anonymous profile (Data Pipelines identify without userId).

    If the id is already assigned, the traits go to the person instead, filling only
    what they lack.
    """
    anonymous_id = anonymous_id.strip()
    if not anonymous_id:
        raise InvalidInput("The anonymousId cannot be empty.")
    rules.check_identifier_limit(anonymous_id)
    rules.check_attribute_limits(traits)
    merged, _ = rules.apply_attributes(workspace.anonymous_traits(anonymous_id), traits)
    workspace.save_anonymous_traits(anonymous_id, merged, now)
    return merged


# -- delete -------------------------------------------------------------------------


@dataclass
class DeleteResult:
    person: PersonRef
    events: int
    assignments: int
    activities: int
    anonymous_profiles: int = 0


def delete_person(workspace: Workspace, now: datetime, *, identifier: str) -> DeleteResult:
    """Customer.io's delete: the person, their events, anonymous-id assignments,
    activities and anonymous-profile traits are removed, and the space scrubbed."""
    person = find_person(workspace, identifier)
    anonymous_ids = {a.anonymous_id for a in workspace.assignments_of(person.cio_id)}
    if isinstance(person.attributes.get("anonymous_id"), str):
        anonymous_ids.add(person.attributes["anonymous_id"])
    counts = workspace.erase_person(person.cio_id, sorted(anonymous_ids))
    return DeleteResult(
        person.ref(),
        counts["events"],
        counts["assignments"],
        counts["activities"],
        counts["anonymous_profiles"],
    )


# -- merge people -------------------------------------------------------------------


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
                    f"Dropped when {second.ref().label} was merged into {first.ref().label}: "
                    "it was older than 30 days.",
                )
            )
    workspace.remove_events(dropped)
    anonymous_ids = [a.anonymous_id for a in workspace.assignments_of(second.cio_id)]
    workspace.move_person_records(second.cio_id, first.cio_id, now)

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
    secondary_ref = second.ref()
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


# -- purge --------------------------------------------------------------------------


@dataclass
class PurgeResult:
    deleted: dict[str, int]
    dry_run: bool

    @property
    def total(self) -> int:
        return sum(self.deleted.values())


PURGE_CHUNK = 20_000
"""Events deleted per transaction, so a large purge never holds the write lock long."""
PURGED = "Purged: it stayed anonymous for more than 30 days after it happened."


def purge(
    workspace: Workspace, now: datetime, *, dry_run: bool = False, limit: int | None = None
) -> PurgeResult:
    """Delete unmerged anonymous events past the 30-day retention (or, dry, count them).

    `limit` deletes at most that many (the oldest first): see `purge_in_chunks`.
    """
    cutoff = rules.retention_cutoff(now)
    if dry_run:
        return PurgeResult(deleted=workspace.count_expired(cutoff), dry_run=True)
    return PurgeResult(
        deleted=workspace.purge_expired(cutoff, now, PURGED, limit or -1), dry_run=False
    )


def purge_in_chunks(
    path: Path, now: datetime, *, dry_run: bool = False, chunk: int = PURGE_CHUNK
) -> PurgeResult:
    """Purge in transactions of at most `chunk` events; other writers get the lock in
    between. Each chunk is whole: a stop between chunks leaves a smaller purge done."""
    total: Counter[str] = Counter()
    while True:
        with opened(path, now, write=not dry_run) as workspace:
            result = purge(workspace, now, dry_run=dry_run, limit=chunk)
        total.update(result.deleted)
        if dry_run or result.total < chunk:
            return PurgeResult(deleted=dict(total), dry_run=dry_run)


# -- reading ------------------------------------------------------------------------

TABS = ("identified", "anonymous")
MAX_LIMIT = 100_000


def _check_limit(limit: int) -> None:
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"The --limit must be between 1 and {MAX_LIMIT:,}.")


@dataclass
class LogPage:
    now: datetime
    identified: list[LogRow] | None
    anonymous: list[LogRow] | None
    next_identified: str | None = None
    next_anonymous: str | None = None


def _cursor(tab: str, rows: list[LogRow] | None, limit: int) -> str | None:
    """Where the next page of a tab starts, when this page was full."""
    if not rows or len(rows) < limit:
        return None
    timestamp, seq, kind = rows[-1].key
    return f"i:{timestamp!r}:{seq}:{kind}" if tab == "identified" else f"a:{timestamp!r}:{seq}"


def _parse_cursor(cursor: str) -> tuple[str, tuple[float, int, int]]:
    """The tab a cursor continues and the (timestamp, seq, kind) key it starts after."""
    parts = cursor.split(":")
    try:
        if parts[0] == "i" and len(parts) == 4:
            return "identified", (float(parts[1]), int(parts[2]), int(parts[3]))
        if parts[0] == "a" and len(parts) == 3:
            return "anonymous", (float(parts[1]), int(parts[2]), 0)
    except ValueError:
        pass
    raise InvalidInput(f"The cursor {cursor!r} is not one that log printed as `next`.")


def activity_log(
    workspace: Workspace,
    now: datetime,
    *,
    person: str | None = None,
    anonymous_id: str | None = None,
    tab: str | None = None,
    type: str | None = None,
    limit: int = 50,
    before: str | None = None,
) -> LogPage:
    """The activity log's two tabs, newest first, `limit` rows each.

    `before` (a cursor from a previous page's `next`) continues that page's tab.
    """
    _check_limit(limit)
    if tab is not None and tab not in TABS:
        raise InvalidInput(f"The tab {tab!r} is not one of identified, anonymous.")
    key = None
    if before is not None:
        cursor_tab, key = _parse_cursor(before)
        if tab is not None and tab != cursor_tab:
            raise InvalidInput(f"The cursor continues the {cursor_tab} tab, not {tab}.")
        tab = cursor_tab
    cio_id = None
    their_ids: list[str] | None = None
    if person is not None:
        who = find_person(workspace, person)
        cio_id = who.cio_id
        claimed = who.attributes.get("anonymous_id")
        their_ids = sorted(
            {a.anonymous_id for a in workspace.assignments_of(cio_id)}
            | ({claimed} if isinstance(claimed, str) else set())
        )
    flt = LogFilter(cio_id=cio_id, anonymous_id=anonymous_id, type=type)
    identified = anonymous = None
    if tab in (None, "identified"):
        identified = workspace.identified_log(flt, limit, key)
    if tab in (None, "anonymous"):
        anonymous = workspace.anonymous_log(flt, their_ids, limit, key)
    return LogPage(
        now=now,
        identified=identified,
        anonymous=anonymous,
        next_identified=_cursor("identified", identified, limit),
        next_anonymous=_cursor("anonymous", anonymous, limit),
    )


@dataclass
class Profile:
    person: Person
    anonymous_ids: list[Assignment]
    counts: EventCounts
    merges: list[Activity]


def show(workspace: Workspace, *, identifier: str) -> Profile:
    """One person's profile: identifiers, attributes, anonymous ids, counts, merges."""
    person = find_person(workspace, identifier)
    return Profile(
        person=person,
        anonymous_ids=workspace.assignments_of(person.cio_id),
        counts=workspace.event_counts(person.cio_id),
        merges=workspace.activities_of(
            person.cio_id, (ActivityType.ANON_MERGE, ActivityType.PROFILE_MERGE)
        ),
    )


def list_people(workspace: Workspace, *, limit: int = 100) -> list[tuple[Person, int]]:
    _check_limit(limit)
    return workspace.people(limit)


@dataclass
class Explanation:
    event_id: str
    status: str
    decision: Decision
    person: PersonRef | None
    anonymous_id: str | None
    name: str
    source: str | None = None
    campaign: Decision | None = None


def explain(workspace: Workspace, now: datetime, *, event_id: str) -> Explanation:
    """Why an event is where it is: its status, the rule that put it there, the times."""
    event = workspace.get_event(event_id)
    if event is None:
        tombstone = workspace.get_tombstone(event_id)
        if tombstone is None:
            raise NotFound(f"No event has the id {event_id!r} in this workspace.")
        return Explanation(
            event_id=event_id,
            status="purged",
            decision=Decision(
                tombstone.rule,
                tombstone.reason,
                {
                    "timestamp": tombstone.timestamp,
                    "received_at": tombstone.received_at,
                    "removed_at": tombstone.removed_at,
                },
            ),
            person=None,
            anonymous_id=tombstone.anonymous_id,
            name=tombstone.name,
        )
    if event.cio_id is not None:
        person = workspace.person_refs([event.cio_id]).get(event.cio_id)
        campaign = _campaign(event)
        if event.provenance is Provenance.MERGED and event.anonymous_id is not None:
            assignment = workspace.get_assignment(event.anonymous_id)
            decision = (
                _place(event, assignment, True).decision
                if assignment is not None
                else Decision(event.rule, "It merged from its anonymous profile.", {})
            )
            decision = Decision(event.rule, decision.reason, {**decision.facts, **campaign.facts})
        else:
            decision = campaign
        return Explanation(
            event_id,
            "identified",
            decision,
            person,
            event.anonymous_id,
            event.name,
            event.source,
            campaign,
        )
    if event.is_invite:
        decision = rules.classify_unattached(None, event.recipient)
        facts = {**decision.facts, "timestamp": event.timestamp, "received_at": event.received_at}
        return Explanation(
            event_id,
            "invite",
            Decision(decision.rule, decision.reason, facts),
            None,
            None,
            event.name,
            event.source,
        )
    assert event.anonymous_id is not None
    assignment = workspace.get_assignment(event.anonymous_id)
    settings = workspace.settings()
    decision = rules.decide_pending(
        placement=_place(event, assignment, settings.anonymous_merge),
        timestamp=event.timestamp,
        claimed_while_disabled=assignment is None
        and bool(workspace.people_claiming(event.anonymous_id)),
        now=now,
    )
    return Explanation(
        event_id, "anonymous", decision, None, event.anonymous_id, event.name, event.source
    )
