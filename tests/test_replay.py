"""Replay: every fixture, every dialect, all-or-nothing files, --keep-going, the demo."""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Space

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = sorted(p for p in (ROOT / "fixtures").iterdir() if p.suffix in (".ndjson", ".json"))
Cli = Callable[..., Any]


def dump(path: Path) -> str | None:
    if not path.exists():
        return None
    conn = sqlite3.connect(path)
    try:
        return "\n".join(conn.iterdump())
    finally:
        conn.close()


@pytest.mark.parametrize("fixture", FIXTURES, ids=[p.name for p in FIXTURES])
def test_every_fixture_replays_and_its_expectations_hold(cli: Cli, fixture: Path) -> None:
    summary = cli("replay", str(fixture), "--json")
    assert summary["ok"], summary
    assert summary["invalid"] == [] and summary["failed_expectations"] == []
    assert summary["expectations"] >= 3  # every fixture checks itself
    assert summary["applied"] == summary["records"]


def test_the_three_formats_tell_the_same_story(tmp_path: Path, cli: Cli) -> None:
    profiles, logs = [], []
    for name in ("story_track_v1.ndjson", "story_track_v2.json", "story_pipelines.ndjson"):
        db = str(tmp_path / f"{name}.db")
        assert cli("replay", str(ROOT / "fixtures" / name), "--db", db, "--json")["ok"]
        profile = cli("show", "pat-9", "--db", db, "--at", "2026-05-01T11:00:00Z", "--json")
        profiles.append((profile["person"], profile["anonymous_ids"], profile["events"]))
        log = cli("log", "--db", db, "--at", "2026-05-01T11:00:00Z", "--json")
        logs.append(
            sorted(
                (row["event_id"], row["type"], row["provenance"], row["can_trigger_campaigns"])
                for tab in (log["identified"], log["anonymous"])
                for row in tab
                if row["event_id"]
            )
        )
    assert profiles[0] == profiles[1] == profiles[2]
    assert logs[0] == logs[1] == logs[2]
    assert [row[0] for row in logs[0]] == ["st-1", "st-2", "st-3", "st-4", "st-5"]


def test_a_broken_line_rejects_the_whole_file(cli: Cli, tmp_path: Path) -> None:
    db = tmp_path / "ws.db"
    broken = tmp_path / "broken.ndjson"
    good = (ROOT / "fixtures" / "window.ndjson").read_text().splitlines()
    broken.write_text("\n".join([good[1], "{this is not json", *good[2:]]) + "\n")
    result = cli("replay", str(broken), "--db", str(db), code=1)
    assert f"{broken}:2: not valid JSON" in result.stderr
    assert not db.exists()  # nothing was there, nothing is left

    cli("identify", "someone", "--db", str(db))
    before = dump(db)
    summary = cli("replay", str(broken), "--db", str(db), "--json", code=1)
    assert json.loads(summary.stdout)["rejected_files"] == [str(broken)]
    assert dump(db) == before


def test_a_record_that_breaks_a_rule_rejects_the_file(cli: Cli, tmp_path: Path) -> None:
    db = tmp_path / "ws.db"
    cli("identify", "someone", "--db", str(db))
    before = dump(db)
    bad = tmp_path / "bad.ndjson"
    records = [
        {
            "at": "2026-01-01T00:00:00Z",
            "method": "POST",
            "path": "/api/v1/events",
            "body": {"anonymous_id": "a", "name": "ok", "id": "x1"},
        },
        {
            "at": "2026-01-01T00:01:00Z",
            "method": "POST",
            "path": "/api/v1/events",
            "body": {"name": "no identity at all", "id": "x2"},
        },
    ]
    bad.write_text("\n".join(json.dumps(r) for r in records))
    result = cli("replay", str(bad), "--db", str(db), code=1)
    assert f"{bad}:2:" in result.stderr and "no anonymous_id" in result.stderr
    assert dump(db) == before


