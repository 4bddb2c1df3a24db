"""The activity log: activities, and the Identified and Anonymous tabs read page by
page."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from cio_anon import jsonio
from cio_anon.clock import from_unix
from cio_anon.models import (
    Activity,
    Event,
    LogRow,
    PersonRef,
)
from cio_anon.store.events import EVENT_COLUMNS, event_of
from cio_anon.store.people import PeopleTables

_ACTIVITY_COLUMNS = "cio_id, type, timestamp, data, anonymous_id, merged_from, seq"


@dataclass(frozen=True)
class LogFilter:
    """What to show of a tab: one person's, one anonymous id's, one type's."""

    cio_id: str | None = None
    anonymous_id: str | None = None
    type: str | None = None


def _activity(row: sqlite3.Row) -> Activity:
    origin = row["merged_from"]
    return Activity(
        cio_id=row["cio_id"],
        type=row["type"],
        timestamp=from_unix(row["timestamp"]),
        data=jsonio.loads(row["data"]),
        anonymous_id=row["anonymous_id"],
        merged_from=None if origin is None else PersonRef(**jsonio.loads(origin)),
    )


def activity_row(activity: Activity, person: PersonRef | None, seq: int) -> LogRow:
    """An activity as a row of the Identified tab."""
    return LogRow(
        type=activity.type,
        timestamp=activity.timestamp,
        received_at=activity.timestamp,
        name=None,
        event_id=None,
        person=person,
        anonymous_id=activity.anonymous_id,
        data=activity.data,
        merged_from=activity.merged_from,
        key=(activity.timestamp.timestamp(), seq, 1),
    )


def _event_row(event: Event, person: PersonRef | None, seq: int) -> LogRow:
    return LogRow(
        type="invite" if event.is_invite else event.type,
        timestamp=event.timestamp,
        received_at=event.received_at,
        name=event.name,
        event_id=event.event_id,
        person=person,
        anonymous_id=event.anonymous_id,
        data=event.data,
        event=event,
        key=(event.timestamp.timestamp(), seq, 0),
    )


class LogTables(PeopleTables):
    """The activities table and the two tabs of the log."""

    # -- activities -------------------------------------------------------------------

    def add_activities(self, activities: Iterable[Activity]) -> None:
        self.conn.executemany(
            "INSERT INTO activities (cio_id, type, timestamp, anonymous_id, data) "
            "VALUES (?, ?, ?, ?, ?)",
            [
                (a.cio_id, a.type, a.timestamp.timestamp(), a.anonymous_id, jsonio.dumps(a.data))
                for a in activities
            ],
        )

    def activities_of(self, cio_id: str, types: Sequence[str]) -> list[tuple[Activity, int]]:
        """A person's activities of these types, newest first, each with its seq."""
        marks = ",".join("?" * len(types))
        rows = self.conn.execute(
            f"SELECT {_ACTIVITY_COLUMNS} FROM activities "
            f"WHERE cio_id = ? AND type IN ({marks}) ORDER BY timestamp DESC, seq DESC",
            (cio_id, *types),
        ).fetchall()
        return [(_activity(row), row["seq"]) for row in rows]

    # -- the activity log -------------------------------------------------------------

    def identified_log(
        self, flt: LogFilter, limit: int, before: tuple[float, int, int] | None = None
    ) -> list[LogRow]:
        """The Identified tab: people's events and activities, newest first.

        Rows are ordered by (timestamp, seq, kind) descending; `before` is the key of
        the last row of the previous page. The keys are read first from indexes only
        (a merge of two index scans that stops after `limit` rows), then the rows.
        """
        arms = []
        params: list[Any] = []
        for kind, table, extra in ((0, "events", "cio_id IS NOT NULL"), (1, "activities", "1")):
            where = [extra]
            for column, value in (
                ("cio_id", flt.cio_id),
                ("anonymous_id", flt.anonymous_id),
                ("type", flt.type),
            ):
                if value is not None:
                    where.append(f"{column} = ?")
                    params.append(value)
            if before is not None:
                where.append(f"(timestamp, seq, {kind}) < (?, ?, ?)")
                params.extend(before)
            arms.append(
                f"SELECT {kind} AS kind, seq, timestamp FROM {table} WHERE {' AND '.join(where)}"
            )
        # `SELECT *` (not just the keys) lets SQLite merge the two ordered index scans
        keys = [
            (kind, seq)
            for kind, seq, _ in self.conn.execute(
                f"SELECT * FROM ({' UNION ALL '.join(arms)}) "
                "ORDER BY timestamp DESC, seq DESC, kind DESC LIMIT ?",
                (*params, limit),
            )
        ]
        events = self._events_by_seq([seq for kind, seq in keys if kind == 0])
        activities = self._activities_by_seq([seq for kind, seq in keys if kind == 1])
        refs = self.person_refs(
            [e.cio_id for e, _ in events.values() if e.cio_id]
            + [a.cio_id for a, _ in activities.values()]
        )
        rows = []
        for kind, seq in keys:
            if kind == 0:
                event, seq = events[seq]
                rows.append(_event_row(event, refs.get(event.cio_id or ""), seq))
            else:
                activity, seq = activities[seq]
                rows.append(activity_row(activity, refs.get(activity.cio_id), seq))
        return rows

    def _events_by_seq(self, seqs: Sequence[int]) -> dict[int, tuple[Event, int]]:
        if not seqs:
            return {}
        rows = self.conn.execute(
            f"SELECT {EVENT_COLUMNS}, seq FROM events WHERE seq IN ({','.join('?' * len(seqs))})",
            seqs,
        ).fetchall()
        return {row["seq"]: (event_of(row), row["seq"]) for row in rows}

    def _activities_by_seq(self, seqs: Sequence[int]) -> dict[int, tuple[Activity, int]]:
        if not seqs:
            return {}
        rows = self.conn.execute(
            f"SELECT {_ACTIVITY_COLUMNS} FROM activities "
            f"WHERE seq IN ({','.join('?' * len(seqs))})",
            seqs,
        ).fetchall()
        return {row["seq"]: (_activity(row), row["seq"]) for row in rows}

    def anonymous_log(
        self,
        flt: LogFilter,
        anonymous_ids: Sequence[str] | None,
        limit: int,
        before: tuple[float, int, int] | None = None,
    ) -> list[LogRow]:
        """The Anonymous tab: unmerged anonymous events and invites, newest first.

        `anonymous_ids` narrows it to those ids (a person's assigned ids); `before` is
        the key of the last row of the previous page (its kind is always 0 here).
        """
        if anonymous_ids is not None and not anonymous_ids:
            return []
        where: list[str] = ["cio_id IS NULL"]
        params: list[Any] = []
        if flt.anonymous_id is not None:
            where.append("anonymous_id = ?")
            params.append(flt.anonymous_id)
        if anonymous_ids is not None:
            where.append(f"anonymous_id IN ({','.join('?' * len(anonymous_ids))})")
            params.extend(anonymous_ids)
        if flt.type == "invite":
            where.append("anonymous_id IS NULL")
        elif flt.type is not None:
            where.append("type = ? AND anonymous_id IS NOT NULL")
            params.append(flt.type)
        if before is not None:
            where.append("(timestamp, seq) < (?, ?)")
            params.extend(before[:2])
        rows = self.conn.execute(
            f"SELECT {EVENT_COLUMNS}, seq FROM events WHERE {' AND '.join(where)} "
            "ORDER BY timestamp DESC, seq DESC LIMIT ?",
            (*params, limit),
        ).fetchall()
        return [_event_row(event_of(row), None, row["seq"]) for row in rows]
