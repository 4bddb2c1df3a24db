"""`serve --record` holds what was stored, and what was refused marked so: replaying the
record into a new workspace gives the served one, whatever the batches mix of valid and
refused entries, and refuses again exactly what was refused."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cio_anon import service
from cio_anon.ingest.fixtures import REFUSED
from cio_anon.present import documents
from cio_anon.replay import replay_into
from tests.conftest import T0
from tests.test_serve import serving, start


def _comparable(log: dict[str, Any]) -> list[tuple[str, ...]]:
    keep = ("type", "name", "event_id", "rule", "anonymous_id", "person", "provenance", "data")
    rows = [row for tab in ("identified", "anonymous") for row in log[tab]]
    return sorted(tuple(json.dumps(row[k], sort_keys=True) for k in keep) for row in rows)


def served_and_replayed(tmp_path: Path, calls: list[tuple[str, Any]]) -> tuple[Any, Any, str]:
    """Send `calls` to a recording serve; the served and the replayed workspace (their
    summary and log), and the record's text. The replay refuses again every record
    marked refused, and nothing else."""
    record = tmp_path / "record.ndjson"
    running, instance = start(tmp_path, record=record, fixed_now=T0)
    try:
        for path, body in calls:
            running.call("POST", path, body)
        served = (running.inspect("summary"), running.inspect("log?limit=1000"))
    finally:
        instance.shutdown()
    fresh = tmp_path / "fresh.db"
    if record.read_text():
        summary = replay_into(fresh, T0, [record])
        assert summary.ok, (summary.invalid, record.read_text())
        marked = [n for n, line in enumerate(record.read_text().splitlines(), 1) if REFUSED in line]
        assert [p.line for p in summary.refused_as_recorded] == marked
    else:
        replay_into(fresh, T0, [])
    with service.opened(fresh, T0, write=True) as workspace:
        replayed = (
            workspace.summary(),
            documents.log_json(service.activity_log(workspace, T0, limit=1000)),
        )
    return served, replayed, record.read_text()


def test_a_batch_is_recorded_as_each_entry_fared(tmp_path: Path) -> None:
    batch = {
        "batch": [
            {"type": "person", "identifiers": {}, "action": "event", "name": "x", "id": "bad-1"},
            {
                "type": "person",
                "identifiers": {"id": "kim"},
                "action": "event",
                "name": "Paid",
                "id": "kept-1",
            },
            {"type": "person", "identifiers": {"id": "nobody"}, "action": "delete"},
        ]
    }
    refused = {"batch": [{"type": "track", "event": "no ids"}]}
    served, replayed, text = served_and_replayed(
        tmp_path, [("/api/v2/batch", batch), ("/v1/batch", refused)]
    )
    lines = [json.loads(line) for line in text.splitlines()]
    # each item as it fared, in the request's order: a refused one alone, saying why
    assert [
        [e.get("id") or e.get("action") or e["type"] for e in line["body"]["batch"]]
        for line in lines
    ] == [
        ["bad-1"],
        ["kept-1"],
        ["delete"],
        ["track"],
    ]
    whys = [line.get(REFUSED) for line in lines]
    assert whys[1] is None and all(whys[i] for i in (0, 2, 3))
    assert whys[0].startswith("Batch item 0 ") and whys[2].startswith("batch item 2: ")
    assert served[0] == replayed[0]
    assert _comparable(served[1]) == _comparable(replayed[1])


ENTRY = st.one_of(
    st.builds(
        lambda n, who: {"type": "track", "userId": who, "event": "E", "messageId": f"m{n}"},
        st.integers(0, 30),
        st.sampled_from(["ann", "bob"]),
    ),
    st.builds(
        lambda n, anon: {"type": "track", "anonymousId": anon, "event": "A", "messageId": f"a{n}"},
        st.integers(0, 30),
        st.sampled_from(["x1", "x2"]),
    ),
    st.builds(
        lambda who, anon: {"type": "identify", "userId": who, "anonymousId": anon},
        st.sampled_from(["ann", "bob"]),
        st.sampled_from(["x1", "x2"]),
    ),
    st.just({"type": "track", "event": "no identifiers"}),
    st.just({"type": "nonsense"}),
    st.just({"type": "track", "userId": "ann", "event": "User Deleted"}),
)
V2_ENTRY = st.one_of(
    st.builds(
        lambda n, who: {
            "type": "person",
            "identifiers": {"id": who},
            "action": "event",
            "name": "V",
            "id": f"v{n}",
        },
        st.integers(0, 30),
        st.sampled_from(["ann", "cat"]),
    ),
    st.just({"type": "person", "identifiers": {"id": "ghost"}, "action": "delete"}),
    st.just({"type": "person", "identifiers": {}, "action": "identify"}),
)
CALLS = st.lists(
    st.one_of(
        st.builds(lambda b: ("/v1/batch", {"batch": b}), st.lists(ENTRY, max_size=5)),
        st.builds(lambda b: ("/api/v2/batch", {"batch": b}), st.lists(V2_ENTRY, max_size=4)),
        st.builds(lambda e: ("/v1/track", e), ENTRY),
    ),
    max_size=8,
)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(calls=CALLS)
def test_the_record_replays_to_the_served_workspace(
    tmp_path_factory: Any, calls: list[tuple[str, Any]]
) -> None:
    tmp_path = tmp_path_factory.mktemp("record")
    served, replayed, text = served_and_replayed(tmp_path, calls)
    assert served[0] == replayed[0]
    assert _comparable(served[1]) == _comparable(replayed[1])
    # nothing sent is missing from the record: stored or refused, every entry is there
    sent = [e for path, body in calls for e in (body["batch"] if "batch" in path else [body])]
    kept = [
        e
        for line in map(json.loads, text.splitlines())
        for e in (line["body"]["batch"] if "batch" in line["path"] else [line["body"]])
    ]
    assert sorted(map(_canonical, kept)) == sorted(map(_canonical, sent))


def _canonical(entry: Any) -> str:
    return json.dumps(entry, sort_keys=True)


def test_what_serve_refused_is_recorded_for_check_to_find(
    tmp_path: Path, cli: Callable[..., Any]
) -> None:
    """A call refused whole — a page whose URL is over the 100 bytes a name may have
    (answered 200, as Data Pipelines answers), a strict batch with one bad message — is
    recorded with why; `replay` of the record refuses it again and says so, exit 0;
    `check` finds it. A request without its key, or not JSON, is no call: not recorded."""
    record = tmp_path / "record.ndjson"
    url = "https://shop.example/products/tee?" + "utm_campaign=winter&" * 5
    strict = {"X-Strict-Mode": "1"}
    with serving(tmp_path, record=record, write_key="wk") as running:
        key = {"writeKey": "wk"}
        page = {**key, "anonymousId": "a", "messageId": "p1", "properties": {"url": url}}
        assert running.call("POST", "/v1/page", page)[0] == 200
        bad = [{"type": "track", "anonymousId": "a", "event": "Fine"}, {"type": "track"}]
        assert running.call("POST", "/v1/batch", {**key, "batch": bad}, headers=strict)[0] == 400
        kept = {**key, "anonymousId": "a", "event": "Kept", "messageId": "t1"}
        assert running.call("POST", "/v1/track", kept)[0] == 200
        assert running.call("POST", "/v1/track", {**kept, "writeKey": "no"})[0] == 401
        basic = {"Authorization": "Basic " + base64.b64encode(b"wk:").decode()}
        assert running.call("POST", "/v1/track", raw=b"{not json", headers=basic)[0] == 200
        served = running.inspect("summary")
    lines = [json.loads(line) for line in record.read_text().splitlines()]
    assert [line["path"] for line in lines] == ["/v1/page", "/v1/batch", "/v1/track"]
    assert f"is {len(url)} bytes: Customer.io names a page's event by its URL" in lines[0][REFUSED]
    assert lines[1][REFUSED].startswith("Batch item 1 ") and lines[1]["body"]["batch"] == bad
    assert REFUSED not in lines[2] and "writeKey" not in json.dumps(lines)

    replayed = cli("replay", str(record), "--db", str(tmp_path / "again.db"), code=None)
    assert replayed.exit_code == 0, replayed.output
    assert replayed.stderr.count("refused, as when recorded: ") == 2
    assert "record.ndjson:1: The page " in replayed.stderr
    again = cli("replay", str(record), "--db", str(tmp_path / "json.db"), "--json")
    assert again["applied"] == 1 and len(again["refused_as_recorded"]) == 2
    with service.opened(tmp_path / "again.db", T0, write=False) as workspace:
        assert workspace.summary() == served

    checked = cli("check", str(record), "--json", code=1)
    found = [(f["line"], f["code"]) for f in json.loads(checked.stdout)["findings"]]
    assert (1, "limit_exceeded") in found and (2, "invalid_record") in found
