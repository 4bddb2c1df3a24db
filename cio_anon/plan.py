"""Tracking plans: a native YAML dialect and Segment Protocols JSON (the Public API
`rules[]` form and the legacy `rules.events` form), normalised to one model: a JSON
Schema per call type and event name, plus common properties, identify traits and
naming conventions. Loading compiles every schema, so a broken plan fails early."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cio_anon import jsonio
from cio_anon.errors import CioAnonError

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


class PlanError(CioAnonError):
    """A plan that cannot be used (exit code 2)."""


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

    def rule_for(self, call: str, name: str) -> EventRule | None:
        return self.events.get((call, name))

    def plans_call(self, call: str) -> bool:
        """Whether the plan lists any event of this call type (pages are often unplanned)."""
        return any(key[0] == call for key in self.events)

    def is_pii(self, call: str, name: str, prop: str) -> bool:
        rule = self.rule_for(call, name)
        return prop in self.pii or (rule is not None and prop in rule.pii)


def load_plan(path: Path) -> Plan:
    """Read a plan file, guessing the dialect from its content."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PlanError(f"The plan {path} does not exist.") from None
    except (OSError, UnicodeDecodeError) as error:
        raise PlanError(f"The plan {path} cannot be read: {error}.") from None
    if path.suffix.lower() in (".yaml", ".yml"):
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise PlanError(
                f"The plan {path} is not valid YAML: {error}".rstrip(".") + "."
            ) from None
        return native_plan(data, str(path))
    try:
        data = jsonio.loads(text)
    except jsonio.JSONDecodeError as error:
        raise PlanError(f"The plan {path} is not valid JSON: {error}.") from None
    return segment_plan(data, str(path))


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


def native_plan(data: Any, source: str) -> Plan:
    if not isinstance(data, dict) or data.get("dialect", "cio-anon") != "cio-anon":
        raise PlanError(
            f"The plan {source} is not a cio-anon plan (expected a mapping with "
            "`events`, or a Segment Protocols JSON file)."
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
    """Check that a JSON Schema compiles; PlanError if not."""
    from jsonschema import exceptions, validators

    try:
        validators.validator_for(schema).check_schema(schema)
    except exceptions.SchemaError as error:
        raise PlanError(
            f"{source}: the schema of {where} does not compile: {error.message}."
        ) from None
    return schema


# -- Segment Protocols JSON ---------------------------------------------------------

SEGMENT_TYPES = {"TRACK": "track", "PAGE": "page", "SCREEN": "screen"}


def segment_plan(data: Any, source: str) -> Plan:
    if not isinstance(data, dict) or "rules" not in data:
        raise PlanError(
            f"The plan {source} is neither a cio-anon YAML plan nor a Segment "
            "Protocols tracking plan (no `rules`)."
        )
    plan = Plan(source=source)
    rules = data["rules"]
    if isinstance(rules, dict):  # the legacy export: rules.events, rules.identify, ...
        for event in rules.get("events") or []:
            _segment_event(plan, "TRACK", event, source)
        if isinstance(rules.get("identify"), dict):
            plan.identify = _segment_schema(rules["identify"], source, "identify")
        if isinstance(rules.get("global"), dict):
            plan.common = _segment_schema(rules["global"], source, "global")
        return plan
    if not isinstance(rules, list):
        raise PlanError(f"{source}: `rules` must be a list or an object.")
    for rule in rules:
        if not isinstance(rule, dict):
            raise PlanError(f"{source}: every rule must be an object.")
        kind = rule.get("type")
        if kind in SEGMENT_TYPES:
            _segment_event(plan, kind, rule, source)
        elif kind == "IDENTIFY":
            plan.identify = _segment_schema(rule, source, "identify")
        elif kind == "COMMON":
            plan.common = _segment_schema(rule, source, "common")
        elif kind != "GROUP":
            raise PlanError(
                f"{source}: rule type {kind!r} is not TRACK, IDENTIFY, PAGE, "
                "SCREEN, GROUP or COMMON."
            )
    return plan


def _segment_event(plan: Plan, kind: str, rule: dict[str, Any], source: str) -> None:
    name = rule.get("key") or rule.get("name")
    if not isinstance(name, str) or not name:
        raise PlanError(f"{source}: a {kind} rule has no `key`.")
    schema = _segment_schema(rule, source, name)
    call = SEGMENT_TYPES[kind]
    plan.events[(call, name)] = EventRule(call, name, schema)


def _segment_schema(rule: dict[str, Any], source: str, where: str) -> dict[str, Any]:
    """The properties schema of a Segment rule (its jsonSchema's `properties.properties`
    when the schema describes the whole message, else the schema itself)."""
    schema = rule.get("jsonSchema", rule.get("rules"))
    if schema is None:
        return {"type": "object"}
    if not isinstance(schema, dict):
        raise PlanError(f"{source}: the jsonSchema of {where} must be an object.")
    inner = schema.get("properties", {})
    for key in ("properties", "traits", "context"):
        if isinstance(inner, dict) and isinstance(inner.get(key), dict) and key != "context":
            schema = inner[key]
            break
    return _compiled(schema, source, where)
