"""What a web page may ask of `serve`, over real HTTP: the browser SDKs' paths, CORS for
pages of allowed origins (preflights before credentials), the write key where each SDK
sends it, the SDK settings, and every other origin refused before its request is read."""

from __future__ import annotations

import base64
import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cio_anon import server
from cio_anon.errors import InvalidInput
from tests.conftest import T0
from tests.test_serve import Running, serving

WRITE = "dev-key"
PAGE = "http://localhost:5173"
EVIL = "http://evil.example"
BASIC = "Basic " + base64.b64encode(f"{WRITE}:".encode()).decode()


def post(running: Running, path: str, body: Any, **headers: str) -> tuple[int, Any, Any]:
    """A POST as a page sends it (text/plain, as sendBeacon and both SDKs do); returns
    the status, the body and the response headers."""
    import urllib.error
    import urllib.request

    request = urllib.request.Request(
        running.url + path,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "text/plain", **headers},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"null"), response.headers
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null"), error.headers


def ask(running: Running, method: str, path: str, **headers: str) -> tuple[int, bytes, Any]:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(running.url + path, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read(), response.headers
    except urllib.error.HTTPError as error:
        return error.code, error.read(), error.headers


def events_of(running: Running, **query: str) -> list[dict[str, Any]]:
    from urllib.parse import urlencode

    page = running.inspect("log?" + urlencode({"limit": "500", **query}))
    return [row for tab in ("identified", "anonymous") for row in page[tab] if row["rule"]]


def test_every_path_the_browser_sdks_post_to(tmp_path: Path) -> None:
    """/v1/p, /v1/t, /v1/s, /v1/i, /v1/g and the batch /v1/b, as the SDKs send them."""
    with serving(tmp_path, fixed_now=T0) as running:
        anon = {"anonymousId": "a-1"}
        calls = [
            ("/v1/p", {**anon, "type": "page", "properties": {"url": "https://x.io/"}}),
            ("/v1/t", {**anon, "type": "track", "event": "Viewed", "messageId": "m1"}),
            ("/v1/s", {**anon, "type": "screen", "name": "Home", "messageId": "m2"}),
            ("/v1/i", {**anon, "type": "identify", "userId": "u-1", "traits": {"plan": "x"}}),
            ("/v1/g", {"type": "group", "userId": "u-1", "groupId": "acme"}),
            (
                "/v1/b",
                {"batch": [{"type": "track", "userId": "u-1", "event": "Paid", "messageId": "m3"}]},
            ),
        ]
        for path, body in calls:
            status, answer, _ = post(running, path, body, Origin=PAGE)
            assert status == 200, (path, answer)
        names = {row["name"]: row["rule"] for row in events_of(running, person="u-1")}
        assert names == {
            "https://x.io/": "merged_on_identify",
            "Viewed": "merged_on_identify",
            "Home": "merged_on_identify",
            "Paid": "campaign_eligible",
        }
        assert running.inspect("profile/u-1")["relationships"][0]["object_id"] == "acme"


def test_preflights_are_answered_before_credentials(tmp_path: Path) -> None:
    with serving(tmp_path, write_key=WRITE) as running:
        for path in ("/v1/t", "/v1/track", "/v1/b", "/api/v2/entity"):
            status, body, headers = ask(
                running,
                "OPTIONS",
                path,
                Origin=PAGE,
                **{
                    "Access-Control-Request-Method": "POST",
                    "Access-Control-Request-Headers": "authorization,content-type,x-retry-count",
                },
            )
            assert status == 204 and body == b"", (path, status, body)
            assert headers["Access-Control-Allow-Origin"] == PAGE
            assert "POST" in headers["Access-Control-Allow-Methods"]
            allowed = {
                h.strip().lower() for h in headers["Access-Control-Allow-Headers"].split(",")
            }
            assert {"authorization", "content-type", "x-retry-count"} <= allowed
            assert "Origin" in headers["Vary"]
        # every answer to an allowed page carries the header, refusals too
        message = {"type": "track", "anonymousId": "a", "event": "E", "messageId": "p1"}
        status, _, headers = post(running, "/v1/t", message, Origin=PAGE, Authorization=BASIC)
        assert status == 200 and headers["Access-Control-Allow-Origin"] == PAGE
        status, _, headers = post(running, "/v1/t", message, Origin=PAGE)
        assert status == 401 and headers["Access-Control-Allow-Origin"] == PAGE
        status, _, headers = post(running, "/v1/nope", message, Origin=PAGE, Authorization=BASIC)
        assert status == 404 and headers["Access-Control-Allow-Origin"] == PAGE
        assert len(events_of(running)) == 1


def test_the_write_key_in_the_body_as_customerios_sdk_sends_it(tmp_path: Path) -> None:
    record = tmp_path / "browser.ndjson"
    with serving(tmp_path, write_key=WRITE, record=record, fixed_now=T0) as running:
        message = {"type": "track", "anonymousId": "a", "event": "E", "messageId": "k1"}
        assert post(running, "/v1/t", {**message, "writeKey": "wrong"}, Origin=PAGE)[0] == 401
        assert post(running, "/v1/t", message, Origin=PAGE)[0] == 401
        batch = {"batch": [{**message, "messageId": "k2", "writeKey": "wrong"}], "writeKey": "no"}
        assert post(running, "/v1/b", batch, Origin=PAGE)[0] == 401
        assert events_of(running) == []
        assert post(running, "/v1/t", {**message, "writeKey": WRITE}, Origin=PAGE)[0] == 200
        batch = {"batch": [{**message, "messageId": "k3", "writeKey": WRITE}], "writeKey": WRITE}
        assert post(running, "/v1/b", batch, Origin=PAGE)[0] == 200
        assert sorted(row["event_id"] for row in events_of(running)) == ["k1", "k3"]
    # a credential is not data: neither the record nor the workspace keeps it
    assert WRITE not in record.read_text()
    assert len(record.read_text().splitlines()) == 2
    with sqlite3.connect(tmp_path / "served.db") as conn:
        dumped = "\n".join(conn.iterdump())
    assert WRITE not in dumped


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/v2/entity", {"type": "person", "identifiers": {"id": "ann"}, "action": "delete"}),
        ("/v1/track", {"type": "track", "userId": "ann", "event": "User Deleted"}),
        ("/api/v1/events", {"name": "x", "anonymous_id": "evil-1"}),
    ],
)
@pytest.mark.parametrize(
    "where",
    [{"Origin": EVIL}, {"Sec-Fetch-Site": "cross-site"}, {"Origin": "null"}],
    ids=["origin", "fetch-site", "null-origin"],
)
def test_another_sites_page_is_refused_before_its_request_is_read(
    tmp_path: Path, path: str, body: dict[str, Any], where: dict[str, str]
) -> None:
    """Without credentials on loopback, a page on the web used to delete a person with a
    text/plain post (no preflight): refused now, whatever the route."""
    with serving(tmp_path, fixed_now=T0) as running:
        identify = {"type": "identify", "userId": "ann", "traits": {"email": "ann@x.io"}}
        assert post(running, "/v1/identify", identify)[0] == 200
        status, answer, headers = post(running, path, body, **where)
        assert status == 403, answer
        assert "may not call this server" in answer["error"]
        assert "Access-Control-Allow-Origin" not in headers
        assert running.inspect("summary")["people"] == 1
        assert events_of(running) == []
        # a preflight from there is refused too
        status, _, headers = ask(
            running, "OPTIONS", path, Origin=EVIL, **{"Access-Control-Request-Method": "POST"}
        )
        assert status == 403 and "Access-Control-Allow-Origin" not in headers


