"""`cio-anon serve`: a local endpoint for Customer.io's Track API v1/v2 and Data
Pipelines, applying each request through the same ingest modules and service
functions as `replay`, plus a JSON inspection API for tests.

One writer thread owns the workspace: request threads parse and validate, then hand
their operations to it; it applies whatever is queued in one transaction (group
commit), each operation in its own savepoint, so nothing is partially applied within
one operation and one bad operation does not undo its neighbours.
"""

from __future__ import annotations

import base64
import gzip
import hmac
import http.server
import io
import ipaddress
import queue
import socket
import ssl
import threading
import zlib
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from cio_anon import documents, jsonio, rules, service
from cio_anon.errors import CioAnonError, InvalidInput, NotFound, RuleViolation, WorkspaceError
from cio_anon.ingest import (
    MethodNotAllowed,
    Operation,
    Timed,
    UnknownPath,
    pipelines,
    require_object,
    track_v1,
    track_v2,
)
from cio_anon.models import Settings
from cio_anon.replay import Source, Tally, apply_operation
from cio_anon.workspace import Workspace

OPERATION_LIMIT = 32 * 1024
"""Customer.io's documented limit on one operation (a v2 entity, a v1 call, a message)."""
BATCH_LIMIT = 500 * 1024
"""Customer.io's documented limit on one batch request."""
BODY_CEILING = 5 * 1024 * 1024
"""Bodies larger than this are not read at all (413)."""
INSPECT = "/_cio-anon"
BATCH_PATHS = ("/api/v2/batch", "/v1/batch")
BATCH_SIZE = 256
IDLE_TIMEOUT = 60
"""Seconds a keep-alive connection may wait for its next request."""


@dataclass
class ServerConfig:
    db: Path
    host: str = "127.0.0.1"
    port: int = 8080
    record: Path | None = None
    site_id: str | None = None
    api_key: str | None = None
    write_key: str | None = None
    fixed_now: datetime | None = None
    clock_start: datetime | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None

    @property
    def has_credentials(self) -> bool:
        return bool((self.site_id and self.api_key) or self.write_key)


def check_bind(config: ServerConfig) -> None:
    """Refuse to listen beyond loopback without credentials."""
    try:
        loopback = config.host == "localhost" or ipaddress.ip_address(config.host).is_loopback
    except ValueError:
        loopback = False
    if not loopback and not config.has_credentials:
        raise InvalidInput(
            f"Listening on {config.host} (not loopback) needs credentials: give --site-id "
            "and --api-key, or --write-key."
        )
    if bool(config.tls_cert) != bool(config.tls_key):
        raise InvalidInput("TLS needs both --tls-cert and --tls-key.")


# -- the writer ---------------------------------------------------------------------


@dataclass
class Job:
    """Work for the writer: operations to apply (each its own outcome), or a query."""

    operations: list[Timed] = field(default_factory=list)
    source: Source = Source("serve")
    query: Callable[[Workspace], Any] | None = None
    done: Future[Any] = field(default_factory=Future)


class Writer(threading.Thread):
    """The one thread that touches the workspace."""

    def __init__(self, config: ServerConfig, clock: Callable[[], datetime]) -> None:
        super().__init__(name="cio-anon-writer", daemon=True)
        self.jobs: queue.Queue[Job | None] = queue.Queue()
        now = clock()
        self.workspace = Workspace.open(
            config.db,
            create=True,
            initial=Settings(created_at=now, anonymous_merge=rules.default_anonymous_merge(now)),
            threaded=True,
        )
        self.tally = Tally()

    def submit(self, job: Job) -> Any:
        self.jobs.put(job)
        return job.done.result()

    def stop(self) -> None:
        self.jobs.put(None)
        self.join()
        self.workspace.close()

    def run(self) -> None:
        stopping = False
        while not stopping:
            first = self.jobs.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < BATCH_SIZE:
                try:
                    job = self.jobs.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    stopping = True
                    break
                batch.append(job)
            self._apply(batch)

    def _apply(self, batch: list[Job]) -> None:
        results: list[Any] = []
        try:
            with self.workspace.transaction():
                for job in batch:
                    results.append(self._one(job))
        except BaseException as error:  # the commit itself failed: every job failed
            for job in batch:
                job.done.set_exception(error)
            return
        for job, result in zip(batch, results, strict=True):
            if isinstance(result, BaseException):
                job.done.set_exception(result)
            else:
                job.done.set_result(result)

    def _one(self, job: Job) -> Any:
        if job.query is not None:
            try:
                with self.workspace.savepoint():
                    return job.query(self.workspace)
            except CioAnonError as error:
                return error
        outcomes: list[CioAnonError | None] = []
        for timed in job.operations:
            try:
                with self.workspace.savepoint():
                    apply_operation(self.workspace, timed, job.source, self.tally)
                outcomes.append(None)
            except CioAnonError as error:
                outcomes.append(error)
        return outcomes


