"""Fill a workspace fast, for the benchmarks: rows go in with executemany through the
workspace's own connection (the service would take minutes for a million events)."""

from __future__ import annotations

import random
from pathlib import Path

from cio_anon.clock import from_unix
from cio_anon.models import Settings
from cio_anon.store import Workspace
from cio_anon.store.migrations import SCHEMA_VERSION

START = 1_772_000_000.0


def seed(
    path: Path,
    *,
    anonymous: int = 0,
    person_events: int = 0,
    person: str = "big",
    expired: bool = False,
    seed_value: int = 3,
) -> None:
    """`anonymous` events over many anonymous ids, `person_events` events on one person
    (id `person`, with activities); `expired` puts the anonymous ones 40 days back."""
    rng = random.Random(seed_value)
    initial = Settings(created_at=from_unix(START - 86_400 * 400), anonymous_merge=True)
    workspace = Workspace.open(path, create=True, initial=initial)
    assert workspace.created and SCHEMA_VERSION
    conn = workspace.conn
    with workspace.transaction():
        conn.execute(
            "INSERT INTO people (cio_id, id, attributes, created_at, updated_at) "
            "VALUES ('00000001', ?, '{}', ?, ?)",
            (person, START, START),
        )
        offset = -40 * 86_400 if expired else 0
        columns = "event_id, name, type, data, timestamp, received_at, cio_id, anonymous_id, rule"
        conn.executemany(
            f"INSERT INTO events ({columns}) VALUES (?,?,?,?,?,?,?,?,?)",
            (
                (
                    f"a{i}",
                    "Product Viewed",
                    "event",
                    '{"sku":"X"}',
                    START + offset + i,
                    START + offset + i,
                    None,
                    f"anon-{rng.randrange(max(1, anonymous // 5))}",
                    "anonymous",
                )
                for i in range(anonymous)
            ),
        )
        conn.executemany(
            "INSERT INTO events (event_id, name, type, data, timestamp, received_at, cio_id, "
            "provenance, rule, can_trigger) VALUES (?,?,?,?,?,?,'00000001','tracked',"
            "'campaign_eligible',1)",
            (
                (f"p{i}", "Order Completed", "event", '{"total":1}', START + i, START + i)
                for i in range(person_events)
            ),
        )
        conn.executemany(
            "INSERT INTO activities (cio_id, type, timestamp, data) "
            "VALUES ('00000001','attribute_change',?,'{}')",
            ((START + i * 10,) for i in range(person_events // 10)),
        )
        conn.execute("INSERT INTO settings (key, value) VALUES ('people_created', '1')")
    workspace.close()
