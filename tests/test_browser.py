"""A real web page, in Debian's Chromium, running the real browser SDKs against a real
`serve`: Customer.io's `@customerio/cdp-analytics-browser` and Segment's
`@segment/analytics-next`, their bundles from the npm registry (`tests/browser/install.sh`).

The page is served from one loopback origin (`http://localhost:PORT`), serve listens on
another (`http://127.0.0.1:PORT`): every call is a genuine cross-site request, with the
browser's own preflights and CORS checks. Nothing intercepts the page's requests (a
routed request would have its preflight answered by Playwright, proving nothing about
serve); the tests only watch them.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from cio_anon import diff, server, service
from cio_anon.ingest.fixtures import iter_records
from cio_anon.present import documents
from cio_anon.replay import bulk, replay_into
from tests.test_serve import Running

pytestmark = pytest.mark.browser

HERE = Path(__file__).parent / "browser"
STANDALONE = {
    "customerio": HERE / "node_modules/@customerio/cdp-analytics-browser/dist/umd/standalone.js",
    "segment": HERE / "node_modules/@segment/analytics-next/dist/umd/standalone.js",
}
SNIPPET = """<!doctype html>
<meta charset="utf-8">
<title>A shop, with the snippet</title>
<script>
  // The CDN snippet's shape: a queue standing in for `analytics` until the bundle loads,
  // the write key, and `_cdn` (where the settings come from) pointed at serve.
  !function () {
    var a = window.analytics = window.analytics || [];
    a.methods = ["track", "identify", "page", "reset", "setAnonymousId"];
    a.factory = function (m) {
      return function () { var t = [].slice.call(arguments); t.unshift(m); a.push(t); return a; };
    };
    for (var i = 0; i < a.methods.length; i++) a[a.methods[i]] = a.factory(a.methods[i]);
    a._writeKey = "%(key)s"; a._cdn = "%(cdn)s"; a._loadOptions = {};
    var s = document.createElement("script");
    s.async = true; s.src = "/%(sdk)s-standalone.js"; document.head.appendChild(s);
    a.track("Snippet Viewed");
    a.identify("%(user)s");
  }();
</script>
"""
BUNDLES = {
    "customerio": HERE / "node_modules/@customerio/cdp-analytics-browser/dist/umd/index.js",
    "segment": HERE / "node_modules/@segment/analytics-next/dist/umd/index.js",
}
INTEGRATION = {"customerio": "Customer.io Data Pipelines", "segment": "Segment.io"}
CHROMIUM = os.environ.get("CIO_ANON_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
KEY = "dev-key"
SDKS = pytest.mark.parametrize("sdk", ["customerio", "segment"])

PAGE = """<!doctype html>
<meta charset="utf-8">
<title>A shop</title>
<script src="/%(sdk)s.js"></script>
<script>
  // As a web app loads the SDK: a write key and the CDN (here: serve) to fetch settings from.
  const query = new URLSearchParams(location.search);
  const options = {};
  if (query.get("batch")) {
    options.integrations = {
      [query.get("integration")]: {
        deliveryStrategy: { strategy: "batching", config: { size: 100, timeout: 60000 } },
      },
    };
  }
  window.loaded = AnalyticsNext.AnalyticsBrowser.load(
    { writeKey: query.get("key"), cdnURL: query.get("cdn") }, options
  ).then(([analytics]) => { window.analytics = analytics; return "loaded"; },
          (error) => "failed: " + error);
</script>
<h1>A shop</h1>
"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists() or not all(path.exists() for path in BUNDLES.values()):
        if os.environ.get("CI"):
            pytest.fail(
                f"no Chromium at {CHROMIUM} or no SDK bundles: .ci/run installs Debian's "
                "`chromium` and runs tests/browser/install.sh"
            )
        pytest.skip("needs Chromium (apt-get install -y chromium) and tests/browser/install.sh")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        yield launched
        launched.close()