# -- HTTP ---------------------------------------------------------------------------


class Reply(Exception):
    """A finished response, raised from anywhere in the handler."""

    def __init__(self, status: int, body: Any, headers: Mapping[str, str] | None = None):
        self.status = status
        self.body = body
        self.headers = dict(headers or {})


class Api:
    """What each kind of path answers; shared by all request threads."""

    def __init__(self, config: ServerConfig, writer: Writer, clock: Callable[[], datetime]):
        self.config = config
        self.writer = writer
        self.clock = clock
        self.record_lock = threading.Lock()
        self.connections: set[Any] = set()
        self.connections_lock = threading.Lock()
        self.record = config.record.open("a", encoding="utf-8") if config.record else None

    def close(self) -> None:
        if self.record is not None:
            self.record.close()

    def hang_up(self) -> None:
        """End the reading side of every open connection: a keep-alive connection waiting
        for its next request closes; a request being answered still gets its answer."""
        with self.connections_lock:
            for connection in list(self.connections):
                try:
                    connection.shutdown(socket.SHUT_RD)
                except OSError:
                    pass

    # -- auth ---------------------------------------------------------------------

    def _authorized(self, header: str | None, dialect: str) -> bool:
        config = self.config
        if dialect == "pipelines":
            if not config.write_key:
                return True
            if header and header.startswith("Bearer "):
                return hmac.compare_digest(header[7:].strip(), config.write_key)
            user, _ = _basic(header)
            return user is not None and hmac.compare_digest(user, config.write_key)
        if not (config.site_id and config.api_key):
            return True
        user, password = _basic(header)
        return (
            user is not None
            and password is not None
            and hmac.compare_digest(user, config.site_id)
            and hmac.compare_digest(password, config.api_key)
        )

    # -- Customer.io paths --------------------------------------------------------

    def handle(self, method: str, target: str, headers: Mapping[str, str], raw: bytes) -> Reply:
        path = urlsplit(target).path
        if path.startswith(INSPECT + "/") or path == INSPECT:
            return self.inspect(method, target)
        dialect = (
            "v1"
            if path.startswith("/api/v1/")
            else "v2"
            if path.startswith("/api/v2/")
            else "pipelines"
            if path.startswith("/v1/")
            else None
        )
        if dialect is None:
            raise Reply(404, {"meta": {"errors": [f"No such path: {path}"]}})
        strict = headers.get("x-strict-mode") == "1"
        if not self._authorized(headers.get("authorization"), dialect):
            raise Reply(
                401,
                _errors(dialect, "Unauthorized: wrong or missing credentials."),
                {"WWW-Authenticate": 'Basic realm="cio-anon"'},
            )
        batch = path.rstrip("/") in BATCH_PATHS
        try:
            body = _decode(headers, raw, BATCH_LIMIT if batch else OPERATION_LIMIT)
        except InvalidInput as error:
            raise self._refuse(dialect, str(error), strict) from None
        items = self._parse(dialect, method, path, body, batch, strict)
        valid = [(index, op) for index, op in enumerate(items) if not isinstance(op, Exception)]
        at = self.clock()
        outcomes = self.writer.submit(
            Job([Timed(at, op) for _, op in valid], source=Source(f"serve {method} {path}"))
        )
        failures: list[tuple[int, CioAnonError]] = sorted(
            [(index, e) for index, e in enumerate(items) if isinstance(e, InvalidInput)]
            + [(valid[k][0], e) for k, e in enumerate(outcomes) if e is not None],
            key=lambda pair: pair[0],
        )
        if len(failures) < len(items) or not items:
            self._record(at, method, target, body, {index for index, _ in failures})
        return self._answer(dialect, path, failures, strict)

    def _parse(
        self, dialect: str, method: str, path: str, body: Any, batch: bool, strict: bool
    ) -> list[Operation | InvalidInput]:
        """The request's operations; a batch item that is invalid stands as its error."""
        try:
            if dialect == "v1":
                return list(track_v1.parse(method, path, body))
            if not batch:
                parse = track_v2.parse if dialect == "v2" else pipelines.parse
                return list(parse(method, path, body))
            if method != "POST":
                raise MethodNotAllowed(f"{method} is not allowed on {path}.")
            entries = body.get("batch") if isinstance(body, dict) else None
            if not isinstance(entries, list):
                raise InvalidInput("A batch needs `batch` as an array.")
        except UnknownPath as error:
            raise Reply(404, _errors(dialect, str(error))) from None
        except MethodNotAllowed as error:
            raise Reply(405, _errors(dialect, str(error))) from None
        except InvalidInput as error:
            raise self._refuse(dialect, str(error), strict) from None
        one = track_v2.parse_entity if dialect == "v2" else pipelines.parse_message
        items: list[Operation | InvalidInput] = []
        for index, entry in enumerate(entries):
            what = f"Batch item {index}"
            try:
                if len(jsonio.dumps(entry)) > OPERATION_LIMIT:
                    raise InvalidInput(f"{what} is larger than the 32 KB an operation may be.")
                items.append(one(require_object(entry, what), what))
            except InvalidInput as error:
                items.append(error)
            except TypeError:
                items.append(InvalidInput(f"{what} cannot be read as JSON."))
        return items

    def _refuse(self, dialect: str, message: str, strict: bool) -> Reply:
        if dialect == "pipelines" and not strict:
            return Reply(200, {})  # permissive mode: the client treats non-200 as failure
        return Reply(400, _errors(dialect, message))

    def _answer(
        self, dialect: str, path: str, failures: list[tuple[int, CioAnonError]], strict: bool
    ) -> Reply:
        if not failures:
            return Reply(200, {})
        if dialect == "v2" and path.rstrip("/") == "/api/v2/batch":
            return Reply(207, {"errors": [_v2_error(e, index) for index, e in failures]})
        if dialect == "v2":
            return Reply(400, {"errors": [_v2_error(e, None) for _, e in failures]})
        if dialect == "pipelines":
            if not strict:
                return Reply(200, {})
            return Reply(
                400,
                {"errors": [{"batch_index": index, "message": str(e)} for index, e in failures]},
            )
        return Reply(400, {"meta": {"errors": [str(e) for _, e in failures]}})

    def _record(self, at: datetime, method: str, target: str, body: Any, failed: set[int]) -> None:
        """Append the request as a fixture record (a batch without its refused items, so
        that replaying the record applies what the server applied)."""
        if self.record is None:
            return
        if failed and isinstance(body, dict) and isinstance(body.get("batch"), list):
            body = {**body, "batch": [e for i, e in enumerate(body["batch"]) if i not in failed]}
        line = jsonio.dumps({"at": at.isoformat(), "method": method, "path": target, "body": body})
        with self.record_lock:
            self.record.write(line + "\n")
            self.record.flush()

    # -- inspection -----------------------------------------------------------------

    def inspect(self, method: str, target: str) -> Reply:
        parts = urlsplit(target)
        route = [unquote(p) for p in parts.path[len(INSPECT) :].strip("/").split("/")]
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        now = self.clock()
        name = route[0] if route else ""
        if name == "reset":
            if method != "POST":
                raise Reply(405, {"error": "POST /_cio-anon/reset"})
            self._query(lambda ws: ws.reset())
            return Reply(200, {"reset": True})
        if method != "GET":
            raise Reply(405, {"error": f"{method} is not allowed on {parts.path}"})
        if name == "log":
            page = self._query(
                lambda ws: service.activity_log(
                    ws,
                    now,
                    person=query.get("person"),
                    anonymous_id=query.get("anonymous_id"),
                    tab=query.get("tab"),
                    type=query.get("type"),
                    limit=_int(query.get("limit"), 50),
                    before=query.get("before"),
                )
            )
            return Reply(200, documents.log_json(page))
        if name == "profile" and len(route) == 2:
            profile = self._query(lambda ws: service.show(ws, now, identifier=route[1]))
            return Reply(200, documents.profile_json(profile))
        if name == "explain" and len(route) == 2:
            found = self._query(lambda ws: service.explain(ws, now, event_id=route[1]))
            return Reply(200, documents.explain_json(found))
        if name == "summary":
            return Reply(200, self._query(lambda ws: ws.summary()))
        raise Reply(404, {"error": f"No such inspection path: {parts.path}"})

    def _query(self, query: Callable[[Workspace], Any]) -> Any:
        try:
            return self.writer.submit(Job(query=query))
        except NotFound as error:
            raise Reply(404, {"error": str(error)}) from None
        except CioAnonError as error:
            raise Reply(400, {"error": str(error)}) from None


