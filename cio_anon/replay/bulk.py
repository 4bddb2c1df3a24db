"""Replay's bulk path: runs of plain tracks, pages, screens and identifies, applied with
their reads and their writes in bulk, leaving the workspace the service would leave.

A call is *plain* (`plain`) when it is a track (an event, a page or a screen) or an
identify that the service would take without a question. A record is read by the
reader the service uses (`fixtures.to_operations`): a bare Data Pipelines message, or a
recorded HTTP request (`serve --record`) — a Data Pipelines batch, one message posted to
its type's path, a Track API event or identify. A call is plain when it is a Track or
an Identify with a person named by id (not by email or cio_id) or an anonymous id, no
`_update`, `id` or `anonymous_id` trait, nothing over Customer.io's limits. That is what
sessions are made of: page views and screens, anonymous tracks, tracks naming a person
(known or created by the track), identifies that assign an id, repeat an assignment or
meet an id someone else holds, late events, retries.

A record whose calls are not all plain — and a plain call that meets a case the bulk
path leaves to the service (traits sent for the anonymous id, a suppression, merging
off, an email changing hands) — goes to the service, after what came before it is
written. A bare message goes whole. A recorded request whose calls are valid goes a
call at a time: a server SDK's batch of fifty messages with a `group` or an `alias` in
it has its other messages taken in bulk, and the service takes that one alone
(`Call.operation`). With --keep-going a request is refused or applied whole: there a
request with a call for the service is applied apart, the same way, inside a savepoint
of its own (`Service.whole`).

A run of plain calls (`CHUNK` at most) is applied in three steps: everything it reads
is read in a handful of queries (events with its message ids, the assignments of its
anonymous ids, its people, the pending events of the ids it identifies); the calls are
decided in order in memory by the same decisions the service makes (`rules.place_event`
for a track, `service.update_person` and `merge_pending` for an identify); what they changed
is written with one `executemany` per table. The differential tests
(tests/test_batch.py) hold the two paths to the same workspace, row by row.

`serve`'s writer takes the requests waiting for it the same way (`request_calls`,
`apply_calls`: tests/test_serve_bulk.py).
"""

from __future__ import annotations

import contextlib
import gc
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, Protocol

from cio_anon import jsonio, rules
from cio_anon.clock import parse_time, to_iso
from cio_anon.errors import CioAnonError
from cio_anon.ingest import Alias, Identify, Operation, Track
from cio_anon.ingest.emit import to_record, track_record
from cio_anon.ingest.fixtures import Record, iter_records, refused_when_recorded, to_operations
from cio_anon.models import Activity, ActivityType, Event, Person
from cio_anon.replay.apply import Heard, Source, Tally, alias_note
from cio_anon.rules import Assignment, Decision, IdentifierKind, Rule
from cio_anon.rules.identity import cio_id_of
from cio_anon.service.events import new_event_id, pending_warning
from cio_anon.service.people import (
    decided_warning,
    reassigned_warnings,
    unmerged_warnings,
    update_person,
)
from cio_anon.service.shared import (
    Warning,
    anon_merge_activity,
    journal_entry,
    merge_pending,
    recipient_in,
    settle,
)
from cio_anon.store import JournalRow, Workspace, journal_row

CHUNK = 20_000
"""Plain calls decided together: what they read is read in one go. Longer runs read an id
again less often (an id one run met is read again by the next run that meets it). A run
of 20,000 holds about 50 MB more than one of 2,000 did."""

FIRST_RUN = 2_500
"""The most calls of a file's first run; each run after may hold a quarter more
(`GROWTH`), up to `CHUNK`. A file read ahead (`ahead`) is applied from its first 2,500
calls on, not from its first 20,000 (a third of a second of waiting for the reader at
the start), and each run is short enough that the reader has the next one ready by the
time it is written (it reads about a third faster than the replay applies)."""

GROWTH = 1.25
"""How many times longer than the one before a run may be (see `FIRST_RUN`)."""

