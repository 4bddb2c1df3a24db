"""Tracking plans in three dialects — the native YAML one, Segment Protocols JSON (the
Public API `rules[]` form and the legacy `rules.events` form; or kept in Terraform, as
Segment's Git sync writes a tracking plan: `terraform.py`) and RudderStack's data
catalog YAML (`version: rudder/0.1`: events, properties, custom types and `kind: tp`
tracking plans, in one file or a folder of them) — normalised to one model: a JSON
Schema per call type and event name, plus common properties, identify traits and
naming conventions.

Loading compiles every schema and collects every problem, so a broken plan fails
early, once, with all its problems (event and JSON path each); a file that is not a
plan in a known dialect is never read as an empty one."""

from __future__ import annotations

import io
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cio_anon import jsonio
from cio_anon.errors import CioAnonError
from cio_anon.ingest.fixtures import STDIN, display_name

CASES = {
    "snake_case": re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$"),
    "camelCase": re.compile(r"^[a-z][a-zA-Z0-9]*$"),
    "PascalCase": re.compile(r"^[A-Z][a-zA-Z0-9]*$"),
    "kebab-case": re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$"),
    # small words (to, of, and...) may stay lower case inside a Title Case name
    "Title Case": re.compile(
        r"^[A-Z0-9][A-Za-z0-9]*"
        r"( ([A-Z0-9][A-Za-z0-9]*|a|an|and|as|at|by|for|from|in|of|on|or|the|to|with))*$"
    ),
}
CALLS = ("track", "page", "screen")
VIEWED = {"page": "Page Viewed", "screen": "Screen Viewed"}
"""The event Segment's Protocols validates a page or screen call as when the plan has no
rule for the call's name."""


class PlanError(CioAnonError):
    """A plan that cannot be used (exit code 2)."""


