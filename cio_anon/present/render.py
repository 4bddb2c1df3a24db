"""Result objects as Rich output for people: tables, lines, colours; user data always
escaped. Their JSON documents are in `documents`."""

from __future__ import annotations

import re
from collections import Counter
from datetime import datetime
from typing import TYPE_CHECKING, Any

from cio_anon import jsonio
from cio_anon.models import Person, Settings
from cio_anon.present.words import (
    activity_summary,
    fine_times,
    log_note,
    retention_left,
    time_text,
)
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

if TYPE_CHECKING:
    from rich.console import RenderableType
    from rich.table import Table
    from rich.text import Text

    from cio_anon.audit import AuditReport
    from cio_anon.demo import DemoResult
    from cio_anon.replay import ReplaySummary

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def visible(text: str) -> str:
    """Text made safe to print: control characters (ESC, OSC, newlines, ...) shown as
    escapes, so user data can neither drive the terminal nor break a line."""
    return _CONTROL.sub(lambda m: _NAMED.get(m.group(), f"\\x{ord(m.group()):02x}"), text)


class Line:
    """One line of printed text holding user data: never markup, no control characters
    (`visible`). Written as it is to a stream that is not a terminal (`plain_line`), and
    made a Rich text only when Rich prints it (start-up: a `track` into a pipe or a
    file never imports Rich)."""

    __slots__ = ("plain", "style")

    def __init__(self, text: str, style: str = "") -> None:
        self.plain = visible(text)
        self.style = style

    def text(self) -> Text:
        from rich.text import Text

        return Text(self.plain, style=self.style)

    def __rich__(self) -> Text:
        return self.text()


def plain_line(renderable: object) -> str | None:
    """What a one-line text prints to a stream that is not a terminal, as Rich's console
    would print it there; None for anything else (a table, several lines)."""
    if isinstance(renderable, Line):
        plain = renderable.plain
    else:
        from rich.text import Text

        if not isinstance(renderable, Text):
            return None
        plain = renderable.plain
    return None if "\n" in plain else plain


def _group(*parts: RenderableType) -> RenderableType:
    """Renderables one under the other (rich.console is imported only to print them)."""
    from rich.console import Group

    return Group(*parts)


def _table(*columns: str, **options: Any) -> Table:
    """A Rich table (rich.table is imported by the commands that print one, not by all);
    a titled table's title sits on the left."""
    from rich.table import Table

    if "title" in options:
        options.setdefault("title_justify", "left")
    return Table(*columns, **options)


def add_row(table: Table, *cells: str | Line | Text) -> None:
    """A table row of user data: every cell literal text, never Rich markup."""
    table.add_row(*(Line(cell) if isinstance(cell, str) else cell for cell in cells))


# -- plain values -------------------------------------------------------------------


# -- Rich ---------------------------------------------------------------------------


def warnings_text(warnings: list[Warning]) -> list[Line]:
    """Warnings, for stderr."""
    return [Line(f"! {w.rule}: {w.message}", style="yellow") for w in warnings]


def log_text(page: LogPage) -> RenderableType:
    parts: list[RenderableType] = []
    if page.identified is not None:
        table = _table(title="Identified", title_justify="left", expand=False)
        for column in ("Time (UTC)", "Person", "Type", "Activity", "Note"):
            table.add_column(column, overflow="fold")
        for row in page.identified:
            event = row.event
            add_row(
                table,
                time_text(row.timestamp),
                row.person.label if row.person else "—",
                row.type,
                activity_summary(row),
                log_note(row),
            )
        if not page.identified:
            table.caption = "no identified activity"
        elif page.next_identified:
            table.caption = f"older: --before {page.next_identified}"
        parts.append(table)
    if page.anonymous is not None:
        table = _table(title="Anonymous", title_justify="left", expand=False)
        for column in ("Time (UTC)", "Anonymous ID / Recipient", "Type", "Name", "Retention"):
            table.add_column(column, overflow="fold")
        for row in page.anonymous:
            event = row.event
            assert event is not None
            who = f"invite → {event.recipient}" if event.is_invite else row.anonymous_id or ""
            left = retention_left(event, page.now)
            add_row(table, time_text(row.timestamp), who, row.type, row.name or "", left)
        if not page.anonymous:
            table.caption = "no anonymous activity"
        elif page.next_anonymous:
            table.caption = f"older: --before {page.next_anonymous}"
        parts.append(table)
    return _group(*parts)


