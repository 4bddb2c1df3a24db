"""The placement rules, set-based: where every event of a stream of Data Pipelines
messages ends up, computed with one SQL statement over staged rows instead of one call
at a time.

The rules fit that shape: an anonymous id's assignment is the first identify that
carries it; each anonymous event's rule follows from its own receive time and timestamp
against that assignment (`rules.placement_rule`); a person's own event is
campaign-eligible when received within 72 hours of happening (`rules.campaign_rule`).
So a stream without order-sensitive records (settings changes, purges, profile merges,
deletes) and with merging on is placed by a window function and a join. The rules'
SQL forms stand beside their Python forms in `cio_anon/rules/`; this statement only
joins the rows they judge, in the SQL that SQLite, DuckDB and Spark share.
`tests/test_setrules.py` and `tests/test_engines.py` hold it to the engine's answers,
event by event.

This is the core a set-based replay and `audit` build on; it does not write a
workspace.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cio_anon.clock import parse_time
from cio_anon.errors import CioAnonError, InvalidInput
from cio_anon.ingest import AnonymousTraits, Identify, Track
from cio_anon.ingest.fixtures import receive_time
from cio_anon.ingest.pipelines import parse_message
from cio_anon.rules.campaigns import campaign_rule_sql, can_trigger_sql
from cio_anon.rules.placement import MERGING_RULES, placement_sql

_MERGING = ", ".join(f"'{rule}'" for rule in MERGING_RULES)

STAGING = """
CREATE TABLE staged_events (
    seq INTEGER PRIMARY KEY, event_id TEXT NOT NULL, person TEXT, anonymous_id TEXT,
    received_at REAL NOT NULL, timestamp REAL NOT NULL, source TEXT);
CREATE TABLE staged_identifies (
    seq INTEGER PRIMARY KEY, person TEXT NOT NULL, anonymous_id TEXT, message_id TEXT,
    received_at REAL NOT NULL);
