"""What every engine reads from a record — the paths (`reader_paths`) and the staged
fields made of them (`staged_fields`) — and the checks built from it: times that are
none (`unreadable_time`), the cheap limit pre-check (`suspect`), and keys given twice
(`given_twice`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from cio_anon import rules
from cio_anon.audit.exports import AuditError
from cio_anon.ingest.pipelines import identify_email_sql, placed_message_sql
from cio_anon.rules import identity


class Dialect(Protocol):
    """The SQL pieces the checks here take from an engine (`engines.Engine`)."""

    def matches(self, text: str, pattern: str) -> str: ...

    def size(self, text: str) -> str: ...

    def longest_key(self, json_object: str) -> str: ...

    def gives_twice(self, json: str, parent: str, keys: Sequence[str]) -> str: ...


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
"""The email of `context.traits`, where RudderStack's SDKs send an identify's traits
(`identify_email_sql`)."""


def reader_paths(lined: bool = False) -> dict[str, str]:
    """Every path an engine reads from a record (name → JSON path): the FIELDS, the
    TIMES, what LIMITED checks, CONTEXT_EMAIL, and a recording's `_line` if `lined`."""
    line = {"_line": "$._line"} if lined else {}
    return {**FIELDS, **TIMES, **LIMITED, **CONTEXT_EMAIL, **line}


def staged_fields(field: Callable[[str], str]) -> dict[str, str]:
    """SQL of each column `staged` keeps from the FIELDS (column → SQL), from each path's
    value (`field`). Of the type and the event's name only what the steps ask is kept, a
    byte each where a name takes 16: whether the message is an identify (`identifies`),
    and whether it is a call placement looks at (`placed`: `placed_message_sql`)."""
    columns = {name: field(name) for name in FIELDS}
    # as `parse_message` reads an identify's traits
    columns["trait_email"] = identify_email_sql(
        field("traits"), field("trait_email"), field("context_email")
    )
    message_type = columns.pop("type")
    columns["identifies"] = f"({message_type} = 'identify')"
    columns["placed"] = placed_message_sql(message_type, columns.pop("event"))
    return columns


IDENTIFIERS = ("user_id", "anonymous_id", "message_id", "trait_email")
"""The staged columns holding identifiers, which the identity forms read
(`identity.fold_sql`, `identity.stripped_sql`)."""
PERSON_IDS = ("user_id", "anonymous_id")
"""The staged identifiers a placeholder is looked for in (`findings`)."""


def odd_ids(db: Dialect) -> str:
    """SQL over a staged row's columns: whether an identifier of it is outside
    `identity.PLAIN` (whose Python forms `stage` looks up) or one of PERSON_IDS is a
    placeholder (which `findings` counts). Each engine stores it with every row as it
    reads it (column `odd_ids`), and those two steps read only the rows it flags: one
    boolean a row, instead of every identifier read again (at 20,000,000 records, out
    of memory, the identifiers read back took seconds a step). A value outside PLAIN is
    flagged whatever it folds to, so the placeholder's short form is exact where it is
    used."""
    outside = " OR ".join(f"NOT {db.matches(column, identity.PLAIN)}" for column in IDENTIFIERS)
    placeholder = " OR ".join(
        identity.is_placeholder_sql(column, db.matches, all_plain=True) for column in PERSON_IDS
    )
    return f"coalesce({outside} OR {placeholder}, false)"


def staged_columns(field: Callable[[str], str]) -> str:
    """SQL: the columns of `staged_fields`, as a SELECT list."""
    return ", ".join(f"{sql} AS {name}" for name, sql in staged_fields(field).items())


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
    twice = [db.gives_twice(json, parent, keys) for parent, keys in objects.items()]
    return "(" + " OR ".join(f"coalesce({check}, false)" for check in twice) + ")"


def refuse_repeated(file: str, record: object, text: str, objects: dict[str, list[str]]) -> None:
    """Refuse a record `given_twice` found, naming the key."""
    raise AuditError(
        f"{file}: record {record} gives {repeated_key(text, objects)!r} twice, and audit "
        "cannot tell which a replay reads (its last): send each key once, or replay the "
        "file with `cio-anon replay`."
    )


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
