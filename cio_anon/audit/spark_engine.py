"""Spark, the audit's engine for a cluster (or every core of one machine, `local[*]`):
how it is started, stopped (Ctrl-C) and told apart from the input when it fails."""

from __future__ import annotations

import atexit
import base64
import json
import logging
import re
import shutil
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from cio_anon import rules
from cio_anon.audit.engines import Engine, first_line
from cio_anon.audit.exports import AuditError, Export, is_array
from cio_anon.audit.reading import (
    given_twice,
    odd_ids,
    quoted,
    read_objects,
    reader_paths,
    refuse_repeated,
    staged_columns,
    suspect,
    unreadable_time,
)
from cio_anon.errors import InvalidInput

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
            return first_line(str(cause.getMessage() or cause.toString())).rstrip(".")
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
    its own, and left them in /tmp. Not the audit's `scratch`: the JVM outlives one
    audit in a process that runs several. No folder for a JVM already running (it has
    its own)."""
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
