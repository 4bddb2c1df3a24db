"""DuckDB, embedded, the audit's default engine: reads the exports on every core,
within the memory the audit is given (`duckdb_budget`), spilling beyond it."""

from __future__ import annotations

import bisect
import json
import re
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from cio_anon import rules
from cio_anon.audit.engines import Engine, first_line
from cio_anon.audit.exports import AuditError, Export, is_array
from cio_anon.audit.reading import (
    DATA,
    given_twice,
    odd_ids,
    quoted,
    read_objects,
    reader_paths,
    refuse_repeated,
    staged_fields,
    suspect,
    unreadable_time,
)
from cio_anon.errors import InvalidInput

PROGRESS_POLL = 0.1
"""Seconds between two looks at a running statement's progress."""

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
            return first_line(str(error))  # not the SQL it quotes after
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
