"""What every engine reads from a record — the paths (`reader_paths`), as typed columns
for DuckDB (`typed_columns`), the staged fields made of them (`staged_columns`) — and
the checks built from it: times that are none (`unreadable_time`), the cheap limit
pre-check (`suspect`), and keys given twice (`given_twice`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from cio_anon import rules
from cio_anon.audit.exports import AuditError


class Dialect(Protocol):
    """The SQL pieces the checks here take from an engine (`engines.Engine`)."""

    def size(self, text: str) -> str: ...

    def longest_key(self, json_object: str) -> str: ...

    def keys_among(self, json: str, parent: str, keys: Sequence[str]) -> tuple[str, str]: ...


def quoted(text: str) -> str:
    """A text as an SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


# The fields every engine stages, from each record's JSON (path → column).
FIELDS = {
    "op": "$.op",
    "method": "$.method",
    "type": "$.type",
    "user_id": "$.userId",
    "anonymous_id": "$.anonymousId",
    "message_id": "$.messageId",
    "trait_email": "$.traits.email",
    "event": "$.event",
    "source": "$.context.library.name",
    "anonymous_merge": "$.anonymous_merge",
    "created_at": "$.created_at",
}


DATA = {"data": "$.properties"}
"""An event's data (what its limit is on), where a reader can see its size."""
TIMES = {"at": "$.at", "received": "$.receivedAt", "timestamp": "$.timestamp"}
"""The times a record may give (name → path): a replay's `at`, then Data Pipelines'."""


# What the limit pre-check reads from each record (path → name), not kept in `staged`.
LIMITED = {
    "url": "$.properties.url",
    "name": "$.name",
    "traits": "$.traits",
    "context_traits": "$.context.traits",
}
CONTEXT_EMAIL = {"context_email": "$.context.traits.email"}
"""RudderStack's SDKs send an identify's traits in `context.traits`: its email, read
where a message has no `traits` (as `parse_message` reads it)."""


def reader_paths(lined: bool = False) -> dict[str, str]:
    """Every path an engine reads from a record (name → JSON path): the FIELDS, the
    TIMES, what LIMITED checks, CONTEXT_EMAIL, and a recording's `_line` if `lined`."""
    line = {"_line": "$._line"} if lined else {}
    return {**FIELDS, **TIMES, **LIMITED, **CONTEXT_EMAIL, **line}


def staged_columns(field: Callable[[str], str]) -> str:
    """SQL: the FIELDS as `staged` keeps them, from each path's value (`field`)."""

    def column(name: str) -> str:
        if name == "trait_email":  # a message without traits: its context's, if any
            traits, email = field("traits"), field("trait_email")
            return f"CASE WHEN {traits} IS NULL THEN {field('context_email')} ELSE {email} END"
        return field(name)

    return ", ".join(f"{column(name)} AS {name}" for name in FIELDS)


def read_objects(paths: dict[str, str]) -> dict[str, list[str]]:
    """The JSON objects a reader looks into (as JSON paths, the record itself first)
    and, in each, the keys it reads."""
    objects: dict[str, list[str]] = {}
    for path in paths.values():
        *parents, key = path.removeprefix("$.").split(".")
        for depth in range(len(parents) + 1):
            inner = [*parents[:depth], key][-1] if depth == len(parents) else parents[depth]
            parent = ".".join(["$", *parents[:depth]])
            if inner not in objects.setdefault(parent, []):
                objects[parent].append(inner)
    return objects


def repeated_key(text: str, objects: dict[str, list[str]]) -> str | None:
    """The first key of `objects` (see `read_objects`) that a record's JSON text gives
    twice in one object, as a dotted path."""
    import json

    tree = json.loads(text, object_pairs_hook=tuple)  # an object: its pairs, every key kept
    for parent, keys in objects.items():
        node: Any = tree
        for part in parent.split(".")[1:]:
            node = (
                next((value for name, value in node if name == part), None)
                if isinstance(node, tuple)
                else None
            )
        if isinstance(node, tuple):
            names = [name for name, _ in node if name in keys]
            twice = next((name for name in names if names.count(name) > 1), None)
            if twice is not None:
                return ".".join([*parent.split(".")[1:], twice])
    return None


def given_twice(db: Dialect, json: str, objects: dict[str, list[str]]) -> str:
    """SQL: whether a record's JSON text gives a key of `objects` (`read_objects`) twice
    in one object. SQL reads such a key's first value and a replay its last, so such a
    record is refused (`refuse_repeated`), not guessed at."""
    counts = [db.keys_among(json, parent, keys) for parent, keys in objects.items()]
    return "(" + " OR ".join(f"coalesce({n} > {distinct}, false)" for n, distinct in counts) + ")"


