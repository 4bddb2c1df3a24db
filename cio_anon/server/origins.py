"""Which web pages may talk to `serve`, decided before anything else reads a request.

A browser tells where a request comes from: `Origin` (every cross-origin fetch, every
POST) and `Sec-Fetch-Site`. The ingest routes (Customer.io's APIs and the SDK settings)
answer pages from the allowed origins with CORS, preflights included, before any
credential is asked for (a preflight never carries one). Every other origin is refused
on every route, before its body is read: a page on the web cannot make serve delete a
person, even with a `text/plain` post that needs no preflight. The inspection API and the
web view answer their own origin only.

Allowed by default: pages served from loopback (`http://localhost:*`,
`http://127.0.0.1:*`, `http://[::1]:*`, and https on the same names), which only this
machine can serve. Others are named with `--cors-origin`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cio_anon import jsonio
from cio_anon.errors import InvalidInput

LOOPBACK = ("localhost", "127.0.0.1", "[::1]")
ALLOWED_METHODS = "GET, POST, PUT, DELETE, OPTIONS"
ALLOWED_HEADERS = "Content-Type, Authorization, X-Retry-Count, X-Strict-Mode, Content-Encoding"
PREFLIGHT_SECONDS = 600
_ORIGIN = re.compile(r"(https?)://(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(?::(\d{1,5}|\*))?")


@dataclass(frozen=True)
class Origins:
    """The origins whose pages may call the ingest routes: loopback pages, and the
    exact origins given (`:*` allows any port)."""

    given: tuple[str, ...] = ()
    _allowed: tuple[tuple[str, str, str | None], ...] = field(init=False, repr=False)
    """The given origins as (scheme, host, port), read once."""

    def __post_init__(self) -> None:
        allowed = []
        for origin in self.given:
            found = _ORIGIN.fullmatch(origin.strip().lower())
            if found is None:
                raise InvalidInput(
                    f"--cors-origin {origin!r} is not an origin: give SCHEME://HOST[:PORT] "
                    "(PORT may be *), e.g. http://myapp.test:3000."
                )
            allowed.append((found.group(1), found.group(2), found.group(3)))
        object.__setattr__(self, "_allowed", tuple(allowed))

    def allows(self, origin: str) -> bool:
        found = _ORIGIN.fullmatch(origin)
        if found is None or found.group(3) == "*":
            return False  # `null`, a file:// page, or something that is no origin
        scheme, host, port = found.group(1), found.group(2).lower(), found.group(3)
        return host in LOOPBACK or any(
            (scheme, host) == (s, h) and p in ("*", port) for s, h, p in self._allowed
        )


class OriginCheck:
    """ASGI middleware: CORS for the ingest routes, 403 for a page of any other origin
    (or for another site's page on the inspection API and the web view)."""

    def __init__(self, app: ASGIApp, origins: Origins, ingest: Callable[[str], bool]) -> None:
        self.app = app
        self.origins = origins
        self.ingest = ingest

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        origin = headers.get("origin")
        method = scope["method"]
        if origin is None:
            # a browser always names the origin of a cross-site write; a cross-site
            # request without one is a navigation (a link), harmless when it only reads
            if headers.get("sec-fetch-site") == "cross-site" and method not in ("GET", "HEAD"):
                await _refuse(scope, receive, send, "another site")
                return
            await self.app(scope, receive, send)
            return
        own = f"{scope.get('scheme', 'http')}://{headers.get('host', '')}"
        if origin == own:
            await self.app(scope, receive, send)
            return
        if not (self.ingest(scope["path"]) and self.origins.allows(origin)):
            await _refuse(scope, receive, send, f"the page at {origin}")
            return
        cors = [
            (b"access-control-allow-origin", origin.encode("latin-1")),
            (b"vary", b"Origin"),
        ]
        if method == "OPTIONS" and "access-control-request-method" in headers:
            cors += [
                (b"access-control-allow-methods", ALLOWED_METHODS.encode()),
                (b"access-control-allow-headers", ALLOWED_HEADERS.encode()),
                (b"access-control-max-age", str(PREFLIGHT_SECONDS).encode()),
            ]
            if headers.get("access-control-request-private-network") == "true":
                cors.append((b"access-control-allow-private-network", b"true"))
            await send({"type": "http.response.start", "status": 204, "headers": cors})
            await send({"type": "http.response.body", "body": b""})
            return
        cors.append((b"access-control-expose-headers", b"Retry-After"))

        async def with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *cors]}
            await send(message)

        await self.app(scope, receive, with_cors)


async def _refuse(scope: Scope, receive: Receive, send: Send, who: str) -> None:
    body = jsonio.dumps(
        {
            "error": f"Refused: {who} may not call this server. Pages served from loopback "
            "may call its APIs; name others with `cio-anon serve --cors-origin`."
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 403,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"vary", b"Origin"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