def _errors(dialect: str, message: str) -> dict[str, Any]:
    if dialect == "v1":
        return {"meta": {"errors": [message]}}
    return {"errors": [{"reason": "invalid", "field": None, "message": message}]}


def _v2_error(error: CioAnonError, index: int | None) -> dict[str, Any]:
    reason = error.rule if isinstance(error, RuleViolation) else "invalid"
    entry: dict[str, Any] = {"reason": reason, "field": None, "message": str(error)}
    if index is not None:
        entry = {"batch_index": index, **entry}
    return entry


def _basic(header: str | None) -> tuple[str | None, str | None]:
    if not header or not header.startswith("Basic "):
        return None, None
    try:
        user, _, password = base64.b64decode(header[6:].strip()).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return None, None
    return user, password


def _decode(headers: Mapping[str, str], raw: bytes, limit: int) -> Any:
    """The JSON body (`{}` when empty): gunzipped when so encoded, within `limit` bytes."""
    if not raw:
        return {}
    if headers.get("content-encoding", "").lower() == "gzip":
        try:
            raw = gzip.GzipFile(fileobj=io.BytesIO(raw)).read(BODY_CEILING + 1)
        except (OSError, EOFError, zlib.error):
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


def _int(value: str | None, default: int) -> int:
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise Reply(400, {"error": f"{value!r} is not a whole number."}) from None