def track_text(result: TrackResult) -> RenderableType:
    if not result.stored:
        return _group()  # the duplicate warning says it all
    where = {
        "identified": f"on {result.person.label if result.person else '?'}",
        "anonymous": f"anonymous ({result.anonymous_id})",
        "invite": "as an invite event",
    }[result.status]
    return Line(f"Stored {result.event_id} {where} [{result.rule}]")


def identify_text(result: IdentifyResult) -> RenderableType:
    verb = "Created" if result.created else "Updated"
    lines = [Line(f"{verb} {result.person.label} (cio_{result.person.cio_id})")]
    for change in result.attribute_changes:
        lines.append(Line(f"  {change.attribute}: {change.before!r} → {change.after!r}"))
    for failure in result.failed_attribute_changes:
        lines.append(Line(f"  {failure['attribute']} not changed: {failure['reason']}", "red"))
    if result.merged:
        lines.append(
            Line(f"Merged {len(result.merged)} anonymous event(s) from {result.anonymous_id}")
        )
    return _group(*lines)


def merge_text(result: MergeResult) -> RenderableType:
    head = "Would merge" if result.dry_run else "Merged"
    lines = [
        Line(f"{head} {result.secondary.label} into {result.primary.label}"),
        Line(f"  events moved (inherited): {len(result.moved)}"),
        Line(f"  events dropped (older than 30 days): {len(result.dropped)}"),
        Line(f"  attributes filled: {', '.join(result.filled) or 'none'}"),
        Line(f"  anonymous ids moved: {', '.join(result.anonymous_ids) or 'none'}"),
    ]
    return _group(*lines)


def purge_text(result: PurgeResult) -> RenderableType:
    if not result.total:  # a sentence, not an empty table
        return Line(
            "Nothing to delete: no anonymous event has stayed unmerged past the 30-day retention."
        )
    head = "Would delete" if result.dry_run else "Deleted"
    table = _table(title=f"{head} {result.total} expired anonymous event(s)", title_justify="left")
    table.add_column("Anonymous ID")
    table.add_column("Events", justify="right")
    for anonymous_id, count in sorted(result.deleted.items()):
        add_row(table, anonymous_id, f"{count:,}")
    return table


def settings_text(settings: Settings) -> RenderableType:
    table = _table(show_header=False)
    add_row(table, "created_at", time_text(settings.created_at))
    add_row(table, "anonymous_merge", "on" if settings.anonymous_merge else "off")
    return table


def profile_text(profile: Profile) -> RenderableType:
    person = profile.person
    ident = _table(title=Line(person.ref().label).text(), title_justify="left", show_header=False)
    add_row(ident, "cio_id", person.cio_id)
    add_row(ident, "id", person.id or "—")
    add_row(ident, "email", person.email or "—")
    add_row(ident, "created (UTC)", time_text(person.created_at))
    for name, value in sorted(person.attributes.items()):
        add_row(ident, name, str(value))
    counts = profile.counts
    events = _table(title="Events", title_justify="left")
    for column in ("total", "tracked", "merged", "inherited", "campaign-eligible"):
        events.add_column(column, justify="right")
    add_row(
        events,
        *map(
            str,
            (
                counts.total,
                counts.tracked,
                counts.merged,
                counts.inherited,
                counts.campaign_eligible,
            ),
        ),
    )
    anon = _table(title="Anonymous IDs", title_justify="left")
    anon.add_column("anonymous_id")
    anon.add_column("assigned at (UTC)")
    for a in profile.anonymous_ids:
        add_row(anon, a.anonymous_id, time_text(a.assigned_at))
    merges = _table(title="Merge history", title_justify="left")
    merges.add_column("Time (UTC)")
    merges.add_column("Activity")
    for row in profile.merges:
        add_row(merges, time_text(row.timestamp), activity_summary(row))
    parts: list[RenderableType] = [ident, events, anon, merges]
    if profile.devices:
        devices = _table(
            "device", "platform", "last used (UTC)", title="Devices", title_justify="left"
        )
        for d in profile.devices:
            add_row(devices, d.device_id, d.platform or "—", time_text(d.last_used))
        parts.append(devices)
    if profile.relationships:
        related = _table(
            "object type", "object id", "attributes", title="Relationships", title_justify="left"
        )
        for r in profile.relationships:
            add_row(related, r.object_type_id, r.object_id, jsonio.dumps(r.object_attributes))
        parts.append(related)
    return _group(*parts)


