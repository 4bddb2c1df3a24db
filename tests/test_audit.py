"""`cio-anon audit` on DuckDB against `replay`, event by event, in every export format
teams keep: NDJSON, gzipped NDJSON, a JSON array, Parquet; files, globs and folders."""

from __future__ import annotations

import gzip
import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from cio_anon import audit
from cio_anon.audit.exports import Export
from cio_anon.clock import from_unix
from cio_anon.errors import InvalidInput
from tests.pyclients import PythonClients
from tests.test_setrules import _message, _stream, engine_placements, together

Cli = Callable[..., Any]
ROOT = Path(__file__).resolve().parent.parent


def _write(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_the_shopper_fixture_agrees_with_replay(tmp_path: Path) -> None:
    shopper = ROOT / "fixtures" / "shopper.ndjson"
    records = [json.loads(line) for line in shopper.read_text().splitlines() if line.strip()]
    messages = [r for r in records if "op" not in r]
    assert audit.placements([shopper]) == engine_placements(tmp_path, messages)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(specs=_stream())
@pytest.mark.slow
def test_generated_streams_agree_with_replay(tmp_path: Path, specs: list[dict[str, Any]]) -> None:
    records = [_message(spec) for spec in specs]
    export = _write(tmp_path / "stream.ndjson", records)
    assert audit.placements([export]) == engine_placements(tmp_path, records)


def test_people_named_by_email_are_the_people_who_have_it(tmp_path: Path) -> None:
    """An email sent as the userId names whoever has that email (case aside): the first
    userId that sent it as traits.email, or the person it created; an identify with an
    anonymousId and no userId is traits for that id, not an identify."""

    def message(kind: str, at: int, **fields: Any) -> dict[str, Any]:
        extra = {"event": "x"} if kind == "track" else {}
        return {"type": kind, "receivedAt": 1_772_000_000 + at, **extra, **fields}

    records = [
        message("track", 0, anonymousId="a1", messageId="m1"),
        message("identify", 10, userId="u1", anonymousId="a1", traits={"email": "Lee@x.io"}),
        message("track", 20, anonymousId="a2", messageId="m2"),
        message("identify", 30, userId="lee@x.io", anonymousId="a2"),
        message("track", 40, userId="LEE@x.io", messageId="m3"),
        message("track", 50, userId="dee@x.io", messageId="m4"),
        message("identify", 60, userId="u2", anonymousId="a3", traits={"email": "dee@x.io"}),
        message("track", 70, anonymousId="a3", messageId="m5"),
        message("identify", 80, traits={"email": "kim@x.io"}),
        message("identify", 90, anonymousId="a4", traits={"email": "kim@x.io"}),
        message("track", 95, anonymousId="a4", messageId="m6"),
    ]
    export = _write(tmp_path / "e.ndjson", records)
    placed = audit.placements([export])
    assert placed == engine_placements(tmp_path, records)
    assert {p.event_id: p.person for p in placed} == {
        "m1": "u1",
        "m2": "u1",
        "m3": "u1",
        "m4": "dee@x.io",
        "m5": "u2",
        "m6": None,
    }


def test_calls_beyond_customerios_limits_are_refused_as_a_replay_refuses_them(
    cli: Cli, tmp_path: Path
) -> None:
    """A call breaking a limit is refused whole: its events are not stored, its identify
    assigns nothing (the next identify gets the id) — `replay --keep-going` alike."""

    def message(kind: str, at: int, **fields: Any) -> dict[str, Any]:
        return {"type": kind, "receivedAt": 1_772_000_000 + at, **fields}

    records = [
        message("track", 0, anonymousId="a1", event="x", messageId="m1"),
        message("identify", 10, userId="u1", anonymousId="a1", traits={"bio": "b" * 1001}),
        message("identify", 20, userId="u2", anonymousId="a1", traits={"bio": "b" * 1000}),
        message("track", 30, anonymousId="a2", event="e" * 101, messageId="m2"),
        message("track", 40, anonymousId="a2", event="ok", messageId="m3"),
        message("identify", 50, userId="u3", anonymousId="a2", traits={"k" * 151: 1}),
        message(
            "page",
            60,
            anonymousId="a3",
            messageId="m4",
            properties={"url": "https://example.com/" + "p" * 90},
        ),
        message("track", 70, userId="u" * 151, event="x", messageId="m5"),
        message(
            "track",
            80,
            anonymousId="a3",
            event="big",
            messageId="m6",
            properties={"blob": "z" * 100_001},
        ),
        message("track", 90, anonymousId="a4", event="x", messageId="m7"),
        # RudderStack's identify: its traits in context.traits
        message("identify", 95, userId="u4", anonymousId="a4", context={"traits": {"k" * 151: 1}}),
    ]
    export = _write(tmp_path / "e.ndjson", records)
    placed = audit.placements([export])
    assert placed == engine_placements(tmp_path, records, keep_going=True)
    assert {p.event_id: (p.rule, p.person) for p in placed} == {
        "m1": ("merged_on_identify", "u2"),
        "m3": ("anonymous", None),
        "m7": ("anonymous", None),
    }
    report = json.loads(cli("audit", str(export), "--json", code=1).stdout)
    (finding,) = [f for f in report["findings"] if f["code"] == "limit_exceeded"]
    assert finding["record"] == 2 and "7 record(s)" in finding["message"]
    assert "'bio' is 1001 bytes" in finding["message"]


def test_every_format_gives_the_same_placements(tmp_path: Path) -> None:
    import sys

    sys.path.insert(0, str(ROOT / "bench"))
    from make_fixture import records as generated

    records = [r for r in generated(3_000, seed=11) if "method" not in r]
    ndjson = _write(tmp_path / "day.ndjson", records)
    expected = audit.placements([ndjson])
    assert expected == engine_placements(tmp_path, records)
    zipped = tmp_path / "day.ndjson.gz"
    zipped.write_bytes(gzip.compress(ndjson.read_bytes()))
    array = tmp_path / "day.json"
    array.write_text(json.dumps(records))
    parquet = tmp_path / "day.parquet"
    duck = audit.DuckDB()
    duck.conn.execute(
        f"COPY (SELECT * FROM read_json_auto('{ndjson}', format = 'newline_delimited')) "
        f"TO '{parquet}' (FORMAT parquet)"
    )
    duck.close()
    for export in (zipped, array, parquet):
        assert audit.placements([export]) == expected, export.name
    # an export split in parts, named by a glob or by its folder, is one stream
    parts = tmp_path / "archive" / "2026-03-01"
    parts.mkdir(parents=True)
    half = len(records) // 2
    _write(parts / "part-0.ndjson", records[:half])
    _write(parts / "part-1.ndjson", records[half:])
    for named in ([str(tmp_path / "archive")], [str(parts / "part-*.ndjson")]):
        assert audit.placements(audit.exports(named)) == expected


ODD_RECORDS = [
    '{"type":"track","userId":123,"anonymousId":true,"messageId":{"a":1},"event":"e",'
    '"receivedAt":1772000003.5,"timestamp":"2026-03-01T00:00:00Z"}',
    '{"type":"identify","userId":"a\\u00e9 \\n","receivedAt":1e3,'
    '"traits":{"email":"X@y.z","k":[1,2],"n":null},"context":{"library":{"name":7}}}',
    "",
    '{"type":null,"userId":null,"receivedAt":"-0.0","traits":"str","properties":{}}',
    '{"type":"identify","userId":"u","receivedAt":12345678901234567890123,'
    '"traits":{"email":{"x":1}},"context":{"library":null,"ip":"1.2.3.4"}}',
    '{"type":"page","anonymousId":"a","at":"2026-03-01T00:00:00+02:00","receivedAt":"x",'
    '"properties":{"url":"https://x.io/' + "p" * 1100 + '"},"name":["n"]}',
    '{"type":"identify","userId":"u","receivedAt":"1772000000","traits":{"' + "k" * 151 + '":1}}',
    '{"type":"track","anonymousId":"a","event":"big","receivedAt":1772000000,'
    '"properties":{"blob":"' + "z" * 100_001 + '"}}',
    '{"type":"identify","userId":"v","receivedAt":1,"traits":{"\\u0065mail":"E@x.io"},'
    '"context":{"library":{"n\\u0061me":"lib\\"s"}}}',
    '{"op":"settings","anonymous_merge":false,"created_at":"2026-01-01"}',
    '{"method":"POST","path":"/v1/track","at":"2026-03-01T00:00:00Z","_line":"9"}',
    "{}",
]
"""Records whose fields are of every JSON kind, missing, odd or beyond a limit."""


def _staged(path: Path, lined: bool = False) -> list[dict[str, Any]]:
    duck = audit.DuckDB()
    try:
        duck.load([Export(path, path.name, lined=lined)])
        result = duck.conn.execute("SELECT * FROM staged ORDER BY seq")
        names = [column[0] for column in result.description]
        return [dict(zip(names, row, strict=True)) for row in result.fetchall()]
    finally:
        duck.close()


@pytest.mark.parametrize("lined", [False, True])
@pytest.mark.parametrize("array", [False, True])
def test_both_ways_of_reading_an_export_stage_the_same_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, array: bool, lined: bool
) -> None:
    """DuckDB reads an export into typed columns, or else takes each field out of each
    record's text: the two stage every field, time, flag and kept text alike."""
    export = tmp_path / "odd.json"
    lines = [line for line in ODD_RECORDS if line] if array else ODD_RECORDS
    export.write_text(("[" + ",\n".join(lines) + "]") if array else "\n".join(lines) + "\n")
    read_typed = audit.DuckDB._read_typed
    typed: list[bool] = []
    monkeypatch.setattr(
        audit.DuckDB, "_read_typed", lambda *a: typed.append(read_typed(*a)) or typed[-1]
    )
    fast = _staged(export, lined)
    assert typed == [True]  # these records are read the typed way
    monkeypatch.setattr(audit.DuckDB, "_read_typed", lambda *a: False)
    assert fast == _staged(export, lined)
    assert len(fast) == len([line for line in ODD_RECORDS if line])
    suspect = [row["seq"] for row in fast if row["suspect"]]  # flagged, with their texts
    assert suspect == [5, 6, 7] and all(row["raw"] for row in fast if row["suspect"])
    assert [row["op"] or row["method"] for row in fast if row["op"] or row["method"]] == [
        "settings",
        "POST",
    ]
    assert not any(row["raw"] for row in fast if not row["suspect"])
    # keys spelled with escapes are read (the typed read looks into JSON only where its
    # text could hold the key)
    assert [(row["trait_email"], row["source"]) for row in fast if row["user_id"] == "v"] == [
        ("E@x.io", 'lib"s')
    ]


