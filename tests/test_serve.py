"""`cio-anon serve` with the official clients, bad requests, recording, shutdown."""

from __future__ import annotations

import base64
import contextlib
import gzip
import json
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from cio_anon import server
from cio_anon.replay import replay_into
from tests.conftest import T0, free_port
from tests.pyclients import PythonClients

SITE, KEY, WRITE = "site-1", "api-secret", "cdp-secret"
INSPECT = "inspect-secret"
TRACK_AUTH = "Basic " + base64.b64encode(f"{SITE}:{KEY}".encode()).decode()


class Running:
    def __init__(self, instance: server.Server, ca: trustme.CA | None, folder: Path) -> None:
        self.instance = instance
        self.url = instance.url
        self.port = instance.port
        self.ca_pem = folder / "ca.pem"
        if ca is not None:
            ca.cert_pem.write_to_path(str(self.ca_pem))
        config = instance.config
        # the inspection API takes the inspection token (needed once any credential is)
        self.inspect_auth = f"Bearer {config.inspect_token}" if config.inspect_token else None

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        data = raw if raw is not None else None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json", **(headers or {})}
        if path.startswith("/_cio-anon") and self.inspect_auth and "Authorization" not in headers:
            headers["Authorization"] = self.inspect_auth
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        context = None
        if self.url.startswith("https"):
            import ssl

            context = ssl.create_default_context(cafile=str(self.ca_pem))
        try:
            with urllib.request.urlopen(request, context=context, timeout=10) as response:
                return response.status, _content(response)
        except urllib.error.HTTPError as error:
            return error.code, _content(error)

    def inspect(self, path: str) -> Any:
        status, body = self.call("GET", "/_cio-anon/" + path)
        assert status == 200, (status, body)
        return body


def _content(response: Any) -> Any:
    """JSON answers parsed; the web view's pages (HTML) as text."""
    data = response.read()
    if "json" in (response.headers.get("Content-Type") or "json"):
        return json.loads(data or b"null")
    return data.decode()


def start(tmp_path: Path, *, tls: bool = False, **options: Any) -> tuple[Running, Any]:
    ca = None
    if tls:
        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1")
        cert.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "server.pem"))
        options.update(tls_cert=tmp_path / "server.pem", tls_key=tmp_path / "server.pem")
    credentials = ("site_id", "api_key", "write_key")
    if any(options.get(name) for name in credentials):
        options.setdefault("inspect_token", INSPECT)
    config = server.ServerConfig(db=tmp_path / "served.db", port=0, **options)
    instance = server.Server(config)
    loop = threading.Thread(target=instance.serve_forever, daemon=True)
    loop.start()
    return Running(instance, ca, tmp_path), instance


@contextlib.contextmanager
def serving(tmp_path: Path, **options: Any) -> Iterator[Running]:
    """A server for the length of a `with` block."""
    running, instance = start(tmp_path, **options)
    try:
        yield running
    finally:
        instance.shutdown()


def client_for(port: int) -> Running:
    """A client of a server started as a process (no credentials)."""
    running = Running.__new__(Running)
    running.url, running.inspect_auth = f"http://127.0.0.1:{port}", None
    return running


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Running]:
    running, instance = start(tmp_path, tls=True, site_id=SITE, api_key=KEY, write_key=WRITE)
    yield running
    instance.shutdown()


def track_client(running: Running, *, api_key: str = KEY) -> Any:
    from customerio.track import CustomerIO

    client = CustomerIO(SITE, api_key, host="127.0.0.1", port=running.port, retries=0)
    client.http.verify = str(running.ca_pem)
    client.http.trust_env = False  # REQUESTS_CA_BUNDLE would override `verify`
    return client


