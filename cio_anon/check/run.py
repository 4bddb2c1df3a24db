"""`cio-anon check`: replay fixtures into a throwaway workspace and report findings —
against a tracking plan, naming, drift, privacy, payload, and identity stitching (from
the rules engine itself)."""

from __future__ import annotations

import functools
import re
import tempfile
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from cio_anon import rules, service
from cio_anon.check.plans import CASES, VIEWED, EventRule, Plan, json_path
from cio_anon.ingest import Identify, Track
from cio_anon.ingest.fixtures import display_name, read_document
from cio_anon.replay import ReplaySummary, replay
from cio_anon.replay.apply import Heard, Listener, Source
from cio_anon.replay.files import Progress
from cio_anon.rules.findings import Finding, failing

EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
PHONE = re.compile(r"^\+?[\d\s().-]{10,}$")
DYNAMIC = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+|\b[0-9a-f]{8}-[0-9a-f]{4}-|\b\d{5,}\b")
CART = re.compile(r"cart|checkout", re.IGNORECASE)
ITEM_KEYS = ("items", "products", "line_items", "cart_items")
PRODUCT_KEYS = ("sku", "skus", "product", "product_id", "variant_id")
"""What names the product a cart event is about, when it is one product: Segment's
e-commerce spec (`sku`, `product_id`), Customer.io's own example (`addedToCart` with
`product`)."""


@dataclass
class Report:
    fixtures: list[str]
    plan: str | None
    findings: list[Finding] = field(default_factory=list)
    records: int = 0
    calls: int = 0
    """The tracks and identifies the records made, each checked (a recorded request
    carries an SDK's batch of them)."""
    known: list[Finding] = field(default_factory=list)
    """Findings a baseline accepts: told as a count, never failing (`accept_known`)."""
    baseline: str | None = None

    def count(self, severity: str) -> int:
        return sum(1 for f in self.findings if f.severity == severity)

    def by_code(self) -> Counter[str]:
        """How many findings of each code."""
        return Counter(f.code for f in self.findings)

    def fails(self, fail_on: str) -> bool:
        levels = failing(fail_on)
        return any(f.severity in levels for f in self.findings)


class _Checker:
    """The replay's listener: the findings of each call as it is heard, and what the
    checks across events gather (first spellings, property types); memory holds those,
    not the calls."""

    def __init__(self, plan: Plan | None) -> None:
        self.plan = plan
        self.calls = 0
        """The tracks and identifies heard."""
        self.events: list[Finding] = []
        self.identities: list[Finding] = []
        self.late: list[Finding] = []
        self.names: dict[str, dict[str, Source]] = defaultdict(dict)  # key -> spelling -> first
        self.props: dict[str, dict[str, Source]] = defaultdict(dict)
        self.types: dict[tuple[str, str], dict[str, Source]] = defaultdict(dict)

    def hear(self, source: Source, call: Track | Identify, heard: Heard) -> None:
        self.calls += 1
        if isinstance(call, Identify):
            found = _findings_of_identify(source, call, heard, self.plan)
            self.identities += _about(call.message_id, found)
            return
        if heard.stored:
            found = _findings_of_event(source, call, self.plan, self.names, self.props, self.types)
            self.events += _about(call.event_id, found)
        for warning in heard.warnings:
            if warning.rule is rules.Rule.WINDOW_CLOSED:
                self.late.append(_late(source, call))

    def findings(self) -> Iterator[Finding]:
        """Every finding heard: the events', the names' across events, the identities'."""
        yield from self.events
        yield from _near_duplicates(self.names, "event name")
        yield from _near_duplicates(self.props, "property")
        yield from self.identities
        yield from self.late


def _replay_heard(
    paths: list[Path],
    now: datetime,
    triggers: list[str],
    listener: Listener,
    progress: Progress | None = None,
) -> tuple[ReplaySummary, list[tuple[str, str, str | None]]]:
    """Replay into a throwaway workspace (in bulk where it can: what each call did is
    heard the same either way), telling `listener` of every track and identify with
    what it did; the summary, and the merged events named in `triggers` that cannot
    trigger campaigns."""
    with tempfile.TemporaryDirectory(prefix="cio-anon-check-") as folder:
        with service.opened(Path(folder) / "check.db", now, write=True) as workspace:
            summary = replay(
                workspace,
                now,
                paths,
                keep_going=True,
                listener=listener,
                progress=progress,
                retry_refused=True,  # what the server refused is judged again
            )
            stale = workspace.merged_without_trigger(triggers) if triggers else []
    return summary, stale