"""


def placements(key: Callable[[str], str] = str) -> str:
    """The SQL placing every event, in no order (a reader that needs stream order sorts
    by seq: the engines keep a table's rows in no order either). `key`: the SQL of a
    cheap key for an id (an engine's 64-bit hash of it; the id itself by default): see
    `first_of`."""
    return f"""
WITH identifies AS (
    -- an identify whose messageId was handled before is a duplicate: skipped
    {first_of("staged_identifies", "message_id", key)}
), first_claims AS (
    -- an anonymous id is assigned once: to the first identify that carries it
    SELECT min(seq) AS seq FROM identifies WHERE anonymous_id IS NOT NULL
    GROUP BY anonymous_id
), assignments AS (
    SELECT i.anonymous_id, i.person, i.received_at AS assigned_at
    FROM identifies i JOIN first_claims c ON c.seq = i.seq
), events AS (
    -- an event id seen before is a duplicate: the first one stays
    {first_of("staged_events", "event_id", key)}
), placed AS (
    SELECT e.event_id, e.seq, e.person AS own, e.anonymous_id, e.received_at, e.timestamp,
           e.source, a.person AS assignee,
           a.assigned_at,
           CASE WHEN e.received_at > a.assigned_at THEN e.received_at ELSE a.assigned_at END
               AS merged_at
    FROM events e LEFT JOIN assignments a ON a.anonymous_id = e.anonymous_id
), ruled AS (
    SELECT *,
           CASE WHEN own IS NOT NULL THEN {campaign_rule_sql("timestamp", "received_at")}
                ELSE {placement_sql()} END AS rule
    FROM placed
)
SELECT event_id,
       rule,
       CASE WHEN own IS NOT NULL THEN own WHEN rule IN ({_MERGING}) THEN assignee END AS person,
       CASE WHEN rule IN ({_MERGING}) THEN merged_at END AS merged_at,
       CASE WHEN own IS NOT NULL THEN {can_trigger_sql("timestamp", "received_at")}
            WHEN rule IN ({_MERGING}) THEN {can_trigger_sql("timestamp", "merged_at")}
            ELSE false END AS can_trigger,
       anonymous_id,
       seq,
       received_at,
       source
FROM ruled
"""


def first_of(table: str, column: str, key: Callable[[str], str]) -> str:
    """SQL: the rows of `table` but those whose `column` a row before them (by seq) had;
    rows without one all stay. Only the values whose keys repeat are compared by their
    text, so millions of ids that occur once are grouped by an integer."""
    given = f"{column} IS NOT NULL"
    return f"""SELECT t.* FROM {table} t LEFT JOIN (
        SELECT seq FROM (
            SELECT seq, row_number() OVER (PARTITION BY {column} ORDER BY seq) AS nth
            FROM {table} WHERE {given} AND {key(column)} IN (
                SELECT {key(column)} FROM {table} WHERE {given}
                GROUP BY {key(column)} HAVING count(*) > 1)
        ) numbered WHERE nth > 1
    ) later ON later.seq = t.seq WHERE later.seq IS NULL"""


@dataclass(frozen=True)
class Placement:
    event_id: str
    rule: str
    person: str | None
    """The identifier (userId) of the person it belongs to, None while anonymous."""
    merged_at: float | None = None
    """When an anonymous event became the person's (Unix seconds), None otherwise."""
    can_trigger: bool = False
    """Whether it can trigger campaigns (a person's event, within 72 hours)."""


class NotSetBased(CioAnonError):
    """A record the set-based pass cannot place the way a sequential replay does."""


def place(records: Iterable[Mapping[str, Any]]) -> list[Placement]:
    """Place every event of a stream of Data Pipelines messages (bare, as exports keep
    them), merging on. Records it cannot place set-based (control records, HTTP calls,
    aliases aside) raise NotSetBased naming them."""
    conn = sqlite3.connect(":memory:")
    try:
        conn.executescript(STAGING)
        stage(conn, records)
        return placed(conn.execute(f"{placements()} ORDER BY seq"))
    finally:
        conn.close()


def placed(rows: Iterable[Sequence[Any]]) -> list[Placement]:
    """Placements from the rows `placements` selects (booleans as any engine returns them)."""
    return [
        Placement(event_id, rule, person, merged_at, bool(can_trigger))
        for event_id, rule, person, merged_at, can_trigger, *_ in rows
    ]


def stage(conn: Any, records: Iterable[Mapping[str, Any]]) -> None:
    """Insert the stream's events and identifies as rows, in stream order."""
    events: list[tuple[Any, ...]] = []
    identifies: list[tuple[Any, ...]] = []
    for seq, record in enumerate(records):
        if "op" in record or "method" in record:
            kind = record.get("op") or f"{record.get('method')} {record.get('path')}"
            raise NotSetBased(f"Record {seq + 1} ({kind}) must be replayed in order.")
        at = receive_time(record)
        if at is None:
            raise InvalidInput(f"Record {seq + 1} has no receive time.")
        op = parse_message(record)
        received = at.timestamp()
        if isinstance(op, Track):
            if op.event_id is None:
                raise NotSetBased(f"Record {seq + 1} has no messageId to name its event by.")
            happened = received if op.timestamp is None else _seconds(op.timestamp)
            person = op.person
            events.append((seq, op.event_id, person, op.anonymous_id, received, happened, None))
        elif isinstance(op, Identify):
            identifies.append((seq, op.identifier, op.anonymous_id, op.message_id, received))
        elif not isinstance(op, AnonymousTraits):  # alias: merges nothing
            continue
    conn.executemany("INSERT INTO staged_events VALUES (?, ?, ?, ?, ?, ?, ?)", events)
    conn.executemany("INSERT INTO staged_identifies VALUES (?, ?, ?, ?, ?)", identifies)


def _seconds(value: object) -> float:
    return parse_time(value, what="event timestamp").timestamp()
