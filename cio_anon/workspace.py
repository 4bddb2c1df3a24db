"""The workspace: one SQLite file, and the one class that owns every table and query."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn

from cio_anon import jsonio
from cio_anon.clock import from_unix
from cio_anon.errors import WorkspaceBusy, WorkspaceError
from cio_anon.ingest import ChangeSettings, Operation
from cio_anon.ingest.emit import to_record
from cio_anon.migrations import APPLICATION_ID, MIGRATIONS, SCHEMA_VERSION
from cio_anon.models import (
    Activity,
    Device,
    Event,
    EventCounts,
    LogRow,
    Person,
    PersonRef,
    Relationship,
    Settings,
    Tombstone,
)
from cio_anon.rules import Assignment, IdentifierKind, Provenance, Rule, email_key
from cio_anon.rules.identity import cio_id_of

PRAGMAS = (
    # In WAL mode (set when the file is created) NORMAL never corrupts the file on a
    # crash; a power cut may lose the last commits. Commits stop waiting for fsync.
    "PRAGMA synchronous=NORMAL",
    # A 64 MiB page cache: large purges and merges touch many pages.
    "PRAGMA cache_size=-65536",
    "PRAGMA temp_store=MEMORY",
)
BUSY_TIMEOUT_SECONDS = 30.0
_JOURNAL_COLUMNS = "seq, at, kind, record, people, anonymous_id"
PURGED_NAME = "(purged)"
"""The name a purged event's tombstone and its journal stand-in carry: not its own."""
FAULTS = {
    "SQLITE_FULL": "the disk is full, or a file-size limit was reached",
    "SQLITE_IOERR": "the disk refused a write (is it full, or a file-size limit reached?)",
    "SQLITE_READONLY": "it, or its folder, may not be written to",
    "SQLITE_CANTOPEN": "it cannot be opened (does its folder exist, and may it be written?)",
    "SQLITE_CORRUPT": "it is damaged: recover what it holds with `sqlite3 FILE .recover`",
}
"""SQLite's failures that are the machine's, not a bug: what each means, in words."""


def _fault_reason(error: sqlite3.DatabaseError) -> str | None:
    """What a failure that is the machine's means, in words (None: not one of those)."""
    name = getattr(error, "sqlite_errorname", "")
    return next((words for code, words in FAULTS.items() if name.startswith(code)), None)


def _fault_sentence(path: Path, why: str) -> str:
    return f"Cannot use the workspace {path}: {why}. Nothing was changed."


def _locked(error: sqlite3.DatabaseError) -> bool:
    return getattr(error, "sqlite_errorname", "") in ("SQLITE_BUSY", "SQLITE_LOCKED") or (
        "database is locked" in str(error)
    )


ASSIGNMENT_CACHE = 100_000
"""Anonymous ids whose assignment is remembered within a transaction, at most."""
JOURNAL_BATCH = 1_000
"""Journal rows written in one statement."""

# What reset empties; a workspace where all are empty holds nothing but its settings.
_DATA_TABLES = (
    "events",
    "people",
    "assignments",
    "anonymous_profiles",
    "activities",
    "tombstones",
    "handled_messages",
    "devices",
    "suppressions",
    "objects",
    "relationships",
    "other_calls",
)


@dataclass(frozen=True)
class JournalEntry:
    """One call that changed the workspace: its receive time and its fixture record."""

    seq: int
    at: datetime
    kind: str
    record: str
    """The record as JSON text, without its `at`."""
    people: tuple[str, ...]
    anonymous_id: str | None


@dataclass(frozen=True)
class JournalRewrite:
    """A new operation for the journal entry at `seq`, or (None) its removal."""

    seq: int
    operation: Operation | None


_EVENT_COLUMNS = (
    "event_id, name, type, data, timestamp, received_at, cio_id, anonymous_id, recipient, "
    "provenance, merged_at, rule, can_trigger, source, was_anonymous"
)
_ACTIVITY_COLUMNS = "cio_id, type, timestamp, data, anonymous_id, merged_from, seq"


def _event_values(event: Event, data_json: str | None) -> tuple[Any, ...]:
    """An event as the values of `_EVENT_COLUMNS`."""
    return (
        event.event_id,
        event.name,
        event.type,
        _json(event.data) if data_json is None else data_json,
        event.timestamp.timestamp(),
        event.received_at.timestamp(),
        event.cio_id,
        event.anonymous_id,
        event.recipient,
        None if event.provenance is None else str(event.provenance),
        _ts(event.merged_at),
        str(event.rule),
        int(event.can_trigger),
        event.source,
        int(event.was_anonymous),
    )


