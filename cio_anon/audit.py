"""`cio-anon audit`: the placement rules over exports too large for a workspace, set-based
on DuckDB (embedded, the default) or on Spark.

Exports are read as teams keep them — NDJSON (gzipped too), JSON arrays, Parquet; files,
globs and folders — straight into the engine, never through Python one record at a
time. Python touches only what it must: a `serve --record` file's Data Pipelines
requests are unwrapped into their messages first (`readable`), and the few records that
come near one of Customer.io's limits are checked by the replay's own code
(`refusals`). Each engine reads and stages the messages its own way (`Engine.load`)
into one table shape; from there every statement is shared, and the placement is the
very statement `setrules` holds to the replay engine, so an audit and a replay agree
event by event, on either engine.

What a set-based pass cannot know the way a sequential replay does is refused with a
sentence: settings changes after the first message, purges, and HTTP calls other than
recorded Data Pipelines requests (profile merges, deletes, the Track API). `expect`
records are skipped: they assert, they change nothing.
"""

from __future__ import annotations

import contextlib
import glob
import re
import shutil
import tempfile
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cio_anon import rules, setrules
from cio_anon.clock import from_unix, parse_time
from cio_anon.errors import CioAnonError, InvalidInput
from cio_anon.ingest import SEMANTIC_EVENTS
from cio_anon.rules import IdentifierKind, identity

if TYPE_CHECKING:
    from cio_anon.check import Report as CheckReport
    from cio_anon.rules.findings import Finding

SUFFIXES = (".ndjson", ".jsonl", ".json", ".ndjson.gz", ".jsonl.gz", ".json.gz", ".parquet")
ENGINES = ("duckdb", "spark")
PROGRESS_POLL = 0.1
"""Seconds between two looks at a running statement's progress."""
# The fields every engine stages, from each record's JSON (path → column).
FIELDS = {
    "op": "$.op",
    "method": "$.method",
    "type": "$.type",
    "user_id": "$.userId",
    "anonymous_id": "$.anonymousId",
    "message_id": "$.messageId",
    "trait_email": "$.traits.email",
    "event": "$.event",
    "source": "$.context.library.name",
    "anonymous_merge": "$.anonymous_merge",
    "created_at": "$.created_at",
}


Progress = Callable[[str, float | None], None]
"""Told what an audit is doing: the step, and how far its running statement is (0 to 1;
None where the engine cannot say)."""


# What the limit pre-check reads from each record (path → name), not kept in `staged`.
LIMITED = {
    "url": "$.properties.url",
    "name": "$.name",
    "traits": "$.traits",
}


class AuditError(CioAnonError):
    """An export the audit cannot read, or a record it cannot place set-based."""


@dataclass
class AuditReport:
    files: list[str]
    engine: str
    records: int
    events: int
    rules: dict[str, int]
    by_day: dict[str, dict[str, int]]
    by_source: dict[str, dict[str, int]]
    campaigns: dict[str, int] = field(default_factory=dict)
    """The events on a person: how many can trigger campaigns, how many count for
    segments only."""
    findings: list[Finding] = field(default_factory=list)

    def as_check_report(self) -> CheckReport:
        """The findings as `check` reports them (for its JUnit, SARIF and GitHub forms)."""
        from cio_anon.check import Report

        return Report(self.files, None, list(self.findings), self.records)


def exports(patterns: Sequence[str]) -> list[Path]:
    """The files named: paths, globs, and folders (every export file under them, as a
    day-partitioned archive lays them out), each in name order."""
    found: list[Path] = []
    for pattern in patterns:
        path = Path(pattern)
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.name.endswith(SUFFIXES))
        elif any(char in pattern for char in "*?["):
            found += sorted(Path(p) for p in glob.glob(pattern, recursive=True))
        elif path.exists():
            found.append(path)
        else:
            raise AuditError(f"{pattern}: no such file or folder.")
    if not found:
        raise AuditError(f"No export files in {', '.join(patterns)}.")
    return found


@dataclass(frozen=True)
class Export:
    """A file an engine reads: `path`, reported as `name`; `lined`: each record carries
    `_line`, its line in `name` (a recording unwrapped into its messages)."""

    path: Path
    name: str
    lined: bool = False


def readable(paths: Sequence[Path], folder: Path) -> list[Export]:
    """What the engines read for these exports. A `serve --record` file (its first
    record an HTTP call) is unwrapped into `folder`: each Data Pipelines request becomes
    its messages — a batch's items in order — received when the request was, as a
    replay applies them; its other records stay as they are."""
    out = []
    for index, path in enumerate(paths):
        if path.name.endswith((".parquet", ".gz")) or not _is_recording(path):
            out.append(Export(path, str(path)))
            continue
        target = folder / f"recording-{index}.ndjson"
        with path.open("rb") as source, target.open("wb") as unwrapped:
            for line, text in enumerate(source, 1):
                if text.strip():
                    unwrapped.writelines(_unwrapped(text, line, path))
        out.append(Export(target, str(path), lined=True))
    return out


