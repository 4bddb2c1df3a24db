"""Schema steps of the workspace file, append-only, applied with sqlite-utils.

Step N brings a file from schema version N-1 to N; the version is kept in SQLite's
`user_version`. A landed step is never edited: change the schema by appending one.
Times are stored as Unix seconds (REAL, UTC); JSON objects as TEXT.

sqlite-utils is imported only when a step runs, so that opening an up-to-date
workspace (every command) does not pay for the import.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlite_utils import Database

APPLICATION_ID = 0x63696F61  # "cioa": marks a SQLite file as a cio-anon workspace


def _v1_first_schema(db: Database) -> None:
    db.table("settings").create({"key": str, "value": str}, pk="key", not_null={"value"})
    db.table("people").create(
        {
            "cio_id": str,
            "id": str,
            "email": str,
            "email_key": str,
            "attributes": str,
            "created_at": float,
            "updated_at": float,
        },
        pk="cio_id",
        not_null={"attributes", "created_at", "updated_at"},
        defaults={"attributes": "{}"},
    )
    db.table("people").create_index(["id"], unique=True)
    db.table("people").create_index(["email_key"], unique=True)
    db.table("events").create(
        {
            "seq": int,
            "event_id": str,
            "name": str,
            "type": str,
            "data": str,
            "timestamp": float,
            "received_at": float,
            "cio_id": str,
            "anonymous_id": str,
            "recipient": str,
            "provenance": str,
            "merged_at": float,
            "rule": str,
            "can_trigger": int,
            "source": str,
        },
        pk="seq",
        not_null={
            "event_id",
            "name",
            "type",
            "data",
            "timestamp",
            "received_at",
            "rule",
            "can_trigger",
        },
        defaults={"can_trigger": 0},
    )
    db.table("events").create_index(["event_id"], unique=True)
    # Partial indexes, which sqlite-utils' create_index does not express:
    db.execute(
        "CREATE INDEX events_pending ON events (anonymous_id, received_at) WHERE cio_id IS NULL"
    )
    db.execute("CREATE INDEX events_unattached_by_time ON events (timestamp) WHERE cio_id IS NULL")
    db.execute("CREATE INDEX events_person ON events (cio_id, timestamp) WHERE cio_id IS NOT NULL")
    db.table("assignments").create(
        {"anonymous_id": str, "cio_id": str, "assigned_at": float},
        pk="anonymous_id",
        not_null={"cio_id", "assigned_at"},
    )
    db.table("assignments").create_index(["cio_id"])
    db.table("anonymous_profiles").create(
        {"anonymous_id": str, "traits": str, "updated_at": float},
        pk="anonymous_id",
        not_null={"traits", "updated_at"},
    )
    db.table("activities").create(
        {
            "seq": int,
            "cio_id": str,
            "type": str,
            "timestamp": float,
            "anonymous_id": str,
            "data": str,
        },
        pk="seq",
        not_null={"cio_id", "type", "timestamp", "data"},
    )
    db.table("activities").create_index(["cio_id", "timestamp"], index_name="activities_person")
    db.table("handled_messages").create(
        {"message_id": str, "received_at": float}, pk="message_id", not_null={"received_at"}
    )
    db.table("tombstones").create(
        {
            "event_id": str,
            "name": str,
            "anonymous_id": str,
            "cio_id": str,
            "timestamp": float,
            "received_at": float,
            "removed_at": float,
            "rule": str,
            "reason": str,
        },
        pk="event_id",
        not_null={"name", "timestamp", "received_at", "removed_at", "rule", "reason"},
    )


def _v2_identified_tab_by_time(db: Database) -> None:
    """The Identified tab without a person filter reads newest-first by index."""
    db.execute(
        "CREATE INDEX events_identified_by_time ON events (timestamp) WHERE cio_id IS NOT NULL"
    )
    db.table("activities").create_index(["timestamp"], index_name="activities_by_time")


def _v3_kept_decisions(db: Database) -> None:
    """An assignment outlives its person (`cio_id` may be NULL after a delete); an event
    remembers that it was anonymous once, whatever moves it later; an activity moved by
    a profile merge names the profile it came from."""
    db.execute(
        "CREATE TABLE assignments_v3 (anonymous_id TEXT PRIMARY KEY, cio_id TEXT, "
        "assigned_at FLOAT NOT NULL)"
    )
    db.execute(
        "INSERT INTO assignments_v3 SELECT anonymous_id, cio_id, assigned_at FROM assignments"
    )
    db.execute("DROP TABLE assignments")
    db.execute("ALTER TABLE assignments_v3 RENAME TO assignments")
    db.execute("CREATE INDEX idx_assignments_cio_id ON assignments (cio_id)")
    db.execute("ALTER TABLE events ADD COLUMN was_anonymous INTEGER NOT NULL DEFAULT 0")
    # Before this step a profile merge overwrote `merged`; an inherited event that carries
    # an anonymous_id came from an anonymous profile (a person's own events carry none).
    db.execute(
        "UPDATE events SET was_anonymous = 1 WHERE provenance = 'merged' "
        "OR (provenance = 'inherited' AND anonymous_id IS NOT NULL)"
    )
    db.execute("ALTER TABLE activities ADD COLUMN merged_from TEXT")


def _v4_journal(db: Database) -> None:
    """Every call that changed the workspace, as the fixture record that replays it, for
    `export`. `people` (cio_ids, space-separated) and `anonymous_id` say whom a call
    touched, so one person's history can be picked out.

    A workspace that already holds data is marked: the calls that made it are not
    known, so it cannot be exported. Its settings become the first entry."""
    db.table("journal").create(
        {
            "seq": int,
            "at": float,
            "kind": str,
            "record": str,
            "people": str,
            "anonymous_id": str,
        },
        pk="seq",
        not_null={"at", "kind", "record"},
    )
    db.execute(
        "INSERT INTO journal (at, kind, record) SELECT CAST(c.value AS REAL), 'ChangeSettings', "
        "json_object('op', 'settings', "
        "'created_at', strftime('%Y-%m-%dT%H:%M:%fZ', CAST(c.value AS REAL), 'unixepoch'), "
        "'anonymous_merge', json(CASE m.value WHEN '1' THEN 'true' ELSE 'false' END)) "
        "FROM settings c, settings m WHERE c.key = 'created_at' AND m.key = 'anonymous_merge'"
    )
    db.execute(
        "INSERT INTO settings (key, value) SELECT 'journal_incomplete', '1' "
        "WHERE EXISTS (SELECT 1 FROM people) OR EXISTS (SELECT 1 FROM events) "
        "OR EXISTS (SELECT 1 FROM tombstones) OR EXISTS (SELECT 1 FROM assignments) "
        "OR EXISTS (SELECT 1 FROM anonymous_profiles)"
    )


def _v5_devices_objects_suppressions(db: Database) -> None:
    """What the rest of Customer.io's calls leave on people: devices, suppressed
    identifiers, objects and their relationships to people; and the calls stored
    without a modelled effect that name no one (`other_calls`)."""
    db.execute(
        "CREATE TABLE devices (cio_id TEXT NOT NULL, device_id TEXT NOT NULL, platform TEXT, "
        "attributes TEXT NOT NULL DEFAULT '{}', last_used FLOAT, updated_at FLOAT NOT NULL, "
        "PRIMARY KEY (cio_id, device_id))"
    )
    db.execute(
        "CREATE TABLE suppressions (kind TEXT NOT NULL, value TEXT NOT NULL, "
        "suppressed_at FLOAT NOT NULL, PRIMARY KEY (kind, value))"
    )
    db.execute(
        "CREATE TABLE objects (object_type_id TEXT NOT NULL, object_id TEXT NOT NULL, "
        "attributes TEXT NOT NULL DEFAULT '{}', created_at FLOAT NOT NULL, "
        "updated_at FLOAT NOT NULL, PRIMARY KEY (object_type_id, object_id))"
    )
    db.execute(
        "CREATE TABLE relationships (cio_id TEXT NOT NULL, object_type_id TEXT NOT NULL, "
        "object_id TEXT NOT NULL, attributes TEXT NOT NULL DEFAULT '{}', "
        "created_at FLOAT NOT NULL, PRIMARY KEY (cio_id, object_type_id, object_id))"
    )
    db.execute("CREATE INDEX relationships_object ON relationships (object_type_id, object_id)")
    db.execute(
        "CREATE TABLE other_calls (seq INTEGER PRIMARY KEY, received_at FLOAT NOT NULL, "
        "api TEXT NOT NULL, call TEXT NOT NULL, method TEXT NOT NULL, path TEXT NOT NULL, "
        "body TEXT NOT NULL)"
    )


MIGRATIONS: tuple[Callable[[Database], None], ...] = (
    _v1_first_schema,
    _v2_identified_tab_by_time,
    _v3_kept_decisions,
    _v4_journal,
    _v5_devices_objects_suppressions,
)

SCHEMA_VERSION = len(MIGRATIONS)
