"""What `serve` answers: Customer.io's APIs (one description each, `ingest.HttpApi`) and
the inspection API under `/_cio-anon/`, as a Starlette application.

Every request is checked in this order, each before anything costlier: the Host
header, the credentials, the declared size; only then is the body read (whole, within
a size ceiling and a time limit), decoded, parsed, and handed to the writer. A request
that is refused, cut off or abandoned applies nothing.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import gzip
import hmac
import io
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from cio_anon import jsonio, service
from cio_anon.clock import to_iso
from cio_anon.errors import CioAnonError, InvalidInput
from cio_anon.ingest import (
    MethodNotAllowed,
    Operation,
    Timed,
    path_part,
    pipelines,
    require_object,
    track_v1,
    track_v2,
)
from cio_anon.ingest.fixtures import GZIP_FAULTS
from cio_anon.ingest.http import Failure, HttpApi
from cio_anon.models import MAX_LIMIT, ActivityType
from cio_anon.present import documents
from cio_anon.replay.apply import Source
from cio_anon.rules import EventType
from cio_anon.server.origins import OriginCheck, Origins
from cio_anon.server.writer import Call, Job, Reader, Writer, refusal

APIS: tuple[HttpApi, ...] = (track_v1.API, track_v1.UNSUBSCRIBE, track_v2.API, pipelines.API)
INSPECT = "/_cio-anon"
SDK_SETTINGS = {
    # what the browser SDKs fetch from their `cdnURL` before sending anything: Customer.io's
    # SDK from serve's own address, Segment's from /segment (each SDK loads a destination
    # bundle from its CDN when the settings name more than its own integration)
    "": "Customer.io Data Pipelines",
    "/segment": "Segment.io",
}
OPERATION_LIMIT = 32 * 1024
"""Customer.io's documented limit on one operation (a v2 entity, a v1 call, a message)."""
BATCH_LIMIT = 500 * 1024
"""Customer.io's documented limit on one batch request."""
BODY_CEILING = 5 * 1024 * 1024
"""A body (as sent, or unzipped) larger than this is not read on (413)."""
BODY_SLACK = 1024
"""What a gzipped body may be beyond the limit on the unzipped one (gzip's own bytes)."""
BUFFERED_CEILING = 64 * 1024 * 1024
"""The bodies being read, all connections together, hold at most this much: beyond it a
request is answered 503 (Retry-After) before its body is read on."""
BODY_SECONDS = 30.0
"""A body must arrive whole within this time (408)."""
LOG_TYPES = frozenset({*EventType, "invite", *ActivityType.ALL})
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data", "text/plain")


class Refusal(CioAnonError):
    """A request refused before it reached an API: its status, and headers to send."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.headers = headers or {}


# -- credentials ----------------------------------------------------------------------


@dataclass(frozen=True)
class Credentials:
    """What `serve` was given. When anything is configured, every route needs a
    credential: an API's own, else (for an API without its own) any configured API
    credential. The inspection API and the pages take the inspection token only: the
    write key is public by nature (every page using a browser SDK ships it) and the Track
    API's key is a client's, neither a reader's; without a token they are closed."""

    site_id: str | None = None
    api_key: str | None = None
    write_key: str | None = None
    inspect_token: str | None = None

    @property
    def track(self) -> bool:
        return bool(self.site_id and self.api_key)

    @property
    def configured(self) -> bool:
        return self.track or bool(self.write_key) or bool(self.inspect_token)

    def allows(self, scheme: str, header: str | None) -> bool:
        """Whether the Authorization header opens a route taking `scheme` (`track`,
        `pipelines` or `inspect`)."""
        if not self.configured:
            return True
        kind, _, value = (header or "").strip().partition(" ")
        kind, value = kind.lower(), value.strip()
        user, password = _basic(value) if kind == "basic" else (None, None)
        bearer = value if kind == "bearer" else None
        track = self.track and _same(user, self.site_id) and _same(password, self.api_key)
        write = bool(self.write_key) and (
            _same(user, self.write_key) or _same(bearer, self.write_key)
        )
        if scheme == "inspect":
            return _same(bearer, self.inspect_token) or _same(password, self.inspect_token)
        if scheme == "track" and self.track:
            return track
        if scheme == "pipelines" and self.write_key:
            return write
        return track or write

    def allows_write_key(self, key: str | None) -> bool:
        """Whether a write key sent in a body opens the Data Pipelines routes."""
        return bool(self.write_key) and _same(key, self.write_key)