def check(
    paths: list[Path], plan: Plan | None, now: datetime, progress: Progress | None = None
) -> Report:
    """Replay the fixtures into a throwaway workspace; every finding, in file order.
    `progress` is told the bytes read, as replay tells it."""
    triggers = sorted({r.name for r in plan.events.values() if r.campaign_trigger}) if plan else []
    checker = _Checker(plan)
    summary, stale = _replay_heard(paths, now, triggers, checker.hear, progress)
    report = Report([display_name(p) for p in paths], None if plan is None else plan.source)
    report.records = summary.tally.records
    report.calls = checker.calls
    found = report.findings
    for problem in summary.left_out:
        code = (
            "limit_exceeded"
            if problem.rule == str(rules.Rule.LIMIT_EXCEEDED)
            else ("invalid_record")
        )
        found.append(Finding(code, problem.file, problem.line, problem.message))
    for problem in summary.tally.failed_expectations:
        found.append(Finding("expectation_failed", problem.file, problem.line, problem.message))
    found += checker.findings()
    for event_id, name, source in stale:
        where = Source.parse(source or "?")
        found.append(
            Finding(
                "stale_trigger",
                where.file,
                where.line,
                f"{name!r} ({event_id}) is a campaign trigger but merged more than 72 hours after "
                "it happened: it counts for segments only.",
                name,
            )
        )
    given = {name: index for index, name in enumerate(report.fixtures)}  # replay order
    found.sort(key=lambda f: (given.get(f.file, len(given)), f.file, f.line, f.code))
    return report


@functools.lru_cache(maxsize=65536)
def _about_cart(name: str) -> bool:
    """Whether an event is about a cart's contents: its name says cart or checkout, and
    it is not one step of a checkout (Segment's `Checkout Step Viewed` and `Checkout Step
    Completed` carry the step, the shipping and the payment method, and no products)."""
    return CART.search(name) is not None and "checkout step" not in _key(name)


def _names_contents(data: dict[str, Any]) -> bool:
    """Whether a cart event says what is in the cart: a list of its items, or the one
    product it is about (a total or a count alone does not: a recovery message could not
    name what was left)."""
    if any(isinstance(data.get(key), list) and data.get(key) for key in ITEM_KEYS):
        return True
    return any(data.get(key) not in (None, "", [], {}) for key in PRODUCT_KEYS)


# -- the baseline: findings a team has accepted ---------------------------------------

BASELINE_FORMAT = "cio-anon check baseline"


def _finding_key(finding: Finding) -> tuple[str, str, str]:
    """What identifies a finding across runs: its code, file and sentence (not its line:
    lines move as a fixture grows)."""
    return (finding.code, finding.file, finding.message)


def baseline_json(report: Report) -> dict[str, Any]:
    """The report's findings as a baseline: each accepted once per time it was found."""
    return {
        "format": BASELINE_FORMAT,
        "version": 1,
        "findings": [
            {"code": code, "file": file, "message": message}
            for code, file, message in sorted(_finding_key(f) for f in report.findings)
        ],
    }


def accept_known(report: Report, baseline: Path) -> None:
    """Move the findings the baseline holds to `report.known`: each entry accepts one
    finding with its code, file and sentence; what is left is new."""
    doc = read_document(baseline, BASELINE_FORMAT, 1, "cio-anon check --write-baseline")
    accepted = Counter(
        (str(e.get("code")), str(e.get("file")), str(e.get("message")))
        for e in doc.get("findings", [])
        if isinstance(e, dict)
    )
    new: list[Finding] = []
    for finding in report.findings:
        key = _finding_key(finding)
        if accepted[key] > 0:
            accepted[key] -= 1
            report.known.append(finding)
        else:
            new.append(finding)
    report.findings = new
    report.baseline = str(baseline)


# -- events -------------------------------------------------------------------------


