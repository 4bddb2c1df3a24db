"""`cio-anon check` and `cio-anon plan infer`."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest
import yaml

from cio_anon.rules.findings import CODES

DATA = Path(__file__).parent / "data" / "check"
ROOT = Path(__file__).resolve().parent.parent
MESSY, CLEAN = str(DATA / "messy.ndjson"), str(DATA / "clean.ndjson")
PLAN = str(DATA / "plan.yaml")
Cli = Callable[..., Any]


def findings(cli: Cli, *args: str, code: int = 1) -> list[dict[str, Any]]:
    result = cli("check", *args, "--format", "json", code=code)
    document = json.loads(result.stdout)
    assert document["version"] == 1
    return list(document["findings"])


def test_every_finding_code_is_produced(cli: Cli) -> None:
    found = findings(cli, MESSY, "--plan", PLAN)
    assert {f["code"] for f in found} == set(CODES)
    by_code: dict[str, dict[str, Any]] = {}
    for finding in found:
        by_code.setdefault(finding["code"], finding)  # the first of each
    assert by_code["required_missing"]["path"] == "$.sku"
    assert by_code["additional_property"]["path"] == "$.color"
    assert by_code["type_mismatch"]["line"] == 3
    assert by_code["invalid_record"]["line"] == 21
    assert all(f["hint"] and f["severity"] in ("error", "warning") for f in found)


def test_a_clean_fixture_and_plan_find_nothing(cli: Cli) -> None:
    result = cli("check", CLEAN, "--plan", PLAN, "--format", "json")
    assert json.loads(result.stdout)["findings"] == []
    assert "0 error(s), 0 warning(s)" in cli("check", CLEAN, "--plan", PLAN).stdout


def test_segment_protocols_plan(cli: Cli) -> None:
    found = findings(cli, MESSY, "--plan", str(DATA / "segment-plan.json"))
    codes = {f["code"] for f in found}
    assert {
        "unplanned_event",
        "required_missing",
        "type_mismatch",
        "additional_property",
        "value_mismatch",
    } <= codes
    assert findings(cli, CLEAN, "--plan", str(DATA / "segment-plan.json"), code=0) == []


def test_legacy_segment_plan(cli: Cli, tmp_path: Path) -> None:
    legacy = tmp_path / "legacy.json"
    legacy.write_text(
        json.dumps(
            {
                "rules": {
                    "events": [
                        {
                            "name": "Product Viewed",
                            "rules": {
                                "type": "object",
                                "properties": {
                                    "properties": {"type": "object", "required": ["sku"]}
                                },
                            },
                        },
                    ]
                }
            }
        )
    )
    found = findings(cli, MESSY, "--plan", str(legacy))
    assert any(f["code"] == "required_missing" and f["line"] == 2 for f in found)


def test_fail_on_warning(cli: Cli, tmp_path: Path) -> None:
    warn_only = tmp_path / "late.ndjson"
    warn_only.write_text(
        "\n".join(
            json.dumps(r)
            for r in [
                {
                    "type": "track",
                    "anonymousId": "a",
                    "event": "Viewed",
                    "messageId": "1",
                    "timestamp": 1772000000,
                },
                {"type": "identify", "userId": "u", "anonymousId": "a", "timestamp": 1772000010},
                {
                    "type": "track",
                    "anonymousId": "a",
                    "event": "Viewed",
                    "messageId": "2",
                    "timestamp": 1772009999,
                },
            ]
        )
    )
    cli("check", str(warn_only))
    cli("check", str(warn_only), "--fail-on", "warning", code=1)


def test_junit_sarif_github_outputs(cli: Cli, tmp_path: Path) -> None:
    junit = tmp_path / "report.xml"
    # every code is found; at --fail-on warning every one of them fails
    cli(
        "check",
        MESSY,
        "--plan",
        PLAN,
        "--format",
        "junit",
        "--output",
        str(junit),
        "--fail-on",
        "warning",
        code=1,
    )
    root = ElementTree.parse(junit).getroot()
    assert root.tag == "testsuites"
    (suite,) = root.findall("testsuite")
    cases = suite.findall("testcase")
    assert {c.get("name") for c in cases} == set(CODES)
    assert all(c.find("failure") is not None for c in cases)
    assert suite.get("tests") == str(len(CODES)) and suite.get("failures") == str(len(CODES))

    sarif = json.loads(cli("check", MESSY, "--plan", PLAN, "--format", "sarif", code=1).stdout)
    assert sarif["version"] == "2.1.0"
    (run,) = sarif["runs"]
    rule_ids = [r["id"] for r in run["tool"]["driver"]["rules"]]
    assert run["tool"]["driver"]["name"] == "cio-anon" and set(rule_ids) == set(CODES)
    for result in run["results"]:
        assert result["ruleId"] == rule_ids[result["ruleIndex"]]
        assert result["level"] in ("error", "warning") and result["message"]["text"]
        location = result["locations"][0]["physicalLocation"]
        assert location["artifactLocation"]["uri"] == MESSY
        assert location["region"]["startLine"] >= 1

    lines = cli("check", MESSY, "--plan", PLAN, "--format", "github", code=1).stdout.splitlines()
    annotations = [line for line in lines if not line.startswith("::notice")]
    assert all(line.startswith(("::error file=", "::warning file=")) for line in annotations)
    assert f"::error file={MESSY},line=3,title=type_mismatch::" in "\n".join(lines)
    # GitHub shows 10 of a kind for a step: past that, a notice says how many it leaves out
    rows = Counter(
        f["severity"]
        for f in {
            (f["severity"], f["code"], f["message"]): f
            for f in findings(cli, MESSY, "--plan", PLAN)
        }.values()
    )
    assert rows["error"] > 10 and rows["warning"] > 10
    assert lines[len(annotations) :] == [
        f"::notice title=cio-anon::{rows[kind] - 10} {kind} annotation(s) more than the 10 "
        "GitHub shows for a step: the step's log lists every one."
        for kind in ("error", "warning")
    ]


def test_junit_follows_fail_on_and_skips_what_did_not_run(cli: Cli, tmp_path: Path) -> None:
    """Warnings only: exit 0 at --fail-on error, and so no failing case; at --fail-on
    warning, exit 1 and the case fails. Without --plan, the plan's checks are skipped."""
    late = tmp_path / "late.ndjson"
    late.write_text(
        "".join(
            json.dumps(r) + "\n"
            for r in (
                {"type": "identify", "userId": "u1", "anonymousId": "a1", "receivedAt": 1772000000},
                {"type": "track", "anonymousId": "a1", "event": "Late", "receivedAt": 1772000900},
            )
        )
    )

    def junit(*args: str, code: int) -> ElementTree.Element:
        out = cli("check", str(late), "--format", "junit", *args, code=code).stdout
        (suite,) = ElementTree.fromstring(out.split("?>", 1)[1])
        return suite

    quiet = junit(code=0)
    assert quiet.get("failures") == "0"
    case = next(c for c in quiet if c.get("name") == "late_anonymous_event")
    assert case.find("failure") is None and "below --fail-on error" in (
        case.findtext("system-out") or ""
    )
    skipped = {c.get("name") for c in quiet if c.find("skipped") is not None}
    assert skipped == {
        "unplanned_event",
        "required_missing",
        "type_mismatch",
        "additional_property",
        "value_mismatch",
        "naming_case",
        "missing_schema_version",
        "email_as_id",
        "stale_trigger",
    }
    assert quiet.get("skipped") == str(len(skipped))
    strict = junit("--fail-on", "warning", code=1)
    assert [c.get("name") for c in strict if c.find("failure") is not None] == [
        "late_anonymous_event"
    ]
    assert strict.get("failures") == "1"
    planned = junit("--plan", PLAN, code=1)  # the plan's checks run, and find the event
    assert planned.get("skipped") == "0"