def without_write_key(body: Any) -> str | None:
    """The write key a Data Pipelines body carries (the browser SDKs put it in the body,
    and in each message), taken out of it: a credential is neither data nor recorded."""
    if not isinstance(body, dict):
        return None
    key = body.pop("writeKey", None)
    batch = body.get("batch")
    for item in batch if isinstance(batch, list) else [body]:
        if isinstance(item, dict):
            found = item.pop("writeKey", None)
            key = key if key is not None else found
    return key if isinstance(key, str) else None


def _basic(value: str) -> tuple[str | None, str | None]:
    try:
        user, _, password = base64.b64decode(value, validate=True).decode().partition(":")
    except (binascii.Error, ValueError):
        return None, None
    return user, password


def _same(given: str | None, expected: str | None) -> bool:
    """A constant-time comparison of UTF-8 bytes (non-ASCII included)."""
    if given is None or not expected:
        return False
    return hmac.compare_digest(given.encode("utf-8", "surrogatepass"), expected.encode())


# -- the application ------------------------------------------------------------------


REFUSALS_KEPT = 1_000
"""The refused calls `GET /_cio-anon/refused` lists (the latest; it counts them all)."""


class Refusals:
    """The calls the APIs refused since serve started (or the last reset), for a test
    suite to ask after it drove a client: one entry per call (a batch's message, or the
    request), with what it was sent as and why. Appended and read on the event loop
    only. A busy workspace (503: retried by the client) refuses nothing."""

    def __init__(self) -> None:
        self.kept: collections.deque[dict[str, Any]] = collections.deque(maxlen=REFUSALS_KEPT)
        self.count = 0

    def add(
        self, at: datetime, request: Request, failures: Sequence[Failure], batch: bool, body: Any
    ) -> None:
        where = {"at": to_iso(at), "method": request.method, "path": request.url.path}
        for index, error in failures:
            if error.status >= 500:
                continue
            self.count += 1
            why = refusal(index, error, batch)
            said = {"message_id": _message_id(body, index, batch), "refused": why}
            self.kept.append({**where, **said})

    def clear(self) -> None:
        self.kept.clear()
        self.count = 0

    def about(self, message_id: str) -> str | None:
        """How the latest call sent with this id was refused (when, where, why), if one
        was among those kept."""
        for entry in reversed(self.kept):
            if entry["message_id"] == message_id:
                return f"at {entry['at']} ({entry['method']} {entry['path']}): {entry['refused']}"
        return None

    def document(self) -> dict[str, Any]:
        return {"count": self.count, "refused": list(self.kept)}


def _message_id(body: Any, index: int | None, batch: bool) -> str | None:
    """The id the refused call was sent with (`messageId`, the Track API's `id`), if any."""
    call = body
    if batch and index is not None and isinstance(body, dict):
        entries = body.get("batch")
        call = entries[index] if isinstance(entries, list) and index < len(entries) else None
    if not isinstance(call, dict):
        return None
    given = call.get("messageId", call.get("id"))
    return given if isinstance(given, str) else None


@dataclass(frozen=True)
class Settings:
    """What the routes need to know."""

    writer: Writer
    clock: Callable[[], datetime]
    credentials: Credentials
    allowed_hosts: frozenset[str] | None
    """Host names the Host header may give (None: any)."""
    record: bool = False
    body_seconds: float = BODY_SECONDS
    pages_only: bool = False
    """Only the web view (`cio-anon ui`): no API, no inspection."""
    label: str = ""
    """How the pages name the workspace."""
    origins: Origins = Origins()
    """The web pages whose requests the ingest routes take (CORS)."""
    reader: Reader | None = None
    """Where reads go (None: to the writer)."""
    refusals: Refusals = field(default_factory=Refusals)