def refuse_repeated(file: str, record: object, text: str, objects: dict[str, list[str]]) -> None:
    """Refuse a record `given_twice` found, naming the key."""
    raise AuditError(
        f"{file}: record {record} gives {repeated_key(text, objects)!r} twice, and audit "
        "cannot tell which a replay reads (its last): send each key once, or replay the "
        "file with `cio-anon replay`."
    )


def typed_columns(paths: dict[str, str]) -> tuple[str, Callable[[str], str]]:
    """DuckDB `read_json` columns for these paths (its `columns` argument) and, by
    name, the SQL for each path's value over them — the value `json_extract_string`
    takes out of the record's text. A field read only whole is VARCHAR (an object or
    array as its JSON text), one only looked into a STRUCT of what is looked at, one
    both read whole and looked into is JSON, looked into by `json_extract_string`.
    DuckDB refuses a file whose records give a key of a VARCHAR or STRUCT twice; a key
    looked into in JSON given twice is refused by `error()`."""
    keys = {name: path.removeprefix("$.").split(".") for name, path in paths.items()}

    def kind(below: list[list[str]]) -> str:
        if all(not rest for rest in below):
            return "VARCHAR"
        if any(not rest for rest in below):
            return "JSON"
        fields: dict[str, list[list[str]]] = {}
        for rest in below:
            fields.setdefault(rest[0], []).append(rest[1:])
        inner = {key: kind(paths) for key, paths in fields.items()}
        if "JSON" in inner.values():  # a STRUCT is only walked into, to its VARCHARs
            return "JSON"
        return "STRUCT(" + ", ".join(f'"{key}" {type_}' for key, type_ in inner.items()) + ")"

    tops: dict[str, list[list[str]]] = {}
    for path in keys.values():
        tops.setdefault(path[0], []).append(path[1:])
    kinds = {top: kind(below) for top, below in tops.items()}
    spec = "{" + ", ".join(f"{quoted(top)}: {quoted(kinds[top])}" for top in tops) + "}"

    def field(name: str) -> str:
        top, *rest = keys[name]
        if kinds[top] != "JSON":
            return ".".join(f'"{key}"' for key in (top, *rest))
        value = f'json_extract_string("{top}", {quoted(".".join(["$", *rest]))})'
        if not rest:
            return value
        # DuckDB reads the first of a repeated key, a replay the last: the file is left
        # to the other reader, which refuses it with a sentence (`read_objects`)
        parent, key = quoted(".".join(["$", *rest[:-1]])), quoted(rest[-1])
        return (
            f'(CASE WHEN len(list_filter(json_keys("{top}", {parent}), lambda k: k = {key})) > 1 '
            f"THEN error('a key given twice') ELSE {value} END)"
        )

    return spec, field


def unreadable_time(given: str, received: str, stamp: str, happened: str) -> str:
    """SQL: whether a record gives a receive time or a timestamp that is not a time (a
    replay refuses such a record)."""
    return (
        f"(({given}) IS NOT NULL AND ({received}) IS NULL) "
        f"OR (({stamp}) IS NOT NULL AND ({happened}) IS NULL)"
    )


def suspect(db: Dialect, field: Callable[[str], str], data: str) -> str:
    """SQL: whether a record might break one of Customer.io's limits on a call (ids,
    event names, data, attribute names and values), from its fields, `data` telling
    whether its data may be beyond its limit (the reader knows how). Cheap and generous:
    `refusals` then checks the few it flags exactly, with the very checks a replay
    runs."""
    size = db.size
    checks = [
        f"{size(field(name))} > {rules.IDENTIFIER_MAX_BYTES}"
        for name in ("user_id", "anonymous_id", "message_id")
    ]
    checks += [
        f"{size(field(name))} > {rules.EVENT_NAME_MAX_BYTES}" for name in ("event", "url", "name")
    ]
    checks.append(data)
    # an attribute's name or value beyond its limit needs traits beyond it (an
    # identify's, or its context's)
    name_limit, value_limit = rules.ATTRIBUTE_NAME_MAX_BYTES, rules.ATTRIBUTE_VALUE_MAX_BYTES
    for traits in (field("traits"), field("context_traits")):
        checks.append(
            f"(CASE WHEN {size(traits)} > {name_limit} THEN "
            f"{size(traits)} > {value_limit} OR {db.longest_key(traits)} > {name_limit} END)"
        )
    return "(" + " OR ".join(f"coalesce({check}, false)" for check in checks) + ")"