@pytest.mark.parametrize(
    ("content", "suffix", "message"),
    [
        ("events: [unclosed", ".yaml", "not valid YAML"),
        (
            "events:\n  X:\n    properties:\n      p: {type: nonsense}\n",
            ".yaml",
            "the schema of X does not compile at $.properties.p.type",
        ),
        ("evnts:\n  X: {}\n", ".yaml", "unknown key(s) 'evnts'"),
        (
            "events:\n  X: {proprties: {a: string}}\n",
            ".yaml",
            "event 'X' has unknown key(s) 'proprties'",
        ),
        ('{"something": "else"}', ".json", "neither a cio-anon YAML plan"),
        ('{"rules": [{"type": "NOPE"}]}', ".json", "rule 0 has type 'NOPE'"),
        ("dialect: other\n", ".yaml", "not a cio-anon plan"),
        # nested deeper than a reader descends: a sentence, never the interpreter's stack
        ("events: " + "[" * 50_000 + "]" * 50_000, ".yaml", "nests its values too deeply"),
        ("a = " + "[" * 50_000 + "]" * 50_000, ".tf", "nests its values too deeply"),
    ],
)
def test_a_broken_plan_exits_2(
    cli: Cli, tmp_path: Path, content: str, suffix: str, message: str
) -> None:
    plan = tmp_path / f"plan{suffix}"
    plan.write_text(content)
    result = cli("check", CLEAN, "--plan", str(plan), code=2)
    assert message in result.stderr and result.stdout == ""
    assert "<unicode string>" not in result.stderr
    if message == "not valid YAML":  # the parser's own place names the file
        assert f'in "{plan}", line 1' in result.stderr


def test_a_plan_from_a_pipe_is_read_by_its_content(tmp_path: Path) -> None:
    """A plan given through a pipe (`<(...)`, `-`) or under another name has no suffix
    to tell its dialect: a text opening with `{` is JSON, any other YAML."""
    messy, clean, plan = map(shlex.quote, (MESSY, CLEAN, PLAN))
    segment = shlex.quote(str(DATA / "segment-plan.json"))

    def check(command: str, code: int) -> list[dict[str, Any]]:
        shell = f"{shlex.quote(sys.executable)} -m cio_anon check {command} --format json"
        done = subprocess.run(
            ["bash", "-c", shell], capture_output=True, text=True, cwd=tmp_path, check=False
        )
        assert done.returncode == code, done.stderr
        return list(json.loads(done.stdout)["findings"])

    by_file = check(f"{messy} --plan {plan}", 1)
    assert check(f"{messy} --plan <(cat {plan})", 1) == by_file
    assert check(f"{messy} --plan - < {plan}", 1) == by_file
    segment_found = check(f"{messy} --plan {segment}", 1)
    assert segment_found != by_file
    shutil.copy(DATA / "segment-plan.json", tmp_path / "plan.txt")
    assert check(f"{messy} --plan plan.txt", 1) == segment_found
    assert check(f"{messy} --plan - < {segment}", 1) == segment_found
    assert check(f"{clean} --plan <(cat {plan})", 0) == []
    # a plan on stdin that is not text is named as the other messages name stdin
    shell = f"printf '\\377' | {shlex.quote(sys.executable)} -m cio_anon check {clean} --plan -"
    done = subprocess.run(["bash", "-c", shell], capture_output=True, text=True, check=False)
    assert done.returncode == 2 and "The plan <stdin> cannot be read" in done.stderr


def test_a_plan_and_fixtures_cannot_both_be_standard_input(cli: Cli) -> None:
    result = cli("check", "-", "--plan", "-", code=2)
    assert "fixtures are read from standard input" in result.stderr


def test_plan_infer_writes_a_plan_the_traffic_passes(cli: Cli, tmp_path: Path) -> None:
    inferred = tmp_path / "inferred.yaml"
    cli("plan", "infer", CLEAN, "--output", str(inferred))
    text = inferred.read_text()
    assert "Product Viewed" in text and "sku" in text
    assert findings(cli, CLEAN, "--plan", str(inferred), code=0) == []


def test_the_example_plan_describes_the_shopper(cli: Cli) -> None:
    root = Path(__file__).resolve().parent.parent / "fixtures"
    found = findings(
        cli, str(root / "shopper.ndjson"), "--plan", str(root / "plan.example.yaml"), code=0
    )
    assert [f["code"] for f in found] == ["late_anonymous_event"]


