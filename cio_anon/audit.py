"""`cio-anon audit`: the placement rules over exports too large for a workspace, set-based
on DuckDB.

Exports are read as teams keep them — NDJSON (gzipped too), JSON arrays, Parquet; files,
globs and folders — straight into DuckDB, never through Python one record at a time.
The messages are staged as the rows `setrules` places, and placed by the very statement
`setrules` holds to the engine, so an audit and a replay agree event by event.

What a set-based pass cannot know the way a sequential replay does is refused with a
sentence: settings changes, purges, profile merges and deletes (control records and
HTTP calls). `expect` records are skipped: they assert, they change nothing.
"""

from __future__ import annotations

import glob
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cio_anon import setrules
from cio_anon.errors import CioAnonError, InvalidInput
from cio_anon.ingest import SEMANTIC_EVENTS

PLACEHOLDERS = ("null", "undefined", "none", "nil", "0", "-1", "anonymous", "[object object]")
"""Identifier values that are a client's bug, not an identity."""
SUFFIXES = (".ndjson", ".jsonl", ".json", ".ndjson.gz", ".jsonl.gz", ".json.gz", ".parquet")


class AuditError(CioAnonError):
    """An export the audit cannot read, or a record it cannot place set-based."""


@dataclass
class AuditReport:
    files: list[str]
    records: int
    events: int
    rules: dict[str, int]
    by_day: dict[str, dict[str, int]]
    by_source: dict[str, dict[str, int]]
    findings: list[dict[str, Any]] = field(default_factory=list)


def exports(patterns: Sequence[str]) -> list[Path]:
    """The files named: paths, globs, and folders (every export file under them, as a
    day-partitioned archive lays them out), each in name order."""
    found: list[Path] = []
    for pattern in patterns:
        path = Path(pattern)
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.name.endswith(SUFFIXES))
        elif any(char in pattern for char in "*?["):
            found += sorted(Path(p) for p in glob.glob(pattern, recursive=True))
        elif path.exists():
            found.append(path)
        else:
            raise AuditError(f"{pattern}: no such file or folder.")
    if not found:
        raise AuditError(f"No export files in {', '.join(patterns)}.")
    return found


def connect(memory_limit: str | None = None) -> Any:
    import duckdb  # noqa: PLC0415 (only `audit` needs DuckDB)

    conn = duckdb.connect()
    conn.execute("SET preserve_insertion_order = true")
    conn.execute("SET TimeZone = 'UTC'")
    if memory_limit:
        try:
            conn.execute(f"SET memory_limit = '{memory_limit.replace(chr(39), '')}'")
        except duckdb.Error as error:
            raise InvalidInput(f"--memory-limit {memory_limit!r}: {error}") from None
    return conn


def _source(path: Path) -> str:
    """A DuckDB table expression with one JSON object per record, in file order."""
    name = str(path).replace("'", "''")
    if path.name.endswith(".parquet"):
        return f"(SELECT to_json(t) AS json FROM read_parquet('{name}') t)"
    with _opened(path) as head:
        first = head.read(4096).lstrip()
    kind = "array" if first.startswith(b"[") else "newline_delimited"
    return f"read_json_objects('{name}', format = '{kind}')"


def _opened(path: Path) -> Any:
    import gzip

    return gzip.open(path, "rb") if path.name.endswith(".gz") else path.open("rb")


def _seconds(value: str) -> str:
    """Unix seconds from a JSON value: a number, a numeric string, or ISO-8601 (UTC
    when it names no offset, as everywhere in cio-anon)."""
    text = f"json_extract_string({value}, '$')"
    return (
        f"CASE WHEN json_type({value}) IN ('UBIGINT', 'BIGINT', 'DOUBLE') "
        f"THEN CAST({value} AS DOUBLE) "
        f"WHEN TRY_CAST({text} AS DOUBLE) IS NOT NULL THEN TRY_CAST({text} AS DOUBLE) "
        f"ELSE epoch(CAST({text} AS TIMESTAMPTZ)) END"
    )


