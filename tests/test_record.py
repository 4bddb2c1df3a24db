"""`serve --record` holds exactly what was stored: replaying the record into a new
workspace gives the served one, whatever the batches mix of valid and refused entries."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cio_anon import service
from cio_anon.present import documents
from cio_anon.replay import replay_into
from tests.conftest import T0
from tests.test_serve import start


def _comparable(log: dict[str, Any]) -> list[tuple[str, ...]]:
    keep = ("type", "name", "event_id", "rule", "anonymous_id", "person", "provenance", "data")
    rows = [row for tab in ("identified", "anonymous") for row in log[tab]]
    return sorted(tuple(json.dumps(row[k], sort_keys=True) for k in keep) for row in rows)


def served_and_replayed(tmp_path: Path, calls: list[tuple[str, Any]]) -> tuple[Any, Any, str]:
    """Send `calls` to a recording serve; the served and the replayed workspace (their
    summary and log), and the record's text."""
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
    else:
        replay_into(fresh, T0, [])
    with service.opened(fresh, T0, write=True) as workspace:
        replayed = (
            workspace.summary(),
            documents.log_json(service.activity_log(workspace, T0, limit=1000)),
        )
    return served, replayed, record.read_text()


def test_a_v2_batch_is_recorded_with_the_entries_it_stored(tmp_path: Path) -> None:
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
    assert [[e.get("id") for e in line["body"]["batch"]] for line in lines] == [["kept-1"]]
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
    served, replayed, _ = served_and_replayed(tmp_path, calls)
    assert served[0] == replayed[0]
    assert _comparable(served[1]) == _comparable(replayed[1])