# -- real plans in their own dialects -------------------------------------------------

PLANS = DATA.parent / "plans"


def test_a_segment_plan_with_any_types_loads_and_checks(cli: Cli, tmp_path: Path) -> None:
    """Segment Protocols exports write `"type": ["any"]` and `"type": "any"`."""
    plan = str(PLANS / "segment-any.json")
    assert findings(cli, CLEAN, "--plan", plan, code=0) == []
    odd = tmp_path / "odd.ndjson"
    odd.write_text(
        json.dumps(
            {
                "type": "track",
                "event": "Product Viewed",
                "properties": {"sku": 7, "experiment": {"arm": "b"}, "tags": [1, "x", None]},
                "messageId": "o1",
                "anonymousId": "a",
                "timestamp": 1772000001,
            }
        )
        + "\n"
    )
    found = findings(cli, str(odd), "--plan", plan)
    mismatches = [f for f in found if f["code"] == "type_mismatch"]
    assert [f["path"] for f in mismatches] == ["$.sku"]  # `any` accepted anything else


def test_a_segment_schema_is_judged_by_the_draft_it_declares(cli: Cli, tmp_path: Path) -> None:
    """Segment's jsonSchema describes the whole message and declares draft-07 at its root;
    the properties schema taken out of it keeps the draft and the root's definitions."""
    whole_message = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "definitions": {"money": {"type": "number"}},
        "type": "object",
        "properties": {
            "context": {},
            "properties": {
                "type": "object",
                "properties": {
                    "total": {"$ref": "#/definitions/money"},
                    "coupon": {"type": "string"},
                    "discount": {"type": "number"},
                    "pair": {"type": "array", "items": [{"type": "string"}, {"type": "integer"}]},
                },
                "dependencies": {"coupon": ["discount"]},
            },
        },
    }
    plan = tmp_path / "plan.json"
    plan.write_text(
        json.dumps(
            {"rules": [{"key": "Order Completed", "type": "TRACK", "jsonSchema": whole_message}]}
        )
    )
    sent = tmp_path / "sent.ndjson"
    sent.write_text(
        json.dumps(
            {
                "type": "track",
                "userId": "u",
                "event": "Order Completed",
                "properties": {"total": "12", "coupon": "SPRING", "pair": ["a", "b"]},
                "messageId": "d1",
                "timestamp": 1772000001,
            }
        )
        + "\n"
    )
    found = {(f["code"], f["path"]) for f in findings(cli, str(sent), "--plan", str(plan))}
    assert found == {
        ("type_mismatch", "$.total"),  # by the root's definition
        ("value_mismatch", "$"),  # draft-07's `dependencies`: a coupon needs its discount
        ("type_mismatch", "$.pair[1]"),  # draft-07's `items` as a list: one schema a place
    }


def test_every_problem_of_a_plan_is_listed_at_once(cli: Cli) -> None:
    result = cli("check", CLEAN, "--plan", str(PLANS / "segment-broken.json"), code=2)
    assert "has 3 problems" in result.stderr
    assert "event 'Product Viewed' does not compile at $.properties.sku.type" in result.stderr
    assert "event 'Order Completed' does not compile at $.properties.total.minimum" in result.stderr
    assert "rule 3 has type 'ALIAS'" in result.stderr


def test_a_rudderstack_catalog_folder_is_a_plan(cli: Cli) -> None:
    """events, properties, custom types and a tracking plan in four files, by $ref."""
    folder = str(PLANS / "rudder")
    assert findings(cli, CLEAN, "--plan", folder, code=0) == []
    codes = {f["code"] for f in findings(cli, MESSY, "--plan", folder)}
    assert {"required_missing", "type_mismatch", "additional_property"} <= codes


def test_a_rudderstack_catalog_in_one_file(cli: Cli, tmp_path: Path) -> None:
    single = tmp_path / "catalog.yaml"
    single.write_text(
        "\n---\n".join(p.read_text() for p in sorted((PLANS / "rudder").glob("*.yaml")))
    )
    assert findings(cli, CLEAN, "--plan", str(single), code=0) == []
    broken = tmp_path / "broken.yaml"
    broken.write_text(single.read_text().replace("shop/total", "shop/totl"))
    result = cli("check", CLEAN, "--plan", str(broken), code=2)
    assert "uses the property '#/properties/shop/totl', which no file defines" in result.stderr


def test_a_rudderstack_file_is_never_read_as_an_empty_plan(cli: Cli, tmp_path: Path) -> None:
    only_events = tmp_path / "events.yaml"
    only_events.write_text((PLANS / "rudder" / "events.yaml").read_text())
    result = cli("check", CLEAN, "--plan", str(only_events), code=2)
    assert "no tracking plan (`kind: tp`)" in result.stderr


@pytest.mark.parametrize("dialect", ["native", "segment", "rudderstack"])
def test_plan_infer_writes_each_dialect(cli: Cli, tmp_path: Path, dialect: str) -> None:
    suffix = {"native": ".yaml", "segment": ".json", "rudderstack": ".yaml"}[dialect]
    inferred = tmp_path / f"inferred{suffix}"
    cli("plan", "infer", CLEAN, "--dialect", dialect, "--output", str(inferred))
    text = inferred.read_text()
    marker = {"native": "dialect: cio-anon", "segment": '"rules"', "rudderstack": "kind: tp"}
    assert marker[dialect] in text
    assert findings(cli, CLEAN, "--plan", str(inferred), code=0) == []
    codes = {f["code"] for f in findings(cli, MESSY, "--plan", str(inferred))}
    assert "required_missing" in codes or "type_mismatch" in codes


