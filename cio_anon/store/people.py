"""People: their identifiers and attributes, and the people-wide queries (search, refs)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from cio_anon import jsonio
from cio_anon.clock import from_unix
from cio_anon.models import (
    Person,
    PersonRef,
)
from cio_anon.rules import IdentifierKind, Rule, email_key
from cio_anon.store.base import Store

_CLAIMED = "json_extract(attributes, '$.anonymous_id')"
"""SQL: the anonymous id a person holds as an attribute (one an identify gave while
merging was off)."""


def _person_values(person: Person) -> tuple[Any, ...]:
    return (
        person.cio_id,
        person.id,
        person.email,
        None if person.email is None else email_key(person.email),
        jsonio.dumps(person.attributes),
        person.created_at.timestamp(),
        person.updated_at.timestamp(),
    )


class PeopleTables(Store):
    """The people table."""

    # -- people -----------------------------------------------------------------------

    _PERSON_COLUMNS = "cio_id, id, email, attributes, created_at, updated_at"

    @staticmethod
    def _person(row: sqlite3.Row) -> Person:
        return Person(
            cio_id=row["cio_id"],
            id=row["id"],
            email=row["email"],
            attributes=jsonio.loads(row["attributes"]),
            created_at=from_unix(row["created_at"]),
            updated_at=from_unix(row["updated_at"]),
        )

    def find_person(self, kind: IdentifierKind, value: str) -> Person | None:
        column, key = {
            IdentifierKind.CIO_ID: ("cio_id", value),
            IdentifierKind.ID: ("id", value),
            IdentifierKind.EMAIL: ("email_key", email_key(value)),
        }[kind]
        row = self.conn.execute(
            f"SELECT {self._PERSON_COLUMNS} FROM people WHERE {column} = ?", (key,)
        ).fetchone()
        return None if row is None else self._person(row)

    _SAVE_PERSON = (
        "INSERT INTO people (cio_id, id, email, email_key, attributes, created_at, "
        "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (cio_id) DO UPDATE SET "
        "id = excluded.id, email = excluded.email, email_key = excluded.email_key, "
        "attributes = excluded.attributes, updated_at = excluded.updated_at"
    )

    def save_person(self, person: Person) -> None:
        """Insert or update a person (identifiers, attributes, times)."""
        self.conn.execute(self._SAVE_PERSON, _person_values(person))

    def save_people(self, people: Iterable[Person]) -> None:
        """`save_person` for many, in the order given (an id or email a person takes
        must not be held by one saved later: the bulk path never moves one)."""
        self.conn.executemany(self._SAVE_PERSON, [_person_values(p) for p in people])

    def people_by(self, kind: IdentifierKind, values: Sequence[str]) -> dict[str, Person]:
        """The people with these ids (kind ID) or email keys (kind EMAIL), by that value."""
        column = {IdentifierKind.ID: "id", IdentifierKind.EMAIL: "email_key"}[kind]
        rows = self._rows_among(
            f"SELECT {self._PERSON_COLUMNS}, {column} AS found_by FROM people "
            f"WHERE {column} IN {{ids}}",
            values,
        )
        return {row["found_by"]: self._person(row) for row in rows}

    def delete_person(self, cio_id: str) -> None:
        self.conn.execute("DELETE FROM people WHERE cio_id = ?", (cio_id,))

    def erase_person(self, cio_id: str, anonymous_ids: Sequence[str]) -> dict[str, int]:
        """Delete a person with their events, activities, the traits of their anonymous
        profiles (`anonymous_ids`) and the tombstones naming them; their assignments stay,
        naming nobody (an anonymous id is assigned once, ever). The counts. The freed
        space is overwritten (`secure_delete`) and the WAL truncated after the commit."""
        self._assignments = {}
        self._scrub_after_commit = True
        self.conn.execute("PRAGMA secure_delete=ON")
        counts = {}
        for table in ("devices", "relationships"):
            self.conn.execute(f"DELETE FROM {table} WHERE cio_id = ?", (cio_id,))
        for table in ("events", "activities", "tombstones"):
            cursor = self.conn.execute(f"DELETE FROM {table} WHERE cio_id = ?", (cio_id,))
            counts[table] = cursor.rowcount
        counts["assignments"] = self.conn.execute(
            "UPDATE assignments SET cio_id = NULL WHERE cio_id = ?", (cio_id,)
        ).rowcount
        counts["anonymous_profiles"] = self.conn.executemany(
            "DELETE FROM anonymous_profiles WHERE anonymous_id = ?",
            [(anonymous_id,) for anonymous_id in anonymous_ids],
        ).rowcount
        self.delete_person(cio_id)
        return counts

    def invite_recipients(self) -> list[tuple[str, str]]:
        """Every invite event's id and recipient."""
        rows = self.conn.execute(
            "SELECT event_id, recipient FROM events WHERE cio_id IS NULL AND recipient IS NOT NULL"
        ).fetchall()
        return [(row["event_id"], row["recipient"]) for row in rows]

    def erase_mentions(self, event_ids: Sequence[str], texts: Sequence[str]) -> int:
        """Delete the events `event_ids` (invites to a deleted person) and the stored
        calls whose body holds one of `texts` (their identifiers, lower case); how many
        rows went."""
        gone = self.conn.executemany(
            "DELETE FROM events WHERE event_id = ?", [(e,) for e in event_ids]
        ).rowcount
        for text in texts:
            gone += self.conn.execute(
                "DELETE FROM other_calls WHERE instr(lower(body), ?) > 0", (text,)
            ).rowcount
        return gone

    def people(self, limit: int) -> list[tuple[Person, int]]:
        """People, newest first, with their event counts."""
        rows = self.conn.execute(
            f"SELECT {self._PERSON_COLUMNS}, (SELECT count(*) FROM events e "
            "WHERE e.cio_id = p.cio_id) AS events FROM people p ORDER BY created_at DESC, cio_id "
            "LIMIT ?",
            (limit,),
        ).fetchall()
        return [(self._person(row), row["events"]) for row in rows]

    def search_people(self, query: str, limit: int) -> list[tuple[Person, int]]:
        """People whose id or email starts with `query` (case-insensitively for email),
        whose cio_id it is, or to whom it is an assigned anonymous id; newest first."""
        text = query.strip()
        prefix = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        rows = self.conn.execute(
            f"SELECT {self._PERSON_COLUMNS}, (SELECT count(*) FROM events e "
            "WHERE e.cio_id = p.cio_id) AS events FROM people p "
            "WHERE p.cio_id IN ("
            "  SELECT cio_id FROM people WHERE id LIKE ? ESCAPE '\\' "
            "  UNION SELECT cio_id FROM people WHERE email_key LIKE ? ESCAPE '\\' "
            "  UNION SELECT cio_id FROM people WHERE cio_id = ? "
            "  UNION SELECT cio_id FROM assignments WHERE anonymous_id = ?"
            ") ORDER BY created_at DESC, cio_id LIMIT ?",
            (prefix, email_key(prefix), text.removeprefix("cio_"), text, limit),
        ).fetchall()
        return [(self._person(row), row["events"]) for row in rows]

    def person_refs(self, cio_ids: Iterable[str]) -> dict[str, PersonRef]:
        wanted = sorted(set(cio_ids))
        if not wanted:
            return {}
        marks = ",".join("?" * len(wanted))
        rows = self.conn.execute(
            f"SELECT cio_id, id, email FROM people WHERE cio_id IN ({marks})", wanted
        ).fetchall()
        return {row["cio_id"]: PersonRef(row["cio_id"], row["id"], row["email"]) for row in rows}

    def people_in_order(self) -> list[PersonRef]:
        """Every person, in the order they were created (cio_ids are sequential)."""
        rows = self.conn.execute(
            "SELECT cio_id, id, email FROM people ORDER BY length(cio_id), cio_id"
        ).fetchall()
        return [PersonRef(row["cio_id"], row["id"], row["email"]) for row in rows]

    def people_claiming(self, anonymous_id: str) -> list[str]:
        """cio_ids of people whose `anonymous_id` attribute is this id."""
        rows = self.conn.execute(
            f"SELECT cio_id FROM people WHERE {_CLAIMED} = ?", (anonymous_id,)
        ).fetchall()
        return [row["cio_id"] for row in rows]

    def anonymous_claims(self) -> dict[str, list[str]]:
        """`people_claiming` for every id at once, in one reading of the people: the
        cio_ids of the people holding each `anonymous_id` attribute."""
        claims: dict[str, list[str]] = {}
        for row in self.conn.execute(
            f"SELECT {_CLAIMED} AS claimed, cio_id FROM people WHERE claimed IS NOT NULL"
        ):
            claims.setdefault(row["claimed"], []).append(row["cio_id"])
        return claims

    def move_person_records(self, source: PersonRef, target: str, inherited_at: datetime) -> None:
        """Hand a person's assignments, activities and (already chosen) events to another.
        Moved activities name the profile they came from (the first one, if moved again);
        moved events keep their was-anonymous marker."""
        self._assignments = {}
        origin = jsonio.dumps({"cio_id": source.cio_id, "id": source.id, "email": source.email})
        self.conn.execute(
            "UPDATE assignments SET cio_id = ? WHERE cio_id = ?", (target, source.cio_id)
        )
        self.conn.execute(
            "UPDATE activities SET cio_id = ?, merged_from = coalesce(merged_from, ?) "
            "WHERE cio_id = ?",
            (target, origin, source.cio_id),
        )
        self.conn.execute(
            "UPDATE events SET cio_id = ?, provenance = 'inherited', can_trigger = 0, "
            "merged_at = ?, rule = ? WHERE cio_id = ?",
            (target, inherited_at.timestamp(), str(Rule.SEGMENT_ONLY), source.cio_id),
        )
        # Devices and relationships follow; the primary's own win where both have one.
        for table in ("devices", "relationships"):
            self.conn.execute(
                f"UPDATE OR IGNORE {table} SET cio_id = ? WHERE cio_id = ?", (target, source.cio_id)
            )
            self.conn.execute(f"DELETE FROM {table} WHERE cio_id = ?", (source.cio_id,))
