"""The clients teams use, run against `cio-anon serve`, every public method that reaches
it: customerio (Python Track), customerio-cdp-analytics, segment-analytics-python,
rudder-sdk-python (the last three in their own environment: tests/pyclients.py), and —
when Node and npm are here — customerio-node, @customerio/cdp-analytics-node and
@segment/analytics-node."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.pyclients import PythonClients
from tests.test_serve import KEY, SITE, WRITE, Running, serving, track_client

NODE_PACKAGES = ("customerio-node@5", "@customerio/cdp-analytics-node", "@segment/analytics-node")


@pytest.fixture
def tls(tmp_path: Path) -> Iterator[Running]:
    with serving(tmp_path, tls=True, site_id=SITE, api_key=KEY, write_key=WRITE) as running:
        yield running


@pytest.fixture
def plain(tmp_path: Path) -> Iterator[Running]:
    with serving(tmp_path, site_id=SITE, api_key=KEY, write_key=WRITE) as running:
        yield running


def test_customerio_track_client_every_method(tls: Running) -> None:
    cio = track_client(tls)
    cio.identify("ann", email="ann@example.com", plan="pro")
    cio.add_device("ann", "tok-1", "ios", last_used=1777626000, app_version="4.2")
    cio.add_device("ann", "tok-2", "android")
    cio.delete_device("ann", "tok-2")
    cio.track("ann", "Opened", {"screen": "home"})
    cio.pageview("ann", "https://example.com/pricing")
    cio.backfill("ann", "Signed Up", 1777000000, source="import")
    cio.track_anonymous("dev-1", "Viewed", {"x": 1})
    cio.identify("bob", email="bob@example.com")
    cio.merge_customers("id", "ann", "id", "bob")
    cio.batch(
        [
            {
                "type": "object",
                "action": "identify",
                "identifiers": {"object_type_id": "1", "object_id": "acme"},
                "attributes": {"name": "Acme"},
                "cio_relationships": [{"identifiers": {"id": "ann"}}],
            }
        ]
    )
    cio.identify("cal", email="cal@example.com")
    cio.suppress("cal")
    cio.identify("cal", plan="ignored")  # answered 200, changes nothing
    assert tls.call("GET", "/_cio-anon/profile/cal")[0] == 404
    cio.unsuppress("cal")
    cio.identify("cal", plan="back")
    ann = tls.inspect("profile/ann")
    assert [d["device_id"] for d in ann["devices"]] == ["tok-1"]
    assert ann["devices"][0]["attributes"] == {"app_version": "4.2"}
    assert [(r["object_type_id"], r["object_id"]) for r in ann["relationships"]] == [("1", "acme")]
    assert ann["events"]["total"] == 3 and ann["events"]["inherited"] == 0
    assert tls.inspect("profile/cal")["person"]["attributes"] == {"plan": "back"}
    cio.delete("cal")
    assert tls.call("GET", "/_cio-anon/profile/cal")[0] == 404


def test_cdp_analytics_client_group_and_semantic_events(
    plain: Running, python_clients: PythonClients
) -> None:
    python_clients.run(
        """
        from customerio.analytics import Client

        client = Client(WRITE, host=URL, sync_mode=True, max_retries=0)
        client.identify(user_id="u-1", traits={"email": "u1@example.com"})
        client.group(user_id="u-1", group_id="globex", traits={"name": "Globex"})
        client.track(
            user_id="u-1",
            event="Device Created or Updated",
            properties={"device": {"token": "tok-u1", "type": "ios"}},
        )
        client.page(user_id="u-1", name="Home", properties={"url": "https://x.io/"})
        client.screen(user_id="u-1", name="Settings")
        client.alias(previous_id="a-1", user_id="u-1")
        client.flush()
        """,
        plain.url,
        WRITE,
    )
    profile = plain.inspect("profile/u-1")
    assert [r["object_id"] for r in profile["relationships"]] == ["globex"]
    assert [d["device_id"] for d in profile["devices"]] == ["tok-u1"]
    assert profile["events"]["total"] == 2  # the semantic event acted, was not stored


SEGMENT_STYLE = {
    # the library: how a script opens it as `client`, the person's id and group's id
    "segment": (
        """
        from segment.analytics import Client

        client = Client(WRITE, host=URL, sync_mode=True, max_retries=0)
        """,
        "s-1",
        "team-1",
    ),
    "rudder": (
        """
        import rudderstack.analytics as client

        client.write_key, client.dataPlaneUrl = WRITE, URL
        client.sync_mode, client.max_retries = True, 0
        """,
        "r-1",
        "org-1",
    ),
}


@pytest.mark.parametrize("library", SEGMENT_STYLE)
def test_segment_style_python_clients(
    plain: Running, python_clients: PythonClients, library: str
) -> None:
    """segment-analytics-python and rudder-sdk-python: one method each, the same calls."""
    opening, user, group = SEGMENT_STYLE[library]
    python_clients.run(
        opening
        + f"""
        client.identify("{user}", {{"email": "{user}@example.com"}}, anonymous_id="anon-{user}")
        client.track("{user}", "Order Completed", {{"total": 5}})
        client.page("{user}", "Docs", "Home", {{"url": "https://x.io/docs"}})
        client.screen("{user}", "App", "Home")
        client.group("{user}", "{group}", {{"name": "Team"}})
        client.alias("anon-{user}", "{user}")
        client.flush()
        """,
        plain.url,
        WRITE,
    )
    profile = plain.inspect(f"profile/{user}")
    assert profile["person"]["email"] == f"{user}@example.com"
    assert profile["events"]["total"] == 3
    assert [r["object_id"] for r in profile["relationships"]] == [group]


# -- the Node clients ----------------------------------------------------------------

NODE_SCRIPT = Path(__file__).parent / "data" / "clients.js"


@pytest.fixture(scope="module")
def node_modules(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not (shutil.which("node") and shutil.which("npm")):
        pytest.skip("Node and npm are not here")
    folder = Path(os.environ.get("CIO_ANON_NODE_CLIENTS") or tmp_path_factory.mktemp("node"))
    if not (folder / "node_modules" / "customerio-node").exists():
        done = subprocess.run(
            ["npm", "install", "--silent", "--no-audit", "--no-fund", *NODE_PACKAGES],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if done.returncode != 0:
            pytest.skip(f"npm could not install the clients: {done.stderr.strip()[-300:]}")
    return folder


@pytest.mark.slow
def test_node_clients_every_method(plain: Running, node_modules: Path) -> None:
    done = subprocess.run(
        ["node", str(NODE_SCRIPT), plain.url, SITE, KEY, WRITE],
        cwd=node_modules,
        env={**os.environ, "NODE_PATH": str(node_modules / "node_modules")},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    steps: list[Any] = json.loads(done.stdout.strip().splitlines()[-1])
    assert steps[-2:] == ["cdp", "segment"] and "getAccountRegion" in steps
    n1 = plain.inspect("profile/n-1")
    assert [d["device_id"] for d in n1["devices"]] == ["tok-n2"]
    assert [r["object_id"] for r in n1["relationships"]] == ["initech"]
    assert n1["person"]["email"] == "n1@example.com"
    for user, org in (("cdp-1", "cdp-org"), ("segment-1", "segment-org")):
        profile = plain.inspect(f"profile/{user}")
        assert profile["events"]["total"] == 3
        assert [r["object_id"] for r in profile["relationships"]] == [org]
    assert plain.call("GET", "/_cio-anon/profile/gone")[0] == 404