@pytest.mark.parametrize("dialect", ["native", "segment", "rudderstack"])
def test_an_inferred_plan_keeps_names_that_differ_only_in_spelling(
    cli: Cli, tmp_path: Path, dialect: str
) -> None:
    """Two events and two properties whose names make the same slug (a catalog's ids):
    the plan inferred from traffic plans all four, so that traffic meets it."""
    traffic = tmp_path / "spellings.ndjson"
    sent = [
        ("Blog Viewed", {"page type": "post"}),
        ("Blog viewed", {"page_type": 3}),
    ]
    traffic.write_text(
        "".join(
            json.dumps(
                {
                    "type": "track",
                    "anonymousId": "a",
                    "event": name,
                    "properties": properties,
                    "messageId": f"s{index}",
                    "timestamp": 1772000001 + index,
                }
            )
            + "\n"
            for index, (name, properties) in enumerate(sent)
        )
    )
    inferred = tmp_path / ("plan.json" if dialect == "segment" else "plan.yaml")
    cli("plan", "infer", str(traffic), "--dialect", dialect, "--output", str(inferred))
    codes = {f["code"] for f in findings(cli, str(traffic), "--plan", str(inferred), code=0)}
    assert codes == {"near_duplicate_name"}  # a warning of the spelling, nothing unplanned
    changed = tmp_path / "changed.ndjson"
    changed.write_text(traffic.read_text().replace('"page_type": 3', '"page_type": "x"'))
    mismatched = [f for f in findings(cli, str(changed), "--plan", str(inferred)) if f["path"]]
    assert [(f["code"], f["path"]) for f in mismatched] == [("type_mismatch", "$.page_type")]


def _pages(path: Path, *pages: tuple[str | None, dict[str, Any]]) -> str:
    """Page calls as a browser SDK sends them: a name when the code gave one, and the
    URL among the properties."""
    path.write_text(
        "".join(
            json.dumps(
                {
                    "type": "page",
                    "anonymousId": "a",
                    **({"name": name} if name else {}),
                    "properties": properties,
                    "messageId": f"p{index}",
                    "timestamp": 1772000001 + index,
                }
            )
            + "\n"
            for index, (name, properties) in enumerate(pages)
        )
    )
    return str(path)


def test_a_plan_knows_a_page_by_its_name_or_its_url(cli: Cli, tmp_path: Path) -> None:
    """Customer.io names a page event by its URL; Segment's and RudderStack's plans list
    a page by the name the code gave it. Either finds the page's rule."""
    home = {"url": "https://shop.example.com/", "path": "/"}
    pricing = {"url": "https://shop.example.com/pricing"}
    sent = _pages(tmp_path / "pages.ndjson", ("Home", home), ("Pricing", pricing), (None, pricing))
    page_rule = {"properties": {"properties": {"type": "object", "required": ["path"]}}}
    by_name = tmp_path / "segment.json"
    by_name.write_text(
        json.dumps({"rules": [{"key": "Home", "type": "PAGE", "jsonSchema": page_rule}]})
    )
    found = [
        (f["line"], f["code"], f["message"]) for f in findings(cli, sent, "--plan", str(by_name))
    ]
    assert found == [
        (
            2,
            "unplanned_event",
            "page 'Pricing' (https://shop.example.com/pricing) is not in the plan.",
        ),
        (3, "unplanned_event", "page 'https://shop.example.com/pricing' is not in the plan."),
    ]  # the first page met its rule: it sent its path
    pathless = _pages(tmp_path / "pathless.ndjson", ("Home", {"url": "https://shop.example.com/"}))
    (missing,) = findings(cli, pathless, "--plan", str(by_name))
    assert (missing["code"], missing["path"]) == ("required_missing", "$.path")
    by_url = tmp_path / "native.yaml"
    by_url.write_text(
        "events:\n"
        "  https://shop.example.com/pricing: {call: page, additional_properties: true}\n"
        "  Home: {call: page, additional_properties: true}\n"
    )
    assert findings(cli, sent, "--plan", str(by_url), code=0) == []
    inferred = tmp_path / "inferred.json"
    cli("plan", "infer", sent, "--dialect", "segment", "--output", str(inferred))
    keys = [rule["key"] for rule in json.loads(inferred.read_text())["rules"]]
    assert sorted(keys) == ["Home", "Page Viewed", "Pricing"]  # one rule, not one a URL
    assert findings(cli, sent, "--plan", str(inferred), code=0) == []


def test_a_page_no_rule_names_is_held_to_page_viewed(cli: Cli, tmp_path: Path) -> None:
    """Segment's Protocols validates page and screen calls as `Page Viewed` and `Screen
    Viewed` events, and recommends a plan list those: a page or screen no rule of its
    own names is held to them."""
    sent = _pages(
        tmp_path / "pages.ndjson",
        ("Home", {"url": "https://shop.example.com/"}),
        (None, {"url": "https://shop.example.com/about"}),
        ("Pricing", {"url": "https://shop.example.com/pricing", "title": "Pricing"}),
    )
    with open(sent, "a") as more:
        more.write(
            json.dumps({"type": "screen", "anonymousId": "a", "name": "Settings", "timestamp": 1})
            + "\n"
        )

    def rule(key: str, kind: str, required: list[str]) -> dict[str, Any]:
        properties = {"type": "object", "required": required}
        return {"key": key, "type": kind, "jsonSchema": {"properties": {"properties": properties}}}

    plan = tmp_path / "plan.json"
    plan.write_text(
        json.dumps(
            {
                "rules": [
                    rule("Home", "PAGE", []),
                    rule("Page Viewed", "PAGE", ["title"]),
                    rule("Screen Viewed", "TRACK", ["version"]),
                ]
            }
        )
    )
    found = [(f["line"], f["code"], f["message"]) for f in findings(cli, sent, "--plan", str(plan))]
    assert found == [
        (2, "required_missing", "'Page Viewed' at $.title: 'title' is a required property"),
        (4, "required_missing", "'Screen Viewed' at $.version: 'version' is a required property"),
    ]  # Home has a rule of its own; Pricing sent its title


def test_plan_infer_lists_unnamed_pages_as_one_page_viewed(cli: Cli, tmp_path: Path) -> None:
    """A site's pages without a name, one URL each (ids in them): one rule, not one a URL."""
    sent = _pages(
        tmp_path / "pages.ndjson",
        *((None, {"url": f"https://shop.example.com/products/{n}", "path": "/"}) for n in range(5)),
    )
    inferred = tmp_path / "plan.yaml"
    cli("plan", "infer", sent, "--output", str(inferred))
    plan = yaml.safe_load(inferred.read_text())
    assert list(plan["events"]) == ["Page Viewed"]
    assert plan["events"]["Page Viewed"]["call"] == "page"
    assert findings(cli, sent, "--plan", str(inferred), code=0) == []


