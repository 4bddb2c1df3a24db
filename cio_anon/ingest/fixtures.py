"""Fixture files: NDJSON or one JSON array of records, each turned into timed operations.

A record is an HTTP call (`method`, `path`, `body`, `at`), a bare Data Pipelines
message, or a control record (`op`: purge, settings, expect). Its receive time is
`at`, else `receivedAt`, else `timestamp`; control records without one happen at the
previous record's time (the first one, at the command's time). A call `serve --record`
kept though it refused it says why (`refused`: see `refused_when_recorded`).
"""

from __future__ import annotations

import contextlib
import glob
import gzip
import json
import sys
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

from cio_anon import jsonio
from cio_anon.clock import parse_time
from cio_anon.errors import InvalidInput
from cio_anon.ingest import (
    ChangeSettings,
    Expect,
    Operation,
    Purge,
    Timed,
    pipelines,
    require_object,
    track_v1,
    track_v2,
)


@dataclass(slots=True)
class Record:
    """One record of a fixture file: its line, and its value or what is wrong with it.

    Not frozen, though nothing changes one: a replay makes millions, and a frozen
    dataclass takes three times as long to make."""

    line: int
    value: object = None
    error: str | None = None
    size: int = 0
    """Its bytes in the file (a progress bar counts them)."""
    raw: bytes | None = None
    """The NDJSON line it was read from (None for an element of a JSON array)."""

    def let_go(self) -> None:
        """Drop the parsed value, keeping the line to read it again from (`parsed`): for
        whoever holds many records a while (a line's bytes are one object, its value may
        be dozens). A record with no line to read again keeps its value."""
        if self.raw is not None:
            self.value = None

    def parsed(self) -> Record:
        """The record with its value: itself, or read again from its line (`let_go`)."""
        if self.value is not None or self.raw is None or self.error is not None:
            return self
        return _line(self.line, self.raw)


STDIN = Path("-")
"""The path that names standard input."""


def display_name(path: Path) -> str:
    """How a fixture path is named in `FILE:LINE` messages."""
    return "<stdin>" if path == STDIN else str(path)


def files_named(patterns: Sequence[str], suffixes: tuple[str, ...], what: str) -> list[Path]:
    """The files that paths, globs and folders name (a folder: every file under it whose
    name ends in one of `suffixes`, as a day-partitioned archive lays them out), each in
    name order; `what` names them in the sentence when there are none."""
    found: list[Path] = []
    for pattern in patterns:
        path = Path(pattern)
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.name.endswith(suffixes))
        elif any(char in pattern for char in "*?["):
            found += sorted(Path(p) for p in glob.glob(pattern, recursive=True))
        elif path.exists():
            found.append(path)
        else:
            raise InvalidInput(f"{pattern}: no such file or folder.")
    if not found:
        raise InvalidInput(f"No {what} in {', '.join(patterns)}.")
    return found


def read_document(path: Path, kind: str, version: int, written_by: str) -> dict[str, Any]:
    """A JSON document cio-anon wrote for a team to keep (`{"format": kind, "version":
    version, ...}`: a check baseline, diff's expected outcomes), or a sentence saying
    what the file is not. `written_by` names the command that writes one."""
    try:
        document = jsonio.loads(path.read_bytes())
    except OSError as error:
        raise InvalidInput(f"Cannot read {path}: {error.strerror}.") from None
    except ValueError as error:
        raise InvalidInput(f"{path} is not JSON ({error}).") from None
    if not isinstance(document, dict) or document.get("format") != kind:
        raise InvalidInput(f"{path} is not a {kind} file written by `{written_by}`.")
    if document.get("version") != version:
        raise InvalidInput(
            f"{path}: {kind} version {document.get('version')!r}; this cio-anon reads {version}."
        )
    return document


BOM = b"\xef\xbb\xbf"
"""The UTF-8 byte-order mark some editors write first."""
FIXTURE_SUFFIXES = (".ndjson", ".jsonl", ".json", ".ndjson.gz", ".jsonl.gz", ".json.gz")
"""The files a folder given to replay or check stands for."""


def fixture_files(paths: Iterable[Path]) -> list[Path]:
    """The files replay and check read for what they were given: a folder is every
    fixture file under it, in name order; `-` is standard input. A file that is not
    there, or a folder with none, is refused before anything is read."""
    found: list[Path] = []
    for path in paths:
        if path == STDIN:
            found.append(path)
        elif not path.exists():
            raise InvalidInput(f"{path}: no such file.")
        elif path.is_dir():
            found += files_named([str(path)], FIXTURE_SUFFIXES, "fixture files")
        else:
            found.append(path)
    return found