@pytest.mark.parametrize("typed", [True, False])
def test_records_are_staged_in_file_order_files_one_after_another(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, typed: bool
) -> None:
    """A stream's order is its files' order, then each file's: with more records than
    DuckDB reads in one piece (it reads a file on every core), every record's seq is its
    place in the stream, and its file and record number are its own."""
    if not typed:
        monkeypatch.setattr(audit.DuckDB, "_read_typed", lambda *a: False)
    sizes = {"a.ndjson": 300_000, "b.ndjson": 5, "c.json": 140_000}
    exports, total = [], 0
    for name, size in sizes.items():
        path = tmp_path / name
        pad = "x" * 100  # a file DuckDB reads in several pieces at once
        lines = (f'{{"messageId":"m{total + i}","at":{i + 1},"pad":"{pad}"}}' for i in range(size))
        text = ",\n".join(lines) if name.endswith(".json") else "\n".join(lines)
        path.write_text(f"[{text}]" if name.endswith(".json") else text + "\n")
        exports.append(Export(path, name))
        total += size
    duck = audit.DuckDB()
    try:
        assert duck.load(exports) == total
        # each record says its place in the stream and in its file
        rows = duck.rows(
            "SELECT count(*), count(DISTINCT seq), max(seq), sum(CASE WHEN message_id = "
            "'m' || (seq - 1) AND record = CAST(received_at AS BIGINT) THEN 1 END) "
            "FROM staged"
        )
        assert rows == [(total, total, total, total)]
        assert duck.rows(
            "SELECT file, min(record), max(record) FROM staged GROUP BY 1 ORDER BY 1"
        ) == [(name, 1, size) for name, size in sizes.items()]
        # and once the staged rows are let go, a row's file and record come from its seq
        seqs = [1, 2, 123_457, 300_000, 300_001, 300_005, 300_006, 400_000, total]
        staged = audit.Engine.located(duck, seqs)  # (the base class asks the rows)
        assert staged[300_005] == ("b.ndjson", 5) and staged[total] == ("c.json", 140_000)
        duck.release_staged()
        tables = duck.rows("SELECT table_name FROM information_schema.tables")
        assert ("staged_records",) not in tables
        assert duck.located(seqs) == staged
    finally:
        duck.close()