def test_a_page_is_judged_by_the_name_it_was_given_not_its_url(cli: Cli, tmp_path: Path) -> None:
    """A URL holds ids and paths like /cart; a page view is not a cart event."""
    sent = _pages(
        tmp_path / "views.ndjson",
        ("Product", {"url": "https://shop.example.com/products/1234567"}),
        ("Cart", {"url": "https://shop.example.com/cart"}),
        (None, {"url": "https://shop.example.com/orders/7654321"}),
        ("Order 7654321", {"url": "https://shop.example.com/orders/7654321"}),
    )
    found = [(f["line"], f["code"]) for f in findings(cli, sent)]
    assert found == [(4, "dynamic_name")]  # the name the code gave, not the URL
    cart = tmp_path / "cart.ndjson"
    cart.write_text(
        "".join(
            json.dumps({"type": kind, "anonymousId": "a", key: "Checkout", "timestamp": at}) + "\n"
            for kind, key, at in (("screen", "name", 1772000001), ("track", "event", 1772000002))
        )
    )
    carts = [f["line"] for f in findings(cli, str(cart), code=0) if f["code"] == "empty_cart"]
    assert carts == [2]  # the track: a screen named Checkout is a view of it


def test_paths_quote_names_that_are_not_identifiers(cli: Cli, tmp_path: Path) -> None:
    traffic = tmp_path / "spaces.ndjson"
    traffic.write_text(
        json.dumps(
            {
                "type": "track",
                "event": "Product Viewed",
                "properties": {"sku": "S", "site id": "x", "schema_version": "1"},
                "messageId": "s1",
                "anonymousId": "a",
                "timestamp": 1772000001,
            }
        )
        + "\n"
    )
    found = findings(cli, str(traffic), "--plan", PLAN)
    assert '$["site id"]' in {f["path"] for f in found}


def test_a_bare_legacy_rules_object_is_a_segment_plan(cli: Cli, tmp_path: Path) -> None:
    """Terraform's Segment provider keeps `{"global", "events", "identify", "group"}`
    without the `rules` wrapper."""
    bare = tmp_path / "rules.json"
    event_schema = {
        "type": "object",
        "properties": {
            "context": {},
            "traits": {},
            "properties": {
                "type": "object",
                "properties": {"total": {"type": ["number"]}},
                "required": ["total"],
            },
        },
    }
    bare.write_text(
        json.dumps(
            {
                "global": {"type": "object", "properties": {"context": {}, "properties": {}}},
                "events": [{"name": "Order Completed", "rules": event_schema}],
                "identify": {"type": "object", "properties": {"traits": {}}},
                "group": {"type": "object", "properties": {"traits": {}}},
            }
        )
    )
    codes = {f["code"] for f in findings(cli, CLEAN, "--plan", str(bare), code=1)}
    assert codes == {"unplanned_event"}  # Order Completed is planned and sent right
    short = tmp_path / "short.ndjson"
    short.write_text(
        '{"type": "track", "userId": "u", "event": "Order Completed", "properties": {},'
        ' "messageId": "s1", "timestamp": 1772000001}\n'
    )
    (missing,) = findings(cli, str(short), "--plan", str(bare))
    assert (missing["code"], missing["path"]) == ("required_missing", "$.total")


def _on_a_console(fixture: Path, **console: Any) -> tuple[Any, str]:
    """`check`'s report of `fixture` against PLAN, and its text as a Rich console of
    those options shows it."""
    import io

    from rich.console import Console

    from cio_anon.check import check
    from cio_anon.check.plans import load_plan
    from cio_anon.clock import parse_time
    from cio_anon.present.render import check_text

    found = check([fixture], load_plan(Path(PLAN)), parse_time("2026-03-01T00:00:00Z"))
    terminal = Console(file=io.StringIO(), **console)
    terminal.print(check_text(found))
    return found, terminal.file.getvalue()  # type: ignore[attr-defined]


def test_codes_stay_whole_in_an_80_column_terminal(tmp_path: Path) -> None:
    found, text = _on_a_console(Path(MESSY), width=80, color_system=None)
    assert {f.code for f in found.findings} == set(CODES)
    for code in CODES:
        assert code in text, code  # on one line, not split across two


def test_names_and_paths_are_printed_as_text_not_markup(cli: Cli, tmp_path: Path) -> None:
    """An event name, an id or a file name is the fixture's: Rich's markup in it (a
    closing `[/]` that closes nothing, a style) and a terminal's escapes print as
    written, escaped, in the tables' rows and titles, on stdout and in --output."""
    fixture = tmp_path / "[red]shop.ndjson"
    calls = [("[/]Viewed[bold]", "a[/]"), ("\x1b[31mRed", "a2")]
    fixture.write_text(
        "".join(
            json.dumps(
                {
                    "type": "track",
                    "event": event,
                    "anonymousId": anonymous_id,
                    "messageId": f"m{n}",
                    "receivedAt": 1772000000 + n,
                }
            )
            + "\n"
            for n, (event, anonymous_id) in enumerate(calls)
        )
    )
    for where in ((), ("--output", str(tmp_path / "report.txt"))):
        result = cli("check", str(fixture), "--plan", PLAN, *where, code=1)
        text = (tmp_path / "report.txt").read_text() if where else result.stdout
        assert "track '[/]Viewed[bold]' is not in the plan." in text
        assert "[red]shop.ndjson" in text  # the table's title
        assert "'\\x1b[31mRed'" in text and "\x1b" not in text
    # on a terminal: a title in Rich's title style (italic), still the name as written
    _, shown = _on_a_console(fixture, width=200, force_terminal=True, color_system="standard")
    assert f"\x1b[3m{fixture}" in shown and "\x1b[3mBy code" in shown


