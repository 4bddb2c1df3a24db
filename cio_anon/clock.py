"""Parse TIME values and decide what "now" is for a command.

A TIME is ISO-8601 (a value without an offset is UTC) or Unix seconds, given as a
number or a numeric string. Everything is returned as an aware UTC `datetime`: pendulum
parses the ISO-8601 forms the standard library does not (week dates, ordinal dates,
`20260301T2014`), but instants are plain datetimes and the rules' durations plain
timedeltas (pendulum's own objects cost twenty times more to create and add to, which
the replay hot path cannot afford). pendulum is imported on the first such value, so
most commands never pay for it.
"""

from __future__ import annotations

import math
import os
import re
from datetime import UTC, datetime

from cio_anon.errors import InvalidInput

NOW_ENV = "CIO_ANON_NOW"

# Year 1970 to year 9999: anything outside is a mistake (often milliseconds).
_MIN_SECONDS = 0.0
_MAX_SECONDS = 253_402_300_799.0
# A time of day alone would be read against today's date: a TIME must start with a date.
_STARTS_WITH_DATE = re.compile(r"^\d{4}-?(\d{2}|W\d{2})")


def from_unix(seconds: float) -> datetime:
    """A UTC datetime from Unix seconds."""
    return datetime.fromtimestamp(seconds, UTC)


def to_unix(moment: datetime) -> float | int:
    """Unix seconds, as an int when the moment falls on a whole second."""
    value = moment.timestamp()
    return int(value) if value.is_integer() else value


def parse_time(value: object, *, what: str = "time") -> datetime:
    """Parse Unix seconds (int, float, numeric string) or ISO-8601 into UTC.

    Raises InvalidInput naming `what` when the value is not a usable time.
    """
    if type(value) is int and 0 <= value <= _MAX_SECONDS:  # the common case, at once
        return datetime.fromtimestamp(value, UTC)
    if type(value) is str and value[4:5] == "-":  # ISO-8601 (no number has a dash there)
        return _from_iso(value.strip(), what)
    if isinstance(value, bool):
        raise InvalidInput(f"The {what} {value!r} is not a time: use ISO-8601 or Unix seconds.")
    if isinstance(value, int | float):
        return _from_seconds(float(value), what, value)
    if isinstance(value, str):
        text = value.strip()
        if not text:
            raise InvalidInput(f"The {what} is empty: use ISO-8601 or Unix seconds.")
        try:
            seconds = float(text)
        except ValueError:
            return _from_iso(text, what)
        return _from_seconds(seconds, what, value)
    raise InvalidInput(f"The {what} {value!r} is not a time: use ISO-8601 or Unix seconds.")


def _from_seconds(seconds: float, what: str, original: object) -> datetime:
    if not math.isfinite(seconds):
        raise InvalidInput(f"The {what} {original!r} is not a finite number of seconds.")
    if not _MIN_SECONDS <= seconds <= _MAX_SECONDS:
        hint = " (it looks like milliseconds)" if seconds > _MAX_SECONDS else ""
        raise InvalidInput(
            f"The {what} {original!r} is outside 1970-01-01..9999-12-31 in Unix seconds{hint}."
        )
    return from_unix(seconds)


def _from_iso(text: str, what: str) -> datetime:
    if _STARTS_WITH_DATE.match(text):
        try:  # the common forms (2026-03-01T20:14:00Z, +02:00, .123) parse natively
            native = datetime.fromisoformat(text)
        except ValueError:
            pass
        else:
            moment = native if native.tzinfo else native.replace(tzinfo=UTC)
            if moment.tzinfo is UTC and 1970 <= moment.year < 9999:
                return moment  # what the SDKs send, at once
            _from_seconds(moment.timestamp(), what, text)  # refuses one out of range
            return moment.astimezone(UTC)  # exact: seconds as a float lose microseconds
    import pendulum  # noqa: PLC0415 (only for the rarer ISO-8601 forms)

    parsed: object = None
    if _STARTS_WITH_DATE.match(text):
        try:
            parsed = pendulum.parse(text, tz="UTC")
        except (ValueError, TypeError, OverflowError):
            parsed = None
    if not isinstance(parsed, pendulum.DateTime):
        raise InvalidInput(f"The {what} {text!r} is not ISO-8601 or Unix seconds.")
    return _from_seconds(parsed.timestamp(), what, text)


def resolve_now(at: str | None, environ: dict[str, str] | None = None) -> datetime:
    """The receive time of a command: `--at`, else CIO_ANON_NOW, else the real UTC time."""
    env = os.environ if environ is None else environ
    if at is not None:
        return parse_time(at, what="--at time")
    if env.get(NOW_ENV):
        return parse_time(env[NOW_ENV], what=f"{NOW_ENV} time")
    return datetime.now(UTC)


def to_iso(moment: datetime) -> str:
    """ISO-8601 in UTC with a `Z`, with microseconds only when there are any."""
    text = (moment if moment.tzinfo is UTC else moment.astimezone(UTC)).isoformat()
    text = text.removesuffix("+00:00")
    return f"{text}Z"
