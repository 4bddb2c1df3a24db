"""The exports an audit reads: paths, globs and folders found (`exports`), and what
each engine is given for them (`readable`: a `serve --record` file's requests unwrapped
into their messages)."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cio_anon.errors import CioAnonError
from cio_anon.ingest.fixtures import (
    GZIP_FAULTS,
    files_named,
    open_bytes,
    refused_when_recorded,
    unreadable,
)

SUFFIXES = (".ndjson", ".jsonl", ".json", ".ndjson.gz", ".jsonl.gz", ".json.gz", ".parquet")


class AuditError(CioAnonError):
    """An export the audit cannot read, a record it cannot place set-based, or the
    engine's own failure (Spark's master not there, its Java process gone)."""


def exports(patterns: Sequence[str]) -> list[Path]:
    """The files named: paths, globs, and folders (every export file under them, as a
    day-partitioned archive lays them out), each in name order."""
    return files_named(patterns, SUFFIXES, "export files")


@dataclass(frozen=True)
class Export:
    """A file an engine reads: `path`, reported as `name`; `lined`: each record carries
    `_line`, its line in `name` (a recording unwrapped into its messages)."""

    path: Path
    name: str
    lined: bool = False


def readable(paths: Sequence[Path], folder: Path) -> list[Export]:
    """What the engines read for these exports. A `serve --record` file (its first
    record an HTTP call; gzipped too) is unwrapped into `folder`: each Data Pipelines
    request becomes its messages — a batch's items in order — received when the request
    was, as a replay applies them; a request the server refused (`fixtures.REFUSED`)
    none, as it stored nothing of it; its other records stay as they are."""
    out = []
    for index, path in enumerate(paths):
        if path.name.endswith(".parquet") or not _is_recording(path):
            out.append(Export(path, str(path)))
            continue
        target = folder / f"recording-{index}.ndjson"
        with open_bytes(path) as source, target.open("wb") as unwrapped:
            try:
                for line, text in enumerate(source, 1):
                    if text.strip():
                        unwrapped.writelines(_unwrapped(text, line, path))
            except GZIP_FAULTS as error:  # a gzipped recording cut short
                raise unreadable(path, error) from None
        out.append(Export(target, str(path), lined=True))
    return out


def _is_recording(path: Path) -> bool:
    """Whether the file is a `serve --record` recording (gzipped too): its first record
    is an HTTP call. A file that cannot be read is left to the engine, which says so."""
    import orjson

    with open_bytes(path) as head:
        try:
            for text in head:
                if text.strip():
                    first = orjson.loads(text)
                    return isinstance(first, dict) and "method" in first
        except (*GZIP_FAULTS, orjson.JSONDecodeError):
            return False
    return False


def _unwrapped(text: bytes, line: int, name: Path) -> list[bytes]:
    """One recorded line as the messages it carried, each with `_line`."""
    import orjson

    from cio_anon.ingest.pipelines import BATCH_PATHS, PATHS

    try:
        record = orjson.loads(text)
    except orjson.JSONDecodeError as error:
        raise AuditError(f"{name}: record {line} is not JSON ({error}).") from None
    if not isinstance(record, dict):
        return [orjson.dumps(record) + b"\n"]
    if refused_when_recorded(record) is not None:
        return []  # nothing of it was stored, and a replay applies nothing of it
    route = str(record.get("path", "")).split("?", 1)[0].rstrip("/")
    body = record.get("body")
    if isinstance(body, str):
        with contextlib.suppress(orjson.JSONDecodeError):
            body = orjson.loads(body)
    if record.get("method") != "POST" or not isinstance(body, dict):
        return [orjson.dumps({**record, "_line": line}) + b"\n"]
    if route in BATCH_PATHS and isinstance(body.get("batch"), list):
        messages = [item for item in body["batch"] if isinstance(item, dict)]
    elif route in PATHS:
        messages = [{**body, "type": PATHS[route]}]
    else:  # another API's call: refused with its line, as before
        return [orjson.dumps({**record, "_line": line}) + b"\n"]
    at = record.get("at")
    return [orjson.dumps({**m, "at": at, "_line": line}) + b"\n" for m in messages]


def is_array(path: Path) -> bool:
    """Whether the export is a JSON array (else NDJSON). A file that cannot be read is
    taken for NDJSON, which the engine then says it cannot read."""
    with open_bytes(path) as head:
        try:
            return head.read(4096).lstrip().startswith(b"[")
        except GZIP_FAULTS:
            return False
