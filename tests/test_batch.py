"""Replay's bulk path (`batch`) against the service, one call at a time: the same
files replayed both ways must leave the same workspace — every row of every table —
and the same summary, and tell a listener (`check`'s) the same of every call. Bundled
fixtures, the benchmark's traffic, and Hypothesis streams with out-of-order arrival,
duplicates, re-identifies, emails that clash, merging off and on, purges, profile
merges, deletes, suppressions and invalid records."""

from __future__ import annotations

import contextlib
import gc
import itertools
import json
import re
import sqlite3
import sys
from collections.abc import Iterator
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cio_anon import service
from cio_anon.ingest import Identify, Track
from cio_anon.replay import bulk as batch
from cio_anon.replay import files as replay_module
from cio_anon.replay import replay
from cio_anon.replay.apply import Heard, Source
from cio_anon.service import events
from cio_anon.store import remove_workspace_files

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 12, 1, tzinfo=UTC)
BASE = 1_772_000_000
FIXTURES = sorted(p for p in (ROOT / "fixtures").iterdir() if p.suffix in (".ndjson", ".json"))


def replayed(
    db: Path,
    files: list[Path],
    bulk: bool,
    monkeypatch: pytest.MonkeyPatch,
    keep_going: bool = False,
    heard: list[tuple[Source, Track | Identify, Heard]] | None = None,
) -> tuple[dict[str, list[tuple[Any, ...]]], dict[str, Any]]:
    """Every table's rows after replaying `files` into a new workspace, and the summary;
    `heard`, when given, gathers what a listener is told. Event ids made up for events
    without one are numbered, and renumbered in the order they appear (`renumbered`), so
    both ways agree. The workspace is new (Hypothesis runs a failing example again in
    the same folder)."""
    remove_workspace_files(db)
    numbered_event_ids(monkeypatch)
    listener = None if heard is None else lambda *call: heard.append(call)
    with service.opened(db, NOW, write=True) as workspace:
        summary = replay(workspace, NOW, files, bulk=bulk, keep_going=keep_going, listener=listener)
    return tables_of(db), asdict(summary)


def numbered_event_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    """Event ids made up for events without one (by the service or the bulk path) are
    numbered from E000001 on, so that two ways of applying the same calls can agree."""
    numbers = itertools.count(1)
    made_up = lambda now: f"E{next(numbers):06d}"  # noqa: E731
    monkeypatch.setattr(events, "new_event_id", made_up)
    monkeypatch.setattr(batch, "new_event_id", made_up)