class Shop:
    """The web app: its page and the SDK bundles, on a loopback origin of its own."""

    def __init__(self) -> None:
        files = {f"/{sdk}.js": path.read_bytes() for sdk, path in BUNDLES.items()}
        files.update(
            {f"/{sdk}-standalone.js": path.read_bytes() for sdk, path in STANDALONE.items()}
        )
        files["/next"] = b"<!doctype html><title>next</title><p>another page"
        self.snippets: dict[str, bytes] = {}

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                path, _, _ = self.path.partition("?")
                sdk = "segment" if "sdk=segment" in self.path else "customerio"
                body = (PAGE % {"sdk": sdk}).encode() if path == "/" else files.get(path)
                body = snippets.get(path, body)
                if body is None:
                    self.send_error(404)
                    return
                kind = "text/javascript" if path.endswith(".js") else "text/html"
                self.send_response(200)
                self.send_header("Content-Type", f"{kind}; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        snippets = self.snippets
        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://localhost:{self.http.server_address[1]}"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()


@pytest.fixture(scope="module")
def shop(browser: Any) -> Iterator[Shop]:
    site = Shop()
    yield site
    site.close()


class Visit:
    """One visitor's browser (its own cookies) on the shop, with serve behind it."""

    def __init__(self, browser: Any, shop: Shop, served: Running, sdk: str, **page: str) -> None:
        self.sdk, self.served, self.shop = sdk, served, shop
        self.context = browser.new_context()
        self.page = self.context.new_page()
        self.requests: list[str] = []
        self.statuses: list[tuple[str, int]] = []
        self.console: list[str] = []
        self.page.on("request", lambda request: self.requests.append(request.url))
        self.page.on("response", lambda r: self.statuses.append((r.url, r.status)))
        self.page.on("console", lambda message: self.console.append(message.text))
        cdn = served.url + ("/segment" if sdk == "segment" else "")
        query = {"sdk": sdk, "key": KEY, "cdn": cdn, "integration": INTEGRATION[sdk], **page}
        self.page.goto(f"{shop.url}/?{urlencode(query)}")
        self.loaded = self.page.evaluate("() => window.loaded")

    def call(self, script: str, *args: Any) -> Any:
        return self.page.evaluate(script, list(args))

    def track(self, name: str, properties: dict[str, Any] | None = None) -> str:
        """The message id the SDK gave the event."""
        return str(
            self.call(
                "([name, props]) => analytics.track(name, props).then(c => c.event.messageId)",
                name,
                properties or {},
            )
        )

    def identify(self, user_id: str, traits: dict[str, Any] | None = None) -> None:
        self.call("([id, traits]) => analytics.identify(id, traits)", user_id, traits or {})

    def anonymous_id(self) -> str:
        return str(self.call("() => analytics.user().anonymousId()"))

    def until(self, check: Callable[[], Any], seconds: float = 15.0) -> Any:
        """`until`, letting Playwright deliver the page's events while it waits (the
        synchronous API tells of requests and responses only inside its own calls)."""
        return until(check, seconds, wait=lambda s: self.page.wait_for_timeout(s * 1000))

    def close(self) -> None:
        self.context.close()


@contextlib.contextmanager
def visiting(
    browser: Any,
    shop: Shop,
    tmp_path: Path,
    sdk: str,
    page: dict[str, str] | None = None,
    **serve: Any,
) -> Iterator[Visit]:
    if serve.get("write_key"):  # the inspection API then needs a token of its own
        serve.setdefault("inspect_token", "inspect-secret")
    config = server.ServerConfig(db=tmp_path / "served.db", port=0, **serve)
    instance = server.Server(config)
    threading.Thread(target=instance.serve_forever, daemon=True).start()
    served = Running(instance, None, tmp_path)
    visit = Visit(browser, shop, served, sdk, **(page or {}))
    try:
        yield visit
    finally:
        visit.close()
        instance.shutdown()


def until(
    check: Callable[[], Any], seconds: float = 15.0, wait: Callable[[float], Any] = time.sleep
) -> Any:
    """Wait for `check` to give a true value (the SDKs send in the background)."""
    deadline = time.monotonic() + seconds
    while True:
        found = check()
        if found or time.monotonic() > deadline:
            return found
        wait(0.1)


def events(served: Running, **query: str) -> dict[str, dict[str, Any]]:
    """The events of the log (of a person, with `person=`), by name (none for a person
    not yet there)."""
    status, page = served.call("GET", "/_cio-anon/log?" + urlencode({"limit": "500", **query}))
    if status == 404:
        return {}
    assert status == 200, (status, page)
    rows = [row for tab in ("identified", "anonymous") for row in page[tab] if row["rule"]]
    return {row["name"]: row for row in rows}


def names(served: Running, **query: str) -> set[str]:
    return set(events(served, **query))


@SDKS
def test_a_visitor_browses_then_signs_up(
    browser: Any, shop: Shop, tmp_path: Path, sdk: str
) -> None:
    with visiting(browser, shop, tmp_path, sdk) as visit:
        assert visit.loaded == "loaded", visit.console
        settings = f"{visit.served.url}{'/segment' if sdk == 'segment' else ''}"
        assert f"{settings}/v1/projects/{KEY}/settings" in visit.requests
        visit.track("Product Viewed", {"sku": "TEE-01"})
        visit.track("Added to Cart", {"sku": "TEE-01", "qty": 2})
        anonymous = visit.anonymous_id()
        cookies = {c["name"]: c["value"] for c in visit.context.cookies(visit.shop.url)}
        assert anonymous in cookies["ajs_anonymous_id"]
        assert until(lambda: len(events(visit.served)) == 2)
        assert {e["anonymous_id"] for e in events(visit.served).values()} == {anonymous}
        visit.identify("cust-1042", {"email": "maya@example.com"})
        merged = until(lambda: events(visit.served, person="cust-1042"))
        assert {n: e["rule"] for n, e in merged.items()} == {
            "Product Viewed": "merged_on_identify",
            "Added to Cart": "merged_on_identify",
        }
        visit.track("Checkout Started")
        after = until(lambda: events(visit.served, person="cust-1042").get("Checkout Started"))
        assert after["rule"] == "campaign_eligible" and after["data"] == {}
        profile = visit.served.inspect("profile/cust-1042")
        assert [a["anonymous_id"] for a in profile["anonymous_ids"]] == [anonymous]
        assert profile["person"]["email"] == "maya@example.com"
        # every call went to serve's short paths, cross-site, and was answered 200
        posted = [(u, s) for u, s in visit.statuses if u.startswith(visit.served.url + "/v1/")]
        assert {u.rsplit("/", 1)[1] for u, _ in posted} >= {"t", "i"}
        assert all(status == 200 for _, status in posted), posted


@SDKS
def test_logout_and_a_second_user_keep_their_own_events(
    browser: Any, shop: Shop, tmp_path: Path, sdk: str
) -> None:
    with visiting(browser, shop, tmp_path, sdk) as visit:
        visit.track("Viewed Shoes")
        first = visit.anonymous_id()
        visit.identify("ann")
        assert until(lambda: names(visit.served, person="ann") == {"Viewed Shoes"})
        visit.call("() => analytics.reset()")
        second = visit.anonymous_id()
        assert second != first
        visit.track("Viewed Hats")
        visit.identify("bob")
        assert until(lambda: names(visit.served, person="bob") == {"Viewed Hats"})
        assert names(visit.served, person="ann") == {"Viewed Shoes"}
        anonymous_ids = {
            person: [
                a["anonymous_id"]
                for a in visit.served.inspect(f"profile/{person}")["anonymous_ids"]
            ]
            for person in ("ann", "bob")
        }
        assert anonymous_ids == {"ann": [first], "bob": [second]}


@SDKS
def test_set_anonymous_id_names_the_visitor(
    browser: Any, shop: Shop, tmp_path: Path, sdk: str
) -> None:
    with visiting(browser, shop, tmp_path, sdk) as visit:
        visit.call("() => analytics.setAnonymousId('device-7f3a')")
        visit.track("Opened Newsletter")
        assert until(
            lambda: names(visit.served, anonymous_id="device-7f3a") == {"Opened Newsletter"}
        )
        visit.identify("cleo")
        merged = until(lambda: events(visit.served, person="cleo"))
        assert merged["Opened Newsletter"]["rule"] == "merged_on_identify"
        assert merged["Opened Newsletter"]["anonymous_id"] == "device-7f3a"


@SDKS
def test_a_batch_is_sent_when_the_page_is_left(
    browser: Any, shop: Shop, tmp_path: Path, sdk: str
) -> None:
    """Batching (size 100, a minute): nothing is sent until the visitor leaves the page,
    then one keepalive post to /v1/b carries the events."""
    record = tmp_path / "batches.ndjson"
    with visiting(browser, shop, tmp_path, sdk, page={"batch": "1"}, record=record) as visit:
        assert visit.loaded == "loaded", visit.console
        for name in ("Viewed A", "Viewed B", "Viewed C"):
            visit.call("([name]) => { analytics.track(name); }", name)
        visit.page.wait_for_timeout(1000)
        assert names(visit.served) == set()
        visit.page.goto(f"{visit.shop.url}/next")
        assert visit.until(lambda: names(visit.served) == {"Viewed A", "Viewed B", "Viewed C"})
    recorded = [json.loads(line) for line in record.read_text().splitlines()]
    assert [(r["path"], len(r["body"]["batch"])) for r in recorded] == [("/v1/b", 3)]


def test_a_5xx_then_the_retry_stores_one_copy(browser: Any, shop: Shop, tmp_path: Path) -> None:
    """Another process holds the workspace's lock: serve answers 503 and stores nothing;
    Segment's SDK retries with the same message id once the lock is gone, and one copy is
    stored. (Customer.io's SDK 0.5 takes any HTTP answer as delivered: it retries only
    when serve cannot be reached, below.)"""
    with visiting(browser, shop, tmp_path, "segment", lock_seconds=0.2) as visit:
        assert visit.loaded == "loaded", visit.console
        holder = sqlite3.connect(visit.served.instance.config.db, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            visit.call("() => { analytics.track('Added to Cart'); }")
            refused = visit.until(lambda: [u for u, s in visit.statuses if s == 503])
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert refused, visit.statuses
        stored = visit.until(lambda: events(visit.served).get("Added to Cart"), seconds=30)
        assert stored, (visit.statuses, visit.console)
        visit.page.wait_for_timeout(2000)  # any further retry would have arrived by now
        assert list(events(visit.served)) == ["Added to Cart"]
        assert visit.served.inspect("summary")["events"] == 1
        attempts = [u for u, _ in visit.statuses if u.startswith(visit.served.url + "/v1/t")]
        assert len(attempts) >= 2


@SDKS
def test_calls_made_while_serve_is_away_arrive_once_when_it_is_back(
    browser: Any, shop: Shop, tmp_path: Path, sdk: str
) -> None:
    """serve stops (a restart, say); the visitor adds to cart and signs in meanwhile. The
    SDK keeps the calls and sends them again, the track with the same message id (and
    perhaps the user id it has by then): once serve is back, each is stored once and the
    event is on the person."""
    with visiting(browser, shop, tmp_path, sdk) as visit:
        assert visit.loaded == "loaded", visit.console
        instance = visit.served.instance
        port = instance.port
        instance.shutdown()
        visit.call("() => { analytics.track('Added to Cart'); }")
        visit.call("() => { analytics.identify('cust-9', {email: 'nia@example.com'}); }")
        visit.page.wait_for_timeout(1500)
        config = server.ServerConfig(db=instance.config.db, port=port)
        back = server.Server(config)
        threading.Thread(target=back.serve_forever, daemon=True).start()
        try:
            visit.served = Running(back, None, tmp_path)
            on_person = visit.until(
                lambda: events(visit.served, person="cust-9").get("Added to Cart"), seconds=45
            )
            assert on_person, (visit.statuses, visit.console)
            visit.page.wait_for_timeout(2000)
            assert visit.served.inspect("summary")["events"] == 1
            assert visit.served.inspect("summary")["people"] == 1
        finally:
            back.shutdown()
            instance.shutdown = lambda: None  # type: ignore[method-assign]


@SDKS
def test_with_a_write_key_each_sdk_sends_it_its_own_way(
    browser: Any, shop: Shop, tmp_path: Path, sdk: str
) -> None:
    """Customer.io's SDK puts the key in the body, Segment's in Basic auth (and so sends
    a preflight first): serve takes both."""
    with visiting(browser, shop, tmp_path, sdk, write_key=KEY) as visit:
        assert visit.loaded == "loaded", visit.console
        visit.track("Signed In")
        assert until(lambda: names(visit.served) == {"Signed In"})
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    with visiting(browser, shop, wrong, sdk, write_key="another-key") as visit:
        assert visit.loaded.startswith("failed"), visit.loaded
        assert visit.served.inspect("summary")["events"] == 0


@SDKS
def test_what_serve_recorded_replays_to_the_same_workspace(
    browser: Any, shop: Shop, tmp_path: Path, sdk: str
) -> None:
    record = tmp_path / "browser.ndjson"
    with visiting(browser, shop, tmp_path, sdk, record=record, write_key=KEY) as visit:
        visit.track("Product Viewed")
        visit.identify("dana", {"email": "dana@example.com"})
        visit.call("() => analytics.reset()")
        visit.track("Viewed Hats")
        visit.identify("eli")
        assert until(lambda: names(visit.served, person="eli") == {"Viewed Hats"})
        served = {p: visit.served.inspect(f"profile/{p}") for p in ("dana", "eli")}
        served_log = visit.served.inspect("log?limit=500")
        now = visit.served.instance.clock()
    # every request the SDK sent is taken by replay's bulk path, whole
    requests = list(iter_records(record))
    assert requests and all(bulk.plain(request) for request in requests)
    fresh = tmp_path / "replayed.db"
    summary = replay_into(fresh, now, [record])
    assert summary.ok, summary.invalid
    with service.opened(fresh, now, write=False) as workspace:
        replayed = {
            p: documents.profile_json(service.show(workspace, now, identifier=p))
            for p in ("dana", "eli")
        }
        log = documents.log_json(service.activity_log(workspace, now, limit=500))

    def comparable(page: dict[str, Any]) -> list[Any]:
        keep = ("name", "event_id", "rule", "anonymous_id", "person", "provenance")
        rows = [r for tab in ("identified", "anonymous") for r in page[tab]]
        return sorted((tuple(str(r[k]) for k in keep) for r in rows), key=str)

    assert comparable(log) == comparable(served_log)
    for person in ("dana", "eli"):
        assert replayed[person]["events"] == served[person]["events"]
        assert replayed[person]["anonymous_ids"] == served[person]["anonymous_ids"]
    # and `cio-anon diff` finds the recording, against itself, clean: every event matched
    itself = diff.compare(diff.load([record], now), diff.load([record], now))
    assert (itself.differs, itself.matched_by, itself.added, itself.missing) == (
        False,
        "message id",
        [],
        [],
    )
    assert itself.unchanged == len(itself.new.events) >= 2


@SDKS
def test_a_page_serve_refuses_is_listed_recorded_and_found_by_check(
    browser: Any, shop: Shop, tmp_path: Path, sdk: str
) -> None:
    """A newsletter's visitor lands on a page whose URL carries campaign parameters: the
    URL, which names a page's event, is over the 100 bytes a name may have. serve
    answers the SDK 200, as Data Pipelines does, and tells it where a test can look:
    the inspection API, the recording (which replays to the same workspace), `check`.
    The page sent as the sentence suggests, its URL without the query, is stored."""
    from cio_anon.check.run import check

    record = tmp_path / "browser.ndjson"
    landing = "/products/tee?" + "utm_campaign=winter-sale-2026&" * 3
    with visiting(browser, shop, tmp_path, sdk, record=record) as visit:
        visit.call("([path]) => history.replaceState(null, '', path)", landing)
        page_id = visit.call("() => analytics.page().then(c => c.event.messageId)")
        visit.track("Added to Cart")
        refused = visit.until(lambda: visit.served.inspect("refused")["refused"])
        assert visit.until(lambda: names(visit.served) == {"Added to Cart"})
        address = visit.call("() => location.origin + location.pathname")
        visit.call("([url]) => analytics.page({url})", address)
        assert visit.until(lambda: names(visit.served) == {"Added to Cart", address})
        now = visit.served.instance.clock()
        posted = [s for u, s in visit.statuses if u.startswith(visit.served.url + "/v1/")]
    assert posted and set(posted) == {200}
    assert [r["message_id"] for r in refused] == [page_id]
    assert f"Without its query string the URL is {len(address)} bytes" in refused[0]["refused"]
    marked = [r for r in map(json.loads, record.read_text().splitlines()) if "refused" in r]
    assert len(marked) == 1 and page_id in json.dumps(marked[0]["body"])
    summary = replay_into(tmp_path / "replayed.db", now, [record])
    assert summary.ok and [p.message for p in summary.refused_as_recorded] == [
        refused[0]["refused"]
    ]
    found = check([record], None, now).findings
    assert [f.code for f in found if f.code in ("limit_exceeded", "invalid_record")] == [
        "limit_exceeded"
    ]


@SDKS
def test_pages_the_sdk_sends_meet_a_segment_plan_by_their_names(
    browser: Any, shop: Shop, tmp_path: Path, sdk: str
) -> None:
    """The SDK's own page calls (its url, path, title; a name when the code gives one)
    against a Segment plan that lists pages by name and `Page Viewed`: a named page is
    held to its own rule, and the others, named or not, to `Page Viewed`."""
    record = tmp_path / "pages.ndjson"
    with visiting(browser, shop, tmp_path, sdk, record=record) as visit:
        visit.call("() => history.replaceState(null, '', '/products/tee-1')")
        visit.call("() => analytics.page('Product', {sku: 'TEE-1'})")
        visit.call("() => history.replaceState(null, '', '/about')")
        visit.call("() => analytics.page()")
        visit.call("() => analytics.page('Shop', 'Cart')")
        assert until(lambda: len(list(iter_records(record))) == 3)

    def rule(key: str, required: list[str]) -> dict[str, Any]:
        schema = {"properties": {"properties": {"type": "object", "required": required}}}
        return {"key": key, "type": "PAGE", "jsonSchema": schema}

    plan = tmp_path / "plan.json"
    plan.write_text(
        json.dumps(
            {"rules": [rule("Product", ["sku", "url", "title"]), rule("Page Viewed", ["campaign"])]}
        )
    )
    result = subprocess.run(
        [sys.executable, "-m", "cio_anon", "check", str(record), "--plan", str(plan)]
        + ["--format", "json"],
        capture_output=True,
        text=True,
        check=False,
    )
    found = json.loads(result.stdout)["findings"]
    assert [(f["line"], f["code"], f["path"]) for f in found] == [
        (2, "required_missing", "$.campaign"),
        (3, "required_missing", "$.campaign"),
    ], found  # the product page sent its sku, url and title
    assert all(f["message"].startswith("'Page Viewed' at") for f in found)


@SDKS
def test_the_cdn_snippet_with_serve_as_its_cdn(
    browser: Any, shop: Shop, tmp_path: Path, sdk: str
) -> None:
    """A page that loads the SDK as the CDN snippet does (the standalone bundle, calls
    queued before it loads) with `analytics._cdn` set to serve: the settings come from
    serve and the queued calls arrive, on the person."""
    with visiting(browser, shop, tmp_path, sdk) as visit:
        cdn = visit.served.url + ("/segment" if sdk == "segment" else "")
        user = f"snippet-{sdk}"
        page = f"/snippet-{sdk}"
        shop.snippets[page] = (
            SNIPPET % {"key": KEY, "cdn": cdn, "sdk": sdk, "user": user}
        ).encode()
        visit.page.goto(shop.url + page)
        # the queue is replayed once the bundle loads: the track goes out as the
        # visitor's (the SDK has the user id by then) or merges at the identify
        viewed = visit.until(lambda: events(visit.served, person=user).get("Snippet Viewed"))
        assert viewed, (visit.statuses, visit.console)
        assert viewed["rule"] in ("campaign_eligible", "merged_on_identify")
        assert f"{cdn}/v1/projects/{KEY}/settings" in visit.requests
