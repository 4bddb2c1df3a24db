"""The engines an audit runs on — DuckDB (embedded, the default) and Spark — each
reading the exports its own way into one staged shape (`Engine.load`, from what
`reading` says a record holds), with the few SQL expressions whose dialects differ."""

from __future__ import annotations

import atexit
import base64
import bisect
import json
import logging
import re
import shutil
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Self

from cio_anon import rules
from cio_anon.audit.exports import AuditError, Export, is_array
from cio_anon.audit.reading import (
    DATA,
    given_twice,
    odd_ids,
    quoted,
    read_objects,
    reader_paths,
    refuse_repeated,
    staged_columns,
    staged_fields,
    suspect,
    unreadable_time,
)
from cio_anon.errors import InvalidInput
from cio_anon.rules import identity

ENGINES = ("duckdb", "spark")
PROGRESS_POLL = 0.1
"""Seconds between two looks at a running statement's progress."""
Progress = Callable[[str, float | None], None]
"""Told what an audit is doing: the step, and how far its running statement is (0 to 1;
None where the engine cannot say)."""
Notice = Callable[[str], None]
"""Told, in a sentence, what the user should know while the audit goes on (a cluster
that gives it no executor)."""

UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12}
UNITS.update({"kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40})
PROCESS_ALLOWANCE = 256 * 2**20
PROCESS_SHARE = 0.35
"""What the audit process needs beside DuckDB's buffers (Python, parsing, what DuckDB
allocates outside them): the larger of the two. Measured over DuckDB's limit under a
1GB limit: 100–140 MiB on 2M records, 270 MiB on 20M."""
DUCKDB_FLOOR = 64 * 2**20
"""The least DuckDB is given: less and it cannot place even a small export."""
SMALLEST_LIMIT = PROCESS_ALLOWANCE + DUCKDB_FLOOR
"""The smallest --memory-limit that works (320 MiB): below it every limit would give
DuckDB the same floor, so a smaller one is refused rather than quietly raised."""


def duckdb_budget(limit: str) -> int:
    """DuckDB's memory limit, in bytes, for a whole process held to `limit` (e.g. 2GB,
    512MiB): the limit less the process's allowance. A limit under SMALLEST_LIMIT is
    refused with a sentence naming it."""
    found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", limit)
    unit = found.group(2).lower() if found else ""
    if found is None or unit not in UNITS:
        raise InvalidInput(
            f"--memory-limit {limit!r} is not a size: give a number and a unit (MB, GB, MiB, "
            "GiB), e.g. 2GB."
        )
    total = int(float(found.group(1)) * UNITS[unit])
    if total < SMALLEST_LIMIT:
        raise InvalidInput(
            f"--memory-limit {limit} is below the smallest that works, "
            f"{SMALLEST_LIMIT // 2**20}MiB ({-(-SMALLEST_LIMIT // 10**6)}MB): the process "
            f"needs {PROCESS_ALLOWANCE // 2**20} MiB beside DuckDB's {DUCKDB_FLOOR // 2**20} MiB."
        )
    allowance = max(PROCESS_ALLOWANCE, int(total * PROCESS_SHARE))
    return max(total - allowance, DUCKDB_FLOOR)


SPARK_LOCAL_MEMORY = "2g"
"""The driver's heap in local mode (Spark's own default, 1g, runs out of room for an
aggregation on a long-lived session)."""
SPARK_LOCAL_PARTITIONS = 8
"""Shuffle partitions in local mode."""
SPARK_MASTER_PORT = 7077
"""The port of a `spark://` master URL that names none (Spark's own default)."""
SPARK_REACH_SECONDS = 5.0
"""How long a master's address is given to take a connection before the audit says
that nothing answers there (Spark itself would try for a minute)."""
SPARK_IDLE_SAID = 10.0
"""Seconds a cluster's job may wait with no executor before the audit says so."""
SPARK_LOG = (Path(__file__).parent / "spark-log4j2.properties").as_uri()
"""Spark's log configuration for the audit: its errors, not its start's lines."""


# -- the engines ----------------------------------------------------------------------


class Engine:
    """What differs between engines: reading the exports into `staged` (seq, record,
    file, the FIELDS, received_at, happened), naming tables, timestamps, writing
    Parquet. Everything else is the shared SQL below."""

    name = ""
    title = ""
    """The engine's name in a sentence."""
    errors: tuple[type[Exception], ...] = ()
    """What the engine itself raises when it fails (not for the input: that is said as
    an AuditError where it is found)."""
    progress: Progress | None = None
    notice: Notice | None = None
    step = ""

    _scratch: Path | None = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        """Close; a failure of the engine's own (not the input's) said in a sentence.
        Closing after a failure may fail too (an engine that died): the first is said."""
        try:
            self.close()
        except Exception as closing:
            if error is None:
                said = self.failure(closing)
                if said is None:
                    raise
                raise AuditError(said) from None
        if isinstance(error, Exception):
            said = self.failure(error)
            if said is not None:
                raise AuditError(said) from None

    def failure(self, error: Exception) -> str | None:
        """The sentence for an error the engine itself raised, or None for another (an
        AuditError says itself)."""
        if not isinstance(error, self.errors) or isinstance(error, AuditError):
            return None
        where = f"while {self.step[0].lower()}{self.step[1:]}" if self.step else "at the start"
        return f"{self.title} failed {where}: {self._reason(error)}."

    def _reason(self, error: Exception) -> str:
        """What went wrong, from one of the engine's errors."""
        return _first_line(str(error)).rstrip(".")

    def scratch(self) -> Path:
        """A folder of the engine's own, removed when it closes (Spark reads lazily)."""
        if self._scratch is None:
            self._scratch = Path(tempfile.mkdtemp(prefix="cio-anon-audit-"))
        return self._scratch

    def _remove_scratch(self) -> None:
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)

    def begin(self, step: str) -> None:
        """Say that a new step starts (to `progress`, if anyone listens)."""
        self.step = step
        if self.progress is not None:
            self.progress(step, None)

    def load(self, exports: Sequence[Export]) -> int:
        raise NotImplementedError

    def table(self, name: str, select: str) -> None:
        """Keep a query's rows as a table."""
        raise NotImplementedError

    def view(self, name: str, select: str) -> None:
        """A name for a query, computed where it is used (not stored)."""
        raise NotImplementedError

    def drop(self, *names: str) -> None:
        """Forget tables and views no step reads any more (their memory is the next
        steps' to use)."""
        raise NotImplementedError

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def located(self, seqs: Sequence[int]) -> dict[int, tuple[str, int]]:
        """Where each of these staged rows was read (seq → file, record)."""
        if not seqs:
            return {}
        listed = ", ".join(str(seq) for seq in sorted(set(seqs)))
        rows = self.rows(f"SELECT seq, file, record FROM staged WHERE seq IN ({listed})")
        return {int(seq): (str(file), int(record)) for seq, file, record in rows}

    def release_staged(self) -> None:
        """Let the staged rows go once the steps have read what they need of them; only
        `located` reads them after (an engine that keeps them answers from them)."""

    raw = ""
    """The table of every record's JSON text by seq."""
    refused: list[tuple[int, str, int, str]] = []
    """The records Customer.io would refuse for a limit (see `refusals`)."""
    all_plain = False
    """Whether every identifier staged is printable ASCII (`identity.PLAIN`): then the
    identity forms are SQL's own trim and lower (see `identity.fold_sql`)."""

    # -- the identity rules' SQL forms, as this engine and its data need them ----------

    def fold(self, text: str) -> str:
        """SQL: `rules.fold(text)`."""
        return identity.fold_sql(text, self.matches, all_plain=self.all_plain)

    def stripped(self, text: str) -> str:
        """SQL: `rules.stripped(text)`."""
        return identity.stripped_sql(text, self.matches, all_plain=self.all_plain)

    def is_placeholder(self, text: str) -> str:
        """SQL: `rules.is_placeholder(text)`."""
        return identity.is_placeholder_sql(text, self.matches, all_plain=self.all_plain)

    def moment(self, seconds: str) -> str:
        """The SQL turning Unix seconds into a timestamp (UTC)."""
        raise NotImplementedError

    def matches(self, text: str, pattern: str) -> str:
        """The SQL for whether `text` matches a regular expression whole."""
        raise NotImplementedError

    def size(self, text: str) -> str:
        """The SQL for a text's size in UTF-8 bytes."""
        raise NotImplementedError

    def key(self, text: str) -> str:
        """The SQL for a cheap key of a text, equal for equal texts (a 64-bit hash: two
        texts may share one, so whoever groups by it compares the texts too)."""
        raise NotImplementedError

    def longest_key(self, json_object: str) -> str:
        """The SQL for the size of a JSON object's longest key, in UTF-8 bytes."""
        raise NotImplementedError

    def gives_twice(self, json: str, parent: str, keys: Sequence[str]) -> str:
        """The SQL for whether the object at JSON path `parent` of a JSON text gives one
        of `keys` twice."""
        raise NotImplementedError

    def rows_table(self, name: str, columns: str, rows: list[tuple[Any, ...]]) -> None:
        """A table of rows made here (`columns`: its SQL column definitions)."""
        raise NotImplementedError

    def write_parquet(self, select: str, path: Path) -> None:
        """Write a query's rows to `path`, one Parquet file."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class DuckDB(Engine):
    name = "duckdb"
    title = "DuckDB"

    def __init__(self, memory_limit: str | None = None) -> None:
        import duckdb  # noqa: PLC0415 (only `audit` needs DuckDB)

        self.conn = duckdb.connect()
        # rows carry their order (seq); keeping tables in insertion order would cost memory
        self.conn.execute("SET preserve_insertion_order = false")
        self.conn.execute("SET TimeZone = 'UTC'")
        # DuckDB tracks each statement's progress for query_progress(), printing nothing
        self.conn.execute("SET enable_progress_bar = true")
        self.conn.execute("SET enable_progress_bar_print = false")
        self.out_of_memory = duckdb.OutOfMemoryException
        self.errors = (duckdb.Error,)
        self.memory_limit = memory_limit
        # spill beside the engine's other scratch files, not into the working directory
        self.conn.execute(f"SET temp_directory = {quoted(str(self.scratch() / 'spill'))}")
        if memory_limit:
            budget = duckdb_budget(memory_limit)
            self.conn.execute(f"SET memory_limit = '{budget}B'")

    RARE = ("op", "method", "anonymous_merge", "created_at")
    """The FIELDS a Data Pipelines message has none of (control records', settings'):
    `staged_records` keeps them, with the text of a record `suspect` flags, as one JSON
    array (`rare`; text, so that filling in a text updates it in place), NULL on nearly
    every row — a column each would cost every row its slot."""

    def load(self, exports: Sequence[Export]) -> int:
        # One pass per file, straight into `staged_records`: every field at once (one
        # parse per record), the records themselves not kept — only those `suspect`
        # flags. Rows are stored in file order, files one after another, so a row's
        # place (its rowid) is its seq: numbering the records while reading would keep
        # DuckDB from reading a file on both cores. What is stored per row is what the
        # steps read, narrowly: beyond memory it is written out and read back.
        ends: list[tuple[int, Export]] = []  # each export's end, in rows
        lined = any(export.lined for export in exports)  # (else no `line` column)
        self.conn.execute("SET preserve_insertion_order = true")
        try:
            for index, export in enumerate(exports):
                into = (
                    "CREATE TABLE staged_records AS "
                    if index == 0
                    else "INSERT INTO staged_records "
                )
                offset = ends[-1][0] if ends else 0
                parquet = export.path.name.endswith(".parquet")
                if parquet or not self._read_typed(into, export, offset, lined):
                    self._read_texts(into, export, lined)
                ends.append((self.rows("SELECT count(*) FROM staged_records")[0][0], export))
        finally:
            self.conn.execute("SET preserve_insertion_order = false")
        first = name = ""  # each file's first row, its name
        for start, (end, export) in zip([0] + [end for end, _ in ends], ends, strict=False):
            first += f" WHEN rowid < {end} THEN {start}"
            name += f" WHEN rowid < {end} THEN {quoted(export.name)}"
        place = f"rowid + 1 - CASE {first} END"
        rare = ", ".join(f"{self._rare(index)} AS {field}" for index, field in enumerate(self.RARE))
        self.view(
            "staged",
            f"SELECT rowid + 1 AS seq, {f'coalesce(line, {place})' if lined else place} AS record, "
            f"CASE {name} END AS file, * EXCLUDE ({'line, ' if lined else ''}rare), {rare}, "
            f"{self._rare(len(self.RARE))} AS raw FROM staged_records",
        )
        self.view(self.raw, "SELECT seq, raw AS json FROM staged WHERE raw IS NOT NULL")
        self._ends = None if lined else [(end, export.name) for end, export in ends]
        return ends[-1][0] if ends else 0

    _ends: list[tuple[int, str]] | None = None
    """Each file's last row and its name, when a row's place is its record (no export is
    a recording, whose records are their lines)."""

    def located(self, seqs: Sequence[int]) -> dict[int, tuple[str, int]]:
        if self._ends is None:
            return super().located(seqs)
        ends = [end for end, _ in self._ends]
        found = {}
        for seq in seqs:
            index = bisect.bisect_left(ends, seq)  # the file whose rows reach it
            start = ends[index - 1] if index else 0
            found[seq] = (self._ends[index][1], seq - start)
        return found

    def release_staged(self) -> None:
        # beyond memory, a table held is a table spilled: the steps after get the room
        if self._ends is not None:
            self.drop(self.raw, "staged", "staged_records")

    def _read_typed(self, into: str, export: Export, offset: int, lined: bool) -> bool:
        """Stage a JSON export read into typed columns (`_typed_columns`), much faster
        than taking the fields out of each record's text. DuckDB refuses a file this
        way if a record is not an object or gives a key it reads twice (or, for a
        STRUCT column, holds a value where an object belongs): then False, with nothing
        staged. The data limit is looked for in the records' properties (an event's
        data); only the records flagged are read again, for their texts."""
        spec, field = self._typed_columns({**reader_paths(export.lined), **DATA})
        name = quoted(str(export.path))
        kind = "array" if is_array(export.path) else "newline_delimited"
        source = (
            f"read_json({name}, format = '{kind}', records = 'true', auto_detect = false, "
            f"columns = {spec})"
        )
        # the size of the properties' JSON as DuckDB writes it anew, not always as Python
        # does (numbers): half the limit keeps the flag generous
        data = f"{self.size(self._json_text(DATA['data']))} > {rules.EVENT_DATA_MAX_BYTES // 2}"
        select = self._staging(export, field, data, "NULL::VARCHAR", source, lined)
        if self._stage(into + select, export) is not None:
            return False  # read the texts instead, which says what is wrong
        flagged = f"SELECT rowid FROM staged_records WHERE suspect AND rowid >= {offset}"
        if self.rows(f"SELECT count(*) FROM ({flagged})")[0][0]:
            kept = ", ".join(self._rare(index) for index in range(len(self.RARE)))
            self._execute(
                f"""
                UPDATE staged_records SET rare = to_json([{kept}, texts.json]) FROM (
                    SELECT ordinality + {offset - 1} AS place, json::VARCHAR AS json
                    FROM read_json_objects({name}, format = '{kind}') WITH ORDINALITY
                    WHERE ordinality + {offset - 1} IN ({flagged})
                ) texts WHERE staged_records.rowid = texts.place
                """
            )
        return True

    def _typed_columns(self, paths: dict[str, str]) -> tuple[str, Callable[[str], str]]:
        """DuckDB `read_json` columns for these paths (its `columns` argument) and, by
        name, the SQL for each path's value over them — the value `json_extract_string`
        takes out of the record's text. A field read only whole is VARCHAR (an object or
        array as its JSON text), one only looked into a STRUCT of what is looked at, one
        both read whole and looked into is JSON, looked into by `json_extract_string`.
        DuckDB refuses a file whose records give a key of a VARCHAR or STRUCT twice; a key
        looked into in JSON given twice (`gives_twice`) is refused by `error()`."""
        keys = {name: path.removeprefix("$.").split(".") for name, path in paths.items()}

        def kind(below: list[list[str]]) -> str:
            if all(not rest for rest in below):
                return "VARCHAR"
            if any(not rest for rest in below):
                return "JSON"
            fields: dict[str, list[list[str]]] = {}
            for rest in below:
                fields.setdefault(rest[0], []).append(rest[1:])
            inner = {key: kind(paths) for key, paths in fields.items()}
            if "JSON" in inner.values():  # a STRUCT is only walked into, to its VARCHARs
                return "JSON"
            return "STRUCT(" + ", ".join(f'"{key}" {type_}' for key, type_ in inner.items()) + ")"

        tops: dict[str, list[list[str]]] = {}
        for path in keys.values():
            tops.setdefault(path[0], []).append(path[1:])
        kinds = {top: kind(below) for top, below in tops.items()}
        spec = "{" + ", ".join(f"{quoted(top)}: {quoted(kinds[top])}" for top in tops) + "}"

        def field(name: str) -> str:
            top, *rest = keys[name]
            if kinds[top] != "JSON":
                return ".".join(f'"{key}"' for key in (top, *rest))
            value = f'json_extract_string("{top}", {quoted(".".join(["$", *rest]))})'
            if not rest:
                return value
            # DuckDB reads the first of a repeated key, a replay the last: the file is left
            # to the other reader, which refuses it with a sentence (`given_twice`)
            twice = self.gives_twice(f'"{top}"', ".".join(["$", *rest[:-1]]), rest[-1:])
            # each look parses the JSON again: none where its text cannot hold the key
            # (not as a string, and no escape that could spell it)
            text = self._json_text(f"$.{top}")
            key = quoted(json.dumps(rest[-1], ensure_ascii=False))
            written = f"contains({text}, {key}) OR contains({text}, '\\')"
            return (
                f"(CASE WHEN {written} THEN "
                f"(CASE WHEN {twice} THEN error('a key given twice') ELSE {value} END) END)"
            )

        return spec, field

    @staticmethod
    def _rare(index: int) -> str:
        """SQL: the value at `index` of `rare` (RARE, then the record's text)."""
        return f"json_extract_string(rare, '$[{index}]')"

    @staticmethod
    def _json_text(path: str) -> str:
        """SQL: the JSON text, as `read_json` writes it, of a top-level field read as JSON."""
        return f'"{path.removeprefix("$.")}"::VARCHAR'

    def _read_texts(self, into: str, export: Export, lined: bool) -> None:
        """Stage any export: each field taken out of each record's JSON text."""
        paths = reader_paths(export.lined)
        names, listed = list(paths), ", ".join(quoted(path) for path in paths.values())

        def field(name: str) -> str:
            return f"f[{names.index(name) + 1}]"

        path = export.path
        name = quoted(str(path))
        if path.name.endswith(".parquet"):
            records = f"(SELECT to_json(t) AS json FROM read_parquet({name}) t)"
        else:
            kind = "array" if is_array(path) else "newline_delimited"
            records = f"read_json_objects({name}, format = '{kind}')"
        source = f"(SELECT json, json_extract_string(json, [{listed}]) AS f FROM {records})"
        # data beyond its limit needs a record beyond it
        data = f"{self.size('json::VARCHAR')} > {rules.EVENT_DATA_MAX_BYTES}"
        select = self._staging(export, field, data, "json::VARCHAR", source, lined)
        why = self._stage(into + select, export)
        if why is not None:
            raise AuditError(f"{export.name}: cannot be read as an export ({why})")
        if not path.name.endswith(".parquet"):  # (Parquet's records hold each key once)
            self._refuse_repeated_keys(export, paths, records)

    def _refuse_repeated_keys(self, export: Export, paths: dict[str, str], records: str) -> None:
        """Refuse a record that gives a key read twice (`given_twice`)."""
        objects = read_objects(paths)
        record = "json ->> '_line'" if export.lined else "ordinality"
        found = self.rows(
            f"SELECT {record}, json::VARCHAR FROM {records} WITH ORDINALITY "
            f"WHERE {given_twice(self, 'json', objects)} ORDER BY ordinality LIMIT 1"
        )
        if found:
            record, text = found[0]
            refuse_repeated(export.name, record, text, objects)

    def _stage(self, statement: str, export: Export) -> str | None:
        """Run a statement staging `export`: None, or why DuckDB could not read it."""
        try:
            self._execute(statement)
        except AuditError:
            raise
        except Exception as error:  # noqa: BLE001 (DuckDB's errors name the problem)
            return _first_line(str(error))  # not the SQL it quotes after
        return None

    def _staging(
        self,
        export: Export,
        field: Callable[[str], str],
        data: str,
        text: str,
        source: str,
        lined: bool,
    ) -> str:
        """The SELECT of one export's staged rows from `source` (its records in file
        order, each path's value being `field(name)`); `data`: whether a record's data
        may be beyond its limit; `text`: a record's JSON text, kept if it is suspect;
        `lined`: whether the rows have a `line` (some export is a recording)."""
        given = f"coalesce({field('at')}, {field('received')}, {field('timestamp')})"
        received, happened = self._seconds(given), self._seconds(field("timestamp"))
        unreadable = unreadable_time(given, received, field("timestamp"), happened)
        fields = staged_fields(field)
        rare = [fields.pop(name) for name in self.RARE]
        control = f"coalesce({field('op')}, {field('method')})"  # a control record's
        columns = ", ".join(f"{sql} AS {name}" for name, sql in fields.items())
        line = ""
        if lined:
            given_line = f"CAST({field('_line')} AS BIGINT)" if export.lined else "NULL::BIGINT"
            line = f"{given_line} AS line, "
        return (
            f"SELECT *, {odd_ids(self)} AS odd_ids FROM ("
            f"SELECT {line}{columns}, "
            f"{received} AS received_at, {happened} AS happened, {unreadable} AS bad_time, "
            f"suspect, CASE WHEN {control} IS NOT NULL OR suspect "
            f"THEN to_json([{', '.join(rare)}, CASE WHEN suspect THEN {text} END]) END AS rare "
            f"FROM (SELECT *, {suspect(self, field, data)} AS suspect FROM {source})) fields"
        )

    @staticmethod
    def _seconds(text: str) -> str:
        """Unix seconds from a JSON value's text: a number (or a numeric string), or
        ISO-8601 (UTC when it names no offset, as everywhere in cio-anon)."""
        return (
            f"CASE WHEN TRY_CAST({text} AS DOUBLE) IS NOT NULL THEN TRY_CAST({text} AS DOUBLE) "
            f"ELSE epoch(TRY_CAST({text} AS TIMESTAMPTZ)) END"
        )

    def _execute(self, sql: str, params: list[Any] | None = None) -> Any:
        """Run a statement (see `_run`); running out of memory is said in a sentence."""
        try:
            return self._run(sql, params)
        except self.out_of_memory:
            held = f"under --memory-limit {self.memory_limit}" if self.memory_limit else ""
            raise AuditError(
                f"DuckDB ran out of memory {held or 'on this machine'}: give it more with "
                "--memory-limit (it spills to disk beyond it, but needs some room to work)."
            ) from None

    def _run(self, sql: str, params: list[Any] | None) -> Any:
        """Run a statement; with someone listening, in a worker thread while this one
        reports DuckDB's progress on it (and interrupts it on Ctrl-C)."""
        if self.progress is None:
            return self.conn.execute(sql, params)
        outcome: dict[str, Any] = {}

        def work() -> None:
            try:
                outcome["result"] = self.conn.execute(sql, params)
            except BaseException as error:  # noqa: BLE001 (re-raised in the caller)
                outcome["error"] = error

        worker = threading.Thread(target=work, name="cio-anon-audit", daemon=True)
        worker.start()
        try:
            while True:
                worker.join(PROGRESS_POLL)
                if not worker.is_alive():
                    break
                done = self.conn.query_progress()
                if done >= 0:
                    self.progress(self.step, min(done, 100.0) / 100)
        except KeyboardInterrupt:
            self.conn.interrupt()
            worker.join()
            raise
        if "error" in outcome:
            raise outcome["error"]
        return outcome["result"]

    def table(self, name: str, select: str) -> None:
        self._execute(f"CREATE TABLE {name} AS {select}")

    def view(self, name: str, select: str) -> None:
        self._execute(f"CREATE VIEW {name} AS {select}")

    def drop(self, *names: str) -> None:
        kinds = dict(self.rows("SELECT table_name, table_type FROM information_schema.tables"))
        for name in names:
            self._execute(f"DROP {'VIEW' if kinds[name] == 'VIEW' else 'TABLE'} {name}")

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        return list(self._execute(sql).fetchall())

    raw = "suspect_records"

    def moment(self, seconds: str) -> str:
        return f"to_timestamp({seconds})"

    def matches(self, text: str, pattern: str) -> str:
        return f"regexp_full_match({text}, {quoted(pattern)})"

    def size(self, text: str) -> str:
        return f"strlen({text})"

    def key(self, text: str) -> str:
        return f"hash({text})"

    def longest_key(self, json_object: str) -> str:
        return f"list_max(list_transform(json_keys({json_object}), lambda k: strlen(k)))"

    def gives_twice(self, json: str, parent: str, keys: Sequence[str]) -> str:
        listed = ", ".join(quoted(key) for key in keys)
        among = f"list_filter(json_keys({json}, {quoted(parent)}), lambda k: k IN ({listed}))"
        if len(keys) == 1:  # (what the typed read asks of every record: no list to sort)
            return f"len({among}) > 1"
        return f"len({among}) > len(list_distinct({among}))"

    def rows_table(self, name: str, columns: str, rows: list[tuple[Any, ...]]) -> None:
        self.conn.execute(f"CREATE TABLE {name} ({columns})")
        if rows:
            marks = ", ".join("?" * len(rows[0]))
            self.conn.executemany(f"INSERT INTO {name} VALUES ({marks})", rows)

    def write_parquet(self, select: str, path: Path) -> None:
        self._execute(f"COPY ({select}) TO {quoted(str(path))} (FORMAT parquet)")

    def close(self) -> None:
        self.conn.close()
        self._remove_scratch()


class Spark(Engine):
    """Spark, local (`local[*]`) unless given a master URL. Reads NDJSON (gzipped too)
    and Parquet; a JSON array is refused (Spark reads arrays only whole per file)."""

    name = "spark"
    title = "Spark"

    def __init__(self, master: str | None = None) -> None:
        try:
            from py4j.protocol import Py4JError  # noqa: PLC0415
            from pyspark.errors import PySparkException  # noqa: PLC0415
            from pyspark.sql import SparkSession  # noqa: PLC0415
        except ImportError:
            raise InvalidInput(
                "--engine spark needs PySpark: pip install 'cio-anon[spark]' (and Java)."
            ) from None
        # Spark's own failures: the JVM's (through Py4J), PySpark's, and the JVM gone
        self.errors = (Py4JError, PySparkException, ConnectionError)
        self.master = master
        self.on_cluster = not (master or "local").startswith("local")
        if master is not None:
            reach_master(master)
        builder = (
            SparkSession.builder.master(master or "local[*]")
            .appName("cio-anon audit")
            .config("spark.ui.enabled", "false")
            .config("spark.ui.showConsoleProgress", "false")  # stderr is for our own words
            .config("spark.sql.session.timeZone", "UTC")
            # instants in Parquet as DuckDB writes them (UTC-adjusted microseconds), not
            # INT96, which readers take for times without a zone
            .config("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
            # Spark's log: its errors, and not the lines of its start; its files in a
            # folder of the audit's (both before the options of the user's, which win)
            .config("spark.driver.defaultJavaOptions", _java_options())
        )
        if master is None:
            # one machine: room for the driver, which is the executor too, and few
            # shuffle partitions (Spark's 200 are made for a cluster)
            builder = builder.config("spark.driver.memory", SPARK_LOCAL_MEMORY)
            builder = builder.config("spark.sql.shuffle.partitions", str(SPARK_LOCAL_PARTITIONS))
        self._hold()
        try:
            self.spark = builder.getOrCreate()
            self.spark.sparkContext.setLogLevel("ERROR")
            self._take_ctrl_c()  # again: PySpark put its own handler in place
            if self._stopping:  # Ctrl-C while Java was starting
                self._interrupted(signal.SIGINT, None)
        except BaseException as error:
            self._let_go()
            if not isinstance(error, self.errors):
                raise
            # PySpark's own error here (not the JVM's): its Java process did not start
            java = isinstance(error, PySparkException) and not isinstance(error, Py4JError)
            where = " (what Spark printed above says why; no Java, for one: JAVA_HOME, or "
            raise AuditError(
                f"Spark could not start{f' on {master}' if master else ''}: "
                f"{self._reason(error)}{where + 'java on the PATH)' if java else ''}."
            ) from None
        self._done = threading.Event()
        if self.on_cluster:
            # Spark waits for executors without end, and its warning that none came is
            # below the log level kept: the audit says it
            threading.Thread(target=self._watch, name="cio-anon-executors", daemon=True).start()

    def _hold(self) -> None:
        """While the audit runs: Ctrl-C is the audit's (`_interrupted`), and what Py4J
        logs of an interrupted call is dropped (to the root logger, which prints it when
        no one listens there). `_let_go` gives both back."""
        self._interrupt = signal.getsignal(signal.SIGINT)
        self._stopping = False
        self._quiet = logging.NullHandler()
        logging.getLogger().addHandler(self._quiet)
        self._take_ctrl_c()

    def _take_ctrl_c(self) -> None:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, self._interrupted)

    def _let_go(self) -> None:
        logging.getLogger().removeHandler(self._quiet)
        main = threading.current_thread() is threading.main_thread()
        if main and self._interrupt is not None:  # (None: not Python's own)
            signal.signal(signal.SIGINT, self._interrupt)

    def _interrupted(self, signum: int, frame: FrameType | None) -> None:
        """Ctrl-C: Spark's Java process killed at once, then the audit stops as any
        command stops (exit 130). PySpark's own handler cancels the jobs through the
        connection the interrupted call is reading (tracebacks), and a JVM told to
        stop prints its own. While Java starts, it is let start and then stopped: a
        start cut short left it running, with no one to tell it to stop."""
        from pyspark import SparkContext  # noqa: PLC0415

        process = getattr(SparkContext._gateway, "proc", None)
        if process is None:
            self._stopping = True
            return
        process.kill()
        process.wait()  # gone before its folder is removed (`_java_options`)
        raise KeyboardInterrupt

    def _watch(self) -> None:
        """Say once when a job has waited SPARK_IDLE_SAID seconds with no executor."""
        context = self.spark.sparkContext
        idle_since: float | None = None
        while not self._done.wait(1.0):
            try:
                executors = context._jsc.sc().getExecutorIds().size()
                waiting = bool(context.statusTracker().getActiveStageIds())
            except self.errors:
                return  # the JVM is gone: the audit's own call says so
            if executors or not waiting:
                idle_since = None
                continue
            idle_since = idle_since if idle_since is not None else time.monotonic()
            if time.monotonic() - idle_since >= SPARK_IDLE_SAID and self.notice is not None:
                self.notice(
                    f"Spark's master {self.master} has given this audit no executor in "
                    f"{SPARK_IDLE_SAID:.0f} s; it waits for a worker with a free core and "
                    "the memory an executor asks (spark.executor.memory, 1g unless set)."
                )
                return

    def _reason(self, error: Exception) -> str:
        """Spark's error said: the JVM's deepest cause, PySpark's own, or the JVM gone."""
        from py4j.protocol import Py4JJavaError, Py4JNetworkError  # noqa: PLC0415

        if isinstance(error, Py4JJavaError):
            cause = error.java_exception
            while cause.getCause() is not None:
                cause = cause.getCause()
            return _first_line(str(cause.getMessage() or cause.toString())).rstrip(".")
        if isinstance(error, ConnectionError | Py4JNetworkError):
            return "its Java process stopped answering (killed, or out of memory?)"
        return super()._reason(error)

    def load(self, exports: Sequence[Export]) -> int:
        from pyspark.sql import functions

        frames = []
        offset = 0
        for export in exports:
            path = export.path
            if path.name.endswith(".parquet"):
                frame = self.spark.read.parquet(str(path))
                frame = frame.select(functions.to_json(functions.struct("*")).alias("value"))
            elif is_array(path):
                raise AuditError(
                    f"{export.name}: a JSON array; --engine spark reads NDJSON or Parquet."
                )
            else:
                frame = self.spark.read.text(str(path))
                frame = frame.where(functions.trim("value") != "")
            # ids increase in file order: file index first, then the position
            frame = frame.select(
                (functions.monotonically_increasing_id() + functions.lit(offset)).alias("seq"),
                functions.lit(export.name).alias("file"),
                functions.col("value").alias("json"),
                (
                    functions.get_json_object("value", "$._line").cast("bigint")
                    if export.lined
                    else functions.lit(None).cast("bigint")
                ).alias("line"),
            )
            frames.append(frame)
            offset += 1 << 50
        messages = frames[0]
        for frame in frames[1:]:
            messages = messages.unionByName(frame)
        messages.createOrReplaceTempView("raw_messages")
        paths = reader_paths()  # (`_line` is read above)

        def field(name: str) -> str:
            return f"get_json_object(json, '{paths[name]}')"

        columns = staged_columns(field)

        given = f"coalesce({field('at')}, {field('received')}, {field('timestamp')})"
        received, happened = self._seconds(given), self._seconds(field("timestamp"))
        unreadable = unreadable_time(given, received, field("timestamp"), happened)
        data = f"{self.size('json')} > {rules.EVENT_DATA_MAX_BYTES}"  # needs a record beyond it
        self.table(
            "staged",
            f"SELECT *, {odd_ids(self)} AS odd_ids FROM ("
            "SELECT seq, coalesce(line, row_number() OVER (PARTITION BY file ORDER BY seq)) "
            "AS record, file, "
            f"{columns}, {received} AS received_at, {happened} AS happened, "
            f"{unreadable} AS bad_time, "
            f"{suspect(self, field, data)} AS suspect FROM raw_messages) fields",
        )
        objects = read_objects(paths)
        found = self.rows(
            "SELECT s.file, s.record, r.json FROM raw_messages r JOIN staged s ON s.seq = r.seq "
            f"WHERE {given_twice(self, 'r.json', objects)} ORDER BY r.seq LIMIT 1"
        )
        if found:
            file, record, text = found[0]
            refuse_repeated(file, record, text, objects)
        return int(self.rows("SELECT count(*) FROM staged")[0][0])

    @staticmethod
    def _seconds(value: str) -> str:
        return (
            f"CASE WHEN {value} RLIKE '^-?[0-9]+(\\\\.[0-9]*)?$' THEN CAST({value} AS DOUBLE) "
            f"ELSE CAST(try_to_timestamp({value}) AS DOUBLE) END"
        )

    def table(self, name: str, select: str) -> None:
        # computed now and kept without the plan that made it: a table's readers plan
        # over its rows, not again over every step before it (the plans of the later
        # steps, written out for Spark's listeners, grew to tens of megabytes)
        self.spark.sql(select).localCheckpoint().createOrReplaceTempView(name)

    def view(self, name: str, select: str) -> None:
        self.spark.sql(select).createOrReplaceTempView(name)

    def drop(self, *names: str) -> None:
        for name in names:  # (the rows a table kept are released at close)
            self.spark.catalog.dropTempView(name)

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        return [tuple(row) for row in self.spark.sql(sql).collect()]

    raw = "raw_messages"

    def moment(self, seconds: str) -> str:
        return f"timestamp_seconds({seconds})"

    def matches(self, text: str, pattern: str) -> str:
        # to the very end (`$` would let a final line break through); Spark's literal
        # takes each backslash escaped
        whole = "^(?:" + pattern + ")" + chr(92) + "z"
        return f"({text} RLIKE {quoted(whole.replace(chr(92), chr(92) * 2))})"

    def size(self, text: str) -> str:
        return f"octet_length({text})"

    def key(self, text: str) -> str:
        return f"xxhash64({text})"

    def longest_key(self, json_object: str) -> str:
        keys = f"map_keys(from_json({json_object}, 'map<string,string>'))"
        return f"array_max(transform({keys}, k -> octet_length(k)))"

    def gives_twice(self, json: str, parent: str, keys: Sequence[str]) -> str:
        listed = ", ".join(quoted(key) for key in keys)
        inner = json if parent == "$" else f"get_json_object({json}, {quoted(parent)})"
        among = f"filter(json_object_keys({inner}), k -> k IN ({listed}))"
        return f"size({among}) > size(array_distinct({among}))"

    def rows_table(self, name: str, columns: str, rows: list[tuple[Any, ...]]) -> None:
        # rows carried in the statement (JSON, in base64 so no character needs escaping):
        # made by the JVM alone, where `createDataFrame` starts Python workers on every
        # executor to read them, and a cluster's executors would need Python for it
        names = [column.split()[0] for column in columns.split(",")]
        text = json.dumps([dict(zip(names, row, strict=True)) for row in rows])
        encoded = base64.b64encode(text.encode()).decode()
        schema = f"ARRAY<STRUCT<{columns}>>"
        self.table(
            name,
            f"SELECT inline(from_json(CAST(unbase64('{encoded}') AS STRING), '{schema}'))",
        )

    def write_parquet(self, select: str, path: Path) -> None:
        """Spark writes a folder of parts: one part, made in a folder of the audit's and
        moved to `path` (what stops the move, a full disk, said in a sentence). On a
        cluster an executor writes it, into its own machine's folder of that name: a
        folder beside `path`, which every node mounts as the exports are, not this
        machine's scratch folder."""
        if self.on_cluster:
            room = Path(tempfile.mkdtemp(prefix=f".{path.name}-", dir=path.parent))
        else:
            room = self.scratch()
        written = room / "written"
        try:
            self.spark.sql(select).coalesce(1).write.mode("overwrite").parquet(str(written))
            parts = list(written.glob("part-*.parquet"))
            if len(parts) != 1:
                raise AuditError(
                    "Spark's executors wrote the placements where this machine does not see "
                    f"them ({path.parent}): give --placements a path on storage every node "
                    "mounts at the same place, as the exports are."
                )
            shutil.move(parts[0], path)
        except OSError as error:
            raise AuditError(f"Cannot write {path}: {error.strerror}.") from None
        finally:
            shutil.rmtree(room if self.on_cluster else written, ignore_errors=True)

    def close(self) -> None:
        # the tables' rows (kept by localCheckpoint) and anything cached
        self._done.set()
        try:
            for rdd in self.spark.sparkContext._jsc.getPersistentRDDs().values():
                rdd.unpersist(False)
            self.spark.catalog.clearCache()
        finally:
            self._let_go()
            self._remove_scratch()


def _java_options() -> str:
    """The options of the Java process an audit starts: Spark's log configuration, and
    a `java.io.tmpdir` of the audit's (Spark's folders, `blockmgr-*` and `spark-*`, go
    there unless spark.local.dir or SPARK_LOCAL_DIRS say otherwise), removed when this
    process ends: a JVM killed (Ctrl-C, out of memory) never runs the hooks that remove
    its own, and left them in /tmp. No folder for a JVM already running (it has its
    own)."""
    from pyspark import SparkContext  # noqa: PLC0415

    options = f"-Dlog4j2.configurationFile={SPARK_LOG}"
    if SparkContext._gateway is not None:
        return options
    folder = Path(tempfile.mkdtemp(prefix="cio-anon-spark-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    quoted_folder = re.sub(r'([\\"])', r"\\\1", str(folder))  # as Spark's launcher reads it
    return f'{options} "-Djava.io.tmpdir={quoted_folder}"'


SPARK_MASTERS = ("spark://", "k8s://", "yarn", "local", "mesos://")
"""What a master URL starts with, for Spark to take it."""


def reach_master(master: str) -> None:
    """Refuse, at once and in a sentence, a master URL Spark would not take, and a
    `spark://` master where nothing takes a connection (at any address of a URL naming
    several, as a master with standby ones is named)."""
    if not master.startswith(SPARK_MASTERS):
        raise AuditError(
            f"--spark-master {master} is not a master URL Spark takes: spark://HOST:PORT (a "
            "standalone cluster), k8s://…, yarn, or local[N]."
        )
    if not master.startswith("spark://"):
        return
    why = ""
    for address in master.removeprefix("spark://").split(","):
        host, _, port = address.rpartition(":") if ":" in address else (address, "", "")
        try:
            with socket.create_connection(
                (host.strip("[]"), int(port or SPARK_MASTER_PORT)), SPARK_REACH_SECONDS
            ):
                return
        except ValueError:
            raise AuditError(f"--spark-master {master}: {port!r} is not a port.") from None
        except OSError as error:
            why = error.strerror or str(error) or "timed out"
    raise AuditError(
        f"Nothing answers at {master} ({why.lower()}): is its Spark master running, and is "
        'this the URL it gives (its log says "Starting Spark master at spark://…")?'
    )


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else text


def engine(name: str, *, memory_limit: str | None = None, master: str | None = None) -> Engine:
    if name == "duckdb":
        return DuckDB(memory_limit)
    if name == "spark":
        return Spark(master)
    raise InvalidInput(f"The engine {name!r} is not one of {', '.join(ENGINES)}.")