RUN_BYTES = 16 * 2**20
"""The most bytes of records a run holds, whatever their number: a chunk of large
records (event data may be 100 kB each) is written before it fills memory. Session
traffic, 300 bytes a record, never comes near it."""

AFTER_SERVICE = 256
"""The fewest calls a run reads for after one the service took (see `Batch.flush`)."""

YOUNG_OBJECTS = 1_000_000
"""New objects the cyclic garbage collector lets pass before it looks, while a replay
takes the bulk path (700 by default): see `fewer_collections`."""


@contextlib.contextmanager
def fewer_collections() -> Iterator[None]:
    """Let the cyclic garbage collector look far less often while the bulk path runs. A
    run keeps its calls, events, rows and journal records alive until it is written —
    hundreds of thousands of objects, with no cycles among them — and at the default
    threshold the collector walks them again and again (and, as they pile up, every
    object of the process). Reference counting frees them as before; cycles, if any,
    are still collected, a million allocations apart."""
    threshold = gc.get_threshold()
    gc.set_threshold(YOUNG_OBJECTS, *threshold[1:])
    try:
        yield
    finally:
        gc.set_threshold(*threshold)


@dataclass(slots=True)
class Call:
    """A plain track (an event, a page or a screen) or identify, read and checked."""

    record: Record
    """Its record, its value let go while the call is held (`plain_records`)."""
    at: datetime
    identify: bool
    user_id: str | None
    anonymous_id: str | None
    message_id: str | None
    name: str = ""
    type: str = "event"
    """A track's type: event, page or screen."""
    data: dict[str, Any] = field(default_factory=dict)
    data_json: str = "{}"
    happened: datetime | None = None
    traits: dict[str, Any] = field(default_factory=dict)
    part: int = 0
    """Its place among its record's calls (a recorded request may carry many)."""
    recipient: str | None = None
    """A track's recipient (`recipient_in` its data)."""
    journal: str | None = None
    """Its journal record as JSON: an identify's always, a track's when it names its
    event (a messageId); made where the call is read (`plain`)."""
    operation: Operation | None = None
    """The call's operation when it is not plain (one message of a recorded request
    whose others are): the service takes it alone (`Batch`), but an alias, whose note
    a run makes itself."""
    said: Track | Identify | None = None
    """A plain call's operation, as read, when the replay's listener is to be told it
    (`plain`'s `said`)."""


def packed(call: Call, said: bool = False) -> tuple[Any, ...]:
    """The call's fields after its record, in order: `Call(record, *packed(call))` makes
    it again (a second process sends calls so: see `ahead`); its operation as read only
    with `said` (a dataclass, slower to send)."""
    fields = (
        call.at,
        call.identify,
        call.user_id,
        call.anonymous_id,
        call.message_id,
        call.name,
        call.type,
        call.data,
        call.data_json,
        call.happened,
        call.traits,
        call.part,
        call.recipient,
        call.journal,
        call.operation,
    )
    return (*fields, call.said) if said else fields


def plain_records(path: Path, said: bool = False) -> Iterator[tuple[Record, list[Call] | None]]:
    """The file's records, each with its calls when it is plain (`plain`, told `said`): a
    plain record's value is let go (`Record.let_go`), since its calls carry what is
    needed."""
    for record in iter_records(path):
        calls = plain(record, said)
        if calls is not None:
            record.let_go()
        yield record, calls


