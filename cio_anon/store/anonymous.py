"""What is kept per anonymous id: its assignment to a person, the traits sent for it,
and the message ids already handled."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from cio_anon import jsonio
from cio_anon.clock import from_unix
from cio_anon.rules import Assignment
from cio_anon.store.base import Store

ASSIGNMENT_CACHE = 100_000
"""Anonymous ids whose assignment is remembered within a transaction, at most."""


def _assignment(row: sqlite3.Row) -> Assignment:
    return Assignment(row["anonymous_id"], row["cio_id"], from_unix(row["assigned_at"]))


class AnonymousTables(Store):
    """The assignments, anonymous_profiles and handled_messages tables."""

    # -- assignments and anonymous profiles ---------------------------------------------

    def get_assignment(self, anonymous_id: str) -> Assignment | None:
        if anonymous_id in self._assignments:
            return self._assignments[anonymous_id]
        row = self.conn.execute(
            "SELECT anonymous_id, cio_id, assigned_at FROM assignments WHERE anonymous_id = ?",
            (anonymous_id,),
        ).fetchone()
        found = None if row is None else _assignment(row)
        if len(self._assignments) >= ASSIGNMENT_CACHE:
            self._assignments.clear()  # bounded: a long replay meets millions of ids
        self._assignments[anonymous_id] = found
        return found

    def add_assignment(self, assignment: Assignment) -> None:
        self.add_assignments([assignment])

    def assignments_for(self, anonymous_ids: Sequence[str]) -> dict[str, Assignment]:
        """The assignments of these anonymous ids (those that have one)."""
        rows = self._rows_among(
            "SELECT anonymous_id, cio_id, assigned_at FROM assignments WHERE anonymous_id IN {ids}",
            anonymous_ids,
        )
        return {row["anonymous_id"]: _assignment(row) for row in rows}

    def add_assignments(self, assignments: Sequence[Assignment]) -> None:
        for assignment in assignments:
            self._assignments[assignment.anonymous_id] = assignment
        self.conn.executemany(
            "INSERT INTO assignments (anonymous_id, cio_id, assigned_at) VALUES (?, ?, ?)",
            [(a.anonymous_id, a.cio_id, a.assigned_at.timestamp()) for a in assignments],
        )

    def with_anonymous_traits(self, anonymous_ids: Sequence[str]) -> set[str]:
        """Which of these anonymous ids have traits (an anonymous profile)."""
        if not self.anonymous_traits_exist():
            return set()
        return self._among(
            "SELECT anonymous_id FROM anonymous_profiles WHERE anonymous_id IN {ids}", anonymous_ids
        )

    def anonymous_traits_exist(self) -> bool:
        if self._anonymous_profiles is None:
            self._anonymous_profiles = bool(
                self._scalar("SELECT EXISTS (SELECT 1 FROM anonymous_profiles)")
            )
        return self._anonymous_profiles

    def assignments_of(self, cio_id: str) -> list[Assignment]:
        rows = self.conn.execute(
            "SELECT anonymous_id, cio_id, assigned_at FROM assignments WHERE cio_id = ? "
            "ORDER BY assigned_at, anonymous_id",
            (cio_id,),
        ).fetchall()
        return [_assignment(row) for row in rows]

    def anonymous_traits(self, anonymous_id: str) -> dict[str, Any]:
        if not self.anonymous_traits_exist():
            return {}
        value = self._scalar(
            "SELECT traits FROM anonymous_profiles WHERE anonymous_id = ?", (anonymous_id,)
        )
        return {} if value is None else dict(jsonio.loads(value))

    def save_anonymous_traits(
        self, anonymous_id: str, traits: dict[str, Any], now: datetime
    ) -> None:
        self._anonymous_profiles = True
        self.conn.execute(
            "INSERT INTO anonymous_profiles (anonymous_id, traits, updated_at) VALUES (?, ?, ?) "
            "ON CONFLICT (anonymous_id) DO UPDATE SET traits = excluded.traits, "
            "updated_at = excluded.updated_at",
            (anonymous_id, jsonio.dumps(traits), now.timestamp()),
        )

    # -- message ids ------------------------------------------------------------------

    def mark_message(self, message_id: str, received_at: datetime) -> bool:
        """Record a handled message id; False when it was handled before."""
        cursor = self.conn.execute(
            "INSERT OR IGNORE INTO handled_messages (message_id, received_at) VALUES (?, ?)",
            (message_id, received_at.timestamp()),
        )
        return cursor.rowcount == 1

    def handled_at(self, message_id: str) -> datetime | None:
        """When a message with this id was handled (an identify's), if one was."""
        row = self.conn.execute(
            "SELECT received_at FROM handled_messages WHERE message_id = ?", (message_id,)
        ).fetchone()
        return None if row is None else from_unix(row[0])

    def handled_among(self, message_ids: Sequence[str]) -> set[str]:
        """Which of these message ids were handled before."""
        return self._among(
            "SELECT message_id FROM handled_messages WHERE message_id IN {ids}", message_ids
        )

    def mark_messages(self, handled: Sequence[tuple[str, datetime]]) -> None:
        """Record message ids handled (new ones: see `handled_among`) and when."""
        self.conn.executemany(
            "INSERT INTO handled_messages (message_id, received_at) VALUES (?, ?)",
            [(message_id, at.timestamp()) for message_id, at in handled],
        )
