"""Result objects as Rich output for people: tables, lines, colours; user data always
escaped. Their JSON documents are in `documents`."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from cio_anon import jsonio
from cio_anon.models import Person, PersonRef, Settings
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
    from cio_anon.check import Report
    from cio_anon.demo import DemoResult
    from cio_anon.replay import ReplaySummary
    from cio_anon.rules.findings import Finding

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_SEVERITY_STYLE = {"error": "red", "warning": "yellow"}
"""A finding's colour, by its severity (`rules.findings.SEVERITIES`)."""


def visible(text: str) -> str:
    """Text made safe to print: control characters (ESC, OSC, newlines, ...) shown as
    escapes, so user data can neither drive the terminal nor break a line."""
    return _CONTROL.sub(lambda m: _NAMED.get(m.group(), f"\\x{ord(m.group()):02x}"), text)


class Line:
    """One line of printed text holding user data: never markup, no control characters
    (`visible`). Written as it is to a stream that is not a terminal (`plain_lines`), and
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


class Lines:
    """`Line`s one under the other: written as they are to a stream that is not a
    terminal, a Rich group of texts only when Rich prints them."""

    __slots__ = ("lines",)

    def __init__(self, lines: Sequence[Line]) -> None:
        self.lines = tuple(lines)

    def __rich__(self) -> RenderableType:
        from rich.console import Group

        return Group(*self.lines)


def plain_lines(renderable: object) -> list[str] | None:
    """What text (a `Line`, `Lines`) prints to a stream that is not a terminal, as Rich's
    console would print it there; None for anything else (a table)."""
    if isinstance(renderable, Line):
        return [renderable.plain]
    if isinstance(renderable, Lines):
        return [line.plain for line in renderable.lines]
    return None


def stack(*parts: RenderableType) -> RenderableType:
    """Renderables one under the other: `Lines` when every one is a `Line`, else a Rich
    group (rich.console is imported only to print one)."""
    lines = [part for part in parts if isinstance(part, Line)]
    if len(lines) == len(parts):
        return Lines(lines)
    from rich.console import Group

    return Group(*parts)


def rich_table(*columns: str, **options: Any) -> Table:
    """A Rich table (rich.table is imported by the commands that print one, not by all);
    a titled table's title sits on the left, as literal text (never markup)."""
    from rich.table import Table

    if isinstance(options.get("title"), str):  # (in Rich's title style, as markup has it)
        options["title"] = Line(options["title"], "table.title").text()
    options.setdefault("title_justify", "left")
    return Table(*columns, **options)


def add_row(table: Table, *cells: str | Line) -> None:
    """A table row of user data: every cell literal text, never Rich markup."""
    table.add_row(*(Line(cell) if isinstance(cell, str) else cell for cell in cells))


# -- Rich ---------------------------------------------------------------------------


def warnings_text(warnings: list[Warning]) -> list[Line]:
    """Warnings, for stderr."""
    return [Line(f"! {w.rule}: {w.message}", style="yellow") for w in warnings]


def log_text(page: LogPage) -> RenderableType:
    parts: list[RenderableType] = []
    if page.identified is not None:
        table = rich_table(title="Identified", expand=False)
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
        table = rich_table(title="Anonymous", expand=False)
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
    return stack(*parts)


def track_text(result: TrackResult) -> RenderableType:
    if not result.stored:
        return stack()  # the duplicate warning says it all
    where = {
        "identified": f"on {result.person.label if result.person else '?'}",
        "anonymous": f"anonymous ({result.anonymous_id})",
        "invite": "as an invite event",
    }[result.status]
    return Line(f"Stored {result.event_id} {where} [{result.rule}]")


def identify_text(result: IdentifyResult) -> RenderableType:
    verb = "Created" if result.created else "Updated"
    lines = [Line(f"{verb} {_named(result.person)}")]
    for change in result.attribute_changes:
        lines.append(Line(f"  {change.attribute}: {change.before!r} → {change.after!r}"))
    for failure in result.failed_attribute_changes:
        lines.append(Line(f"  {failure['attribute']} not changed: {failure['reason']}", "red"))
    if result.merged:
        lines.append(
            Line(f"Merged {len(result.merged)} anonymous event(s) from {result.anonymous_id}")
        )
    return stack(*lines)