def test_a_baseline_accepts_known_findings_and_fails_on_a_new_one(cli: Cli, tmp_path: Path) -> None:
    baseline = tmp_path / "baseline.json"
    wrote = cli("check", MESSY, "--plan", PLAN, "--write-baseline", str(baseline), code=0)
    everything = findings(cli, MESSY, "--plan", PLAN)
    assert f"Wrote {len(everything)} finding(s) to the baseline" in wrote.stderr
    # kept in the team's repository: one value a line, so a review's diff shows what moved
    assert len(baseline.read_text().splitlines()) > 3 * len(everything)
    accepted = cli("check", MESSY, "--plan", PLAN, "--baseline", str(baseline), "--json")
    assert (accepted["findings"], accepted["summary"]["known"]) == ([], len(everything))
    # the same traffic with one more problem: only that one is new, and it fails
    grown = tmp_path / "grown.ndjson"
    placeholder = {"type": "identify", "userId": "undefined", "receivedAt": 1772000000}
    grown.write_text(Path(MESSY).read_text() + json.dumps(placeholder) + "\n")
    shutil.copy(baseline, tmp_path / "for-grown.json")
    text = (tmp_path / "for-grown.json").read_text().replace(MESSY, str(grown))
    (tmp_path / "for-grown.json").write_text(text)
    new = json.loads(
        cli(
            "check",
            str(grown),
            "--plan",
            PLAN,
            "--baseline",
            str(tmp_path / "for-grown.json"),
            "--json",
            code=1,
        ).stdout
    )
    assert [(f["code"], f["line"]) for f in new["findings"]] == [
        ("placeholder_id", len(Path(MESSY).read_text().splitlines()) + 1)
    ]
    assert new["summary"]["known"] == len(everything)


