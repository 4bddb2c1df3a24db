"""Result objects as JSON-ready documents (one serializer per record type), and the
same records as NDJSON lines and CSV rows. No Rich here: `serve` answers with these
without importing a terminal library; `render` prints them for people."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from cio_anon import jsonio, rules
from cio_anon.clock import from_unix, to_iso, to_unix
from cio_anon.models import LogRow, Person, PersonRef, Settings

if TYPE_CHECKING:
    from cio_anon.audit import AuditReport
    from cio_anon.demo import DemoResult
    from cio_anon.replay import ReplaySummary
    from cio_anon.service import (
        DeleteResult,
        Explanation,
        IdentifyResult,
        LogPage,
        MergeResult,
        Profile,
        PurgeResult,
        TrackResult,
        Warning,
    )


def time_json(moment: datetime | None) -> float | int | None:
    return None if moment is None else to_unix(moment)


def facts_json(facts: Mapping[str, object]) -> dict[str, object]:
    return {k: time_json(v) if isinstance(v, datetime) else v for k, v in facts.items()}


def person_json(ref: PersonRef | None) -> dict[str, str | None] | None:
    return None if ref is None else {"cio_id": ref.cio_id, "id": ref.id, "email": ref.email}


def warnings_json(warnings: list[Warning]) -> list[dict[str, str]]:
    return [{"rule": str(w.rule), "message": w.message} for w in warnings]


def settings_json(settings: Settings) -> dict[str, Any]:
    return {
        "created_at": time_json(settings.created_at),
        "anonymous_merge": settings.anonymous_merge,
    }


def activity_json(row: LogRow, now: datetime) -> dict[str, Any]:
    """One ACTIVITY of either tab of the log."""
    doc: dict[str, Any] = {
        "type": row.type,
        "timestamp": time_json(row.timestamp),
        "received_at": time_json(row.received_at),
        "name": row.name,
        "event_id": row.event_id,
        "person": person_json(row.person),
        "anonymous_id": row.anonymous_id,
        "data": row.data,
        "merged_from": person_json(row.merged_from),
        # the keys below describe events; other activities have them as null
        **dict.fromkeys(EVENT_KEYS),
    }
    event = row.event
    if event is not None:
        doc["sent_as"] = event.type
        doc["previously_anonymous"] = event.was_anonymous
        doc["provenance"] = None if event.provenance is None else str(event.provenance)
        doc["can_trigger_campaigns"] = event.can_trigger
        doc["merged_at"] = time_json(event.merged_at)
        doc["rule"] = str(event.rule)
        if event.cio_id is None and not event.is_invite:
            deadline = rules.retention_deadline(event.timestamp)
            doc["retention_expires_at"] = time_json(deadline)
            doc["expired"] = rules.is_expired(event.timestamp, now)
        doc["source"] = event.source
    return doc


EVENT_KEYS = (
    "sent_as",
    "previously_anonymous",
    "provenance",
    "can_trigger_campaigns",
    "merged_at",
    "rule",
    "retention_expires_at",
    "expired",
    "source",
)
"""ACTIVITY keys that only events fill; always present, null where they do not apply."""


def log_json(page: LogPage) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    for tab in ("identified", "anonymous"):
        rows = getattr(page, tab)
        if rows is not None:
            doc[tab] = [activity_json(row, page.now) for row in rows]
    doc["next"] = {"identified": page.next_identified, "anonymous": page.next_anonymous}
    return doc


def track_json(result: TrackResult) -> dict[str, Any]:
    return {
        "event_id": result.event_id,
        "stored": result.stored,
        "status": result.status,
        "rule": str(result.rule),
        "person": person_json(result.person),
        "anonymous_id": result.anonymous_id,
        "provenance": None if result.provenance is None else str(result.provenance),
        "can_trigger_campaigns": result.can_trigger_campaigns,
        "warnings": warnings_json(result.warnings),
    }


def identify_json(result: IdentifyResult) -> dict[str, Any]:
    return {
        "person": person_json(result.person),
        "created": result.created,
        "rule": None if result.rule is None else str(result.rule),
        "anonymous_id": result.anonymous_id,
        "merged": result.merged,
        "merged_count": len(result.merged),
        "attribute_changes": [
            {"attribute": c.attribute, "from": c.before, "to": c.after}
            for c in result.attribute_changes
        ],
        "failed_attribute_changes": result.failed_attribute_changes,
        "warnings": warnings_json(result.warnings),
    }


def merge_json(result: MergeResult) -> dict[str, Any]:
    return {
        "primary": person_json(result.primary),
        "secondary": person_json(result.secondary),
        "dry_run": result.dry_run,
        "moved": result.moved,
        "dropped": result.dropped,
        "filled": result.filled,
        "anonymous_ids": result.anonymous_ids,
        "counts": {
            "moved": len(result.moved),
            "dropped": len(result.dropped),
            "filled": len(result.filled),
        },
    }


def purge_json(result: PurgeResult) -> dict[str, Any]:
    return {
        "dry_run": result.dry_run,
        "rule": str(rules.Rule.RETENTION_EXPIRED),
        "deleted": result.total,
        "by_anonymous_id": result.deleted,
    }


def person_record_json(person: Person) -> dict[str, Any]:
    return {
        "cio_id": person.cio_id,
        "id": person.id,
        "email": person.email,
        "attributes": person.attributes,
        "created_at": time_json(person.created_at),
    }


def profile_json(profile: Profile) -> dict[str, Any]:
    counts = profile.counts
    return {
        "person": person_record_json(profile.person),
        "anonymous_ids": [
            {"anonymous_id": a.anonymous_id, "assigned_at": time_json(a.assigned_at)}
            for a in profile.anonymous_ids
        ],
        "events": {
            "total": counts.total,
            "merged": counts.merged,
            "tracked": counts.tracked,
            "inherited": counts.inherited,
            "campaign_eligible": counts.campaign_eligible,
        },
        "merges": [activity_json(row, profile.now) for row in profile.merges],
        "devices": [
            {
                "device_id": d.device_id,
                "platform": d.platform,
                "attributes": d.attributes,
                "last_used": time_json(d.last_used),
                "updated_at": time_json(d.updated_at),
            }
            for d in profile.devices
        ],
        "relationships": [
            {
                "object_type_id": r.object_type_id,
                "object_id": r.object_id,
                "attributes": r.attributes,
                "object_attributes": r.object_attributes,
                "created_at": time_json(r.created_at),
            }
            for r in profile.relationships
        ],
    }


def people_json(people: list[tuple[Person, int]]) -> dict[str, Any]:
    return {"people": [{**person_record_json(p), "events": n} for p, n in people]}


LOG_CSV_COLUMNS = (
    "tab",
    "type",
    "timestamp",
    "received_at",
    "name",
    "event_id",
    "person_cio_id",
    "person_id",
    "person_email",
    "anonymous_id",
    "sent_as",
    "previously_anonymous",
    "provenance",
    "can_trigger_campaigns",
    "rule",
    "merged_at",
    "retention_expires_at",
    "expired",
    "merged_from",
    "source",
    "data",
)
"""The columns of `log --format csv`, in order (times as ISO-8601 UTC)."""


PEOPLE_CSV_COLUMNS = ("cio_id", "id", "email", "created_at", "events", "attributes")
"""The columns of `people --format csv`, in order."""


_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def log_records(page: LogPage) -> Iterator[dict[str, Any]]:
    """The log as one ACTIVITY per record, each with the `tab` it belongs to."""
    for tab in ("identified", "anonymous"):
        for row in getattr(page, tab) or ():
            yield {"tab": tab, **activity_json(row, page.now)}


def people_records(people: list[tuple[Person, int]]) -> list[dict[str, Any]]:
    return people_json(people)["people"]  # type: ignore[no-any-return]


def ndjson_lines(records: Iterable[Mapping[str, Any]]) -> Iterator[str]:
    return (jsonio.dumps(record) + "\n" for record in records)


def log_csv_row(record: Mapping[str, Any]) -> list[object]:
    person = record["person"] or {}
    merged_from = record["merged_from"]
    flat = {
        **record,
        "person_cio_id": person.get("cio_id"),
        "person_id": person.get("id"),
        "person_email": person.get("email"),
        "merged_from": merged_from and (merged_from["email"] or merged_from["id"]),
        "data": jsonio.dumps(record["data"]),
    }
    for key in ("timestamp", "received_at", "merged_at", "retention_expires_at"):
        flat[key] = None if flat[key] is None else to_iso(from_unix(flat[key]))
    return [flat[column] for column in LOG_CSV_COLUMNS]


def person_csv_row(record: Mapping[str, Any]) -> list[object]:
    return [
        record["cio_id"],
        record["id"],
        record["email"],
        to_iso(from_unix(record["created_at"])),
        record["events"],
        jsonio.dumps(record["attributes"]),
    ]


def csv_lines(columns: Sequence[str], rows: Iterable[Sequence[object]]) -> Iterator[str]:
    """CSV (RFC 4180) with a header row. Empty cells are null; booleans are true/false.
    A text cell that a spreadsheet would run as a formula (`=`, `+`, `-`, `@`) is
    prefixed with `'`."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_csv_cell(cell) for cell in row])
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    if buffer.tell():  # no rows: the header alone
        yield buffer.getvalue()


