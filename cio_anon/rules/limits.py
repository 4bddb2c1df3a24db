"""Customer.io's documented limits on one call: identifiers, attributes, events."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cio_anon import jsonio
from cio_anon.errors import InvalidInput, RuleViolation
from cio_anon.rules.codes import Rule

IDENTIFIER_MAX_BYTES = 150
ATTRIBUTE_NAME_MAX_BYTES = 150
ATTRIBUTE_VALUE_MAX_BYTES = 1000
ATTRIBUTES_PER_CALL_MAX = 300
EVENT_NAME_MAX_BYTES = 100
EVENT_DATA_MAX_BYTES = 100_000


def _size(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def _within(text: str, limit: int) -> bool:
    """Whether `text` is at most `limit` bytes: at once when it is short enough that
    it must be (a character is at most 4 bytes), else by encoding it."""
    return len(text) * 4 <= limit or _size(text) <= limit


def _too_big(what: str, size: int, limit: int) -> RuleViolation:
    return RuleViolation(
        Rule.LIMIT_EXCEEDED,
        f"The {what} is {size} bytes; Customer.io allows at most {limit} bytes.",
    )


def check_identifier_limit(value: str) -> None:
    if not _within(value, IDENTIFIER_MAX_BYTES):
        raise _too_big(f"identifier {value[:40]!r}...", _size(value), IDENTIFIER_MAX_BYTES)


def check_attribute_limits(attributes: Mapping[str, Any]) -> None:
    """Customer.io's limits on one identify: count, name length, value length."""
    if len(attributes) > ATTRIBUTES_PER_CALL_MAX:
        raise RuleViolation(
            Rule.LIMIT_EXCEEDED,
            f"The identify sets {len(attributes)} attributes; Customer.io allows at most "
            f"{ATTRIBUTES_PER_CALL_MAX} in one call.",
        )
    for name, value in attributes.items():
        if not name.strip():
            raise InvalidInput("An attribute name cannot be empty.")
        if not _within(name, ATTRIBUTE_NAME_MAX_BYTES):
            size = _size(name)
            raise _too_big(f"attribute name {name[:40]!r}...", size, ATTRIBUTE_NAME_MAX_BYTES)
        # measured as stored and sent: the text itself, or compact UTF-8 JSON
        try:
            text = value if isinstance(value, str) else jsonio.dumps(value)
        except TypeError as error:
            raise InvalidInput(
                f"The value of attribute {name!r} cannot be stored as JSON: {error}."
            ) from None
        if not _within(text, ATTRIBUTE_VALUE_MAX_BYTES):
            size = _size(text)
            raise _too_big(f"value of attribute {name!r}", size, ATTRIBUTE_VALUE_MAX_BYTES)


def check_event_limits(name: str, data_json: str, page: bool = False) -> None:
    """Customer.io's limits on one event: name length and data size (as JSON). A
    `page`'s name is its URL."""
    if not name:
        raise InvalidInput("An event needs a name.")
    if not _within(name, EVENT_NAME_MAX_BYTES):
        raise (
            _page_too_long(name)
            if page
            else _too_big(f"event name {name[:40]!r}...", _size(name), EVENT_NAME_MAX_BYTES)
        )
    if not _within(data_json, EVENT_DATA_MAX_BYTES):
        raise _too_big(f"data of event {name!r}", _size(data_json), EVENT_DATA_MAX_BYTES)


def _page_too_long(name: str) -> RuleViolation:
    """A page's name over the limit, said as a page (its URL is its event's name, which
    a developer did not write), with what its URL is without the query string: campaign
    parameters are what most often take a page over."""
    message = (
        f"The page {name[:60]!r}... is {_size(name)} bytes: Customer.io names a page's event "
        f"by its URL and allows at most {EVENT_NAME_MAX_BYTES} bytes."
    )
    address, query, _ = name.partition("?")
    if query and _within(address, EVENT_NAME_MAX_BYTES):
        message += (
            f" Without its query string the URL is {_size(address)} bytes (the browser SDKs "
            "send the query as properties.search, and its utm_ parameters as "
            "context.campaign, as well)."
        )
    return RuleViolation(Rule.LIMIT_EXCEEDED, message)