def test_inspection_and_the_pages_answer_their_own_origin_only(tmp_path: Path) -> None:
    with serving(tmp_path, fixed_now=T0) as running:
        own = running.url
        for path in ("/_cio-anon/summary", "/", "/people", "/changes"):
            assert ask(running, "GET", path, Origin=PAGE)[0] == 403, path
            status, _, headers = ask(running, "GET", path, Origin=own)
            assert status == 200 and "Access-Control-Allow-Origin" not in headers, path
            assert ask(running, "GET", path)[0] == 200
        # a link from another site to the web view opens it (a navigation only reads)
        assert ask(running, "GET", "/", **{"Sec-Fetch-Site": "cross-site"})[0] == 200
        assert post(running, "/_cio-anon/reset", {}, Origin=PAGE)[0] == 403


def test_cors_origin_names_other_pages(tmp_path: Path) -> None:
    origins = ("http://myapp.test:3000", "https://staging.myapp.test:*")
    with serving(tmp_path, cors_origins=origins, fixed_now=T0) as running:
        message = {"type": "track", "anonymousId": "a", "event": "E"}
        for origin, allowed in [
            ("http://myapp.test:3000", True),
            ("https://staging.myapp.test:8443", True),
            ("http://myapp.test:4000", False),
            ("https://myapp.test:3000", False),
            ("http://127.0.0.1:9999", True),
            ("https://localhost:5173", True),
        ]:
            status, _, headers = post(running, "/v1/t", message, Origin=origin)
            assert (status == 200) == allowed, origin
            assert (headers.get("Access-Control-Allow-Origin") == origin) == allowed
    with pytest.raises(InvalidInput, match="is not an origin"):
        server.Server(server.ServerConfig(db=tmp_path / "x.db", port=0, cors_origins=("*",)))