def _named(person: PersonRef) -> str:
    """A person's label and cio_id: after a merge fills the primary's email or id from
    the secondary's, the two labels can be the same."""
    return f"{person.label} (cio_{person.cio_id})"


def merge_text(result: MergeResult) -> RenderableType:
    head = "Would merge" if result.dry_run else "Merged"
    lines = [
        Line(f"{head} {_named(result.secondary)} into {_named(result.primary)}"),
        Line(f"  events moved (inherited): {len(result.moved)}"),
        Line(f"  events dropped (older than 30 days): {len(result.dropped)}"),
        Line(f"  attributes filled: {', '.join(result.filled) or 'none'}"),
        Line(f"  anonymous ids moved: {', '.join(result.anonymous_ids) or 'none'}"),
    ]
    return stack(*lines)


def purge_text(result: PurgeResult) -> RenderableType:
    if not result.total:  # a sentence, not an empty table
        return Line(
            "Nothing to delete: no anonymous event has stayed unmerged past the 30-day retention."
        )
    head = "Would delete" if result.dry_run else "Deleted"
    table = rich_table(title=f"{head} {result.total} expired anonymous event(s)")
    table.add_column("Anonymous ID")
    table.add_column("Events", justify="right")
    for anonymous_id, count in sorted(result.deleted.items()):
        add_row(table, anonymous_id, f"{count:,}")
    return table


def settings_text(settings: Settings) -> RenderableType:
    table = rich_table(show_header=False)
    add_row(table, "created_at", time_text(settings.created_at))
    add_row(table, "anonymous_merge", "on" if settings.anonymous_merge else "off")
    return table


def profile_text(profile: Profile) -> RenderableType:
    person = profile.person
    ident = rich_table(title=person.ref().label, show_header=False)
    add_row(ident, "cio_id", person.cio_id)
    add_row(ident, "id", person.id or "—")
    add_row(ident, "email", person.email or "—")
    add_row(ident, "created (UTC)", time_text(person.created_at))
    for name, value in sorted(person.attributes.items()):
        add_row(ident, name, str(value))
    counts = profile.counts
    events = rich_table(title="Events")
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
    anon = rich_table(title="Anonymous IDs")
    anon.add_column("anonymous_id")
    anon.add_column("assigned at (UTC)")
    for a in profile.anonymous_ids:
        add_row(anon, a.anonymous_id, time_text(a.assigned_at))
    merges = rich_table(title="Merge history")
    merges.add_column("Time (UTC)")
    merges.add_column("Activity")
    for row in profile.merges:
        add_row(merges, time_text(row.timestamp), activity_summary(row))
    parts: list[RenderableType] = [ident, events, anon, merges]
    if profile.devices:
        devices = rich_table("device", "platform", "last used (UTC)", title="Devices")
        for d in profile.devices:
            add_row(devices, d.device_id, d.platform or "—", time_text(d.last_used))
        parts.append(devices)
    if profile.relationships:
        related = rich_table("object type", "object id", "attributes", title="Relationships")
        for r in profile.relationships:
            add_row(related, r.object_type_id, r.object_id, jsonio.dumps(r.object_attributes))
        parts.append(related)
    return stack(*parts)


def people_text(people: list[tuple[Person, int]]) -> RenderableType:
    table = rich_table(title=f"{len(people)} people")
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
    facts = rich_table(show_header=False, title="Facts (UTC)")
    fine = fine_times(decision.facts.values())
    for name, value in decision.facts.items():
        shown = time_text(value, fine) if isinstance(value, datetime) else str(value)
        add_row(facts, name, shown)
    lines.append(facts)
    return stack(*lines)


# -- replay and delete --------------------------------------------------------------


def replay_text(summary: ReplaySummary) -> RenderableType:
    tally = summary.tally
    table = rich_table(title="Replay", show_header=False)
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
    return stack(*lines)


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
    return stack(head, log_text(result.log), profile_text(result.profile))