def iter_records(path: Path) -> Iterator[Record]:
    """The records of a fixture file (`-`: standard input), in file order, read as they
    are needed, so memory does not grow with the file: NDJSON line by line (split on
    `\\n` only — U+2028, U+2029 or U+0085 inside a string is not a line end), a JSON array
    whole. Bad JSON or bad UTF-8 becomes an error record at its line."""
    try:
        if path == STDIN:
            opened: Any = contextlib.nullcontext(sys.stdin.buffer)
        else:
            opened = open_bytes(path)
    except FileNotFoundError:
        raise InvalidInput(f"{path}: no such file.") from None
    except OSError as error:
        raise unreadable(path, error) from None
    with opened as handle:
        last = 0
        try:
            for record in _records(handle):
                last = record.line
                yield record
        except GZIP_FAULTS as error:  # gzip: cut short, or not gzip
            raise unreadable(path, error, after=last) from None


def open_bytes(path: Path) -> gzip.GzipFile | BinaryIO:
    """A file's bytes: a gzipped one's (`.gz`, as archives keep them; audit reads them
    too) uncompressed."""
    return gzip.open(path, "rb") if path.name.endswith(".gz") else path.open("rb")


GZIP_FAULTS = (OSError, EOFError, zlib.error)
"""What reading gzip raises when it is cut short or is not gzip (or the file fails)."""


def unreadable(path: Path, error: Exception, after: int = 0) -> InvalidInput:
    """The sentence for a file that fails while it is read (`after` the line of the last
    record read whole, if any: where to look, and what was read)."""
    why = getattr(error, "strerror", None) or str(error) or type(error).__name__
    where = f" after line {after:,}" if after else ""
    return InvalidInput(f"{path}: cannot be read{where} ({why.rstrip('.')}).")


def _records(handle: BinaryIO) -> Iterator[Record]:
    number = 0
    for raw in handle:
        number += 1
        if number == 1 and raw.startswith(BOM):  # an editor's mark, not text: skipped
            raw = raw[len(BOM) :]
        if not raw.strip():
            continue
        if raw.lstrip().startswith(b"["):  # the first value: a JSON array, read whole
            whole = raw + handle.read()
            try:
                text = whole.decode("utf-8")
            except UnicodeDecodeError as error:
                bad_line = number + whole.count(b"\n", 0, error.start)
                yield Record(bad_line, error=f"not UTF-8 text ({error.reason})", size=len(whole))
                return
            for record in _array_records("\n" * (number - 1) + text):
                yield replace(record, size=len(whole) if record.line == number else 0)
            return
        yield _line(number, raw)
        break
    for raw in handle:
        number += 1
        if raw.strip():
            yield _line(number, raw)


def _line(number: int, raw: bytes) -> Record:
    """One NDJSON line as a record (an error record when it is not JSON)."""
    try:
        return Record(number, jsonio.loads(raw), size=len(raw), raw=raw)  # orjson checks UTF-8
    except ValueError:
        pass  # say what is wrong, as below
    try:
        return Record(number, _loads(raw.decode("utf-8")), size=len(raw), raw=raw)
    except UnicodeDecodeError as error:
        return Record(number, error=f"not UTF-8 text ({error.reason})", size=len(raw))
    except ValueError as error:
        return Record(number, error=f"not valid JSON ({error})", size=len(raw))
    except RecursionError:
        return Record(number, error="JSON nested too deeply", size=len(raw))


def byte_size(paths: Iterable[Path]) -> int | None:
    """How many bytes the files hold (for a progress bar); None for standard input."""
    total = 0
    for path in paths:
        if path == STDIN:
            return None
        try:
            total += path.stat().st_size
        except OSError:
            continue
    return total


def _loads(text: str) -> Any:
    return jsonio.loads(text)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


def _array_records(text: str) -> list[Record]:
    """Elements of one JSON array, each with the line it starts on."""
    decoder = json.JSONDecoder(parse_constant=_reject_constant)
    position = text.index("[") + 1
    records: list[Record] = []

    def line_at(index: int) -> int:
        return text.count("\n", 0, index) + 1

    expect_value = True
    while True:
        while position < len(text) and text[position] in " \t\r\n":
            position += 1
        if position >= len(text):
            records.append(Record(line_at(position), error="the JSON array is not closed"))
            return records
        char = text[position]
        if char == "]" and (expect_value is False or not records):
            rest = text[position + 1 :].strip()
            if rest:
                records.append(Record(line_at(position), error="text after the JSON array"))
            return records
        if char == "," and not expect_value:
            position += 1
            expect_value = True
            continue
        if not expect_value:
            records.append(Record(line_at(position), error=f"expected ',' or ']', found {char!r}"))
            return records
        try:
            value, end = decoder.raw_decode(text, position)
        except ValueError as error:
            records.append(Record(line_at(position), error=f"not valid JSON ({error})"))
            return records
        records.append(Record(line_at(position), value))
        position = end
        expect_value = False


def receive_time(record: Mapping[str, Any]) -> datetime | None:
    """`at`, else `receivedAt`, else `timestamp`."""
    for key in ("at", "receivedAt", "timestamp"):
        if record.get(key) is not None:
            return parse_time(record[key], what=f"`{key}`")
    return None