def stage(conn: Any, paths: Iterable[Path]) -> int:
    """Load the exports into `messages`, then stage the rows `setrules` places; how many
    records were read."""
    conn.execute("CREATE TABLE messages (seq BIGINT, record BIGINT, file VARCHAR, json JSON)")
    offset = 0
    for path in paths:
        try:
            conn.execute(
                f"INSERT INTO messages SELECT n + {offset}, n, ?, json FROM "
                f"(SELECT row_number() OVER () AS n, json FROM {_source(path)})",
                [str(path)],
            )
        except Exception as error:  # noqa: BLE001 (DuckDB's errors name the problem)
            raise AuditError(f"{path}: cannot be read as an export ({error}).") from None
        offset = conn.execute("SELECT coalesce(max(seq), 0) FROM messages").fetchone()[0]
    _check_settings(conn)
    refused = conn.execute(
        "SELECT file, record, coalesce((json->>'$.op'), (json->>'$.method')) FROM messages "
        "WHERE ((json->>'$.op') IS NOT NULL AND (json->>'$.op') NOT IN ('expect', 'settings')) "
        "OR (json->>'$.method') IS NOT NULL ORDER BY seq LIMIT 1"
    ).fetchone()
    if refused is not None:
        file, record, kind = refused
        what = f"a {kind} record" if kind in ("purge", "settings") else f"an HTTP call ({kind})"
        raise AuditError(
            f"{file}: record {record} is {what}, which only a replay in order can apply; "
            "audit reads Data Pipelines messages (use `cio-anon replay` for this file)."
        )
    received = _seconds("coalesce(json->'$.at', (json->'$.receivedAt'), (json->'$.timestamp'))")
    happened = _seconds("(json->'$.timestamp')")
    semantic = ", ".join("'" + name.replace("'", "''") + "'" for name in SEMANTIC_EVENTS)
    conn.execute(
        f"""
        CREATE TABLE staged AS SELECT
            seq, record, file,
            (json->>'$.type') AS type,
            nullif(trim((json->>'$.userId')), '') AS user_id,
            nullif(trim((json->>'$.anonymousId')), '') AS anonymous_id,
            nullif(trim((json->>'$.messageId')), '') AS message_id,
            (json->>'$.traits.email') AS trait_email,
            (json->>'$.event') AS event,
            coalesce((json->>'$.context.library.name'), 'unknown') AS source,
            {received} AS received_at,
            CASE WHEN (json->'$.timestamp') IS NULL THEN {received} ELSE {happened} END
                AS happened
        FROM messages WHERE (json->>'$.op') IS NULL
        """
    )
    missing = conn.execute(
        "SELECT file, record FROM staged WHERE received_at IS NULL ORDER BY seq LIMIT 1"
    ).fetchone()
    if missing is not None:
        raise AuditError(f"{missing[0]}: record {missing[1]} has no receive time.")
    conn.execute(
        f"""
        CREATE TABLE staged_events AS
        SELECT seq, coalesce(message_id, 'seq:' || seq) AS event_id, user_id AS person,
               CASE WHEN user_id IS NULL THEN anonymous_id END AS anonymous_id,
               received_at, happened AS timestamp
        FROM staged
        WHERE type IN ('track', 'page', 'screen')
          AND (user_id IS NOT NULL OR anonymous_id IS NOT NULL)
          AND (type != 'track' OR event NOT IN ({semantic}))
        """
    )
    conn.execute(
        """
        CREATE TABLE staged_identifies AS
        SELECT seq, coalesce(user_id, trait_email) AS person, anonymous_id, message_id,
               received_at
        FROM staged WHERE type = 'identify' AND coalesce(user_id, trait_email) IS NOT NULL
        """
    )
    return int(conn.execute("SELECT count(*) FROM messages").fetchone()[0])


def _check_settings(conn: Any) -> None:
    """Settings records are taken before the first message, when they leave merging on
    (the set-based pass places with merging on); anywhere else they are refused."""
    from cio_anon import rules
    from cio_anon.clock import parse_time

    first = conn.execute("SELECT min(seq) FROM messages WHERE (json->>'$.op') IS NULL").fetchone()[
        0
    ]
    merge_on = True
    for file, seq, record, merge, created in conn.execute(
        "SELECT file, seq, record, (json->>'$.anonymous_merge'), (json->>'$.created_at') "
        "FROM messages WHERE (json->>'$.op') = 'settings' ORDER BY seq"
    ).fetchall():
        if first is not None and seq > first:
            raise AuditError(
                f"{file}: record {record} changes settings in the middle of the stream; "
                "replay it with `cio-anon replay` instead."
            )
        if merge is not None:
            merge_on = merge == "true"
        elif created is not None:
            merge_on = rules.default_anonymous_merge(parse_time(created, what="created_at"))
    if not merge_on:
        raise AuditError(
            "The exports turn anonymous merging off; audit places with merging on (replay "
            "them with `cio-anon replay`)."
        )