def test_track_client(served: Running) -> None:
    """customerio's Track client, every call the issue names."""
    cio = track_client(served)
    cio.track_anonymous("dev-1", "Pricing Viewed", {"plan": "pro"}, id="ev-1")
    cio.track_anonymous("dev-1", "Added to Cart", {"sku": "TEE-01"})
    cio.identify("cust-1", email="cust1@example.com", anonymous_id="dev-1", plan="trial")
    cio.track("cust-1", "Order Completed", {"total": 30})
    cio.pageview("cust-1", "https://example.com/thanks")
    cio.identify("web-9", email="web9@example.com")
    cio.batch(
        [
            {
                "type": "person",
                "identifiers": {"id": "web-9"},
                "action": "event",
                "name": "Newsletter Joined",
                "attributes": {"source": "footer"},
            },
            {
                "type": "person",
                "identifiers": {"anonymous_id": "dev-2"},
                "action": "page",
                "name": "https://example.com/",
            },
        ]
    )
    cio.merge_customers("id", "cust-1", "id", "web-9")
    profile = served.inspect("profile/cust-1")
    assert profile["events"] == {
        "total": 5,
        "merged": 2,
        "tracked": 2,
        "inherited": 1,
        "campaign_eligible": 4,
    }
    assert profile["person"]["attributes"]["plan"] == "trial"
    assert [a["anonymous_id"] for a in profile["anonymous_ids"]] == ["dev-1"]
    log = served.inspect("log?tab=anonymous")
    assert [row["name"] for row in log["anonymous"]] == ["https://example.com/"]
    cio.identify("gone", email="gone@example.com")
    cio.delete("gone")
    status, _ = served.call("GET", "/_cio-anon/profile/gone")
    assert status == 404


def test_track_client_with_wrong_credentials_stores_nothing(served: Running) -> None:
    from customerio.client_base import CustomerIOException

    before = served.inspect("summary")
    with pytest.raises(CustomerIOException, match="401"):
        track_client(served, api_key="wrong").identify("x", email="x@example.com")
    assert served.inspect("summary") == before


@pytest.mark.parametrize("sync", [True, False], ids=["sync", "batched"])
def test_pipelines_client(tmp_path: Path, sync: bool, python_clients: PythonClients) -> None:
    """customerio-cdp-analytics, in sync mode and batched."""
    running, instance = start(tmp_path, write_key=WRITE)
    try:
        python_clients.run(
            f"""
            from customerio.analytics import Client

            client = Client(
                WRITE, host=URL, sync_mode={sync}, max_retries=0, upload_interval=0.05
            )
            client.page(anonymous_id="a-77", name="Home", properties={{"url": "https://x.io/"}})
            client.track(anonymous_id="a-77", event="Added to Cart", properties={{"sku": "S1"}})
            client.identify(user_id="u-77", anonymous_id="a-77", traits={{"email": "u77@x.io"}})
            client.screen(user_id="u-77", name="Settings")
            client.track(user_id="u-77", event="Order Completed", properties={{"total": 5}})
            client.alias(previous_id="a-77", user_id="u-77")
            client.flush()
            if not {sync}:
                client.join()
            """,
            running.url,
            WRITE,
        )
        profile = running.inspect("profile/u-77")
        assert profile["person"]["email"] == "u77@x.io"
        assert profile["events"]["merged"] == 2 and profile["events"]["tracked"] == 2
        assert profile["anonymous_ids"][0]["anonymous_id"] == "a-77"
    finally:
        instance.shutdown()


def test_pipelines_auth_and_strict_mode(tmp_path: Path) -> None:
    running, instance = start(tmp_path, write_key=WRITE)
    try:
        message = {"anonymousId": "a", "event": "x", "messageId": "m1"}
        basic = "Basic " + base64.b64encode(f"{WRITE}:".encode()).decode()
        assert running.call("POST", "/v1/track", message)[0] == 401
        assert (
            running.call("POST", "/v1/track", message, headers={"Authorization": "Bearer wrong"})[0]
            == 401
        )
        assert (
            running.call(
                "POST", "/v1/track", message, headers={"Authorization": f"Bearer {WRITE}"}
            )[0]
            == 200
        )
        bad = {"event": "no identity"}
        assert running.call("POST", "/v1/track", bad, headers={"Authorization": basic})[0] == 200
        status, body = running.call(
            "POST", "/v1/track", bad, headers={"Authorization": basic, "X-Strict-Mode": "1"}
        )
        assert status == 400 and "userId or an anonymousId" in json.dumps(body)
        assert running.inspect("summary")["events"] == 1
    finally:
        instance.shutdown()


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status"),
    [
        ("POST", "/api/v1/events", {"raw": b"{not json"}, 400),
        (
            "POST",
            "/api/v1/events",
            {"raw": b"<xml/>", "headers": {"Content-Type": "text/xml"}},
            400,
        ),
        ("POST", "/api/v1/nowhere", {"body": {}}, 404),
        ("POST", "/elsewhere", {"body": {}}, 404),
        ("GET", "/api/v1/events", {}, 405),
        ("DELETE", "/api/v2/entity", {}, 405),
        (
            "POST",
            "/api/v1/events",
            {"body": {"anonymous_id": "a", "name": "x", "data": {"big": "x" * 40_000}}},
            400,
        ),
        ("POST", "/api/v2/batch", {"body": {"batch": [{"big": "y" * 520_000}]}}, 400),
        (
            "POST",
            "/api/v1/events",
            {"raw": b"\x1f\x8b\x08garbage", "headers": {"Content-Encoding": "gzip"}},
            400,
        ),
        ("POST", "/api/v1/events", {"body": {"name": "no identity"}}, 400),
        ("PUT", "/api/v1/customers/x", {"body": {"bio": "z" * 1001}}, 400),
        ("POST", "/api/v2/entity", {"body": {"type": "person", "action": "identify"}}, 400),
        ("GET", "/_cio-anon/nothing", {}, 404),
    ],
)
def test_bad_requests_never_500_and_store_nothing(
    served: Running, method: str, path: str, kwargs: dict[str, Any], status: int
) -> None:
    auth = served.inspect_auth if path.startswith("/_cio-anon") else TRACK_AUTH
    headers = {"Authorization": auth or "", **kwargs.pop("headers", {})}
    before = served.inspect("summary")
    got, body = served.call(method, path, headers=headers, **kwargs)
    assert got == status, body
    assert "Traceback" not in json.dumps(body)
    assert served.inspect("summary") == before