def test_the_report_counts_rules_days_sources_and_findings(cli: Cli, tmp_path: Path) -> None:
    records = [
        {
            "type": "track",
            "anonymousId": "a1",
            "event": "x",
            "messageId": "m1",
            "receivedAt": 1772000000,
            "context": {"library": {"name": "analytics.js"}},
        },
        {  # a client's retry of the first message: a duplicate
            "type": "track",
            "anonymousId": "a1",
            "event": "x",
            "messageId": "m1",
            "receivedAt": 1772000005,
            "context": {"library": {"name": "analytics.js"}},
        },
        {"type": "identify", "userId": "u1", "anonymousId": "a1", "receivedAt": 1772000010},
        {"type": "identify", "userId": "u2", "anonymousId": "a1", "receivedAt": 1772000020},
        {
            "type": "track",
            "anonymousId": "a1",
            "event": "late",
            "messageId": "m2",
            "receivedAt": 1772000400,
        },
        {
            "type": "track",
            "anonymousId": "undefined",
            "event": "y",
            "messageId": "m3",
            "receivedAt": 1772086400,
        },
        {"type": "identify", "userId": "u3", "traits": {"email": "Dee@x.io"}, "at": 1772086401},
        {"type": "identify", "userId": "u4", "traits": {"email": "dee@x.io"}, "at": 1772086402},
    ]
    export = _write(tmp_path / "e.ndjson", records)
    out = tmp_path / "placements.parquet"
    report = json.loads(
        cli("audit", str(export), "--placements", str(out), "--json", code=1).stdout
    )
    assert report["rules"] == {
        "anonymous": 1,
        "duplicate": 1,
        "merged_on_identify": 1,
        "window_closed": 1,
    }
    assert report["by_day"] == {
        "2026-02-25": {"duplicate": 1, "merged_on_identify": 1, "window_closed": 1},
        "2026-02-26": {"anonymous": 1},
    }
    assert report["by_source"]["analytics.js"] == {"duplicate": 1, "merged_on_identify": 1}
    assert report["campaigns"] == {"can_trigger": 1, "segment_only": 0}
    codes = sorted(f["code"] for f in report["findings"])
    assert codes == [
        "anonymous_id_reused",
        "late_anonymous_event",
        "placeholder_id",
        "split_profile",
    ]
    duck = audit.DuckDB()
    rows = duck.rows(
        "SELECT event_id, anonymous_id, person, rule, epoch(merged_at), can_trigger_campaigns "
        f"FROM '{out}' ORDER BY event_id"
    )
    duck.close()
    assert rows == [
        ("m1", "a1", "u1", "merged_on_identify", 1772000010, True),
        ("m2", "a1", None, "window_closed", None, False),
        ("m3", "undefined", None, "anonymous", None, False),
    ]
    # without --placements the events are counted as they are placed, never stored:
    # the same report
    assert json.loads(cli("audit", str(export), "--json", code=1).stdout) == report
    text = cli("audit", str(export), code=1).stdout
    assert "anonymous_id_reused" in text and "2026-02-26" in text
    assert "Of the 1 events on a person, 1 can trigger campaigns and 0 count" in text


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"op": "purge", "at": 1772000100}, "a purge record"),
        ({"at": 1772000100, "method": "POST", "path": "/api/v1/events", "body": {}}, "HTTP call"),
        ({"op": "settings", "anonymous_merge": False, "at": 1772000100}, "in the middle"),
    ],
)
def test_what_only_a_replay_can_apply_is_refused(
    cli: Cli, tmp_path: Path, record: dict[str, Any], message: str
) -> None:
    first = {"type": "track", "anonymousId": "a", "event": "x", "messageId": "m", "receivedAt": 1}
    export = _write(tmp_path / "e.ndjson", [first, record])
    result = cli("audit", str(export), code=1)
    assert message in result.stderr and "e.ndjson: record 2" in result.stderr


def test_merging_off_is_refused(cli: Cli, tmp_path: Path) -> None:
    export = _write(
        tmp_path / "old.ndjson",
        [
            {"op": "settings", "created_at": "2020-01-01"},
            {"type": "identify", "userId": "u", "at": 1},
        ],
    )
    assert "merging off" in cli("audit", str(export), code=1).stderr


# -- the Spark engine (local mode) --------------------------------------------------


