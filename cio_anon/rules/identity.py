"""Who a call names: identifier kinds, email keys, placeholder ids, and whom a Data
Pipelines message names. Each rule stands in its Python form and, where `audit`'s SQL
needs its own, in its SQL form beside it."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from enum import StrEnum

from cio_anon.errors import InvalidInput
from cio_anon.rules.limits import check_identifier_limit


class IdentifierKind(StrEnum):
    CIO_ID = "cio_id"
    EMAIL = "email"
    ID = "id"


def resolve_identifier(value: str) -> tuple[IdentifierKind, str]:
    """Read one identifier string as Customer.io does: `cio_<x>`, an email, or an id."""
    text = value.strip()
    if not text:
        raise InvalidInput("An identifier cannot be empty.")
    check_identifier_limit(text)
    if text.startswith("cio_") and len(text) > 4:
        return IdentifierKind.CIO_ID, text[4:]
    if "@" in text:
        return IdentifierKind.EMAIL, text
    return IdentifierKind.ID, text


def cio_id_of(number: int) -> str:
    """The cio_id of the `number`th person a workspace created (from 1): sequential, so
    replays give the same ids."""
    return f"{number:08x}"


def email_key(email: str) -> str:
    """Emails are unique and compared case-insensitively (`fold`)."""
    return fold(email)


def fold(value: str) -> str:
    """The key under which identifiers compare case-insensitively (emails, placeholder
    ids): stripped and case-folded, so `Straße@x.com` and `STRASSE@x.com` are one."""
    return value.strip().casefold()


def stripped(value: str) -> str | None:
    """An id as a call's field gives it: stripped, and nothing when nothing is left."""
    return value.strip() or None


def message_person(
    kind: str, user_id: str | None, anonymous_id: str | None, email: object
) -> str | None:
    """Whom a Data Pipelines message names: its userId; an identify without one names
    the person of its traits.email, unless it carries an anonymousId — then it is traits
    for that anonymous id and names no one."""
    if user_id:
        return user_id
    if kind == "identify" and not anonymous_id and isinstance(email, str):
        return email or None
    return None


PLACEHOLDER_IDS = frozenset(
    {
        "anonymous",
        "null",
        "undefined",
        "none",
        "nil",
        "0",
        "-1",
        "guest",
        "unknown",
        "n/a",
        "na",
        "test",
        "user",
        "false",
        "true",
        "nan",
        "[object object]",
    }
)
"""Identifier values that are a client's bug, not an identity (compared folded)."""
ZERO_UUID = "0{8}-?0{4}-?0{4}-?0{4}-?0{12}"
"""The all-zero UUID (a client's default), with or without its dashes."""
PLACEHOLDER = "|".join([re.escape(value) for value in sorted(PLACEHOLDER_IDS)] + [ZERO_UUID])
"""A placeholder's folded form, as one regular expression (in the syntax Python, RE2 and
Java share: `re.escape` escapes only punctuation and white space, which all three read
as themselves), which the SQL form matches too: one test, where a list of 17 values
written as SQL's `IN` becomes a join in DuckDB's plan (one that, while the exports are
read, let rows out of file order)."""


def is_placeholder(value: str) -> bool:
    """Whether an identifier is a placeholder, not a person's id."""
    return re.fullmatch(PLACEHOLDER, fold(value)) is not None


# -- the same rules as SQL, for the set-based engines ---------------------------------
#
# `audit`'s engines (DuckDB, Spark) stage millions of messages in SQL. Each form below
# answers as the Python function above it does: SQL's trim and lower are Python's strip
# and casefold on printable ASCII (`PLAIN`); a value outside it (rare: a Unicode email,
# a tab) is looked up in a table the engine fills with the Python forms themselves
# (`outside_plain`), so no second definition of folding exists.

PLAIN = "[ -~]*"
"""Printable ASCII, where SQL's trim and lower answer as Python's strip and casefold."""
OUTSIDE_PLAIN = "cio_outside_plain"
"""The table of values outside PLAIN with their Python forms: value, folded, stripped."""
OUTSIDE_PLAIN_COLUMNS = "cio_value STRING, cio_folded STRING, cio_stripped STRING"
"""(Named so that no column of the tables it is looked up from can shadow them.)"""

