"""`serve`'s writer takes the plain tracks and identifies of the requests waiting for it
with replay's bulk path, and each other call alone between its runs (`Writer._bulk`):
the same requests, queued the same way, must leave the same workspace — every row of
every table —, the same record and the same answers as one call at a time, and only
the calls the bulk path cannot take may go to the service. The requests reach a real
server over HTTP and queue up behind a held writer, so that they are applied in
groups, in the order they were sent."""

from __future__ import annotations

import contextlib
import http.client
import json
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from cio_anon import server, service
from cio_anon.errors import InvalidInput
from cio_anon.ingest import Timed, Track
from cio_anon.replay import bulk
from cio_anon.replay.apply import Source
from cio_anon.server import writer
from cio_anon.server.writer import Job, Writer
from tests.test_batch import ROOT, numbered_event_ids, tables_of


class Request(NamedTuple):
    """A request to send, at its receive time."""

    at: datetime
    path: str
    body: Any
    strict: bool = False
    """Sent with `X-Strict-Mode: 1`: refused whole if any call of it is."""


def _traffic() -> list[Request]:
    """Session traffic and the hostile mix in batches of 20 (at the last message's
    receive time), with requests among them that have calls for the service."""
    sys.path.insert(0, str(ROOT / "bench"))
    from make_sessions import generate

    messages = list(generate("sessions", 1_500)) + list(generate("hostile", 900))
    for number, message in enumerate(messages):
        if number % 97 == 0:
            del message["messageId"]  # its event's id is made when it is stored
    requests: list[Request] = []
    for start in range(0, len(messages), 20):
        batch = messages[start : start + 20]
        at = datetime.fromisoformat(str(batch[-1]["receivedAt"]))
        requests.append(Request(at, "/v1/batch", {"batch": batch}))
    email, moved = {"email": "shared@example.com"}, {"email": "moved@example.com"}
    special: dict[int, tuple[str, Any]] = {
        10: ("/v1/batch", _batch(_identify("buyer-a", traits=email))),
        20: ("/v1/batch", _batch(_identify("buyer-b", traits=email))),  # someone else's
        30: ("/v1/batch", _batch(_identify("buyer-a", traits=moved))),  # for the service
        50: ("/v1/batch", _batch({"type": "group", "userId": "buyer-c", "groupId": "g"})),
        60: ("/v1/batch", _batch({"type": "alias", "userId": "buyer-d", "previousId": "old"})),
        70: ("/v1/batch", _batch(_track("x" * 120))),  # over the limit
        80: ("/v1/batch", {"batch": [{"type": "track"}, _track("Kept")]}),  # refused on the loop
        90: ("/v1/batch", _batch(_identify(None, traits={"plan": "pro"}))),  # anonymous traits
        95: ("/v1/batch", _batch(_track("Lost", "cio_0000ff"))),  # a cio_id naming no one
        100: ("/api/v1/customers/buyer-e/events", {"name": "Track API", "id": "v1-1"}),
    }
    at = requests[40].at
    for place in sorted(special):  # each at its place once those before it are in
        requests.insert(place, Request(at, *special[place]))
    return requests


def _batch(*messages: dict[str, Any]) -> dict[str, Any]:
    return {"batch": [_track("Before"), *messages, _track("After")]}


def _track(name: str, user: str = "buyer-f") -> dict[str, Any]:
    return {"type": "track", "event": name, "anonymousId": "device-x", "userId": user}


def _identify(user: str | None, traits: dict[str, Any]) -> dict[str, Any]:
    message = {"type": "identify", "anonymousId": f"device-{user or 'anon'}", "traits": traits}
    return message | ({"userId": user} if user else {})


@contextlib.contextmanager
def _held(writer: Writer) -> Iterator[threading.Event]:
    """The writer held by a query that waits: what is sent meanwhile queues up."""
    release, holding = threading.Event(), threading.Event()

    def hold(_: Any) -> None:
        holding.set()
        release.wait(30)

    writer.submit(Job(query=hold))
    assert holding.wait(10)
    try:
        yield release
    finally:
        release.set()


def served(
    folder: Path, requests: list[Request], monkeypatch: pytest.MonkeyPatch, in_bulk: bool
) -> tuple[dict[str, list[tuple[Any, ...]]], list[tuple[int, bytes]], bytes, list[Any]]:
    """Send the requests to a new server in groups of 64 queued behind a held writer;
    every table's rows, the answers, the record, and the calls the service took one at
    a time (with `in_bulk` False, the bulk path is never asked)."""
    folder.mkdir()
    numbered_event_ids(monkeypatch)
    alone: list[str] = []
    operation = Writer._operation

    def counted(self: Writer, timed: Timed, source: Source) -> Any:
        op = timed.operation
        alone.append(op.name if isinstance(op, Track) else type(op).__name__)
        return operation(self, timed, source)

    monkeypatch.setattr(Writer, "_operation", counted)
    if not in_bulk:
        monkeypatch.setattr(writer, "_in_bulk", lambda job: None)
    now = [requests[0].at]
    config = server.ServerConfig(db=folder / "served.db", port=0, record=folder / "record.ndjson")
    instance = server.Server(config, clock=lambda: now[0])
    threading.Thread(target=instance.serve_forever, daemon=True).start()
    answers: list[tuple[int, bytes]] = []
    try:
        for start in range(0, len(requests), 64):
            connections = []
            with _held(instance.writer):
                for number, request in enumerate(requests[start : start + 64], 1):
                    now[0] = request.at
                    connection = http.client.HTTPConnection("127.0.0.1", instance.port, timeout=30)
                    headers = {"Content-Type": "application/json"}
                    if request.strict:
                        headers["X-Strict-Mode"] = "1"
                    connection.request("POST", request.path, json.dumps(request.body), headers)
                    connections.append(connection)
                    _queued(instance.writer, number)
            for connection in connections:
                response = connection.getresponse()
                answers.append((response.status, response.read()))
                connection.close()
    finally:
        instance.shutdown()
    return tables_of(folder / "served.db"), answers, (folder / "record.ndjson").read_bytes(), alone