def people_text(people: list[tuple[Person, int]]) -> RenderableType:
    table = _table(title=f"{len(people)} people", title_justify="left")
    for column in ("cio_id", "id", "email", "created (UTC)", "events"):
        table.add_column(column)
    for person, count in people:
        add_row(
            table,
            person.cio_id,
            person.id or "—",
            person.email or "—",
            time_text(person.created_at),
            str(count),
        )
    return table


def explain_text(explanation: Explanation) -> RenderableType:
    decision = explanation.decision
    where = {
        "identified": f"on {explanation.person.label if explanation.person else '?'}",
        "anonymous": f"anonymous ({explanation.anonymous_id})",
        "invite": "an invite event",
        "purged": "deleted",
    }[explanation.status]
    lines: list[RenderableType] = [
        Line(f"{explanation.event_id} ({explanation.name!r}) is {where} [{decision.rule}]"),
        Line(decision.reason),
    ]
    if explanation.campaign is not None and explanation.campaign is not decision:
        lines.append(
            Line(f"Campaigns: {explanation.campaign.reason} [{explanation.campaign.rule}]")
        )
    if explanation.source:
        lines.append(Line(f"Source: {explanation.source}"))
    facts = _table(show_header=False, title="Facts (UTC)", title_justify="left")
    fine = fine_times(decision.facts.values())
    for name, value in decision.facts.items():
        shown = time_text(value, fine) if isinstance(value, datetime) else str(value)
        add_row(facts, name, shown)
    lines.append(facts)
    return _group(*lines)


# -- replay and delete --------------------------------------------------------------


def replay_text(summary: ReplaySummary) -> RenderableType:
    tally = summary.tally
    table = _table(title="Replay", title_justify="left", show_header=False)
    rows = [
        ("records", tally.records),
        ("applied", tally.applied),
        ("events stored", tally.stored),
        ("events merged", tally.merged),
        ("duplicates ignored", tally.duplicates),
        ("people created", tally.people_created),
        ("expectations checked", tally.expectations),
    ]
    if tally.ignored:
        rows.append(("calls stored, not modelled, or ignored", tally.ignored))
    rows += [(f"warnings: {rule}", count) for rule, count in sorted(tally.warnings.items())]
    for label, value in rows:
        add_row(table, label, f"{value:,}")
    lines: list[RenderableType] = [table]
    if summary.ok:
        held = (
            f"every expectation held ({tally.expectations:,})"
            if tally.expectations
            else "the files hold no expectations"
        )
        refused = len(summary.refused_as_recorded)
        applied = (
            f"All records applied but {refused:,} the server had refused when it recorded them"
            if refused
            else "All records applied"
        )
        lines.append(Line(f"{applied}; {held}.", style="green"))
    return _group(*lines)


NOTES_ALIKE = 5
"""The notes alike (the same words but for the ids they quote) a replay prints on
stderr; of the rest, how many there are (its --json lists every note). A server SDK's
recording may hold an alias for every login."""