class Problems:
    """The problems found while loading a plan, reported all at once."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.found: list[str] = []

    def add(self, message: str) -> None:
        self.found.append(message)

    def raise_any(self) -> None:
        if len(self.found) == 1:
            raise PlanError(f"{self.source}: {self.found[0]}")
        if self.found:
            listed = "\n".join(f"  - {problem}" for problem in self.found)
            raise PlanError(f"{self.source} has {len(self.found)} problems:\n{listed}")


def json_path(parts: Any) -> str:
    """`$.a.b[0]`, with a name that is not a plain identifier quoted: `$["site id"]`."""
    path = "$"
    for part in parts:
        if isinstance(part, int):
            path += f"[{part}]"
        elif _IDENTIFIER.match(str(part)):
            path += f".{part}"
        else:
            path += "[" + jsonio.dumps(str(part)) + "]"
    return path


_IDENTIFIER = re.compile(r"^[A-Za-z_$][A-Za-z0-9_$]*$")


@dataclass
class EventRule:
    call: str
    name: str
    schema: dict[str, Any]
    pii: set[str] = field(default_factory=set)
    campaign_trigger: bool = False


@dataclass
class Plan:
    """The normalised plan."""

    source: str
    events: dict[tuple[str, str], EventRule] = field(default_factory=dict)
    common: dict[str, Any] | None = None
    identify: dict[str, Any] | None = None
    event_case: str | None = None
    property_case: str | None = None
    canonical_id: str | None = None
    require_schema_version: bool = False
    pii: set[str] = field(default_factory=set)

    def rule_for(self, call: str, name: str, page_name: str | None = None) -> EventRule | None:
        """The rule an event is held to: the one for its name; for a page, the one for its
        own name (Customer.io names the event by the page's URL, Segment's and
        RudderStack's plans list a page by name); for a page or a screen no rule names,
        `Page Viewed` or `Screen Viewed`, the event Segment's Protocols validates every
        page and screen call as (a PAGE or SCREEN rule, or a TRACK one)."""
        rule = self.events.get((call, name))
        if rule is not None:  # (most events: their own name)
            return rule
        names = []
        if page_name is not None:
            names.append((call, page_name))
        if call in VIEWED:
            names += [(call, VIEWED[call]), ("track", VIEWED[call])]
        return next((self.events[key] for key in names if key in self.events), None)

    def plans_call(self, call: str) -> bool:
        """Whether the plan lists any event of this call type (pages are often unplanned)."""
        return any(key[0] == call for key in self.events)

    def is_pii(self, rule: EventRule | None, prop: str) -> bool:
        """Whether the plan marks `prop` as personal data, everywhere or in `rule`."""
        return prop in self.pii or (rule is not None and prop in rule.pii)


def load_plan(path: Path) -> Plan:
    """Read a plan: a file (`-`: standard input) or a folder of RudderStack data catalog
    files. A file is JSON, YAML or Terraform by its name, else by its text
    (`_written_in`)."""
    try:
        return _load(path)
    except RecursionError:  # YAML's and Terraform's readers descend as the values nest
        raise PlanError(
            f"The plan {display_name(path)} nests its values too deeply to be read."
        ) from None


def _load(path: Path) -> Plan:
    if path != STDIN and path.is_dir():
        files = sorted(p for p in path.rglob("*") if SUFFIXES.get(p.suffix.lower()) == "yaml")
        if not files:
            raise _no_yaml(path)
        documents = [item for f in files for item in _yaml_documents(f, _read(f))]
        return rudder_plan(documents, str(path))
    name, text = display_name(path), _read(path)
    written = _written_in(path, text)
    if written == "terraform":
        return terraform_plan(text, name)
    if written == "yaml":
        documents = _yaml_documents(path, text)
        if any(_is_rudder(doc) for _, doc in documents):
            return rudder_plan(documents, name)
        if len(documents) != 1:
            raise PlanError(
                f"The plan {name} holds {len(documents)} YAML documents; a cio-anon plan is "
                "one (several are read as a RudderStack data catalog, with `version: rudder/0.1`)."
            )
        return native_plan(documents[0][1], name)
    try:
        data = jsonio.loads(text)
    except jsonio.JSONDecodeError as error:
        raise PlanError(f"The plan {name} is not valid JSON: {error}.") from None
    return segment_plan(data, name)


TERRAFORM_START = re.compile(
    r"\A(?:\s|#[^\n]*|//[^\n]*)*(?:resource|import|terraform|provider|data)\s*[\"{]"
)
"""How a Terraform file opens: a block, after any comments."""
SUFFIXES = {".json": "json", ".yaml": "yaml", ".yml": "yaml", ".tf": "terraform"}


def _written_in(path: Path, text: str) -> str:
    """What a plan file is written in (json, yaml, or terraform: a Segment tracking plan
    as Git sync keeps it): by its name, else by how its text opens."""
    by_name = SUFFIXES.get(path.suffix.lower())
    if by_name is not None:
        return by_name
    if TERRAFORM_START.match(text):
        return "terraform"
    return "json" if text.lstrip().startswith(("{", "[")) else "yaml"


LISTED = 20
"""The tracking plans a folder's refusal lists at most."""


def _no_yaml(folder: Path) -> PlanError:
    """A plan folder with no YAML files; when it is Segment's Git sync's folder of
    tracking plans, which of them there are (file, name and type), to name one."""
    listed = []
    for file in sorted(folder.rglob("*.tf")):
        try:
            plan = _not_a_library(_tracking_plan(_read(file), display_name(file)), str(file))
        except PlanError:
            continue  # not one tracking plan, or a property library: not offered
        kind = plan.get("type") or "no type"
        listed.append(f"  --plan {file}  ({plan.get('name') or 'unnamed'}, {kind})")
    said = f"The plan folder {folder} holds no YAML files"
    if not listed:
        return PlanError(said + ".")
    more = f"\n  and {len(listed) - LISTED:,} more" if len(listed) > LISTED else ""
    return PlanError(
        f"{said}, but {len(listed):,} tracking plan(s) as Segment's Git sync writes them: "
        "name the one to check against:\n" + "\n".join(listed[:LISTED]) + more
    )


def _read(path: Path) -> str:
    try:
        if path == STDIN:
            return sys.stdin.buffer.read().decode("utf-8")
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PlanError(f"The plan {path} does not exist.") from None
    except (OSError, UnicodeDecodeError) as error:
        raise PlanError(f"The plan {display_name(path)} cannot be read: {error}.") from None


def _yaml_documents(path: Path, text: str) -> list[tuple[Path, Any]]:
    import yaml

    stream = io.StringIO(text)
    stream.name = display_name(path)  # PyYAML names the file, not "<unicode string>"
    try:
        documents = [doc for doc in yaml.safe_load_all(stream) if doc is not None]
    except yaml.YAMLError as error:
        raise PlanError(
            f"The plan {stream.name} is not valid YAML: {error}".rstrip(".") + "."
        ) from None
    return [(path, doc) for doc in documents] or [(path, None)]


def _is_rudder(document: Any) -> bool:
    return isinstance(document, dict) and str(document.get("version", "")).startswith("rudder/")


# -- the native YAML dialect --------------------------------------------------------

PROPERTY_KEYS = {
    "type",
    "required",
    "enum",
    "pattern",
    "minimum",
    "maximum",
    "pii",
    "description",
    "items",
    "format",
}


NATIVE_KEYS = (
    "dialect",
    "naming",
    "canonical_identifier",
    "require_schema_version",
    "common_properties",
    "identify_traits",
    "events",
)
EVENT_KEYS = ("call", "properties", "additional_properties", "campaign_trigger", "description")


def native_plan(data: Any, source: str) -> Plan:
    if not isinstance(data, dict) or data.get("dialect", "cio-anon") != "cio-anon":
        raise PlanError(
            f"The plan {source} is not a cio-anon plan (expected a mapping with "
            "`events`, a Segment Protocols JSON file, or a RudderStack data catalog)."
        )
    unknown = [str(key) for key in data if key not in NATIVE_KEYS]
    if unknown:
        raise PlanError(
            f"The plan {source} has unknown key(s) {', '.join(map(repr, unknown))}: a "
            f"cio-anon plan takes {', '.join(NATIVE_KEYS)}."
        )
    naming = data.get("naming") or {}
    plan = Plan(
        source=source,
        event_case=_case(naming.get("events"), source),
        property_case=_case(naming.get("properties"), source),
        canonical_id=data.get("canonical_identifier"),
        require_schema_version=bool(data.get("require_schema_version", False)),
    )
    if plan.canonical_id not in (None, "id", "email"):
        raise PlanError(f"{source}: canonical_identifier must be id or email.")
    if data.get("common_properties"):
        plan.common, plan.pii = _properties(data["common_properties"], source, "common")
        plan.common["additionalProperties"] = True
    if data.get("identify_traits"):
        plan.identify, traits_pii = _properties(data["identify_traits"], source, "identify")
        plan.identify["additionalProperties"] = True
        plan.pii |= traits_pii
    events = data.get("events") or {}
    if not isinstance(events, dict):
        raise PlanError(f"{source}: `events` must map event names to their properties.")
    for name, spec in events.items():
        spec = spec or {}
        if not isinstance(spec, dict):
            raise PlanError(f"{source}: event {name!r} must be a mapping.")
        strange = [str(key) for key in spec if key not in EVENT_KEYS]
        if strange:
            raise PlanError(
                f"{source}: event {name!r} has unknown key(s) {', '.join(map(repr, strange))}; "
                f"an event takes {', '.join(EVENT_KEYS)}."
            )
        call = spec.get("call", "track")
        if call not in CALLS:
            raise PlanError(
                f"{source}: event {name!r} has call {call!r}; use track, page or screen."
            )
        schema, pii = _properties(spec.get("properties") or {}, source, name)
        schema["additionalProperties"] = bool(spec.get("additional_properties", False))
        plan.events[(call, str(name))] = EventRule(
            call,
            str(name),
            _compiled(schema, source, name),
            pii,
            bool(spec.get("campaign_trigger", False)),
        )
    return plan


def _case(value: Any, source: str) -> str | None:
    if value is None:
        return None
    if value not in CASES:
        raise PlanError(f"{source}: naming case {value!r} is not one of {', '.join(CASES)}.")
    return str(value)


def _properties(props: Any, source: str, where: str) -> tuple[dict[str, Any], set[str]]:
    """Native property specs → a JSON Schema object, and the names marked `pii`."""
    if not isinstance(props, dict):
        raise PlanError(f"{source}: the properties of {where} must be a mapping.")
    schema: dict[str, Any] = {"type": "object", "properties": {}, "required": []}
    pii: set[str] = set()
    for prop, spec in props.items():
        spec = {"type": spec} if isinstance(spec, str) else (spec or {})
        if not isinstance(spec, dict):
            raise PlanError(f"{source}: property {prop!r} of {where} must be a type or a mapping.")
        unknown = set(spec) - PROPERTY_KEYS
        if unknown:
            raise PlanError(
                f"{source}: property {prop!r} of {where} has unknown keys: "
                f"{', '.join(sorted(unknown))}."
            )
        rule = {k: v for k, v in spec.items() if k not in ("required", "pii", "description")}
        schema["properties"][prop] = rule
        if spec.get("required"):
            schema["required"].append(prop)
        if spec.get("pii"):
            pii.add(str(prop))
    return _compiled(schema, source, where), pii


def _compiled(schema: dict[str, Any], source: str, where: str) -> dict[str, Any]:
    """Check that a JSON Schema compiles; PlanError naming every problem if not."""
    problems = Problems(source)
    for problem in schema_problems(schema, where):
        problems.add(problem)
    problems.raise_any()
    return schema


def schema_problems(schema: dict[str, Any], where: str) -> list[str]:
    """What keeps a JSON Schema from compiling, each with its path in the schema."""
    from jsonschema import validators

    checker = validators.validator_for(schema)
    meta = checker(checker.META_SCHEMA)
    return [
        f"the schema of {where} does not compile at {json_path(error.absolute_path)}: "
        f"{error.message}"
        for error in sorted(meta.iter_errors(schema), key=lambda e: list(map(str, e.absolute_path)))
    ]


# -- Segment Protocols JSON ---------------------------------------------------------

SEGMENT_TYPES = {"TRACK": "track", "PAGE": "page", "SCREEN": "screen"}


def segment_plan(data: Any, source: str) -> Plan:
    if isinstance(data, dict) and "rules" not in data and isinstance(data.get("events"), list):
        # the legacy rules object on its own (as Terraform's segment provider keeps it)
        data = {"rules": data}
    if not isinstance(data, dict) or "rules" not in data:
        raise PlanError(
            f"The plan {source} is neither a cio-anon YAML plan nor a Segment "
            "Protocols tracking plan (no `rules`)."
        )
    plan = Plan(source=source)
    problems = Problems(source)
    rules = data["rules"]
    if isinstance(rules, dict):  # the legacy export: rules.events, rules.identify, ...
        for event in rules.get("events") or []:
            _segment_event(plan, "TRACK", event, problems)
        if isinstance(rules.get("identify"), dict):
            plan.identify = _segment_schema(rules["identify"], problems, "identify")
        if isinstance(rules.get("global"), dict):
            plan.common = _segment_schema(rules["global"], problems, "global")
        problems.raise_any()
        return plan
    if not isinstance(rules, list):
        raise PlanError(f"{source}: `rules` must be a list or an object.")
    for index, rule in enumerate(rules):
        if not isinstance(rule, dict):
            problems.add(f"rule {index} is not an object.")
            continue
        kind = rule.get("type")
        if kind in SEGMENT_TYPES:
            _segment_event(plan, kind, rule, problems)
        elif kind == "IDENTIFY":
            plan.identify = _segment_schema(rule, problems, "identify")
        elif kind == "COMMON":
            plan.common = _segment_schema(rule, problems, "common")
        elif kind != "GROUP":
            problems.add(
                f"rule {index} has type {kind!r}, not TRACK, IDENTIFY, PAGE, SCREEN, GROUP or "
                "COMMON."
            )
    problems.raise_any()
    return plan


TERRAFORM_PLAN = "segment_tracking_plan"
"""The resource of Segment's Terraform provider that holds a tracking plan (Git sync
writes one to a file, `tracking_plans/tp_<id>.tf`)."""
PROPERTY_LIBRARY = "PROPERTY_LIBRARY"
"""The type of such a resource that holds properties to reuse, and names no events."""


def terraform_plan(text: str, source: str) -> Plan:
    """A Segment tracking plan kept in Terraform: the one `segment_tracking_plan`
    resource's rules, each `json_schema` a JSON string (`jsonencode({...})` or as
    written), read as the Public API's rules are."""
    resource = _not_a_library(_tracking_plan(text, source), source)
    if not isinstance(resource.get("rules"), list):
        raise PlanError(f"The plan {source}: its `{TERRAFORM_PLAN}` has no `rules` list.")
    return segment_plan({"rules": resource["rules"]}, source)


def _not_a_library(resource: dict[str, Any], source: str) -> dict[str, Any]:
    """The resource, unless it is a property library (refused: nothing to check against)."""
    if resource.get("type") == PROPERTY_LIBRARY:
        raise PlanError(
            f"The plan {source} is a Segment property library (type PROPERTY_LIBRARY), "
            "not a tracking plan: its rules name no events to check against."
        )
    return resource


def _tracking_plan(text: str, source: str) -> dict[str, Any]:
    """The attributes of the one `segment_tracking_plan` resource a Terraform file holds."""
    from cio_anon.check.terraform import TerraformError, blocks

    try:
        found = blocks(text)
    except TerraformError as error:
        raise PlanError(f"The plan {source} cannot be read as Terraform: {error}.") from None
    plans = [b for b in found if b.type == "resource" and b.labels[:1] == [TERRAFORM_PLAN]]
    if len(plans) != 1:
        raise PlanError(
            f"The plan {source} holds {len(plans)} `{TERRAFORM_PLAN}` resources; "
            "cio-anon checks against one (Segment's Git sync writes one a file)."
        )
    return plans[0].attributes


def _segment_event(plan: Plan, kind: str, rule: dict[str, Any], problems: Problems) -> None:
    name = rule.get("key") or rule.get("name")
    if not isinstance(name, str) or not name:
        problems.add(f"a {kind} rule has no `key`.")
        return
    schema = _segment_schema(rule, problems, f"event {name!r}")
    call = SEGMENT_TYPES[kind]
    plan.events[(call, name)] = EventRule(call, name, schema)


def _segment_schema(rule: dict[str, Any], problems: Problems, where: str) -> dict[str, Any]:
    """The properties schema of a Segment rule (its jsonSchema's `properties.properties`
    when the schema describes the whole message, else the schema itself), with
    Segment's `any` type read as no type constraint."""
    schema = rule.get("jsonSchema", rule.get("rules", rule.get("json_schema")))
    if schema is None:
        return {"type": "object"}
    if isinstance(schema, str):  # Terraform exports keep it as a JSON string
        try:
            schema = jsonio.loads(schema)
        except jsonio.JSONDecodeError as error:
            problems.add(f"{where}: its jsonSchema is not valid JSON ({error}).")
            return {"type": "object"}
    if not isinstance(schema, dict):
        problems.add(f"{where}: its jsonSchema must be an object.")
        return {"type": "object"}
    schema = without_any(schema)
    inner = schema.get("properties", {})
    for key in ("properties", "traits"):
        if isinstance(inner, dict) and isinstance(inner.get(key), dict):
            schema = {**_root_keys(schema), **inner[key]}
            break
    found = schema_problems(schema, where)
    for problem in found:
        problems.add(problem)
    return {"type": "object"} if found else schema


ROOT_KEYS = ("$schema", "definitions", "$defs")
"""What a whole-message schema says for all of it: the draft it is written in (Segment
writes draft-07), and the definitions its `$ref`s name from the root."""


def _root_keys(schema: dict[str, Any]) -> dict[str, Any]:
    """What the properties schema taken out of a whole-message `schema` keeps of it:
    judged by the same draft, its `#/definitions/…` references still found."""
    return {key: schema[key] for key in ROOT_KEYS if key in schema}


def without_any(schema: Any) -> Any:
    """Segment Protocols writes "any" (alone or in a list) where JSON Schema writes no
    `type` at all."""
    if isinstance(schema, list):
        return [without_any(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    kind = schema.get("type")
    drop = kind == "any" or (isinstance(kind, list) and "any" in kind)
    return {
        key: without_any(value) for key, value in schema.items() if not (drop and key == "type")
    }


# -- RudderStack data catalog YAML ----------------------------------------------------

RUDDER_KINDS = {"events": "events", "properties": "properties", "custom-types": "types"}
RUDDER_TOP_KEYS = ("version", "kind", "metadata", "spec")
# propConfig keys that are JSON Schema keywords as they are
RUDDER_CONFIG = (
    "enum",
    "minLength",
    "maxLength",
    "pattern",
    "format",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
    "minItems",
    "maxItems",
    "uniqueItems",
)


def rudder_plan(documents: list[tuple[Path, Any]], source: str) -> Plan:
    """A RudderStack data catalog: events, properties and custom types by `$ref`
    (`#/<kind>/<metadata.name>/<id>`), and tracking plans (`kind: tp`) of event rules,
    read from one file or from every YAML file of a folder."""
    problems = Problems(source)
    catalog: dict[str, dict[str, dict[str, Any]]] = {kind: {} for kind in RUDDER_KINDS}
    tracking_plans: list[tuple[Path, dict[str, Any]]] = []
    for path, document in documents:
        if not _is_rudder(document):
            problems.add(
                f"{path.name} is not a RudderStack catalog file (no `version: rudder/...`)."
            )
            continue
        unknown = [str(key) for key in document if key not in RUDDER_TOP_KEYS]
        if unknown:
            problems.add(f"{path.name} has unknown key(s) {', '.join(map(repr, unknown))}.")
        kind = document.get("kind")
        spec = document.get("spec") or {}
        group = (document.get("metadata") or {}).get("name", "")
        if kind == "tp":
            tracking_plans.append((path, spec))
        elif kind in RUDDER_KINDS:
            for item in spec.get(RUDDER_KINDS[kind]) or []:
                if isinstance(item, dict) and "id" in item:
                    catalog[kind][f"#/{kind}/{group}/{item['id']}"] = item
                else:
                    problems.add(f"{path.name}: an entry of {kind} has no `id`.")
        elif kind != "categories":
            problems.add(
                f"{path.name} has kind {kind!r}; a data catalog has events, properties, "
                "custom-types, categories and tp."
            )
    if not tracking_plans:
        problems.add("no tracking plan (`kind: tp`) among its files.")
    plan = Plan(source=source)
    for path, spec in tracking_plans:
        for index, rule in enumerate(spec.get("rules") or []):
            _rudder_rule(plan, rule, catalog, problems, f"{path.name} rule {index}")
    problems.raise_any()
    return plan


def _rudder_rule(
    plan: Plan,
    rule: Any,
    catalog: dict[str, dict[str, dict[str, Any]]],
    problems: Problems,
    where: str,
) -> None:
    if not isinstance(rule, dict) or rule.get("type", "event_rule") != "event_rule":
        problems.add(f"{where} is not an event_rule.")
        return
    event_spec = rule.get("event") or {}
    event = catalog["events"].get(event_spec.get("$ref", ""))
    if event is None:
        problems.add(f"{where} names the event {event_spec.get('$ref')!r}, which no file defines.")
        return
    name = str(event.get("name") or event.get("display_name") or event["id"])
    where = f"event {name!r}"
    schema = _rudder_object(rule.get("properties") or [], catalog, problems, where)
    for variant in rule.get("variants") or []:  # each case's properties: optional here
        for case in variant.get("cases") or []:
            extra = _rudder_object(case.get("properties") or [], catalog, problems, where)
            schema["properties"] = {**extra["properties"], **schema["properties"]}
    schema["additionalProperties"] = bool(event_spec.get("allow_unplanned", False))
    for problem in schema_problems(schema, where):
        problems.add(problem)
    call = event.get("event_type", "track")
    if call == "identify":
        plan.identify = {**schema, "additionalProperties": True}
    elif call in CALLS and (call == "track" or event.get("name") or event.get("display_name")):
        plan.events[(call, name)] = EventRule(call, name, schema)


def _rudder_object(
    entries: Any,
    catalog: dict[str, dict[str, dict[str, Any]]],
    problems: Problems,
    where: str,
) -> dict[str, Any]:
    """An object schema from a list of property references (nested ones too)."""
    schema: dict[str, Any] = {"type": "object", "properties": {}, "required": []}
    for entry in entries if isinstance(entries, list) else []:
        reference = entry.get("$ref", "") if isinstance(entry, dict) else ""
        prop = catalog["properties"].get(reference)
        if prop is None:
            problems.add(f"{where} uses the property {reference!r}, which no file defines.")
            continue
        key = str(prop.get("name") or prop.get("display_name") or prop["id"])
        rule = _rudder_type(prop, catalog, problems, f"{where} property {key!r}")
        if entry.get("properties"):
            nested = _rudder_object(entry["properties"], catalog, problems, where)
            rule = {**rule, "type": "object", "properties": nested["properties"]}
            if nested["required"]:
                rule["required"] = nested["required"]
        schema["properties"][key] = rule
        if entry.get("required"):
            schema["required"].append(key)
    return schema


def _rudder_type(
    definition: dict[str, Any],
    catalog: dict[str, dict[str, dict[str, Any]]],
    problems: Problems,
    where: str,
) -> dict[str, Any]:
    """A property's (or custom type's) JSON Schema: its type — a JSON type, several
    separated by commas, or a custom type's `$ref` — and its propConfig."""
    kind = str(definition.get("type") or "").strip()
    rule: dict[str, Any] = {}
    if kind.startswith("#/custom-types/"):
        custom = catalog["custom-types"].get(kind)
        if custom is None:
            problems.add(f"{where} has the custom type {kind!r}, which no file defines.")
            return {}
        rule = _rudder_type(custom, catalog, problems, where)
        if custom.get("properties"):
            nested = _rudder_object(custom["properties"], catalog, problems, where)
            rule.update(type="object", properties=nested["properties"])
    elif kind and kind != "any":
        types = [part.strip() for part in kind.split(",") if part.strip()]
        rule["type"] = types[0] if len(types) == 1 else types
    config = definition.get("propConfig") or definition.get("config") or {}
    rule.update({key: value for key, value in config.items() if key in RUDDER_CONFIG})
    item_types = config.get("itemTypes")
    if item_types:
        rule["items"] = {"type": item_types[0] if len(item_types) == 1 else list(item_types)}
    return rule


# -- writing a plan in each dialect (`plan infer --dialect`) -------------------------

DIALECTS = ("native", "segment", "rudderstack")


def written(native: dict[str, Any], dialect: str) -> str:
    """A native plan (as `plan infer` makes it) as the text of a plan in `dialect`:
    native YAML, Segment Protocols JSON (`rules[]`), or RudderStack YAML documents
    (properties, events and a tracking plan, in one stream)."""
    import yaml

    if dialect == "native":
        return str(yaml.safe_dump(native, sort_keys=False, allow_unicode=True))
    if dialect == "segment":
        return jsonio.dumps_indented(_as_segment(native)) + "\n"
    if dialect == "rudderstack":
        return str(yaml.safe_dump_all(_as_rudder(native), sort_keys=False, allow_unicode=True))
    raise PlanError(f"The dialect {dialect!r} is not one of {', '.join(DIALECTS)}.")


def _object_schema(props: dict[str, Any]) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": {}, "required": []}
    for name, spec in props.items():
        spec = {"type": spec} if isinstance(spec, str) else dict(spec or {})
        if spec.pop("required", False):
            schema["required"].append(name)
        spec.pop("pii", None)
        schema["properties"][name] = spec
    return schema


def _as_segment(native: dict[str, Any]) -> dict[str, Any]:
    draft = "http://json-schema.org/draft-07/schema#"
    rules: list[dict[str, Any]] = []
    for name, spec in native.get("events", {}).items():
        kind = {"track": "TRACK", "page": "PAGE", "screen": "SCREEN"}[spec.get("call", "track")]
        inner = _object_schema(spec.get("properties") or {})
        rules.append(
            {
                "key": name,
                "type": kind,
                "version": 1,
                "jsonSchema": {
                    "$schema": draft,
                    "type": "object",
                    "properties": {"context": {}, "traits": {}, "properties": inner},
                },
            }
        )
    if native.get("identify_traits"):
        traits = _object_schema(native["identify_traits"])
        rules.append(
            {
                "key": None,
                "type": "IDENTIFY",
                "version": 1,
                "jsonSchema": {
                    "$schema": draft,
                    "type": "object",
                    "properties": {"context": {}, "properties": {}, "traits": traits},
                },
            }
        )
    return {"display_name": "Inferred by cio-anon", "rules": rules}


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_") or "property"


def _unique_slug(name: str, taken: set[str]) -> str:
    """`name`'s slug, numbered when another name of the same kind took it first (`Blog
    Viewed` and `Blog viewed`, `page type` and `page_type`): a catalog finds each by
    its id."""
    slug = candidate = _slug(name)
    number = 1
    while candidate in taken:
        number += 1
        candidate = f"{slug}_{number}"
    taken.add(candidate)
    return candidate


def _as_rudder(native: dict[str, Any]) -> list[dict[str, Any]]:
    group = "inferred"
    properties: dict[str, dict[str, Any]] = {}
    events: list[dict[str, Any]] = []
    rules: list[dict[str, Any]] = []
    property_ids: set[str] = set()
    event_ids = {"identify"}  # (the traits' own event)

    def prop_ref(name: str, spec: Any) -> str:
        spec = {"type": spec} if isinstance(spec, str) else dict(spec or {})
        kinds = spec.get("type") or []
        kinds = [kinds] if isinstance(kinds, str) else list(kinds)
        if name not in properties:
            properties[name] = {
                "id": _unique_slug(name, property_ids),
                "name": name,
                "type": [],
                "description": "",
            }
        entry = properties[name]
        entry["type"] = sorted({*entry["type"], *kinds})
        return f"#/properties/{group}/{entry['id']}"

    def rule(event_id: str, props: dict[str, Any], unplanned: bool) -> dict[str, Any]:
        refs = []
        for name, spec in props.items():
            ref: dict[str, Any] = {"$ref": prop_ref(name, spec)}
            if isinstance(spec, dict) and spec.get("required"):
                ref["required"] = True
            refs.append(ref)
        return {
            "type": "event_rule",
            "id": f"{event_id}_rule",
            "event": {"$ref": f"#/events/{group}/{event_id}", "allow_unplanned": unplanned},
            "properties": refs,
        }

    for name, spec in native.get("events", {}).items():
        event_id = _unique_slug(name, event_ids)
        events.append({"id": event_id, "name": name, "event_type": spec.get("call", "track")})
        rules.append(rule(event_id, spec.get("properties") or {}, False))
    if native.get("identify_traits"):
        events.append({"id": "identify", "event_type": "identify"})
        rules.append(rule("identify", native["identify_traits"], True))
    for entry in properties.values():
        entry["type"] = ",".join(entry["type"])
    header = {"version": "rudder/v0.1"}
    return [
        {
            **header,
            "kind": "properties",
            "metadata": {"name": group},
            "spec": {"properties": list(properties.values())},
        },
        {**header, "kind": "events", "metadata": {"name": group}, "spec": {"events": events}},
        {
            **header,
            "kind": "tp",
            "metadata": {"name": group},
            "spec": {"id": "inferred", "display_name": "Inferred by cio-anon", "rules": rules},
        },
    ]
