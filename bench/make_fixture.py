"""Write a realistic replay fixture: anonymous tracks across many anonymous ids,
identified tracks, identifies that merge, late events and profile merges.

    python bench/make_fixture.py OUT.ndjson [--records N] [--seed S]
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

START = 1_772_000_000  # 2026-02-25, Unix seconds


def records(count: int, seed: int) -> list[dict[str, object]]:
    rng = random.Random(seed)
    out: list[dict[str, object]] = []
    clock = START
    people = 0
    pending: list[str] = []  # anonymous ids with events, not identified yet
    identified: list[tuple[str, str]] = []  # (user id, anonymous id)
    anon_counter = 0
    while len(out) < count:
        clock += rng.randint(0, 3)
        roll = rng.random()
        at = clock
        if roll < 0.62 or not pending:
            if not pending or rng.random() < 0.2:
                anon_counter += 1
                pending.append(f"anon-{anon_counter}")
            anonymous_id = rng.choice(pending[-200:])
            out.append(
                {
                    "type": "track",
                    "anonymousId": anonymous_id,
                    "event": rng.choice(["Product Viewed", "Added to Cart", "Collection Viewed"]),
                    "properties": {
                        "sku": f"SKU-{rng.randint(1, 500)}",
                        "price": rng.randint(5, 200),
                    },
                    "messageId": f"m-{len(out)}",
                    "timestamp": at - rng.randint(0, 120),
                    "receivedAt": at,
                }
            )
        elif roll < 0.80 and identified:
            user_id, _ = rng.choice(identified[-500:])
            out.append(
                {
                    "type": "track",
                    "userId": user_id,
                    "event": "Order Completed",
                    "properties": {"total": rng.randint(10, 400)},
                    "messageId": f"m-{len(out)}",
                    "timestamp": at,
                    "receivedAt": at,
                }
            )
        elif roll < 0.97:
            anonymous_id = pending.pop(rng.randrange(len(pending)))
            people += 1
            user_id = f"cust-{people}"
            identified.append((user_id, anonymous_id))
            out.append(
                {
                    "type": "identify",
                    "userId": user_id,
                    "anonymousId": anonymous_id,
                    "traits": {"email": f"{user_id}@example.com", "plan": "free"},
                    "messageId": f"m-{len(out)}",
                    "timestamp": at,
                    "receivedAt": at,
                }
            )
        elif roll < 0.995 and identified:
            _, anonymous_id = rng.choice(identified[-50:])
            out.append(
                {  # a late event: after the 5-minute window
                    "type": "track",
                    "anonymousId": anonymous_id,
                    "event": "Late Tab Event",
                    "properties": {},
                    "messageId": f"m-{len(out)}",
                    "timestamp": at,
                    "receivedAt": at + 600,
                }
            )
            clock += 600
        elif len(identified) > 2:
            (a, _), (b, _) = rng.sample(identified[-100:], 2)
            identified = [pair for pair in identified if pair[0] != b]
            out.append(
                {
                    "at": at,
                    "method": "POST",
                    "path": "/api/v1/merge_customers",
                    "body": {"primary": {"id": a}, "secondary": {"id": b}},
                }
            )
    return out


SLICE = 500_000
SLICE_DAYS = 20
"""A slice of SLICE records spans about 9 days; the next starts SLICE_DAYS later."""


def stream(count: int, *, merges: bool = True) -> Iterator[dict[str, object]]:
    """`count` records in slices of `records`, each slice's ids its own (prefixed
    `s<k>-`, so no slice repeats another's message ids or people) and its times after
    the previous slice's; memory stays that of one slice. Without `merges`, the profile
    merges (HTTP calls) are left out, as a Data Pipelines export holds none."""
    for index in range(0, count, SLICE):
        prefix, shift = f"s{index // SLICE}-", index // SLICE * SLICE_DAYS * 86_400
        for record in records(min(SLICE, count - index), seed=index // SLICE):
            if not merges and "method" in record:
                continue
            record = _renamed(record, prefix)
            for key in ("at", "receivedAt", "timestamp"):
                value = record.get(key)
                if isinstance(value, int):
                    record[key] = value + shift
            yield record


def _renamed(value: Any, prefix: str) -> Any:
    """The slice's own names for ids (anonymous ids, people, message ids)."""
    if isinstance(value, str) and value.startswith(("anon-", "cust-", "m-")):
        return prefix + value
    if isinstance(value, dict):
        return {key: _renamed(item, prefix) for key, item in value.items()}
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--records", type=int, default=500_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--slices",
        action="store_true",
        help=f"write `stream`: slices of {SLICE:,} records, each with its own ids (for "
        "millions of records; one slice's generator slows down as it grows)",
    )
    args = parser.parse_args()
    made = stream(args.records) if args.slices else records(args.records, args.seed)
    with args.out.open("w") as handle:
        for record in made:
            handle.write(json.dumps(record, separators=(",", ":")) + "\n")


if __name__ == "__main__":
    main()
