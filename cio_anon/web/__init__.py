"""The web view: read-only HTML pages of a workspace for support staff — people, a
person with the activity log's Identified and Anonymous tabs, an event's explanation,
an anonymous id, the workspace — served by `cio-anon serve` beside the APIs and by
`cio-anon ui`; and one person as a self-contained file (`show --html`).

Pages are rendered on the server (Jinja2, autoescaped: every value from the workspace
is text, never markup) and need no JavaScript; the stylesheet ships in the package. With
JavaScript on, a page reloads itself when what it shows changes (`/changes`), so someone
clicking through their app sees its calls arrive, and a page nothing new touches stays
as it is while other traffic comes in.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from importlib import resources
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Match, Route

from cio_anon import jsonio, rules, service
from cio_anon.clock import parse_time
from cio_anon.errors import CioAnonError, NotFound
from cio_anon.present import words
from cio_anon.store import Workspace

PAGE = 50
"""Rows per page of a tab."""
MARK_HERE = "cio-anon-mark-here"
"""What a page is rendered with in place of its change mark while its digest is taken."""
NO_PAGE = "none"
"""The digest of a page that cannot be shown: a person deleted, or not there yet."""
PAGE_HEADERS = {
    # the pages load only their own stylesheet and script, and no other site may frame them
    "Content-Security-Policy": (
        "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
STANDALONE_ROWS = 500
"""Rows of each tab in a `show --html` file."""

Ask = Callable[[Callable[[Workspace], Any]], Awaitable[Any]]
"""Runs a read against the workspace (on the server's writer thread)."""


@functools.cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("cio_anon.web", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters.update(
        when=words.time_text,
        fine_times=words.fine_times,
        iso=lambda moment: moment.isoformat(),
        ago=_ago,
        path=lambda value: quote(str(value), safe=""),
        summary=words.activity_summary,
        note_extra=lambda row: words.log_note(row, marker=False),
        retention=words.retention_left,
        tojson_text=jsonio.dumps,
    )
    env.tests["moment"] = lambda value: isinstance(value, datetime)
    env.globals["marker"] = words.MERGED_MARKER
    return env


def stylesheet() -> str:
    """The shipped stylesheet, inlined as it is (not escaped) into a standalone page: it
    is ours, and holds nothing that could end its <style> element."""
    css = static("style.css")
    assert "</" not in css
    return css


def static(name: str) -> str:
    return resources.files("cio_anon.web").joinpath(f"static/{name}").read_text("utf-8")


def _ago(moment: datetime, now: datetime) -> str:
    seconds = (now - moment).total_seconds()
    if abs(seconds) < 60:
        return "(now)"
    span = words.duration_text(abs(seconds))
    return f"({span} ago)" if seconds > 0 else f"(in {span})"


def render(template: str, **context: Any) -> str:
    defaults = {
        "standalone": False,
        "inline_css": None,
        "query": None,
        "workspace": "",
        "mark": None,
    }
    return environment().get_template(template).render({**defaults, **context})


# -- a person -------------------------------------------------------------------------


def person_page(
    workspace: Workspace,
    now: datetime,
    identifier: str,
    *,
    tab: str = "identified",
    before: str | None = None,
    standalone: bool = False,
    label: str = "",
    mark: str | None = None,
) -> str:
    """The person page (`standalone`: both tabs, the stylesheet inline, no links; `mark`:
    the workspace's change mark when it was read, for the page's reload-on-change)."""
    profile = service.show(workspace, now, identifier=identifier)
    ident = f"cio_{profile.person.cio_id}"
    if standalone:
        page = service.activity_log(workspace, now, person=ident, limit=STANDALONE_ROWS)
        sections = [("identified", page.identified), ("anonymous", page.anonymous)]
        following = None
    else:
        page = service.activity_log(
            workspace, now, person=ident, tab=tab, limit=PAGE, before=before
        )
        sections = [(tab, getattr(page, tab))]
        following = page.next_of(tab)
    return render(
        "person.html",
        title=profile.person.ref().label,
        profile=profile,
        sections=sections,
        current=tab,
        next=following,
        now=now,
        standalone=standalone,
        inline_css=stylesheet() if standalone else None,
        workspace=label,
        mark=mark,
    )


# -- the routes -----------------------------------------------------------------------


def _digest(html: str) -> str:
    """A page's digest: it differs when anything the page shows differs."""
    return hashlib.sha256(html.encode()).hexdigest()[:16]


def _marked(html: str, mark: str) -> str:
    """A page rendered with MARK_HERE, with its change mark in place: the workspace's
    mark when it was read, and the page's digest (which `/changes` takes again)."""
    return html.replace(MARK_HERE, f"{mark} {_digest(html)}", 1)


Build = Callable[[Request, datetime, str], Awaitable[str]]
"""A page: its HTML for a request, as of a time, with a change mark."""


async def _digest_of(pages: Sequence[tuple[Route, Build]], shown: str, at: str) -> str:
    """The digest of the page at `shown` (its path and query) rendered again as of the
    time it was rendered at: what the page would show now, to the byte."""
    where = urlsplit(shown)
    scope = {
        "type": "http",
        "method": "GET",
        "path": unquote(where.path),
        "query_string": where.query.encode(),
        "headers": [],
    }
    for route, build in pages:
        found, params = route.matches(scope)
        if found is Match.FULL:
            try:
                html = await build(Request({**scope, **params}), parse_time(at), MARK_HERE)
            except CioAnonError:  # not there (a person deleted, or not yet) or no time
                return NO_PAGE
            return _digest(html)
    return NO_PAGE


Guard = Callable[[Request], Response | None]
"""A check run before every page: a response (401, ...) refuses the request."""


def routes(
    ask: Ask,
    clock: Callable[[], datetime],
    label: str,
    guard: Guard,
    refused: Callable[[str], str | None] = lambda _: None,
) -> list[Route]:
    """The pages, read-only (GET and HEAD). `refused`: how serve refused a call sent
    with an id, if it did (an event's page for that id says so)."""

    def page(build: Build) -> Callable[..., Any]:
        async def endpoint(request: Request) -> Response:
            refused = guard(request)
            if refused is not None:
                return refused
            if request.method not in ("GET", "HEAD"):
                return _error(405, "Not allowed", "These pages only read.", label)
            now, live = clock(), None
            try:
                # the mark before the read: a change committed in between reloads the
                # page once more, and none is missed (live.js starts from this mark)
                mark = await ask(lambda ws: ws.change_mark())
                live = f"{mark} {NO_PAGE}"  # if it cannot be shown: once it can, it reloads
                html = await build(request, now, MARK_HERE)
                return HTMLResponse(_marked(html, mark), headers=PAGE_HEADERS)
            except NotFound as error:
                return _error(404, "Not found", str(error), label, live, now)
            except CioAnonError as error:
                return _error(error.status, "Cannot show this", str(error), label, live, now)

        return endpoint

    async def index(request: Request, now: datetime, mark: str) -> str:
        def read(ws: Workspace) -> dict[str, Any]:
            return {
                "settings": ws.settings(),
                "summary": ws.summary(),
                "people": service.list_people(ws, limit=20),
            }

        found = await ask(read)
        constants = {
            "retention": _days(rules.RETENTION),
            "window": _days(rules.MERGE_WINDOW),
            "campaign": _days(rules.CAMPAIGN_WINDOW),
        }
        return render(
            "index.html",
            title="Workspace",
            now=now,
            constants=constants,
            workspace=label,
            mark=mark,
            **found,
        )

    async def people(request: Request, now: datetime, mark: str) -> str:
        query = request.query_params.get("q", "").strip()
        found = await ask(
            lambda ws: (
                service.search_people(ws, query) if query else service.list_people(ws, limit=100)
            )
        )
        return render(
            "people.html",
            title="People",
            people=found,
            query=query,
            now=now,
            workspace=label,
            mark=mark,
        )

    async def person(request: Request, now: datetime, mark: str) -> str:
        tab = request.query_params.get("tab", "identified")
        if tab not in service.TABS:
            tab = "identified"
        identifier = request.path_params["ident"]
        before = request.query_params.get("before") or None
        return await ask(  # type: ignore[no-any-return]
            lambda ws: person_page(
                ws, now, identifier, tab=tab, before=before, label=label, mark=mark
            )
        )

    async def event(request: Request, now: datetime, mark: str) -> str:
        event_id = request.path_params["event_id"]
        why = refused(event_id)
        explanation = await ask(lambda ws: service.explain(ws, now, event_id=event_id, refused=why))
        return render(
            "event.html",
            title=explanation.name,
            explanation=explanation,
            now=now,
            workspace=label,
            mark=mark,
        )

    async def anonymous(request: Request, now: datetime, mark: str) -> str:
        anonymous_id = request.path_params["anonymous_id"]
        tab = request.query_params.get("tab", "anonymous")
        tab = tab if tab in service.TABS else "anonymous"
        before = request.query_params.get("before") or None

        def read(ws: Workspace) -> tuple[Any, Any]:
            found = service.anonymous_profile(ws, anonymous_id=anonymous_id)
            log = service.activity_log(
                ws, now, anonymous_id=anonymous_id, tab=tab, limit=PAGE, before=before
            )
            return found, log

        found, log = await ask(read)
        rows = [row for row in getattr(log, tab) if row.event is not None]
        following = log.next_of(tab)
        return render(
            "anonymous.html",
            title=anonymous_id,
            profile=found,
            rows=rows,
            current=tab,
            next=following,
            now=now,
            workspace=label,
            mark=mark,
        )

    def shipped(name: str, media_type: str) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            refused = guard(request)
            if refused is not None:
                return refused
            return Response(
                static(name),
                media_type=media_type,
                headers={"Cache-Control": "max-age=300", **PAGE_HEADERS},
            )

        return endpoint

    pages = {
        "/": index,
        "/people": people,
        "/person/{ident:path}": person,
        "/event/{event_id:path}": event,
        "/anonymous/{anonymous_id:path}": anonymous,
    }
    located = [(Route(path, build), build) for path, build in pages.items()]

    async def changes(request: Request) -> Response:
        """The workspace's change mark; given a page (`page`, `at`: its path and the
        time it was rendered at) and the mark it saw last (`seen`), the page's digest
        too when the workspace changed since, so that only a page whose own content
        changed reloads."""
        refused = guard(request)
        if refused is not None:
            return refused
        mark = await ask(lambda ws: ws.change_mark())
        answer = {"mark": mark}
        asked = request.query_params
        shown, at = asked.get("page"), asked.get("at")
        if shown is not None and at is not None and asked.get("seen") != mark:
            answer["page"] = await _digest_of(located, shown, at)
        return Response(
            jsonio.dumps(answer),
            media_type="application/json",
            headers={"Cache-Control": "no-store"},
        )

    methods = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"]
    return [
        *(Route(path, page(build), methods=methods) for path, build in pages.items()),
        Route("/static/style.css", shipped("style.css", "text/css"), methods=["GET", "HEAD"]),
        Route(
            "/static/live.js",
            shipped("live.js", "text/javascript"),
            methods=["GET", "HEAD"],
        ),
        Route("/changes", changes, methods=["GET", "HEAD"]),
    ]


def not_found(path: str, label: str) -> HTMLResponse:
    """The page for a path no page has."""
    return _error(404, "Not found", f"There is no page at {path}.", label)


def _error(
    status: int,
    heading: str,
    message: str,
    label: str,
    mark: str | None = None,
    now: datetime | None = None,
) -> HTMLResponse:
    """An error page; with a change mark (and the time it was made at), a page that could
    not be shown, which reloads itself once it can be (a person whose calls arrive)."""
    body = render(
        "error.html",
        title=heading,
        heading=heading,
        message=message,
        now=now,
        workspace=label,
        mark=mark,
    )
    return HTMLResponse(body, status_code=status, headers=PAGE_HEADERS)


def _days(span: Any) -> str:
    """30 days, 72 hours, 5 minutes: the largest unit that counts the span whole."""
    seconds = int(span.total_seconds())
    for unit, size in (("hours", 3600), ("days", 86400), ("minutes", 60)):
        if seconds % size == 0 and (unit != "hours" or seconds // size < 100):
            return f"{seconds // size} {unit}"
    return f"{seconds} seconds"