def spark_examples(count: int) -> settings:
    """Hypothesis for a test that runs Spark: the same examples on every run (derandomized)
    and, when one fails, no shrinking, which would start Spark jobs by the hundred; the
    failing example is printed as it was generated."""
    return settings(
        max_examples=count,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


@pytest.fixture(scope="module")
def spark_ready() -> None:
    """PySpark and Java are here, for the tests that run Spark: in this process, where
    they share one session, or in processes of their own (one process of the suite runs
    them all: tests/conftest.py)."""
    import os
    import shutil

    try:
        import pyspark  # noqa: F401
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("PySpark is missing: it is a test dependency")
        pytest.skip("PySpark is not installed")
    if shutil.which("java") is None:
        if os.environ.get("CI"):
            pytest.fail("no Java runtime: .ci/run installs Debian's default-jre-headless")
        pytest.skip("no Java runtime here")


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["duckdb", "spark"])
def test_a_key_read_twice_is_refused_on_every_engine(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, engine: str
) -> None:
    """SQL takes a repeated key's first value, a replay its last: every engine and
    reader refuses a record giving a key it reads twice, and reads one giving another
    key twice as a replay does."""
    if engine == "spark":
        request.getfixturevalue("spark_ready")
    head = '{"type":"track","anonymousId":"a1","event":"x","messageId":"m1","receivedAt":1}\n'
    twice = {
        "userId": '{"type":"identify","userId":"u1","anonymousId":"a1","userId":"u2",'
        '"receivedAt":2}',
        "traits.email": '{"type":"identify","userId":"u1","anonymousId":"a1","receivedAt":2,'
        '"traits":{"email":"a@x.io","email":"b@x.io"}}',
        "context.library.name": '{"type":"identify","userId":"u1","anonymousId":"a1",'
        '"receivedAt":2,"context":{"library":{"name":"a","name":"b"}}}',
    }
    readers = [False, True] if engine == "duckdb" else [False]
    for texts in readers:  # DuckDB: typed columns, then each record's text
        if texts:
            monkeypatch.setattr(audit.DuckDB, "_read_typed", lambda *a: False)
        for key, line in twice.items():
            export = tmp_path / "twice.ndjson"
            export.write_text(head + line + "\n")
            with pytest.raises(audit.AuditError, match=f"record 2 gives '{key}' twice"):
                audit.placements([export], engine_name=engine)
        other = '{"type":"identify","userId":"u1","anonymousId":"a1","receivedAt":2,"x":1,"x":2}'
        export.write_text(head + other + "\n")
        assert audit.placements([export], engine_name=engine) == engine_placements(
            tmp_path, [json.loads(head), json.loads(other)]
        )


@pytest.mark.slow
def test_spark_agrees_with_duckdb_and_replay(spark_ready: None, tmp_path: Path) -> None:
    """Two Spark runs (each costs seconds, whatever its size): the shopper fixture,
    generated traffic gzipped and a recording of HTTP calls, placed as DuckDB places
    them (and DuckDB the generated traffic as a replay does); the report, with a finding
    at a file's first record."""
    import sys

    sys.path.insert(0, str(ROOT / "bench"))
    from make_fixture import records as generated

    records = [r for r in generated(3_000, seed=13) if "method" not in r]
    ndjson = _write(tmp_path / "day.ndjson", records)
    zipped = tmp_path / "day.ndjson.gz"
    zipped.write_bytes(gzip.compress(ndjson.read_bytes()))
    replayed = engine_placements(tmp_path, records)
    assert audit.placements([zipped]) == replayed
    shopper = ROOT / "fixtures" / "shopper.ndjson"
    recording = tmp_path / "recorded.ndjson"
    batch = {
        "batch": [
            {"type": "track", "anonymousId": "r1", "event": "x", "messageId": "r-1"},
            {"type": "identify", "userId": "ru", "anonymousId": "r1"},
        ]
    }
    single = {"anonymousId": "r1", "event": "y", "messageId": "r-2"}
    recording.write_text(
        json.dumps(
            {"at": "2026-03-01T09:00:00Z", "method": "POST", "path": "/v1/batch", "body": batch}
        )
        + "\n"
        + json.dumps(
            {"at": "2026-03-01T09:01:00Z", "method": "POST", "path": "/v1/track", "body": single}
        )
        + "\n"
    )
    assert [(p.event_id, p.rule, p.person) for p in audit.placements([recording])] == [
        ("r-1", "merged_on_identify", "ru"),
        ("r-2", "merged_in_window", "ru"),
    ]
    on_duck = audit.placements([shopper, zipped, recording])
    assert {p.event_id for p in on_duck} >= {"r-1", "r-2"} | {p.event_id for p in replayed}
    assert audit.placements([shopper, zipped, recording], engine_name="spark") == on_duck
    # a finding at the stream's first record (Spark numbers it 0, DuckDB 1)
    first = _write(
        tmp_path / "first.ndjson",
        [{"type": "track", "userId": "undefined", "event": "x", "receivedAt": 1_772_000_000}],
    )
    duck = audit.audit([first, ndjson])
    spark = audit.audit([first, ndjson], engine_name="spark")
    assert (spark.rules, spark.by_day, spark.by_source, spark.findings) == (
        duck.rules,
        duck.by_day,
        duck.by_source,
        duck.findings,
    )
    found = [(f.code, f.line) for f in spark.findings if f.file == str(first)]
    assert found == [("placeholder_id", 1)]


@spark_examples(1)
@given(streams=st.lists(_stream(), min_size=15, max_size=15))
@pytest.mark.slow
def test_spark_generated_streams(
    spark_ready: None, tmp_path: Path, streams: list[list[dict[str, Any]]]
) -> None:
    """Fifteen generated streams in one export (each in its own days and ids): a Spark
    run costs seconds, not the stream."""
    records = together([[_message(spec) for spec in specs] for specs in streams])
    export = _write(tmp_path / "stream.ndjson", records)
    expected = engine_placements(tmp_path, records)
    assert audit.placements([export], engine_name="spark") == expected


