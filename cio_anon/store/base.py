"""The workspace file itself: opening and migrating it, transactions and savepoints,
its settings, and the journal's write buffer. Each family of tables has its own module
beside this one (see `store/__init__.py`)."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn, Self

from cio_anon import jsonio
from cio_anon.clock import from_unix
from cio_anon.errors import WorkspaceBusy, WorkspaceError
from cio_anon.models import (
    Settings,
)
from cio_anon.rules import Assignment
from cio_anon.rules.identity import cio_id_of
from cio_anon.store.migrations import APPLICATION_ID, MIGRATIONS, SCHEMA_VERSION

PRAGMAS = (
    # In WAL mode (set when the file is created) NORMAL never corrupts the file on a
    # crash; a power cut may lose the last commits. Commits stop waiting for fsync.
    "PRAGMA synchronous=NORMAL",
    # A 64 MiB page cache: large purges and merges touch many pages.
    "PRAGMA cache_size=-65536",
    "PRAGMA temp_store=MEMORY",
)
BUSY_TIMEOUT_SECONDS = 30.0
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


JOURNAL_BATCH = 1_000
"""Journal rows written in one statement."""

JournalRow = tuple[float, str, str, str | None, str | None]
"""A journal row: at, kind, record (JSON), people, anonymous_id."""


def journal_row(
    at: datetime,
    kind: str,
    record: dict[str, Any] | str,
    people: Iterable[str] = (),
    anonymous_id: str | None = None,
) -> JournalRow:
    """The journal row of the fixture `record` (or its JSON) that replays a call (`kind`:
    its operation's class name; see `ingest.emit`), naming whom it touched: cio_ids in
    `people`, and an `anonymous_id` (kept by `Store.add_journal_rows`)."""
    text = record if isinstance(record, str) else jsonio.dumps(record)
    return (at.timestamp(), kind, text, " ".join(people) or None, anonymous_id)


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


def seconds_of(moment: datetime | None) -> float | None:
    return None if moment is None else moment.timestamp()


def moment_of(seconds: float | None) -> datetime | None:
    return None if seconds is None else from_unix(seconds)


def remove_workspace_files(path: Path) -> None:
    """Remove a workspace file and its WAL companions."""
    for suffix in ("", "-wal", "-shm", "-journal"):
        with contextlib.suppress(FileNotFoundError):
            os.remove(f"{path}{suffix}")


class Store:
    """An open workspace file. Its tables' statements are in the modules beside this one;
    `Workspace` joins them."""

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
        self._journal_rows: list[JournalRow] = []
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
    ) -> Self:
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
    def _connect(cls, path: Path, *, threaded: bool = False, named: Path | None = None) -> Self:
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
                self.add_journal_rows(
                    [journal_row(initial.created_at, "ChangeSettings", initial.record())]
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

    def _rows_among(self, sql: str, values: Sequence[str]) -> list[sqlite3.Row]:
        """The rows of `sql`, whose `{ids}` becomes the set of `values` (one parameter,
        however many values); none, without a query, when there are no values."""
        if not values:
            return []
        query = sql.replace("{ids}", "(SELECT value FROM json_each(?))")
        return self.conn.execute(query, (jsonio.dumps(list(values)),)).fetchall()

    def _among(self, sql: str, values: Sequence[str]) -> set[str]:
        """The first column of `_rows_among`, as a set."""
        return {row[0] for row in self._rows_among(sql, values)}

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

    # -- the journal --------------------------------------------------------------------

    def add_journal_rows(self, rows: Iterable[JournalRow]) -> None:
        """Keep journal rows (`journal_row`: the fixture record that replays a call,
        naming whom it touched). Rows are written in bulk (`JOURNAL_BATCH` at a time, and
        before the commit); a savepoint rolled back drops the rows it added."""
        self._journal_rows += rows
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

    def journal_incomplete(self) -> bool:
        """Whether this workspace held data before it kept a journal (schema step 4)."""
        return bool(self._scalar("SELECT 1 FROM settings WHERE key = 'journal_incomplete'"))
