"""`check` findings rendered for CI: versioned JSON, JUnit XML, SARIF 2.1.0 and GitHub
workflow annotations (the text for people is `present.render.check_text`)."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any
from xml.etree import ElementTree

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


def by_file(findings: Sequence[Finding]) -> dict[str, list[Finding]]:
    files: dict[str, list[Finding]] = defaultdict(list)
    for finding in findings:
        files[finding.file].append(finding)
    return files


def rows(findings: Sequence[Finding]) -> list[list[Finding]]:
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


def line_span(row: Sequence[Finding]) -> str:
    """A row's lines: its one line, or its first and last."""
    first, last = row[0].line, row[-1].line
    return str(first) if first == last else f"{first}–{last}"


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
    """A workflow command per row (`rows`: the same finding about many calls is one,
    saying how many times), then a notice when GitHub would not show them all."""
    commands = []
    for file, findings in by_file(report.findings).items():
        for row in rows(findings):
            first = row[0]
            message = f"{first.message} {first.hint}"
            if len(row) > 1:
                message += f" ({len(row):,} times, on lines {line_span(row)})"
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


def render(report: Report, fmt: str, fail_on: str = "error") -> str:
    """The report in one of the formats for CI (every one in FORMATS but text)."""
    if fmt == "json":
        return jsonio.dumps(as_json(report))
    if fmt == "junit":
        return as_junit(report, fail_on)
    if fmt == "sarif":
        return jsonio.dumps(as_sarif(report))
    if fmt == "github":
        return as_github(report)
    raise ValueError(f"no {fmt} report for CI")