def test_findings_in_checks_formats_and_a_workspace_to_look_at(cli: Cli, tmp_path: Path) -> None:
    records = [
        {
            "type": "track",
            "anonymousId": "a1",
            "event": "x",
            "messageId": "m1",
            "receivedAt": 1772000000,
        },
        {"type": "identify", "userId": "u1", "anonymousId": "a1", "receivedAt": 1772000010},
        {"type": "identify", "userId": "u2", "anonymousId": "a1", "receivedAt": 1772000020},
    ]
    export = _write(tmp_path / "e.ndjson", records)
    sarif = json.loads(cli("audit", str(export), "--format", "sarif", code=1).stdout)
    (result,) = sarif["runs"][0]["results"]
    assert result["ruleId"] == "anonymous_id_reused"
    location = result["locations"][0]["physicalLocation"]
    assert location["region"]["startLine"] == 3  # the second person's identify
    github = cli("audit", str(export), "--format", "github", code=1).stdout
    assert github.startswith("::error") and "anonymous_id_reused" in github
    junit = tmp_path / "audit.xml"
    cli("audit", str(export), "--format", "junit", "--output", str(junit), code=1)
    assert "<testsuite" in junit.read_text()
    assert cli("audit", str(export), "--json", "--format", "sarif", code=2).exit_code == 2
    workspace = tmp_path / "look.db"
    cli("audit", str(export), "--workspace", str(workspace), "--at", "2026-03-01", code=1)
    shown = cli("show", "u1", "--db", str(workspace), "--json", "--at", "2026-03-01")
    assert shown["events"]["merged"] == 1
    explained = cli("explain", "m1", "--db", str(workspace), "--json", "--at", "2026-03-01")
    assert explained["rule"] == "merged_on_identify"


# -- progress -----------------------------------------------------------------------


def _generated_export(tmp_path: Path, count: int) -> Path:
    import sys

    sys.path.insert(0, str(ROOT / "bench"))
    from make_fixture import records as generated

    return _write(
        tmp_path / "month.ndjson", [r for r in generated(count, seed=17) if "method" not in r]
    )


def test_progress_is_told_each_step_and_how_far_it_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(audit.duckdb_engine, "PROGRESS_POLL", 0.005)
    export = _generated_export(tmp_path, 60_000)
    told: list[tuple[str, float | None]] = []
    report = audit.audit([export], progress=lambda step, done: told.append((step, done)))
    steps = list(dict.fromkeys(step for step, _ in told))
    assert steps == [
        "Starting duckdb",
        "Reading the exports",
        "Checking settings and Customer.io's limits",
        "Staging events and identifies",
        "Placing and counting events",
        "Looking for identity findings",
    ]
    fractions = [done for _, done in told if done is not None]
    assert fractions and all(0 <= done <= 1 for done in fractions)
    # the report is the one an audit without a listener gives
    assert report.rules == audit.audit([export]).rules


def test_a_terminal_sees_the_steps_and_a_pipe_does_not(tmp_path: Path) -> None:
    import subprocess

    from tests.conftest import on_a_terminal

    export = _generated_export(tmp_path, 60_000)
    command = audit_command(str(export), "--json")
    returncode, seen, stdout = on_a_terminal(command, tmp_path)
    assert returncode in (0, 1)
    assert b"Reading the exports" in seen or b"Placing" in seen, seen[-500:]
    assert json.loads(stdout)["records"] == len(export.read_text().splitlines())
    piped = subprocess.run(command, capture_output=True, timeout=120)
    assert piped.stderr == b""
    assert json.loads(piped.stdout) == json.loads(stdout)


def test_a_generated_month_archive_agrees_with_replay(tmp_path: Path) -> None:
    """The worked example's archive (day folders of gzipped parts, ISO times, three
    libraries, retries, late and offline events, a shared tablet, a placeholder id)."""
    import sys

    sys.path.insert(0, str(ROOT / "bench"))
    import make_month

    archive = tmp_path / "archive"
    make_month.write(archive, days=3, per_day=1_500, seed=5)
    paths = audit.exports([str(archive)])
    assert [p.parent.name for p in paths] == ["2026-03-01", "2026-03-02", "2026-03-03"]
    records = [json.loads(line) for p in paths for line in gzip.open(p, "rt")]
    placed = audit.placements(paths)
    assert placed == engine_placements(tmp_path, records)
    rules_seen = {p.rule for p in placed}
    assert {"merged_on_identify", "merged_in_window", "window_closed"} <= rules_seen
    report = audit.audit(paths)
    assert report.rules["duplicate"] > 0
    assert set(report.by_source) == {"analytics.js", "analytics-ios", "analytics-android"}
    # materialized, the parts are replayed as they are: each event's source is its part
    workspace = tmp_path / "look.db"
    audit.materialize(paths, workspace, from_unix(1_800_000_000))
    conn = sqlite3.connect(workspace)
    sources = [source for (source,) in conn.execute("SELECT source FROM events")]
    conn.close()
    assert len(sources) == len(placed)
    assert {source.rpartition(":")[0] for source in sources} == {str(p) for p in paths}


