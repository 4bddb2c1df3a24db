"""The set-based placement (`setrules`) against the engine, event by event: bundled
Data Pipelines fixtures, the benchmark's generated traffic, and Hypothesis streams with
out-of-order arrival, late and old events, duplicates and re-identifies."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cio_anon import service
from cio_anon.audit import setrules
from cio_anon.ingest.fixtures import iter_records
from cio_anon.replay import replay_into

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 12, 1, tzinfo=UTC)
BASE = 1_772_000_000


def engine_placements(
    tmp_path: Path, records: list[dict[str, Any]], *, keep_going: bool = False
) -> list[setrules.Placement]:
    """Replay the records one call at a time; where each event ended up (with
    `keep_going`, records the engine refuses are skipped, as the API refuses the call)."""
    fixture = tmp_path / "stream.ndjson"
    fixture.write_text("".join(json.dumps(r) + "\n" for r in records))
    db = tmp_path / "engine.db"
    if db.exists():
        db.unlink()
    summary = replay_into(db, NOW, [fixture], keep_going=keep_going)
    assert keep_going or summary.ok, summary.invalid
    placed = []
    with service.opened(db, NOW, write=False) as workspace:
        for placement in setrules.place(records):
            event = workspace.get_event(placement.event_id)
            if event is None and keep_going:
                continue  # refused
            assert event is not None, placement.event_id
            person = None
            if event.cio_id is not None:
                ref = workspace.person_refs([event.cio_id])[event.cio_id]
                person = ref.id if ref.id is not None else ref.email
            merged_at = None if event.merged_at is None else event.merged_at.timestamp()
            placed.append(
                setrules.Placement(
                    event.event_id, str(event.rule), person, merged_at, event.can_trigger
                )
            )
    return placed


def test_the_shopper_fixture(tmp_path: Path) -> None:
    records = [
        r.value
        for r in iter_records(ROOT / "fixtures" / "shopper.ndjson")
        if isinstance(r.value, dict) and "op" not in r.value
    ]
    assert setrules.place(records) == engine_placements(tmp_path, records)


def test_the_benchmark_traffic(tmp_path: Path) -> None:
    """20,000 records of the replay benchmark: anonymous tracks over many ids,
    identified tracks, identifies that merge, late events (profile merges left out)."""
    import sys

    sys.path.insert(0, str(ROOT / "bench"))
    from make_fixture import records as generated

    records = [r for r in generated(20_000, seed=5) if r.get("type") != "merge"]
    records = [r for r in records if "method" not in r]
    placed = setrules.place(records)
    assert placed == engine_placements(tmp_path, records)
    rules_seen = {p.rule for p in placed}
    assert {"anonymous", "merged_on_identify", "window_closed", "campaign_eligible"} <= rules_seen


def _stream() -> st.SearchStrategy[list[dict[str, Any]]]:
    anonymous_ids = st.sampled_from(["a1", "a2", "a3", "a4"])
    users = st.sampled_from(["u1", "u2", "u3"])
    offsets = st.integers(min_value=0, max_value=900)  # receive time, seconds after BASE
    ages = st.sampled_from([0, 30, 200, 86_400 * 3 + 1, 86_400 * 29, 86_400 * 31])
    message_ids = st.sampled_from([f"m{i}" for i in range(12)])
    track = st.fixed_dictionaries(
        {
            "type": st.sampled_from(["track", "page", "screen"]),
            "offset": offsets,
            "age": ages,
            "messageId": message_ids,
        },
        optional={"anonymousId": anonymous_ids, "userId": users},
    ).filter(lambda r: "anonymousId" in r or "userId" in r)
    identify = st.fixed_dictionaries(
        {"type": st.just("identify"), "userId": users, "offset": offsets},
        optional={"anonymousId": anonymous_ids, "messageId": message_ids.map(lambda m: "i" + m)},
    )
    return st.lists(st.one_of(track, identify), min_size=1, max_size=25)


def together(streams: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Streams as one: each in its own 100 days, its ids and emails under its own prefix
    (cio_ ids stay as they are), so one Spark run judges them all."""

    def own(value: Any, k: int) -> Any:
        if not isinstance(value, str) or value.strip().startswith("cio_"):
            return value
        text = value.lstrip()
        return f"{value[: len(value) - len(text)]}s{k}.{text}"

    together = []
    for k, stream in enumerate(streams):
        for record in stream:
            record = dict(record)
            for key in ("receivedAt", "timestamp"):
                if key in record:
                    record[key] += k * 100 * 86_400
            for key in ("userId", "anonymousId", "messageId"):
                if key in record:
                    record[key] = own(record[key], k)
            if "email" in record.get("traits", {}):
                record["traits"] = {"email": own(record["traits"]["email"], k)}
            together.append(record)
    return together


def _message(spec: dict[str, Any]) -> dict[str, Any]:
    at = BASE + spec["offset"]
    message: dict[str, Any] = {"type": spec["type"], "receivedAt": at}
    for key in ("userId", "anonymousId", "messageId"):
        if key in spec:
            message[key] = spec[key]
    if spec["type"] == "identify":
        return message
    message["timestamp"] = at - spec["age"]
    if spec["type"] == "track":
        message["event"] = "Viewed"
    elif spec["type"] == "page":
        message["properties"] = {"url": "https://x.io/"}
    else:
        message["name"] = "Home"
    return message


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(specs=_stream())
@pytest.mark.slow
def test_generated_streams(tmp_path: Path, specs: list[dict[str, Any]]) -> None:
    records = [_message(spec) for spec in specs]
    assert setrules.place(records) == engine_placements(tmp_path, records)


def test_order_sensitive_records_are_refused() -> None:
    with pytest.raises(setrules.NotSetBased, match="purge"):
        setrules.place([{"op": "purge", "at": BASE}])