def tables_of(db: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every table's rows of the workspace `db`, in the order they were written, the
    made-up event ids renumbered (`renumbered`)."""
    conn = sqlite3.connect(db)
    names = [
        row[0]
        for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY 1")
    ]
    tables = {
        name: conn.execute(f"SELECT * FROM {name} ORDER BY rowid").fetchall() for name in names
    }
    conn.close()
    return renumbered(tables)


MADE_UP = re.compile(r"(?<!\w)E\d{6}(?!\w)")
"""An event id `replayed` made up."""


def renumbered(tables: dict[str, list[tuple[Any, ...]]]) -> dict[str, list[tuple[Any, ...]]]:
    """The tables with each made-up event id numbered again in the order the ids first
    appear (tables by name, rows in order), wherever they appear (the journal's records
    hold them too). In use a made-up id is a random ULID; here both ways count them, and
    the bulk path makes one up again for a track it decides again (a run that stops
    inside a recorded request is decided again up to it, and the service then takes the
    request), so the same event may get another number."""
    order: dict[str, str] = {}
    for name in sorted(tables):
        for row in tables[name]:
            for value in row:
                for found in MADE_UP.findall(value) if isinstance(value, str) else ():
                    order.setdefault(found, f"E{len(order) + 1:06d}")
    again = lambda value: (  # noqa: E731
        MADE_UP.sub(lambda found: order[found.group()], value) if isinstance(value, str) else value
    )
    return {name: [tuple(map(again, row)) for row in rows] for name, rows in tables.items()}


def assert_same_both_ways(
    tmp_path: Path, files: list[Path], monkeypatch: pytest.MonkeyPatch, keep_going: bool = False
) -> dict[str, list[tuple[Any, ...]]]:
    """The bulk path leaves what the service leaves, and, with a listener, tells it what
    the service tells (and leaves the same again)."""
    heard: list[tuple[Source, Track | Identify, Heard]] = []
    told: list[tuple[Source, Track | Identify, Heard]] = []
    one_by_one, expected = replayed(
        tmp_path / "service.db", files, False, monkeypatch, keep_going, told
    )
    for listening in (None, heard):
        tables, summary = replayed(
            tmp_path / "bulk.db", files, True, monkeypatch, keep_going, listening
        )
        assert summary == expected
        assert tables.keys() == one_by_one.keys()
        for name in tables:
            assert tables[name] == one_by_one[name], name
    assert heard == told
    (tmp_path / "bulk.db").unlink()
    (tmp_path / "service.db").unlink()
    return tables


def write(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return path


@pytest.mark.parametrize("fixture", FIXTURES, ids=[p.name for p in FIXTURES])
def test_each_bundled_fixture(
    tmp_path: Path, fixture: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert_same_both_ways(tmp_path, [fixture], monkeypatch)


def test_all_bundled_fixtures_into_one_workspace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tables = assert_same_both_ways(tmp_path, FIXTURES, monkeypatch)
    assert len(tables["events"]) > 20 and len(tables["journal"]) > 80


def test_the_benchmark_traffic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """30,000 records of the replay benchmark, profile merges included, in two files
    (the second's anonymous ids meet the first's assignments and pending events). Every
    Data Pipelines record of it is plain, and none is left to the service after all."""
    sys.path.insert(0, str(ROOT / "bench"))
    from make_fixture import records as generated

    records = generated(30_000, seed=11)
    files = [
        write(tmp_path / "one.ndjson", records[:17_000]),
        write(tmp_path / "two.ndjson", records[17_000:]),
    ]
    assert_all_taken_in_bulk(tmp_path, files, monkeypatch)
    tables = assert_same_both_ways(tmp_path, files, monkeypatch)
    rules_seen = {row[12] for row in tables["events"]}
    assert {"anonymous", "merged_on_identify", "window_closed", "campaign_eligible"} <= rules_seen


@contextlib.contextmanager
def watched(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[list[int], list[Any]]]:
    """How many calls each run of the bulk path is made with, and what it leaves to the
    service after all while the block runs: a call of a recorded request alone (as
    `(record, part)`), and with --keep-going the request it applies apart (its record)."""
    runs: list[int] = []
    left: list[Any] = []
    with monkeypatch.context() as patched:
        start, whole = batch._Run.__init__, replay_module._File.whole
        alone = replay_module._File.alone

        def counting(run: Any, workspace: Any, calls: list[batch.Call], *rest: Any) -> None:
            runs.append(len(calls))
            start(run, workspace, calls, *rest)

        patched.setattr(batch._Run, "__init__", counting)
        patched.setattr(
            replay_module._File, "whole", lambda self, r, b: left.append(r) or whole(self, r, b)
        )
        patched.setattr(
            replay_module._File,
            "alone",
            lambda self, c, t: left.append((c.record, c.part)) or alone(self, c, t),
        )
        yield runs, left


def replay_once(db: Path, files: list[Path], keep_going: bool = False) -> None:
    with service.opened(db, NOW, write=True) as workspace:
        replay(workspace, NOW, files, keep_going=keep_going)
    db.unlink()


def assert_all_taken_in_bulk(
    tmp_path: Path, files: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every Data Pipelines record of `files` is plain, and the bulk path leaves none of
    them to the service (replayed in a workspace of their own)."""
    taken: list[batch.Call] = []
    with watched(monkeypatch) as (_, left), monkeypatch.context() as patched:
        plain = batch.plain

        def counted(record: Any, said: bool) -> list[batch.Call] | None:
            calls = plain(record, said)
            taken.extend(calls or [])
            return calls

        patched.setattr(batch, "plain", counted)
        replay_once(tmp_path / "count.db", files)
    messages = sum(_messages(json.loads(line)) for f in files for line in f.open())
    assert len(taken) == messages and left == []


@pytest.mark.parametrize("shape", ["sessions", "hostile"])
def test_session_and_hostile_traffic(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shape: str
) -> None:
    """The benchmark's session traffic (identified events naming both ids, logins
    repeated, reset() and a later login, shared browsers, tracks creating their person,
    late app events, retries) and its hostile mix (ids reused by others, events long
    after the window, identifies repeated): all in bulk, every row as the service's."""
    sys.path.insert(0, str(ROOT / "bench"))
    from make_sessions import generate

    records = list(generate(shape, 12_000))
    files = [
        write(tmp_path / "one.ndjson", records[:7_000]),
        write(tmp_path / "two.ndjson", records[7_000:]),
    ]
    assert_all_taken_in_bulk(tmp_path, files, monkeypatch)
    with monkeypatch.context() as patched:
        patched.setattr(batch, "CHUNK", 500)  # more runs, each meeting the last's writes
        tables = assert_same_both_ways(tmp_path, files, patched)
    identifies = [r for r in records if r["type"] == "identify"]
    pairs = {(r["anonymousId"], r["userId"]) for r in identifies}
    assert len(tables["assignments"]) < len(pairs) < len(identifies)  # ids taken, logins again
    if shape == "sessions":  # people a server-side track created
        assert any(row[1].startswith("billing-") for row in tables["people"])


def test_chunks_end_where_the_service_takes_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More plain calls than one chunk holds, with calls the bulk path leaves to the
    service (a re-identify, a track creating its person) in the middle of a chunk."""
    monkeypatch.setattr(batch, "CHUNK", 7)
    records: list[dict[str, Any]] = []
    for i in range(40):
        at = BASE + i * 20
        records.append(_track(at, anonymousId=f"a{i % 6}", messageId=f"t{i}"))
        if i % 5 == 4:
            records.append(_identify(at + 1, f"u{i % 3}", anonymousId=f"a{i % 6}"))
        if i % 9 == 8:
            records.append(_track(at + 2, userId=f"new{i}", messageId=f"n{i}"))
    assert_same_both_ways(tmp_path, [write(tmp_path / "s.ndjson", records)], monkeypatch)


def _email_changes(count: int) -> list[dict[str, Any]]:
    """Tracks, with every tenth record an identify changing its person's email: the
    bulk path leaves each of those to the service."""
    records: list[dict[str, Any]] = []
    for i in range(count):
        at = BASE + i * 10
        if i % 10 == 9:
            records.append(_identify(at, f"u{i % 3}", traits={"email": f"e{i}@example.com"}))
        else:
            records.append(_track(at, anonymousId=f"a{i % 7}", messageId=f"t{i}"))
    return records


def test_after_the_service_a_run_reads_about_as_far_as_the_last_got(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A chunk of 1,000 calls meeting one the service takes every ten: each run reads
    for about as many calls as it gets through, not for the rest of the chunk (a
    hundred runs each reading the rest would read for some 50,000)."""
    records = _email_changes(1_000)
    file = write(tmp_path / "emails.ndjson", records)
    monkeypatch.setattr(batch, "AFTER_SERVICE", 4)
    with watched(monkeypatch) as (read, left):
        replay_once(tmp_path / "count.db", [file])
    assert len(left) >= 90  # the email changes (the first of each person's is plain)
    assert sum(read) <= 3 * len(records)
    assert_same_both_ways(tmp_path, [file], monkeypatch)


def test_a_run_holds_so_many_bytes_of_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Large records end a run before it has `CHUNK` of them: 100 tracks of about 2 kB
    with room for 10 kB a run make about twenty runs, and the same rows."""
    records = [
        _track(BASE + i, anonymousId=f"a{i % 4}", messageId=f"t{i}", properties={"x": "y" * 2000})
        for i in range(100)
    ]
    file = write(tmp_path / "large.ndjson", records)
    monkeypatch.setattr(batch, "RUN_BYTES", 10_000)
    with watched(monkeypatch) as (runs, _):
        replay_once(tmp_path / "count.db", [file])
    assert sum(runs) == 100 and max(runs) == 5 and len(runs) == 20
    assert_same_both_ways(tmp_path, [file], monkeypatch)


def test_runs_grow_from_the_first_to_a_chunk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file's first run holds `FIRST_RUN` calls and each after a quarter more, up to
    `CHUNK` (so that a file read ahead is applied from its first calls on); the same
    rows as one run at a time."""
    file = write(
        tmp_path / "grow.ndjson",
        [_track(BASE + i, anonymousId=f"a{i % 4}", messageId=f"t{i}") for i in range(100)],
    )
    monkeypatch.setattr(batch, "FIRST_RUN", 8)
    monkeypatch.setattr(batch, "CHUNK", 20)
    with watched(monkeypatch) as (runs, _):
        replay_once(tmp_path / "count.db", [file])
    assert runs == [8, 11, 14, 18, 20, 20, 9]
    assert_same_both_ways(tmp_path, [file], monkeypatch)


def test_the_collector_looks_less_often_while_replaying(tmp_path: Path) -> None:
    """While a replay takes the bulk path the collector's first threshold is raised; it
    is as it was afterwards, after a rejected file, after an interrupted replay, and
    untouched when every call goes through the service; a listener (`check`'s) keeps
    the bulk path."""
    before = gc.get_threshold()
    good = write(tmp_path / "good.ndjson", _email_changes(30))
    bad = write(
        tmp_path / "bad.ndjson",
        [_track(BASE, anonymousId="a1"), {"type": "track", "anonymousId": "a1"}],  # no time
    )
    seen: list[int] = []

    def note(size: int) -> None:
        seen.append(gc.get_threshold()[0])

    with service.opened(tmp_path / "w.db", NOW, write=True) as workspace:
        summary = replay(workspace, NOW, [good, bad], progress=note)
        assert summary.rejected_files == [str(bad)]
        assert set(seen) == {batch.YOUNG_OBJECTS} and len(seen) == 32
        assert gc.get_threshold() == before

        def interrupt(size: int) -> None:
            raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            replay(workspace, NOW, [good], progress=interrupt)
        assert gc.get_threshold() == before

        seen.clear()
        replay(workspace, NOW, [good], progress=note, bulk=False)
        assert set(seen) == {before[0]}

        seen.clear()
        replay(workspace, NOW, [good], progress=note, listener=lambda *call: None)
        assert set(seen) == {batch.YOUNG_OBJECTS} and gc.get_threshold() == before


def test_pages_and_screens_are_taken_in_bulk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the browser and mobile SDKs send most: page views (named by their URL) and
    screens, anonymous, then after a login naming both ids."""
    records: list[dict[str, Any]] = []
    for i in range(60):
        at, ids = BASE + i * 30, {"anonymousId": f"a{i % 4}", "messageId": f"p{i}"}
        if i >= 30:
            ids["userId"] = f"u{i % 4}"
        if i % 3:
            records.append(_page(at, f"https://shop.example/p/{i}", **ids))
        else:
            records.append({**_track(at, **ids), "type": "screen", "name": f"Screen {i}"})
        if i % 10 == 5:
            records.append(_identify(at + 1, f"u{i % 4}", anonymousId=f"a{i % 4}"))
    file = write(tmp_path / "pages.ndjson", records)
    assert_all_taken_in_bulk(tmp_path, [file], monkeypatch)
    tables = assert_same_both_ways(tmp_path, [file], monkeypatch)
    assert {row[3] for row in tables["events"]} == {"page", "screen"}  # type
    # a newsletter's landing page, over the limit: left to the service, which refuses it
    landing = _page(BASE, "https://shop.example/p/1?" + "utm_campaign=winter-sale&" * 4)
    write(file, [*records[:5], {**landing, "anonymousId": "a1"}, *records[5:]])
    assert_same_both_ways(tmp_path, [file], monkeypatch, keep_going=True)
    _, summary = replayed(tmp_path / "bulk.db", [file], True, monkeypatch, keep_going=True)
    assert [p["message"][:9] for p in summary["invalid"]] == ["The page "]


def test_an_email_changing_hands_within_a_chunk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """u1 gives up x@ for y@, then u2 takes x@: the service lets u2 have it."""
    records = [
        _identify(BASE, "u1", traits={"email": "x@example.com"}),
        _identify(BASE + 1, "u2", traits={"plan": "a"}),
        _identify(BASE + 2, "u1", traits={"email": "y@example.com"}),
        _identify(BASE + 3, "u2", traits={"email": "X@example.com"}),
    ]
    tables = assert_same_both_ways(tmp_path, [write(tmp_path / "e.ndjson", records)], monkeypatch)
    assert sorted(row[2] for row in tables["people"]) == ["X@example.com", "y@example.com"]


def _messages(record: dict[str, Any]) -> int:
    """How many tracks and identifies a record is or carries: a bare message, a Data
    Pipelines request (a batch, or one message), a Track API event."""
    path = record.get("path", "")
    if path.startswith("/v1/"):
        return len(record["body"]["batch"]) if "batch" in record["body"] else 1
    return 1 if "type" in record or path.endswith("/events") else 0


def _request(at: int, messages: list[dict[str, Any]], path: str = "/v1/batch") -> dict[str, Any]:
    """A request as `serve --record` writes it: a batch, or one message on its path."""
    body = {"batch": messages, "sentAt": at} if path in ("/v1/batch", "/v1/b") else messages[0]
    return {"at": at, "method": "POST", "path": path, "body": body}


def test_recorded_requests_are_taken_in_bulk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What `serve --record` writes from real clients: a server SDK's batches of many
    messages, a browser SDK's single messages on the short paths (/v1/p, /v1/t, /v1/i),
    the Track API's events. Every message in bulk, at its request's receive time."""
    records: list[dict[str, Any]] = []
    for i in range(30):
        at, anonymous = BASE + i * 60, f"a{i % 5}"
        records.append(
            _request(
                at,
                [
                    _page(at - 5, f"https://shop.example/{i}", anonymousId=anonymous),
                    _track(at - 4, anonymousId=anonymous, messageId=f"t{i}"),
                    _track(at - 3, anonymousId=anonymous, messageId=f"t{i}"),  # a retry
                ],
                path="/v1/b" if i % 2 else "/v1/batch",
            )
        )
        records.append(
            _request(at + 1, [_page(at, "https://shop.example/", anonymousId=anonymous)], "/v1/p")
        )
        if i % 6 == 5:
            login = _identify(at + 2, f"u{i % 4}", anonymousId=anonymous, messageId=f"i{i}")
            records.append(_request(at + 2, [login], "/v1/i"))
            records.append(
                {
                    "at": at + 3,
                    "method": "POST",
                    "path": f"/api/v1/customers/u{i % 4}/events",
                    "body": {"name": "Purchased", "data": {"total": i}},
                }
            )
    file = write(tmp_path / "recorded.ndjson", records)
    assert_all_taken_in_bulk(tmp_path, [file], monkeypatch)
    tables = assert_same_both_ways(tmp_path, [file], monkeypatch)
    assert {row[3] for row in tables["events"]} == {"page", "event"}
    received = {row[1] for row in tables["journal"][1:]}  # after the workspace's own entry
    assert received <= {float(r["at"]) for r in records}  # each at its request's time


def test_a_call_inside_a_request_is_left_to_the_service_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch whose third message the bulk path leaves to the service (an email
    changing): the service takes that message alone, the others are taken in bulk; a
    run reaching into a request reaches to its end. With --keep-going a request is
    applied or refused whole, as it is one call at a time: the run that began it is
    decided again without it, and the request is applied apart, its calls the same way
    but inside a savepoint of its own."""
    records = [_identify(BASE, "u1", traits={"email": "x@example.com"})]
    for i in range(6):
        at = BASE + 10 + i * 10
        changing = {"email": f"e{i}@example.com"} if i % 3 == 0 else {"plan": "a"}
        records.append(
            _request(
                at,
                [
                    _track(at, anonymousId=f"a{i}", messageId=f"t{i}"),
                    _track(at, userId="u1", messageId=f"o{i}"),
                    _identify(at, "u1", anonymousId=f"a{i}", traits=changing),
                    _track(at, anonymousId=f"a{i}", messageId=f"p{i}"),
                ],
            )
        )
    file = write(tmp_path / "batches.ndjson", records)
    with watched(monkeypatch) as (runs, left), monkeypatch.context() as patched:
        patched.setattr(batch, "AFTER_SERVICE", 2)
        replay_once(tmp_path / "count.db", [file])
    assert [(record.parsed().value["at"], part) for record, part in left] == [
        (BASE + 10, 2),
        (BASE + 40, 2),
    ]
    # all 25 calls, stopped at the first email change (the service takes it); then
    # reaching 6 calls, to the end of the request they reach into (9), 12 (stopped at
    # the second), 4 to the end of its request (5), and the last request
    assert runs == [25, 9, 12, 5, 4]
    with watched(monkeypatch) as (runs, left), monkeypatch.context() as patched:
        patched.setattr(batch, "AFTER_SERVICE", 2)
        replay_once(tmp_path / "count.db", [file], keep_going=True)
    seen = [
        (e[0].parsed().value["at"], e[1])
        if isinstance(e, tuple)
        else (e.parsed().value["at"], "apart")
        for e in left
    ]
    assert seen == [(BASE + 10, "apart"), (BASE + 10, 2), (BASE + 40, "apart"), (BASE + 40, 2)]
    # all 25 calls, stopped inside the first request: decided again up to it (1); the
    # request apart: its calls up to the email change (2 of 4), and the one after it
    # (1); then reaching 2 calls, to the end of the request they begin (4), 4, 8
    # (stopped inside its first request: nothing before it), the request apart (4, 1),
    # and 4 and 4 again
    assert runs == [25, 1, 4, 1, 4, 4, 8, 0, 4, 1, 4, 4]
    for keep_going in (False, True):
        assert_same_both_ways(tmp_path, [file], monkeypatch, keep_going)


def test_a_server_sdks_batches_with_groups_and_aliases(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server SDK sends fifty messages a request, among them now and then a group, an
    alias, a device or a call naming someone by email: the service takes each of those
    alone (an alias, which only says so, is noted by the run itself) and the bulk path
    every other message, leaving the workspace and the notes one call at a time leaves
    (with --keep-going too, where the service takes such a request whole)."""
    records: list[dict[str, Any]] = []
    services: list[int] = []
    for i in range(12):
        at = BASE + i * 600
        messages = []
        for j in range(48):
            anonymous = f"a{(i * 48 + j) // 6}"
            if j % 6 == 5:
                messages.append(
                    _identify(
                        at, f"u{(i * 48 + j) % 5}", anonymousId=anonymous, messageId=f"i{i}-{j}"
                    )
                )
            else:
                messages.append(_page(at - 40 + j, f"https://x.test/{j}", anonymousId=anonymous))
        for place, other in ((10, _NOT_PLAIN[i % 6]), (30, _NOT_PLAIN[(i + 1) % 6])):
            messages.insert(place, {**other, "receivedAt": at})
            services += [] if other["type"] == "alias" else [place]
        records.append(_request(at, messages))
    file = write(tmp_path / "sdk.ndjson", records)
    with watched(monkeypatch) as (runs, left):
        replay_once(tmp_path / "count.db", [file])
    assert [part for _, part in left] == services  # the service's messages, alone
    assert len(runs) == len(services) + 1 == 21  # a run up to each, and the last
    tables = assert_same_both_ways(tmp_path, [file], monkeypatch)
    assert tables["objects"] and tables["devices"] and len(tables["events"]) > 12 * 40
    _, summary = replayed(tmp_path / "notes.db", [file], True, monkeypatch)
    notes = summary["tally"]["notes"]
    assert sum("alias of 'a3' to 'u2'" in note["message"] for note in notes) == 4
    assert_same_both_ways(tmp_path, [file], monkeypatch, keep_going=True)


def test_a_call_the_service_refuses_inside_a_request(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A request whose call the service takes alone, and refuses (a trait over
    Customer.io's limit, sent by email): the file is refused as one call at a time
    refuses it, and nothing of it is applied — not even its time; with --keep-going the
    request is refused whole and the rest applied."""
    refused = {"type": "identify", "userId": "x@example.com", "traits": {"note": "x" * 1001}}
    records = [
        _request(BASE + i, [_page(BASE + i, "https://x.test/", anonymousId=f"a{i}")] * 3)
        for i in range(3)
    ]
    records.append(_request(BASE + 9, [_track(BASE + 9, anonymousId="a9"), refused]))
    file = write(tmp_path / "refused.ndjson", records)
    assert_same_both_ways(tmp_path, [file], monkeypatch)
    for keep_going in (False, True):
        tables, summary = replayed(tmp_path / "bulk.db", [file], True, monkeypatch, keep_going)
        assert [p["line"] for p in summary["invalid"]] == [4]
        assert len(tables["events"]) == (9 if keep_going else 0)
        applied = datetime.fromtimestamp(BASE + 2, UTC) if keep_going else None
        assert summary["last_at"] == applied and summary["tally"]["applied"] == 3 * keep_going
        assert summary["tally"]["stored"] == len(tables["events"])  # the refused track: none
    assert_same_both_ways(tmp_path, [file], monkeypatch, keep_going=True)


def _track(at: int, age: int = 0, **ids: Any) -> dict[str, Any]:
    return {"type": "track", "event": "Viewed", "receivedAt": at, "timestamp": at - age, **ids}


def _page(at: int, url: str, age: int = 0, **ids: Any) -> dict[str, Any]:
    return {
        "type": "page",
        "name": "Home",
        "properties": {"url": url},
        "receivedAt": at,
        "timestamp": at - age,
        **ids,
    }


def _identify(at: int, user: str, **rest: Any) -> dict[str, Any]:
    return {"type": "identify", "userId": user, "receivedAt": at, "traits": {}, **rest}


AGES = [0, 30, 200, 86_400 * 3 + 1, 86_400 * 29, 86_400 * 31]

_NOT_PLAIN: list[dict[str, Any]] = [
    {"type": "group", "userId": "u1", "groupId": "g1", "traits": {"name": "Acme"}},
    {"type": "group", "userId": "u5", "anonymousId": "a2", "groupId": "g2"},  # u5: created
    {"type": "alias", "userId": "u2", "previousId": "a3"},
    {
        "type": "track",
        "event": "Device Created or Updated",
        "userId": "u3",
        "context": {"device": {"token": "t1", "type": "ios"}},
    },
    {"type": "identify", "userId": "x@example.com", "traits": {"plan": "c"}},  # by email
    {"type": "track", "event": "Viewed", "userId": "y@example.com", "messageId": "m1"},
    {"type": "identify", "userId": "x@example.com", "traits": {"note": "x" * 1001}},  # refused
]
"""Messages that are not plain calls (`batch.plain`): what the service takes (the last
it refuses: a value over Customer.io's limit)."""


def _records() -> st.SearchStrategy[list[dict[str, Any]]]:
    anonymous_ids = st.sampled_from(["a1", "a2", "a3", "a4", "a5"])
    users = st.sampled_from(["u1", "u2", "u3", "u4"])
    offsets = st.integers(min_value=0, max_value=3_000)
    message_ids = st.sampled_from([f"m{i}" for i in range(10)])
    emails = st.sampled_from(["x@example.com", "X@Example.com", "y@example.com", ""])
    track = st.builds(
        lambda offset, age, ids, name: _track(BASE + offset, age, event=name, **ids),
        offsets,
        st.sampled_from(AGES),
        st.fixed_dictionaries(
            {}, optional={"anonymousId": anonymous_ids, "userId": users, "messageId": message_ids}
        ),
        st.sampled_from(["Viewed", "Added", "  Padded  "]),
    )
    page = st.builds(
        lambda offset, age, ids, url: _page(BASE + offset, url, age, **ids),
        offsets,
        st.sampled_from(AGES),
        st.fixed_dictionaries(
            {}, optional={"anonymousId": anonymous_ids, "userId": users, "messageId": message_ids}
        ),
        st.sampled_from(["https://x.io/", " https://x.io/a "]),
    )
    identify = st.builds(
        lambda offset, user, rest, traits: _identify(BASE + offset, user, **rest, traits=traits),
        offsets,
        users,
        st.fixed_dictionaries(
            {}, optional={"anonymousId": anonymous_ids, "messageId": message_ids.map("i".__add__)}
        ),
        st.fixed_dictionaries({}, optional={"email": emails, "plan": st.sampled_from(["a", "b"])}),
    )
    traits = st.builds(
        lambda offset, anonymous_id: {
            "type": "identify",
            "anonymousId": anonymous_id,
            "receivedAt": BASE + offset,
            "traits": {"plan": "trial", "email": "z@example.com"},
        },
        offsets,
        anonymous_ids,
    )
    control = st.sampled_from(
        [
            {"op": "settings", "anonymous_merge": False},
            {"op": "settings", "anonymous_merge": True},
            {"op": "purge"},
            {
                "method": "POST",
                "path": "/api/v1/merge_customers",
                "body": {"primary": {"id": "u1"}, "secondary": {"id": "u2"}},
            },
            {"method": "DELETE", "path": "/api/v1/customers/u3"},
            {"method": "POST", "path": "/api/v1/customers/u4/suppress"},
            {"method": "POST", "path": "/api/v1/customers/u4/unsuppress"},
        ]
    ).flatmap(lambda record: offsets.map(lambda offset: {**record, "at": BASE + offset}))
    invalid = st.just({"type": "track", "anonymousId": "a1", "receivedAt": BASE})  # no event
    # what a server SDK's batch carries beside plain calls: the service's, taken alone
    others = st.builds(
        lambda offset, message: {**message, "receivedAt": BASE + offset},
        offsets,
        st.sampled_from(_NOT_PLAIN),
    )
    # recorded requests: a batch of messages (an invalid one too), or one on its path
    batch_of = st.builds(
        lambda offset, messages: _request(BASE + offset, messages, "/v1/batch"),
        offsets,
        st.lists(st.one_of(track, page, identify, identify, traits, others, invalid), max_size=4),
    )
    one_of = st.builds(
        lambda offset, message: _request(BASE + offset, [message], f"/v1/{message['type'][0]}"),
        offsets,
        st.one_of(track, page, identify),
    )
    request = st.one_of(batch_of, one_of)
    # what `serve --record` refused, marked so: refused again or (by now) applied, apart
    as_recorded = request.map(lambda record: {**record, "refused": "as it was refused"})
    mostly_plain = st.one_of(
        track, track, page, identify, identify, traits, control, request, as_recorded
    )
    then_maybe_invalid = st.one_of(track, track, identify, control, invalid)
    return st.tuples(
        st.lists(mostly_plain, max_size=40), st.lists(then_maybe_invalid, max_size=15)
    ).map(lambda parts: parts[0] + parts[1])


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(records=_records(), split=st.integers(min_value=0, max_value=60), keep_going=st.booleans())
def test_generated_streams(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    records: list[dict[str, Any]],
    split: int,
    keep_going: bool,
) -> None:
    files = [
        write(tmp_path / "first.ndjson", records[:split]),
        write(tmp_path / "second.ndjson", records[split:]),
    ]
    with monkeypatch.context() as patched:
        patched.setattr(batch, "CHUNK", 5)
        patched.setattr(batch, "AFTER_SERVICE", 3)  # runs after a fallback end in requests
        assert_same_both_ways(tmp_path, files, patched, keep_going)


@pytest.mark.parametrize("keep_going", [False, True], ids=["", "keep going"])
def test_a_file_cut_short_after_a_call_the_service_refuses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, keep_going: bool
) -> None:
    """A gzipped file cut short, a request the service refuses a call of among the
    lines read before the damage: as one call at a time, what was read is applied
    before the file is rejected — without --keep-going the refused call rejects it
    (its line named), with it the request is listed and the damage rejects the file —
    and a listener hears the same."""
    import gzip

    refused = {"type": "identify", "userId": "x@example.com", "traits": {"note": "x" * 1001}}
    lines = [_track(BASE + i, anonymousId=f"a{i}") for i in range(5)]
    lines.append(_request(BASE + 9, [_track(BASE + 9, anonymousId="a9"), refused]))
    lines += [_track(BASE + 10 + i, anonymousId=f"b{i}") for i in range(3_000)]
    whole = gzip.compress("".join(json.dumps(line) + "\n" for line in lines).encode())
    cut = tmp_path / "cut.ndjson.gz"
    cut.write_bytes(whole[: len(whole) // 2])
    assert_same_both_ways(tmp_path, [cut], monkeypatch, keep_going)
    _, summary = replayed(tmp_path / "bulk.db", [cut], True, monkeypatch, keep_going)
    lines_named = [problem["line"] for problem in summary["invalid"]]
    assert lines_named == ([6, 0] if keep_going else [6])