def _person_values(person: Person) -> tuple[Any, ...]:
    return (
        person.cio_id,
        person.id,
        person.email,
        None if person.email is None else email_key(person.email),
        _json(person.attributes),
        person.created_at.timestamp(),
        person.updated_at.timestamp(),
    )


def _ts(moment: datetime | None) -> float | None:
    return None if moment is None else moment.timestamp()


def _dt(seconds: float | None) -> datetime | None:
    return None if seconds is None else from_unix(seconds)


def _json(value: Any) -> str:
    return jsonio.dumps(value)


@dataclass(frozen=True)
class LogFilter:
    """What to show of a tab: one person's, one anonymous id's, one type's."""

    cio_id: str | None = None
    anonymous_id: str | None = None
    type: str | None = None


def remove_workspace_files(path: Path) -> None:
    """Remove a workspace file and its WAL companions."""
    for suffix in ("", "-wal", "-shm", "-journal"):
        with contextlib.suppress(FileNotFoundError):
            os.remove(f"{path}{suffix}")


class Workspace:
    """An open workspace file. Every SQL statement of cio-anon lives in this class."""

    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        self.path = path
        self.conn = conn
        self.created = False  # set when this command created the file
        self.busy_seconds = BUSY_TIMEOUT_SECONDS
        """How long a statement waits for another connection's lock (for the sentence)."""
        self._settings: Settings | None = None
        self._scrub_after_commit = False
        # Read-through caches, valid for one transaction (reset by transaction/savepoint)
        self._tombstones: bool | None = None
        self._anonymous_profiles: bool | None = None
        self._assignments: dict[str, Assignment | None] = {}
        self._journal_rows: list[tuple[float, str, str, str | None, str | None]] = []
        self._journal_flushed = 0
        """Journal rows written so far (a savepoint's mark counts them too)."""

    # -- opening ----------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: Path,
        *,
        create: bool,
        initial: Settings | None = None,
        threaded: bool = False,
    ) -> Workspace:
        """Open (and migrate) the workspace at `path`; `created` tells whether it is new.

        A new workspace is made whole (schema and `initial` settings) beside `path` and
        linked into place, so a concurrent command never sees it half made. `threaded`:
        the connection may be handed to another thread (one at a time: the server's
        writer).

        A missing file is created, readable by its owner only, when `create` is set;
        otherwise it is an error. A file that is not a workspace, or one written by a
        newer cio-anon, is refused.
        """
        if path.is_dir():
            raise WorkspaceError(f"The workspace path {path} is a directory, not a file.")
        created = False
        if not path.exists():
            if not create:
                raise WorkspaceError(
                    f"There is no workspace at {path}: run `cio-anon init` or any command "
                    "that records something."
                )
            created = cls._create(path, initial)
        workspace = cls._connect(path, threaded=threaded)
        workspace._migrate(initial)
        workspace.created = created
        return workspace

    @classmethod
    def discard(cls, path: Path) -> None:
        """Remove a workspace a failed command created, unless another process has
        recorded something in it meanwhile (then it stays, theirs)."""
        with contextlib.suppress(WorkspaceError, sqlite3.Error):
            workspace = cls.open(path, create=False)
            try:
                with workspace.transaction():  # the write lock: no one writes while we look
                    if not workspace.holds_data():
                        remove_workspace_files(path)
            finally:
                workspace.close()

    @classmethod
    def _connect(
        cls, path: Path, *, threaded: bool = False, named: Path | None = None
    ) -> Workspace:
        try:
            conn = sqlite3.connect(
                path,
                timeout=BUSY_TIMEOUT_SECONDS,
                isolation_level=None,
                check_same_thread=not threaded,
            )
        except sqlite3.Error as error:
            raise WorkspaceError(f"Cannot open the workspace {named or path}: {error}.") from None
        conn.row_factory = sqlite3.Row
        workspace = cls(named or path, conn)
        try:
            for pragma in PRAGMAS:
                conn.execute(pragma)
        except sqlite3.DatabaseError as error:
            workspace._refuse(error)
        return workspace

    @classmethod
    def _create(cls, path: Path, initial: Settings | None) -> bool:
        """Make a complete workspace beside `path` and link it into place, so no other
        process ever opens a half-made file. False when another process got there first
        (its workspace is then the one used)."""
        spare = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.new")
        try:
            os.close(os.open(spare, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        except OSError as error:
            raise WorkspaceError(f"Cannot create the workspace {path}: {error.strerror}.") from None
        try:
            made = cls._connect(spare, named=path)  # what goes wrong is said of `path`
            made._migrate(initial)
            made.close()  # the last connection: the WAL is checkpointed into the file
            try:
                os.link(spare, path)
            except FileExistsError:
                return False
            except OSError:
                # A file system without hard links: a rename, checked first.
                if path.exists():
                    return False
                os.replace(spare, path)
            return True
        finally:
            remove_workspace_files(spare)

    def _migrate(self, initial: Settings | None) -> None:
        """Bring the schema up to date; on any refusal the connection is closed."""
        try:
            self._migrate_steps(initial)
        except sqlite3.DatabaseError as error:
            self._refuse(error)
        except BaseException:
            self.close()
            raise

    def _refuse(self, error: sqlite3.DatabaseError) -> NoReturn:
        """Close, and say why the file cannot be used: not a database, or a fault."""
        self.close()
        if getattr(error, "sqlite_errorname", "") == "SQLITE_NOTADB":
            raise WorkspaceError(
                f"{self.path} is not a cio-anon workspace (it is not a SQLite database)."
            ) from None
        why = _fault_reason(error) or f"SQLite said: {error}"
        raise WorkspaceError(_fault_sentence(self.path, why)) from None

    def _migrate_steps(self, initial: Settings | None) -> None:
        version = self._scalar("PRAGMA user_version")
        app_id = self._scalar("PRAGMA application_id")
        if version > SCHEMA_VERSION:
            raise WorkspaceError(
                f"{self.path} was written by a newer cio-anon (schema {version}; this one "
                f"knows up to {SCHEMA_VERSION}): upgrade cio-anon to use it."
            )
        if version == SCHEMA_VERSION and app_id == APPLICATION_ID:
            return
        # a file that is not a workspace is refused before anything writes to it (the
        # journal mode is written into the file's header)
        self._refuse_unless_ours(version, app_id)
        self.conn.execute("PRAGMA journal_mode=WAL")
        with self.transaction():
            version = self._scalar("PRAGMA user_version")
            app_id = self._scalar("PRAGMA application_id")
            fresh = self._refuse_unless_ours(version, app_id)
            from sqlite_utils import Database  # only when a schema step runs

            db = Database(self.conn, execute_plugins=False, recursive_triggers=False)
            for step in MIGRATIONS[version:]:
                step(db)
            if fresh:
                if initial is None:
                    raise WorkspaceError(f"{self.path} is empty: run `cio-anon init`.")
                self.save_settings(initial)
                self.add_journal(
                    initial.created_at,
                    ChangeSettings(initial.anonymous_merge, initial.created_at),
                )
            self.conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
            self.conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def _refuse_unless_ours(self, version: int, app_id: int) -> bool:
        """Whether the file is fresh (no schema yet); refused if it holds another's."""
        tables = self._scalar("SELECT count(*) FROM sqlite_master")
        fresh: bool = version == 0 and tables == 0
        if not fresh and app_id != APPLICATION_ID:
            raise WorkspaceError(f"{self.path} is a SQLite file but not a cio-anon workspace.")
        return fresh

    def _rollback(self) -> None:
        """Undo the open transaction (SQLite may have undone it already: a full disk)."""
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")
        self._forget()

    def wait_for_locks(self, seconds: float) -> None:
        """How long a statement waits for a lock another connection holds."""
        self.conn.execute(f"PRAGMA busy_timeout = {max(0, int(seconds * 1000))}")
        self.busy_seconds = seconds

    def _fault(self, error: sqlite3.DatabaseError) -> Exception:
        """The store's failure as a sentence: a lock held past the wait, a full disk, a
        read-only file, a damaged one; any other error (a bug) as it was."""
        if _locked(error):
            return WorkspaceBusy(
                f"The workspace {self.path} is busy: another process has held it for "
                f"{self.busy_seconds:g} s; nothing was changed. Try again when it is done."
            )
        why = _fault_reason(error)
        return error if why is None else WorkspaceError(_fault_sentence(self.path, why))

    def close(self) -> None:
        self.conn.close()

    def _scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        row = self.conn.execute(sql, params).fetchone()
        return None if row is None else row[0]

    @contextlib.contextmanager
    def transaction(self, *, write: bool = True) -> Iterator[None]:
        """One transaction: IMMEDIATE for writes so concurrent writers queue, not fail
        (for the busy timeout; past it, a sentence)."""
        try:
            self.conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        except sqlite3.OperationalError as error:
            raise self._fault(error) from None
        self._forget()
        self._journal_rows.clear()
        self._scrub_after_commit = False
        try:
            yield
        except BaseException as error:
            self._rollback()
            self._journal_rows.clear()
            if isinstance(error, sqlite3.DatabaseError):
                raise self._fault(error) from None
            raise
        try:
            self._flush_journal()
            self.conn.execute("COMMIT")
        except BaseException as error:
            self._rollback()
            if isinstance(error, sqlite3.DatabaseError):
                raise self._fault(error) from None
            raise
        if self._scrub_after_commit:
            # Copy the zeroed pages into the file and empty the WAL of the old ones.
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    @contextlib.contextmanager
    def savepoint(self, *, keep: bool = True) -> Iterator[None]:
        """Run a block inside the open transaction, undone if it raises; with
        `keep=False` it is undone in any case (dry runs)."""
        self.conn.execute("SAVEPOINT block")
        mark = self._journal_flushed + len(self._journal_rows)
        try:
            yield
        except BaseException:
            self.conn.execute("ROLLBACK TO block")
            self.conn.execute("RELEASE block")
            self._forget()
            self._drop_journal_rows(mark)
            raise
        if not keep:
            self.conn.execute("ROLLBACK TO block")
            self._forget()
            self._drop_journal_rows(mark)
        self.conn.execute("RELEASE block")

    def _forget(self) -> None:
        """Drop the caches: what they hold may have been rolled back."""
        self._settings = None
        self._tombstones = None
        self._anonymous_profiles = None
        self._assignments = {}

    # -- settings ---------------------------------------------------------------------

    def settings(self) -> Settings:
        """The settings (read once per transaction: every event consults them)."""
        if self._settings is None:
            values = dict(self.conn.execute("SELECT key, value FROM settings").fetchall())
            self._settings = Settings(
                created_at=from_unix(float(values["created_at"])),
                anonymous_merge=values["anonymous_merge"] == "1",
            )
        return self._settings

    def save_settings(self, settings: Settings) -> None:
        self._settings = settings
        self.conn.executemany(
            "INSERT INTO settings (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [
                ("created_at", repr(settings.created_at.timestamp())),
                ("anonymous_merge", "1" if settings.anonymous_merge else "0"),
            ],
        )

    def next_cio_id(self) -> str:
        """A new cio_id: sequential per workspace, so replays give the same ids."""
        number = self._scalar(
            "INSERT INTO settings (key, value) VALUES ('people_created', '1') "
            "ON CONFLICT (key) DO UPDATE SET value = CAST(value AS INTEGER) + 1 "
            "RETURNING value"
        )
        return cio_id_of(int(number))

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

    def people_created(self) -> int:
        """How many cio_ids `next_cio_id` has handed out."""
        value = self._scalar("SELECT value FROM settings WHERE key = 'people_created'")
        return 0 if value is None else int(value)

    def set_people_created(self, count: int) -> None:
        """Record that `count` cio_ids are handed out (after allocating them in bulk)."""
        self.conn.execute(
            "INSERT INTO settings (key, value) VALUES ('people_created', ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (str(count),),
        )

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

    def people_claiming(self, anonymous_id: str) -> list[str]:
        """cio_ids of people whose `anonymous_id` attribute is this id."""
        rows = self.conn.execute(
            "SELECT cio_id FROM people WHERE json_extract(attributes, '$.anonymous_id') = ?",
            (anonymous_id,),
        ).fetchall()
        return [row["cio_id"] for row in rows]

    # -- events -----------------------------------------------------------------------

    @staticmethod
    def _event(row: sqlite3.Row) -> Event:
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
            merged_at=_dt(row["merged_at"]),
            rule=Rule(row["rule"]),
            can_trigger=bool(row["can_trigger"]),
            source=row["source"],
            was_anonymous=bool(row["was_anonymous"]),
        )

    def insert_event(self, event: Event, data_json: str | None = None) -> bool:
        """Store an event (`data_json`: its data already serialised, if at hand).

        False, and nothing stored, when an event with that id exists or existed.
        """
        if self._has_tombstones() and self.get_tombstone(event.event_id) is not None:
            return False
        cursor = self.conn.execute(
            f"INSERT INTO events ({_EVENT_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) "
            "ON CONFLICT (event_id) DO NOTHING",
            _event_values(event, data_json),
        )
        return cursor.rowcount == 1

    def insert_events(self, events: Iterable[tuple[Event, str]]) -> None:
        """Store new events, each with its data serialised; their ids must be new (see
        `known_event_ids`)."""
        self.conn.executemany(
            f"INSERT INTO events ({_EVENT_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
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

    def _rows_among(self, sql: str, values: Sequence[str]) -> list[sqlite3.Row]:
        """The rows of `sql`, whose `{ids}` becomes the set of `values` (one parameter,
        however many values); none, without a query, when there are no values."""
        if not values:
            return []
        query = sql.replace("{ids}", "(SELECT value FROM json_each(?))")
        return self.conn.execute(query, (_json(list(values)),)).fetchall()

    def _among(self, sql: str, values: Sequence[str]) -> set[str]:
        """The first column of `_rows_among`, as a set."""
        return {row[0] for row in self._rows_among(sql, values)}

    def pending_of(self, anonymous_ids: Sequence[str]) -> dict[str, list[Event]]:
        """`pending_events` (without data) of many anonymous ids at once."""
        columns = _EVENT_COLUMNS.replace("data", "'{}' AS data")
        rows = self._rows_among(
            f"SELECT {columns} FROM events WHERE cio_id IS NULL AND anonymous_id IN {{ids}} "
            "ORDER BY received_at, seq",
            anonymous_ids,
        )
        found: dict[str, list[Event]] = {}
        for row in rows:
            found.setdefault(row["anonymous_id"], []).append(self._event(row))
        return found

    def _has_tombstones(self) -> bool:
        if self._tombstones is None:
            self._tombstones = bool(self._scalar("SELECT EXISTS (SELECT 1 FROM tombstones)"))
        return self._tombstones

    def get_event(self, event_id: str) -> Event | None:
        row = self.conn.execute(
            f"SELECT {_EVENT_COLUMNS} FROM events WHERE event_id = ?", (event_id,)
        ).fetchone()
        return None if row is None else self._event(row)

    def pending_events(self, anonymous_id: str, *, with_data: bool = True) -> list[Event]:
        """The anonymous events with this id that have not become anyone's (without
        their `data`, left empty, when `with_data` is off: merging does not need it)."""
        columns = _EVENT_COLUMNS if with_data else _EVENT_COLUMNS.replace("data", "'{}' AS data")
        rows = self.conn.execute(
            f"SELECT {columns} FROM events WHERE anonymous_id = ? AND cio_id IS NULL "
            "ORDER BY received_at, seq",
            (anonymous_id,),
        ).fetchall()
        return [self._event(row) for row in rows]

    def event_ids_of(self, cio_id: str) -> list[str]:
        return [
            row[0]
            for row in self.conn.execute("SELECT event_id FROM events WHERE cio_id = ?", (cio_id,))
        ]

    def person_events(self, cio_id: str) -> list[Event]:
        rows = self.conn.execute(
            f"SELECT {_EVENT_COLUMNS} FROM events WHERE cio_id = ? ORDER BY timestamp, seq",
            (cio_id,),
        ).fetchall()
        return [self._event(row) for row in rows]

    def attach_events(self, events: Iterable[Event]) -> None:
        """Write where events now belong: person, provenance, merge time, rule."""
        self.conn.executemany(
            "UPDATE events SET cio_id = ?, provenance = ?, merged_at = ?, rule = ?, "
            "can_trigger = ?, was_anonymous = ? WHERE event_id = ?",
            [
                (
                    event.cio_id,
                    None if event.provenance is None else str(event.provenance),
                    _ts(event.merged_at),
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
            (anonymous_id, _json(traits), now.timestamp()),
        )

    # -- message ids ------------------------------------------------------------------

    def mark_message(self, message_id: str, received_at: datetime) -> bool:
        """Record a handled message id; False when it was handled before."""
        cursor = self.conn.execute(
            "INSERT OR IGNORE INTO handled_messages (message_id, received_at) VALUES (?, ?)",
            (message_id, received_at.timestamp()),
        )
        return cursor.rowcount == 1

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

    # -- activities -------------------------------------------------------------------

    def add_activities(self, activities: Iterable[Activity]) -> None:
        self.conn.executemany(
            "INSERT INTO activities (cio_id, type, timestamp, anonymous_id, data) "
            "VALUES (?, ?, ?, ?, ?)",
            [
                (a.cio_id, a.type, a.timestamp.timestamp(), a.anonymous_id, _json(a.data))
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

    def move_person_records(self, source: PersonRef, target: str, inherited_at: datetime) -> None:
        """Hand a person's assignments, activities and (already chosen) events to another.
        Moved activities name the profile they came from (the first one, if moved again);
        moved events keep their was-anonymous marker."""
        self._assignments = {}
        origin = _json({"cio_id": source.cio_id, "id": source.id, "email": source.email})
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

    # -- whole-workspace --------------------------------------------------------------

    def change_mark(self) -> str:
        """A value that changes whenever a call changes the workspace (the web view polls
        it to show new activity)."""
        # data_version: commits by other connections (serve's writer is one to its
        # reader, and another process to `ui`); the journal's last entry: this one's.
        # Both are read without counting a table: the pages ask every second.
        version = self._scalar("PRAGMA data_version")
        last = self._scalar("SELECT max(seq) FROM journal")
        return f"{version}:{last}"

    def summary(self) -> dict[str, int]:
        """Counts of what the workspace holds."""
        row = self.conn.execute(
            "SELECT (SELECT count(*) FROM people), (SELECT count(*) FROM events), "
            "(SELECT count(*) FROM events WHERE cio_id IS NOT NULL), "
            "(SELECT count(*) FROM events WHERE provenance = 'merged'), "
            "(SELECT count(*) FROM events WHERE cio_id IS NULL AND anonymous_id IS NOT NULL), "
            "(SELECT count(*) FROM events WHERE cio_id IS NULL AND anonymous_id IS NULL), "
            "(SELECT count(*) FROM assignments), (SELECT count(*) FROM activities), "
            "(SELECT count(*) FROM devices), (SELECT count(*) FROM objects), "
            "(SELECT count(*) FROM relationships), (SELECT count(*) FROM suppressions), "
            "(SELECT count(*) FROM other_calls)"
        ).fetchone()
        keys = (
            "people",
            "events",
            "identified_events",
            "merged_events",
            "anonymous_events",
            "invite_events",
            "assignments",
            "activities",
            "devices",
            "objects",
            "relationships",
            "suppressed_identifiers",
            "other_calls",
        )
        return dict(zip(keys, row, strict=True))

    def reset(self) -> None:
        """Remove all people, events and activities; the settings stay."""
        for table in _DATA_TABLES:
            self.conn.execute(f"DELETE FROM {table}")
        self.conn.execute("DELETE FROM settings WHERE key = 'people_created'")
        # The settings stay, and so do the journal entries that made them.
        self._flush_journal()
        self.conn.execute("DELETE FROM journal WHERE kind != 'ChangeSettings'")
        self.conn.execute("DELETE FROM settings WHERE key = 'journal_incomplete'")
        self._forget()

    def holds_data(self) -> bool:
        """Whether anything beyond the settings was ever recorded here."""
        probes = " OR ".join(f"EXISTS (SELECT 1 FROM {table})" for table in _DATA_TABLES)
        return bool(self._scalar(f"SELECT {probes}"))

    # -- devices, suppressions, objects, relationships, other calls --------------------

    def save_device(self, cio_id: str, device: Device) -> None:
        self.conn.execute(
            "INSERT INTO devices (cio_id, device_id, platform, attributes, last_used, "
            "updated_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (cio_id, device_id) DO UPDATE "
            "SET platform = coalesce(excluded.platform, platform), "
            "attributes = excluded.attributes, last_used = coalesce(excluded.last_used, "
            "last_used), updated_at = excluded.updated_at",
            (
                cio_id,
                device.device_id,
                device.platform,
                _json(device.attributes),
                _ts(device.last_used),
                device.updated_at.timestamp(),
            ),
        )

    def delete_device(self, cio_id: str, device_id: str) -> bool:
        cursor = self.conn.execute(
            "DELETE FROM devices WHERE cio_id = ? AND device_id = ?", (cio_id, device_id)
        )
        return cursor.rowcount == 1

    def devices_of(self, cio_id: str) -> list[Device]:
        rows = self.conn.execute(
            "SELECT device_id, platform, attributes, last_used, updated_at FROM devices "
            "WHERE cio_id = ? ORDER BY updated_at DESC, device_id",
            (cio_id,),
        ).fetchall()
        return [
            Device(
                row["device_id"],
                row["platform"],
                jsonio.loads(row["attributes"]),
                _dt(row["last_used"]),
                from_unix(row["updated_at"]),
            )
            for row in rows
        ]

    def device_attributes(self, cio_id: str, device_id: str) -> dict[str, Any] | None:
        value = self._scalar(
            "SELECT attributes FROM devices WHERE cio_id = ? AND device_id = ?",
            (cio_id, device_id),
        )
        return None if value is None else dict(jsonio.loads(value))

    def suppress(self, kind: str, value: str, at: datetime) -> None:
        self.conn.execute(
            "INSERT OR IGNORE INTO suppressions (kind, value, suppressed_at) VALUES (?, ?, ?)",
            (kind, value, at.timestamp()),
        )

    def unsuppress(self, kind: str, value: str) -> bool:
        cursor = self.conn.execute(
            "DELETE FROM suppressions WHERE kind = ? AND value = ?", (kind, value)
        )
        return cursor.rowcount > 0

    def any_suppressed(self) -> bool:
        return bool(self._scalar("SELECT EXISTS (SELECT 1 FROM suppressions)"))

    def is_suppressed(self, kind: str, value: str) -> bool:
        return bool(
            self._scalar("SELECT 1 FROM suppressions WHERE kind = ? AND value = ?", (kind, value))
        )

    def get_object(self, type_id: str, object_id: str) -> dict[str, Any] | None:
        value = self._scalar(
            "SELECT attributes FROM objects WHERE object_type_id = ? AND object_id = ?",
            (type_id, object_id),
        )
        return None if value is None else dict(jsonio.loads(value))

    def save_object(
        self, type_id: str, object_id: str, attributes: dict[str, Any], now: datetime
    ) -> None:
        self.conn.execute(
            "INSERT INTO objects (object_type_id, object_id, attributes, created_at, "
            "updated_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (object_type_id, object_id) "
            "DO UPDATE SET attributes = excluded.attributes, updated_at = excluded.updated_at",
            (type_id, object_id, _json(attributes), now.timestamp(), now.timestamp()),
        )

    def delete_object(self, type_id: str, object_id: str) -> list[str]:
        """Remove an object and its relationships; the cio_ids it was related to."""
        related = [
            row[0]
            for row in self.conn.execute(
                "DELETE FROM relationships WHERE object_type_id = ? AND object_id = ? "
                "RETURNING cio_id",
                (type_id, object_id),
            )
        ]
        self.conn.execute(
            "DELETE FROM objects WHERE object_type_id = ? AND object_id = ?", (type_id, object_id)
        )
        return related

    def relate(
        self,
        cio_id: str,
        type_id: str,
        object_id: str,
        attributes: dict[str, Any],
        now: datetime,
    ) -> None:
        self.conn.execute(
            "INSERT INTO relationships (cio_id, object_type_id, object_id, attributes, "
            "created_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (cio_id, object_type_id, object_id) "
            "DO UPDATE SET attributes = excluded.attributes",
            (cio_id, type_id, object_id, _json(attributes), now.timestamp()),
        )

    def unrelate(self, cio_id: str, type_id: str, object_id: str) -> bool:
        cursor = self.conn.execute(
            "DELETE FROM relationships WHERE cio_id = ? AND object_type_id = ? AND object_id = ?",
            (cio_id, type_id, object_id),
        )
        return cursor.rowcount == 1

    def relationships_of(self, cio_id: str) -> list[Relationship]:
        rows = self.conn.execute(
            "SELECT r.object_type_id, r.object_id, r.attributes, r.created_at, "
            "o.attributes AS object_attributes FROM relationships r LEFT JOIN objects o "
            "ON o.object_type_id = r.object_type_id AND o.object_id = r.object_id "
            "WHERE r.cio_id = ? ORDER BY r.object_type_id, r.object_id",
            (cio_id,),
        ).fetchall()
        return [
            Relationship(
                row["object_type_id"],
                row["object_id"],
                jsonio.loads(row["attributes"]),
                jsonio.loads(row["object_attributes"] or "{}"),
                from_unix(row["created_at"]),
            )
            for row in rows
        ]

    def add_other_call(
        self, at: datetime, api: str, call: str, method: str, path: str, body: str
    ) -> None:
        self.conn.execute(
            "INSERT INTO other_calls (received_at, api, call, method, path, body) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (at.timestamp(), api, call, method, path, body),
        )

    # -- the journal --------------------------------------------------------------------

    def add_journal(
        self,
        at: datetime,
        op: Operation,
        people: Iterable[str] = (),
        anonymous_id: str | None = None,
    ) -> None:
        """Keep the fixture record that replays `op` (see `ingest.emit`), naming whom it
        touched: cio_ids in `people`, and an `anonymous_id`. Rows are written in bulk
        (`JOURNAL_BATCH` at a time, and before the commit); a savepoint rolled back drops
        the rows it added."""
        self.add_journal_record(at, type(op).__name__, to_record(op), people, anonymous_id)

    def add_journal_record(
        self,
        at: datetime,
        kind: str,
        record: dict[str, Any],
        people: Iterable[str] = (),
        anonymous_id: str | None = None,
    ) -> None:
        """`add_journal` with the operation already written as its record (`kind`: the
        operation's class name)."""
        self._journal_rows.append(
            (at.timestamp(), kind, _json(record), " ".join(people) or None, anonymous_id)
        )
        if len(self._journal_rows) >= JOURNAL_BATCH:
            self._flush_journal()

    def _flush_journal(self) -> None:
        if self._journal_rows:
            self.conn.executemany(
                "INSERT INTO journal (at, kind, record, people, anonymous_id) "
                "VALUES (?, ?, ?, ?, ?)",
                self._journal_rows,
            )
            self._journal_flushed += len(self._journal_rows)
            self._journal_rows.clear()

    def _drop_journal_rows(self, mark: int) -> None:
        """Forget the rows added after `mark` (rows already written are SQLite's to undo)."""
        keep = mark - self._journal_flushed
        del self._journal_rows[max(keep, 0) :]

    def journal_tracks(self, anonymous_ids: Sequence[str]) -> Iterator[JournalEntry]:
        """The journal's tracked events sent with one of `anonymous_ids`, oldest first."""
        self._flush_journal()
        for start in range(0, len(anonymous_ids), 500):
            chunk = anonymous_ids[start : start + 500]
            marks = ", ".join("?" * len(chunk))
            cursor = self.conn.execute(
                f"SELECT {_JOURNAL_COLUMNS} FROM journal "
                f"WHERE kind = 'Track' AND anonymous_id IN ({marks}) ORDER BY seq",
                chunk,
            )
            for row in cursor:
                yield self._journal_entry(row)

    def journal(
        self,
        *,
        merges_and: Sequence[str] | None = None,
        anonymous_ids: Sequence[str] = (),
        mentioning: Sequence[str] = (),
    ) -> Iterator[JournalEntry]:
        """The journal, oldest first. With `merges_and` (cio_ids): only the profile merges,
        the entries naming one of those people, those about `anonymous_ids` and those whose
        record holds one of the texts `mentioning` — what forgetting a deleted person
        needs, without reading the whole journal."""
        self._flush_journal()
        where, params = "", []
        if merges_and is not None:
            named = " OR ".join(
                ["instr(' ' || people || ' ', ' ' || ? || ' ') > 0"] * len(merges_and)
            )
            told = "".join([" OR instr(lower(record), ?) > 0"] * len(mentioning))
            marks = ", ".join("?" * len(anonymous_ids))
            where = (
                f"WHERE kind = 'MergePeople' OR {named or '0'} OR anonymous_id IN ({marks})" + told
            )
            params = [*merges_and, *anonymous_ids, *(text.lower() for text in mentioning)]
        cursor = self.conn.execute(
            f"SELECT {_JOURNAL_COLUMNS} FROM journal {where} ORDER BY seq",
            params,
        )
        for row in cursor:
            yield self._journal_entry(row)

    @staticmethod
    def _journal_entry(row: sqlite3.Row) -> JournalEntry:
        return JournalEntry(
            row["seq"],
            from_unix(row["at"]),
            row["kind"],
            row["record"],
            tuple((row["people"] or "").split()),
            row["anonymous_id"],
        )

    def rewrite_journal(self, rewrites: Iterable[JournalRewrite]) -> None:
        """Replace entries with other operations, or (operation None) remove them."""
        for rewrite in rewrites:
            if rewrite.operation is None:
                self.conn.execute("DELETE FROM journal WHERE seq = ?", (rewrite.seq,))
            else:
                # the anonymous id the entry is about follows its new operation's
                self.conn.execute(
                    "UPDATE journal SET kind = ?, record = ?, "
                    "anonymous_id = coalesce(?, anonymous_id) WHERE seq = ?",
                    (
                        type(rewrite.operation).__name__,
                        _json(to_record(rewrite.operation)),
                        getattr(rewrite.operation, "anonymous_id", None),
                        rewrite.seq,
                    ),
                )

    def journal_incomplete(self) -> bool:
        """Whether this workspace held data before it kept a journal (schema step 4)."""
        return bool(self._scalar("SELECT 1 FROM settings WHERE key = 'journal_incomplete'"))

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
            f"SELECT {_EVENT_COLUMNS}, seq FROM events WHERE seq IN ({','.join('?' * len(seqs))})",
            seqs,
        ).fetchall()
        return {row["seq"]: (self._event(row), row["seq"]) for row in rows}

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
            f"SELECT {_EVENT_COLUMNS}, seq FROM events WHERE {' AND '.join(where)} "
            "ORDER BY timestamp DESC, seq DESC LIMIT ?",
            (*params, limit),
        ).fetchall()
        return [_event_row(self._event(row), None, row["seq"]) for row in rows]


def _assignment(row: sqlite3.Row) -> Assignment:
    return Assignment(row["anonymous_id"], row["cio_id"], from_unix(row["assigned_at"]))


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