def test_a_serve_recording_of_the_official_client_is_audited_as_replayed(
    cli: Cli, tmp_path: Path, python_clients: PythonClients
) -> None:
    """customerio-cdp-analytics (batched, so /v1/batch) and single calls against a real
    `serve --record`; the recording audits to what replaying it stores, event by event,
    what serve refused (and recorded so) placed by neither, and a Track API call in it
    is refused at its own line."""
    from cio_anon import service
    from tests.conftest import T0
    from tests.test_serve import WRITE, start

    record = tmp_path / "traffic.ndjson"
    running, instance = start(tmp_path, write_key=WRITE, record=record, fixed_now=T0)
    try:
        python_clients.run(
            """
            from customerio.analytics import Client

            client = Client(WRITE, host=URL, sync_mode=False, upload_interval=0.05)
            for visitor in range(6):
                anonymous_id = f"a-{visitor}"
                client.page(anonymous_id=anonymous_id, name="Home", properties={"url": "https://x.io/"})
                client.track(anonymous_id=anonymous_id, event="Added to Cart", properties={"n": 1})
                if visitor % 2 == 0:
                    client.identify(user_id=f"u-{visitor}", anonymous_id=anonymous_id)
                    client.track(user_id=f"u-{visitor}", event="Order Completed")
            client.flush()
            client.join()
            """,
            running.url,
            WRITE,
        )
        single = {"anonymousId": "a-1", "event": "Came Back", "messageId": "back-1"}
        headers = {"Authorization": f"Bearer {WRITE}"}
        assert running.call("POST", "/v1/track", single, headers=headers)[0] == 200
        not_stored = {"type": "track", "anonymousId": "a-2", "event": "Whole", "messageId": "w-1"}
        whole = {"batch": [not_stored, {"type": "track", "anonymousId": "a-2"}]}
        strict = {**headers, "X-Strict-Mode": "1"}
        assert running.call("POST", "/v1/batch", whole, headers=strict)[0] == 400
        url = "https://x.io/?" + "utm_source=news&" * 8  # a name over 100 bytes
        long_page = {"type": "page", "anonymousId": "a-3", "properties": {"url": url}}
        kept = {"type": "track", "anonymousId": "a-3", "event": "Kept", "messageId": "k-1"}
        mixed = {"batch": [long_page, kept]}
        assert running.call("POST", "/v1/batch", mixed, headers=headers)[0] == 200
    finally:
        instance.shutdown()
    lines = record.read_text().splitlines()
    assert sum("refused" in json.loads(line) for line in lines) == 2
    assert any('"/v1/batch"' in line for line in lines) and any(
        '"/v1/track"' in line for line in lines
    )
    placed = audit.placements([record])
    db = tmp_path / "replayed.db"
    assert replay_into_ok(db, record)
    with service.opened(db, T0, write=False) as workspace:
        assert workspace.summary()["events"] == len(placed) == 6 * 2 + 3 * 1 + 1 + 1
        assert workspace.get_event("w-1") is None and workspace.get_event("k-1") is not None
        for placement in placed:
            event = workspace.get_event(placement.event_id)
            assert event is not None
            person = None
            if event.cio_id is not None:
                person = workspace.person_refs([event.cio_id])[event.cio_id].id
            assert (placement.rule, placement.person, placement.can_trigger) == (
                str(event.rule),
                person,
                event.can_trigger,
            )
    assert {p.rule for p in placed} >= {"merged_on_identify", "anonymous", "campaign_eligible"}
    # kept gzipped, as an archive keeps recordings, it is unwrapped the same way
    zipped = tmp_path / "traffic.ndjson.gz"
    zipped.write_bytes(gzip.compress(record.read_bytes()))
    assert audit.placements([zipped]) == placed
    cut = tmp_path / "cut.ndjson.gz"
    cut.write_bytes(zipped.read_bytes()[: zipped.stat().st_size // 2])
    assert f"{cut}: cannot be read" in cli("audit", str(cut), code=1).stderr
    # another API's call in a recording is refused, at its own line
    track_call = {
        "at": "2026-03-01T10:00:00Z",
        "method": "POST",
        "path": "/api/v1/events",
        "body": {"name": "x", "anonymous_id": "z"},
    }
    record.write_text(record.read_text() + json.dumps(track_call) + "\n")
    refused = cli("audit", str(record), code=1)
    assert f"{record}: record {len(lines) + 1} is an HTTP call" in refused.stderr


def replay_into_ok(db: Path, fixture: Path) -> bool:
    from cio_anon.replay import replay_into
    from tests.conftest import T0

    return replay_into(db, T0, [fixture]).ok


class _StarvedConnection:
    """A real DuckDB connection that runs out of memory where the test says: DuckDB's own
    OutOfMemoryException, raised at the boundary cio-anon translates, whatever the
    installed release would do with the memory it is given."""

    def __init__(self, real: Any, starve: str) -> None:
        self.real, self.starve = real, starve
        self.statements: list[str] = []

    def execute(self, sql: str, params: Any = None) -> Any:
        import duckdb

        self.statements.append(sql)
        if self.starve in sql:
            raise duckdb.OutOfMemoryException("Out of Memory Error: could not allocate block")
        return self.real.execute(sql, params)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def test_memory_limit_is_the_whole_process_and_running_out_is_a_sentence(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--memory-limit holds the process: DuckDB gets it less what the process needs
    beside it; running out ends in a sentence (exit 1), a size that is none in exit 2."""
    import duckdb

    mib = 2**20
    assert audit.duckdb_budget("1GB") == 10**9 - int(10**9 * audit.PROCESS_SHARE)
    assert audit.duckdb_budget("600MB") == 600 * 10**6 - audit.PROCESS_ALLOWANCE
    assert audit.duckdb_budget("320MiB") == audit.DUCKDB_FLOOR == 64 * mib
    with pytest.raises(InvalidInput, match="below the smallest that works, 320MiB"):
        audit.duckdb_budget("319MiB")
    export = _generated_export(tmp_path, 2_000)
    connections: list[_StarvedConnection] = []
    real_connect = duckdb.connect

    def starved_connect(*args: Any, **kwargs: Any) -> _StarvedConnection:
        connections.append(_StarvedConnection(real_connect(*args, **kwargs), "placed"))
        return connections[-1]

    monkeypatch.setattr(duckdb, "connect", starved_connect)
    small = cli("audit", str(export), "--memory-limit", "300MB", code=2)
    assert "below the smallest that works, 320MiB (336MB)" in small.stderr
    starved = cli("audit", str(export), "--memory-limit", "320MiB", code=1)
    assert "DuckDB ran out of memory under --memory-limit 320MiB" in starved.stderr
    assert "Traceback" not in starved.stderr
    # the limit DuckDB was given is the process's limit less the allowance
    assert f"SET memory_limit = '{audit.DUCKDB_FLOOR}B'" in connections[0].statements
    assert "on this machine" in cli("audit", str(export), code=1).stderr
    # with a listener the statement runs in a worker thread: the error crosses back whole
    monkeypatch.setattr(audit.duckdb_engine, "PROGRESS_POLL", 0.005)
    with pytest.raises(audit.AuditError, match="DuckDB ran out of memory under --memory-limit"):
        audit.audit([export], memory_limit="320MiB", progress=lambda step, done: None)
    assert "is not a size" in cli("audit", str(export), "--memory-limit", "lots", code=2).stderr
    monkeypatch.setattr(duckdb, "connect", real_connect)
    assert cli("audit", str(export), "--memory-limit", "1GB", "--json")["records"] > 1_500


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (
            [
                '{"type":"track","anonymousId":"a","event":"x","messageId":"m","receivedAt":"yesterday"}'
            ],
            "record 1 has a time that is not one",
        ),
        (
            [
                '{"type":"track","anonymousId":"a","event":"x","messageId":"m","receivedAt":1,'
                '"timestamp":"soon"}'
            ],
            "record 1 has a time that is not one",
        ),
        (
            [
                '{"at":"2026-03-01T00:00:00Z","method":"POST","path":"/v1/track","body":{}}',
                "not json at all",
            ],
            "record 2 is not JSON",
        ),
        (["\x00\x01 binary"], "bad.ndjson: cannot be read as an export ("),
        (
            [
                '{"type":"track","anonymousId":"a","event":"x","messageId":"m","receivedAt":1}',
                '{"type":"identify","userId":"u1","userId":"u2","receivedAt":2}',
            ],
            "record 2 gives 'userId' twice, and audit cannot tell which a replay reads",
        ),
        (
            [
                '{"type":"identify","userId":"u1","receivedAt":2,'
                '"traits":{"email":"a@x.io","email":"b@x.io","plan":1,"plan":2}}',
            ],
            "record 1 gives 'traits.email' twice",
        ),
    ],
)
def test_unreadable_exports_are_a_sentence_naming_the_record(
    cli: Cli, tmp_path: Path, lines: list[str], message: str
) -> None:
    export = tmp_path / "bad.ndjson"
    export.write_text("\n".join(lines) + "\n")
    refused = cli("audit", str(export), code=1)
    assert message in refused.stderr, refused.stderr
    assert "LINE 1" not in refused.stderr and "Traceback" not in refused.stderr
    assert str(tmp_path / "cio-anon-audit") not in refused.stderr


def test_exports_without_events_say_so(cli: Cli, tmp_path: Path) -> None:
    empty = tmp_path / "empty.ndjson"
    empty.write_text("")
    assert cli("audit", str(empty)).stdout.strip() == "No events in 0 records: nothing to place."


# -- what fails around the input: a sentence, and at once where it can be -------------


@pytest.mark.parametrize(
    "command",
    [
        ["audit", "EXPORT", "--placements", "MISSING"],
        ["audit", "EXPORT", "--format", "junit", "--output", "MISSING"],
        ["audit", "EXPORT", "--db", "MISSING"],
        ["check", "EXPORT", "--write-baseline", "MISSING"],
        ["plan", "infer", "EXPORT", "--output", "MISSING"],
    ],
)
def test_a_file_to_write_into_a_folder_not_there_is_refused_before_the_work(
    cli: Cli, tmp_path: Path, command: list[str]
) -> None:
    """Said before the audit runs (it writes its placements at the end, after minutes on
    a large export), as a usage error naming the folder."""
    export = _generated_export(tmp_path, 200)
    missing = tmp_path / "not-made-yet" / "out"
    arguments = [
        {"EXPORT": str(export), "MISSING": str(missing)}.get(part, part) for part in command
    ]
    refused = cli(*arguments, code=2)
    assert f"the folder {missing.parent} does not exist." in refused.stderr, refused.stderr
    assert not missing.parent.exists()
    arguments[-1] = str(tmp_path / "out")  # the same command, into a folder that is there
    cli(*arguments, code=None)
    assert (tmp_path / "out").exists()


def audit_command(*arguments: str) -> list[str]:
    """`cio-anon audit ARGUMENTS`, as a process of its own runs it."""
    import sys

    return [sys.executable, "-m", "cio_anon", "audit", *arguments]


def audit_process(
    arguments: list[str], env: dict[str, str] | None = None, stderr: Any = None
) -> Any:  # subprocess.Popen[str]
    """The audit running in a process of its own, its stdout a pipe, its stderr one too
    unless given (a file, to read while it runs); Spark on loopback."""
    import os
    import subprocess

    return subprocess.Popen(
        audit_command(*arguments),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE if stderr is None else stderr,
        text=True,
        env={**os.environ, "SPARK_LOCAL_IP": "127.0.0.1", **(env or {})},
    )


def _said(process: Any) -> str:
    """The last line of a finished audit's stderr, after checking it failed in a
    sentence (exit 1, no traceback)."""
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 1, stderr[-3000:]
    assert "Traceback" not in stderr and "Py4J" not in stderr, stderr[-3000:]
    assert "\n\tat " not in stderr, stderr[-3000:]  # nor Java's stack under Spark's line
    last = str(stderr.strip().splitlines()[-1])
    assert last.startswith("Error: "), stderr[-3000:]
    return last


@pytest.mark.slow
def test_spark_that_cannot_start_says_why(spark_ready: None, tmp_path: Path) -> None:
    """A master where nothing listens (said at once: Spark would try for a minute), a
    URL that names no master, one Spark refuses (its ERROR line above, not its Java
    stack), and no Java."""
    from tests.conftest import free_port

    export = str(_generated_export(tmp_path, 200))
    nowhere = f"spark://127.0.0.1:{free_port()}"
    said = _said(audit_process([export, "--engine", "spark", "--spark-master", nowhere]))
    assert f"Nothing answers at {nowhere} (connection refused)" in said
    said = _said(audit_process([export, "--engine", "spark", "--spark-master", "sprak://h:7077"]))
    assert "--spark-master sprak://h:7077 is not a master URL Spark takes" in said
    said = _said(audit_process([export, "--engine", "spark", "--spark-master", "local[x]"]))
    assert said == "Error: Spark could not start on local[x]: " + (
        "Could not parse Master URL: 'local[x]'."
    )
    no_java = {"JAVA_HOME": str(tmp_path / "no-java-here")}
    said = _said(audit_process([export, "--engine", "spark"], no_java))
    assert said.startswith("Error: Spark could not start: ") and "JAVA_HOME" in said, said


def spark_kept_its_start_to_itself(stderr: str) -> None:
    """Nothing of Spark's log on an audit's stderr but its errors: none of the lines of
    its start (its default profile's, its log level's, its warnings)."""
    import re

    assert "log4j" not in stderr and "log level" not in stderr, stderr[-3000:]
    logged = re.search(r"^\d\d/\d\d/\d\d \d\d:\d\d:\d\d (INFO|WARN) .*$", stderr, re.M)
    assert logged is None, logged.group(0)


def _children(pid: int) -> list[int]:
    """The processes `pid` started (Spark's JVM, for an audit)."""
    import os

    found = []
    for entry in os.listdir("/proc"):
        try:
            stat = (Path("/proc") / entry / "stat").read_text()
        except OSError:
            continue
        if stat.rsplit(")", 1)[1].split()[1] == str(pid):
            found.append(int(entry))
    return found


def _on_a_terminal_until(
    tmp_path: Path, export: Path, act: Callable[[bytes, int], list[int]]
) -> tuple[int, str, list[int]]:
    """A Spark audit with its stderr on a terminal, `act` given what it showed and its
    process id as it shows more, until `act` names the processes it acted on: the
    exit code, what it showed (without the terminal's escapes), and those processes."""
    import re

    from tests.conftest import on_a_terminal

    acted: list[int] = []

    def seeing(seen: bytes, pid: int) -> None:
        if not acted:
            acted.extend(act(seen, pid))

    command = audit_command(str(export), "--engine", "spark")
    code, seen, _ = on_a_terminal(command, tmp_path, seeing)
    shown = re.sub(rb"\x1b\[[0-9;?]*[a-zA-Z]", b"", seen).decode(errors="replace")
    assert acted, shown[-3000:]
    return code, shown, acted


def _audits_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A TMPDIR for the audits a test starts (its name with a space, as a user's may
    have), to see what Spark left there."""
    temp = tmp_path / "temp folder"
    temp.mkdir()
    monkeypatch.setenv("TMPDIR", str(temp))
    return temp


def _sparks_own(temp: Path) -> list[Path]:
    """The folders Spark's Java process made for itself (its `spark-*`, its block
    manager's), in the folder the audit gave it under `temp`."""
    return [*temp.glob("cio-anon-spark-*/spark-*"), *temp.glob("cio-anon-spark-*/blockmgr-*")]


@pytest.mark.slow
def test_spark_whose_java_process_dies_says_so(
    spark_ready: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The JVM under the audit killed once the audit is at its steps (as the kernel
    kills a process out of memory): a sentence, not Py4J's traceback; and none of the
    folders the JVM would have removed at its end left behind."""
    import os
    import re
    import signal

    temp = _audits_temp(tmp_path, monkeypatch)
    sparks_own: list[Path] = []

    def kill_its_java_at_a_step(seen: bytes, pid: int) -> list[int]:
        if b"Reading the exports" not in seen:
            return []
        sparks_own.extend(_sparks_own(temp))
        for child in (jvm := _children(pid)):
            os.kill(child, signal.SIGKILL)
        return jvm

    export = _generated_export(tmp_path, 2_000)
    code, shown, _ = _on_a_terminal_until(tmp_path, export, kill_its_java_at_a_step)
    assert sparks_own, "Spark's folders were not in the audit's"
    assert not list(temp.iterdir()), list(temp.rglob("*"))
    assert code == 1, shown[-3000:]
    assert "Traceback" not in shown and "Py4J" not in shown, shown[-3000:]
    spark_kept_its_start_to_itself(shown)
    said = shown.strip().splitlines()[-1]
    assert re.fullmatch(
        r"Error: Spark failed while [a-z' .]+: its Java process stopped answering "
        r"\(killed, or out of memory\?\)\.",
        said.strip(),
    ), said


@pytest.mark.slow
def test_ctrl_c_stops_a_spark_audit_and_its_java_process(
    spark_ready: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C while Java starts and at a step: exit 130 as for any command, no
    traceback (PySpark's own handler printed pages of them), no Java process left
    running (one cut short in its start stayed, holding the terminal), and none of its
    folders left behind."""
    import os
    import signal
    import time

    temp = _audits_temp(tmp_path, monkeypatch)
    export = _generated_export(tmp_path, 2_000)

    def interrupt(
        when: Callable[[bytes, list[int]], bool], times: int = 1
    ) -> Callable[[bytes, int], list[int]]:
        def act(seen: bytes, pid: int) -> list[int]:
            jvm = _children(pid)
            if not jvm or not when(seen, jvm):
                return []
            for time_ in range(times):
                time.sleep(0.02 * time_)
                os.kill(pid, signal.SIGINT)
            return jvm

        return act

    starting = interrupt(lambda seen, jvm: True)  # as soon as there is a JVM
    at_a_step = interrupt(lambda seen, jvm: b"Reading the exports" in seen)
    # twice, as an impatient user presses it, and as `timeout` sends its signal (to the
    # process, then to its group): the audit stopped waiting for ever
    twice = interrupt(lambda seen, jvm: b"Reading the exports" in seen, times=2)
    for act in (starting, at_a_step, twice):
        code, shown, jvm = _on_a_terminal_until(tmp_path, export, act)
        assert code == 130, shown[-3000:]
        assert "Traceback" not in shown and "Exception" not in shown, shown[-3000:]
        deadline = time.monotonic() + 30
        while any(Path(f"/proc/{pid}").exists() for pid in jvm):
            assert time.monotonic() < deadline, f"Java left running: {jvm}"
            time.sleep(0.2)
        assert not list(temp.iterdir()), list(temp.rglob("*"))


def _onto_a_full_disk(cli: Cli, tmp_path: Path, engine: str) -> None:
    full = Path("/dev/full")  # every write: "No space left on device"
    if not full.exists():
        pytest.skip("no /dev/full here")
    export = _generated_export(tmp_path, 200)
    failed = cli("audit", str(export), "--engine", engine, "--placements", str(full), code=1)
    assert failed.stderr.startswith("Error: "), failed.stderr
    assert "No space left on device" in failed.stderr and "Traceback" not in failed.stderr


def test_a_full_disk_under_the_placements_is_a_sentence(cli: Cli, tmp_path: Path) -> None:
    _onto_a_full_disk(cli, tmp_path, "duckdb")


@pytest.mark.slow
def test_a_full_disk_under_spark_placements_is_a_sentence(
    spark_ready: None, cli: Cli, tmp_path: Path
) -> None:
    _onto_a_full_disk(cli, tmp_path, "spark")
