"""A diff for people and for CI: Rich text, versioned JSON, JUnit XML, GitHub workflow
annotations, and a side-by-side HTML page."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any
from xml.etree import ElementTree

from cio_anon import __version__, jsonio
from cio_anon.check.report import github_annotations
from cio_anon.diff.compare import Change, Diff
from cio_anon.diff.outcomes import Outcome
from cio_anon.present.render import Line, add_row, rich_table, stack
from cio_anon.replay.apply import Source

if TYPE_CHECKING:
    from rich.console import RenderableType
    from rich.table import Table

JSON_SCHEMA_VERSION = 1
FORMATS = ("text", "json", "junit", "github")


def _side(outcome: Outcome) -> dict[str, Any]:
    return {
        "event_id": outcome.event_id,
        "person": outcome.person,
        "status": outcome.status,
        "rule": outcome.rule,
        "can_trigger_campaigns": outcome.can_trigger,
        "reason": outcome.reason,
        "timeline": outcome.timeline,
        "facts": outcome.facts,
        "source": outcome.source,
    }


def as_json(diff: Diff) -> dict[str, Any]:
    """Schema version 1: {version, tool, base, new, matched_by, differs, summary,
    changed[], added[], missing[], left_out: {base[], new[]}}; each change has key, name,
    journey, what, before, after (person, status, rule, can_trigger_campaigns, reason,
    timeline, facts); `left_out` the calls each run's replay refused (`FILE:LINE: why`)."""
    return {
        "version": JSON_SCHEMA_VERSION,
        "tool": {"name": "cio-anon", "version": __version__},
        "base": diff.base.origin,
        "new": diff.new.origin,
        "matched_by": diff.matched_by,
        "differs": diff.differs,
        "summary": {
            "events": {"base": len(diff.base.events), "new": len(diff.new.events)},
            "changed": len(diff.changed),
            "unchanged": diff.unchanged,
            "added": len(diff.added),
            "missing": len(diff.missing),
            "rules": {rule: {"base": b, "new": a} for rule, (b, a) in diff.rules().items()},
            "people": {who: {"base": b, "new": a} for who, (b, a) in diff.people().items()},
        },
        "changed": [
            {
                "key": change.after.key,
                "name": change.after.name,
                "journey": change.after.journey,
                "what": change.what,
                "before": _side(change.before),
                "after": _side(change.after),
            }
            for change in diff.changed
        ],
        "added": [{"key": o.key, **_side(o)} for o in diff.added],
        "missing": [{"key": o.key, **_side(o)} for o in diff.missing],
        "left_out": {"base": diff.base.left_out, "new": diff.new.left_out},
    }


def _verdict(outcome: Outcome) -> str:
    campaign = "campaigns" if outcome.can_trigger else "no campaigns"
    return f"{outcome.person or 'anonymous'}, {outcome.rule}, {campaign}"


def _why(outcome: Outcome) -> str:
    """Why an outcome is as it is: explain's sentence, and the timeline behind it."""
    return outcome.reason + (f" ({outcome.timeline})" if outcome.timeline else "")


def sentence(change: Change) -> str:
    """One change in words: before → after, and why it is so now."""
    after = change.after
    return f"{after.key}: {_verdict(change.before)} → {_verdict(after)}. {_why(after)}"


def _counts(title: str, key: str, counts: dict[str, tuple[int, int]]) -> Table:
    table = rich_table(title=title)
    for column in (key, "base", "new"):
        table.add_column(column)
    for name, (was, now) in counts.items():
        add_row(table, name, f"{was:,}", f"{now:,}")
    return table


LISTED = 20
"""Events only in one run that the text report names (a recording cut short, or a
journey that grew, can leave hundreds: the rest are counted)."""


LEFT_OUT_LISTED = 5
"""The calls left out of a run that stderr names; the rest are counted."""


def diagnostics(diff: Diff) -> list[Line]:
    """For stderr: the calls each run's replay left out (refused, as Customer.io would
    refuse them), so that an event missing for that reason is not a mystery."""
    lines = []
    for side, outcomes in (("base", diff.base), ("new", diff.new)):
        for problem in outcomes.left_out[:LEFT_OUT_LISTED]:
            lines.append(Line(f"note: left out of the {side} run: {problem}"))
        more = len(outcomes.left_out) - LEFT_OUT_LISTED
        if more > 0:
            lines.append(
                Line(
                    f"note: {more:,} more calls left out of the {side} run (`cio-anon "
                    "replay --keep-going` lists every one)"
                )
            )
    return lines


