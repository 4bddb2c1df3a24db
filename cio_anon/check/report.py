"""`check` findings rendered for people and for CI: Rich text, versioned JSON, JUnit XML,
SARIF 2.1.0 and GitHub workflow annotations."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any
from xml.etree import ElementTree

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from cio_anon import __version__, jsonio
from cio_anon.check import Report
from cio_anon.rules.findings import CODES, PLAN_CODES, Finding, failing

JSON_SCHEMA_VERSION = 1
FORMATS = ("text", "json", "junit", "sarif", "github")


def as_json(report: Report) -> dict[str, Any]:
    """Schema version 1: {version, tool, fixtures, plan, records, calls (the tracks and
    identifies checked: a recorded request carries many), summary (errors,
    warnings, known, by_code), baseline, findings[]} where each finding has code,
    severity, file, line, message_id (the call's messageId, or null), event, path,
    message, hint. Findings a baseline accepts are counted in `known`, not listed."""
    return {
        "version": JSON_SCHEMA_VERSION,
        "tool": {"name": "cio-anon", "version": __version__},
        "fixtures": report.fixtures,
        "plan": report.plan,
        "records": report.records,
        "calls": report.calls,
        "summary": {
            "errors": report.count("error"),
            "warnings": report.count("warning"),
            "known": len(report.known),
            "by_code": dict(sorted(report.by_code().items())),
        },
        "baseline": report.baseline,
        "findings": [
            {
                "code": f.code,
                "severity": f.severity,
                "file": f.file,
                "line": f.line,
                "message_id": f.message_id,
                "event": f.event,
                "path": f.path,
                "message": f.message,
                "hint": f.hint,
            }
            for f in report.findings
        ],
    }


def as_text(report: Report, per_code: int = 20) -> RenderableType:
    """The summary first, then the findings rolled up by code, then each file's
    findings, one row for each sentence (the same finding about many calls: the lines
    from first to last, how many times): at most `per_code` rows of each code (0: all),
    the rest counted."""
    checked = f"{report.calls:,} tracks and identifies, " if report.calls > report.records else ""
    summary = (
        f"{report.records:,} records checked: {checked}{report.count('error'):,} error(s), "
        f"{report.count('warning'):,} warning(s)"
    )
    if report.baseline is not None:
        summary += f"; {len(report.known):,} known, accepted by {report.baseline}"
    parts: list[RenderableType] = [Text(summary + ".", style="bold")]
    if not report.findings:
        return Group(*parts)
    codes = report.by_code()
    rollup = Table(title="By code", title_justify="left")
    for column in ("code", "severity", "findings"):
        rollup.add_column(column, no_wrap=True, justify="right" if column == "findings" else "left")
    for code, count in sorted(codes.items(), key=lambda item: (CODES[item[0]][0], -item[1])):
        severity = CODES[code][0]
        style = "red" if severity == "error" else "yellow"
        rollup.add_row(code, Text(severity, style=style), f"{count:,}")
    parts.append(rollup)
    listed: Counter[str] = Counter()  # rows of each code
    shown: Counter[str] = Counter()  # findings of each code, in those rows
    for file, findings in _by_file(report.findings).items():
        table = Table(title=file, title_justify="left")
        rows = _rows(findings)
        for column in ("line", "severity", "code"):  # never split: a code is searched for
            table.add_column(column, no_wrap=True)
        times = any(len(row) > 1 for row in rows)
        if times:
            table.add_column("times", no_wrap=True, justify="right")
        # a line holding several calls (a recorded request): each finding names its call
        calls: dict[int, set[str]] = defaultdict(set)
        for finding in findings:
            if finding.message_id is not None:  # (a finding across events names none)
                calls[finding.line].add(finding.message_id)
        several = any(len(ids) > 1 for ids in calls.values())
        for column in ("messageId", "finding", "fix") if several else ("finding", "fix"):
            table.add_column(column, overflow="fold")
        for row in rows:
            first = row[0]
            if per_code and listed[first.code] >= per_code:
                continue
            listed[first.code] += 1
            shown[first.code] += len(row)
            style = "red" if first.severity == "error" else "yellow"
            table.add_row(
                _lines(row),
                Text(first.severity, style=style),
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
            Text(
                f"{hidden:,} more finding(s) not listed ({per_code} row(s) of each code shown; "
                "--max-findings 0 lists all, --format json gives every one)."
            )
        )
    return Group(*parts)


def _by_file(findings: Sequence[Finding]) -> dict[str, list[Finding]]:
    by_file: dict[str, list[Finding]] = defaultdict(list)
    for finding in findings:
        by_file[finding.file].append(finding)
    return by_file


def _rows(findings: Sequence[Finding]) -> list[list[Finding]]:
    """One file's findings as the reports list them: errors first, by line, and the same
    finding about many calls (as an SDK's batches repeat one mistake) together, as one
    row: one sentence on many lines, or, for a finding at a property (`path`), one code
    at one property of one event, whatever value each call sent (`'TEE-1' is not of
    type 'integer'`, then `'TEE-2'`: one mistake, one row, the first value shown)."""
    same: dict[tuple[str, str | None, str], list[Finding]] = {}
    for finding in sorted(findings, key=lambda f: (f.severity != "error", f.line)):
        key = (
            (finding.code, finding.event, finding.path)
            if finding.path is not None
            else (finding.code, None, finding.message)
        )
        same.setdefault(key, []).append(finding)
    return list(same.values())


def _lines(row: Sequence[Finding]) -> str:
    """A row's lines: its one line, or its first and last."""
    first, last = row[0].line, row[-1].line
    return str(first) if first == last else f"{first}–{last}"


def _message_ids(findings: Sequence[Finding], named: int = 3) -> str:
    """The calls a row of findings is about: the first few messageIds, the rest counted."""
    ids = [f.message_id for f in findings if f.message_id is not None]
    more = f" and {len(ids) - named:,} more" if len(ids) > named else ""
    return ", ".join(ids[:named]) + more


def as_junit(report: Report, fail_on: str = "error") -> str:
    """One test suite per fixture file, one test case per finding code. A case fails
    when its code was found at a severity `--fail-on` fails (as the exit code does); a
    finding below it is told in the case's output; a check that did not run (a plan's,
    without --plan) is skipped."""
    root = ElementTree.Element("testsuites", name="cio-anon check")
    levels = failing(fail_on)
    totals = {"tests": 0, "failures": 0, "skipped": 0}
    for file in report.fixtures:
        findings = [f for f in report.findings if f.file == file]
        suite = ElementTree.SubElement(root, "testsuite", name=file)
        counts = {"tests": len(CODES), "failures": 0, "skipped": 0}
        for code, (severity, _) in CODES.items():
            case = ElementTree.SubElement(suite, "testcase", classname=file, name=code)
            hits = [f for f in findings if f.code == code]
            told = "\n".join(f"{f.file}:{f.line}: {f.message}" for f in hits)
            if report.plan is None and code in PLAN_CODES:
                counts["skipped"] += 1
                ElementTree.SubElement(case, "skipped", message="needs a tracking plan (--plan)")
            elif hits and severity in levels:
                counts["failures"] += 1
                failure = ElementTree.SubElement(
                    case,
                    "failure",
                    type=severity,
                    message=f"{len(hits)} finding(s): {hits[0].message}",
                )
                failure.text = told
            elif hits:
                ElementTree.SubElement(
                    case, "system-out"
                ).text = f"{len(hits)} {severity}(s), below --fail-on {fail_on}:\n{told}"
        for key, value in counts.items():
            suite.set(key, str(value))
            totals[key] += value
        suite.set("errors", "0")
    for key, value in totals.items():
        root.set(key, str(value))
    return ElementTree.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def as_sarif(report: Report) -> dict[str, Any]:
    rule_ids = list(CODES)
    return {
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "cio-anon",
                        "version": __version__,
                        "rules": [
                            {
                                "id": code,
                                "shortDescription": {"text": hint},
                                "defaultConfiguration": {"level": severity},
                            }
                            for code, (severity, hint) in CODES.items()
                        ],
                    }
                },
                "results": [
                    {
                        "ruleId": f.code,
                        "ruleIndex": rule_ids.index(f.code),
                        "level": f.severity,
                        "message": {"text": f"{f.message} {f.hint}"},
                        "locations": [
                            {
                                "physicalLocation": {
                                    "artifactLocation": {"uri": f.file},
                                    "region": {"startLine": max(1, f.line)},
                                }
                            }
                        ],
                    }
                    for f in report.findings
                ],
            }
        ],
    }