def test_v2_batch_partial_success_is_207(served: Running) -> None:
    batch = {
        "batch": [
            {"type": "person", "identifiers": {"id": "p1"}, "action": "identify"},
            {"type": "person", "identifiers": {"id": "p1"}, "action": "event", "name": "x" * 101},
            {"type": "person", "identifiers": {"id": "p1"}, "action": "event", "name": "ok"},
        ]
    }
    status, body = served.call(
        "POST", "/api/v2/batch", batch, headers={"Authorization": TRACK_AUTH}
    )
    assert status == 207
    assert [(e["batch_index"], e["reason"]) for e in body["errors"]] == [(1, "limit_exceeded")]
    assert served.inspect("profile/p1")["events"]["total"] == 1


def test_record_then_replay_gives_the_same_workspace(tmp_path: Path) -> None:
    record = tmp_path / "session.ndjson"
    running, instance = start(tmp_path, record=record, fixed_now=T0)
    calls = [
        ("POST", "/api/v1/events", {"anonymous_id": "r1", "name": "Viewed", "id": "v1"}),
        ("POST", "/v1/track", {"anonymousId": "r1", "event": "Added", "messageId": "v2"}),
        ("PUT", "/api/v1/customers/rec%40x.io", {"anonymous_id": "r1", "plan": "pro"}),
        (
            "POST",
            "/api/v2/batch",
            {
                "batch": [
                    {
                        "type": "person",
                        "identifiers": {"email": "rec@x.io"},
                        "action": "event",
                        "name": "Paid",
                        "id": "v3",
                    },
                    {"type": "object"},
                ]
            },
        ),
        ("POST", "/api/v1/events", {"name": "broken"}),
    ]
    for method, path, body in calls:
        running.call(method, path, body)
    served_profile = running.inspect("profile/rec@x.io")
    served_log = running.inspect("log")
    instance.shutdown()
    fresh = tmp_path / "fresh.db"
    summary = replay_into(fresh, T0, [record])
    assert summary.ok, summary.invalid
    from cio_anon import service
    from cio_anon.present import documents

    with service.opened(fresh, T0, write=False) as workspace:
        profile = documents.profile_json(service.show(workspace, T0, identifier="rec@x.io"))
        log = documents.log_json(service.activity_log(workspace, T0))
    assert profile == served_profile

    def strip(page: dict[str, Any]) -> list[dict[str, Any]]:
        """The rows without `source`, which names the request or the record file."""
        return [
            {k: v for k, v in row.items() if k != "source"}
            for tab in ("identified", "anonymous")
            for row in page[tab]
        ]

    assert strip(log) == strip(served_log)


def test_refuses_public_address_without_credentials(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="needs credentials"):
        server.Server(server.ServerConfig(db=tmp_path / "x.db", host="0.0.0.0", port=0))