def _findings_of_event(
    source: Source,
    op: Track,
    plan: Plan | None,
    names: dict[str, dict[str, Source]],
    props: dict[str, dict[str, Source]],
    types: dict[tuple[str, str], dict[str, Source]],
) -> Iterator[Finding]:
    """What one stored event breaks; `names`, `props` and `types` gather what the events
    before it sent (first seen where), for the findings across events."""
    call = "track" if op.type == "event" else op.type
    at = (source.file, source.line)
    written = op.page_name if call == "page" else op.name  # (a URL is not a name one chose)
    if written is not None:
        names[_key(written)].setdefault(written, source)
        if _dynamic(written):
            yield Finding(
                "dynamic_name",
                *at,
                f"The event name {written!r} contains an email, an id or a long number.",
                written,
            )
    data = dict(op.data)
    for prop, value in data.items():
        props[_key(prop)].setdefault(prop, source)
        kind = _json_type(value)
        seen_types = types[(op.name, prop)]
        if seen_types and kind not in seen_types:
            first = ", ".join(sorted(seen_types))
            yield Finding(
                "type_drift",
                *at,
                f"{op.name!r}.{prop} is {kind} here, {first} before.",
                op.name,
                json_path([prop]),
            )
        seen_types.setdefault(kind, source)
    rule = None if plan is None else plan.rule_for(call, op.name, op.page_name)
    name = op.name if rule is None else rule.name  # (the name of the rule it is held to)
    yield from _pii(at, name, data, plan, rule)
    if call == "track" and _about_cart(op.name) and not _names_contents(data):
        yield Finding(
            "empty_cart",
            *at,
            # the sentence as before: a team's baseline accepts findings by their sentence
            f"{op.name!r} carries no cart contents ({'/'.join(ITEM_KEYS)}).",
            op.name,
        )
    if plan is None:
        return
    if plan.require_schema_version and "schema_version" not in data:
        yield Finding(
            "missing_schema_version",
            *at,
            f"{op.name!r} has no schema_version property.",
            op.name,
        )
    if plan.event_case and call == "track" and not _cased(plan.event_case, op.name):
        yield Finding(
            "naming_case", *at, f"The event name {op.name!r} is not {plan.event_case}.", op.name
        )
    if plan.property_case:
        for prop in data:
            if prop != "schema_version" and not _cased(plan.property_case, prop):
                yield Finding(
                    "naming_case",
                    *at,
                    f"The property {prop!r} of {op.name!r} is not {plan.property_case}.",
                    op.name,
                    json_path([prop]),
                )
    if rule is None:
        if call == "track" or plan.plans_call(call):
            named = repr(op.name)
            if op.page_name not in (None, op.name):  # a page: its own name, then its URL
                named = f"{op.page_name!r} ({op.name})"
            yield Finding("unplanned_event", *at, f"{call} {named} is not in the plan.", op.name)
        return
    yield from _schema(at, name, data, rule.schema)
    if plan.common:
        yield from _schema(at, name, data, plan.common)


def _about(message_id: str | None, found: Iterable[Finding]) -> Iterator[Finding]:
    """The findings, each naming the message they are about (a recorded request holds
    many on one line)."""
    for finding in found:
        yield finding if message_id is None else replace(finding, message_id=message_id)


def _schema(
    at: tuple[str, int], name: str, data: dict[str, Any], schema: dict[str, Any]
) -> Iterator[Finding]:
    validator = _validator(schema)
    for error in sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.absolute_path))):
        parts = list(error.absolute_path)
        keyword = error.validator
        if keyword == "required":
            missing = re.findall(r"'([^']+)' is a required property", error.message)
            code, parts = "required_missing", parts + missing[:1]
        elif keyword == "type":
            code = "type_mismatch"
        elif keyword == "additionalProperties":
            code = "additional_property"
            parts += re.findall(r"'([^']+)'", error.message)[:1]
        else:
            code = "value_mismatch"
        path = json_path(parts)
        yield Finding(code, *at, f"{name!r} at {path}: {error.message}", name, path)


@functools.lru_cache(maxsize=65536)
def _dynamic(name: str) -> bool:
    return DYNAMIC.search(name) is not None


@functools.lru_cache(maxsize=65536)
def _cased(case: str, name: str) -> bool:
    return CASES[case].match(name) is not None


_VALIDATORS: dict[int, Any] = {}


def _validator(schema: dict[str, Any]) -> Any:
    """One compiled validator per plan schema (building one costs more than using it)."""
    from jsonschema import validators

    key = id(schema)
    if key not in _VALIDATORS:
        _VALIDATORS[key] = (schema, validators.validator_for(schema)(schema))
    return _VALIDATORS[key][1]


def _pii(
    at: tuple[str, int],
    name: str,
    data: dict[str, Any],
    plan: Plan | None,
    rule: EventRule | None,
) -> Iterator[Finding]:
    for parts, value in _leaves(data, ()):
        top = str(parts[0]) if parts else ""
        path = json_path(parts)
        if top == "recipient" or (plan is not None and plan.is_pii(rule, top)):
            continue
        if isinstance(value, str) and (EMAIL.search(value) or PHONE.match(value)):
            yield Finding(
                "pii_suspected",
                *at,
                f"{name!r} at {path} looks like an email or a phone number.",
                name,
                path,
            )


