"""`cio-anon audit`: stage the exports, place every event with `setrules`' statement,
count, and look for findings; `placements` for the events alone; `materialize` to replay
them into a workspace."""

from __future__ import annotations

import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cio_anon.audit import setrules
from cio_anon.audit.duckdb_engine import DuckDB
from cio_anon.audit.engines import ENGINES, Engine, Notice, Progress
from cio_anon.audit.exports import AuditError
from cio_anon.audit.findings import findings
from cio_anon.audit.reading import quoted
from cio_anon.audit.spark_engine import Spark
from cio_anon.audit.staging import stage
from cio_anon.clock import from_unix
from cio_anon.errors import InvalidInput

if TYPE_CHECKING:
    from cio_anon.check import Report as CheckReport
    from cio_anon.rules.findings import Finding


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


def engine(name: str, *, memory_limit: str | None = None, master: str | None = None) -> Engine:
    """The engine an audit runs on, by its name (one of ENGINES)."""
    if name == "duckdb":
        return DuckDB(memory_limit)
    if name == "spark":
        return Spark(master)
    raise InvalidInput(f"The engine {name!r} is not one of {', '.join(ENGINES)}.")


def placements(
    paths: Sequence[Path], *, engine_name: str = "duckdb", **options: Any
) -> list[setrules.Placement]:
    """Every event of the exports with its rule and person, in stream order."""
    with engine(engine_name, **options) as db:
        stage(db, paths)
        db.table("placements", setrules.placements(db.key))
        rows = db.rows(
            "SELECT event_id, rule, person, merged_at, can_trigger FROM placements ORDER BY seq"
        )
        return setrules.placed(rows)


def audit(
    paths: Sequence[Path],
    *,
    engine_name: str = "duckdb",
    placements_out: Path | None = None,
    progress: Progress | None = None,
    notice: Notice | None = None,
    **options: Any,
) -> AuditReport:
    """Place the exports' events and count them: per rule, per day, per source; and the
    identity findings a set-based pass sees (reused and placeholder ids, late events).
    `progress` is told each step and how far it is, `notice` what the user should know
    meanwhile. The engine's own failures are said as an AuditError."""
    if progress is not None:
        progress(f"Starting {engine_name}", None)
    with engine(engine_name, **options) as db:
        db.progress, db.notice = progress, notice
        records = stage(db, paths)
        placed = setrules.placements(db.key)
        if placements_out is not None:  # kept: written out, then counted
            db.begin("Placing events")
            db.table("placements", placed)
            db.begin("Writing placements")
            db.write_parquet(
                "SELECT event_id, anonymous_id, person, rule, "
                f"{db.moment('merged_at')} AS merged_at, can_trigger AS can_trigger_campaigns "
                "FROM placements ORDER BY seq",
                placements_out,
            )
            placed = "SELECT * FROM placements"
            db.begin("Counting")
        else:  # counted as they are placed: the millions of placements are never stored
            db.begin("Placing and counting events")
        _count(db, placed)
        tally = _tally(_counted(db))
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


@dataclass
class _Tally:
    rules: Counter[str] = field(default_factory=Counter)
    campaigns: Counter[str] = field(default_factory=Counter)
    by_day: dict[str, Counter[str]] = field(default_factory=dict)
    by_source: dict[str, Counter[str]] = field(default_factory=dict)


_DAY = "CAST(floor(received_at / 86400) AS BIGINT)"


def _count(db: Engine, placed: str) -> None:
    """`placed_counts`: the placements (`placed`, a query) counted by day number, source,
    rule, whether on a person and whether they can trigger campaigns, each group with
    its first seq (where `findings` locates the late events)."""
    db.table(
        "placed_counts",
        f"SELECT {_DAY} AS day, source, rule, person IS NOT NULL AS on_person, can_trigger, "
        f"count(*) AS n, min(seq) AS seq FROM ({placed}) placed GROUP BY 1, 2, 3, 4, 5",
    )


def _counted(db: Engine) -> list[tuple[Any, ...]]:
    """Every staged event counted by day, source, rule, whether on a person and whether
    it can trigger campaigns: the placed ones (`placed_counts`), and the rest — duplicates
    of an event id seen before — as each day's and source's staged events less its placed
    ones (two groupings, no join of millions of events with their placements)."""
    placed = db.rows("SELECT day, source, rule, on_person, can_trigger, n FROM placed_counts")
    left = Counter(
        {
            (d, source): n
            for d, source, n in db.rows(
                f"SELECT {_DAY}, source, count(*) FROM staged_events GROUP BY 1, 2"
            )
        }
    )
    for d, source, *_, count in placed:
        left[d, source] -= count
    duplicates = [(d, source, "duplicate", False, False, n) for (d, source), n in left.items()]
    return placed + [row for row in duplicates if row[-1]]


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


def materialize(paths: Sequence[Path], workspace: Path, now: Any) -> None:
    """Replay the exports, in order, into a workspace — the exact engine, for a result
    small enough to look at with `log`, `show`, `explain` and `ui`. Parquet is turned into
    NDJSON first; the replay reads the rest as they are (gzipped parts too, read ahead
    together), so each event's source names its export and line."""
    from cio_anon.replay import replay_into

    with tempfile.TemporaryDirectory() as folder:
        plain = []
        for index, path in enumerate(paths):
            target = path
            if path.name.endswith(".parquet"):
                target = Path(folder) / f"{index}.ndjson"
                duck = DuckDB()
                try:
                    duck.conn.execute(
                        f"COPY (SELECT * FROM read_parquet({quoted(str(path))})) "
                        f"TO {quoted(str(target))} (FORMAT json)"
                    )
                finally:
                    duck.close()
            plain.append(target)
        summary = replay_into(workspace, now, plain)
    if summary.invalid:
        raise AuditError(f"The workspace could not take the exports: {summary.invalid[0]}")