def plain(record: Record, said: bool = False) -> list[Call] | None:
    """The record's calls, when it has a plain one; None when the service must take it
    whole: when it is invalid, was refused when recorded (`fixtures.REFUSED`), has no
    plain call, or is one call that is not. A recorded HTTP request (`method`, `path`)
    is the calls it carries — a Data Pipelines batch its messages, all at the request's
    receive time —, each one not plain carrying its `operation` for the service. The
    record is read as the service reads it (`fixtures.to_operations`). With `said` a
    plain call keeps its operation (`Call.said`)."""
    value = record.value
    if record.error is not None or not isinstance(value, dict) or "op" in value:
        return None  # a control record
    if refused_when_recorded(value) is not None:
        return None  # refused when recorded: listed, or (check) judged again, apart
    if value.get("type") not in _PLAIN_TYPES and "method" not in value and "path" not in value:
        return None  # a cheap look first: another message type
    try:  # (EPOCH: for control records)
        calls = request_calls(record, to_operations(value, EPOCH), said)
    except CioAnonError:
        return None
    others = sum(call.operation is not None for call in calls)
    if others == len(calls) or (others and len(calls) == 1):
        return None
    return calls


def request_calls(
    record: Record, operations: Iterable[tuple[datetime, Operation]], said: bool = False
) -> list[Call]:
    """The calls of one record's operations (each at its receive time), in order and
    numbered (`Call.part`): each plain, or carrying its `operation` when it is not (told
    `said`, a plain call keeps its operation as read too). Raises when a call breaks one
    of Customer.io's limits (the service refuses it)."""
    calls: list[Call] = []
    for at, operation in operations:
        call = None
        if type(operation) is Track:
            call = _track(record, at, operation)
            if call is not None and said:
                call.said = operation
        elif type(operation) is Identify:
            call = _identify(record, at, operation)
            if call is not None and said:
                call.said = operation
        if call is None:
            call = Call(record, at, False, None, None, None, operation=operation)
        calls.append(call)
    for part, call in enumerate(calls[1:], 1):
        call.part = part
    return calls


_PLAIN_TYPES = ("track", "page", "screen", "identify")
"""The message types a plain call has (a group or an alias is the service's). A tuple:
`type` may be any JSON value, a list too, which a set could not be asked about."""

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
"""What `to_operations` is told came before: only a control record (never plain) reads
it."""


def _track(record: Record, at: datetime, track: Track) -> Call | None:
    if track.person is None and track.anonymous_id is None:
        return None  # an invite (the Track API's event for no one): the service's
    if track.person is not None and not _by_id(track.person):
        return None
    for text in (track.person, track.anonymous_id, track.event_id):
        if text is not None:
            rules.check_identifier_limit(text)
    data = dict(track.data)
    try:
        data_json = jsonio.dumps(data)
    except TypeError:
        return None
    rules.check_event_limits(track.name, data_json)
    stamp = track.timestamp
    happened = at if stamp is None else parse_time(stamp, what="event timestamp")
    call = Call(
        record,
        at,
        identify=False,
        user_id=track.person,
        anonymous_id=track.anonymous_id,
        message_id=track.event_id,
        name=track.name,
        type=track.type,
        data=data,
        data_json=data_json,
        happened=happened,
        recipient=recipient_in(data),
    )
    if call.message_id:  # else its event's id is made when it is stored (`_Run._track`)
        call.journal = _journal(call, call.message_id)
    return call


def _journal(call: Call, event_id: str) -> str:
    """A track's journal record as JSON: the `Track` the service journals for it."""
    assert call.happened is not None
    record = track_record(
        call.name,
        call.user_id,
        call.anonymous_id,
        call.type,
        call.data,
        to_iso(call.happened),
        event_id,
    )
    return jsonio.dumps(record)


def _identify(record: Record, at: datetime, identify: Identify) -> Call | None:
    traits = identify.attributes
    if not _by_id(identify.identifier) or not _PLAIN_TRAITS.isdisjoint(traits):
        return None
    for text in (identify.identifier, identify.anonymous_id, identify.message_id):
        if text is not None:
            rules.check_identifier_limit(text)
    if "email" in traits:
        email = traits["email"]
        if not isinstance(email, str) or not email.strip():
            return None
        rules.check_identifier_limit(email.strip())
    call = Call(
        record,
        at,
        identify=True,
        user_id=identify.identifier,
        anonymous_id=identify.anonymous_id,
        message_id=identify.message_id,
        traits=dict(traits),
    )
    rules.check_attribute_limits(_updates(call))
    said = Identify(identify.identifier, call.traits, identify.anonymous_id, identify.message_id)
    call.journal = jsonio.dumps(to_record(said))
    return call


