"""A few CLI tests per command, asserting on --json; errors and exit codes."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import typer.main

from cio_anon.cli import app

Cli = Callable[..., Any]
AT = ("--at", "2026-03-01T09:00:00Z")


def at(text: str) -> tuple[str, str]:
    return ("--at", text)


def _commands() -> dict[str, Any]:
    """Every command, subcommands of groups (`plan infer`) included."""
    found: dict[str, Any] = {}

    def walk(prefix: str, command: Any) -> None:
        subcommands = getattr(command, "commands", None)
        if subcommands is None:
            found[prefix] = command
            return
        for name, sub in subcommands.items():
            walk(f"{prefix} {name}".strip(), sub)

    walk("", typer.main.get_command(app))
    return found


def test_every_command_has_help() -> None:
    commands = _commands()
    assert {
        "init",
        "settings",
        "track",
        "identify",
        "merge",
        "purge",
        "log",
        "show",
        "people",
        "explain",
        "replay",
        "demo",
        "delete",
        "serve",
        "check",
        "plan infer",
    } <= set(commands)
    for name, command in commands.items():
        assert command.help and command.help.strip(), f"{name} has no help"
        for param in command.params:
            if param.name not in ("help",) and getattr(param, "param_type_name", "") == "option":
                assert getattr(param, "help", None), f"{name} {param.name} has no help"


NO_WORKSPACE = {"check", "diff", "plan infer"}
"""Commands that replay into a throwaway workspace, or open none: no --db to ignore."""


def test_every_command_takes_db_at_json(cli: Cli, tmp_path: Path) -> None:
    """One name per concept, and an option that would do nothing is refused (exit 2)."""
    for name, command in _commands().items():
        options = {opt for p in command.params for opt in p.opts}
        assert {"--at", "--json"} <= options, name
        assert ("--db" in options) == (name not in NO_WORKSPACE), name
    fixture = str(tmp_path / "x.ndjson")
    for args in (("diff", fixture, fixture), ("check", fixture), ("plan", "infer", fixture)):
        refused = cli(*args, "--db", "x.db", code=2)
        assert "No such option: --db" in refused.output, args


def test_the_anonymous_story(cli: Cli) -> None:
    cli(
        "track",
        "Product Viewed",
        "--anonymous-id",
        "a-1",
        "--event-id",
        "e1",
        "--data",
        '{"sku": "X1"}',
        *at("2026-03-01T09:00:00Z"),
        "--json",
    )
    tracked = cli(
        "track",
        "Added to Cart",
        "--anonymous-id",
        "a-1",
        "--event-id",
        "e2",
        *at("2026-03-01T09:02:00Z"),
        "--json",
    )
    assert (tracked["status"], tracked["rule"]) == ("anonymous", "anonymous")
    ident = cli(
        "identify",
        "ann@example.com",
        "--anonymous-id",
        "a-1",
        "--attr",
        "name=Ann",
        *at("2026-03-02T10:00:00Z"),
        "--json",
    )
    assert ident["rule"] == "merged_on_identify" and ident["merged_count"] == 2
    late = cli(
        "track",
        "Late",
        "--anonymous-id",
        "a-1",
        "--event-id",
        "e3",
        *at("2026-03-02T10:06:00Z"),
        "--json",
    )
    assert late["rule"] == "window_closed"
    assert [w["rule"] for w in late["warnings"]] == ["window_closed"]

    log = cli("log", *at("2026-03-02T11:00:00Z"), "--json")
    events = [row for row in log["identified"] if row["type"] == "event"]
    assert {row["event_id"] for row in events} == {"e1", "e2"}
    assert all(row["previously_anonymous"] and row["provenance"] == "merged" for row in events)
    assert all(row["person"]["email"] == "ann@example.com" for row in events)
    merge_rows = [row for row in log["identified"] if row["type"] == "anon_merge"]
    assert merge_rows[0]["data"] == {
        "count": 2,
        "oldest_timestamp": 1772355600,
        "anonymous_id": "a-1",
    }
    (pending,) = log["anonymous"]
    assert pending["event_id"] == "e3" and pending["person"] is None
    assert pending["retention_expires_at"] == 1772445960 + 30 * 86400

    profile = cli("show", "ann@example.com", *AT, "--json")
    assert profile["events"] == {
        "total": 2,
        "merged": 2,
        "tracked": 0,
        "inherited": 0,
        "campaign_eligible": 2,
    }
    assert profile["anonymous_ids"] == [{"anonymous_id": "a-1", "assigned_at": 1772445600}]
    assert profile["person"]["attributes"] == {"name": "Ann", "anonymous_id": "a-1"}

    why = cli("explain", "e3", *at("2026-03-02T11:00:00Z"), "--json")
    assert (why["status"], why["rule"]) == ("anonymous", "window_closed")
    assert why["facts"]["window_closes_at"] == 1772445600 + 300
    # the same facts as the log's row, and past its retention the rule purge acts on
    assert why["facts"]["retention_expires_at"] == pending["retention_expires_at"]
    assert why["facts"]["anonymous_id"] == pending["anonymous_id"] == "a-1"
    aged = cli("explain", "e3", *at("2026-04-02T00:00:00Z"), "--json")
    assert (aged["status"], aged["rule"]) == ("anonymous", "retention_expired")
    assert aged["facts"]["retention_expires_at"] == pending["retention_expires_at"]
    doomed = cli("purge", "--dry-run", *at("2026-04-02T00:00:00Z"), "--json")
    assert (doomed["deleted"], doomed["by_anonymous_id"]) == (1, {"a-1": 1})

    people = cli("people", *AT, "--json")
    assert [p["email"] for p in people["people"]] == ["ann@example.com"]
    assert people["people"][0]["events"] == 2


def test_log_filters_and_limit(cli: Cli) -> None:
    cli("identify", "ann", *AT)
    cli("identify", "bob", *AT)
    for index in range(5):
        cli(
            "track",
            f"step {index}",
            "--person",
            "ann",
            "--type",
            "page",
            *at(f"2026-03-01T10:0{index}:00Z"),
        )
    cli("track", "other", "--person", "bob", *at("2026-03-01T11:00:00Z"))
    cli("track", "invite", "--recipient", "x@example.com", *at("2026-03-01T11:00:00Z"))
    page = cli(
        "log",
        "--person",
        "ann",
        "--type",
        "page",
        "--limit",
        "3",
        "--tab",
        "identified",
        *at("2026-03-01T12:00:00Z"),
        "--json",
    )
    assert "anonymous" not in page
    assert [row["name"] for row in page["identified"]] == ["step 4", "step 3", "step 2"]
    older = cli(
        "log",
        "--person",
        "ann",
        "--type",
        "page",
        "--limit",
        "3",
        "--before",
        page["next"]["identified"],
        *at("2026-03-01T12:00:00Z"),
        "--json",
    )
    assert [row["name"] for row in older["identified"]] == ["step 1", "step 0"]
    assert older["next"]["identified"] is None
    invites = cli("log", "--tab", "anonymous", "--type", "invite", *AT, "--json")
    assert [row["type"] for row in invites["anonymous"]] == ["invite"]
    assert invites["anonymous"][0]["retention_expires_at"] is None  # never purged


def test_paging_through_a_tab_returns_every_row_once_in_order(cli: Cli) -> None:
    """Events and activities share timestamps here; the cursor must not skip or repeat."""
    cli("identify", "ann", "--attr", "plan=a", *AT)
    for index in range(7):
        cli("track", f"e{index}", "--person", "ann", "--event-id", f"id{index}", *AT)
        cli("identify", "ann", "--attr", f"plan={index}", *AT)
        cli("track", f"x{index}", "--anonymous-id", "z", "--event-id", f"z{index}", *AT)
    everything = cli("log", "--limit", "1000", *AT, "--json")
    for tab in ("identified", "anonymous"):
        seen, cursor = [], None
        while True:
            extra = ("--before", cursor) if cursor else ("--tab", tab)
            page = cli("log", "--limit", "4", *extra, *AT, "--json")
            seen += page[tab]
            cursor = page["next"][tab]
            if cursor is None:
                break
        assert seen == everything[tab]
        assert len(seen) == (7 if tab == "anonymous" else 1 + 1 + 7 + 7)


def test_a_bad_cursor_is_a_sentence(cli: Cli) -> None:
    cli("identify", "ann", *AT)
    result = cli("log", "--before", "i:nope", *AT, code=1)
    assert "is not one that log printed" in result.stderr


def test_log_text_marks_previously_anonymous(cli: Cli) -> None:
    cli("track", "Viewed", "--anonymous-id", "a", *AT)
    cli("identify", "ann", "--anonymous-id", "a", *AT)
    cli("track", "Lost", "--anonymous-id", "other", *AT)
    out = cli("log", *AT).stdout
    assert "Identified" in out and "Anonymous" in out
    assert "was anonymous" in out
    assert "Anonymous Data Merged: 1 event(s) from a" in out
    assert "30d 0h left" in out


def test_show_merges_and_text(cli: Cli) -> None:
    cli("identify", "web@example.com", "--attr", "plan=free", *AT)
    cli("identify", "app-1", "--attrs", '{"plan": "pro", "city": "Oslo"}', *AT)
    cli("track", "Opened", "--person", "app-1", *AT)
    dry = cli("merge", "web@example.com", "app-1", "--dry-run", *AT, "--json")
    assert dry["dry_run"] and dry["counts"] == {"moved": 1, "dropped": 0, "filled": 2}
    assert cli("show", "app-1", *AT, "--json")["events"]["total"] == 1  # still there
    done = cli("merge", "web@example.com", "app-1", *AT, "--json")
    assert done["counts"] == dry["counts"]
    profile = cli("show", "web@example.com", *AT, "--json")
    # the secondary is gone; its id now names the primary, who lacked one
    assert cli("show", "app-1", *AT, "--json")["person"]["email"] == "web@example.com"
    assert len(cli("people", *AT, "--json")["people"]) == 1
    assert profile["person"]["attributes"] == {"plan": "free", "city": "Oslo"}
    assert profile["merges"][0]["type"] == "profile_merge"
    text = cli("show", "web@example.com", *AT).stdout
    assert "Merged app-1: 1 moved, 0 dropped, 2 filled" in text


def test_merge_text_tells_the_two_apart_when_the_primary_takes_the_email(cli: Cli) -> None:
    cli("identify", "ann", *AT)
    cli("identify", "ann.web@example.com", *AT)
    out = cli("merge", "ann", "ann.web@example.com", *AT).stdout
    # the primary is labelled by the email it took from the secondary: their ids tell
    assert out.splitlines()[0] == (
        "Merged ann.web@example.com (cio_00000002) into ann.web@example.com (cio_00000001)"
    )


def test_settings_and_init(cli: Cli, tmp_path: Path) -> None:
    db = str(tmp_path / "old.db")
    made = cli("init", "--db", db, "--created-at", "2021-03-01", *AT, "--json")
    assert made == {"created_at": 1614556800, "anonymous_merge": False}
    cli("init", "--db", db, *AT, code=1)
    assert cli("settings", "--db", db, "--anonymous-merge", *AT, "--json")["anonymous_merge"]
    assert cli("settings", "--db", db, *AT, "--json")["anonymous_merge"] is True
    fresh = cli("init", "--db", db, "--force", *AT, "--json")
    assert fresh == {"created_at": 1772355600, "anonymous_merge": True}


def test_purge_reports_counts(cli: Cli) -> None:
    cli("track", "Old", "--anonymous-id", "a", "--timestamp", "2026-01-01", *AT)
    cli("track", "Old2", "--anonymous-id", "a", "--timestamp", "1767225600", *AT)
    cli("track", "New", "--anonymous-id", "b", *AT)
    dry = cli("purge", "--dry-run", *AT, "--json")
    assert dry["by_anonymous_id"] == {"a": 2} and dry["dry_run"]
    done = cli("purge", *AT, "--json")
    assert (done["deleted"], done["rule"]) == (2, "retention_expired")
    assert cli("purge", *AT, "--json")["deleted"] == 0
    assert cli("purge", *AT).stdout.strip() == (
        "Nothing to delete: no anonymous event has stayed unmerged past the 30-day retention."
    )


def test_clock_from_environment(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CIO_ANON_NOW", "1772355600")
    cli("track", "x", "--anonymous-id", "a", "--event-id", "env-time")
    row = cli("log", "--json")["anonymous"][0]
    assert row["received_at"] == 1772355600


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (
            ("track", "x", "--anonymous-id", "a", "--data", "{bad"),
            1,
            "--data value is not valid JSON",
        ),
        (("track", "x", "--anonymous-id", "a", "--data", "[1]"), 1, "must be a JSON object"),
        (("track", "x", "--anonymous-id", "a", "--at", "yesterday"), 1, "not ISO-8601"),
        (("track", "x", "--anonymous-id", "a", "--timestamp", "1e15"), 1, "milliseconds"),
        (("track", "x", "--person", "nobody"), 1, "No person has the id 'nobody'"),
        (("track", "x" * 101, "--anonymous-id", "a"), 1, "at most 100 bytes"),
        (("track", "x"), 2, "exactly one of"),
        (("track", "x", "--anonymous-id", "a", "--person", "p"), 2, "exactly one of"),
        (("track", "x", "--anonymous-id", "a", "--type", "click"), 2, "click"),
        (("identify", "ann", "--attr", "novalue"), 1, "not KEY=VALUE"),
        (("identify", "ann", "--attrs", '{"a": NaN}'), 1, "--attrs value is not valid JSON"),
        (("identify", "ann", "--attrs", '{"bio": "' + "x" * 1001 + '"}'), 1, "1000 bytes"),
        (("log", "--tab", "other"), 2, "'other' is not one of 'identified', 'anonymous'"),
        (("log", "--limit", "0"), 2, "--limit"),
        (("log", "--type", "click"), 2, "'click' is not one of"),
        (("people", "--limit", "0"), 2, "--limit"),
        (("explain", "nope"), 1, "No event has the id 'nope' in this workspace. A call that"),
        (("merge", "a", "b"), 1, "No person"),
    ],
)
def test_bad_input_is_one_sentence(
    cli: Cli, tmp_path: Path, args: tuple[str, ...], code: int, message: str
) -> None:
    if args[0] in ("log", "explain", "merge"):
        cli("identify", "seed", *AT)
    before = _snapshot(tmp_path / "cli.db")
    result = cli(*args, code=code)
    assert message in result.stderr
    assert result.stdout == ""
    assert _snapshot(tmp_path / "cli.db") == before


def _snapshot(path: Path) -> bytes | None:
    if not path.exists():
        return None
    import sqlite3

    conn = sqlite3.connect(path)
    try:
        return "\n".join(conn.iterdump()).encode()
    finally:
        conn.close()


def test_reading_a_missing_workspace_says_so(cli: Cli, tmp_path: Path) -> None:
    result = cli("log", "--db", str(tmp_path / "none.db"), code=1)
    assert "There is no workspace" in result.stderr
    assert not (tmp_path / "none.db").exists()


def test_module_entry_point_runs(tmp_path: Path) -> None:
    env = {**os.environ, "CIO_ANON_DB": str(tmp_path / "m.db")}
    done = subprocess.run(
        [sys.executable, "-m", "cio_anon", "track", "x", "--anonymous-id", "a", "--json"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert '"status": "anonymous"' in done.stdout


def test_delete_removes_the_person_and_scrubs_the_file(cli: Cli, tmp_path: Path) -> None:
    db = tmp_path / "private.db"
    secret = "ada.secret@example.com"
    cli("identify", "anonymous", "--db", str(db), *AT)  # someone else stays
    for _ in range(30):
        cli(
            "track",
            "Viewed",
            "--anonymous-id",
            "dev-9",
            "--data",
            json.dumps({"note": secret}),
            "--db",
            str(db),
            *AT,
        )
    cli(
        "identify",
        secret,
        "--anonymous-id",
        "dev-9",
        "--attr",
        f"backup={secret}",
        "--db",
        str(db),
        *AT,
    )
    cli(
        "track",
        "Bought",
        "--person",
        secret,
        "--data",
        json.dumps({"to": secret}),
        "--db",
        str(db),
        *AT,
    )

    def dump() -> list[str]:
        with contextlib.closing(sqlite3.connect(db)) as conn:
            return list(conn.iterdump())

    before = dump()
    shown = cli("delete", secret, "--dry-run", "--db", str(db), *AT, "--json")
    assert (shown["dry_run"], shown["deleted"]["events"], shown["assignments_kept"]) == (
        True,
        31,
        1,
    )
    assert (
        "Nothing was changed (--dry-run)"
        in cli("delete", secret, "--dry-run", "--db", str(db), *AT).stdout
    )
    assert cli("show", secret, "--db", str(db), *AT, "--json")["events"]["total"] == 31
    assert dump() == before  # not a row changed, the journal included
    done = cli("delete", secret, "--db", str(db), *AT, "--json")
    assert done["deleted"] == shown["deleted"] and not done["dry_run"]
    assert done["deleted"]["events"] == 31 and done["deleted"]["assignments"] == 0
    assert done["assignments_kept"] == 1  # the id stays assigned, naming nobody
    cli("show", secret, "--db", str(db), *AT, code=1)
    assert cli("people", "--db", str(db), *AT, "--json")["people"][0]["id"] == "anonymous"
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("private"))
    assert secret.encode() not in raw


def test_one_name_for_the_human_format_and_counts_with_separators(cli: Cli, tmp_path: Path) -> None:
    cli("track", "Viewed", "--anonymous-id", "a", *AT)
    for command in ("log", "people"):
        text = cli(command, "--format", "text", *AT).stdout
        assert text == cli(command, "--format", "table", *AT).stdout == cli(command, *AT).stdout
    many = tmp_path / "many.ndjson"
    many.write_text(
        "".join(
            json.dumps(
                {
                    "type": "track",
                    "anonymousId": f"a{i}",
                    "event": "x",
                    "receivedAt": 1772000000 + i,
                }
            )
            + "\n"
            for i in range(1_200)
        )
    )
    out = cli("replay", str(many), "--db", str(tmp_path / "many.db")).stdout
    assert "1,200" in out and "1200" not in out