def replay_diagnostics(summary: ReplaySummary) -> list[Line]:
    """What a replay has to say about its input, for stderr: `FILE:LINE: ...` lines."""
    tally = summary.tally
    alike: Counter[str] = Counter()
    lines = []
    for note in tally.notes:
        kind = _QUOTED.sub("'…'", note.message)
        alike[kind] += 1
        if alike[kind] <= NOTES_ALIKE:
            lines.append(Line(f"note: {note}", style="dim"))
    lines += [
        Line(f"note: {count - NOTES_ALIKE:,} more: {kind} (--json lists every note)", style="dim")
        for kind, count in alike.items()
        if count > NOTES_ALIKE
    ]
    lines += [
        Line(f"refused, as when recorded: {p}", style="yellow") for p in summary.refused_as_recorded
    ]
    lines += [Line(f"invalid: {p}", style="red") for p in summary.invalid]
    lines += [
        Line(f"rejected{_at_line(summary.stopped_at[f])} (nothing applied): {f}", style="red")
        for f in summary.rejected_files
    ]
    lines += [Line(f"expectation failed: {p}", style="red") for p in tally.failed_expectations]
    return lines


def _at_line(line: int) -> str:
    """Where a rejected file stopped: a line, or none (0: the file could not be read on,
    as its sentence says)."""
    return f" at line {line}" if line else ""


_QUOTED = re.compile(r"'[^']*'")
"""A quoted value in a note (an id, a name): what notes alike differ in."""


def delete_text(result: DeleteResult) -> RenderableType:
    counted = (
        f"{result.person.label} with {result.events} event(s), {result.activities} "
        f"activities and {result.anonymous_profiles} anonymous profile(s)"
    )
    if result.dry_run:
        return Line(
            f"Would delete {counted}; {result.assignments_kept} anonymous id(s) would stay "
            "assigned, to nobody. Nothing was changed (--dry-run)."
        )
    return Line(
        f"Deleted {counted}; the freed space was overwritten. "
        f"{result.assignments_kept} anonymous id(s) stay assigned, to nobody: an anonymous "
        "id is assigned once, ever."
    )


def demo_text(result: DemoResult) -> RenderableType:
    tally = result.summary.tally
    head = Line(
        f"Replayed the shopper scenario: {tally.records} records, {tally.stored} events, "
        f"{tally.merged} merged, {tally.expectations} expectations checked.",
        style="bold",
    )
    return _group(head, log_text(result.log), profile_text(result.profile))


def _rules_table(
    key: str, rules: list[str], title: str, counts: dict[str, dict[str, int]]
) -> Table:
    """Counts per rule for each day or source: the key never cut, rule names wrapped at
    their underscores so eight of them fit a terminal."""
    table = _table(key, *(rule.replace("_", " ") for rule in rules), title=title)
    table.columns[0].no_wrap = True
    cells = {name: [f"{row.get(rule, 0):,}" for rule in rules] for name, row in counts.items()}
    for index, (column, rule) in enumerate(zip(table.columns[1:], rules, strict=True)):
        column.justify = "right"
        widest = [len(word) for word in rule.split("_")] + [len(c[index]) for c in cells.values()]
        column.min_width = column.max_width = max(widest)
    for name, row_cells in cells.items():
        add_row(table, name, *row_cells)
    return table


def audit_text(report: AuditReport) -> RenderableType:
    if not report.events:
        return Line(f"No events in {report.records:,} records: nothing to place.")
    rules = sorted({rule for day in report.by_day.values() for rule in day})
    per_rule = _table(
        "rule", "events", title=f"{report.events:,} events in {report.records:,} records"
    )
    for rule, count in report.rules.items():
        add_row(per_rule, rule, f"{count:,}")
    by_day = _rules_table("day", rules, "Per day (received, UTC)", report.by_day)
    by_source = _rules_table("source", rules, "Per source (context.library.name)", report.by_source)
    on_people = sum(report.campaigns.values())
    campaigns = Line(
        f"Of the {on_people:,} events on a person, {report.campaigns.get('can_trigger', 0):,} "
        f"can trigger campaigns and {report.campaigns.get('segment_only', 0):,} count for "
        "segments only."
    )
    parts: list[RenderableType] = [per_rule, campaigns, by_day, by_source]
    for finding in report.findings:
        style = "red" if finding.severity == "error" else "yellow"
        where = f"{finding.file}:{finding.line}"
        parts.append(Line(f"{finding.severity} {finding.code} ({where}): {finding.message}", style))
    return _group(*parts)