_PLAIN_TRAITS = frozenset({"_update", "id", "anonymous_id"})
"""Traits the service reads as instructions (an update-only call, a new id, an
anonymous id given as a trait): the service takes them."""


def _by_id(identifier: str) -> bool:
    """Whether a call names its person by id (not by email or cio_id)."""
    return rules.resolve_identifier(identifier)[0] is IdentifierKind.ID


def _updates(call: Call) -> dict[str, Any]:
    """The attributes an identify sets: its traits, and the anonymous id it assigns."""
    updates = dict(call.traits)
    if call.anonymous_id is not None:
        updates["anonymous_id"] = call.anonymous_id
    return updates


class Service(Protocol):
    """What the bulk path leaves to the service, and tells it (replay's `_File`)."""

    keep_going: bool
    """Whether a record is applied or refused whole (then listed), the replay going on."""

    @property
    def listening(self) -> bool:
        """Whether each plain call is told with what it did (`tell`)."""

    def alone(self, call: Call, tally: Tally) -> None:
        """Apply one call of a recorded request through the service, alone, counting
        into `tally`; raises when the service refuses it."""

    def whole(self, record: Record, body: Callable[[Tally], object]) -> bool:
        """With --keep-going: run `body` (which applies the record) so that the record
        is applied or refused whole, counting into the tally it is given; whether it
        was applied."""

    def applied(self, at: datetime | None) -> None:
        """Told of each record once it is applied, with its receive time."""

    def tell(self, source: Source, call: Track | Identify, heard: Heard) -> None:
        """Told of each plain call once it is written, in order, with what it did (when
        `listening`)."""