def test_a_record_refused_when_recorded_is_listed_not_applied(cli: Cli, tmp_path: Path) -> None:
    """A record `serve --record` marked refused is listed with why, and not applied, as
    the server applied nothing of it; its file goes on (exit 0). `check` judges it
    again: refused again, it is a finding; accepted by today's rules, it is not. An
    unmarked record refused still rejects its file."""
    db = tmp_path / "ws.db"

    def track(event_id: str, why: str | None = None, **body: Any) -> dict[str, Any]:
        call = {"anonymous_id": "a", "name": "ok", "id": event_id, **body}
        record = {"at": "2026-01-01T00:00:00Z", "method": "POST", "path": "/api/v1/events"}
        return {**record, "body": call} | ({} if why is None else {"refused": why})

    marked = tmp_path / "marked.ndjson"
    records = [
        track("x1"),
        track("x2", "no anonymous_id then", anonymous_id=None),  # refused again
        track("x3", "refused by a rule since changed"),  # accepted by today's
    ]
    marked.write_text("\n".join(json.dumps(r) for r in records))
    summary = cli("replay", str(marked), "--db", str(db), "--json")
    assert summary["applied"] == 1 and summary["invalid"] == []
    assert summary["refused_as_recorded"] == [
        f"{marked}:2: no anonymous_id then",
        f"{marked}:3: refused by a rule since changed",
    ]
    log = cli("log", "--db", str(db), "--json")
    assert [row["event_id"] for row in log["anonymous"]] == ["x1"]
    checked = json.loads(cli("check", str(marked), "--json", code=1).stdout)
    assert [(f["line"], f["code"]) for f in checked["findings"]] == [(2, "invalid_record")]

    unmarked = tmp_path / "unmarked.ndjson"
    unrecorded = [track("y1"), track("y2", anonymous_id=None)]
    unmarked.write_text("\n".join(json.dumps(r) for r in unrecorded))
    result = cli("replay", str(unmarked), "--db", str(db), "--json", code=1)
    assert json.loads(result.stdout)["rejected_files"] == [str(unmarked)]


def test_keep_going_applies_the_valid_records(cli: Cli, tmp_path: Path) -> None:
    db = tmp_path / "ws.db"
    mixed = tmp_path / "mixed.ndjson"
    mixed.write_text(
        "\n".join(
            [
                json.dumps(
                    {
                        "type": "track",
                        "anonymousId": "a",
                        "event": "One",
                        "messageId": "k1",
                        "timestamp": "2026-01-01T00:00:00Z",
                    }
                ),
                json.dumps({"type": "track", "event": "No identity", "timestamp": "2026-01-01"}),
                "[1, 2",
                json.dumps(
                    {
                        "type": "track",
                        "anonymousId": "a",
                        "event": "Two",
                        "messageId": "k2",
                        "timestamp": "2026-01-01T00:02:00Z",
                    }
                ),
            ]
        )
    )
    result = cli("replay", str(mixed), "--keep-going", "--db", str(db), "--json", code=1)
    summary = json.loads(result.stdout)
    assert [p.split(": ")[0] for p in summary["invalid"]] == [f"{mixed}:2", f"{mixed}:3"]
    assert summary["applied"] == 2 and summary["events_stored"] == 2
    log = cli("log", "--db", str(db), "--json")
    assert sorted(row["event_id"] for row in log["anonymous"]) == ["k1", "k2"]


def test_notes_alike_are_counted_after_the_first_few(cli: Cli, tmp_path: Path) -> None:
    """A recording with an alias for every login says the first few and how many more;
    --json lists every one."""
    aliases = tmp_path / "aliases.ndjson"
    aliases.write_text(
        "".join(
            json.dumps(
                {"type": "alias", "userId": f"u{i}", "previousId": f"a{i}", "receivedAt": i + 1}
            )
            + "\n"
            for i in range(8)
        )
    )
    result = cli("replay", str(aliases), "--db", str(tmp_path / "a.db"))
    notes = [line for line in result.stderr.splitlines() if line.startswith("note: ")]
    assert [note.split(": ")[1] for note in notes[:5]] == [f"{aliases}:{i}" for i in range(1, 6)]
    assert "'a4' to 'u4'" in notes[4] and len(notes) == 6
    assert notes[5].startswith("note: 3 more: alias of '…' to '…' recorded;")
    summary = cli("replay", str(aliases), "--db", str(tmp_path / "b.db"), "--json")
    assert len(summary["notes"]) == 8