Matches = Callable[[str, str], str]
"""An engine's SQL for `text` matching a regular expression whole."""


def outside_plain(values: Iterable[str]) -> list[tuple[str, str, str | None]]:
    """The rows of OUTSIDE_PLAIN for these values (and their stripped forms, which the
    SQL forms meet too)."""
    found = {form for value in values for form in (value, value.strip())}
    return [(value, fold(value), stripped(value)) for value in sorted(found)]


def _python_form(column: str, text: str) -> str:
    return f"(SELECT max(cio_{column}) FROM {OUTSIDE_PLAIN} WHERE cio_value = {text})"


def _trimmed(text: str) -> str:
    """SQL: `trim(text)`, which makes a new string of every value, called only on those
    beginning or ending with a space (the few it changes): the same value, at a fifth of
    the cost (on DuckDB, 60M ids trimmed: 2.3 s; tested first: 0.5 s)."""
    return f"(CASE WHEN {text} LIKE ' %' OR {text} LIKE '% ' THEN trim({text}) ELSE {text} END)"


def fold_sql(text: str, matches: Matches, *, all_plain: bool = False) -> str:
    """SQL: `fold(text)`; `all_plain`: every identifier of the data is PLAIN (OUTSIDE_PLAIN
    is empty), so SQL's own functions answer without a test."""
    if all_plain:
        return f"lower({_trimmed(text)})"
    return (
        f"(CASE WHEN {matches(text, PLAIN)} THEN lower({_trimmed(text)}) "
        f"ELSE {_python_form('folded', text)} END)"
    )


def stripped_sql(text: str, matches: Matches, *, all_plain: bool = False) -> str:
    """SQL: `stripped(text)` (`all_plain`: as for `fold_sql`)."""
    if all_plain:
        return f"nullif({_trimmed(text)}, '')"
    return (
        f"(CASE WHEN {matches(text, PLAIN)} THEN nullif({_trimmed(text)}, '') "
        f"ELSE {_python_form('stripped', text)} END)"
    )


def kind_sql(text: str) -> str:
    """SQL: `resolve_identifier(text)`'s kind, for a stripped identifier."""
    cio_id, email, id_ = IdentifierKind.CIO_ID, IdentifierKind.EMAIL, IdentifierKind.ID
    return (
        f"(CASE WHEN left({text}, 4) = 'cio_' AND length({text}) > 4 THEN '{cio_id}' "
        f"WHEN {text} LIKE '%@%' THEN '{email}' ELSE '{id_}' END)"
    )


def may_not_be_id_sql(text: str) -> str:
    """SQL: whether an identifier, as sent, may name someone by email or cio_id: false only
    where `resolve_identifier` of its stripped form surely gives an ID (what `kind_sql`
    tells apart is inside a value, and stripping takes nothing from inside): a cheap test
    on the value itself, before any form of it is made."""
    return f"({text} LIKE '%@%' OR {text} LIKE '%cio%')"


def cio_id_of_sql(number: str) -> str:
    """SQL: `cio_id_of(number)`."""
    digits = f"lower(hex({number}))"
    return f"(CASE WHEN length({digits}) >= 8 THEN {digits} ELSE lpad({digits}, 8, '0') END)"


def message_person_sql(identifies: str, user_id: str, anonymous_id: str, email: str) -> str:
    """SQL: `message_person`, over stripped fields (`identifies`: SQL of whether the
    message is an identify, where the Python form takes its type)."""
    return (
        f"coalesce({user_id}, CASE WHEN {identifies} AND {anonymous_id} IS NULL THEN {email} END)"
    )


def is_placeholder_sql(text: str, matches: Matches, *, all_plain: bool = False) -> str:
    """SQL: `is_placeholder(text)` (`all_plain`: as for `fold_sql`)."""
    return matches(fold_sql(text, matches, all_plain=all_plain), PLACEHOLDER)