def _is_recording(path: Path) -> bool:
    import orjson

    with path.open("rb") as head:
        for text in head:
            if text.strip():
                try:
                    first = orjson.loads(text)
                except orjson.JSONDecodeError:
                    return False
                return isinstance(first, dict) and "method" in first
    return False


def _unwrapped(text: bytes, line: int, name: Path) -> list[bytes]:
    """One recorded line as the messages it carried, each with `_line`."""
    import orjson

    from cio_anon.ingest.pipelines import BATCH_PATHS, PATHS

    try:
        record = orjson.loads(text)
    except orjson.JSONDecodeError as error:
        raise AuditError(f"{name}: record {line} is not JSON ({error}).") from None
    if not isinstance(record, dict):
        return [orjson.dumps(record) + b"\n"]
    route = str(record.get("path", "")).split("?", 1)[0].rstrip("/")
    body = record.get("body")
    if isinstance(body, str):
        with contextlib.suppress(orjson.JSONDecodeError):
            body = orjson.loads(body)
    if record.get("method") != "POST" or not isinstance(body, dict):
        return [orjson.dumps({**record, "_line": line}) + b"\n"]
    if route in BATCH_PATHS and isinstance(body.get("batch"), list):
        messages = [item for item in body["batch"] if isinstance(item, dict)]
    elif route in PATHS:
        messages = [{**body, "type": PATHS[route]}]
    else:  # another API's call: refused with its line, as before
        return [orjson.dumps({**record, "_line": line}) + b"\n"]
    at = record.get("at")
    return [orjson.dumps({**m, "at": at, "_line": line}) + b"\n" for m in messages]


def _is_array(path: Path) -> bool:
    import gzip

    with gzip.open(path, "rb") if path.name.endswith(".gz") else path.open("rb") as head:
        return head.read(4096).lstrip().startswith(b"[")


UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12}
UNITS.update({"kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40})
PROCESS_ALLOWANCE = 256 * 2**20
PROCESS_SHARE = 0.35
"""What the audit process needs beside DuckDB's buffers (Python, parsing, what DuckDB
allocates outside them): the larger of the two. Measured over DuckDB's limit under a
1GB limit: 100–140 MiB on 2M records, 270 MiB on 20M."""
DUCKDB_FLOOR = 64 * 2**20


def duckdb_budget(limit: str) -> int:
    """DuckDB's memory limit, in bytes, for a whole process held to `limit` (e.g. 2GB,
    512MiB): the limit less the process's allowance, and never under DUCKDB_FLOOR."""
    found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", limit)
    unit = found.group(2).lower() if found else ""
    if found is None or unit not in UNITS:
        raise InvalidInput(
            f"--memory-limit {limit!r} is not a size: give a number and a unit (MB, GB, MiB, "
            "GiB), e.g. 2GB."
        )
    total = int(float(found.group(1)) * UNITS[unit])
    allowance = max(PROCESS_ALLOWANCE, int(total * PROCESS_SHARE))
    return max(total - allowance, DUCKDB_FLOOR)


def _quoted(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


# -- the engines ----------------------------------------------------------------------


class Engine:
    """What differs between engines: reading the exports into `staged` (seq, record,
    file, the FIELDS, received_at, happened), naming tables, timestamps, writing
    Parquet. Everything else is the shared SQL below."""

    name = ""
    progress: Progress | None = None
    step = ""

    _scratch: Path | None = None

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
        raise NotImplementedError

    def view(self, name: str, select: str) -> None:
        """A name for a query, computed where it is used (not stored)."""
        raise NotImplementedError

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    raw = ""
    """The table of every record's JSON text by seq."""
    refused: list[tuple[int, str, int, str]] = []
    """The records Customer.io would refuse for a limit (see `refusals`)."""

    def moment(self, seconds: str) -> str:
        """The SQL turning Unix seconds into a timestamp (UTC)."""
        raise NotImplementedError

    def matches(self, text: str, pattern: str) -> str:
        """The SQL for whether `text` matches a regular expression whole."""
        raise NotImplementedError

    def size(self, text: str) -> str:
        """The SQL for a text's size in UTF-8 bytes."""
        raise NotImplementedError

    def longest_key(self, json_object: str) -> str:
        """The SQL for the size of a JSON object's longest key, in UTF-8 bytes."""
        raise NotImplementedError

    def rows_table(self, name: str, columns: str, rows: list[tuple[Any, ...]]) -> None:
        """A table of rows made here (`columns`: its SQL column definitions)."""
        raise NotImplementedError

    def write_parquet(self, select: str, path: Path) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class DuckDB(Engine):
    name = "duckdb"

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
        self.memory_limit = memory_limit
        # spill beside the engine's other scratch files, not into the working directory
        self.conn.execute(f"SET temp_directory = {_quoted(str(self.scratch() / 'spill'))}")
        if memory_limit:
            budget = duckdb_budget(memory_limit)
            self.conn.execute(f"SET memory_limit = '{budget}B'")

    def load(self, exports: Sequence[Export]) -> int:
        # One pass per file, straight into `staged`: every field at once (one parse per
        # record), the records themselves not kept — only those `suspect` flags.
        names = [*FIELDS, "at", "received", "timestamp", *LIMITED]
        json_paths = [*FIELDS.values(), "$.at", "$.receivedAt", "$.timestamp", *LIMITED.values()]
        listed = ", ".join(_quoted(path) for path in json_paths)

        def field(name: str) -> str:
            return f"f[{names.index(name) + 1}]"

        columns = ", ".join(f"{field(column)} AS {column}" for column in FIELDS)
        given = f"coalesce({field('at')}, {field('received')}, {field('timestamp')})"
        received, happened = self._seconds(given), self._seconds(field("timestamp"))
        unreadable = unreadable_time(given, received, field("timestamp"), happened)
        offset = 0
        for index, export in enumerate(exports):
            path = export.path
            name = _quoted(str(path))
            if path.name.endswith(".parquet"):
                numbered = (
                    "(SELECT row_number() OVER () AS n, to_json(t) AS json "
                    f"FROM read_parquet({name}) t)"
                )
            else:  # numbered as read (file order), far cheaper than a window function
                kind = "array" if _is_array(path) else "newline_delimited"
                numbered = (
                    "(SELECT ordinality AS n, json FROM "
                    f"read_json_objects({name}, format = '{kind}') WITH ORDINALITY)"
                )
            record = "CAST(json_extract_string(json, '$._line') AS BIGINT)" if export.lined else "n"
            select = (
                f"SELECT n + {offset} AS seq, {record} AS record, ? AS file, {columns}, "
                f"{received} AS received_at, {happened} AS happened, "
                f"{unreadable} AS bad_time, "
                "suspect, CASE WHEN suspect THEN json::VARCHAR END AS raw "
                f"FROM (SELECT *, {suspect(self, field, 'json::VARCHAR')} AS suspect FROM "
                f"(SELECT n, json, json_extract_string(json, [{listed}]) AS f FROM {numbered}))"
            )
            into = "CREATE TABLE staged AS " if index == 0 else "INSERT INTO staged "
            try:
                self._execute(into + select, [export.name])
            except AuditError:
                raise
            except Exception as error:  # noqa: BLE001 (DuckDB's errors name the problem)
                why = str(error).strip().splitlines()[0]  # not the SQL it quotes after
                raise AuditError(f"{export.name}: cannot be read as an export ({why})") from None
            offset = self.rows("SELECT coalesce(max(seq), 0) FROM staged")[0][0]
        self.view(self.raw, "SELECT seq, raw AS json FROM staged WHERE raw IS NOT NULL")
        return int(self.rows("SELECT count(*) FROM staged")[0][0])

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

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        return list(self._execute(sql).fetchall())

    raw = "suspect_records"

    def moment(self, seconds: str) -> str:
        return f"to_timestamp({seconds})"

    def matches(self, text: str, pattern: str) -> str:
        return f"regexp_full_match({text}, {_quoted(pattern)})"

    def size(self, text: str) -> str:
        return f"strlen({text})"

    def longest_key(self, json_object: str) -> str:
        return f"list_max(list_transform(json_keys({json_object}), lambda k: strlen(k)))"

    def rows_table(self, name: str, columns: str, rows: list[tuple[Any, ...]]) -> None:
        self.conn.execute(f"CREATE TABLE {name} ({columns})")
        if rows:
            marks = ", ".join("?" * len(rows[0]))
            self.conn.executemany(f"INSERT INTO {name} VALUES ({marks})", rows)

    def write_parquet(self, select: str, path: Path) -> None:
        self._execute(f"COPY ({select}) TO {_quoted(str(path))} (FORMAT parquet)")

    def close(self) -> None:
        self.conn.close()
        self._remove_scratch()


class Spark(Engine):
    """Spark, local (`local[*]`) unless given a master URL. Reads NDJSON (gzipped too)
    and Parquet; a JSON array is refused (Spark reads arrays only whole per file)."""

    name = "spark"

    def __init__(self, master: str | None = None) -> None:
        try:
            from pyspark.sql import SparkSession  # noqa: PLC0415
        except ImportError:
            raise InvalidInput(
                "--engine spark needs PySpark: pip install 'cio-anon[spark]' (and Java)."
            ) from None
        self.spark = (
            SparkSession.builder.master(master or "local[*]")
            .appName("cio-anon audit")
            .config("spark.ui.enabled", "false")
            .config("spark.ui.showConsoleProgress", "false")  # stderr is for our own words
            .config("spark.sql.session.timeZone", "UTC")
            .getOrCreate()
        )
        self.spark.sparkContext.setLogLevel("ERROR")

    def load(self, exports: Sequence[Export]) -> int:
        from pyspark.sql import functions

        frames = []
        offset = 0
        for export in exports:
            path = export.path
            if path.name.endswith(".parquet"):
                frame = self.spark.read.parquet(str(path))
                frame = frame.select(functions.to_json(functions.struct("*")).alias("value"))
            elif _is_array(path):
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
        columns = ", ".join(
            f"get_json_object(json, '{path}') AS {column}" for column, path in FIELDS.items()
        )

        def field(name: str) -> str:
            return f"get_json_object(json, '{({**FIELDS, **LIMITED})[name]}')"

        given = (
            "coalesce(get_json_object(json, '$.at'), get_json_object(json, '$.receivedAt'), "
            "get_json_object(json, '$.timestamp'))"
        )
        stamp = "get_json_object(json, '$.timestamp')"
        received, happened = self._seconds(given), self._seconds(stamp)
        unreadable = unreadable_time(given, received, stamp, happened)
        self.table(
            "staged",
            "SELECT seq, coalesce(line, row_number() OVER (PARTITION BY file ORDER BY seq)) "
            "AS record, file, "
            f"{columns}, {received} AS received_at, {happened} AS happened, "
            f"{unreadable} AS bad_time, "
            f"{suspect(self, field, 'json')} AS suspect FROM raw_messages",
        )
        return int(self.rows("SELECT count(*) FROM staged")[0][0])

    @staticmethod
    def _seconds(value: str) -> str:
        return (
            f"CASE WHEN {value} RLIKE '^-?[0-9]+(\\\\.[0-9]*)?$' THEN CAST({value} AS DOUBLE) "
            f"ELSE CAST(try_to_timestamp({value}) AS DOUBLE) END"
        )

    def table(self, name: str, select: str) -> None:
        frame = self.spark.sql(select).cache()
        frame.createOrReplaceTempView(name)

    def view(self, name: str, select: str) -> None:
        self.spark.sql(select).createOrReplaceTempView(name)

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        return [tuple(row) for row in self.spark.sql(sql).collect()]

    raw = "raw_messages"

    def moment(self, seconds: str) -> str:
        return f"timestamp_seconds({seconds})"

    def matches(self, text: str, pattern: str) -> str:
        # to the very end (`$` would let a final line break through); Spark's literal
        # takes the backslash escaped
        return f"({text} RLIKE {_quoted('^(?:' + pattern + ')' + chr(92) * 2 + 'z')})"

    def size(self, text: str) -> str:
        return f"octet_length({text})"

    def longest_key(self, json_object: str) -> str:
        keys = f"map_keys(from_json({json_object}, 'map<string,string>'))"
        return f"array_max(transform({keys}, k -> octet_length(k)))"

    def rows_table(self, name: str, columns: str, rows: list[tuple[Any, ...]]) -> None:
        self.spark.createDataFrame(rows, columns).createOrReplaceTempView(name)

    def write_parquet(self, select: str, path: Path) -> None:
        folder = Path(tempfile.mkdtemp(prefix="cio-anon-audit-"))
        try:
            self.spark.sql(select).coalesce(1).write.mode("overwrite").parquet(str(folder / "out"))
            (part,) = (folder / "out").glob("part-*.parquet")
            shutil.move(str(part), path)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def close(self) -> None:
        self.spark.catalog.clearCache()
        self._remove_scratch()


def engine(name: str, *, memory_limit: str | None = None, master: str | None = None) -> Engine:
    if name == "duckdb":
        return DuckDB(memory_limit)
    if name == "spark":
        return Spark(master)
    raise InvalidInput(f"The engine {name!r} is not one of {', '.join(ENGINES)}.")


# -- the shared statements ------------------------------------------------------------


def unreadable_time(given: str, received: str, stamp: str, happened: str) -> str:
    """SQL: whether a record gives a receive time or a timestamp that is not a time (a
    replay refuses such a record)."""
    return (
        f"(({given}) IS NOT NULL AND ({received}) IS NULL) "
        f"OR (({stamp}) IS NOT NULL AND ({happened}) IS NULL)"
    )


def suspect(db: Engine, field: Callable[[str], str], record: str) -> str:
    """SQL: whether a record might break one of Customer.io's limits on a call (ids,
    event names, data, attribute names and values), from its fields and the size of
    its JSON text (`record`). Cheap and generous: `refusals` then checks the few it
    flags exactly, with the very checks a replay runs."""
    size = db.size
    checks = [
        f"{size(field(name))} > {rules.IDENTIFIER_MAX_BYTES}"
        for name in ("user_id", "anonymous_id", "message_id")
    ]
    checks += [
        f"{size(field(name))} > {rules.EVENT_NAME_MAX_BYTES}" for name in ("event", "url", "name")
    ]
    # data beyond its limit needs a record beyond it
    checks.append(f"{size(record)} > {rules.EVENT_DATA_MAX_BYTES}")
    # an attribute's name or value beyond its limit needs traits beyond it
    traits = field("traits")
    name_limit, value_limit = rules.ATTRIBUTE_NAME_MAX_BYTES, rules.ATTRIBUTE_VALUE_MAX_BYTES
    checks.append(
        f"(CASE WHEN {size(traits)} > {name_limit} THEN "
        f"{size(traits)} > {value_limit} OR {db.longest_key(traits)} > {name_limit} END)"
    )
    return "(" + " OR ".join(f"coalesce({check}, false)" for check in checks) + ")"


def refusals(db: Engine) -> list[tuple[int, str, int, str]]:
    """The records Customer.io would refuse for a limit (seq, file, record, why), found
    among those `suspect` flags by applying each, as a replay does, to a scratch
    workspace: its call changes nothing, as with `replay --keep-going`."""
    import orjson

    from cio_anon import service
    from cio_anon.errors import RuleViolation
    from cio_anon.ingest.fixtures import to_operations
    from cio_anon.pipeline import Source, Tally, apply_operation

    flagged = db.rows(
        f"SELECT s.seq, s.file, s.record, r.json FROM staged s JOIN {db.raw} r "
        "ON r.seq = s.seq WHERE s.suspect ORDER BY s.seq"
    )
    refused: list[tuple[int, str, int, str]] = []
    if not flagged:
        return refused
    now = from_unix(0)  # the scratch workspace's own time: no limit looks at the clock
    with tempfile.TemporaryDirectory() as folder:
        with service.opened(Path(folder) / "scratch.db", now, write=True) as scratch:
            for seq, file, record, text in flagged:
                try:
                    with scratch.savepoint(keep=False):
                        for timed in to_operations(orjson.loads(text), now):
                            apply_operation(scratch, timed, Source(file, record), Tally())
                except RuleViolation as violation:
                    if violation.rule == str(rules.Rule.LIMIT_EXCEEDED):
                        refused.append((int(seq), str(file), int(record), str(violation)))
                except CioAnonError:
                    continue  # not a limit: the set-based staging reads it as a replay would
    return refused


def stage(db: Engine, paths: Sequence[Path]) -> int:
    """Read the exports and stage the rows `setrules` places; how many records were read
    (a recorded request counts once per message it carried)."""
    db.begin("Reading the exports")
    records = db.load(readable(paths, db.scratch()))
    db.begin("Checking settings and Customer.io's limits")
    _check_settings(db)
    refused = db.rows(
        "SELECT file, record, coalesce(op, method) FROM staged "
        "WHERE (op IS NOT NULL AND op NOT IN ('expect', 'settings')) OR method IS NOT NULL "
        "ORDER BY seq LIMIT 1"
    )
    if refused:
        file, record, kind = refused[0]
        what = f"a {kind} record" if kind in ("purge", "settings") else f"an HTTP call ({kind})"
        raise AuditError(
            f"{file}: record {record} is {what}, which only a replay in order can apply; "
            "audit reads Data Pipelines messages (use `cio-anon replay` for this file)."
        )
    unreadable = db.rows("SELECT file, record FROM staged WHERE bad_time ORDER BY seq LIMIT 1")
    if unreadable:
        file, record = unreadable[0]
        raise AuditError(
            f"{file}: record {record} has a time that is not one: give `at`, `receivedAt` "
            "and `timestamp` as ISO-8601 or Unix seconds."
        )
    missing = db.rows(
        "SELECT file, record FROM staged WHERE op IS NULL AND received_at IS NULL "
        "ORDER BY seq LIMIT 1"
    )
    if missing:
        raise AuditError(f"{missing[0][0]}: record {missing[0][1]} has no receive time.")
    db.refused = refusals(db)
    db.rows_table("refused", "seq BIGINT", [(seq,) for seq, *_ in db.refused])
    db.begin("Staging events and identifies")
    semantic = ", ".join(_quoted(name) for name in SEMANTIC_EVENTS)
    matches = db.matches
    texts = ("user_id", "anonymous_id", "message_id", "trait_email")
    unplain = " UNION ".join(
        f"SELECT {column} AS value FROM staged WHERE {column} IS NOT NULL "
        f"AND NOT {matches(column, identity.PLAIN)}"
        for column in texts
    )
    db.rows_table(
        identity.OUTSIDE_PLAIN,
        identity.OUTSIDE_PLAIN_COLUMNS,
        identity.outside_plain(value for (value,) in db.rows(unplain)),
    )

    def stripped(column: str) -> str:
        return identity.stripped_sql(column, matches)

    # whom each message names (`rules.message_person`), and how (`rules.resolve_identifier`)
    who = identity.message_person_sql("type", "user_id", "anonymous_id", "trait_email")
    db.view(
        "named",
        f"""
        SELECT seq, type, who, anonymous_id, message_id, received_at, source, timestamp,
               trait_email, kind,
               CASE WHEN kind = '{IdentifierKind.EMAIL}' THEN {identity.fold_sql("who", matches)}
               END AS email
        FROM (SELECT *, {identity.kind_sql("who")} AS kind
              FROM (SELECT seq, type, {who} AS who, anonymous_id, message_id, received_at,
                           source, timestamp, trait_email
                    FROM (SELECT seq, type, {stripped("user_id")} AS user_id,
                                 {stripped("anonymous_id")} AS anonymous_id,
                                 {stripped("message_id")} AS message_id, received_at, source,
                                 coalesce(happened, received_at) AS timestamp,
                                 {stripped("trait_email")} AS trait_email
                          FROM staged
                          WHERE op IS NULL AND seq NOT IN (SELECT seq FROM refused)
                            AND (type IN ('identify', 'page', 'screen')
                                 OR (type = 'track' AND event NOT IN ({semantic})))) s) w) k
        """,
    )
    # An email names the person who has it: the first who had it — the person an email
    # created (sent as the userId), or the first userId that sent it as traits.email
    # (later ones cannot take it from them). Emails compare folded (`rules.fold`).
    trait_key = identity.fold_sql("trait_email", matches)
    db.table(
        "email_claims",
        f"""
        SELECT email, who AS holder, seq, false AS by_trait FROM named WHERE email IS NOT NULL
        UNION ALL
        SELECT {trait_key}, who, seq, true FROM named
        WHERE type = 'identify' AND kind = '{IdentifierKind.ID}' AND trait_email IS NOT NULL
        """,
    )
    db.table(
        "email_holders",
        """
        SELECT email, holder, seq FROM (
            SELECT email, holder, seq,
                   row_number() OVER (PARTITION BY email ORDER BY seq) AS claim
            FROM email_claims
            -- only emails some message names someone by
            WHERE email IN (SELECT email FROM named WHERE email IS NOT NULL)
        ) ranked WHERE claim = 1
        """,
    )
    db.view(
        "people_by_id",
        f"""
        SELECT n.*, CASE WHEN n.kind = '{IdentifierKind.CIO_ID}' THEN NULL
                         WHEN n.email IS NULL THEN n.who ELSE coalesce(h.holder, n.who) END
                    AS named_person
        FROM named n LEFT JOIN email_holders h ON h.email = n.email AND h.seq <= n.seq
        """,
    )
    # A person named by cio_id is the one the workspace created in that place: people are
    # created in the order they are first named (`rules.cio_id_of`); a cio_id that names
    # no one yet names no one (the replay refuses the call).
    db.table(
        "people",
        f"""
        SELECT person, created,
               {identity.cio_id_of_sql("row_number() OVER (ORDER BY created)")} AS cio_id
        FROM (SELECT named_person AS person, min(seq) AS created FROM people_by_id
              WHERE named_person IS NOT NULL GROUP BY named_person) p
        """,
    )
    db.view(
        "people_named",
        f"""
        SELECT n.*, coalesce(n.named_person, p.person) AS person
        FROM people_by_id n
        LEFT JOIN people p ON n.kind = '{IdentifierKind.CIO_ID}'
                          AND p.cio_id = substr(n.who, 5) AND p.created < n.seq
        WHERE n.who IS NOT NULL OR n.anonymous_id IS NOT NULL
        """,
    )
    db.table(
        "staged_events",
        """
        SELECT seq, coalesce(message_id, 'seq:' || seq) AS event_id, person,
               CASE WHEN who IS NULL THEN anonymous_id END AS anonymous_id,
               received_at, timestamp, coalesce(source, 'unknown') AS source
        FROM people_named WHERE type != 'identify' AND (person IS NOT NULL OR who IS NULL)
        """,
    )
    db.table(
        "staged_identifies",
        """
        SELECT seq, person, anonymous_id, message_id, received_at
        FROM people_named WHERE type = 'identify' AND person IS NOT NULL
        """,
    )
    return records


def _check_settings(db: Engine) -> None:
    """Settings records are taken before the first message, when they leave merging on
    (the set-based pass places with merging on); anywhere else they are refused."""
    first = db.rows("SELECT min(seq) FROM staged WHERE op IS NULL")[0][0]
    merge_on = True
    for file, seq, record, merge, created in db.rows(
        "SELECT file, seq, record, anonymous_merge, created_at FROM staged "
        "WHERE op = 'settings' ORDER BY seq"
    ):
        if first is not None and seq > first:
            raise AuditError(
                f"{file}: record {record} changes settings in the middle of the stream; "
                "replay it with `cio-anon replay` instead."
            )
        if merge is not None:
            merge_on = merge == "true"
        elif created is not None:
            merge_on = rules.default_anonymous_merge(parse_time(created, what="created_at"))
    if not merge_on:
        raise AuditError(
            "The exports turn anonymous merging off; audit places with merging on (replay "
            "them with `cio-anon replay`)."
        )


def placements(
    paths: Sequence[Path], *, engine_name: str = "duckdb", **options: Any
) -> list[setrules.Placement]:
    """Every event of the exports with its rule and person, in stream order."""
    db = engine(engine_name, **options)
    try:
        stage(db, paths)
        db.table("placements", setrules.PLACEMENTS)
        rows = db.rows(
            "SELECT event_id, rule, person, merged_at, can_trigger FROM placements ORDER BY seq"
        )
        return setrules.placed(rows)
    finally:
        db.close()


def audit(
    paths: Sequence[Path],
    *,
    engine_name: str = "duckdb",
    placements_out: Path | None = None,
    progress: Progress | None = None,
    **options: Any,
) -> AuditReport:
    """Place the exports' events and count them: per rule, per day, per source; and the
    identity findings a set-based pass sees (reused and placeholder ids, late events).
    `progress` is told each step and how far it is."""
    if progress is not None:
        progress(f"Starting {engine_name}", None)
    db = engine(engine_name, **options)
    db.progress = progress
    try:
        records = stage(db, paths)
        db.begin("Placing events")
        db.table("placements", setrules.PLACEMENTS)
        db.begin("Counting")
        # every staged event: placed, or a duplicate of an event id seen before
        db.table(
            "placed",
            "SELECT e.seq, e.event_id, coalesce(p.rule, 'duplicate') AS rule, p.person, "
            "coalesce(p.can_trigger, false) AS can_trigger, e.source, "
            "CAST(floor(e.received_at / 86400) AS BIGINT) AS day "
            "FROM staged_events e LEFT JOIN placements p ON p.seq = e.seq",
        )
        if placements_out is not None:
            db.begin("Writing placements")
            db.write_parquet(
                "SELECT event_id, anonymous_id, person, rule, "
                f"{db.moment('merged_at')} AS merged_at, can_trigger AS can_trigger_campaigns "
                "FROM placements ORDER BY seq",
                placements_out,
            )
        db.begin("Counting")
        tally = _tally(
            db.rows(
                "SELECT day, source, rule, person IS NOT NULL, can_trigger, count(*) "
                "FROM placed GROUP BY day, source, rule, person IS NOT NULL, can_trigger"
            )
        )
        db.begin("Looking for identity findings")
        found = findings(db)
        return AuditReport(
            files=[str(p) for p in paths],
            engine=db.name,
            records=records,
            events=sum(tally.rules.values()),
            rules=_sorted(tally.rules),
            campaigns={key: tally.campaigns[key] for key in ("can_trigger", "segment_only")},
            by_day={day: _sorted(rules) for day, rules in sorted(tally.by_day.items())},
            by_source={name: _sorted(rules) for name, rules in sorted(tally.by_source.items())},
            findings=found,
        )
    finally:
        db.close()


@dataclass
class _Tally:
    rules: Counter[str] = field(default_factory=Counter)
    campaigns: Counter[str] = field(default_factory=Counter)
    by_day: dict[str, Counter[str]] = field(default_factory=dict)
    by_source: dict[str, Counter[str]] = field(default_factory=dict)


def _tally(rows: Sequence[tuple[Any, ...]]) -> _Tally:
    """The report's counts from one grouping of the placed events (day number, source,
    rule, on a person, can trigger, count)."""
    tally = _Tally()
    for day, source, rule, on_person, can_trigger, count in rows:
        date = from_unix(int(day) * 86_400).date().isoformat()
        tally.rules[rule] += count
        tally.by_day.setdefault(date, Counter())[rule] += count
        tally.by_source.setdefault(str(source), Counter())[rule] += count
        if on_person:
            tally.campaigns["can_trigger" if can_trigger else "segment_only"] += count
    return tally


def _sorted(counts: Counter[str]) -> dict[str, int]:
    return dict(sorted(counts.items()))


def findings(db: Engine) -> list[Finding]:
    """The identity findings a set-based pass sees, each at the first record showing it:
    anonymous ids identified to several people, placeholder ids, one email under several
    userIds (split profiles), late anonymous events."""
    from cio_anon.rules.findings import Finding

    found: list[Finding] = []
    if db.refused:
        _, file, record, why = db.refused[0]
        message = (
            f"{len(db.refused):,} record(s) break Customer.io's limits, so their calls are "
            f"refused and change nothing (an identify among them assigns no anonymous id); "
            f"the first: {why}"
        )
        found.append(Finding("limit_exceeded", file, record, message))
    for anonymous_id, people, file, record in db.rows(
        "WITH claims AS (SELECT anonymous_id, person, seq, first_value(person) OVER "
        "(PARTITION BY anonymous_id ORDER BY seq) AS owner FROM staged_identifies "
        "WHERE anonymous_id IS NOT NULL), "
        "reused AS (SELECT anonymous_id, min(seq) AS seq, count(DISTINCT person) + 1 AS people "
        "FROM claims WHERE person != owner GROUP BY anonymous_id) "
        "SELECT r.anonymous_id, r.people, s.file, s.record FROM reused r "
        "JOIN staged s ON s.seq = r.seq ORDER BY r.people DESC, r.anonymous_id LIMIT 50"
    ):
        message = (
            f"anonymous_id {anonymous_id!r} was identified to {people} people; only the first "
            "got its events."
        )
        found.append(Finding("anonymous_id_reused", file, record, message))
    ids = " UNION ALL ".join(
        f"SELECT {identity.fold_sql(column, db.matches)} AS id, seq FROM staged "
        f"WHERE {identity.is_placeholder_sql(column, db.matches)}"
        for column in ("user_id", "anonymous_id")
    )
    for value, count, file, record in db.rows(
        f"WITH marked AS (SELECT id, count(*) AS n, min(seq) AS seq FROM ({ids}) ids "
        "GROUP BY id) "
        "SELECT m.id, m.n, s.file, s.record FROM marked m JOIN staged s ON s.seq = m.seq "
        "ORDER BY m.n DESC, m.id"
    ):
        message = f"{count:,} record(s) use the placeholder id {value!r}."
        found.append(Finding("placeholder_id", file, record, message))
    # as a replay finds it: an identify sends, as its traits.email, an email that another
    # person already has (from an earlier traits.email, or as the userId that created them)
    for email, people, file, record in db.rows(
        "WITH owners AS (SELECT email, holder, seq, by_trait, first_value(holder) OVER "
        "(PARTITION BY email ORDER BY seq) AS first FROM email_claims), "
        "split AS (SELECT email, min(seq) AS seq, count(DISTINCT holder) + 1 AS people "
        "FROM owners WHERE by_trait AND holder != first GROUP BY email) "
        "SELECT x.email, x.people, s.file, s.record FROM split x JOIN staged s ON s.seq = x.seq "
        "ORDER BY x.people DESC, x.email LIMIT 50"
    ):
        message = (
            f"the email {email!r} is sent as a trait under {people} userIds: one person, "
            "split across profiles."
        )
        found.append(Finding("split_profile", file, record, message))
    late = db.rows(
        "SELECT count(*) AS n, min(seq) AS seq FROM placed WHERE rule = 'window_closed'"
    )[0]
    if late[0]:
        file, record = db.rows(f"SELECT file, record FROM staged WHERE seq = {int(late[1])}")[0]
        message = (
            f"{late[0]:,} anonymous event(s) arrived after the 5-minute window that followed "
            "their identify: they stay anonymous."
        )
        found.append(Finding("late_anonymous_event", file, record, message))
    return found


def materialize(paths: Sequence[Path], workspace: Path, now: Any) -> None:
    """Replay the exports, in order, into a workspace — the exact engine, for a result
    small enough to look at with `log`, `show`, `explain` and `ui`. Gzipped NDJSON and
    Parquet are turned into NDJSON first."""
    import gzip

    from cio_anon.replay import replay_into

    with tempfile.TemporaryDirectory() as folder:
        plain = []
        for index, path in enumerate(paths):
            if path.name.endswith(".gz"):
                target = Path(folder) / f"{index}.ndjson"
                with gzip.open(path, "rb") as source, target.open("wb") as out:
                    shutil.copyfileobj(source, out)
            elif path.name.endswith(".parquet"):
                target = Path(folder) / f"{index}.ndjson"
                duck = DuckDB()
                try:
                    duck.conn.execute(
                        f"COPY (SELECT * FROM read_parquet({_quoted(str(path))})) "
                        f"TO {_quoted(str(target))} (FORMAT json)"
                    )
                finally:
                    duck.close()
            else:
                target = path
            plain.append(target)
        summary = replay_into(workspace, now, plain)
    if summary.invalid:
        raise AuditError(f"The workspace could not take the exports: {summary.invalid[0]}")