def test_replaying_twice_changes_nothing(cli: Cli, tmp_path: Path) -> None:
    """Data Pipelines messages all carry ids: a second replay is a no-op."""
    db = tmp_path / "ws.db"
    for name in ("shopper.ndjson", "story_pipelines.ndjson"):
        fixture = str(ROOT / "fixtures" / name)
        cli("replay", fixture, "--db", str(db))
        before = dump(db)
        # expectations from the middle of the story may not hold at its end: the exit
        # code is not the point here, the unchanged workspace is
        again = json.loads(cli("replay", fixture, "--db", str(db), "--json", code=None).stdout)
        assert again["events_stored"] == 0 and again["duplicates_ignored"] > 0
        assert again["invalid"] == []
        assert dump(db) == before


def test_replaying_track_calls_twice_stores_no_event_twice(cli: Cli, tmp_path: Path) -> None:
    """Track API identify calls carry no id, so they apply again (as Customer.io would);
    the events, which carry ids, are not stored twice."""
    db = tmp_path / "ws.db"
    fixture = str(ROOT / "fixtures" / "window.ndjson")
    cli("replay", fixture, "--db", str(db))
    events = cli("log", "--db", str(db), "--json")
    again = json.loads(cli("replay", fixture, "--db", str(db), "--json", code=None).stdout)
    assert again["events_stored"] == 0 and again["duplicates_ignored"] == 4
    after = cli("log", "--db", str(db), "--json")
    assert after["anonymous"] == events["anonymous"]
    assert [r for r in after["identified"] if r["event_id"]] == [
        r for r in events["identified"] if r["event_id"]
    ]


def test_explain_names_the_fixture_line(cli: Cli, tmp_path: Path) -> None:
    fixture = ROOT / "fixtures" / "window.ndjson"
    cli("replay", str(fixture))
    why = cli("explain", "w-2", "--json")
    assert why["source"] == f"{fixture}:4"
    assert why["rule"] == "merged_in_window"
    assert why["facts"]["merged_at"] == why["facts"]["received_at"]


def test_explain_of_an_identifys_message_id_says_what_it_is(cli: Cli, tmp_path: Path) -> None:
    """Support staff paste a messageId from a client's log: an identify's is no event,
    and is not refused either (the sentence for an unknown id says so)."""
    calls = tmp_path / "calls.ndjson"
    identify = {"type": "identify", "userId": "u1", "anonymousId": "a1", "messageId": "id-1"}
    calls.write_text(json.dumps({**identify, "receivedAt": "2026-01-01T00:00:00Z"}))
    cli("replay", str(calls))
    said = cli("explain", "id-1", code=1).stderr
    assert "'id-1' is not an event: it is the messageId of an identify, handled at " in said
    assert "2026-01-01T00:00:00Z" in said and "refused" not in said
    assert "A call that was refused is never stored" in cli("explain", "id-2", code=1).stderr


def test_explain_tells_times_within_a_second_to_the_millisecond(cli: Cli, tmp_path: Path) -> None:
    """A browser SDK sends a session's calls milliseconds apart: to the second, the
    facts (happened, received, assigned) would read alike and hide their order."""
    session = tmp_path / "session.ndjson"
    calls = [
        {
            "type": "track",
            "anonymousId": "a",
            "event": "Viewed",
            "messageId": "v",
            "timestamp": 1772000000.1,
            "receivedAt": 1772000000.2,
        },
        {"type": "identify", "userId": "u", "anonymousId": "a", "receivedAt": 1772000000.5},
    ]
    session.write_text("".join(json.dumps(call) + "\n" for call in calls))
    cli("replay", str(session))
    facts = cli("explain", "v").stdout.split("Facts (UTC)", 1)[1]
    for name, millis in (("timestamp", ".100"), ("received_at", ".200"), ("assigned_at", ".500")):
        (line,) = [line for line in facts.splitlines() if f" {name} " in line]
        assert f"06:13:20{millis}" in line, line
    # whole seconds apart: to the second, as everywhere else
    cli("replay", str(ROOT / "fixtures" / "window.ndjson"))
    whole = cli("explain", "w-2").stdout.split("Facts (UTC)", 1)[1]
    assert re.search(r"\d\d:\d\d:\d\d\b", whole)
    assert not re.search(r"\d\d:\d\d:\d\d\.\d", whole)