def _queued(writer: Writer, count: int) -> None:
    """Wait until `count` jobs wait behind the held writer."""
    deadline = time.monotonic() + 10
    while writer.jobs.qsize() < count:
        assert time.monotonic() < deadline, "a request never reached the writer"
        time.sleep(0.001)


def test_requests_in_bulk_leave_what_one_call_at_a_time_leaves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    requests = _traffic()
    with monkeypatch.context() as patched:
        tables, answers, record, alone = served(tmp_path / "bulk", requests, patched, True)
    with monkeypatch.context() as patched:
        one, one_answers, one_record, _ = served(tmp_path / "one", requests, patched, False)
    assert tables == one
    assert answers == one_answers
    assert record == one_record
    # the service took only the calls it must, one at a time: a known person's new email,
    # the group, the batch with a call over the limit (all of it), an anonymous identify's
    # traits, a track naming no one (refused, its batch's others stored)
    over = ["Before", "x" * 120, "After"]
    assert alone == ["Identify", "ObjectUpdate", *over, "AnonymousTraits", "Lost"]
    assert {status for status, _ in answers} == {200}  # as Data Pipelines answers batches
    refused = [json.loads(line) for line in record.splitlines() if b'"refused"' in line]
    assert [r["body"]["batch"][0].get("event") for r in refused] == ["x" * 120, None, "Lost"]
    assert len(tables["events"]) > 1_000 and len(tables["assignments"]) > 100
    assert any(row[1].startswith("billing-") for row in tables["people"])  # a track made them


@pytest.mark.parametrize("failing", ["request_calls", "apply_calls"])
def test_where_the_bulk_path_fails_each_job_is_applied_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    """The bulk path failing as it reads a job, or after it wrote (its writes undone):
    each job is applied alone, as if it had never been asked, with its own outcome."""
    requests = _traffic()
    requests = requests[:30]
    real = getattr(bulk, failing)

    def fails(*args: Any) -> Any:
        real(*args)
        raise TypeError("a fault the bulk path did not foresee")

    with monkeypatch.context() as patched:
        patched.setattr(bulk, failing, fails)
        tables, answers, record, alone = served(tmp_path / "bulk", requests, patched, True)
    with monkeypatch.context() as patched:
        one, one_answers, one_record, _ = served(tmp_path / "one", requests, patched, False)
    assert (tables, answers, record) == (one, one_answers, one_record)
    assert len(alone) > len(requests) and tables["events"]  # every call, one at a time


def test_a_strict_request_and_an_item_of_several_calls_stand_or_fall_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A strict request with a call the service refuses is refused whole, and a Track
    API v2 identify whose relationship is refused is not stored either: both taken a
    call at a time, not by the bulk path, which would have stored the calls it takes."""
    sessions = _traffic()[:5]
    at = sessions[-1].at
    strict = Request(at, "/v1/batch", _batch(_track("Lost", "cio_0000ff")), strict=True)
    related = {
        "type": "person",
        "action": "identify",
        "identifiers": {"id": "buyer-h"},
        "attributes": {"plan": "team"},
        "cio_relationships": [{"identifiers": {"object_type_id": "1", "object_id": "refused"}}],
    }
    event = {"type": "person", "action": "event", "identifiers": {"id": "buyer-h"}, "name": "E"}
    entities = Request(at, "/api/v2/batch", {"batch": [related, event]})
    requests = [*sessions, strict, entities]
    relate = service.relate

    def refusing(workspace: Any, now: datetime, op: Any) -> bool:
        if op.object_id == "refused":  # as if its attributes could not be stored
            raise InvalidInput("The relationship attributes cannot be stored as JSON.")
        return relate(workspace, now, op)

    found = []
    for name, in_bulk in (("bulk", True), ("one", False)):
        with monkeypatch.context() as patched:
            patched.setattr(service, "relate", refusing)
            found.append(served(tmp_path / name, requests, patched, in_bulk))
    (tables, answers, record, alone), (one, one_answers, one_record, _) = found
    assert (tables, answers, record) == (one, one_answers, one_record)
    assert [status for status, _ in answers[-2:]] == [400, 207]
    assert alone == ["Before", "Lost", "After", "Identify", "Relate", "E"]
    people = {row[1] for row in tables["people"]}
    assert "buyer-f" not in people and "buyer-h" in people  # by the event, not the identify
