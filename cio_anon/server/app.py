"""Starting and stopping `serve`: the listening socket, the record file, the writer, and
uvicorn running the routes; the access log; a clean stop on SIGINT or SIGTERM.

Start-up goes from what cannot leave anything behind to what can: check the options,
bind the socket, open the record file, then the workspace. A failure at any step
undoes the steps before it, so a port in use or a missing folder leaves no workspace.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import queue
import resource
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import uvicorn
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from cio_anon.errors import InvalidInput, WorkspaceError
from cio_anon.server.origins import Origins
from cio_anon.server.routes import BODY_SECONDS, REFUSED, Credentials, Settings, application
from cio_anon.server.writer import Reader, RecordFile, Writer
from cio_anon.streams import write_all

IDLE_SECONDS = 60
"""How long a keep-alive connection may wait for its next request."""
CONNECTIONS = 4096
"""Open connections at most (more are answered 503), if the file limit allows."""
BACKLOG = 4096
"""Connections the kernel queues before they are accepted."""
STOP_SECONDS = 5
"""On a stop, requests in flight get this long to finish."""
HEADER_SECONDS = 10.0
"""A request's headers must arrive whole within this time of its first byte (or of the
connection): a client that opens connections and never finishes them cannot hold the
connection slots that real clients need."""


@dataclass
class ServerConfig:
    db: Path
    host: str = "127.0.0.1"
    port: int = 8080
    record: Path | None = None
    site_id: str | None = None
    api_key: str | None = None
    write_key: str | None = None
    inspect_token: str | None = None
    allowed_hosts: tuple[str, ...] = ()
    fixed_now: datetime | None = None
    clock_start: datetime | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    quiet: bool = True
    """No access log (the CLI logs unless --quiet; tests and embedders stay quiet)."""
    body_seconds: float = BODY_SECONDS
    connections: int = CONNECTIONS
    pages_only: bool = False
    """`cio-anon ui`: the web view alone, on an existing workspace, changing nothing."""
    label: str | None = None
    """How the pages name the workspace (default: its path)."""
    cors_origins: tuple[str, ...] = ()
    """Origins, beyond loopback pages, whose pages may call the APIs (`--cors-origin`)."""
    lock_seconds: float | None = None
    """How long a write waits for a lock another process holds on the workspace before
    it is answered 503 (None: the workspace's own busy timeout)."""
    decisions: bool = False
    """One line per decision on stdout as traffic arrives (`serve` on a terminal)."""
    header_seconds: float = HEADER_SECONDS

    @property
    def credentials(self) -> Credentials:
        return Credentials(self.site_id, self.api_key, self.write_key, self.inspect_token)

    @property
    def loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


def check_bind(config: ServerConfig) -> None:
    """Refuse to listen beyond loopback unless every route is protected (with any
    credential configured, every route needs one), and origins that are none."""
    Origins(config.cors_origins)
    half = half_a_pair(config.site_id, config.api_key)
    if half:
        raise InvalidInput(half)
    if not config.loopback and not config.credentials.configured:
        raise InvalidInput(
            f"Listening on {config.host} (not loopback) needs credentials: give --site-id "
            "and --api-key, --write-key, or --inspect-token."
        )
    if bool(config.tls_cert) != bool(config.tls_key):
        raise InvalidInput("TLS needs both --tls-cert and --tls-key.")


def half_a_pair(site_id: str | None, api_key: str | None) -> str | None:
    """What is wrong when only half of the Track API's credentials is given (it would
    protect nothing), or None."""
    if bool(site_id) == bool(api_key):
        return None
    return "--site-id and --api-key go together: give both or neither."


def allowed_hosts(config: ServerConfig) -> frozenset[str] | None:
    """The Host names answered: on loopback, the loopback names (and --allowed-host);
    on another address, the --allowed-host names if given, else any (every route then
    needs credentials)."""
    given = {name.lower().strip("[]") for name in config.allowed_hosts}
    if config.loopback:
        return frozenset({"127.0.0.1", "localhost", "::1", config.host.lower(), *given})
    return frozenset({config.host.lower(), *given}) if given else None


def make_clock(config: ServerConfig) -> Callable[[], datetime]:
    """Real time; or fixed at `fixed_now`; or running from `clock_start`."""
    if config.fixed_now is not None:
        fixed = config.fixed_now
        return lambda: fixed
    if config.clock_start is not None:
        offset: timedelta = config.clock_start - datetime.now(UTC)
        return lambda: datetime.now(UTC) + offset
    return lambda: datetime.now(UTC)


class Server:
    """The running endpoint: uvicorn in front, one writer behind."""

    def __init__(self, config: ServerConfig, clock: Callable[[], datetime] | None = None):
        check_bind(config)
        self.config = config
        self.clock = clock or make_clock(config)
        self.stopped = threading.Event()
        self.log = AccessLog(enabled=not config.quiet)
        self.told = AccessLog(enabled=config.decisions, stream="stdout")
        with contextlib.ExitStack() as undo:
            self.socket = _bind(config)
            undo.callback(self.socket.close)
            self.record = None if config.record is None else RecordFile.open(config.record)
            if self.record is not None:
                undo.callback(self.record.close)
            self.writer = Writer(
                config.db,
                self.clock(),
                self.record,
                create=not config.pages_only,
                lock_seconds=config.lock_seconds,
                decisions=self.told.say if config.decisions else None,
            )
            undo.callback(self.writer.workspace.close)
            self.reader = Reader(config.db)
            app = application(
                Settings(
                    self.writer,
                    self.clock,
                    config.credentials,
                    allowed_hosts(config),
                    record=self.record is not None,
                    body_seconds=config.body_seconds,
                    pages_only=config.pages_only,
                    label=config.label or str(config.db),
                    origins=Origins(config.cors_origins),
                    reader=self.reader,
                )
            )
            self.uvicorn = uvicorn.Server(self._uvicorn_config(self.log.wrap(app)))
            undo.pop_all()
        self.writer.start()

    def _uvicorn_config(self, app: ASGIApp) -> uvicorn.Config:
        config = uvicorn.Config(
            app,
            http=_timed_headers(self.config.header_seconds),
            lifespan="off",
            log_config=None,
            access_log=False,
            server_header=False,
            limit_concurrency=_connection_limit(self.config.connections),
            backlog=BACKLOG,
            timeout_keep_alive=IDLE_SECONDS,
            timeout_graceful_shutdown=STOP_SECONDS,
            ssl_certfile=self.config.tls_cert,
            ssl_keyfile=self.config.tls_key,
        )
        try:
            config.load()  # TLS files are read now, so a bad one stops start-up
        except (OSError, ValueError) as error:
            raise InvalidInput(f"Cannot use the TLS certificate and key: {error}.") from None
        self.log.quiet_uvicorn(config.limit_concurrency or 0)
        return config

    @property
    def port(self) -> int:
        return int(self.socket.getsockname()[1])

    @property
    def url(self) -> str:
        scheme = "https" if self.config.tls_cert else "http"
        host = f"[{self.config.host}]" if ":" in self.config.host else self.config.host
        return f"{scheme}://{host}:{self.port}"

    def browser_setup(self) -> list[str]:
        """What a web page needs to send its browser SDK's calls here: the lines to paste,
        for Customer.io's SDK and for Segment's."""
        key = self.config.write_key or "dev"
        api_host = self.url.split("://", 1)[1] + "/v1"
        return [
            "A web page (served from loopback, or from an origin given with --cors-origin):",
            "  Customer.io (npm @customerio/cdp-analytics-browser):",
            f"    AnalyticsBrowser.load({{ writeKey: '{key}', cdnURL: '{self.url}' }})",
            "  Segment (npm @segment/analytics-next):",
            f"    AnalyticsBrowser.load({{ writeKey: '{key}', cdnURL: '{self.url}/segment' }})",
            "  a CDN snippet: before analytics.load(...), set",
            f"    analytics._cdn = '{self.url}'  (Segment's: '{self.url}/segment')",
            f"  apiHost (the settings give it): {api_host}",
        ]

    def serve_forever(self) -> None:
        """Serve until `shutdown` (in this thread: uvicorn's own event loop)."""
        try:
            self.uvicorn.run(sockets=[self.socket])
        finally:
            self.stopped.set()

    def shutdown(self) -> None:
        """Stop accepting, let requests in flight finish, commit, close."""
        self.uvicorn.should_exit = True
        self.stopped.wait(STOP_SECONDS + 5)
        self.reader.close()
        self.writer.stop()
        if self.record is not None:
            self.record.close()
        self.socket.close()
        self.log.close()
        self.told.close()


def _timed_headers(seconds: float) -> type[HttpToolsProtocol]:
    """uvicorn's HTTP protocol (httptools), closing a connection whose request headers
    have not arrived whole `seconds` after the connection or the request's first byte
    (uvicorn limits the time between requests and cio-anon the body's, not this)."""

    class TimedHeaders(HttpToolsProtocol):
        _headers_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._arm()

        def on_headers_complete(self) -> None:
            self._disarm()
            super().on_headers_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            if self._headers_timer is None:
                self._headers_timer = self.loop.call_later(seconds, self._too_slow)

        def _disarm(self) -> None:
            if self._headers_timer is not None:
                self._headers_timer.cancel()
                self._headers_timer = None

        def _too_slow(self) -> None:
            self._headers_timer = None
            if not self.transport.is_closing():
                self.transport.write(
                    b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n"
                    b"Content-Length: 0\r\n\r\n"
                )
                self.transport.close()

    return TimedHeaders


def _bind(config: ServerConfig) -> socket.socket:
    family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((config.host, config.port))
        sock.listen(BACKLOG)
    except OSError as error:
        sock.close()
        reason = error.strerror or str(error)
        raise WorkspaceError(f"Cannot listen on {config.host}:{config.port}: {reason}.") from None
    sock.set_inheritable(True)
    return sock


def _connection_limit(wanted: int) -> int:
    """`wanted` connections, within the open-file limit (raised to its hard ceiling)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted + 64:
        target = hard if hard == resource.RLIM_INFINITY else min(hard, wanted + 64)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(16, min(wanted, soft - 64))


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
    while not stop.wait(0.5):
        if server.stopped.is_set():  # uvicorn ended by itself
            break
    server.shutdown()


# -- the access log -------------------------------------------------------------------


@dataclass
class AccessLog:
    """One line per request on stderr (`ADDRESS "METHOD TARGET" STATUS MS`), and
    uvicorn's own warnings as one line each; or, on stdout, serve's decisions. Lines pass
    through a bounded queue to a thread that writes them: a stream nobody reads costs
    dropped lines, never a stuck server or a stop that does not finish."""

    enabled: bool = True
    stream: str = "stderr"
    """Where the lines go: `stderr` (the access log) or `stdout` (the decisions)."""
    lines: queue.Queue[str] = field(default_factory=lambda: queue.Queue(maxsize=10_000))
    dropped: int = 0

    def __post_init__(self) -> None:
        self.thread: threading.Thread | None = None
        if self.enabled:
            self.thread = threading.Thread(target=self._drain, name="cio-anon-log", daemon=True)
            self.thread.start()

    def say(self, line: str) -> None:
        if not self.enabled:
            return
        try:
            self.lines.put_nowait(line)
        except queue.Full:
            self.dropped += 1

    def _drain(self) -> None:
        while True:
            line = self.lines.get()
            stream = sys.stdout if self.stream == "stdout" else sys.stderr
            try:
                fd = stream.fileno()
            except (OSError, ValueError):  # not a file (a test's capture): through it
                with contextlib.suppress(OSError, ValueError):
                    stream.write(line + "\n")
                    stream.flush()
                continue
            # straight to the file, holding none of the stream's locks: a stream nobody
            # reads blocks this thread alone, not the interpreter's flush of the stream
            # at exit (with Python's buffered stderr, a stop waited on it for ever)
            text = (line + "\n").encode(stream.encoding or "utf-8", stream.errors or "strict")
            with contextlib.suppress(OSError, ValueError):
                write_all(fd, text)

    def close(self) -> None:
        """Give the lines a moment to be written; never wait on a stuck stderr."""
        deadline = time.monotonic() + 1.0
        while self.enabled and not self.lines.empty() and time.monotonic() < deadline:
            time.sleep(0.01)

    def quiet_uvicorn(self, connections: int) -> None:
        """uvicorn's loggers write through this log, one line, no traceback (a client
        that disconnects is not news); `connections`: the most uvicorn holds."""
        handler = _LineHandler(self, connections)
        for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "asyncio"):
            logger = logging.getLogger(name)
            logger.handlers = [handler]
            logger.propagate = False
            logger.setLevel(logging.WARNING)

    def wrap(self, app: ASGIApp) -> ASGIApp:
        if not self.enabled:
            return app

        async def logged(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            started, status = time.perf_counter(), 0

            async def sending(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                await send(message)

            try:
                await app(scope, receive, sending)
            finally:
                client = scope.get("client") or ("-", 0)
                target = scope.get("raw_path", b"").decode("latin-1")
                if scope.get("query_string"):
                    target += "?" + scope["query_string"].decode("latin-1")
                took = (time.perf_counter() - started) * 1000
                refused = (scope.get("state") or {}).get(REFUSED)
                self.say(
                    f'{client[0]}:{client[1]} "{scope["method"]} {_printable(target)} '
                    f'HTTP/{scope.get("http_version", "1.1")}" {status or "-"} {took:.1f}ms'
                    + ("" if refused is None else f" refused: {_printable(refused)}")
                )

        return logged


OVER_LIMIT = "Exceeded concurrency limit."
"""What uvicorn logs for each request it answers 503 beyond `limit_concurrency`."""

OVER_LIMIT_TOLD = 60.0
"""Seconds after which a request over the limit is explained again in full."""


class _LineHandler(logging.Handler):
    def __init__(self, log: AccessLog, connections: int) -> None:
        super().__init__(logging.WARNING)
        self.log = log
        self.connections = connections
        self.told = -OVER_LIMIT_TOLD
        """When a request over the limit was last explained (`time.monotonic`)."""

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            message += f" ({type(record.exc_info[1]).__name__})"
        if message == OVER_LIMIT:
            message = self._over_limit()
        self.log.say(f"cio-anon serve: {_printable(message)}")

    def _over_limit(self) -> str:
        """A request answered 503 beyond the connections serve holds: said in full once
        a burst (a client sending every batch at once may meet it thousands of times)."""
        now = time.monotonic()
        told, self.told = now - self.told < OVER_LIMIT_TOLD, now
        if told:
            return "a request answered 503: over the connection limit"
        return (
            f"a request answered 503: {self.connections:,} connections or requests were open, "
            "the most serve holds; a client that sends every batch at once retries, then "
            'gives up (docs/serve.md, "A burst from a server library")'
        )


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)