def _csv_cell(value: object) -> object:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and value.startswith(_FORMULA):
        return f"'{value}"
    return value


EXPLAIN_FACTS = (
    "timestamp",
    "received_at",
    "anonymous_id",
    "recipient",
    "assigned_at",
    "window_closes_at",
    "merged_at",
    "retention_cutoff",
    "retention_expires_at",
    "provenance",
    "attached_at",
    "campaign_window_ends_at",
    "removed_at",
)
"""The facts `explain --json` always lists (null where the rule did not use one)."""


def explain_json(explanation: Explanation) -> dict[str, Any]:
    decision = explanation.decision
    doc: dict[str, Any] = {
        "event_id": explanation.event_id,
        "name": explanation.name,
        "status": explanation.status,
        "rule": str(decision.rule),
        "reason": decision.reason,
        "person": person_json(explanation.person),
        "anonymous_id": explanation.anonymous_id,
        "facts": facts_json({**dict.fromkeys(EXPLAIN_FACTS), **decision.facts}),
        "source": explanation.source,
        "campaign": None
        if explanation.campaign is None
        else {"rule": str(explanation.campaign.rule), "reason": explanation.campaign.reason},
    }
    return doc


def replay_json(summary: ReplaySummary) -> dict[str, Any]:
    tally = summary.tally
    return {
        "ok": summary.ok,
        "files": summary.files,
        "records": tally.records,
        "applied": tally.applied,
        "events_stored": tally.stored,
        "events_merged": tally.merged,
        "duplicates_ignored": tally.duplicates,
        "people_created": tally.people_created,
        "expectations": tally.expectations,
        "ignored": tally.ignored,
        "warnings": dict(sorted(tally.warnings.items())),
        "invalid": [str(p) for p in summary.invalid],
        "refused_as_recorded": [str(p) for p in summary.refused_as_recorded],
        "rejected_files": summary.rejected_files,
        "stopped_at": summary.stopped_at,
        "failed_expectations": [str(p) for p in tally.failed_expectations],
        "notes": [str(p) for p in tally.notes],
    }


def delete_json(result: DeleteResult) -> dict[str, Any]:
    return {
        "person": person_json(result.person),
        "deleted": {
            "events": result.events,
            "assignments": 0,
            "activities": result.activities,
            "anonymous_profiles": result.anonymous_profiles,
        },
        "assignments_kept": result.assignments_kept,
        "dry_run": result.dry_run,
    }


def demo_json(result: DemoResult) -> dict[str, Any]:
    return {
        "replay": replay_json(result.summary),
        "log": log_json(result.log),
        "profile": profile_json(result.profile),
    }


def audit_json(report: AuditReport) -> dict[str, Any]:
    return {
        "files": report.files,
        "engine": report.engine,
        "records": report.records,
        "events": report.events,
        "rules": report.rules,
        "by_day": report.by_day,
        "by_source": report.by_source,
        "campaigns": report.campaigns,
        "findings": [
            {
                "code": f.code,
                "severity": f.severity,
                "file": f.file,
                "record": f.line,
                "message": f.message,
            }
            for f in report.findings
        ],
    }