def test_the_sdk_settings_name_serve_as_the_api_host(tmp_path: Path) -> None:
    with serving(tmp_path, write_key=WRITE) as running:
        host = running.url.split("://")[1]
        for prefix, name in (("", "Customer.io Data Pipelines"), ("/segment", "Segment.io")):
            status, body, headers = ask(
                running, "GET", f"{prefix}/v1/projects/{WRITE}/settings", Origin=PAGE
            )
            assert status == 200 and headers["Access-Control-Allow-Origin"] == PAGE
            settings = json.loads(body)
            # one integration only: with more, the SDK loads destination bundles from its CDN
            assert settings["integrations"] == {
                name: {"apiKey": WRITE, "apiHost": f"{host}/v1", "protocol": "http"}
            }
            assert settings["metrics"]["sampleRate"] == 0
            status, body, _ = ask(running, "GET", f"{prefix}/v1/projects/other/settings")
            assert status == 404 and b"write key" in body
    (tmp_path / "open").mkdir()
    with serving(tmp_path / "open") as running:  # no write key: any key is this source's
        assert ask(running, "GET", "/v1/projects/any-key/settings")[0] == 200


def test_a_locked_workspace_is_a_503_to_retry_and_stores_nothing(tmp_path: Path) -> None:
    """Another process holds the workspace's lock: serve answers 503 with Retry-After (the
    SDKs retry it), stores nothing, and takes the same call once the lock is gone."""
    with serving(tmp_path, fixed_now=T0, lock_seconds=0.2) as running:
        message = {"type": "track", "anonymousId": "a", "event": "E", "messageId": "l1"}
        holder = sqlite3.connect(tmp_path / "served.db", isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            status, answer, headers = post(running, "/v1/t", message, Origin=PAGE)
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert status == 503 and headers["Retry-After"] == "1", answer
        assert "is busy: another process has held it for 0.2 s" in answer["error"]
        assert headers["Access-Control-Allow-Origin"] == PAGE
        for _ in range(2):  # the retry, and a second copy of it
            assert post(running, "/v1/t", message, Origin=PAGE)[0] == 200
        assert [row["event_id"] for row in events_of(running)] == ["l1"]


def test_serve_prints_the_set_up_and_each_decision(tmp_path: Path) -> None:
    """The live loop: the lines to paste into a page, then one line per decision."""
    db = tmp_path / "live.db"
    process = subprocess.Popen(
        [sys.executable, "-m", "cio_anon", "serve", "--port", "0", "--db", str(db)]
        + ["--decisions", "--quiet", "--write-key", WRITE, "--at", "2026-03-01T09:00:00Z"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        url = first.split("listening on ")[1].split(",")[0]
        setup = [process.stdout.readline() for _ in range(8)]
        assert f"cdnURL: '{url}' }}" in "".join(setup)
        assert f"cdnURL: '{url}/segment' }}" in "".join(setup)
        assert f"writeKey: '{WRITE}'" in "".join(setup)
        running = Running.__new__(Running)
        running.url, running.inspect_auth = url, None
        anon = {"anonymousId": "web-1", "writeKey": WRITE}
        post(running, "/v1/t", {**anon, "event": "Added to Cart", "messageId": "d1"}, Origin=PAGE)
        post(running, "/v1/i", {**anon, "userId": "maya", "traits": {"email": "m@x.io"}})
        post(running, "/v1/t", {**anon, "event": "Added to Cart", "messageId": "d1"}, Origin=PAGE)
        lines = [process.stdout.readline().strip() for _ in range(3)]
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert lines == [
        "'Added to Cart' → anonymous web-1 [anonymous]",
        "identify maya → m@x.io (created), anonymous web-1, 1 anonymous event(s) merged "
        "[merged_on_identify]",
        "'Added to Cart' d1: a copy already stored, ignored [duplicate]",
    ]


def test_a_body_without_its_key_is_refused_whatever_it_holds(tmp_path: Path) -> None:
    """With --write-key, a request that carries no key (header or body) is a 401 even when
    its body is broken or too large; one whose body carries the key is answered on it."""
    with serving(tmp_path, write_key=WRITE) as running:
        for path, raw in (("/v1/t", b"not json"), ("/v1/t", b"{" + b" " * 40_000 + b"}")):
            import urllib.request

            request = urllib.request.Request(
                running.url + path, data=raw, method="POST", headers={"Content-Type": "text/plain"}
            )
            try:
                urllib.request.urlopen(request, timeout=10)
                status = 200
            except urllib.error.HTTPError as error:
                status = error.code
            assert status == 401, (path, status)
        status, answer, _ = post(running, "/v1/nope", {"writeKey": WRITE, "event": "x"})
        assert status == 404, answer