def application(settings: Settings) -> ASGIApp:
    """The Starlette application, behind the Host check."""
    from cio_anon import web

    routes: list[Route] = []
    if not settings.pages_only:
        routes += [
            Route(f"{prefix}/v1/projects/{{key}}/settings", _sdk_settings(name, settings))
            for prefix, name in SDK_SETTINGS.items()
        ]
        routes += [
            Route(f"{api.prefix}{{rest:path}}", _api_endpoint(api, settings), methods=_ANY)
            for api in APIS
        ]
        routes.append(Route(INSPECT + "{rest:path}", _inspect_endpoint(settings), methods=_ANY))
    routes += web.routes(
        lambda query: _ask(settings, query),
        settings.clock,
        settings.label,
        _page_guard(settings),
        settings.refusals.about,
    )
    routes.append(Route("/{rest:path}", _not_found_for(settings.label), methods=_ANY))
    app = Starlette(routes=routes)
    app.router.default = _no_route  # a path no route can match (a newline in it): JSON too
    ingest = (lambda path: False) if settings.pages_only else ingest_path
    return HostCheck(OriginCheck(app, settings.origins, ingest), settings.allowed_hosts)


INGEST_PREFIXES = (*(api.prefix for api in APIS), *(f"{p}/v1/projects/" for p in SDK_SETTINGS))


def ingest_path(path: str) -> bool:
    """Whether a path is one of the ingest routes (an API, or the SDK settings), the only
    ones a page of another origin may call."""
    return path.startswith(INGEST_PREFIXES)


_ANY = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]