def test_json_array_fixtures_report_element_lines(cli: Cli, tmp_path: Path) -> None:
    array = tmp_path / "array.json"
    array.write_text(
        '[\n  {"type": "track", "anonymousId": "a", "event": "ok", "timestamp": 1767225600},\n'
        '  {"type": "track", "anonymousId": "a", "event": "ok2", "timestamp": 1767225601},\n'
        '  {"type": "nope", "timestamp": 1767225602}\n]\n'
    )
    result = cli("replay", str(array), code=1)
    assert f"{array}:4: The message has type 'nope'" in result.stderr


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"method": "POST", "path": "/api/v1/events", "body": {}}, "no receive time"),
        ({"at": 1, "method": "GET", "path": "/api/v1/events"}, "GET is not allowed"),
        ({"at": 1, "method": "POST", "path": "/api/v3/thing"}, "not a Customer.io API path"),
        (
            {"at": 1, "method": "POST", "path": "/api/v1/events", "body": []},
            "must be a JSON object",
        ),
        (
            {"at": 1, "method": "POST", "path": "/api/v1/events", "body": {"anonymous_id": "a"}},
            "needs `name`",
        ),
        (
            {
                "at": 1,
                "method": "POST",
                "path": "/api/v2/entity",
                "body": {"type": "object", "action": "identify"},
            },
            "`identifiers` must be a JSON object",
        ),
        (
            {
                "at": 1,
                "method": "POST",
                "path": "/api/v2/entity",
                "body": {"type": "person", "action": "add_device", "identifiers": {"id": "1"}},
            },
            "`device` must be a JSON object",
        ),
        (
            {
                "at": 1,
                "method": "POST",
                "path": "/api/v2/entity",
                "body": {
                    "type": "person",
                    "action": "identify",
                    "identifiers": {"id": "1", "email": "a@b"},
                },
            },
            "exactly one of id, email, cio_id",
        ),
        (
            {"at": 1, "method": "POST", "path": "/v1/batch", "body": {"batch": {}}},
            "`batch` as an array",
        ),
        ({"at": 1, "type": "group", "userId": "u"}, "needs `groupId`"),
        ({"at": 1, "type": "boom", "userId": "u"}, "has type 'boom'"),
        ({"at": 1, "type": "track", "event": "x"}, "needs a userId or an anonymousId"),
        ({"at": 1, "type": "page", "anonymousId": "a"}, "needs properties.url or a name"),
        ({"at": 1, "op": "expect", "person": "p", "events": {"totl": 1}}, "unknown field(s): totl"),
        ({"at": 1, "op": "explode"}, "not one of purge, settings, expect"),
        ({"at": "yesterday", "type": "track", "anonymousId": "a", "event": "x"}, "not ISO-8601"),
        ({"at": 1, "something": "else"}, "is not an HTTP call"),
        ([1, 2], "A record must be a JSON object"),
    ],
)
def test_invalid_records_say_what_is_wrong(
    cli: Cli, tmp_path: Path, record: object, message: str
) -> None:
    fixture = tmp_path / "one.ndjson"
    fixture.write_text(json.dumps(record) + "\n")
    result = cli("replay", str(fixture), code=1)
    assert f"{fixture}:1:" in result.stderr and message in result.stderr


def test_missing_file_is_a_sentence(cli: Cli, tmp_path: Path) -> None:
    """One sentence and exit 2, as for a folder: no summary of nothing, no workspace."""
    nope = tmp_path / "nope.ndjson"
    for args in (("replay", str(nope), "--json"), ("check", str(nope))):
        result = cli(*args, code=2)
        assert (result.stdout, result.stderr) == ("", f"Error: {nope}: no such file.\n")
    assert not (tmp_path / "cli.db").exists()