REFUSED = "refused"
"""The field of a record `serve --record` wrote for a call it refused: the sentence it
answered with. A replay applies nothing of such a record and lists it, never a fault of
its file; `check` judges it again (see `replay`)."""


def refused_when_recorded(value: object) -> str | None:
    """Why the server refused this record's call when it recorded it; None for a record
    that was stored (or not written by `serve --record`: no `refused`, or null)."""
    why = value.get(REFUSED) if isinstance(value, dict) else None
    if why is None:
        return None
    return why if isinstance(why, str) else jsonio.dumps(why)


def to_operations(value: object, previous: datetime) -> list[Timed]:
    """The timed operations one record asks for (raises CioAnonError if it is invalid)."""
    record = require_object(value, "A record")
    at = receive_time(record)
    if "op" in record:
        operation = _control(record)
        return [Timed(at or previous, operation)]
    if at is None:
        raise InvalidInput(
            "The record has no receive time: give `at`, `receivedAt` or `timestamp`."
        )
    if "method" in record or "path" in record:
        return [Timed(at, op) for op in _http(record)]
    if "type" in record:
        return [Timed(at, pipelines.parse_message(record))]
    raise InvalidInput(
        "The record is not an HTTP call (method, path), a Data Pipelines message (type) "
        "or a control record (op)."
    )


def _http(record: Mapping[str, Any]) -> list[Operation]:
    method = record.get("method")
    path = record.get("path")
    if not isinstance(method, str) or not isinstance(path, str) or not path.startswith("/"):
        raise InvalidInput("An HTTP record needs `method` and a `path` starting with '/'.")
    method = method.upper()
    body = record.get("body")
    if isinstance(body, str):
        try:
            body = _loads(body)
        except ValueError as error:
            raise InvalidInput(f"The body is not valid JSON ({error}).") from None
    if body is None:
        body = {}
    if path.startswith(track_v1.PREFIX):
        return track_v1.parse(method, path, body)
    if path.startswith("/api/v2/"):
        return track_v2.parse(method, path, body)
    if path.startswith("/v1/"):
        return pipelines.parse(method, path, body)
    if path.startswith(track_v1.UNSUBSCRIBE.prefix):
        return track_v1.parse_unsubscribe(method, path, body)
    raise InvalidInput(f"{method} {path} is not a Customer.io API path cio-anon knows.")


# What an expect record is about (the first of these keys it has) and what it may check.
EXPECT_KEYS = {
    "event": {"status", "rule", "person", "provenance", "can_trigger_campaigns", "anonymous_id"},
    "person": {
        "exists",
        "events",
        "attributes",
        "anonymous_ids",
        "id",
        "email",
        "devices",
        "relationships",
    },
    "anonymous_id": {"pending", "assigned_to"},
}
EVENT_COUNT_KEYS = {"total", "tracked", "merged", "inherited", "campaign_eligible"}


def _control(record: Mapping[str, Any]) -> Operation:
    op = record["op"]
    rest = {k: v for k, v in record.items() if k not in ("op", "at", "comment")}
    if op == "purge":
        _no_extra(rest, set(), "A purge record")
        return Purge()
    if op == "settings":
        _no_extra(rest, {"anonymous_merge", "created_at"}, "A settings record")
        merge = rest.get("anonymous_merge")
        if merge is not None and not isinstance(merge, bool):
            raise InvalidInput("A settings record's `anonymous_merge` must be true or false.")
        created = rest.get("created_at")
        if merge is None and created is None:
            raise InvalidInput("A settings record needs `anonymous_merge` or `created_at`.")
        return ChangeSettings(
            merge, None if created is None else parse_time(created, what="`created_at`")
        )
    if op == "expect":
        subject = next((key for key in EXPECT_KEYS if key in rest), None)
        if subject is None:
            raise InvalidInput("An expect record names an event, a person or an anonymous_id.")
        about = f"An expect record about {_article(subject)} {subject}"
        _no_extra(rest, EXPECT_KEYS[subject] | {subject}, about)
        if not isinstance(rest[subject], str) or not rest[subject].strip():
            raise InvalidInput(f"An expect record's `{subject}` must be a non-empty string.")
        counts = rest.get("events")
        if counts is not None:
            counts = require_object(counts, "An expect record's `events`")
            _no_extra(counts, EVENT_COUNT_KEYS, "An expect record's `events`")
        if "attributes" in rest:
            require_object(rest["attributes"], "An expect record's `attributes`")
        return Expect(dict(rest))
    raise InvalidInput(f"The op {op!r} is not one of purge, settings, expect.")


def _no_extra(record: Mapping[str, Any], allowed: set[str], what: str) -> None:
    extra = sorted(set(record) - allowed)
    if extra:
        raise InvalidInput(f"{what} has unknown field(s): {', '.join(extra)}.")


def _article(noun: str) -> str:
    return "an" if noun[:1] in "aeiou" else "a"
