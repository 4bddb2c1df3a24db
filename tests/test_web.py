"""The web view in a real browser: Playwright driving Debian's Chromium against pages
served from a real workspace by a real server."""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cio_anon import server, service
from cio_anon.replay import replay_into
from tests.conftest import T0, t

ROOT = Path(__file__).resolve().parent.parent
SHOPPER = ROOT / "fixtures" / "shopper.ndjson"
SCREENSHOT = ROOT / "docs" / "person-page.png"
READ_AT = T0.add(days=3)  # the shopper's story ends on the evening of March 2nd
CHROMIUM = os.environ.get("CIO_ANON_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail(f"no Chromium at {CHROMIUM}: .ci/run installs Debian's `chromium`")
        pytest.skip("no Chromium here (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


class Site:
    def __init__(self, instance: server.Server) -> None:
        self.instance = instance
        self.url = instance.url


def _serve(db: Path, **options: Any) -> Iterator[Site]:
    config = server.ServerConfig(db=db, port=0, fixed_now=READ_AT, **options)
    instance = server.Server(config)
    threading.Thread(target=instance.serve_forever, daemon=True).start()
    try:
        yield Site(instance)
    finally:
        instance.shutdown()


@pytest.fixture
def shopper(tmp_path: Path) -> Iterator[Site]:
    db = tmp_path / "shop.db"
    assert replay_into(db, T0, [SHOPPER]).ok
    yield from _serve(db, pages_only=True, label="shop.db")


def test_from_a_search_to_a_merged_event_and_its_explanation(browser: Any, shopper: Site) -> None:
    page = browser.new_page()
    page.goto(shopper.url + "/")
    page.get_by_label("Search people by id, email, cio_id or anonymous id").fill("maya")
    page.get_by_role("button", name="Search").click()
    page.get_by_role("link", name="maya@example.com").click()
    assert page.locator("h1").inner_text() == "maya@example.com"
    identified = page.locator("table#identified")
    assert "Anonymous Data Merged: 4 event(s) from web-7f3a" in identified.inner_text()
    merged_row = identified.locator("tr", has=page.locator(".marker")).first
    assert "was anonymous" in merged_row.inner_text()
    merged_row.get_by_role("link").click()
    assert page.locator("#rule").inner_text() in ("merged_on_identify", "merged_in_window")
    assert "identify" in page.locator("#reason").inner_text()
    assert "shopper.ndjson:" in page.inner_text("main")  # the fixture line it came from
    page.go_back()
    page.get_by_role("link", name="Anonymous", exact=True).click()
    anonymous = page.locator("table#anonymous")
    assert "Wishlist Viewed" in anonymous.inner_text()
    assert "window_closed" in anonymous.inner_text()
    assert "left" in anonymous.inner_text() or "expired" in anonymous.inner_text()
    assert (
        page.get_by_role("link", name="Anonymous", exact=True).get_attribute("aria-current")
        == "page"
    )
    page.get_by_role("link", name="web-7f3a").first.click()
    assert "Anonymous id web-7f3a" in page.locator("h1").inner_text()
    assert "maya@example.com" in page.inner_text("main")
    assert "Wishlist Viewed" in page.inner_text("#events-table")  # still anonymous
    page.get_by_role("link", name="Merged into a person").click()
    merged = page.inner_text("#events-table")
    assert "Added to Cart" in merged and "Wishlist Viewed" not in merged


def test_devices_and_relationships_on_the_person_page(browser: Any, tmp_path: Path) -> None:
    db = tmp_path / "calls.db"
    assert replay_into(db, T0, [ROOT / "fixtures" / "every_call_track_v2.ndjson"]).ok
    for site in _serve(db, pages_only=True):
        page = browser.new_page()
        page.goto(site.url + "/person/cy")
        main = page.inner_text("main")
        assert "Acme Inc." in main and "acme" in main  # the object and its attributes
        page.goto(site.url + "/person/dee@example.com")
        assert page.locator("h1").inner_text() == "Not found"  # suppressed: deleted


def test_reading_works_with_javascript_off(browser: Any, shopper: Site) -> None:
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    page.goto(shopper.url + "/people?q=cust-1042")
    page.get_by_role("link", name="maya@example.com").click()
    page.get_by_role("link", name="Anonymous", exact=True).click()
    assert "Wishlist Viewed" in page.locator("table#anonymous").inner_text()
    context.close()


def test_the_person_page_screenshot(browser: Any, shopper: Site) -> None:
    """docs/ui.md shows this picture."""
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    page.goto(shopper.url + "/person/maya@example.com")
    SCREENSHOT.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)
    assert SCREENSHOT.stat().st_size > 10_000


def test_paging_through_a_large_profile(browser: Any, tmp_path: Path) -> None:
    db = tmp_path / "big.db"
    with service.opened(db, T0, write=True) as workspace:
        service.identify(workspace, T0, identifier="many@example.com")
        for index in range(120):
            service.track(
                workspace, t(minutes=index), name=f"Step {index:03}", person="many@example.com"
            )
    seen: list[str] = []
    for site in _serve(db, pages_only=True):
        page = browser.new_page()
        page.goto(site.url + "/person/many@example.com")
        while True:
            names = page.locator("table#identified tbody tr td:nth-child(3)").all_inner_texts()
            seen += [name for name in names if name.startswith("Step")]
            older = page.get_by_role("link", name="Older →")
            if older.count() == 0:
                break
            with page.expect_navigation():  # the table is read once the next page is in
                older.click()
    assert seen == [f"Step {index:03}" for index in reversed(range(120))]


def test_workspace_values_are_shown_as_text(browser: Any, tmp_path: Path) -> None:
    db = tmp_path / "hostile.db"
    evil_id = "<script>window.pwned = 1</script>"
    evil_name = '<img src=x onerror="window.pwned = 2">'
    with service.opened(db, T0, write=True) as workspace:
        service.identify(
            workspace, T0, identifier=evil_id, attributes={"bio": "<b>bold</b>", "x": "</td>"}
        )
        service.track(workspace, T0, name=evil_name, person=evil_id, event_id="<i>ev</i>")
        service.track(workspace, T0, name="anon", anonymous_id='"><svg onload=alert(1)>')
    for site in _serve(db, pages_only=True):
        page = browser.new_page()
        dialogs: list[str] = []

        def on_dialog(dialog: Any, seen: list[str] = dialogs) -> None:
            seen.append(dialog.message)
            dialog.dismiss()

        page.on("dialog", on_dialog)
        for path in (
            "/",
            "/people?q=%3Cscript",
            "/person/cio_00000001",
            "/event/%3Ci%3Eev%3C%2Fi%3E",
            "/person/cio_00000001?tab=anonymous",
            "/anonymous/%22%3E%3Csvg%20onload%3Dalert(1)%3E",
        ):
            page.goto(site.url + path)
            assert page.evaluate("window.pwned") is None, path
            assert page.locator("main script, main img, main svg, main b").count() == 0, path
        page.goto(site.url + "/person/cio_00000001")
        assert page.locator("h1").inner_text() == evil_id
        assert evil_name in page.inner_text("table#identified")
        assert "<b>bold</b>" in page.inner_text("main")
        assert not dialogs


def test_the_event_page_tells_facts_within_a_second_to_the_millisecond(
    browser: Any, tmp_path: Path
) -> None:
    db = tmp_path / "session.db"
    with service.opened(db, T0, write=True) as workspace:
        service.track(
            workspace, T0.add(microseconds=200_000), name="Viewed", anonymous_id="a", event_id="v"
        )
        service.identify(workspace, T0.add(microseconds=500_000), identifier="u", anonymous_id="a")
    for site in _serve(db, pages_only=True):
        page = browser.new_page()
        page.goto(site.url + "/event/v")
        facts = page.inner_text("main table")
        assert T0.format("HH:mm:ss") + ".200" in facts  # received
        assert T0.format("HH:mm:ss") + ".500" in facts  # assigned


def test_pages_need_credentials_when_any_are_configured(browser: Any, tmp_path: Path) -> None:
    db = tmp_path / "guarded.db"
    assert replay_into(db, T0, [SHOPPER]).ok
    for site in _serve(db, inspect_token="tok-1", write_key="wk"):
        # Without credentials a browser is asked for them (Basic); headless Chromium then
        # gives up, so the answer itself is read with Playwright's request client.
        context = browser.new_context()
        refused = context.request.get(site.url + "/people")
        assert refused.status == 401 and "Basic" in refused.headers["www-authenticate"]
        assert context.request.get(site.url + "/static/style.css").status == 401
        context.close()
        for user, password, status in (("support", "tok-1", 200), ("wk", "", 401)):
            context = browser.new_context(http_credentials={"username": user, "password": password})
            answered = context.request.get(site.url + "/person/maya@example.com")
            assert answered.status == status, user  # the write key is public: not a reader's
            context.close()
        context = browser.new_context(http_credentials={"username": "x", "password": "wrong"})
        assert context.request.get(site.url + "/").status == 401
        context.close()


def test_show_html_is_one_self_contained_file(browser: Any, tmp_path: Path, cli: Any) -> None:
    db = tmp_path / "shop.db"
    cli("replay", str(SHOPPER), "--db", str(db), "--at", T0.isoformat())
    out = tmp_path / "maya.html"
    cli(
        "show", "maya@example.com", "--html", str(out), "--db", str(db), "--at", READ_AT.isoformat()
    )
    text = out.read_text()
    assert "<style>" in text and 'rel="stylesheet"' not in text and "<script" not in text
    page = browser.new_page()
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.goto(out.as_uri())
    assert requests == [out.as_uri()]  # nothing fetched from anywhere else
    assert "Wishlist Viewed" in page.inner_text("table#anonymous")
    assert "Anonymous Data Merged" in page.inner_text("table#identified")


def test_the_exported_page_looks_as_the_served_one(
    browser: Any, shopper: Site, tmp_path: Path, cli: Any
) -> None:
    """The stylesheet inlined as CSS, not HTML-escaped into text no browser applies; the
    file readable by its owner only, as the workspace is."""
    import stat

    out = tmp_path / "maya.html"
    show = ("show", "maya@example.com", "--html", str(out), "--db", str(tmp_path / "shop.db"))
    cli(*show, "--at", READ_AT.isoformat())
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    probe = (
        "() => ['body', 'h1', 'table#identified th', 'table#identified td'].map(s => {"
        " const st = getComputedStyle(document.querySelector(s));"
        " return [st.fontFamily, st.fontSize, st.color, st.backgroundColor, st.padding]; })"
    )
    served, exported = browser.new_page(), browser.new_page()
    served.goto(shopper.url + "/person/maya@example.com")
    exported.goto(out.as_uri())
    looks, served_looks = exported.evaluate(probe), served.evaluate(probe)
    served.close()
    exported.close()
    assert looks == served_looks
    assert "Times" not in looks[0][0]  # a page without its stylesheet falls back to serif
    # with --json the profile is printed too
    both = cli(*show, "--at", READ_AT.isoformat(), "--json")
    assert both["person"]["email"] == "maya@example.com"


def test_a_page_that_is_not_there_is_a_page_for_a_browser(browser: Any, shopper: Site) -> None:
    import json
    import urllib.error
    import urllib.request

    page = browser.new_page()
    response = page.goto(shopper.url + "/persons/maya")
    assert response is not None and response.status == 404
    assert response.headers["content-type"].startswith("text/html")
    assert "There is no page at /persons/maya." in page.inner_text("main")
    page.close()
    # a client that asks for no page gets the API's JSON
    request = urllib.request.Request(shopper.url + "/persons/maya", headers={"Accept": "*/*"})
    with pytest.raises(urllib.error.HTTPError) as answer:
        urllib.request.urlopen(request, timeout=10)
    assert answer.value.code == 404
    assert json.loads(answer.value.read())["meta"]["errors"] == ["No such path: /persons/maya"]


def _holding_the_first(held: list[Any]) -> Any:
    """A route handler that keeps the first request it sees in `held` (unanswered) and lets
    the rest through."""

    def handle(route: Any) -> None:
        if held:
            route.continue_()
        else:
            held.append(route)

    return handle


def test_pages_show_new_activity_without_a_reload(browser: Any, tmp_path: Path) -> None:
    """Someone clicking through their app watches the web view: serve's pages, and `ui`'s
    over a workspace another process writes, show each new call by themselves, a call made
    before the page first asks whether anything changed included."""
    import contextlib
    import json
    import urllib.request

    db = tmp_path / "live.db"
    for pages_only in (False, True):  # serve's pages, then `ui` over what serve wrote
        serving = contextlib.contextmanager(_serve)(db, pages_only=pages_only)
        space = serving.__enter__()
        page = browser.new_page()
        held: list[Any] = []  # the page's first ask, held until the call below is made
        page.route("**/changes*", _holding_the_first(held))
        page.goto(space.url + "/people")
        while not held:
            page.wait_for_timeout(50)
        person = f"live-{int(pages_only)}"
        if pages_only:
            with service.opened(db, READ_AT, write=True) as workspace:
                service.identify(workspace, READ_AT, identifier=person)
        else:
            body = json.dumps({"userId": person, "traits": {"plan": "pro"}}).encode()
            request = urllib.request.Request(
                space.url + "/v1/identify",
                data=body,
                method="POST",
                headers={"Content-Type": "application/json"},
            )
            with urllib.request.urlopen(request, timeout=10) as answer:
                assert answer.status == 200
        held[0].continue_()
        page.get_by_role("link", name=person).wait_for(timeout=10_000)
        page.close()
        serving.__exit__(None, None, None)


def _stamped(url: str) -> tuple[str, str, str]:
    """A page's change mark as served: the workspace's mark, the page's digest, and the
    time it was rendered at."""
    import re
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            html = answer.read().decode()
    except urllib.error.HTTPError as error:  # a page that cannot be shown (404)
        html = error.read().decode()
    found = re.search(r'<meta name="cio-anon-mark" content="(\S+) (\S+)" data-at="([^"]+)">', html)
    assert found is not None, html[:600]
    return found.group(1), found.group(2), found.group(3)


def _asked(site: Site, shown: str, seen: str, at: str) -> dict[str, str]:
    import json
    import urllib.parse
    import urllib.request

    query = urllib.parse.urlencode({"seen": seen, "page": shown, "at": at})
    with urllib.request.urlopen(f"{site.url}/changes?{query}", timeout=10) as answer:
        return json.loads(answer.read())  # type: ignore[no-any-return]


def test_changes_tell_a_page_whether_what_it_shows_changed(tmp_path: Path) -> None:
    """`/changes` renders a page again (as of the time it was rendered) only once the
    workspace changed, and its digest stays the page's own while the changes are
    someone else's: a person's page open during other traffic does not reload."""
    db = tmp_path / "two.db"
    with service.opened(db, READ_AT, write=True) as workspace:
        for person in ("ana@example.com", "bo@example.com"):
            service.identify(workspace, READ_AT, identifier=person)

    def tracked(person: str, name: str) -> None:
        with service.opened(db, READ_AT, write=True) as workspace:
            service.track(workspace, READ_AT, name=name, person=person)

    for site in _serve(db, pages_only=True):
        for shown in ("/person/ana%40example.com", "/person/ana%40example.com?tab=anonymous"):
            mark, digest, at = _stamped(site.url + shown)
            assert _asked(site, shown, mark, at) == {"mark": mark}  # nothing to compare
        shown = "/person/ana%40example.com"
        mark, digest, at = _stamped(site.url + shown)
        people_mark, people_digest, _ = _stamped(site.url + "/people")
        tracked("bo@example.com", "Bo Only")
        answer = _asked(site, shown, mark, at)
        assert answer["mark"] != mark and answer["page"] == digest
        assert _asked(site, "/people", people_mark, at)["page"] != people_digest  # a count
        tracked("ana@example.com", "Ana Paid")
        answer = _asked(site, shown, mark, at)
        assert answer["page"] != digest
        assert answer["page"] == _stamped(site.url + shown)[1]  # what a reload shows
        with service.opened(db, READ_AT, write=True) as workspace:
            service.delete_person(workspace, READ_AT, identifier="ana@example.com")
        assert _asked(site, shown, mark, at)["page"] == "none"  # deleted: a reload says so
        # a person not there yet: the 404 page stays as it is until they are
        mark, digest, at = _stamped(site.url + "/person/cy%40example.com")
        assert digest == "none"
        tracked("bo@example.com", "Bo Again")
        assert _asked(site, "/person/cy%40example.com", mark, at) == {
            "mark": _stamped(site.url + "/")[0],
            "page": "none",
        }
        with service.opened(db, READ_AT, write=True) as workspace:
            service.identify(workspace, READ_AT, identifier="cy@example.com")
        assert _asked(site, "/person/cy%40example.com", mark, at)["page"] != "none"


def test_a_page_stays_put_while_others_change_and_reloads_for_its_own(
    browser: Any, tmp_path: Path
) -> None:
    db = tmp_path / "two.db"
    with service.opened(db, READ_AT, write=True) as workspace:
        for person in ("ana@example.com", "bo@example.com"):
            service.identify(workspace, READ_AT, identifier=person)
    for site in _serve(db, pages_only=True):
        page = browser.new_page()
        page.goto(site.url + "/person/ana@example.com")
        page.evaluate("window.kept = true")  # gone if the page reloads

        def compared(response: Any) -> bool:
            return "/changes" in response.url and "page" in response.json()

        for index in range(3):
            with page.expect_response(compared, timeout=10_000):
                with service.opened(db, READ_AT, write=True) as workspace:
                    service.track(workspace, READ_AT, name=f"Bo {index}", person="bo@example.com")
        assert page.evaluate("window.kept") is True
        with service.opened(db, READ_AT, write=True) as workspace:
            service.track(workspace, READ_AT, name="Ana Paid", person="ana@example.com")
        page.locator("table#identified").get_by_text("Ana Paid").wait_for(timeout=10_000)
        assert page.evaluate("window.kept") is None
        page.close()