def test_a_replay_without_expectations_does_not_claim_they_held(cli: Cli, tmp_path: Path) -> None:
    plain = tmp_path / "plain.ndjson"
    record = {"type": "track", "anonymousId": "a", "event": "x", "receivedAt": 1772000000}
    plain.write_text(json.dumps(record) + "\n")
    assert "the files hold no expectations" in cli("replay", str(plain)).stdout
    window = Path(__file__).resolve().parent.parent / "fixtures" / "window.ndjson"
    assert "every expectation held (" in cli("replay", str(window)).stdout


def test_a_workspace_made_implicitly_is_said(cli: Cli, tmp_path: Path) -> None:
    first = cli("track", "Viewed", "--anonymous-id", "a")
    assert first.stderr == f"Created the workspace {tmp_path / 'cli.db'}.\n"
    assert cli("track", "Viewed", "--anonymous-id", "a").stderr == ""


# -- payloads exactly as the official clients build them ----------------------------


def test_track_client_payloads(space: Space, tmp_path: Path) -> None:
    """The bodies and paths `customerio.CustomerIO` sends for each of its calls."""
    calls = [
        # cio.track_anonymous("dev 1", "addedToCart", product="shoes", price=39.95)
        (
            "POST",
            "/api/v1/events",
            {
                "anonymous_id": "dev 1",
                "name": "addedToCart",
                "data": {"product": "shoes", "price": 39.95},
            },
        ),
        # cio.identify(id="coolperson1234", email=..., anonymous_id="dev 1")
        (
            "PUT",
            "/api/v1/customers/coolperson1234",
            {"email": "cool.person@example.com", "anonymous_id": "dev 1", "name": "Cool Person"},
        ),
        # cio.pageview("coolperson1234", "https://example.com/pricing", plan="pro")
        (
            "POST",
            "/api/v1/customers/coolperson1234/events",
            {"type": "page", "name": "https://example.com/pricing", "data": {"plan": "pro"}},
        ),
        # cio.backfill("coolperson1234", "purchased", 1767225600, total=9)
        (
            "POST",
            "/api/v1/customers/coolperson1234/events",
            {"name": "purchased", "data": {"total": 9}, "timestamp": 1767225600},
        ),
        # cio.identify(id="other@example.com") (path identifiers are URL-encoded)
        ("PUT", "/api/v1/customers/other%40example.com", {}),
        # cio.merge_customers(ID, "coolperson1234", EMAIL, "other@example.com")
        (
            "POST",
            "/api/v1/merge_customers",
            {"primary": {"id": "coolperson1234"}, "secondary": {"email": "other@example.com"}},
        ),
    ]
    records = [
        {"at": f"2026-01-01T00:0{i}:00Z", "method": m, "path": p, "body": b}
        for i, (m, p, b) in enumerate(calls)
    ]
    records.append(
        {
            "op": "expect",
            "person": "coolperson1234",
            "email": "cool.person@example.com",
            "events": {"total": 3, "merged": 1, "tracked": 2},
            "anonymous_ids": ["dev 1"],
        }
    )
    records.append({"op": "expect", "person": "other@example.com", "exists": False})
    records.append(
        {
            "at": "2026-01-01T00:09:00Z",
            "method": "DELETE",
            "path": "/api/v1/customers/coolperson1234",
            "body": {},
        }
    )
    records.append({"op": "expect", "person": "coolperson1234", "exists": False})
    fixture = tmp_path / "client.ndjson"
    fixture.write_text("\n".join(json.dumps(r) for r in records))
    summary = _replay(space, fixture)
    assert summary.ok, (summary.invalid, summary.tally.failed_expectations)
    assert summary.tally.expectations == 3