def test_the_bundled_fixtures_pass_with_their_baseline(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`reused_anonymous_id.ndjson` shows an error on purpose; the baseline shipped
    beside the fixtures accepts it and every other known finding."""
    monkeypatch.chdir(ROOT)
    bundled = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "fixtures").glob("*.ndjson"))
    assert cli("check", *bundled, code=1)
    done = cli("check", *bundled, "--baseline", "fixtures/baselines/check.json", "--json")
    assert done["findings"] == [] and done["summary"]["known"] > 0


def test_text_puts_the_counts_first_and_caps_each_code(cli: Cli) -> None:
    out = cli("check", MESSY, "--plan", PLAN, "--max-findings", "1", code=1).stdout
    lines = out.splitlines()
    assert lines[0].startswith("25 records checked: 17 error(s)")  # one call a record
    assert lines[1].strip() == "By code"
    assert "more finding(s) not listed (1 row(s) of each code shown" in out
    everything = cli("check", MESSY, "--plan", PLAN, "--max-findings", "0", code=1).stdout
    assert "not listed" not in everything


def test_a_terminal_sees_check_progress_and_a_pipe_does_not(tmp_path: Path) -> None:
    from tests.conftest import on_a_terminal

    sys.path.insert(0, str(ROOT / "bench"))
    from make_fixture import records

    fixture = tmp_path / "traffic.ndjson"
    fixture.write_text("".join(json.dumps(r) + "\n" for r in records(8_000, seed=3)))
    assert fixture.stat().st_size > 1_000_000  # past the size a bar is shown for
    command = [sys.executable, "-m", "cio_anon", "check", str(fixture), "--format", "json"]
    _, seen, stdout = on_a_terminal(command, tmp_path)
    assert b"Replaying" in seen, seen[-500:]
    shown = json.loads(stdout)
    assert shown["records"] == 8_000
    piped = subprocess.run(command, capture_output=True, timeout=120)
    assert piped.stderr == b""
    assert json.loads(piped.stdout) == shown


def test_a_refused_request_says_nothing_but_that_it_was_refused(cli: Cli, tmp_path: Path) -> None:
    """A recorded batch whose second message Customer.io refuses (a trait over its limit)
    is refused whole: its first message, an event the plan does not know, is undone
    with it and found nothing of; sent in a batch of its own, it is found."""
    refused = {"type": "identify", "userId": "x@example.com", "traits": {"note": "x" * 1001}}
    unplanned = {"type": "track", "event": "Unplanned Thing", "anonymousId": "a1"}
    records = [
        {"at": 1772000000, "method": "POST", "path": "/v1/batch", "body": {"batch": batch}}
        for batch in ([unplanned, refused], [{**unplanned, "anonymousId": "a2"}])
    ]
    fixture = tmp_path / "batches.ndjson"
    fixture.write_text("".join(json.dumps(record) + "\n" for record in records))
    found = findings(cli, str(fixture), "--plan", PLAN)
    assert [f["code"] for f in found if f["line"] == 1] == ["limit_exceeded"]
    assert "unplanned_event" in [f["code"] for f in found if f["line"] == 2]


def test_findings_in_a_recorded_batch_name_their_messages(cli: Cli, tmp_path: Path) -> None:
    """A recorded request holds an SDK's batch on one line: each finding names the
    message it is about, in JSON and, where a line holds several, in the text."""
    calls = [
        {"type": "track", "event": "Checkout Started", "anonymousId": f"a{n}", "messageId": m}
        for n, m in enumerate(["m-first", "m-second"])
    ]
    people = [{"type": "identify", "userId": "anonymous", "messageId": "m-who"}]
    records = [
        {"at": 1772000000, "method": "POST", "path": "/v1/batch", "body": {"batch": batch}}
        for batch in (calls, people)
    ]
    fixture = tmp_path / "batches.ndjson"
    fixture.write_text("".join(json.dumps(record) + "\n" for record in records))
    found = findings(cli, str(fixture))
    carts = [(f["line"], f["message_id"]) for f in found if f["code"] == "empty_cart"]
    assert carts == [(1, "m-first"), (1, "m-second")]
    assert [(f["line"], f["message_id"]) for f in found if f["code"] == "placeholder_id"] == [
        (2, "m-who")
    ]
    text = cli("check", str(fixture), "--format", "text", code=1).stdout
    assert "messageId" in text and "m-first" in text and "m-second" in text
    # one call a line (a fixture of bare messages): no such column, though the third
    # line also has a finding across events (a near duplicate), which names no call
    respelled = {**calls[0], "event": "checkout_started", "messageId": "m-third"}
    bare = tmp_path / "bare.ndjson"
    bare.write_text(
        "".join(json.dumps({**c, "receivedAt": 1772000000}) + "\n" for c in [*calls, respelled])
    )
    on_third = [(f["code"], f["message_id"]) for f in findings(cli, str(bare), code=0)]
    assert ("near_duplicate_name", None) in on_third and ("empty_cart", "m-third") in on_third
    assert "messageId" not in cli("check", str(bare), "--format", "text", code=0).stdout


def test_the_same_finding_about_many_calls_is_one_row(cli: Cli, tmp_path: Path) -> None:
    """An SDK's batches carry the same mistake again and again: the text lists it once,
    with its lines from first to last, how many times, and the first calls it names."""
    batches = [
        [
            {
                "type": "track",
                "event": "Checkout Started",
                "anonymousId": f"a{n}{k}",
                "messageId": f"m{n}{k}",
            }
            for k in range(2)
        ]
        for n in range(3)
    ]
    batches.append(
        [{"type": "track", "event": "Cart Emptied", "anonymousId": "z", "messageId": "z"}]
    )
    fixture = tmp_path / "batches.ndjson"
    fixture.write_text(
        "".join(
            json.dumps(
                {"at": 1772000000, "method": "POST", "path": "/v1/batch", "body": {"batch": batch}}
            )
            + "\n"
            for batch in batches
        )
    )
    carts = [f for f in findings(cli, str(fixture), code=0) if f["code"] == "empty_cart"]
    assert len(carts) == 7  # every one in JSON
    document = cli("check", str(fixture), "--json", code=0)
    assert (document["records"], document["calls"]) == (4, 7)
    text = cli("check", str(fixture), "--format", "text", code=0).stdout
    assert text.startswith("4 records checked: 7 tracks and identifies, 0 error(s), 7 warning")
    assert text.count("'Checkout Started' carries no cart contents") == 1
    (row,) = [line for line in text.splitlines() if "'Checkout Started'" in line]
    cells = [cell.strip() for cell in row.split("│")]
    assert cells[1:5] == ["1–3", "warning", "empty_cart", "6"]
    assert cells[5].startswith("m00, m01, m10 and 3 more")
    assert text.count("'Cart Emptied' carries no cart contents") == 1
    # --max-findings counts rows: the second sentence is left out, its one finding counted
    capped = cli("check", str(fixture), "--max-findings", "1", code=0).stdout
    assert "'Cart Emptied'" not in capped
    assert "1 more finding(s) not listed (1 row(s) of each code shown" in capped


def test_one_mistake_at_a_property_is_one_row_whatever_the_values(cli: Cli, tmp_path: Path) -> None:
    """A plan wants an integer sku and every product page sends its own text sku: the
    sentences differ by the value, the mistake is one (one row, one annotation, the
    first value shown), and it does not crowd a second mistake out of the rows shown."""
    plan = tmp_path / "plan.json"
    schema = {
        "type": "object",
        "properties": {"sku": {"type": "integer"}, "price": {"type": "number"}},
    }
    plan.write_text(
        json.dumps(
            {
                "rules": [
                    {"type": "TRACK", "key": "Product Viewed", "version": 1, "jsonSchema": schema}
                ]
            }
        )
    )
    sent = [{"sku": f"TEE-{n}", "price": 12} for n in range(30)] + [{"sku": 7, "price": "12"}]
    fixture = tmp_path / "views.ndjson"
    fixture.write_text(
        "".join(
            json.dumps(
                {
                    "type": "track",
                    "event": "Product Viewed",
                    "anonymousId": f"a{n}",
                    "properties": properties,
                    "receivedAt": 1772000000 + n,
                }
            )
            + "\n"
            for n, properties in enumerate(sent)
        )
    )
    found = findings(cli, str(fixture), "--plan", str(plan))
    assert [f["code"] for f in found].count("type_mismatch") == 31  # every one in JSON
    text = cli("check", str(fixture), "--plan", str(plan), "--max-findings", "2", code=1)
    cells = [[cell.strip() for cell in line.split("│")] for line in text.stdout.splitlines()]
    rows = [row[1:5] for row in cells if len(row) > 5 and row[3] == "type_mismatch"]
    assert rows == [["1–30", "error", "type_mismatch", "30"], ["31", "error", "type_mismatch", "1"]]
    assert "more finding(s) not listed" not in text.stdout
    annotations = cli("check", str(fixture), "--plan", str(plan), "--format", "github", code=1)
    errors = [line for line in annotations.stdout.splitlines() if line.startswith("::error")]
    assert [line.split("::")[-1][:40] for line in errors] == [
        "'Product Viewed' at $.sku: 'TEE-0' is no",
        "'Product Viewed' at $.price: '12' is not",
    ]
    assert errors[0].endswith("(30 times, on lines 1–30)")


@pytest.mark.parametrize(
    ("name", "properties", "empty"),
    [
        # Segment's e-commerce spec: one product, named by its sku or id
        ("Added to Cart", {"sku": "s21", "quantity": 1}, False),
        ("Product Added to Cart", {"product_id": "p-7", "price": 12}, False),
        ("addedToCart", {"product": "cool-shoes"}, False),  # Customer.io's own example
        ("Checkout Started", {"items": [{"sku": "TEE-01", "qty": 1}]}, False),
        ("Checkout Started", {"skus": ["TEE-01", "CAP-3"]}, False),
        # a step of the checkout is about the step, in Segment's spec as elsewhere
        ("Checkout Step Viewed", {"checkout_id": "c-1", "step": 2}, False),
        ("checkout_step_completed", {"step": 3, "shipping_method": "ups"}, False),
        # a total, a count or an empty value says nothing of what is in the cart
        ("Checkout Started", {"cart_value": 64.8, "item_count": 2}, True),
        ("Added to Cart", {"sku": "", "items": []}, True),
        ("Cart Viewed", {}, True),
    ],
)
def test_a_cart_event_names_its_contents_by_items_or_product(
    cli: Cli, tmp_path: Path, name: str, properties: dict[str, Any], empty: bool
) -> None:
    fixture = tmp_path / "cart.ndjson"
    message = {"type": "track", "anonymousId": "a", "event": name, "properties": properties}
    fixture.write_text(json.dumps({**message, "receivedAt": 1772000000}) + "\n")
    codes = [f["code"] for f in findings(cli, str(fixture), code=0)]
    assert ("empty_cart" in codes) is empty


def test_findings_come_in_the_order_the_files_were_given(cli: Cli, tmp_path: Path) -> None:
    """Files are replayed in the order given (a journey's days, a session's parts), and
    their findings are listed so, not by name."""
    names = ["day-2.ndjson", "day-1.ndjson"]
    for name in names:
        message = {"type": "track", "anonymousId": "a", "event": "Cart Viewed"}
        (tmp_path / name).write_text(json.dumps({**message, "receivedAt": 1772000000}) + "\n")
    given = [str(tmp_path / name) for name in names]
    assert [f["file"] for f in findings(cli, *given, code=0)] == given
    text = cli("check", *given, code=0).stdout
    assert text.index(given[0]) < text.index(given[1])


def test_github_annotations_give_the_same_finding_once_and_escape_the_file(
    cli: Cli, tmp_path: Path
) -> None:
    """An SDK's batches repeat one mistake: one annotation says how many times, where
    one each would fill GitHub's 10 with the same sentence. A file's name is a property
    of the command: its `,` and `:` are escaped."""
    fixture = tmp_path / "shop,day:1.ndjson"
    fixture.write_text(
        "".join(
            json.dumps(
                {
                    "type": "track",
                    "event": "Checkout Started",
                    "anonymousId": f"a{n}",
                    "messageId": f"m{n}",
                    "receivedAt": 1772000000 + n,
                }
            )
            + "\n"
            for n in range(12)
        )
    )
    assert len(findings(cli, str(fixture), code=0)) == 12
    out = cli("check", str(fixture), "--format", "github", code=0).stdout
    named = str(fixture).replace(",", "%2C").replace(":", "%3A")
    assert out.splitlines() == [
        f"::warning file={named},line=1,title=empty_cart::'Checkout Started' carries no cart "
        "contents (items/products/line_items/cart_items). Send the cart's items (sku, qty, "
        "price) with the event. (12 times, on lines 1–12)"
    ]


def test_output_dash_is_stdout(cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = cli("check", MESSY, "--format", "github", "--output", "-", code=1)
    assert "::warning file=" in result.stdout and "::error file=" in result.stdout
    assert not (tmp_path / "-").exists()
    # every --output, the plan's too
    plan = cli("plan", "infer", CLEAN, "--output", "-").stdout
    assert plan.startswith("dialect: cio-anon") and not (tmp_path / "-").exists()


def test_the_bulk_path_finds_what_one_call_at_a_time_finds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`check` replays in bulk where it can (reading ahead), and what it hears of each
    call is what the service says one call at a time: every finding the same, on a
    fixture with every code and on session and hostile traffic (ids taken, events after
    the window, a track naming its person, identifies repeated)."""
    from datetime import UTC, datetime
    from functools import partial

    from cio_anon.check import check
    from cio_anon.check import run as check_run
    from cio_anon.check.plans import load_plan
    from cio_anon.replay import ahead, bulk, replay

    sys.path.insert(0, str(ROOT / "bench"))
    from make_sessions import generate

    files = [Path(MESSY)]
    for shape in ("sessions", "hostile"):
        files.append(tmp_path / f"{shape}.ndjson")
        files[-1].write_text("".join(json.dumps(r) + "\n" for r in generate(shape, 3_000)))
    plan, now = load_plan(Path(PLAN)), datetime(2026, 12, 1, tzinfo=UTC)
    monkeypatch.setattr(ahead, "AHEAD_BYTES", 0)  # read ahead, as a large file is
    runs: list[int] = []
    start = bulk._Run.__init__
    monkeypatch.setattr(
        bulk._Run,
        "__init__",
        lambda run, w, calls, *rest: runs.append(len(calls)) or start(run, w, calls, *rest),
    )
    in_bulk = check(files, plan, now)
    assert sum(runs) > 5_000  # (runs decided again count twice)
    monkeypatch.setattr(check_run, "replay", partial(replay, bulk=False))
    one_by_one = check(files, plan, now)
    assert in_bulk.findings == one_by_one.findings
    assert (in_bulk.records, in_bulk.calls) == (one_by_one.records, one_by_one.calls)
    codes = in_bulk.by_code()
    assert set(codes) == set(CODES)
    assert codes["late_anonymous_event"] > 100 and codes["anonymous_id_reused"] > 100


def test_check_keeps_findings_not_calls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What `check` hears of each call is checked as it is heard and let go: by the end of
    a replay of 3,000 session records, no more calls are alive than a run of the bulk
    path holds (memory grows with the findings, not the traffic)."""
    import gc
    import weakref
    from datetime import UTC, datetime

    from cio_anon.check import check
    from cio_anon.check import run as check_run
    from cio_anon.replay import bulk

    sys.path.insert(0, str(ROOT / "bench"))
    from make_sessions import generate

    fixture = tmp_path / "sessions.ndjson"
    fixture.write_text("".join(json.dumps(r) + "\n" for r in generate("sessions", 3_000)))
    monkeypatch.setattr(bulk, "CHUNK", 50)
    monkeypatch.setattr(bulk, "FIRST_RUN", 50)
    heard: list[weakref.ref[Any]] = []
    alive: list[int] = []
    hear = check_run._Checker.hear

    def watched(checker: Any, source: Any, call: Any, what: Any) -> None:
        hear(checker, source, call, what)
        heard.append(weakref.ref(call))
        if len(heard) % 500 == 0:
            gc.collect()
            alive.append(sum(ref() is not None for ref in heard))

    monkeypatch.setattr(check_run._Checker, "hear", watched)
    report = check([fixture], None, datetime(2026, 12, 1, tzinfo=UTC))
    assert report.calls == len(heard) > 2_500 and len(alive) >= 5
    assert max(alive) <= 2 * 50 + 10  # a run's calls, and the next read with them
