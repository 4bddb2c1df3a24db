"""`cio-anon export`: the workspace, or one person's history, written as a fixture that
replays into an empty workspace with the same result."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cio_anon.ingest import (
    AnonymousTraits,
    ChangeSettings,
    DeletePerson,
    Identify,
    MergePeople,
    Operation,
    Purge,
    Track,
)
from cio_anon.ingest.emit import to_record
from cio_anon.ingest.fixtures import to_operations
from tests.conftest import T0, t

Cli = Callable[..., Any]
ROOT = Path(__file__).resolve().parent.parent
FIXTURES = sorted(p for p in (ROOT / "fixtures").iterdir() if p.suffix in (".ndjson", ".json"))
LATER = "2026-12-31T00:00:00Z"  # after every fixture: the reads below all happen then


def _without_sources(value: Any) -> Any:
    """A document with the `source` (fixture file and line) of each event left out: an
    export's lines are not the original's."""
    if isinstance(value, dict):
        return {k: _without_sources(v) for k, v in value.items() if k != "source"}
    if isinstance(value, list):
        return [_without_sources(v) for v in value]
    return value


def _state(cli: Cli, db: Path, person: str | None = None) -> dict[str, Any]:
    """Everything a user can read of a workspace (or of one person), as JSON."""
    common = ("--db", str(db), "--at", LATER, "--json")
    if person is not None:
        return {
            "show": cli("show", person, *common),
            "log": cli("log", "--person", person, "--limit", "1000", *common),
        }
    log = cli("log", "--limit", "1000", *common)
    people = cli("people", "--limit", "1000", *common)["people"]
    shown = {p["cio_id"]: cli("show", f"cio_{p['cio_id']}", *common) for p in people}
    rows = log["identified"] + log["anonymous"]
    event_ids = {row["event_id"] for row in rows if row["event_id"]}
    explained = {e: cli("explain", e, *common) for e in sorted(event_ids)}
    settings = cli("settings", *common)
    return _without_sources(
        {"log": log, "people": people, "show": shown, "explain": explained, "settings": settings}
    )


def _export_and_replay(cli: Cli, tmp_path: Path, source: Path, *args: str) -> Path:
    exported = tmp_path / "exported.ndjson"
    exported.write_text(cli("export", "--db", str(source), *args).stdout)
    copy = tmp_path / "copy.db"
    cli("replay", str(exported), "--db", str(copy), "--at", LATER)
    return copy


@pytest.mark.parametrize("fixture", FIXTURES, ids=[p.name for p in FIXTURES])
def test_export_replays_every_fixture_to_the_same_workspace(
    cli: Cli, tmp_path: Path, fixture: Path
) -> None:
    original = tmp_path / "original.db"
    cli("replay", str(fixture), "--db", str(original), "--at", LATER)
    copy = _export_and_replay(cli, tmp_path, original)
    assert _state(cli, copy) == _state(cli, original)


@pytest.mark.parametrize("fixture", FIXTURES, ids=[p.name for p in FIXTURES])
def test_a_person_export_replays_to_the_same_history(
    cli: Cli, tmp_path: Path, fixture: Path
) -> None:
    original = tmp_path / "original.db"
    cli("replay", str(fixture), "--db", str(original), "--at", LATER)
    people = cli("people", "--db", str(original), "--at", LATER, "--json")["people"]
    assert people, "every bundled fixture identifies someone"
    for index, person in enumerate(people):
        name = person["email"] or person["id"]
        folder = tmp_path / str(index)
        folder.mkdir()
        copy = _export_and_replay(cli, folder, original, "--person", name)
        expected, actual = _state(cli, original, name), _state(cli, copy, name)
        # cio_ids are numbered in creation order; a person's export creates fewer people.
        assert _without_cio_ids(actual) == _without_cio_ids(expected), name


def _without_cio_ids(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_cio_ids(v) for k, v in value.items() if k not in ("cio_id", "source")}
    if isinstance(value, list):
        return [_without_cio_ids(v) for v in value]
    return value


def test_calls_made_on_the_command_line_export_with_lasting_names(cli: Cli, tmp_path: Path) -> None:
    """A person named by cio_id is exported by id or email, which any workspace resolves;
    settings changes, merges and purges come along."""
    db = ("--db", str(tmp_path / "made.db"))
    at = lambda **delta: ("--at", t(**delta).isoformat())  # noqa: E731
    cli("init", "--created-at", "2021-03-01", *db, *at())
    cli("track", "Viewed", "--anonymous-id", "a-1", *db, *at(seconds=1))
    cli("identify", "ann@example.com", "--anonymous-id", "a-1", *db, *at(minutes=1))
    cli("settings", "--anonymous-merge", *db, *at(minutes=2))
    cli("identify", "u-2", "--attr", "plan=pro", *db, *at(minutes=3))
    cli("track", "Paid", "--person", "cio_00000002", *db, *at(minutes=4))
    cli("identify", "cio_00000001", "--attr", "id=u-1", *db, *at(minutes=5))
    cli("merge", "cio_00000001", "u-2", *db, *at(minutes=6))
    cli("track", "Old", "--anonymous-id", "a-9", "--timestamp", "2026-01-01", *db, *at(minutes=7))
    cli("purge", *db, *at(days=40))
    exported = cli("export", *db).stdout
    assert "cio_0000" not in exported
    records = [json.loads(line) for line in exported.splitlines()]
    assert [r.get("op") or r["path"] for r in records] == [
        "settings",
        "/api/v1/events",
        "/api/v1/customers/ann%40example.com",
        "settings",
        "/api/v1/customers/u-2",
        "/api/v1/customers/u-2/events",
        "/api/v1/customers/ann%40example.com",
        "/api/v1/merge_customers",
        "/api/v1/events",
        "purge",
    ]
    assert records[0]["created_at"] == "2021-03-01T00:00:00Z"
    assert records[0]["anonymous_merge"] is False
    assert records[7]["body"] == {"primary": {"id": "u-1"}, "secondary": {"id": "u-2"}}
    copy = _export_and_replay(cli, tmp_path, tmp_path / "made.db")
    assert _state(cli, copy) == _state(cli, tmp_path / "made.db")


def test_a_deleted_person_leaves_nothing_in_the_export_but_their_effects(
    cli: Cli, tmp_path: Path
) -> None:
    """After a delete the export holds none of the person's calls, ids or events, yet
    replays to the same workspace: their anonymous id stays assigned to nobody, and
    later people keep their cio_ids."""
    made = tmp_path / "made.db"
    db = ("--db", str(made))
    at = lambda **delta: ("--at", t(**delta).isoformat())  # noqa: E731
    cli("track", "Secret Page", "--anonymous-id", "dev-1", "--data", '{"q": "ssn"}', *db, *at())
    cli("identify", "ada.secret@example.com", "--anonymous-id", "dev-1", *db, *at(minutes=1))
    cli("track", "Private", "--person", "ada.secret@example.com", *db, *at(minutes=2))
    cli("identify", "bo@example.com", "--attr", "plan=free", *db, *at(minutes=3))
    cli("identify", "twin@example.com", "--attr", "x=1", *db, *at(minutes=3, seconds=30))
    cli("merge", "ada.secret@example.com", "twin@example.com", *db, *at(minutes=4))
    cli("delete", "ada.secret@example.com", *db, *at(minutes=5))
    cli("identify", "cy@example.com", "--anonymous-id", "dev-1", *db, *at(minutes=6))
    exported = cli("export", *db).stdout
    for trace in ("ada.secret", "Secret Page", "ssn", "Private", "twin@"):
        assert trace not in exported
    copy = _export_and_replay(cli, tmp_path, made)
    assert _state(cli, copy) == _state(cli, made)
    cy = cli("show", "cy@example.com", "--db", str(copy), "--at", LATER, "--json")
    assert cy["anonymous_ids"] == []  # dev-1 stayed assigned to the deleted person


def test_a_workspace_older_than_the_journal_is_refused(cli: Cli, tmp_path: Path) -> None:
    """A workspace made before schema step 4 holds data whose calls are unknown."""
    old = tmp_path / "old.db"
    cli("track", "Viewed", "--anonymous-id", "a-1", "--db", str(old), "--at", T0.isoformat())
    with sqlite3.connect(old) as conn:  # back to schema 3, as an older cio-anon left it
        for table in ("journal", "devices", "suppressions", "objects", "relationships"):
            conn.execute(f"DROP TABLE {table}")
        conn.execute("DROP TABLE other_calls")
        conn.execute("PRAGMA user_version=3")
    result = cli("export", "--db", str(old), code=1)
    assert "kept no journal" in result.stderr and not result.stdout
    assert cli("log", "--db", str(old), "--json")["anonymous"]  # the data is still there


def test_export_of_an_unknown_person_is_refused(cli: Cli, tmp_path: Path) -> None:
    db = ("--db", str(tmp_path / "w.db"), "--at", T0.isoformat())
    cli("identify", "ann@example.com", *db)
    result = cli("export", "--person", "nobody@example.com", *db, code=1)
    assert "No person has the email 'nobody@example.com'" in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize(
    "operation",
    [
        Track("Viewed", None, "a-1", "page", {"url": "/x"}, "2026-03-01T09:00:00Z", "e-1"),
        Track("Paid", "ann/b@example.com", None, "event", {}, "2026-03-01T09:00:00Z", "e-2"),
        Track("Invited", None, None, "event", {"recipient": "x@example.com"}, None, "e-3"),
        Identify("u 1", {"plan": "pro", "anonymous_id": "a-1"}),
        Identify("u-1", {"plan": "pro"}, "a-2", "msg-1"),
        AnonymousTraits("a-1", {"plan": "pro"}, "msg-2"),
        MergePeople("u-1", "ann@example.com"),
        DeletePerson("deleted-00000003"),
        Purge(),
        ChangeSettings(False, T0),
    ],
    ids=lambda op: type(op).__name__,
)
def test_an_emitted_record_parses_back_to_its_operation(operation: Operation) -> None:
    record = {"at": "2026-03-01T09:00:00Z", **to_record(operation)}
    (timed,) = to_operations(record, T0)
    parsed = timed.operation
    if isinstance(operation, Identify) and operation.message_id is None:
        # Track API v1 carries the anonymous id as an attribute.
        assert parsed == Identify(operation.identifier, operation.attributes)
    else:
        assert parsed == operation


def test_a_record_undone_by_keep_going_leaves_nothing_in_the_journal(
    cli: Cli, tmp_path: Path
) -> None:
    """A v2 batch whose second item is refused is undone whole under --keep-going; the
    journal (written in bulk) must forget its first item too."""
    fixture = tmp_path / "partial.ndjson"
    ok = {"type": "person", "identifiers": {"id": "p1"}, "action": "identify"}
    refused = {"type": "person", "identifiers": {"id": "p1"}, "action": "event", "name": "x" * 101}
    lines = [
        {"at": "2026-03-01T09:00:00Z", "method": "PUT", "path": "/api/v1/customers/p0", "body": {}},
        {
            "at": "2026-03-01T09:01:00Z",
            "method": "POST",
            "path": "/api/v2/batch",
            "body": {"batch": [ok, refused]},
        },
        {"at": "2026-03-01T09:02:00Z", "method": "PUT", "path": "/api/v1/customers/p2", "body": {}},
    ]
    fixture.write_text("".join(json.dumps(line) + "\n" for line in lines))
    original = tmp_path / "original.db"
    cli("replay", str(fixture), "--keep-going", "--db", str(original), "--at", LATER, code=1)
    exported = cli("export", "--db", str(original)).stdout
    assert "/api/v2/batch" not in exported and "customers/p1" not in exported
    copy = _export_and_replay(cli, tmp_path, original)
    assert _state(cli, copy) == _state(cli, original)


def test_deleting_someone_with_devices_relationships_and_stored_calls(
    cli: Cli, tmp_path: Path
) -> None:
    """The forgetting covers every kind of call: after deleting ann (devices, a
    relationship, a segment call naming her and bo), the export holds nothing of her and
    still replays to the same workspace."""
    made = tmp_path / "made.db"
    db = ("--db", str(made))
    at = lambda **delta: ("--at", t(**delta).isoformat())  # noqa: E731
    calls = tmp_path / "calls.ndjson"
    lines = [
        ("PUT", "/api/v1/customers/ann", {"email": "ann.private@example.com"}),
        ("PUT", "/api/v1/customers/ann/devices", {"device": {"id": "tok-ann", "platform": "ios"}}),
        ("PUT", "/api/v1/customers/bo", {}),
        ("POST", "/api/v1/segments/4/add_customers", {"ids": ["ann", "bo"]}),
        (
            "POST",
            "/api/v2/entity",
            {
                "type": "object",
                "action": "identify",
                "identifiers": {"object_type_id": "1", "object_id": "acme"},
                "attributes": {"name": "Acme"},
                "cio_relationships": [
                    {"identifiers": {"id": "ann"}},
                    {"identifiers": {"id": "bo"}},
                ],
            },
        ),
    ]
    calls.write_text(
        "".join(
            json.dumps({"at": t(minutes=i).isoformat(), "method": m, "path": p, "body": b}) + "\n"
            for i, (m, p, b) in enumerate(lines)
        )
    )
    cli("replay", str(calls), *db, *at())
    cli("delete", "ann", *db, *at(minutes=10))
    exported = cli("export", *db).stdout
    assert "ann" not in exported and "tok-ann" not in exported
    copy = _export_and_replay(cli, tmp_path, made)
    assert _state(cli, copy) == _state(cli, made)
    bo = cli("show", "bo", "--db", str(copy), "--at", LATER, "--json")
    assert [r["object_id"] for r in bo["relationships"]] == ["acme"]