def as_github(report: Report) -> str:
    """A workflow command per row (`_rows`: the same finding about many calls is one,
    saying how many times), then a notice when GitHub would not show them all."""
    commands = []
    for file, findings in _by_file(report.findings).items():
        for row in _rows(findings):
            first = row[0]
            message = f"{first.message} {first.hint}"
            if len(row) > 1:
                message += f" ({len(row):,} times, on lines {_lines(row)})"
            commands.append((first.severity, message, file, max(1, first.line), first.code))
    return github_annotations(commands)


GITHUB_SHOWN = 10
"""The annotations of one kind (error, warning, notice) GitHub shows for a step; the
step's log shows every one."""


def github_annotations(commands: Sequence[tuple[str, str, str | None, int | None, str]]) -> str:
    """GitHub Actions workflow commands, one a line: (kind, message, file, line, title)
    each, their values escaped as GitHub reads them; then, when a kind has more than
    GitHub shows, a notice saying so (else they are dropped without a word)."""
    lines = []
    for kind, message, file, line, title in commands:
        where = "" if file is None else f"file={_property(file)},"
        where += "" if line is None else f"line={line},"
        lines.append(f"::{kind} {where}title={_property(title)}::{_data(message)}")
    kinds = Counter(kind for kind, *_ in commands)
    for kind, count in sorted(kinds.items()):
        if count > GITHUB_SHOWN:
            unseen = count - GITHUB_SHOWN
            lines.append(
                f"::notice title=cio-anon::{unseen:,} {kind} annotation(s) more than the "
                f"{GITHUB_SHOWN} GitHub shows for a step: the step's log lists every one."
            )
    return "\n".join(lines) + ("\n" if lines else "")


def _data(text: str) -> str:
    """A workflow command's message, escaped as GitHub reads it."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _property(text: str) -> str:
    """A workflow command's property value (file, title): its `,` and `:` escaped too."""
    return _data(text).replace(":", "%3A").replace(",", "%2C")


def render(
    report: Report, fmt: str, fail_on: str = "error", per_code: int = 20
) -> str | RenderableType:
    if fmt == "text":
        return as_text(report, per_code)
    if fmt == "json":
        return jsonio.dumps(as_json(report))
    if fmt == "junit":
        return as_junit(report, fail_on)
    if fmt == "sarif":
        return jsonio.dumps(as_sarif(report))
    if fmt == "github":
        return as_github(report)
    return as_text(report)