class Batch:
    """Plain calls of one file, held until `flush` (or `run_size` of them, or `RUN_BYTES` of
    records) applies them. A record's calls are held together; a run ends inside a
    recorded request only where the service takes a call of it alone (with --keep-going,
    never: such a request is applied apart, `_request`)."""

    def __init__(self, workspace: Workspace, file: str, tally: Tally, service: Service) -> None:
        self.workspace = workspace
        self.file = file
        self.tally = tally
        self.service = service
        self.calls: list[Call] = []
        self.held = 0
        """The bytes of the records held."""
        self.run_size = min(FIRST_RUN, CHUNK)
        """The calls held before they are applied (`FIRST_RUN`, growing to `CHUNK`)."""

    def take(self, record: Record, calls: list[Call] | None) -> datetime | None:
        """Hold the record's calls if it is plain (`plain_records`); their receive time,
        or None when the service must take the record."""
        if calls is None:
            return None
        self.calls += calls
        self.held += record.size
        if len(self.calls) >= self.run_size or self.held >= RUN_BYTES:
            self.flush()
        return calls[0].at

    def flush(self) -> None:
        """Apply the calls held; one the bulk path leaves to the service goes through
        `Service.alone` once those before it are written. A run ends before the next
        call `plain` left to the service (`Call.operation`), and reads for all the calls
        it may reach; after a call it could not take, the next reaches twice as far as
        that run got (`AFTER_SERVICE` at least), then twice as far again while none is
        left to the service: traffic that keeps meeting such calls reads for about as
        many calls as it applies, not a whole chunk each time.

        With --keep-going a recorded request is applied or refused whole, so a run ends
        before a request with a call for the service (a run that stops inside one it
        began is decided again without it), and that request is applied apart
        (`_request`)."""
        calls, self.calls, self.held = self.calls, [], 0
        if calls:  # (the replay flushes before every record the service takes, held or not)
            self.run_size = min(int(self.run_size * GROWTH) + 1, CHUNK)
        whole = self.service.keep_going
        reach = len(calls)
        while calls:
            reached = _request_end(calls, min(reach, len(calls)))
            ahead = _operation_before(calls, reached)
            end = ahead - calls[ahead].part if whole and ahead < reached else ahead
            first = self._run(calls, end, whole, self.tally) if end else 0
            self._applied(calls, 0, first)
            if first == end and ahead == reached:  # all it reached is written
                calls = calls[end:]
                reach *= 2
                continue
            if whole:  # the request that begins there, applied apart
                stop = _request_end(calls, first + 1)
                request = calls[first:stop]
                if self.service.whole(request[0].record, partial(self._request, request)):
                    self.service.applied(request[0].at)
                calls = calls[stop:]
            else:
                self.service.alone(calls[first], self.tally)
                self._applied(calls, first, first + 1)
                calls = calls[first + 1 :]
            if first < end:  # a call the run met a case of the service's in
                reach = max(2 * first, AFTER_SERVICE)

    def _request(self, calls: list[Call], tally: Tally) -> None:
        """Apply one recorded request's calls (with --keep-going, inside
        `Service.whole`): its plain calls in bulk, the others by the service alone."""
        in_runs(
            calls,
            lambda run: self._run(run, len(run), False, tally),
            lambda place: self.service.alone(calls[place], tally),
        )

    def _applied(self, calls: list[Call], start: int, stop: int) -> None:
        """Tell of the records whose last call is among `calls[start:stop]`, just
        applied."""
        for index in range(start, stop):
            if index + 1 == len(calls) or not calls[index + 1].part:
                self.service.applied(calls[index].at)

    def _run(self, calls: list[Call], end: int, whole: bool, tally: Tally) -> int:
        """Decide and write the calls before `end` up to the first the bulk path cannot
        take (with `whole`, up to the request that call belongs to), counting into
        `tally`; how many were written."""
        run, first = _decided(self.workspace, calls[:end], self.file, whole, self.service.listening)
        run.write()
        tally.add(run.tally)
        for call, heard in run.heard or ():
            assert call.said is not None  # (a replay with a listener reads them `said`)
            self.service.tell(Source(self.file, call.record.line), call.said, heard)
        return first


def apply_calls(workspace: Workspace, calls: list[Call], file: str) -> int:
    """Apply plain calls (`request_calls`, none left to the service) in bulk, up to the
    first that meets a case the bulk path leaves to the service (`serve`'s writer gives
    that one to the service alone); how many were written."""
    run, first = _decided(workspace, calls, file, False)
    run.write()
    return first


def _decided(
    workspace: Workspace, calls: list[Call], file: str, whole: bool, listening: bool = False
) -> tuple[_Run, int]:
    """The calls decided, up to the first the bulk path cannot take (with `whole`, up to
    the request that call belongs to), not yet written; how many that is."""
    run = _Run(workspace, calls, file, listening)
    done = run.apply()
    first = done - calls[done].part if whole and done < len(calls) else done
    if first < done:  # nothing is written before `write`: decide the part before
        run = _Run(workspace, calls[:first], file, listening)
        run.apply()
    return run, first


def in_runs(
    calls: list[Call], run: Callable[[list[Call]], int], alone: Callable[[int], None]
) -> None:
    """Apply calls in order: each stretch of plain calls by `run` (in bulk: how many it
    wrote, stopping at one it cannot take), and each call the bulk path leaves to the
    service, or could not take, by `alone`, given its place in `calls`."""
    start = 0
    while start < len(calls):
        end = _operation_before(calls, len(calls), start)
        if end > start:
            start += run(calls[start:end])
        if start < len(calls):
            alone(start)
            start += 1


def _operation_before(calls: list[Call], end: int, start: int = 0) -> int:
    """The place of the first call from `start` before `end` that `plain` left to the
    service, or `end`."""
    for index in range(start, end):
        if for_service(calls[index]):
            return index
    return end