def make_handler(api: Api) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "cio-anon"
        timeout = IDLE_TIMEOUT
        # headers and body go out in separate writes: without TCP_NODELAY, Nagle's
        # algorithm and the client's delayed ACK add 40 ms to every keep-alive request
        disable_nagle_algorithm = True

        def setup(self) -> None:
            super().setup()
            with api.connections_lock:
                api.connections.add(self.connection)

        def finish(self) -> None:
            with api.connections_lock:
                api.connections.discard(self.connection)
            super().finish()

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            return

        def _serve(self) -> None:
            try:
                length = self.headers.get("Content-Length")
                if length is None and self.command in ("POST", "PUT"):
                    raw = b""
                else:
                    size = int(length or 0)
                    if size < 0 or size > BODY_CEILING:
                        raise Reply(
                            413,
                            {"error": f"The body may be at most {BODY_CEILING:,} bytes."},
                            {"Connection": "close"},
                        )
                    raw = self.rfile.read(size) if size else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                raise api.handle(self.command, self.path, headers, raw)
            except Reply as reply:
                self._send(reply)
            except ValueError:
                self._send(Reply(400, {"error": "Bad Content-Length."}, {"Connection": "close"}))
            except Exception as error:  # never a traceback in a response
                self._send(Reply(500, {"error": f"internal error: {type(error).__name__}"}))

        def _send(self, reply: Reply) -> None:
            body = jsonio.dumps(reply.body).encode()
            self.send_response(reply.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for key, value in reply.headers.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve

    return Handler


class Server:
    """The running endpoint: HTTP threads in front, one writer behind."""

    def __init__(self, config: ServerConfig, clock: Callable[[], datetime] | None = None):
        check_bind(config)
        self.config = config
        self.clock = clock or make_clock(config)
        self.writer = Writer(config, self.clock)
        self.api = Api(config, self.writer, self.clock)
        try:
            self.http = http.server.ThreadingHTTPServer(
                (config.host, config.port), make_handler(self.api)
            )
        except OSError as error:
            self.writer.workspace.close()
            raise WorkspaceError(
                f"Cannot listen on {config.host}:{config.port}: {error.strerror}."
            ) from None
        self.http.daemon_threads = False
        self.http.block_on_close = True
        if config.tls_cert and config.tls_key:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(config.tls_cert, config.tls_key)
            # the handshake happens in the request's thread, not in the accept loop
            self.http.socket = context.wrap_socket(
                self.http.socket, server_side=True, do_handshake_on_connect=False
            )
        self.writer.start()

    @property
    def url(self) -> str:
        scheme = "https" if self.config.tls_cert else "http"
        return f"{scheme}://{self.config.host}:{self.http.server_address[1]}"

    def serve_forever(self) -> None:
        self.http.serve_forever(poll_interval=0.2)

    def shutdown(self) -> None:
        """Stop accepting, let in-flight requests finish, commit, close."""
        self.http.shutdown()
        self.api.hang_up()
        self.http.server_close()  # joins the request threads (block_on_close)
        self.writer.stop()
        self.api.close()


def make_clock(config: ServerConfig) -> Callable[[], datetime]:
    """Real time; or fixed at `fixed_now`; or running from `clock_start`."""
    if config.fixed_now is not None:
        fixed = config.fixed_now
        return lambda: fixed
    if config.clock_start is not None:
        offset: timedelta = config.clock_start - datetime.now(UTC)
        return lambda: datetime.now(UTC) + offset
    return lambda: datetime.now(UTC)


def run_until_stopped(server: Server) -> None:
    """Serve until SIGINT or SIGTERM, then shut down cleanly."""
    import signal

    stop = threading.Event()

    def request_stop(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    loop = threading.Thread(target=server.serve_forever, name="cio-anon-http", daemon=True)
    loop.start()
    stop.wait()
    server.shutdown()
