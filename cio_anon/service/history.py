"""The journal of calls and what is made of it: `export` (the workspace, or one person's
history, as a replayable fixture) and forgetting a deleted person.

Every operation that changes the workspace keeps the fixture record that replays it
(`Workspace.add_journal_rows`), in order, naming the people (cio_ids) and the anonymous id
it touched. Replaying the whole journal into an empty workspace gives the same people
(the same cio_ids, numbered in creation order), events, assignments and log.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from cio_anon import jsonio
from cio_anon.clock import to_iso
from cio_anon.errors import CioAnonError
from cio_anon.ingest import DeletePerson, Identify, MergePeople, Operation, Track, Unmodelled
from cio_anon.ingest.emit import to_record
from cio_anon.models import Person
from cio_anon.service.shared import find_person, journal
from cio_anon.store import PURGED_NAME, JournalEntry, JournalRewrite, Workspace

GLOBAL_KINDS = frozenset({"ChangeSettings", "Purge"})
"""Calls that touch no one in particular; every export keeps them."""
FORGOTTEN = "deleted-"
"""How an export names a deleted person (with their cio_id) where their calls stood."""


class IncompleteJournal(CioAnonError):
    """The workspace held data before it kept a journal; it cannot be exported."""


# -- export ---------------------------------------------------------------------------


def export(workspace: Workspace, *, person: str | None = None) -> Iterator[dict[str, Any]]:
    """The fixture records that replay the workspace (or, with `person`, that person's
    history), oldest first, each with its receive time as `at`."""
    if workspace.journal_incomplete():
        raise IncompleteJournal(
            f"{workspace.path} holds data recorded by cio-anon 0.1, which kept no journal "
            "of calls: replay its fixtures into a new workspace to export them."
        )
    entries: Iterable[JournalEntry] = workspace.journal()
    if person is not None:
        entries = history_of(list(entries), find_person(workspace, person))
    for entry in entries:
        yield {"at": to_iso(entry.at), **jsonio.loads(entry.record)}


def family(entries: Sequence[JournalEntry], cio_id: str) -> set[str]:
    """A person and everyone merged into them, directly or through others."""
    members = {cio_id}
    for entry in reversed(entries):  # a merge folds in whoever was folded in before it
        if entry.kind == "MergePeople" and entry.people[0] in members:
            members.update(entry.people[1:])
    return members


def history_of(entries: Sequence[JournalEntry], person: Person) -> list[JournalEntry]:
    """The calls that made a person's history: those that touched them or anyone merged
    into them, those about any anonymous id one of them identified with (whoever else
    sent them, since they decide who got the id), the objects they were related to, and
    settings changes and purges."""
    members = family(entries, person.cio_id)
    claimed = {
        entry.anonymous_id
        for entry in entries
        if entry.kind == "Identify" and entry.anonymous_id and members.intersection(entry.people)
    }
    objects = {
        _object_key(entry)
        for entry in entries
        if entry.kind == "Relate" and members.intersection(entry.people)
    }
    return [
        entry
        for entry in entries
        if entry.kind in GLOBAL_KINDS
        or members.intersection(entry.people)
        or (entry.anonymous_id is not None and entry.anonymous_id in claimed)
        or (entry.kind in OBJECT_KINDS and _object_key(entry) in objects)
    ]


OBJECT_KINDS = frozenset({"ObjectUpdate", "ObjectDelete"})


def _object_key(entry: JournalEntry) -> tuple[str, str]:
    """The object a Relate, ObjectUpdate or ObjectDelete entry is about."""
    body = jsonio.loads(entry.record).get("body") or {}
    if entry.kind == "Relate":
        ids = body["cio_relationships"][0]["identifiers"]
    else:
        ids = body["identifiers"]
    return str(ids["object_type_id"]), str(ids["object_id"])


# -- forgetting a deleted person ------------------------------------------------------


def rewritten(seq: int, op: Operation) -> JournalRewrite:
    """The journal entry at `seq` replaced by the record of `op`."""
    return JournalRewrite(seq, type(op).__name__, to_record(op), getattr(op, "anonymous_id", None))


def forget(
    entries: Sequence[JournalEntry],
    cio_id: str,
    erased_events: Iterable[str],
    anonymous_ids: Iterable[str],
    identifiers: Sequence[str] = (),
) -> list[JournalRewrite]:
    """Rewrite the journal as a delete leaves the workspace: nothing the person (or
    anyone merged into them) sent is kept, yet a replay still gives the same result.

    Each of them becomes a stand-in named `deleted-<cio_id>`: created where they were
    created (so later people keep their cio_ids), identified with each anonymous id
    where they were (so the ids are assigned, or refused, as they were), and merged as
    they were; their other calls, and the anonymous events that were erased with them,
    are dropped, as are traits sent for their anonymous ids (erased with them). The
    delete itself is the caller's to journal, for the stand-in.
    """
    members = family(entries, cio_id)
    mentioned = as_values(identifiers)
    erased = set(erased_events)
    profiles = set(anonymous_ids)
    created: set[str] = set()
    rewrites = []
    for entry in entries:
        touched = [c for c in entry.people if c in members]
        if not touched:
            if (
                (entry.kind == "Track" and _event_id(entry) in erased)
                or (entry.kind == "AnonymousTraits" and entry.anonymous_id in profiles)
                or (entry.kind == "Unmodelled" and _mentions(entry.record, mentioned))
            ):
                rewrites.append(JournalRewrite(entry.seq))
            continue
        if entry.kind == "MergePeople":
            primary, secondary = entry.people[:2]
            rewrites.append(
                rewritten(entry.seq, MergePeople(stand_in(primary), stand_in(secondary)))
            )
            continue
        member = touched[0]
        if entry.kind == "Unmodelled" and len(touched) < len(entry.people):
            # a stored call that also named others stays theirs, without this person
            call = _unmodelled(entry)
            scrubbed = _replaced(call.body, identifiers, stand_in(cio_id))
            people = tuple(stand_in(cio_id) if p in identifiers else p for p in call.people)
            rewrites.append(rewritten(entry.seq, replace(call, body=scrubbed, people=people)))
        elif entry.kind == "Identify" and (entry.anonymous_id or member not in created):
            attributes = {"anonymous_id": entry.anonymous_id} if entry.anonymous_id else {}
            rewrites.append(rewritten(entry.seq, Identify(stand_in(member), attributes)))
        else:
            # their events, devices, relationships, stored calls: dropped (a stored call
            # that also named others is dropped for them too)
            rewrites.append(JournalRewrite(entry.seq))
        created.update(touched)
    return rewrites


def _unmodelled(entry: JournalEntry) -> Unmodelled:
    """The stored call a journal entry records (its record is the call as it came)."""
    from cio_anon.ingest.fixtures import to_operations

    record = {"at": 0, **jsonio.loads(entry.record)}
    (timed,) = to_operations(record, entry.at)
    assert isinstance(timed.operation, Unmodelled)
    return timed.operation


def _replaced(value: Any, old: Sequence[str], new: str) -> Any:
    """A JSON value with every string in `old` replaced by `new`."""
    if isinstance(value, str):
        return new if value in old else value
    if isinstance(value, list):
        return [_replaced(item, old, new) for item in value]
    if isinstance(value, dict):
        return {key: _replaced(item, old, new) for key, item in value.items()}
    return value


def stand_in(cio_id: str) -> str:
    return f"{FORGOTTEN}{cio_id}"


def _event_id(entry: JournalEntry) -> str | None:
    return _body(entry).get("id")


def _body(entry: JournalEntry) -> dict[str, Any]:
    body = jsonio.loads(entry.record).get("body", {})
    return body if isinstance(body, dict) else {}


def forget_purged(workspace: Workspace, purged: Sequence[tuple[str, str]]) -> None:
    """Rewrite the journal for purged events: each is kept as a stand-in with its id and
    time only (a nameless event of an anonymous id of its own, which no one is ever
    identified with), so `export` writes none of what was purged, yet a replay places it
    anonymous and purges it again, leaving the same tombstone."""
    ids = {event_id for event_id, _ in purged}
    anonymous_ids = sorted({anonymous_id for _, anonymous_id in purged if anonymous_id})
    rewrites = []
    for entry in workspace.journal_tracks(anonymous_ids):
        body = _body(entry)
        event_id = body.get("id")
        if event_id in ids:
            stand_in = Track(
                name=PURGED_NAME,
                anonymous_id=f"purged-{event_id}",
                timestamp=body.get("timestamp"),
                event_id=event_id,
            )
            rewrites.append(rewritten(entry.seq, stand_in))
    workspace.rewrite_journal(rewrites)


def identifiers_of(person: Person) -> list[str]:
    return [value for value in (person.id, person.email) if value]


def as_values(identifiers: Sequence[str]) -> list[str]:
    """Identifiers as they stand in JSON text, each a whole string value (so `bo` is not
    found in `body`), lower case: what finds the calls that carried them, in the journal
    (`_mentions`) and in the stored calls (`Workspace.erase_mentions`)."""
    return [jsonio.dumps(value).lower() for value in identifiers]


def _mentions(record: str, values: Sequence[str]) -> bool:
    """Whether a journal record holds one of `values` (made by `as_values`)."""
    text = record.lower()
    return any(value in text for value in values)


def forget_person(
    workspace: Workspace,
    now: datetime,
    person: Person,
    anonymous_ids: Sequence[str],
    invites: Sequence[str] = (),
) -> None:
    """Rewrite the journal for a person being deleted (before their events go), and
    journal the delete of their stand-in. Only the entries about them are read: the
    merges (to find who was merged into them), then what names them, their ids or their
    identifiers. `invites`: the invite events addressed to them, erased with them."""
    members = family(list(workspace.journal(merges_and=[])), person.cio_id)
    identifiers = identifiers_of(person)
    entries = list(
        workspace.journal(
            merges_and=sorted(members),
            anonymous_ids=anonymous_ids,
            mentioning=as_values(identifiers),
        )
    )
    erased = {*workspace.event_ids_of(person.cio_id), *invites}
    workspace.rewrite_journal(forget(entries, person.cio_id, erased, anonymous_ids, identifiers))
    journal(workspace, now, DeletePerson(stand_in(person.cio_id)), [person.cio_id])
