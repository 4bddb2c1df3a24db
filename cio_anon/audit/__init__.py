"""`cio-anon audit`: the placement rules over exports too large for a workspace, set-based
on DuckDB (embedded, the default) or on Spark.

Exports are read as teams keep them — NDJSON (gzipped too), JSON arrays, Parquet; files,
globs and folders (`exports`) — straight into the engine (`engines`; `duckdb_engine`
and `spark_engine`), never through Python one record at a time. Python touches only
what it must: a `serve --record` file's Data Pipelines requests are unwrapped into their
messages first, and the few records that come near one of Customer.io's limits are
checked by the replay's own code (`staging`). From the staged rows every statement is
shared, and the placement is the very statement `setrules` holds to the replay engine,
so an audit and a replay agree event by event, on either engine (`run`); then the
identity findings (`findings`).

What a set-based pass cannot know the way a sequential replay does is refused with a
sentence: settings changes after the first message, purges, and HTTP calls other than
recorded Data Pipelines requests (profile merges, deletes, the Track API). `expect`
records are skipped: they assert, they change nothing.
"""

from cio_anon.audit.duckdb_engine import (
    DUCKDB_FLOOR,
    PROCESS_ALLOWANCE,
    PROCESS_SHARE,
    DuckDB,
    duckdb_budget,
)
from cio_anon.audit.engines import ENGINES, Engine
from cio_anon.audit.exports import AuditError, exports
from cio_anon.audit.run import AuditReport, audit, engine, materialize, placements
from cio_anon.audit.spark_engine import Spark

__all__ = [
    "DUCKDB_FLOOR",
    "ENGINES",
    "PROCESS_ALLOWANCE",
    "PROCESS_SHARE",
    "AuditError",
    "AuditReport",
    "DuckDB",
    "Engine",
    "Spark",
    "audit",
    "duckdb_budget",
    "engine",
    "exports",
    "materialize",
    "placements",
]
