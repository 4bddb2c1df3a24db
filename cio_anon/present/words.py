"""Plain words for people, shared by the terminal (`render`) and the web pages (`web`):
times, durations, what an activity was, where a row came from, retention left."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from cio_anon import rules
from cio_anon.clock import from_unix
from cio_anon.models import ActivityType, Event, LogRow

MERGED_MARKER = "◐ was anonymous"


def time_text(moment: datetime | None, fine: bool = False) -> str:
    """A time to the second; `fine`: to the millisecond (see `fine_times`)."""
    if moment is None:
        return "—"
    text = moment.strftime("%Y-%m-%d %H:%M:%S")
    return f"{text}.{moment.microsecond // 1000:03d}" if fine else text


def fine_times(values: Iterable[object]) -> bool:
    """Whether some of these times differ within one second, so that to the second they
    would read alike and hide their order: an SDK sends a session's calls milliseconds
    apart, and the facts of a decision (received, assigned) are told finer then."""
    moments = [value for value in values if isinstance(value, datetime)]
    seconds = {moment.replace(microsecond=0) for moment in moments}
    return len(set(moments)) > len(seconds)


def duration_text(seconds: float) -> str:
    """A short human duration: `29d 23h`, `4h 10m`, `3m`, and under a minute `45s` or
    `under 1s` (one session's batches reach a server milliseconds apart)."""
    if 0 < seconds < 1:
        return "under 1s"
    seconds = max(0, int(seconds))
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes = rest // 60
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m" if minutes else f"{seconds}s"


def activity_summary(row: LogRow) -> str:
    data = row.data
    if row.type == ActivityType.ANON_MERGE:
        oldest = unix_text(data.get("oldest_timestamp"))
        return (
            f"Anonymous Data Merged: {data.get('count')} event(s) from "
            f"{data.get('anonymous_id')}, oldest {oldest}"
        )
    if row.type == ActivityType.ATTRIBUTE_CHANGE:
        return f"{data.get('attribute')}: {data.get('from')!r} → {data.get('to')!r}"
    if row.type == ActivityType.FAILED_ATTRIBUTE_CHANGE:
        return f"{data.get('attribute')} not changed: {data.get('reason')}"
    if row.type == ActivityType.PROFILE_MERGE:
        secondary = data.get("secondary") or {}
        label = secondary.get("email") or secondary.get("id") or secondary.get("cio_id")
        return (
            f"Merged {label}: {data.get('moved')} moved, {data.get('dropped')} dropped, "
            f"{data.get('filled')} filled"
        )
    if row.type == ActivityType.PROFILE_CREATE:
        return "Profile created"
    if row.type in (ActivityType.DEVICE_UPDATE, ActivityType.DEVICE_DELETE):
        verb = "added or updated" if row.type == ActivityType.DEVICE_UPDATE else "deleted"
        platform = f" ({data['platform']})" if data.get("platform") else ""
        return f"Device {data.get('device_id')}{platform} {verb}"
    if row.type in (ActivityType.RELATIONSHIP_ADD, ActivityType.RELATIONSHIP_DELETE):
        verb = "Related to" if row.type == ActivityType.RELATIONSHIP_ADD else "No longer related to"
        return f"{verb} object {data.get('object_type_id')}/{data.get('object_id')}"
    if row.type == ActivityType.STORED_CALL:
        return f"{data.get('api')}: {data.get('call')} (stored, not modelled)"
    return row.name or ""


def log_note(row: LogRow, *, marker: bool = True) -> str:
    """The Note column: where a row came from (inherited, was anonymous, merged in);
    `marker=False` leaves out the was-anonymous marker (the web view draws its own)."""
    notes = []
    event = row.event
    if event is not None and event.provenance is rules.Provenance.INHERITED:
        notes.append("⇢ inherited")
    if marker and event is not None and event.was_anonymous:
        notes.append(MERGED_MARKER)
    if row.merged_from is not None:
        notes.append(f"⇢ from {row.merged_from.label}")
    return ", ".join(notes)


def unix_text(value: object) -> str:
    return time_text(from_unix(float(value))) if isinstance(value, int | float) else "—"


def retention_left(event: Event, now: datetime) -> str:
    """How long an unattached event has before purge deletes it."""
    if event.is_invite:
        return "never purged"
    if rules.is_expired(event.timestamp, now):
        return "expired (purge deletes it)"
    deadline = rules.retention_deadline(event.timestamp)
    return f"{duration_text((deadline - now).total_seconds())} left"


def decision_line(name: str, result: object) -> str:
    """One line for a call as it arrives (`serve` on a terminal): where a tracked event
    went, or whom an identify named and what it merged, with the rule code."""
    from cio_anon.service import IdentifyResult, TrackResult

    if isinstance(result, TrackResult):
        if not result.stored:
            return f"{name!r} {result.event_id}: a copy already stored, ignored [{result.rule}]"
        where = {
            "identified": f"→ {result.person.label if result.person else '?'}",
            "anonymous": f"→ anonymous {result.anonymous_id}",
            "invite": "→ an invite event",
        }[result.status]
        return f"{name!r} {where} [{result.rule}]"
    if isinstance(result, IdentifyResult):
        verb = "created" if result.created else "updated"
        line = f"identify {name} → {result.person.label} ({verb})"
        if result.anonymous_id:
            merged = f", {len(result.merged)} anonymous event(s) merged" if result.merged else ""
            line += f", anonymous {result.anonymous_id}{merged}"
        return line + (f" [{result.rule}]" if result.rule else "")
    return name
