"""Hostile input: always a sentence and an exit code, never a traceback, and a
rejected file or command leaves the workspace as it was."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from cio_anon.cli import app

CORPUS = Path(__file__).parent / "corpus"
runner = CliRunner()


def dump(path: Path) -> str:
    conn = sqlite3.connect(path)
    try:
        return "\n".join(conn.iterdump())
    finally:
        conn.close()


def invoke(args: list[str], db: Path) -> Any:
    result = runner.invoke(app, [*args, "--db", str(db), "--at", "2026-01-02T00:00:00Z"])
    # Typer turns an unexpected exception into exit code 1 with `exception` set
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        args,
        repr(result.exception),
    )
    assert "Traceback" not in result.output
    assert result.exit_code in (0, 1, 2), result.output
    if result.exit_code == 1:  # a sentence on stderr, or a replay summary saying what failed
        said = ("Error: ", "invalid", "expectation failed: ")
        assert result.stderr.startswith(said[0]) or any(s in result.stderr for s in said[1:]), (
            result.output
        )
    return result


@pytest.fixture
def seeded(tmp_path: Path) -> Path:
    db = tmp_path / "ws.db"
    assert (
        runner.invoke(app, ["identify", "seed", "--db", str(db), "--at", "2026-01-01"]).exit_code
        == 0
    )
    return db


# -- the corpus of inputs that found bugs -------------------------------------------

ARGS = json.loads((CORPUS / "hostile_args.json").read_text())


@pytest.mark.parametrize("case", ARGS, ids=[case["found"][:40] for case in ARGS])
def test_corpus_arguments(seeded: Path, case: dict[str, Any]) -> None:
    before = dump(seeded)
    result = invoke(case["args"], seeded)
    assert result.exit_code == case.get("exit", 1), result.output
    if result.exit_code != 0:
        assert dump(seeded) == before


RECORDS = [
    json.loads(line) for line in (CORPUS / "hostile_records.ndjson").read_text().splitlines()
]


@pytest.mark.parametrize("case", RECORDS, ids=[case["found"][:40] for case in RECORDS])
def test_corpus_records(seeded: Path, tmp_path: Path, case: dict[str, Any]) -> None:
    fixture = tmp_path / "case.ndjson"
    fixture.write_text(json.dumps(case["record"]) + "\n")
    before = dump(seeded)
    result = invoke(["replay", str(fixture)], seeded)
    assert result.exit_code == case.get("exit", 1), result.output
    if result.exit_code != 0:
        assert dump(seeded) == before


# -- generated ----------------------------------------------------------------------

nasty_text = st.one_of(
    st.text(max_size=30),
    st.sampled_from(
        [
            "",
            " ",
            "\x00",
            "'; DROP TABLE events;--",
            "cio_",
            "@",
            "a@b",
            "NaN",
            "1e999",
            "-1",
            "9" * 40,
            "2026-13-45",
            "\u202e",
            "x" * 200,
            "$.a",
            "\\",
            '"',
        ]
    ),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    nasty_text,
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(nasty_text, inner, max_size=4)
    ),
    max_leaves=12,
)
KEYS = [
    "type",
    "anonymousId",
    "userId",
    "event",
    "properties",
    "messageId",
    "timestamp",
    "receivedAt",
    "at",
    "method",
    "path",
    "body",
    "op",
    "traits",
    "name",
    "previousId",
    "anonymous_id",
    "data",
    "id",
    "identifiers",
    "action",
    "attributes",
    "batch",
    "person",
    "event",
    "events",
    "pending",
    "anonymous_merge",
    "created_at",
]
TYPES = ["track", "identify", "page", "screen", "alias", "group", None]
PATHS = [
    "/api/v1/events",
    "/api/v1/customers/a%40b.c",
    "/api/v1/customers/x/events",
    "/api/v1/merge_customers",
    "/api/v2/entity",
    "/api/v2/batch",
    "/v1/track",
    "/v1/batch",
    "/v1/identify",
    "/nope",
    "",
    "api",
]
records = st.one_of(
    json_values,
    st.dictionaries(st.sampled_from(KEYS), json_values, max_size=8),
    st.fixed_dictionaries(
        {"type": st.sampled_from(TYPES), "timestamp": scalars},
        optional={
            "anonymousId": nasty_text,
            "userId": nasty_text,
            "event": nasty_text,
            "properties": json_values,
            "traits": json_values,
            "messageId": nasty_text,
        },
    ),
    st.fixed_dictionaries(
        {
            "at": scalars,
            "method": st.sampled_from(["GET", "POST", "PUT", "DELETE", "x"]),
            "path": st.sampled_from(PATHS),
            "body": json_values,
        },
    ),
    st.fixed_dictionaries(
        {"op": st.sampled_from(["expect", "purge", "settings", "boom"])},
        optional={
            "at": scalars,
            "person": nasty_text,
            "event": nasty_text,
            "events": json_values,
            "anonymous_merge": scalars,
            "created_at": scalars,
        },
    ),
)


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    lines=st.lists(
        st.one_of(records.map(lambda r: json.dumps(r).encode()), st.binary(max_size=20)),
        min_size=1,
        max_size=5,
    )
)
@pytest.mark.slow
def test_generated_fixtures(seeded: Path, tmp_path: Path, lines: list[bytes]) -> None:
    fixture = tmp_path / "gen.ndjson"
    fixture.write_bytes(b"\n".join(lines))
    before = dump(seeded)
    result = invoke(["replay", str(fixture), "--json"], seeded)
    summary = json.loads(result.stdout)
    if summary["rejected_files"]:
        # an invalid record rejects the file: nothing of it stays
        assert dump(seeded) == before, result.output
    else:
        # only a failed expectation may make a replay of valid records exit 1
        assert result.exit_code == 0 or summary["failed_expectations"], result.output


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    command=st.sampled_from(["track", "identify", "log", "show", "explain", "merge", "purge"]),
    values=st.lists(nasty_text, min_size=1, max_size=3),
    options=st.lists(
        st.sampled_from(
            [
                "--anonymous-id",
                "--person",
                "--recipient",
                "--data",
                "--timestamp",
                "--event-id",
                "--attr",
                "--attrs",
                "--type",
                "--limit",
                "--tab",
                "--before",
            ]
        ),
        max_size=3,
    ),
    option_values=st.lists(st.one_of(nasty_text, json_values.map(json.dumps)), max_size=3),
)
@pytest.mark.slow
def test_generated_arguments(
    seeded: Path, command: str, values: list[str], options: list[str], option_values: list[str]
) -> None:
    args = [command, *values[:2]]
    for option, value in zip(options, option_values, strict=False):
        args += [option, value]
    before = dump(seeded)
    result = invoke(args, seeded)
    if result.exit_code != 0:
        assert dump(seeded) == before, (args, result.output)
