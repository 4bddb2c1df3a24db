"""How `serve` takes each of Customer.io's APIs over HTTP: one description per API,
defined next to its parser (`track_v1.API`, `track_v2.API`, `pipelines.API`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from cio_anon.errors import CioAnonError
from cio_anon.ingest import Operation

Failure = tuple[int | None, CioAnonError]
"""A refused operation: its index in a batch (None outside one) and why."""


@dataclass(frozen=True)
class HttpApi:
    """How `serve` takes one of Customer.io's APIs over HTTP, in one place: a fourth API
    is a fourth description, next to its parser."""

    name: str
    prefix: str
    """Every path of the API starts with it."""
    scheme: Literal["track", "pipelines"]
    """The credentials it takes: `track` is Basic site_id:api_key; `pipelines` the write
    key, as the Basic user or a Bearer token."""
    parse: Callable[[str, str, object], list[Operation]]
    """(method, path, body) of one request → its operations (raises for a bad one)."""
    errors: Callable[[Sequence[Failure], bool], dict[str, Any]]
    """(failures, in a batch) → the error body, in the API's own shape."""
    batch_paths: frozenset[str] = frozenset()
    """Where a batch of independent items is posted; each item stands alone."""
    parse_item: Callable[[Mapping[str, Any], str], list[Operation]] | None = None
    """One batch item (and how to name it in a message) → its operations."""
    partial_status: int = 400
    """The answer to a batch some of whose items were refused (the rest applied)."""
    answers: Mapping[str, Any] | None = None
    """Read-only calls (`GET` of a path) and the body they are answered with."""
    permissive: bool = False
    """Refusals are answered 200 (and logged nowhere) unless the request sends
    `X-Strict-Mode: 1`; a strict batch is then all or nothing."""
