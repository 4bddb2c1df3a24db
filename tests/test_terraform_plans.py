"""Segment tracking plans kept in Terraform, as Segment's Git sync writes a workspace's
plans into a repository (`tracking_plans/tp_<id>.tf`, one `segment_tracking_plan` a
file): `check --plan` reads one as the same plan its Public API JSON is."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cio_anon.check.plans import load_plan
from cio_anon.check.terraform import Block, Reference, TerraformError, blocks

DATA = Path(__file__).parent / "data" / "check"
MESSY, CLEAN = str(DATA / "messy.ndjson"), str(DATA / "clean.ndjson")
Cli = Callable[..., Any]

EXTRA = {  # what the bundled plan lacks: a pattern with a backslash, a quote and `${`
    "type": "TRACK",
    "key": "Coupon Applied",
    "version": 2,
    "jsonSchema": {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "properties": {
            "properties": {
                "type": "object",
                "properties": {
                    "code": {"type": "string", "pattern": '^[A-Z]{3}\\d+("|${x})?$'},
                    "note": {"type": ["string", "null"], "description": "Tab\there, é"},
                    "discount": {"type": "number", "minimum": -1.5, "maximum": 1e3},
                },
                "required": ["code"],
            }
        },
    },
}


def _quoted(text: str) -> str:
    """A Terraform string: JSON's escapes, and `${`/`%{` doubled so they stay text."""
    return json.dumps(text, ensure_ascii=False).replace("${", "$${").replace("%{", "%%{")


def _key(name: str) -> str:
    return name if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", name) else _quoted(name)


def hcl(value: Any, indent: int = 0) -> str:
    """A value as Git sync writes it: an object a key a line, a list on one line."""
    pad = "  " * indent
    if isinstance(value, dict):
        if not value:
            return "{}"
        lines = [f"{pad}  {_key(k)} = {hcl(v, indent + 1)}" for k, v in value.items()]
        return "{\n" + "\n".join(lines) + f"\n{pad}}}"
    if isinstance(value, list):
        return "[" + ", ".join(hcl(v, indent) for v in value) + "]"
    return _quoted(value) if isinstance(value, str) else json.dumps(value)


def git_sync(rules: list[dict[str, Any]], plan_type: str = "LIVE") -> str:
    """A tracking plan's file as Git sync writes it: an import block, then the resource,
    each rule's `json_schema` a `jsonencode({...})` or (as older syncs wrote it) a JSON
    string, a rule without a key `key = null`, trailing commas."""
    written = []
    for index, rule in enumerate(rules):
        schema = rule["jsonSchema"]
        encoded = f"jsonencode({hcl(schema, 4)})" if index % 2 == 0 else _quoted(json.dumps(schema))
        key = _quoted(rule["key"]) if rule.get("key") else "null"
        written.append(
            "    {\n"
            f"      json_schema = {encoded}\n"
            f"      key     = {key}\n"
            f"      type    = {_quoted(rule['type'])}\n"
            f"      version = {rule['version']}\n"
            "    },"
        )
    return (
        'import {\n  to = segment_tracking_plan.id-tp_1\n  id = "tp_1"\n}\n\n'
        "# the shop's plan\n"
        'resource "segment_tracking_plan" "id-tp_1" {\n'
        "  description = null\n"
        '  name        = "Shop"\n'
        "  rules = [\n" + "\n".join(written) + "\n  ]\n"
        f"  type = {_quoted(plan_type)}\n"
        "}\n"
    )


def _rules() -> list[dict[str, Any]]:
    return [*json.loads((DATA / "segment-plan.json").read_text())["rules"], EXTRA]


def test_a_git_sync_plan_is_the_plan_its_json_is(cli: Cli, tmp_path: Path) -> None:
    rules = _rules()
    as_json = tmp_path / "plan.json"
    as_json.write_text(json.dumps({"rules": rules}))
    as_terraform = tmp_path / "tp_1.tf"
    as_terraform.write_text(git_sync(rules))
    read, expected = load_plan(as_terraform), load_plan(as_json)
    assert read.events == expected.events and ("track", "Coupon Applied") in read.events
    assert (read.identify, read.common) == (expected.identify, expected.common)
    assert read.common and read.identify
    for fixture, code in ((MESSY, 1), (CLEAN, 0)):
        by_terraform, by_json = (
            json.loads(
                cli("check", fixture, "--plan", str(plan), "--format", "json", code=code).stdout
            )["findings"]
            for plan in (as_terraform, as_json)
        )
        assert by_terraform == by_json
        assert len(by_terraform) > 5 if code else by_terraform == []