def test_pipelines_client_batch_payload(space: Space, tmp_path: Path) -> None:
    """What `customerio.analytics` (Data Pipelines) posts to /v1/batch, sync or batched."""
    library = {"library": {"name": "analytics-python", "version": "2.3.0"}}
    batch = [
        {
            "integrations": {},
            "anonymousId": "b7c1",
            "properties": {"url": "https://x.io/p"},
            "timestamp": "2026-01-01T00:00:00.000+00:00",
            "context": dict(library),
            "type": "page",
            "name": "Pricing",
            "messageId": "5f0e7f8c-0000-4000-8000-000000000001",
        },
        {
            "integrations": {},
            "anonymousId": "b7c1",
            "properties": {"plan": "pro"},
            "timestamp": "2026-01-01T00:01:00.000+00:00",
            "context": dict(library),
            "type": "track",
            "event": "Plan Selected",
            "messageId": "5f0e7f8c-0000-4000-8000-000000000002",
        },
        {
            "integrations": {},
            "anonymousId": "b7c1",
            "userId": "u-1",
            "traits": {"email": "u1@example.com"},
            "timestamp": "2026-01-01T00:02:00.000+00:00",
            "context": dict(library),
            "type": "identify",
            "messageId": "5f0e7f8c-0000-4000-8000-000000000003",
        },
        {
            "integrations": {},
            "userId": "u-1",
            "properties": {},
            "timestamp": "2026-01-01T00:03:00.000+00:00",
            "context": dict(library),
            "type": "screen",
            "name": "Settings",
            "messageId": "5f0e7f8c-0000-4000-8000-000000000004",
        },
        {
            "integrations": {},
            "userId": "u-1",
            "previousId": "b7c1",
            "timestamp": "2026-01-01T00:04:00.000+00:00",
            "context": dict(library),
            "type": "alias",
            "messageId": "5f0e7f8c-0000-4000-8000-000000000005",
        },
    ]
    records = [
        {
            "at": "2026-01-01T00:05:00Z",
            "method": "POST",
            "path": "/v1/batch",
            "body": {"batch": batch, "sentAt": "2026-01-01T00:05:00.000+00:00"},
        },
        {
            "op": "expect",
            "person": "u-1",
            "events": {"total": 3, "merged": 2, "tracked": 1},
            "anonymous_ids": ["b7c1"],
            "email": "u1@example.com",
        },
        {
            "op": "expect",
            "event": "5f0e7f8c-0000-4000-8000-000000000001",
            "status": "identified",
            "rule": "merged_on_identify",
        },
    ]
    fixture = tmp_path / "cdp.ndjson"
    fixture.write_text("\n".join(json.dumps(r) for r in records))
    summary = _replay(space, fixture)
    assert summary.ok, (summary.invalid, summary.tally.failed_expectations)
    assert any("alias" in str(note) for note in summary.tally.notes)


def test_anonymous_traits_fill_the_person(space: Space, tmp_path: Path) -> None:
    records = [
        {
            "type": "identify",
            "anonymousId": "a9",
            "traits": {"favorite": "tea", "email": "t@x.io"},
            "timestamp": "2026-01-01T00:00:00Z",
        },
        {
            "type": "identify",
            "userId": "tea-lover",
            "anonymousId": "a9",
            "traits": {},
            "timestamp": "2026-01-01T00:01:00Z",
        },
        {
            "op": "expect",
            "person": "tea-lover",
            "email": "t@x.io",
            "attributes": {"favorite": "tea"},
        },
    ]
    fixture = tmp_path / "traits.ndjson"
    fixture.write_text("\n".join(json.dumps(r) for r in records))
    summary = _replay(space, fixture)
    assert summary.ok, summary.tally.failed_expectations


def _replay(space: Space, fixture: Path) -> Any:
    from cio_anon import replay
    from tests.conftest import T0

    return replay.replay_into(space.path, T0, [fixture])


# -- demo ---------------------------------------------------------------------------


def test_demo_shows_the_shopper(cli: Cli, tmp_path: Path) -> None:
    result = cli("demo", "--json")
    assert result["replay"]["ok"] and result["replay"]["expectations"] >= 5
    assert result["profile"]["person"]["email"] == "maya@example.com"
    assert result["profile"]["events"]["merged"] == 6
    assert [row["name"] for row in result["log"]["anonymous"]] == ["Wishlist Viewed"]
    db = tmp_path / "demo.db"
    text = cli("demo", "--db", str(db)).stdout
    assert "Identified" in text and "Anonymous" in text and "Merge history" in text
    assert db.exists()
    again = cli("demo", "--db", str(db), code=1)
    assert "already exists" in again.stderr


