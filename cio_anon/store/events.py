"""Events and their tombstones: recording, attaching to a person, purging."""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any

from cio_anon import jsonio
from cio_anon.clock import from_unix
from cio_anon.models import (
    Event,
    EventCounts,
    Tombstone,
)
from cio_anon.rules import Provenance, Rule
from cio_anon.store.base import Store, moment_of, seconds_of

PURGED_NAME = "(purged)"
"""The name a purged event's tombstone and its journal stand-in carry: not its own."""


EVENT_COLUMNS = (
    "event_id, name, type, data, timestamp, received_at, cio_id, anonymous_id, recipient, "
    "provenance, merged_at, rule, can_trigger, source, was_anonymous"
)


def _event_values(event: Event, data_json: str | None) -> tuple[Any, ...]:
    """An event as the values of `EVENT_COLUMNS`."""
    return (
        event.event_id,
        event.name,
        event.type,
        jsonio.dumps(event.data) if data_json is None else data_json,
        event.timestamp.timestamp(),
        event.received_at.timestamp(),
        event.cio_id,
        event.anonymous_id,
        event.recipient,
        None if event.provenance is None else str(event.provenance),
        seconds_of(event.merged_at),
        str(event.rule),
        int(event.can_trigger),
        event.source,
        int(event.was_anonymous),
    )


def event_of(row: sqlite3.Row) -> Event:
    """An event from its row (`EVENT_COLUMNS`)."""
    return Event(
        event_id=row["event_id"],
        name=row["name"],
        type=row["type"],
        data=jsonio.loads(row["data"]),
        timestamp=from_unix(row["timestamp"]),
        received_at=from_unix(row["received_at"]),
        cio_id=row["cio_id"],
        anonymous_id=row["anonymous_id"],
        recipient=row["recipient"],
        provenance=None if row["provenance"] is None else Provenance(row["provenance"]),
        merged_at=moment_of(row["merged_at"]),
        rule=Rule(row["rule"]),
        can_trigger=bool(row["can_trigger"]),
        source=row["source"],
        was_anonymous=bool(row["was_anonymous"]),
    )


