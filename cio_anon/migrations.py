"""Schema steps of the workspace file, append-only.

Step N brings a file from schema version N-1 to N; the version is kept in SQLite's
`user_version`. A landed step is never edited: change the schema by appending one.
Times are stored as Unix seconds (REAL, UTC); JSON objects as TEXT.
"""

from __future__ import annotations

APPLICATION_ID = 0x63696F61  # "cioa": marks a SQLite file as a cio-anon workspace

MIGRATIONS: tuple[str, ...] = (
    # 1: the first schema
    """
    CREATE TABLE settings (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    CREATE TABLE people (
        cio_id TEXT PRIMARY KEY,
        id TEXT UNIQUE,
        email TEXT,
        email_key TEXT UNIQUE,
        attributes TEXT NOT NULL DEFAULT '{}',
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE TABLE events (
        seq INTEGER PRIMARY KEY,
        event_id TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL,
        type TEXT NOT NULL,
        data TEXT NOT NULL,
        timestamp REAL NOT NULL,
        received_at REAL NOT NULL,
        cio_id TEXT,
        anonymous_id TEXT,
        recipient TEXT,
        provenance TEXT,
        merged_at REAL,
        rule TEXT NOT NULL,
        can_trigger INTEGER NOT NULL DEFAULT 0,
        source TEXT
    );
    CREATE INDEX events_pending ON events (anonymous_id, received_at) WHERE cio_id IS NULL;
    CREATE INDEX events_unattached_by_time ON events (timestamp) WHERE cio_id IS NULL;
    CREATE INDEX events_person ON events (cio_id, timestamp) WHERE cio_id IS NOT NULL;
    CREATE TABLE assignments (
        anonymous_id TEXT PRIMARY KEY,
        cio_id TEXT NOT NULL,
        assigned_at REAL NOT NULL
    );
    CREATE INDEX assignments_person ON assignments (cio_id);
    CREATE TABLE anonymous_profiles (
        anonymous_id TEXT PRIMARY KEY,
        traits TEXT NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE TABLE activities (
        seq INTEGER PRIMARY KEY,
        cio_id TEXT NOT NULL,
        type TEXT NOT NULL,
        timestamp REAL NOT NULL,
        anonymous_id TEXT,
        data TEXT NOT NULL
    );
    CREATE INDEX activities_person ON activities (cio_id, timestamp);
    CREATE TABLE handled_messages (
        message_id TEXT PRIMARY KEY,
        received_at REAL NOT NULL
    );
    CREATE TABLE tombstones (
        event_id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        anonymous_id TEXT,
        cio_id TEXT,
        timestamp REAL NOT NULL,
        received_at REAL NOT NULL,
        removed_at REAL NOT NULL,
        rule TEXT NOT NULL,
        reason TEXT NOT NULL
    );
    """,
)

SCHEMA_VERSION = len(MIGRATIONS)