def _rules_table(
    key: str, rules: list[str], title: str, counts: dict[str, dict[str, int]]
) -> Table:
    """Counts per rule for each day or source: the key never cut, rule names wrapped at
    their underscores so eight of them fit a terminal."""
    table = rich_table(key, *(rule.replace("_", " ") for rule in rules), title=title)
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
    per_rule = rich_table(
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
        where = f"{finding.file}:{finding.line}"
        told = f"{finding.severity} {finding.code} ({where}): {finding.message}"
        parts.append(Line(told, _SEVERITY_STYLE[finding.severity]))
    return stack(*parts)


# -- check --------------------------------------------------------------------------


def check_text(report: Report, per_code: int = 20) -> RenderableType:
    """The summary first, then the findings rolled up by code, then each file's
    findings, one row for each sentence (the same finding about many calls: the lines
    from first to last, how many times): at most `per_code` rows of each code (0: all),
    the rest counted. Event names, ids and paths are the fixtures': literal text."""
    from cio_anon.check.report import by_file, line_span, rows
    from cio_anon.rules.findings import CODES

    checked = f"{report.calls:,} tracks and identifies, " if report.calls > report.records else ""
    summary = (
        f"{report.records:,} records checked: {checked}{report.count('error'):,} error(s), "
        f"{report.count('warning'):,} warning(s)"
    )
    if report.baseline is not None:
        summary += f"; {len(report.known):,} known, accepted by {report.baseline}"
    parts: list[RenderableType] = [Line(summary + ".", style="bold")]
    if not report.findings:
        return stack(*parts)
    codes = report.by_code()
    rollup = rich_table(title="By code")
    for column in ("code", "severity", "findings"):
        rollup.add_column(column, no_wrap=True, justify="right" if column == "findings" else "left")
    for code, count in sorted(codes.items(), key=lambda item: (CODES[item[0]][0], -item[1])):
        severity = CODES[code][0]
        add_row(rollup, code, _severity(severity), f"{count:,}")
    parts.append(rollup)
    listed: Counter[str] = Counter()  # rows of each code
    shown: Counter[str] = Counter()  # findings of each code, in those rows
    for file, findings in by_file(report.findings).items():
        table = rich_table(title=file)
        file_rows = rows(findings)
        for column in ("line", "severity", "code"):  # never split: a code is searched for
            table.add_column(column, no_wrap=True)
        times = any(len(row) > 1 for row in file_rows)
        if times:
            table.add_column("times", no_wrap=True, justify="right")
        # a line holding several calls (a recorded request): each finding names its call
        calls: dict[int, set[str]] = {}
        for finding in findings:
            if finding.message_id is not None:  # (a finding across events names none)
                calls.setdefault(finding.line, set()).add(finding.message_id)
        several = any(len(ids) > 1 for ids in calls.values())
        for column in ("messageId", "finding", "fix") if several else ("finding", "fix"):
            table.add_column(column, overflow="fold")
        for row in file_rows:
            first = row[0]
            if per_code and listed[first.code] >= per_code:
                continue
            listed[first.code] += 1
            shown[first.code] += len(row)
            add_row(
                table,
                line_span(row),
                _severity(first.severity),
                first.code,
                *([f"{len(row):,}"] if times else []),
                *([_message_ids(row)] if several else []),
                first.message,
                first.hint,
            )
        if table.row_count:
            parts.append(table)
    hidden = sum(codes.values()) - sum(shown.values())
    if hidden:
        parts.append(
            Line(
                f"{hidden:,} more finding(s) not listed ({per_code} row(s) of each code shown; "
                "--max-findings 0 lists all, --format json gives every one)."
            )
        )
    return stack(*parts)


def _severity(severity: str) -> Line:
    return Line(severity, style=_SEVERITY_STYLE[severity])


def _message_ids(findings: Sequence[Finding], named: int = 3) -> str:
    """The calls a row of findings is about: the first few messageIds, the rest counted."""
    ids = [f.message_id for f in findings if f.message_id is not None]
    more = f" and {len(ids) - named:,} more" if len(ids) > named else ""
    return ", ".join(ids[:named]) + more
