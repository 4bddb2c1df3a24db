"""JSON in and out, with orjson: replay parses and stores a JSON document per event,
and orjson does both several times faster than the standard library. It refuses
NaN, infinities, lone surrogates and integers beyond 64 bits, as storage should."""

from __future__ import annotations

import json
from typing import Any

import orjson

JSONDecodeError = orjson.JSONDecodeError


_DIGITS = bytes(48 if 48 <= byte <= 57 else 32 for byte in range(256))
"""Every digit as `0`, anything else as a space: twenty `0`s in a row after it mark a
possible integer orjson would read as a float (translate and a substring search cost a
fraction of a parse; a regular expression cost four parses)."""
_LONG_NUMBER = b"0" * 20


def loads(text: str | bytes) -> Any:
    """Parse JSON; raises ValueError (orjson.JSONDecodeError) when it is not valid, or
    when it holds an integer beyond 64 bits (orjson would turn it into a float, silently
    changing the value)."""
    value = orjson.loads(text)
    raw = text.encode() if isinstance(text, str) else text
    if len(raw) >= 20 and _LONG_NUMBER in raw.translate(_DIGITS):
        document = raw.decode()

        def exact(digits: str) -> int:
            if not -(2**63) <= int(digits) < 2**64:
                raise orjson.JSONDecodeError(
                    f"the integer {digits} is beyond 64 bits (send it as a string)",
                    document,
                    document.find(digits),
                )
            return int(digits)

        json.loads(document, parse_int=exact)  # the slow reader, only where it matters
    return value


def dumps(value: Any) -> str:
    """Compact JSON text; raises TypeError for what JSON cannot carry."""
    return orjson.dumps(value).decode()


def dumps_indented(value: Any) -> str:
    """JSON for people to read: two-space indent, non-ASCII as is, no trailing newline."""
    return orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()