def test_line_separators_inside_strings_are_not_line_ends(cli: Cli, tmp_path: Path) -> None:
    """U+2028, U+2029 and U+0085 are valid inside JSON strings, and `serve --record` (like
    orjson) writes them raw; NDJSON lines end at `\\n` only."""
    from tests.test_serve import serving

    record = tmp_path / "recorded.ndjson"
    odd = "a\u2028b\u2029c\u0085d"
    with serving(tmp_path, record=record) as running:
        event = {"anonymous_id": "a-1", "name": f"Viewed {odd}", "id": "e1", "data": {"q": odd}}
        assert running.call("POST", "/api/v1/events", event)[0] == 200
    text = record.read_text(encoding="utf-8")
    assert "\u2028" in text and len(text.split("\n")) == 2  # one record, raw separators
    fresh = str(tmp_path / "fresh.db")
    cli("replay", str(record), "--db", fresh)
    explained = cli("explain", "e1", "--db", fresh, "--json")
    assert explained["name"] == f"Viewed {odd}"


def test_replay_and_check_read_what_audit_reads(cli: Cli, tmp_path: Path) -> None:
    """One reader of inputs: a gzipped file, a folder of them, a byte-order mark."""
    import gzip

    records = [
        {"type": "track", "anonymousId": "a1", "event": "x", "receivedAt": 1772000000},
        {"type": "identify", "userId": "u1", "anonymousId": "a1", "receivedAt": 1772000060},
    ]
    text = "".join(json.dumps(r) + "\n" for r in records)
    folder = tmp_path / "day=2026-02-25"
    folder.mkdir()
    (folder / "part-0.ndjson.gz").write_bytes(gzip.compress(text.encode()))
    marked = tmp_path / "marked.ndjson"
    marked.write_bytes(b"\xef\xbb\xbf" + text.encode())
    for given in (folder / "part-0.ndjson.gz", folder, marked):
        db = tmp_path / f"{given.name}.db"
        done = cli("replay", str(given), "--db", str(db), "--json")
        assert (done["ok"], done["records"], done["events_merged"]) == (True, 2, 1), given
        assert cli("check", str(given), "--json")["records"] == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    refused = cli("replay", str(empty), code=2)
    assert refused.stderr == f"Error: No fixture files in {empty}.\n"


def test_a_gzip_cut_short_says_after_which_line(cli: Cli, tmp_path: Path) -> None:
    """A gzipped recording cut short (a download stopped, a disk that filled) says after
    which line it could not be read on — where to look, and how much was readable — and
    names no line 0: the file is rejected, nothing applied; with --keep-going what was
    read is kept; `check` says the same."""
    import gzip

    lines = [
        json.dumps({"type": "track", "anonymousId": f"a{n}", "event": "x", "receivedAt": n})
        for n in range(1_772_000_000, 1_772_000_000 + 5_000)
    ]
    whole = gzip.compress(("\n".join(lines) + "\n").encode())
    cut = tmp_path / "cut.ndjson.gz"
    cut.write_bytes(whole[: len(whole) // 2])
    done = json.loads(
        cli("replay", str(cut), "--db", str(tmp_path / "w.db"), "--json", code=1).stdout
    )
    read = done["records"]
    assert 0 < read < 5_000 and done["applied"] == 0
    sentence = f"{cut}: cannot be read after line {read:,} ("
    assert done["invalid"][0].startswith(sentence)
    text = cli("replay", str(cut), "--db", str(tmp_path / "w.db"), code=1).stderr
    assert f"invalid: {sentence}" in text
    assert f"rejected (nothing applied): {cut}" in text and "line 0" not in text
    going = json.loads(
        cli(
            "replay", str(cut), "--db", str(tmp_path / "w.db"), "--keep-going", "--json", code=1
        ).stdout
    )  # going on: what was read before the damage is kept, and the damage listed
    assert (going["applied"], going["events_stored"], going["rejected_files"]) == (read, read, [])
    assert going["invalid"] == done["invalid"]
    found = json.loads(cli("check", str(cut), "--json", code=1).stdout)["findings"]
    damaged = [f for f in found if f["code"] == "invalid_record"]
    assert len(damaged) == 1 and damaged[0]["message"].startswith(sentence[len(f"{cut}: ") :])