def test_sigterm_finishes_and_commits(tmp_path: Path) -> None:
    port = free_port()
    db = tmp_path / "term.db"
    process = subprocess.Popen(
        [sys.executable, "-m", "cio_anon", "serve", "--port", str(port), "--db", str(db)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    assert f"listening on http://127.0.0.1:{port}" in line and str(db) in line
    running = Running.__new__(Running)
    running.url = f"http://127.0.0.1:{port}"
    for index in range(20):
        assert (
            running.call(
                "POST", "/api/v1/events", {"anonymous_id": "t", "name": "x", "id": f"t{index}"}
            )[0]
            == 200
        )
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=10) == 0
    import sqlite3

    conn = sqlite3.connect(db)
    try:
        assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == 20
    finally:
        conn.close()


@pytest.mark.slow
def test_generated_requests_never_get_a_500(tmp_path: Path) -> None:
    """Hypothesis-made requests: any method, path, headers and body; the answer is never
    a 500, and a refused request stores nothing."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    running, instance = start(tmp_path, site_id=SITE, api_key=KEY)
    paths = st.sampled_from(
        [
            "/api/v1/events",
            "/api/v1/customers/a%40b.io",
            "/api/v1/customers/x/events",
            "/api/v1/merge_customers",
            "/api/v1/customers/x/suppress",
            "/api/v2/entity",
            "/api/v2/batch",
            "/v1/track",
            "/v1/identify",
            "/v1/batch",
            "/v1/alias",
            "/_cio-anon/log?limit=abc",
            "/_cio-anon/profile/%FF",
            "/_cio-anon/explain/x",
            "/api/v1/customers/",
            "/",
            "/api/v1/../../etc",
        ]
    )
    bodies = st.one_of(
        st.binary(max_size=200),
        st.recursive(
            st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=20)),
            lambda inner: st.one_of(
                st.lists(inner, max_size=3),
                st.dictionaries(st.text(max_size=10), inner, max_size=4),
            ),
            max_leaves=10,
        ).map(lambda value: json.dumps(value).encode()),
    )

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(
        method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH"]),
        path=paths,
        body=bodies,
        gzip_it=st.booleans(),
        auth=st.booleans(),
        content_type=st.sampled_from(["application/json", "text/plain", "image/png"]),
    )
    def run(
        method: str, path: str, body: bytes, gzip_it: bool, auth: bool, content_type: str
    ) -> None:
        headers = {"Content-Type": content_type}
        if auth:
            headers["Authorization"] = TRACK_AUTH
        if gzip_it:
            body, headers["Content-Encoding"] = gzip.compress(body), "gzip"
        before = running.inspect("summary")
        status, answer = running.call(method, path, raw=body, headers=headers)
        assert status != 500, (method, path, body, answer)
        if status >= 400:
            assert running.inspect("summary") == before

    try:
        run()
    finally:
        instance.shutdown()


def test_a_mobile_apps_batches_reach_the_same_profile_as_its_fixture(tmp_path: Path) -> None:
    """fixtures/mobile_app.ndjson, posted as the mobile SDKs post it (batches to /v1/b,
    Basic auth with the write key, a device-made anonymous id, screens, a queue delivered
    hours late), each call at its own receive time: the profile equals the replayed one."""
    import pendulum

    from cio_anon import service
    from cio_anon.present import documents

    fixture = Path(__file__).parent.parent / "fixtures" / "mobile_app.ndjson"
    records = [json.loads(line) for line in fixture.read_text().splitlines()]
    now = [T0]
    config = server.ServerConfig(
        db=tmp_path / "app.db", port=0, write_key=WRITE, inspect_token=INSPECT
    )
    instance = server.Server(config, clock=lambda: now[0])
    threading.Thread(target=instance.serve_forever, daemon=True).start()
    running = Running(instance, None, tmp_path)
    basic = "Basic " + base64.b64encode(f"{WRITE}:".encode()).decode()
    try:
        for record in records:
            if "method" not in record:
                continue
            now[0] = pendulum.parse(record["at"])
            status, body = running.call(
                "POST", record["path"], record["body"], headers={"Authorization": basic}
            )
            assert status == 200, body
        served = running.inspect("profile/app-user-7")
        late = running.inspect("explain/m-late")
    finally:
        instance.shutdown()
    at = pendulum.parse("2026-06-02T00:00:00Z")
    summary = replay_into(tmp_path / "replayed.db", at, [fixture])
    assert summary.ok and summary.tally.expectations == 6, summary
    with service.opened(tmp_path / "replayed.db", at, write=False) as workspace:
        replayed = documents.profile_json(service.show(workspace, at, identifier="app-user-7"))
    assert (
        served["events"]
        == replayed["events"]
        == {"total": 6, "merged": 5, "tracked": 1, "inherited": 0, "campaign_eligible": 6}
    )
    assert served["anonymous_ids"] == replayed["anonymous_ids"]
    assert [d["device_id"] for d in served["devices"]] == ["apns-7f3a"]
    assert late["rule"] == "window_closed"