class EventTables(Store):
    """The events and tombstones tables."""

    # -- events -----------------------------------------------------------------------

    def events_in_order(self) -> Iterator[Event]:
        """Every event, in the order it was recorded."""
        cursor = self.conn.execute(f"SELECT {EVENT_COLUMNS} FROM events ORDER BY rowid")
        for row in cursor:
            yield event_of(row)

    def insert_event(self, event: Event, data_json: str | None = None) -> bool:
        """Store an event (`data_json`: its data already serialised, if at hand).

        False, and nothing stored, when an event with that id exists or existed.
        """
        if self._has_tombstones() and self.get_tombstone(event.event_id) is not None:
            return False
        cursor = self.conn.execute(
            f"INSERT INTO events ({EVENT_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) "
            "ON CONFLICT (event_id) DO NOTHING",
            _event_values(event, data_json),
        )
        return cursor.rowcount == 1

    def insert_events(self, events: Iterable[tuple[Event, str]]) -> None:
        """Store new events, each with its data serialised; their ids must be new (see
        `known_event_ids`)."""
        self.conn.executemany(
            f"INSERT INTO events ({EVENT_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            [_event_values(event, data_json) for event, data_json in events],
        )

    def known_event_ids(self, event_ids: Sequence[str]) -> set[str]:
        """Which of these ids an event has or had (then another with it is a duplicate)."""
        found = self._among("SELECT event_id FROM events WHERE event_id IN {ids}", event_ids)
        if self._has_tombstones():
            found |= self._among(
                "SELECT event_id FROM tombstones WHERE event_id IN {ids}", event_ids
            )
        return found

    def pending_of(self, anonymous_ids: Sequence[str]) -> dict[str, list[Event]]:
        """`pending_events` (without data) of many anonymous ids at once."""
        columns = EVENT_COLUMNS.replace("data", "'{}' AS data")
        rows = self._rows_among(
            f"SELECT {columns} FROM events WHERE cio_id IS NULL AND anonymous_id IN {{ids}} "
            "ORDER BY received_at, seq",
            anonymous_ids,
        )
        found: dict[str, list[Event]] = {}
        for row in rows:
            found.setdefault(row["anonymous_id"], []).append(event_of(row))
        return found

    def pending_rules_of(self, anonymous_ids: Sequence[str]) -> dict[str, Counter[Rule]]:
        """How many pending events of each of these anonymous ids stayed under each rule."""
        rows = self._rows_among(
            "SELECT anonymous_id, rule, count(*) AS n FROM events "
            "WHERE cio_id IS NULL AND anonymous_id IN {ids} GROUP BY anonymous_id, rule",
            anonymous_ids,
        )
        found: dict[str, Counter[Rule]] = {}
        for row in rows:
            found.setdefault(row["anonymous_id"], Counter())[Rule(row["rule"])] = row["n"]
        return found

    def _has_tombstones(self) -> bool:
        if self._tombstones is None:
            self._tombstones = bool(self._scalar("SELECT EXISTS (SELECT 1 FROM tombstones)"))
        return self._tombstones

    def get_event(self, event_id: str) -> Event | None:
        row = self.conn.execute(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE event_id = ?", (event_id,)
        ).fetchone()
        return None if row is None else event_of(row)

    def pending_events(self, anonymous_id: str, *, with_data: bool = True) -> list[Event]:
        """The anonymous events with this id that have not become anyone's (without
        their `data`, left empty, when `with_data` is off: merging does not need it)."""
        columns = EVENT_COLUMNS if with_data else EVENT_COLUMNS.replace("data", "'{}' AS data")
        rows = self.conn.execute(
            f"SELECT {columns} FROM events WHERE anonymous_id = ? AND cio_id IS NULL "
            "ORDER BY received_at, seq",
            (anonymous_id,),
        ).fetchall()
        return [event_of(row) for row in rows]

    def event_ids_of(self, cio_id: str) -> list[str]:
        return [
            row[0]
            for row in self.conn.execute("SELECT event_id FROM events WHERE cio_id = ?", (cio_id,))
        ]

    def person_events(self, cio_id: str) -> list[Event]:
        rows = self.conn.execute(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE cio_id = ? ORDER BY timestamp, seq",
            (cio_id,),
        ).fetchall()
        return [event_of(row) for row in rows]

    def attach_events(self, events: Iterable[Event]) -> None:
        """Write where events now belong: person, provenance, merge time, rule."""
        self.conn.executemany(
            "UPDATE events SET cio_id = ?, provenance = ?, merged_at = ?, rule = ?, "
            "can_trigger = ?, was_anonymous = ? WHERE event_id = ?",
            [
                (
                    event.cio_id,
                    None if event.provenance is None else str(event.provenance),
                    seconds_of(event.merged_at),
                    str(event.rule),
                    int(event.can_trigger),
                    int(event.was_anonymous),
                    event.event_id,
                )
                for event in events
            ],
        )

    def record_rules(self, decided: Iterable[tuple[str, Rule]]) -> None:
        """Keep the decision taken for events that stay where they are: (event_id, rule)."""
        self.conn.executemany(
            "UPDATE events SET rule = ? WHERE event_id = ?",
            [(str(rule), event_id) for event_id, rule in decided],
        )

    _EXPIRED = "FROM events WHERE cio_id IS NULL AND anonymous_id IS NOT NULL AND timestamp < ?"

    def count_expired(self, cutoff: datetime) -> dict[str, int]:
        """Unmerged anonymous events (not invites) that happened before `cutoff`, counted
        per anonymous id."""
        rows = self.conn.execute(
            f"SELECT anonymous_id, count(*) {self._EXPIRED} GROUP BY anonymous_id",
            (cutoff.timestamp(),),
        )
        return dict(rows.fetchall())

    def purge_expired(
        self, cutoff: datetime, removed_at: datetime, reason: str, limit: int
    ) -> tuple[dict[str, int], list[tuple[str, str]]]:
        """Delete up to `limit` of the oldest expired anonymous events, leaving tombstones
        that keep only what deduplication and `explain` need (the id, the times, why: not
        the name, the data or the anonymous id), and overwrite the freed space; the
        counts deleted per anonymous id, and each deleted event's id and anonymous id."""
        chosen = f"SELECT seq {self._EXPIRED} ORDER BY timestamp, seq LIMIT ?"
        params = (cutoff.timestamp(), limit)
        purged = [
            (row["event_id"], row["anonymous_id"])
            for row in self.conn.execute(
                f"SELECT event_id, anonymous_id FROM events WHERE seq IN ({chosen})", params
            )
        ]
        counts = dict(Counter(anonymous_id for _, anonymous_id in purged))
        if not counts:
            return counts, purged
        self._tombstones = True
        self._scrub_after_commit = True
        self.conn.execute("PRAGMA secure_delete=ON")
        self.conn.execute(
            "INSERT OR REPLACE INTO tombstones (event_id, name, anonymous_id, cio_id, "
            "timestamp, received_at, removed_at, rule, reason) SELECT event_id, ?, "
            f"NULL, NULL, timestamp, received_at, ?, ?, ? FROM events "
            f"WHERE seq IN ({chosen})",
            (PURGED_NAME, removed_at.timestamp(), str(Rule.RETENTION_EXPIRED), reason, *params),
        )
        self.conn.execute(f"DELETE FROM events WHERE seq IN ({chosen})", params)
        return counts, purged

    def remove_events(self, tombstones: Sequence[Tombstone]) -> None:
        """Delete events, keeping a tombstone of each so `explain` can say what happened."""
        if tombstones:
            self._tombstones = True
        self.conn.executemany(
            "INSERT OR REPLACE INTO tombstones (event_id, name, anonymous_id, cio_id, "
            "timestamp, received_at, removed_at, rule, reason) VALUES (?,?,?,?,?,?,?,?,?)",
            [
                (
                    t.event_id,
                    t.name,
                    t.anonymous_id,
                    t.cio_id,
                    t.timestamp.timestamp(),
                    t.received_at.timestamp(),
                    t.removed_at.timestamp(),
                    str(t.rule),
                    t.reason,
                )
                for t in tombstones
            ],
        )
        self.conn.executemany(
            "DELETE FROM events WHERE event_id = ?", [(t.event_id,) for t in tombstones]
        )

    def get_tombstone(self, event_id: str) -> Tombstone | None:
        row = self.conn.execute(
            "SELECT event_id, name, anonymous_id, cio_id, timestamp, received_at, removed_at, "
            "rule, reason FROM tombstones WHERE event_id = ?",
            (event_id,),
        ).fetchone()
        if row is None:
            return None
        return Tombstone(
            event_id=row["event_id"],
            name=row["name"],
            anonymous_id=row["anonymous_id"],
            cio_id=row["cio_id"],
            timestamp=from_unix(row["timestamp"]),
            received_at=from_unix(row["received_at"]),
            removed_at=from_unix(row["removed_at"]),
            rule=Rule(row["rule"]),
            reason=row["reason"],
        )

    def event_counts(self, cio_id: str) -> EventCounts:
        row = self.conn.execute(
            "SELECT count(*), "
            "coalesce(sum(provenance = 'tracked'), 0), "
            "coalesce(sum(provenance = 'merged'), 0), "
            "coalesce(sum(provenance = 'inherited'), 0), "
            "coalesce(sum(can_trigger), 0) FROM events WHERE cio_id = ?",
            (cio_id,),
        ).fetchone()
        return EventCounts(*row)

    def count_pending(self, anonymous_id: str) -> int:
        return int(
            self._scalar(
                "SELECT count(*) FROM events WHERE anonymous_id = ? AND cio_id IS NULL",
                (anonymous_id,),
            )
        )

    def merged_without_trigger(self, names: Sequence[str]) -> list[tuple[str, str, str | None]]:
        """Merged events with these names that cannot trigger campaigns:
        (event_id, name, source)."""
        marks = ",".join("?" * len(names))
        return list(
            self.conn.execute(
                "SELECT event_id, name, source FROM events WHERE provenance = 'merged' "
                f"AND can_trigger = 0 AND name IN ({marks}) ORDER BY seq",
                list(names),
            ).fetchall()
        )