def test_a_git_sync_plan_through_a_pipe_is_known_by_its_text(tmp_path: Path) -> None:
    plan = tmp_path / "tp_1.tf"
    plan.write_text(git_sync(_rules()))

    def check(given: str) -> list[dict[str, Any]]:
        shell = (
            f"{shlex.quote(sys.executable)} -m cio_anon check {shlex.quote(MESSY)} "
            f"--plan {given} --format json"
        )
        done = subprocess.run(["bash", "-c", shell], capture_output=True, text=True, check=False)
        assert done.returncode == 1, done.stderr
        return list(json.loads(done.stdout)["findings"])

    assert check(f"- < {shlex.quote(str(plan))}") == check(shlex.quote(str(plan)))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.replace('"Shop"', '"${var.name}"'), "line 9: a template (${...}) is not"),
        (
            lambda t: t.replace("rules = [", "rules = concat(var.more, [").replace(
                "\n  ]\n", "\n  ])\n"
            ),
            "line 10: the function concat() is not evaluated",
        ),
        (lambda t: t.replace('type = "LIVE"', 'type = "PROPERTY_LIBRARY"'), "property library"),
        (lambda t: t + t[t.index("resource") :], "holds 2 `segment_tracking_plan` resources"),
        (lambda t: t.replace('"Shop"', '"Shop'), "line 9: a string is not closed"),
        (lambda t: t[: t.index("  rules")] + "}\n", "has no `rules` list"),
    ],
)
def test_a_terraform_plan_cio_anon_cannot_read_is_refused_with_where(
    cli: Cli, tmp_path: Path, edit: Callable[[str], str], message: str
) -> None:
    """A file with what would have to be run (a template, a function), or that is not
    one tracking plan, is refused with a sentence (and the line), exit 2, never read as
    a smaller plan."""
    plan = tmp_path / "tp_1.tf"
    plan.write_text(edit(git_sync(_rules())))
    result = cli("check", CLEAN, "--plan", str(plan), code=2)
    assert message in result.stderr and result.stdout == ""
    assert "Traceback" not in result.stderr


def test_a_git_sync_folder_lists_the_plans_to_name(cli: Cli, tmp_path: Path) -> None:
    """Segment's Git sync keeps every tracking plan of the workspace in one folder, each
    file named by the plan's id: which of them applies is the team's to say, and the
    refusal lists them by name and type (a property library, which cannot be checked
    against, and a file holding no plan are left out)."""
    folder = tmp_path / "tracking_plans"
    folder.mkdir()
    (folder / "tp_1.tf").write_text(git_sync(_rules()))
    (folder / "tp_2.tf").write_text(git_sync(_rules(), "PROPERTY_LIBRARY"))
    (folder / "tp_3.tf").write_text(git_sync(_rules()).replace('"Shop"', '"Shop (dev)"'))
    (folder / "providers.tf").write_text('terraform {\n  required_version = ">= 1.5"\n}\n')
    result = cli("check", CLEAN, "--plan", str(folder), code=2)
    assert result.stderr.splitlines() == [
        f"Error: The plan folder {folder} holds no YAML files, but 2 tracking plan(s) as "
        "Segment's Git sync writes them: name the one to check against:",
        f"  --plan {folder / 'tp_1.tf'}  (Shop, LIVE)",
        f"  --plan {folder / 'tp_3.tf'}  (Shop (dev), LIVE)",
    ]


def test_terraform_values_are_read_as_written() -> None:
    (block,) = blocks(
        'thing "a" b {\n'
        '  text = "q\\"\\\\\\n\\u00e9$${x}%%{y}" # a comment\n'
        "  numbers = [-1.5, 2e3, 7,]\n"
        '  object = {"k": true, other = null, /* inline */ list = []}\n'
        "  reference = segment_tracking_plan.id-tp_1\n"
        '  encoded = jsonencode({ b = [1, "2"], a = {} })\n'
        "  inner { n = 1 }\n"
        "}\n"
    )
    assert (block.type, block.labels) == ("thing", ["a", "b"])
    assert block.attributes == {
        "text": 'q"\\\né${x}%{y}',
        "numbers": [-1.5, 2000.0, 7],
        "object": {"k": True, "other": None, "list": []},
        "reference": Reference("segment_tracking_plan.id-tp_1"),
        "encoded": '{"b":[1,"2"],"a":{}}',
    }
    assert block.blocks == [Block("inner", [], 7, {"n": 1})]
    with pytest.raises(TerraformError, match="line 2: the function file"):
        blocks('x {\n  y = file("a.json")\n}')