def for_service(call: Call) -> bool:
    """Whether `plain` left the call to the service: one with an `operation`, but an
    alias, whose note a run makes itself."""
    return call.operation is not None and type(call.operation) is not Alias


def _request_end(calls: list[Call], index: int) -> int:
    """Where the request that `calls[index - 1]` belongs to ends (`index` itself when a
    new record begins there)."""
    while index < len(calls) and calls[index].part:
        index += 1
    return index


class _Run:
    """The state a run of calls reads, read in bulk, and what they change, in memory."""

    def __init__(
        self, workspace: Workspace, calls: list[Call], file: str, listening: bool = False
    ) -> None:
        self.workspace = workspace
        self.calls = calls
        self.file = file
        self.tally = Tally()
        """What the run did, added to the file's when it is written."""
        settings = workspace.settings()
        self.merge_enabled = settings.anonymous_merge
        self.suppressions = workspace.any_suppressed()
        tracks = [c for c in calls if not c.identify]
        identifies = [c for c in calls if c.identify]
        self.known = workspace.known_event_ids([c.message_id for c in tracks if c.message_id])
        anonymous = {c.anonymous_id for c in calls if c.anonymous_id is not None}
        self.assignments: dict[str, Assignment] = workspace.assignments_for(sorted(anonymous))
        named = sorted({c.user_id for c in calls if c.user_id is not None})
        self.people = workspace.people_by(IdentifierKind.ID, named)
        emails = {
            rules.email_key(c.traits["email"])
            for c in identifies
            if isinstance(c.traits.get("email"), str)
        }
        self.holders = {
            key: person.cio_id
            for key, person in workspace.people_by(IdentifierKind.EMAIL, sorted(emails)).items()
        }
        self.handled = workspace.handled_among([c.message_id for c in identifies if c.message_id])
        identified = sorted({c.anonymous_id for c in identifies if c.anonymous_id is not None})
        self.profiled = workspace.with_anonymous_traits(identified)
        self.stored_pending = workspace.pending_of(
            [a for a in identified if a not in self.assignments]
        )
        self.stayed: dict[str, Counter[Rule]] = workspace.pending_rules_of(
            [a for a in identified if a in self.assignments]
        )
        """The rules under which an assigned id's earlier events stayed anonymous (an
        identify that names the id again says them)."""
        self.waiting: dict[str, list[Event]] = {}
        """This run's events that are still anonymous, by anonymous id."""
        self.created: int | None = None
        # what the run changed, written by `write`
        self.events: list[tuple[Event, str]] = []
        self.attached: list[Event] = []
        self.decided: list[tuple[str, Rule]] = []
        self.saved: dict[str, Person] = {}
        self.assigned: list[Assignment] = []
        self.activities: list[Activity] = []
        self.marked: list[tuple[str, datetime]] = []
        self.journal: list[JournalRow] = []
        self.heard: list[tuple[Call, Heard]] | None = [] if listening else None
        """What each call did, when a listener is told (`Service.tell`)."""

    def apply(self) -> int:
        """Apply calls in order; the index of the first the service must take (or all).
        A run holds no call `plain` left to the service: it ends before the next one
        (`_operation_before`)."""
        for index, call in enumerate(self.calls):
            if type(call.operation) is Alias:  # all it does: a note (`apply.alias_note`)
                self.tally.notes.append(
                    alias_note(Source(self.file, call.record.line), call.operation)
                )
                continue
            taken = self._identify(call) if call.identify else self._track(call)
            if not taken:
                return index
        return len(self.calls)

    def write(self) -> None:
        workspace = self.workspace
        workspace.insert_events(self.events)
        workspace.attach_events(self.attached)
        workspace.record_rules(self.decided)
        workspace.save_people(self.saved.values())
        workspace.add_assignments(self.assigned)
        workspace.add_activities(self.activities)
        workspace.mark_messages(self.marked)
        if self.created is not None:
            workspace.set_people_created(self.created)
        workspace.add_journal_rows(self.journal)

    # -- track --------------------------------------------------------------------------

    def _track(self, call: Call) -> bool:
        """Apply a plain track (creating its person, as the APIs do, if unknown); False
        when the service must (a person to create while suppressions exist)."""
        at, happened = call.at, call.happened
        assert happened is not None
        owner = None
        if call.user_id is not None:
            owner = self.people.get(call.user_id)
            if owner is None:
                if self.suppressions:
                    return False  # the service refuses a suppressed identifier
                owner = self._create(call.user_id, at)
        event = Event(
            event_id=call.message_id or new_event_id(at),
            name=call.name,
            type=call.type,
            data=call.data,
            timestamp=happened,
            received_at=at,
            rule=Rule.INVITE,
            anonymous_id=call.anonymous_id,
            recipient=call.recipient,
            source=Source.text(self.file, call.record.line),
        )
        if event.event_id in self.known:
            self.tally.duplicates += 1
            self.tally.warnings[str(Rule.DUPLICATE)] += 1
            if self.heard is not None:
                self.heard.append((call, Heard(stored=False)))
            return True
        self.known.add(event.event_id)
        anonymous_id = call.anonymous_id
        assignment = None if anonymous_id is None else self.assignments.get(anonymous_id)
        placed = rules.place_event(
            owner=None if owner is None else owner.cio_id,
            anonymous_id=anonymous_id,
            assignment=assignment,
            merge_enabled=self.merge_enabled,
            timestamp=happened,
            received_at=at,
        )
        settle(event, placed)
        warned: tuple[Warning, ...] = ()
        if placed.merged_at is not None:
            assert placed.cio_id is not None and anonymous_id is not None
            merge = anon_merge_activity(placed.cio_id, anonymous_id, [happened], placed.merged_at)
            self.activities.append(merge)
            self.tally.merged += 1
        elif owner is None:
            assert anonymous_id is not None
            if placed.rule is not Rule.ANONYMOUS:
                self.tally.warnings[str(placed.rule)] += 1
                if self.heard is not None:  # (its sentence is made only to be told)
                    warned = (pending_warning(event, assignment, self.merge_enabled),)
            self.waiting.setdefault(anonymous_id, []).append(event)
        self.events.append((event, call.data_json))
        self.tally.stored += 1
        record = call.journal or _journal(call, event.event_id)  # (`plain` made a named one's)
        people = [event.cio_id] if event.cio_id else []
        self.journal.append(journal_row(at, Track.__name__, record, people, anonymous_id))
        if self.heard is not None:
            self.heard.append((call, Heard(True, warned)))
        return True

    # -- identify -----------------------------------------------------------------------

    def _identify(self, call: Call) -> bool:
        at, anonymous_id = call.at, call.anonymous_id
        assert call.user_id is not None
        if call.message_id is not None and call.message_id in self.handled:
            self.tally.duplicates += 1
            return True
        if self.suppressions or (anonymous_id is not None and anonymous_id in self.profiled):
            return False
        person = self.people.get(call.user_id)
        decision = None
        if anonymous_id is not None:
            # the service's decision (`service.people.assign`); merging off is left to it
            decision = rules.decide_assignment(
                anonymous_id=anonymous_id,
                cio_id="" if person is None else person.cio_id,  # a new person: no claim yet
                existing=self.assignments.get(anonymous_id),
                merge_enabled=self.merge_enabled,
                now=at,
            )
            if decision.rule is Rule.MERGE_DISABLED:
                return False
        email = call.traits.get("email")  # a string with text, or absent (see `plain`)
        if person is not None and email is not None and person.email not in (None, email.strip()):
            return False  # an email changing: the service saves the one who gave it up first
        created = person is None
        if person is None:
            person = self._new_person(call.user_id, at)
        update = update_person(self._holder, person, _updates(call), at)
        if person.email is not None:
            self.holders[rules.email_key(person.email)] = person.cio_id
        activities = (
            [Activity(person.cio_id, ActivityType.PROFILE_CREATE, at, {})] if created else []
        )
        activities += update.activities
        warnings: list[Warning] = []
        if decision is not None and anonymous_id is not None:
            if decision.facts.get("newly_assigned"):
                merge, warnings = self._assign(person.cio_id, anonymous_id, at)
                activities += merge
            else:
                warnings = self._assigned_before(decision, anonymous_id)
            self.tally.warnings.update(str(w.rule) for w in warnings)
        person.updated_at = at
        self.saved[person.cio_id] = person
        self.activities += activities
        if call.message_id is not None:
            self.handled.add(call.message_id)
            self.marked.append((call.message_id, at))
        assert call.journal is not None  # (`plain` made it)
        self.journal.append(
            journal_row(at, Identify.__name__, call.journal, [person.cio_id], anonymous_id)
        )
        self.tally.people_created += created
        if self.heard is not None:
            self.heard.append((call, Heard(True, tuple(warnings), tuple(update.failed))))
        return True

    def _assign(
        self, cio_id: str, anonymous_id: str, at: datetime
    ) -> tuple[list[Activity], list[Warning]]:
        """Assign a new anonymous id to a person and merge its pending events: the
        activity that records the merge, if any did, and the warnings of those that did
        not."""
        assignment = Assignment(anonymous_id, cio_id, at)
        self.assignments[anonymous_id] = assignment
        self.assigned.append(assignment)
        stored = self.stored_pending.pop(anonymous_id, [])
        merged, stayed = merge_pending(stored + self.waiting.pop(anonymous_id, []), assignment, at)
        for event in stored:  # this run's own events are written as they are now
            if event.cio_id is None:
                self.decided.append((event.event_id, event.rule))
            else:
                self.attached.append(event)
        self.tally.merged += len(merged)
        self.stayed[anonymous_id] = Counter(e.rule for e in stayed)
        warnings = unmerged_warnings(anonymous_id, self.stayed[anonymous_id])
        if not merged:
            return [], warnings
        times = [e.timestamp for e in merged]
        return [anon_merge_activity(cio_id, anonymous_id, times, at)], warnings

    def _assigned_before(self, decision: Decision, anonymous_id: str) -> list[Warning]:
        """The warnings of an identify whose anonymous id was assigned before: taken by
        someone else, or this person's already (then one for each rule its pending
        events stayed under), as `service.people.assign` says them."""
        if decision.rule is Rule.ANONYMOUS_ID_TAKEN:
            return [decided_warning(decision)]
        stayed, waiting = self.stayed.get(anonymous_id), self.waiting.get(anonymous_id)
        if not stayed and not waiting:
            return []  # nothing pending: no warning (most identifies repeating one)
        pending = (stayed or Counter()) + Counter(event.rule for event in waiting or ())
        return reassigned_warnings(anonymous_id, pending)

    def _new_person(self, user_id: str, at: datetime) -> Person:
        person = Person(self._next_cio_id(), user_id, None, {}, at, at)
        self.people[user_id] = person
        return person

    def _create(self, user_id: str, at: datetime) -> Person:
        """Create the person a track names, as `service.events.find_or_create` does: an
        identify that sets nothing."""
        person = self._new_person(user_id, at)
        self.saved[person.cio_id] = person
        self.activities.append(Activity(person.cio_id, ActivityType.PROFILE_CREATE, at, {}))
        self.journal.append(
            journal_entry(at, Identify(user_id, {}, None, None), [person.cio_id], None)
        )
        self.tally.people_created += 1
        return person

    def _holder(self, kind: IdentifierKind, value: str) -> str | None:
        if kind is IdentifierKind.EMAIL:
            return self.holders.get(rules.email_key(value))
        person = self.people.get(value)
        return None if person is None else person.cio_id

    def _next_cio_id(self) -> str:
        if self.created is None:
            self.created = self.workspace.people_created()
        self.created += 1
        return cio_id_of(self.created)