def _leaves(value: Any, path: tuple[Any, ...]) -> Iterator[tuple[tuple[Any, ...], Any]]:
    if isinstance(value, dict):
        for key, inner in value.items():
            yield from _leaves(inner, (*path, key))
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            yield from _leaves(inner, (*path, index))
    else:
        yield path, value


def _near_duplicates(spellings: dict[str, dict[str, Source]], what: str) -> Iterator[Finding]:
    for variants in spellings.values():
        if len(variants) < 2:
            continue
        ordered = sorted(variants.items(), key=lambda kv: (kv[1].file, kv[1].line))
        first = ordered[0][0]
        for spelling, source in ordered[1:]:
            yield Finding(
                "near_duplicate_name",
                source.file,
                source.line,
                f"The {what} {spelling!r} is a near duplicate of {first!r}.",
                spelling,
            )


@functools.lru_cache(maxsize=65536)
def _key(name: str) -> str:
    """Spellings of one name fold to one key: `add_to_cart`, `Added to Cart`,
    `added-to-cart` all become `add to cart`."""
    words = re.findall(r"[a-z0-9]+", re.sub(r"([a-z])([A-Z])", r"\1 \2", name).lower())
    return " ".join(w[:-2] if w.endswith("ed") and len(w) > 4 else w for w in words)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


# -- identity -----------------------------------------------------------------------


def _late(source: Source, track: Track) -> Finding:
    """An anonymous event that arrived after its id's window closed."""
    return Finding(
        "late_anonymous_event",
        source.file,
        source.line,
        f"{track.name!r} with anonymous_id {track.anonymous_id!r} arrived "
        "after the 5-minute window: it stays anonymous.",
        track.name,
        message_id=track.event_id,
    )


def _findings_of_identify(
    source: Source, op: Identify, heard: Heard, plan: Plan | None
) -> Iterator[Finding]:
    at = (source.file, source.line)
    ident = op.identifier.strip()
    if rules.is_placeholder(ident):
        yield Finding(
            "placeholder_id",
            *at,
            f"identify with the placeholder id {ident!r} "
            "creates a profile that real people will split from.",
        )
    if plan is not None and plan.canonical_id == "id" and "@" in ident:
        yield Finding(
            "email_as_id",
            *at,
            f"identify by email ({ident}) where the plan's canonical identifier is id.",
        )
    for warning in heard.warnings:
        code = {
            rules.Rule.ANONYMOUS_ID_TAKEN: "anonymous_id_reused",
            rules.Rule.RETENTION_EXPIRED: "expired_before_identify",
        }.get(warning.rule)
        if code:
            yield Finding(code, *at, warning.message)
    for failure in heard.failed:
        if failure.get("attribute") in ("email", "id") and failure.get("held_by"):
            yield Finding(
                "split_profile",
                *at,
                f"{failure['attribute']} "
                f"{failure['to']!r} already belongs to another person: one "
                "person, two profiles.",
            )


def infer_plan(paths: Iterable[Path], now: datetime) -> dict[str, Any]:
    """A starting native plan from what the fixtures send: events (a page by its own name
    when it has one, else as `Page Viewed`: one rule, not one a URL), property types,
    which properties always appear."""
    events: dict[str, dict[str, Any]] = {}
    counts: dict[str, int] = defaultdict(int)
    present: dict[tuple[str, str], int] = defaultdict(int)
    kinds: dict[tuple[str, str], set[str]] = defaultdict(set)
    traits: dict[str, Any] = {}

    def hear(source: Source, call: Track | Identify, heard: Heard) -> None:
        if isinstance(call, Identify):
            for trait, value in call.attributes.items():
                traits.setdefault(trait, {"type": _json_type(value)})
            return
        kind = "track" if call.type == "event" else call.type
        name = call.page_name or (VIEWED[kind] if kind == "page" else call.name)
        counts[name] += 1
        events.setdefault(name, {"call": kind})
        for prop, value in call.data.items():
            present[(name, prop)] += 1
            kinds[(name, prop)].add(_json_type(value))

    _replay_heard(list(paths), now, [], hear)
    out_events: dict[str, Any] = {}
    for name, spec in sorted(events.items()):
        props: dict[str, Any] = {}
        for (event, prop), number in sorted(present.items()):
            if event != name:
                continue
            found = sorted(kinds[(event, prop)] - {"null"}) or ["null"]
            props[prop] = {
                "type": found[0] if len(found) == 1 else found,
                "required": number == counts[name],
            }
        entry: dict[str, Any] = {"properties": props}
        if spec["call"] != "track":
            entry["call"] = spec["call"]
        out_events[name] = entry
    return {
        "dialect": "cio-anon",
        "canonical_identifier": "id",
        "identify_traits": traits,
        "events": out_events,
    }
