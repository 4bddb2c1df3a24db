"""At home in a shell pipeline: output read through a real pipe, user data escaped."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
AT = "2026-03-01T09:00:00Z"
LONG_EMAIL = "lee.with.a.very.long.name.for.testing.wrapping@a-long-subdomain.example.com"
LONG_ID = "anon-" + "7f3a" * 20
LATER = "2026-03-01T10:00:00Z"


def run(
    db: Path, *args: str, stdin: str | None = None, at: str | None = AT
) -> subprocess.CompletedProcess[str]:
    """`cio-anon ARGS` in a child process whose stdout is a pipe, as `| grep` gives it."""
    env = {**os.environ, "CIO_ANON_DB": str(db), "COLUMNS": "80"}
    env.pop("CIO_ANON_NOW", None)
    return subprocess.run(
        [sys.executable, "-m", "cio_anon", *args, *(() if at is None else ("--at", at))],
        capture_output=True,
        text=True,
        env=env,
        input=stdin,
        check=False,
    )


def test_piped_output_keeps_long_values_on_one_line(tmp_path: Path) -> None:
    db = tmp_path / "pipe.db"
    run(db, "track", "Viewed", "--anonymous-id", LONG_ID, "--event-id", "ev-1")
    run(db, "identify", "cust-1", "--anonymous-id", LONG_ID, "--attr", f"email={LONG_EMAIL}")
    late = run(db, "track", "Late", "--anonymous-id", LONG_ID, "--event-id", "ev-2", at=LATER)
    late.check_returncode()
    fixture = tmp_path / ("a-folder-with-a-long-name-" * 3) / "fixture.ndjson"
    fixture.parent.mkdir()
    fixture.write_text('{"type": "track", "event": "no identity", "at": 1772355600}\n')
    reads = {
        "log": run(db, "log").stdout,
        "show": run(db, "show", LONG_EMAIL).stdout,
        "people": run(db, "people").stdout,
        "explain": run(db, "explain", "ev-2").stdout,
    }
    assert any(LONG_EMAIL in line for line in reads["log"].splitlines())
    assert any(LONG_ID in line for line in reads["log"].splitlines())
    assert any(LONG_EMAIL in line for line in reads["show"].splitlines())
    assert any(LONG_EMAIL in line for line in reads["people"].splitlines())
    assert any(
        "re-identifying does not reopen the window" in line
        for line in reads["explain"].splitlines()
    )
    replayed = run(db, "replay", str(fixture))
    assert replayed.returncode == 1
    assert any(f"{fixture}:1:" in line for line in replayed.stderr.splitlines())
    assert f"{fixture}:1:" not in replayed.stdout  # diagnostics go to stderr


def test_warnings_go_to_stderr(tmp_path: Path) -> None:
    db = tmp_path / "w.db"
    run(db, "identify", "ann", "--anonymous-id", "a")
    late = run(db, "track", "x", "--anonymous-id", "a", at="2026-03-01T10:00:00Z")
    assert "Stored" in late.stdout and "! window_closed" not in late.stdout
    assert late.stderr.startswith("! window_closed:")


def test_user_data_is_escaped(tmp_path: Path) -> None:
    db = tmp_path / "esc.db"
    run(db, "identify", "[bold red]x[/]").check_returncode()
    run(db, "track", "\x1b]0;pwned\x07\x1b[31mred", "--person", "[bold red]x[/]").check_returncode()
    people = run(db, "people").stdout
    assert "[bold red]x[/]" in people
    log = run(db, "log").stdout
    assert "\x1b" not in log and "\x07" not in log
    assert "\\x1b]0;pwned\\x07\\x1b[31mred" in log
    doc = json.loads(run(db, "log", "--json").stdout)
    (event,) = [row for row in doc["identified"] if row["type"] == "event"]
    assert event["name"] == "\x1b]0;pwned\x07\x1b[31mred"  # JSON keeps the data as it is
    # an error quoting the user's data (here a file's name): escaped as well, and a
    # usage error (exit 2) as much as a domain error (exit 1)
    for args, code in ((("replay", "\x1b]0;pwned\x07.ndjson"), 2), (("show", "\x1b[2J"), 1)):
        refused = run(db, *args)
        assert refused.returncode == code, refused.stderr
        assert refused.stderr.startswith("Error: ") and refused.stderr.count("\n") == 1
        assert "\x1b" not in refused.stderr and "\x07" not in refused.stderr, refused.stderr
        assert args[1].replace("\x1b", "\\x1b").replace("\x07", "\\x07") in refused.stderr


def test_every_help_screen_shows_an_example_and_exit_codes() -> None:
    from typer.testing import CliRunner

    from cio_anon.cli import app
    from tests.test_cli import _commands

    runner = CliRunner()
    screens = [[], ["plan"], *[name.split() for name in _commands()]]
    assert len(screens) >= 18
    for words in screens:
        shown = runner.invoke(app, [*words, "--help"], env={"COLUMNS": "100"})
        assert shown.exit_code == 0, words
        assert "Examples:\n" in shown.stdout and "    $ cio-anon " in shown.stdout, words
        if words != ["plan"]:
            assert "Exit codes: 0 " in shown.stdout, words


def test_version(tmp_path: Path) -> None:
    from importlib.metadata import version

    shown = run(tmp_path / "unused.db", "--version", at=None)
    assert shown.stdout == f"cio-anon {version('cio-anon')}\n"
    assert not (tmp_path / "unused.db").exists()


def test_replay_and_check_read_stdin(tmp_path: Path) -> None:
    db = tmp_path / "stdin.db"
    records = (
        '{"type": "track", "anonymousId": "a", "event": "Viewed", "messageId": "m1", '
        '"receivedAt": "2026-03-01T09:00:00Z"}\n'
        '{"type": "track", "event": "no identity", "receivedAt": "2026-03-01T09:00:00Z"}\n'
    )
    replayed = run(db, "replay", "-", "--json", "--keep-going", stdin=records)
    assert replayed.returncode == 1
    summary = json.loads(replayed.stdout)
    assert summary["files"] == ["<stdin>"] and summary["applied"] == 1
    assert summary["invalid"][0].startswith("<stdin>:2: ")
    checked = run(db, "check", "-", "--format", "json", stdin=records.splitlines()[0])
    assert checked.returncode == 0, checked.stderr
    assert json.loads(checked.stdout)["fixtures"] == ["<stdin>"]


def test_json_keys_are_always_present(tmp_path: Path) -> None:
    db = tmp_path / "keys.db"
    run(db, "track", "x", "--anonymous-id", "a", "--event-id", "anon")
    run(db, "identify", "ann")
    run(db, "track", "y", "--person", "ann", "--event-id", "mine")
    anon = json.loads(run(db, "explain", "anon", "--json").stdout)
    mine = json.loads(run(db, "explain", "mine", "--json").stdout)
    assert set(anon) == set(mine) and anon["campaign"] is None and mine["campaign"]
    assert set(anon["facts"]) == set(mine["facts"])
    rows = json.loads(run(db, "log", "--json").stdout)
    shapes = {frozenset(row) for tab in ("identified", "anonymous") for row in rows[tab]}
    assert len(shapes) == 1  # events and other activities: the same keys


def test_conflicting_options_are_a_usage_error(tmp_path: Path) -> None:
    fixture = tmp_path / "f.ndjson"
    fixture.write_text('{"type": "track", "anonymousId": "a", "event": "x", "at": 1772355600}\n')
    done = run(tmp_path / "c.db", "check", str(fixture), "--json", "--format", "junit")
    assert done.returncode == 2 and "conflict" in done.stderr and done.stdout == ""
    for command in ("log", "people"):
        done = run(tmp_path / "c.db", command, "--json", "--format", "csv")
        assert done.returncode == 2 and "conflict" in done.stderr and done.stdout == ""


def _story(db: Path) -> None:
    """A merged event, one left anonymous by the window, another anonymous id; names and
    data with what CSV must quote or neutralise."""
    calls = [
        ("track", "=HYPERLINK(1)", "--anonymous-id", LONG_ID, "--event-id", "ev-1"),
        ("identify", "cust-1", "--anonymous-id", LONG_ID, "--attr", f"email={LONG_EMAIL}"),
        ("track", "Late, with a comma", "--anonymous-id", LONG_ID, "--event-id", "ev-2"),
        ("track", "Other", "--anonymous-id", "a-2", "--data", '{"note": "two\\nlines"}'),
    ]
    for index, call in enumerate(calls):
        run(db, *call, at=LATER if index == 2 else AT).check_returncode()


def test_log_and_people_as_ndjson_hold_the_json_rows(tmp_path: Path) -> None:
    db = tmp_path / "nd.db"
    _story(db)
    document = json.loads(run(db, "log", "--json").stdout)
    lines = run(db, "log", "--format", "ndjson").stdout.splitlines()
    records = [json.loads(line) for line in lines]
    assert [r.pop("tab") for r in records] == ["identified"] * len(document["identified"]) + [
        "anonymous"
    ] * len(document["anonymous"])
    assert records == document["identified"] + document["anonymous"]
    people = [
        json.loads(line) for line in run(db, "people", "--format", "ndjson").stdout.splitlines()
    ]
    assert people == json.loads(run(db, "people", "--json").stdout)["people"]


def test_log_and_people_as_csv_read_back_in_a_csv_reader(tmp_path: Path) -> None:
    db = tmp_path / "csv.db"
    _story(db)
    rows = list(csv.DictReader(io.StringIO(run(db, "log", "--format", "csv").stdout, newline="")))
    by_event = {row["event_id"]: row for row in rows if row["event_id"]}
    assert by_event["ev-1"]["name"] == "'=HYPERLINK(1)"  # not run as a formula
    assert by_event["ev-1"]["person_email"] == LONG_EMAIL
    assert by_event["ev-1"]["previously_anonymous"] == "true"
    assert by_event["ev-1"]["timestamp"] == AT
    assert by_event["ev-2"]["name"] == "Late, with a comma"
    assert by_event["ev-2"]["tab"] == "anonymous" and by_event["ev-2"]["rule"] == "window_closed"
    other = next(row for row in rows if row["anonymous_id"] == "a-2")
    assert json.loads(other["data"]) == {"note": "two\nlines"}
    assert other["person_email"] == ""  # null
    assert len(rows) == sum(
        len(v) for k, v in json.loads(run(db, "log", "--json").stdout).items() if k != "next"
    )
    people = list(
        csv.DictReader(io.StringIO(run(db, "people", "--format", "csv").stdout, newline=""))
    )
    assert [(p["id"], p["email"], p["events"]) for p in people] == [("cust-1", LONG_EMAIL, "1")]


def test_a_page_of_csv_names_the_next_cursor_on_stderr(tmp_path: Path) -> None:
    db = tmp_path / "page.db"
    _story(db)
    first = run(db, "log", "--format", "csv", "--tab", "identified", "--limit", "1")
    assert len(list(csv.reader(io.StringIO(first.stdout)))) == 2  # header and one row
    (note,) = first.stderr.splitlines()
    cursor = note.split("--before ", 1)[1]
    rest = run(db, "log", "--format", "csv", "--tab", "identified", "--before", cursor)
    assert rest.returncode == 0 and len(list(csv.reader(io.StringIO(rest.stdout)))) > 1


def test_commands_import_only_what_they_run(tmp_path: Path) -> None:
    """Start-up: `--help` and everyday commands leave the HTTP stack, the plan
    machinery and the schema tool unimported, and Rich too when what they print goes
    to a pipe or a file (lines of text are written as Rich would write them there);
    `check` and `diff` print their reports for CI without Rich."""
    db = tmp_path / "imports.db"
    run(db, "track", "Viewed", "--anonymous-id", "a").check_returncode()
    heavy = ("starlette", "uvicorn", "jsonschema", "yaml", "sqlite_utils", "duckdb", "jinja2")
    heavy += ("cio_anon.server", "cio_anon.web", "cio_anon.audit", "rich")
    everyday = [("--help",), ("track", "Viewed", "--anonymous-id", "a"), ("log", "--json")]
    everyday += [("identify", "u1", "--anonymous-id", "a", "--attr", "plan=pro")]
    for args in everyday:
        assert not _imported(db, args, heavy), args
    journey = str(FIXTURES / "shopper.ndjson")
    for_ci = [("check", journey, "--format", fmt) for fmt in ("json", "github", "sarif")]
    for_ci += [("check", str(FIXTURES / "invite.ndjson")), ("diff", journey, journey)]
    for args in for_ci:
        assert not _imported(db, args, ("rich",)), args


def _imported(db: Path, args: tuple[str, ...], heavy: tuple[str, ...]) -> list[str]:
    """The modules named by `heavy` (or under them) that the command imports."""
    env = {**os.environ, "CIO_ANON_DB": str(db)}
    env.pop("CIO_ANON_NOW", None)
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "cio_anon", *args],
        capture_output=True,
        text=True,
        env=env,
    )
    assert done.returncode in (0, 1), done.stderr[-2000:]
    imported = {line.split("|")[-1].strip() for line in done.stderr.splitlines()}
    return sorted(m for m in imported if m.split(".")[0] in heavy or m.startswith(heavy))


def _many(tmp_path: Path) -> Path:
    """A workspace of 3,000 anonymous events."""
    db = tmp_path / "many.db"
    fixture = tmp_path / "many.ndjson"
    fixture.write_text(
        "".join(
            json.dumps(
                {
                    "type": "track",
                    "anonymousId": f"a{i}",
                    "event": "Viewed",
                    "messageId": f"m{i}",
                    "receivedAt": 1_772_000_000 + i,
                }
            )
            + "\n"
            for i in range(3_000)
        )
    )
    run(db, "replay", str(fixture)).check_returncode()
    return db


def test_a_reader_that_stops_reading_ends_the_command_quietly(tmp_path: Path) -> None:
    """`cio-anon export | head -1` through a real shell pipe: the reader closes it after
    one line; the command stops without a traceback and exits 141, as git and jq do."""
    db = _many(tmp_path)
    env = {**os.environ, "CIO_ANON_DB": str(db)}
    for command in ("export", "export --json", "log --format ndjson --limit 3000"):
        shell = f'{sys.executable} -m cio_anon {command} | head -1; echo "exit ${{PIPESTATUS[0]}}"'
        done = subprocess.run(
            ["bash", "-c", shell], capture_output=True, text=True, env=env, check=True
        )
        first, status = done.stdout.splitlines()
        assert first.strip(), command
        assert status == "exit 141", command
        assert done.stderr == "", command


@pytest.mark.skipif(not hasattr(signal, "SIGSTOP"), reason="no job control here")
def test_output_stopped_and_continued_comes_out_whole(tmp_path: Path) -> None:
    """`log --json` (one document, written at once) into a slow pipe, stopped and
    continued again and again (Ctrl-Z, `fg`) with Python unbuffered (`PYTHONUNBUFFERED`,
    as many containers set it): every byte comes out, the same as when it runs
    undisturbed, and it exits 0. (Lines shorter than the pipe's atomic write, as `export`
    writes them, were never cut.)"""
    db = _many(tmp_path)
    env = {**os.environ, "CIO_ANON_DB": str(db), "PYTHONUNBUFFERED": "1"}
    line = [sys.executable, "-m", "cio_anon", "log", "--json", "--limit", "3000"]
    undisturbed = subprocess.run(line, capture_output=True, env=env, check=True).stdout
    child = subprocess.Popen(line, stdout=subprocess.PIPE, env=env)
    done = threading.Event()

    def stop_and_continue() -> None:
        while not done.wait(0.001):
            child.send_signal(signal.SIGSTOP)
            child.send_signal(signal.SIGCONT)

    poking = threading.Thread(target=stop_and_continue)
    poking.start()
    read = bytearray()
    try:
        assert child.stdout is not None
        while chunk := child.stdout.read(16_384):
            read += chunk
            time.sleep(0.001)  # a slow reader: the pipe stays full
    finally:
        child.wait()
        done.set()
        poking.join()
    assert child.returncode == 0
    assert len(undisturbed) > 10 * 2**16  # (ten times what a pipe holds by default)
    assert bytes(read) == undisturbed