def reply(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(jsonio.dumps(body), status, headers, media_type="application/json")


def refusal_reply(error: CioAnonError) -> Response:
    """The one place an error becomes a response outside an API's own shape."""
    headers: dict[str, str] | None = getattr(error, "headers", None)
    return reply(error.status, {"error": str(error)}, headers)


def _page_guard(settings: Settings) -> Callable[[Request], Response | None]:
    """The pages take what the inspection API takes; a browser is asked for Basic
    credentials (the inspection token as the password, any user name)."""

    def guard(request: Request) -> Response | None:
        if settings.credentials.allows("inspect", request.headers.get("authorization")):
            return None
        return Response(
            "Credentials are needed: the inspection token as the password (serve --inspect-token).",
            401,
            {"WWW-Authenticate": 'Basic realm="cio-anon", charset="UTF-8"'},
            media_type="text/plain",
        )

    return guard


def _sdk_settings(integration: str, settings: Settings) -> Callable[[Request], Awaitable[Response]]:
    """The settings a browser SDK fetches from `{cdnURL}/v1/projects/{writeKey}/settings`:
    its own integration, sending to this server (as the request reached it)."""

    async def endpoint(request: Request) -> Response:
        key = request.path_params["key"]
        write_key = settings.credentials.write_key
        if write_key and not _same(key, write_key):
            return reply(
                404,
                {"error": "No source has this write key: load the SDK with serve's --write-key."},
            )
        host = request.headers.get("host", "")
        return reply(
            200,
            {
                "integrations": {
                    integration: {
                        "apiKey": key,
                        "apiHost": f"{host}/v1",
                        "protocol": request.url.scheme,
                    }
                },
                "plan": {},
                "middlewareSettings": {},
                "enabledMiddleware": {},
                "metrics": {"sampleRate": 0},
                "legacyVideoPluginsEnabled": False,
                "remotePlugins": [],
            },
        )

    return endpoint


async def _no_route(scope: Scope, receive: Receive, send: Send) -> None:
    response = await _not_found(Request(scope, receive))
    await response(scope, receive, send)


async def _not_found(request: Request) -> Response:
    return reply(404, {"meta": {"errors": [f"No such path: {request.url.path}"]}})


def _not_found_for(label: str) -> Callable[[Request], Awaitable[Response]]:
    """No such path: a page for a browser asking for one, JSON for a client."""

    async def endpoint(request: Request) -> Response:
        wants_page = "text/html" in request.headers.get("accept", "")
        if request.method in ("GET", "HEAD") and wants_page:
            from cio_anon import web

            return web.not_found(request.url.path, label)
        return await _not_found(request)

    return endpoint


# -- the APIs -------------------------------------------------------------------------


def _api_endpoint(api: HttpApi, settings: Settings) -> Callable[[Request], Awaitable[Response]]:
    def unauthorized() -> Response:
        return reply(
            401,
            api.errors(
                [(None, InvalidInput("Unauthorized: wrong or missing credentials."))], False
            ),
            {"WWW-Authenticate": 'Basic realm="cio-anon"'},
        )

    async def endpoint(request: Request) -> Response:
        strict = request.headers.get("x-strict-mode") == "1"
        credentials = settings.credentials
        authorized = credentials.allows(api.scheme, request.headers.get("authorization"))
        # Customer.io's browser SDK sends the write key in the body only: such a request
        # is read (within the size limits) before its key is checked
        if not authorized and not (api.scheme == "pipelines" and credentials.write_key):
            return unauthorized()
        method, target = request.method, _raw_target(request.scope)
        path = target.split("?", 1)[0]
        if method == "GET" and api.answers and path in api.answers:
            return reply(200, api.answers[path])
        batch = path.rstrip("/") in api.batch_paths
        limit = BATCH_LIMIT if batch else OPERATION_LIMIT
        read = False  # the body was read: a refusal of its calls is recorded
        try:
            raw = await read_body(request, settings.body_seconds, limit)
            body = decode(request.headers, raw, limit)
            key = without_write_key(body) if api.scheme == "pipelines" else None
            if not authorized and not credentials.allows_write_key(key):
                return unauthorized()
            authorized, read = True, True
            items = _parse(api, method, path, body, batch)
        except ClientDisconnect:
            return Response(status_code=400)  # nobody to answer; nothing applied
        except CioAnonError as error:
            if not authorized:  # a body without its key is refused as such, whatever it is
                return unauthorized()
            at = settings.clock()
            _note_refused(request, settings, at, [(None, error)], batch, body if read else None)
            answer = _unread(api, error, strict)
            if read and error.status == 400:  # its calls were refused
                call = Call(at, method, target, body, batch)
                return await _record_refusal(settings, call, (None, error)) or answer
            return answer
        failures: list[Failure] = [
            (i, e) for i, e in enumerate(items) if isinstance(e, CioAnonError)
        ]
        atomic = api.permissive and strict
        at = settings.clock()
        if failures and atomic:
            _note_refused(request, settings, at, failures, batch, body)
            call = Call(at, method, target, body, batch)
            refused = _refused(api, failures, strict, batch)
            return await _record_refusal(settings, call, failures[0]) or refused
        # each item's operations, flattened, remembering the item they came from
        valid = [
            (index, op)
            for index, item in enumerate(items)
            if not isinstance(item, CioAnonError)
            for op in item
        ]
        job = Job(
            [Timed(at, op) for _, op in valid],
            Source(f"serve {method} {path}"),
            atomic=atomic,
            call=Call(at, method, target, body, batch) if settings.record else None,
            refused={index: error for index, error in failures if index is not None},
            items=[index for index, _ in valid],
        )
        try:
            outcomes = await asyncio.wrap_future(settings.writer.submit(job))
        except CioAnonError as error:
            return refusal_reply(error)
        if isinstance(outcomes, CioAnonError):
            failures.append((None, outcomes))
        else:
            failed: dict[int, CioAnonError] = {}
            for k, refused in enumerate(outcomes):
                if refused is not None:
                    failed.setdefault(valid[k][0], refused)
            failures += failed.items()
        failures.sort(key=lambda pair: -1 if pair[0] is None else pair[0])
        if not failures:
            return reply(200, {})
        _note_refused(request, settings, at, failures, batch, body)
        if any(error.status >= 500 for _, error in failures):
            return refusal_reply(next(e for _, e in failures if e.status >= 500))
        if batch and len(failures) < len(items) and not atomic:
            status = 200 if api.permissive and not strict else api.partial_status
            return reply(status, {} if status == 200 else api.errors(failures, True))
        return _refused(api, failures, strict, batch)

    return endpoint


REFUSED = "refused"
"""The request state's key for what was refused and why (`_note_refused`), which the
access log adds to the request's line."""


def _note_refused(
    request: Request,
    settings: Settings,
    at: datetime,
    failures: Sequence[Failure],
    batch: bool,
    body: Any,
) -> None:
    """Keep what the request had refused for the access log and the inspection API
    (`Refusals`): permissive mode answers 200 all the same (as Data Pipelines does, so
    that SDKs do not retry), and a call a browser made would vanish without a word."""
    settings.refusals.add(at, request, failures, batch, body)
    index, error = failures[0]
    more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
    setattr(request.state, REFUSED, refusal(index, error, batch) + more)


async def _record_refusal(settings: Settings, call: Call, failure: Failure) -> Response | None:
    """With `--record`, record a request refused whole, with why (what was refused is
    kept, marked so, for `check` to find); the answer when the record could not be
    written, else None."""
    if not settings.record:
        return None
    whole = replace(call, refused=refusal(*failure, call.batch))
    try:
        await asyncio.wrap_future(settings.writer.submit(Job(call=whole)))
    except CioAnonError as error:
        return refusal_reply(error)
    return None


def _unread(api: HttpApi, error: CioAnonError, strict: bool) -> Response:
    """The answer to a request refused before its items were read."""
    if isinstance(error, Refusal):
        if error.status == 400:  # too large: said in the API's own shape
            return reply(400, api.errors([(None, error)], False), error.headers)
        return refusal_reply(error)
    if error.status in (404, 405):
        return reply(error.status, api.errors([(None, error)], False))
    return _refused(api, [(None, error)], strict, batch=False)


def _refused(api: HttpApi, failures: Sequence[Failure], strict: bool, batch: bool) -> Response:
    if api.permissive and not strict:
        return reply(200, {})  # permissive mode: the client treats non-200 as failure
    return reply(400, api.errors(failures, batch))


def _parse(
    api: HttpApi, method: str, path: str, body: Any, batch: bool
) -> list[list[Operation] | CioAnonError]:
    """The request's items, each its operations; a batch item that is invalid stands as
    its error (outside a batch, the request is one item)."""
    if not batch or api.parse_item is None:
        return [list(api.parse(method, path, body))]
    if method != "POST":
        raise MethodNotAllowed(f"{method} is not allowed on {path}.")
    entries = body.get("batch") if isinstance(body, dict) else None
    if not isinstance(entries, list):
        raise InvalidInput("A batch needs `batch` as an array.")
    items: list[list[Operation] | CioAnonError] = []
    for index, entry in enumerate(entries):
        what = f"Batch item {index}"
        try:
            if len(jsonio.dumps(entry)) > OPERATION_LIMIT:
                raise InvalidInput(f"{what} is larger than the 32 KB an operation may be.")
            items.append(api.parse_item(require_object(entry, what), what))
        except CioAnonError as error:
            items.append(error)
        except (TypeError, RecursionError):
            items.append(InvalidInput(f"{what} cannot be read as JSON."))
    return items


def _raw_target(scope: Scope) -> str:
    """The path as sent (percent-escapes kept: `/` in an id is `%2F`), with the query."""
    path = scope.get("raw_path") or scope["path"].encode()
    query = scope.get("query_string") or b""
    target = path.decode("latin-1")
    return f"{target}?{query.decode('latin-1')}" if query else target


async def read_body(request: Request, seconds: float, limit: int) -> bytes:
    """The whole body, however it is framed (Content-Length or chunked), read no further
    than the route accepts: 413 past the ceiling, 400 past `limit` (declared or counted,
    with gzip's slack), 503 when the bodies being read already hold BUFFERED_CEILING, 408
    when it does not arrive in time, ClientDisconnect when the client goes away."""
    global _buffered
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise Refusal(400, "The Content-Length is not a number.", {"Connection": "close"})
        if int(declared) > BODY_CEILING:
            raise _too_large()
        if int(declared) > limit + BODY_SLACK:
            raise _over(limit, int(declared))
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(seconds):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit + BODY_SLACK:
                    raise _over(limit, size)
                if _buffered + len(chunk) > BUFFERED_CEILING:
                    raise Refusal(
                        503,
                        "serve is reading too many bodies at once; send it again.",
                        {"Connection": "close", "Retry-After": "1"},
                    )
                _buffered += len(chunk)
                chunks.append(chunk)
    except TimeoutError:
        raise Refusal(
            408, f"The body did not arrive within {seconds:g} s.", {"Connection": "close"}
        ) from None
    finally:
        _buffered -= sum(len(chunk) for chunk in chunks)
    return b"".join(chunks)


_buffered = 0
"""The bytes of the bodies being read now (the event loop's one thread counts them)."""


def _over(limit: int, size: int) -> Refusal:
    what = "a batch" if limit == BATCH_LIMIT else "one operation"
    return Refusal(
        400,
        f"The body is {size:,} bytes or more; Customer.io accepts at most {limit // 1024} KB "
        f"for {what}.",
        {"Connection": "close"},
    )


def _too_large() -> Refusal:
    return Refusal(413, f"The body may be at most {BODY_CEILING:,} bytes.", {"Connection": "close"})


def decode(headers: Any, raw: bytes, limit: int) -> Any:
    """The JSON body (`{}` when empty): gunzipped when so encoded, within `limit` bytes."""
    if not raw:
        return {}
    if headers.get("content-encoding", "").lower() == "gzip":
        try:
            raw = gzip.GzipFile(fileobj=io.BytesIO(raw)).read(BODY_CEILING + 1)
        except GZIP_FAULTS:
            raise InvalidInput("The body is not valid gzip.") from None
    if len(raw) > limit:
        what = "a batch" if limit == BATCH_LIMIT else "one operation"
        raise InvalidInput(
            f"The body is {len(raw):,} bytes; Customer.io accepts at most {limit // 1024} KB "
            f"for {what}."
        )
    kind = headers.get("content-type", "application/json").split(";")[0].strip().lower()
    if kind not in ("application/json", "text/plain", ""):
        raise InvalidInput(f"The content type {kind!r} is not application/json.")
    try:
        return jsonio.loads(raw)
    except jsonio.JSONDecodeError as error:
        raise InvalidInput(f"The body is not valid JSON: {error}.") from None


# -- inspection -----------------------------------------------------------------------


def _inspect_endpoint(settings: Settings) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        try:
            return await _inspect(request, settings)
        except CioAnonError as error:
            return refusal_reply(error)

    return endpoint


async def _inspect(request: Request, settings: Settings) -> Response:
    if not settings.credentials.allows("inspect", request.headers.get("authorization")):
        raise Refusal(
            401,
            "Unauthorized: wrong or missing credentials.",
            {"WWW-Authenticate": 'Bearer realm="cio-anon"'},
        )
    path = _raw_target(request.scope).split("?", 1)[0]
    route = [path_part(part, path) for part in path[len(INSPECT) :].strip("/").split("/")]
    name, method, query = route[0], request.method, request.query_params
    if name == "reset":
        if method != "POST":
            raise Refusal(405, "Use POST /_cio-anon/reset.")
        _refuse_cross_site(request)
        await _ask(settings, lambda ws: ws.reset(), write=True)
        settings.refusals.clear()
        return reply(200, {"reset": True})
    if method != "GET":
        raise Refusal(405, f"{method} is not allowed on {path}.")
    now = settings.clock()
    if name == "log" and len(route) == 1:
        limit = _whole(query.get("limit"), 50)
        tab, kind = query.get("tab"), query.get("type")
        if tab not in (None, *service.TABS):
            raise InvalidInput(f"tab {tab!r} is not one of {', '.join(service.TABS)}.")
        if kind is not None and kind not in LOG_TYPES:
            raise InvalidInput(f"type {kind!r} is not a type of the log.")
        page = await _ask(
            settings,
            lambda ws: service.activity_log(
                ws,
                now,
                person=query.get("person"),
                anonymous_id=query.get("anonymous_id"),
                tab=tab,
                type=kind,
                limit=limit,
                before=query.get("before"),
            ),
        )
        return reply(200, documents.log_json(page))
    if name == "profile" and len(route) == 2:
        profile = await _ask(settings, lambda ws: service.show(ws, now, identifier=route[1]))
        return reply(200, documents.profile_json(profile))
    if name == "explain" and len(route) == 2:
        refused = settings.refusals.about(route[1])
        found = await _ask(
            settings, lambda ws: service.explain(ws, now, event_id=route[1], refused=refused)
        )
        return reply(200, documents.explain_json(found))
    if name == "summary" and len(route) == 1:
        return reply(200, await _ask(settings, lambda ws: ws.summary()))
    if name == "refused" and len(route) == 1:
        return reply(200, settings.refusals.document())
    raise Refusal(404, f"No such inspection path: {path}")


async def _ask(settings: Settings, query: Callable[[Any], Any], *, write: bool = False) -> Any:
    """Run `query` against the workspace: a read on the reader's connection (not behind
    the writes), a write on the writer."""
    if settings.reader is not None and not write:
        return await asyncio.wrap_future(settings.reader.submit(query))
    return await asyncio.wrap_future(settings.writer.submit(Job(query=query)))


def _whole(value: str | None, default: int) -> int:
    if value is None:
        return default
    if not value.isdigit() or not 1 <= int(value) <= MAX_LIMIT:
        raise InvalidInput(f"limit {value!r} is not a whole number from 1 to {MAX_LIMIT:,}.")
    return int(value)


def _refuse_cross_site(request: Request) -> None:
    """A state-changing inspection route refuses what a web page could send: a request
    a browser marks as from another site, one whose Origin is not this server, and a
    form post (which needs no CORS preflight)."""
    headers = request.headers
    origin = headers.get("origin")
    own = f"{request.url.scheme}://{headers.get('host', '')}"
    if headers.get("sec-fetch-site") in ("cross-site", "same-site") or (
        origin is not None and origin != own
    ):
        raise Refusal(403, "Refused: a cross-site request may not change the workspace.")
    kind = headers.get("content-type", "").split(";")[0].strip().lower()
    if kind in FORM_TYPES:
        raise Refusal(403, f"Refused: a {kind} post may not change the workspace.")


# -- the Host header ------------------------------------------------------------------


class HostCheck:
    """Refuse a Host header that names another server (DNS rebinding: a web page whose
    name was pointed at 127.0.0.1 reaches a loopback server under its own name)."""

    def __init__(self, app: ASGIApp, allowed: frozenset[str] | None) -> None:
        self.app = app
        self.allowed = allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.allowed is not None:
            host = host_name(dict(scope["headers"]).get(b"host", b"").decode("latin-1"))
            if host not in self.allowed:
                response = reply(
                    421, {"error": f"The Host {host!r} is not one this server answers to."}
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def host_name(header: str) -> str:
    """The host of a Host header, without its port: `[::1]:8080` → `::1`."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:].partition("]")[0]
    return header.rpartition(":")[0] if header.count(":") == 1 else header
