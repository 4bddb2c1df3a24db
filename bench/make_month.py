"""Write a month of Data Pipelines traffic as a team's archive keeps it: one folder per
day (received, UTC), each holding gzipped NDJSON parts of Segment-spec messages with ISO
times and `context.library`.

    python bench/make_month.py OUT [--days 30] [--per-day 60000] [--seed 3]

The visitors browse anonymously on the web and in the apps; some sign up or log in
(an identify carrying their anonymous id), keep browsing as themselves, and order.
Real traffic's flaws are in it at realistic rates: events an app flushes just after
the identify (merged in the window) or ten minutes late (window closed), an offline
queue sent weeks later (retention expired), retried messages (duplicates), a shared
tablet identified by two people (a reused anonymous id), one Android release that
sends the anonymous id "undefined" (a placeholder id), and people who sign up twice
with one email (a split profile).
"""

from __future__ import annotations

import argparse
import gzip
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

START = datetime(2026, 3, 1, tzinfo=UTC)
SOURCES = (  # (library, share of visits, what a view is)
    ("analytics.js", 0.6, "page"),
    ("analytics-ios", 0.22, "screen"),
    ("analytics-android", 0.18, "screen"),
)
PART_SIZE = 50_000
"""Records per part file, as an archive splits a busy day."""


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class Month:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.serial = 0
        self.people = 0
        self.known: list[tuple[str, str]] = []  # (user id, email) of people who signed up

    def _message(
        self,
        kind: str,
        at: datetime,
        library: str,
        *,
        happened: datetime | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        self.serial += 1
        return {
            "type": kind,
            "messageId": f"msg-{self.serial:09d}",
            **fields,
            "context": {"library": {"name": library, "version": "4.2.0"}},
            "timestamp": _iso(happened or at),
            "receivedAt": _iso(at),
        }

    def visit(self, at: datetime) -> list[dict[str, Any]]:
        """One visit: anonymous browsing, perhaps an identify, perhaps an order."""
        rng = self.rng
        library, view = _pick_source(rng)
        anonymous_id = f"{library.replace('.', '-').split('-')[-1]}-{rng.getrandbits(48):012x}"
        if library == "analytics-android" and rng.random() < 0.01:
            anonymous_id = "undefined"  # the release with the bug
        out: list[dict[str, Any]] = []
        for _ in range(rng.randint(1, 6)):
            at += timedelta(seconds=rng.randint(5, 90))
            if rng.random() < 0.5:
                out.append(
                    self._message(
                        view,
                        at,
                        library,
                        anonymousId=anonymous_id,
                        name="Product",
                        properties={"path": f"/products/{rng.randint(1, 400)}"},
                    )
                )
            else:
                out.append(
                    self._message(
                        "track",
                        at,
                        library,
                        anonymousId=anonymous_id,
                        event=rng.choice(["Product Viewed", "Added to Cart", "Search"]),
                        properties={"sku": f"SKU-{rng.randint(1, 400)}"},
                    )
                )
        if anonymous_id == "undefined" or rng.random() > 0.3:
            return out  # stayed anonymous
        at += timedelta(seconds=rng.randint(5, 60))
        if self.known and rng.random() < 0.4:
            user_id, email = rng.choice(self.known[-2000:])  # a login
        else:
            self.people += 1
            user_id, email = f"cust-{self.people}", f"cust{self.people}@example.com"
            if self.known and rng.random() < 0.003:  # signed up again with the same email
                email = rng.choice(self.known[-2000:])[1]
            self.known.append((user_id, email))
        identify = self._message(
            "identify",
            at,
            library,
            userId=user_id,
            anonymousId=anonymous_id,
            traits={"email": email, "plan": "free"},
        )
        out.append(identify)
        if rng.random() < 0.002:  # a shared tablet: someone else logs in on it
            other = rng.choice(self.known[-2000:])
            out.append(
                self._message(
                    "identify",
                    at + timedelta(minutes=20),
                    library,
                    userId=other[0],
                    anonymousId=anonymous_id,
                    traits={"email": other[1]},
                )
            )
        roll = rng.random()
        flaw = None  # (received after the identify, event, happened before it)
        if roll < 0.2:  # flushed just after the identify: merges in the window
            flaw = (timedelta(seconds=rng.randint(1, 240)), "Signup Viewed", timedelta(seconds=2))
        elif roll < 0.25:  # ten minutes late: the window has closed
            flaw = (timedelta(minutes=10), "Banner Clicked", timedelta(seconds=30))
        elif roll < 0.26:  # an offline queue sent weeks later
            flaw = (timedelta(minutes=1), "Offline View", timedelta(days=35))
        if flaw is not None:
            delay, event, age = flaw
            out.append(
                self._message(
                    "track",
                    at + delay,
                    library,
                    anonymousId=anonymous_id,
                    event=event,
                    properties={},
                    happened=at - age,
                )
            )
        for _ in range(rng.choice([0, 0, 1, 2])):
            at += timedelta(seconds=rng.randint(10, 300))
            out.append(
                self._message(
                    "track",
                    at,
                    library,
                    userId=user_id,
                    anonymousId=anonymous_id,
                    event="Order Completed",
                    properties={"total": rng.randint(10, 400)},
                )
            )
        return out

    def day(self, date: datetime, count: int) -> list[dict[str, Any]]:
        """About `count` records received on `date`, in the order they were received."""
        rng = self.rng
        out: list[dict[str, Any]] = []
        while len(out) < count:
            start = date + timedelta(seconds=rng.randint(0, 86_399 - 3_600))
            for record in self.visit(start):
                out.append(record)
                if rng.random() < 0.01:  # a client's retry: the same message again
                    out.append(dict(record))
        out.sort(key=lambda record: record["receivedAt"])
        return [r for r in out if r["receivedAt"] < _iso(date + timedelta(days=1))]


def _pick_source(rng: random.Random) -> tuple[str, str]:
    roll = rng.random()
    for library, share, view in SOURCES:
        if roll < share:
            return library, view
        roll -= share
    return SOURCES[0][0], SOURCES[0][2]


def write(out: Path, days: int, per_day: int, seed: int) -> int:
    """Write the archive; how many records it holds."""
    month = Month(seed)
    total = 0
    for index in range(days):
        date = START + timedelta(days=index)
        folder = out / date.strftime("%Y-%m-%d")
        folder.mkdir(parents=True, exist_ok=True)
        records = month.day(date, per_day)
        for part, first in enumerate(range(0, len(records), PART_SIZE)):
            lines = b"".join(orjson.dumps(r) + b"\n" for r in records[first : first + PART_SIZE])
            with gzip.open(folder / f"part-{part:05d}.ndjson.gz", "wb", compresslevel=1) as handle:
                handle.write(lines)
        total += len(records)
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--per-day", type=int, default=60_000)
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()
    total = write(args.out, args.days, args.per_day, args.seed)
    print(f"{total:,} records over {args.days} days in {args.out}/")


if __name__ == "__main__":
    main()