def place(conn: Any) -> None:
    """Place every staged event with `setrules`' statement (into `placements`)."""
    conn.execute(f"CREATE TABLE placements AS {setrules.PLACEMENTS}")


def placements(paths: Sequence[Path], memory_limit: str | None = None) -> list[setrules.Placement]:
    """Every event of the exports with its rule and person, in stream order."""
    conn = connect(memory_limit)
    try:
        stage(conn, paths)
        place(conn)
        rows = conn.execute("SELECT event_id, rule, person FROM placements").fetchall()
        return [setrules.Placement(*row) for row in rows]
    finally:
        conn.close()


def audit(
    paths: Sequence[Path],
    *,
    memory_limit: str | None = None,
    placements_out: Path | None = None,
) -> AuditReport:
    """Place the exports' events and count them: per rule, per day, per source; and the
    identity findings a set-based pass sees (reused and placeholder ids, late events)."""
    conn = connect(memory_limit)
    try:
        records = stage(conn, paths)
        place(conn)
        conn.execute(
            "CREATE TABLE placed AS SELECT p.*, s.source, "
            "strftime(to_timestamp(s.received_at), '%Y-%m-%d') AS day "
            "FROM placements p JOIN staged_events e USING (event_id) "
            "JOIN staged s ON s.seq = e.seq"
        )
        if placements_out is not None:
            target = str(placements_out).replace("'", "''")
            conn.execute(
                f"COPY (SELECT event_id, rule, person FROM placements) TO '{target}' "
                "(FORMAT parquet)"
            )
        rules = dict(conn.execute("SELECT rule, count(*) FROM placed GROUP BY 1").fetchall())
        report = AuditReport(
            files=[str(p) for p in paths],
            records=records,
            events=sum(rules.values()),
            rules=dict(sorted(rules.items())),
            by_day=_pivot(conn, "day"),
            by_source=_pivot(conn, "source"),
        )
        report.findings = _findings(conn)
        return report
    finally:
        conn.close()


def _pivot(conn: Any, column: str) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    rows = conn.execute(
        f"SELECT {column}, rule, count(*) FROM placed GROUP BY 1, 2 ORDER BY 1, 2"
    ).fetchall()
    for key, rule, count in rows:
        out.setdefault(str(key), {})[rule] = count
    return out


def _findings(conn: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for anonymous_id, people in conn.execute(
        "SELECT anonymous_id, count(DISTINCT person) FROM staged_identifies "
        "WHERE anonymous_id IS NOT NULL GROUP BY 1 HAVING count(DISTINCT person) > 1 "
        "ORDER BY 2 DESC, 1 LIMIT 50"
    ).fetchall():
        found.append(
            {
                "code": "anonymous_id_reused",
                "severity": "error",
                "message": f"anonymous_id {anonymous_id!r} was identified to {people} people; "
                "only the first got its events.",
            }
        )
    marks = ", ".join(f"'{value}'" for value in PLACEHOLDERS)
    for value, count in conn.execute(
        f"SELECT lower(id), count(*) FROM (SELECT user_id AS id FROM staged UNION ALL "
        f"SELECT anonymous_id FROM staged) WHERE lower(id) IN ({marks}) GROUP BY 1 ORDER BY 2 DESC"
    ).fetchall():
        found.append(
            {
                "code": "placeholder_id",
                "severity": "error",
                "message": f"{count:,} record(s) use the placeholder id {value!r}.",
            }
        )
    (late,) = conn.execute("SELECT count(*) FROM placed WHERE rule = 'window_closed'").fetchone()
    if late:
        found.append(
            {
                "code": "late_anonymous_event",
                "severity": "warning",
                "message": f"{late:,} anonymous event(s) arrived after the 5-minute window "
                "that followed their identify: they stay anonymous.",
            }
        )
    return found