def as_text(diff: Diff) -> RenderableType:
    """The changed events, then the counts that moved, then a line that sums it up. Event
    names and ids are the recording's: printed as text, never as markup."""
    parts: list[RenderableType] = []
    if diff.changed:
        table = rich_table(title="Changed")
        for column in ("event", "before", "after", "why now"):
            table.add_column(column, overflow="fold")
        for change in diff.changed:
            after = change.after
            now = Line(_verdict(after), style="bold")
            add_row(table, after.key, _verdict(change.before), now, _why(after))
        parts.append(table)
    for title, key, counts in (
        ("Events per rule", "rule", diff.rules()),
        ("Events per person", "person", diff.people()),
    ):
        if counts:
            parts.append(_counts(title, key, counts))
    for title, outcomes in (
        ("Only in the new run", diff.added),
        ("Only in the base", diff.missing),
    ):
        if outcomes:
            keys = ", ".join(o.key for o in outcomes[:LISTED])
            more = len(outcomes) - LISTED
            if more > 0:
                keys += f", and {more:,} more (--json lists every one)"
            parts.append(Line(f"{title} ({len(outcomes):,}): {keys}"))
    summary = (
        f"{len(diff.changed):,} event(s) changed hands or rules"
        if diff.differs
        else "No event changed hands or rules"
    )
    parts.append(
        Line(
            f"{summary}; {diff.unchanged:,} unchanged, {len(diff.added):,} added, "
            f"{len(diff.missing):,} missing (matched by {diff.matched_by}).",
            style="bold",
        )
    )
    return stack(*parts)


def as_junit(diff: Diff) -> str:
    """One test case per event of the new run, failing when its outcome changed; an
    event only in the base is a failure-free case with its note (the exit code does
    not count added or missing events either)."""
    root = ElementTree.Element("testsuites", name="cio-anon diff")
    suite = ElementTree.SubElement(root, "testsuite", name="identity outcomes")
    changed = {change.after.key: change for change in diff.changed}
    cases = 0
    for outcome in diff.new.events:
        case = ElementTree.SubElement(
            suite, "testcase", classname=outcome.journey, name=outcome.key
        )
        cases += 1
        change = changed.get(outcome.key)
        if change is not None:
            failure = ElementTree.SubElement(
                case, "failure", type="changed", message=", ".join(change.what) + " changed"
            )
            failure.text = sentence(change)
    for outcome in diff.missing:
        case = ElementTree.SubElement(
            suite, "testcase", classname=outcome.journey, name=outcome.key
        )
        ElementTree.SubElement(case, "system-out").text = "only in the base run"
        cases += 1
    for element in (suite, root):
        element.set("tests", str(cases))
        element.set("failures", str(len(diff.changed)))
        element.set("errors", "0")
    return ElementTree.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def as_github(diff: Diff) -> str:
    commands = []
    for change in diff.changed:
        where = Source.parse(change.after.source or "")
        place = (where.file, where.line) if where.line else (None, None)
        commands.append(("error", sentence(change), *place, "identity changed"))
    return github_annotations(commands)


def as_html(diff: Diff) -> str:
    """A self-contained page: the changed events side by side, then the counts."""
    e = html.escape

    def cell(outcome: Outcome) -> str:
        return (
            f"<td><b>{e(outcome.person or 'anonymous')}</b><br>{e(outcome.rule)}"
            f"<br>{'can trigger campaigns' if outcome.can_trigger else 'no campaigns'}"
            f"<br><small>{e(outcome.reason)} {e(outcome.timeline)}</small></td>"
        )

    rows = "".join(
        f"<tr><th scope=row>{e(c.after.key)}</th>{cell(c.before)}{cell(c.after)}</tr>"
        for c in diff.changed
    )
    counts = "".join(
        f"<tr><td>{e(rule)}</td><td>{b:,}</td><td>{a:,}</td></tr>"
        for rule, (b, a) in diff.rules().items()
    )
    summary = (
        f"{len(diff.changed):,} changed, {diff.unchanged:,} unchanged, {len(diff.added):,} "
        f"added, {len(diff.missing):,} missing (matched by {e(diff.matched_by)})"
    )
    return (
        "<!doctype html><html lang=en><meta charset=utf-8>"
        "<title>cio-anon diff</title><style>"
        "body{font-family:system-ui,sans-serif;margin:2rem;color:#1b1b1f}"
        "table{border-collapse:collapse;margin:1rem 0}"
        "th,td{border:1px solid #ccd;padding:.4rem .6rem;vertical-align:top;text-align:left}"
        "td small{color:#555}</style>"
        f"<h1>Identity outcomes: {e(' '.join(diff.base.origin))} → "
        f"{e(' '.join(diff.new.origin))}</h1><p>{summary}</p>"
        "<table id=changed><tr><th>event</th><th>base</th><th>new</th></tr>"
        f"{rows}</table>"
        "<table id=rules><tr><th>rule</th><th>base</th><th>new</th></tr>"
        f"{counts}</table></html>\n"
    )


def render(diff: Diff, fmt: str) -> str | RenderableType:
    if fmt == "json":
        return jsonio.dumps(as_json(diff))
    if fmt == "junit":
        return as_junit(diff)
    if fmt == "github":
        return as_github(diff)
    return as_text(diff)
