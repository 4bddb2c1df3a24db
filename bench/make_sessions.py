"""Write traffic shaped like real sessions, or a hostile mix, as Data Pipelines messages.

    python bench/make_sessions.py OUT.ndjson [--records N] [--shape sessions|hostile]

`sessions`: browsers and apps as Customer.io's and Segment's SDKs send them. A visitor
browses anonymously under their device's anonymous id; some log in (an identify with that
id), and from then on every event carries both `userId` and `anonymousId`; a returning
visitor logs in again on the same device (the same identify, repeated); a logout calls
`reset()`, so the next visits have a new anonymous id until a later login; a shared
browser sees a second person log in on an id already assigned; server-side events arrive
for a person before any identify (the track creates them); app events are delivered hours
late; 1 % of messages are sent twice (retries).

`hostile`: the cases that cost most: identifies that reuse anonymous ids already
assigned to others, anonymous events long after the 5-minute window on assigned ids,
identifies repeated with nothing new, and traits that change every time.

Times are ISO 8601 strings, as the SDKs send them.
"""

from __future__ import annotations

import argparse
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

START = datetime(2026, 3, 2, tzinfo=UTC)
SHAPES = ("sessions", "hostile")


class _Traffic:
    """The state of the simulated site: devices, people, and the clock."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.clock = START
        self.sent = 0
        self.devices: list[str] = []  # anonymous ids of browsers and apps in use
        self.owner: dict[str, str] = {}  # anonymous id -> the user logged in on it
        self.assigned: list[str] = []  # the keys of `owner`, in order
        self.users: list[str] = []
        self.anonymous = 0

    def tick(self) -> datetime:
        self.clock += timedelta(milliseconds=self.rng.randint(0, 2_500))
        return self.clock

    def new_device(self) -> str:
        self.anonymous += 1
        device = f"{self.rng.getrandbits(64):016x}-{self.anonymous}"
        self.devices.append(device)
        return device

    def log_in(self, device: str, user: str) -> None:
        if device not in self.owner:
            self.owner[device] = user
            self.assigned.append(device)

    def new_user(self) -> str:
        user = f"user-{len(self.users) + 1}"
        self.users.append(user)
        return user

    def message(self, kind: str, **fields: object) -> dict[str, object]:
        self.sent += 1
        at = fields.pop("at", None) or self.tick()
        assert isinstance(at, datetime)
        happened = fields.pop("happened", None) or at - timedelta(
            milliseconds=self.rng.randint(5, 900)
        )
        assert isinstance(happened, datetime)
        record: dict[str, object] = {"type": kind, "messageId": f"msg-{self.sent}"}
        record.update({key: value for key, value in fields.items() if value is not None})
        record["timestamp"] = _iso(happened)
        record["receivedAt"] = _iso(at)
        return record

    def track(
        self, name: str, *, user: str | None, device: str | None, **options: object
    ) -> dict[str, object]:
        properties = {"path": f"/p/{self.rng.randint(1, 300)}", "value": self.rng.randint(1, 99)}
        return self.message(
            "track",
            event=name,
            userId=user,
            anonymousId=device,
            properties=properties,
            context={"library": {"name": "analytics.js", "version": "2.1.0"}},
            **options,
        )

    def identify(self, user: str, device: str | None, **traits: object) -> dict[str, object]:
        return self.message(
            "identify",
            userId=user,
            anonymousId=device,
            traits={"email": f"{user}@example.com", **traits},
        )


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def sessions(count: int, seed: int = 11) -> Iterator[dict[str, object]]:
    """`count` messages of session traffic (see the module's text)."""
    t = _Traffic(seed)
    rng = t.rng
    made = 0
    while made < count:
        for record in _visit(t, rng):
            yield record
            made += 1
            if rng.random() < 0.01:  # a retry: the same message again, received later
                yield {**record, "receivedAt": _iso(t.tick())}
                made += 1
            if made >= count:
                return


def _visit(t: _Traffic, rng: random.Random) -> Iterator[dict[str, object]]:
    roll = rng.random()
    if roll < 0.35 or len(t.devices) < 50:  # a new visitor
        device, user = t.new_device(), None
    else:  # a returning device, logged in on it before or not
        device = rng.choice(t.devices[-5_000:])
        user = t.owner.get(device)
    for _ in range(rng.randint(1, 6)):  # browsing before any login in this visit
        yield t.track(rng.choice(("Page Viewed", "Product Viewed")), user=None, device=device)
    login = rng.random()
    if user is None and login < 0.45:  # signs up or logs in for the first time here
        user = t.new_user() if rng.random() < 0.8 or not t.users else rng.choice(t.users)
        t.log_in(device, user)
        yield t.identify(user, device, plan="free")
    elif user is not None and login < 0.7:  # logs in again on the same device
        if rng.random() < 0.05 and len(t.users) > 1:  # a shared browser: someone else
            user = rng.choice(t.users[-2_000:])
        yield t.identify(user, device, plan="free")
    else:
        user = None
    for _ in range(rng.randint(0, 8)):  # browsing, identified or not
        yield t.track(
            rng.choice(("Page Viewed", "Added to Cart", "Checkout Started")),
            user=user,
            device=device,
        )
    if user is not None and rng.random() < 0.15:  # the app's queue, delivered hours late
        at = t.tick()
        happened = at - timedelta(hours=rng.randint(1, 20))
        yield t.track("App Opened", user=user, device=device, at=at, happened=happened)
    if user is not None and rng.random() < 0.3:  # logs out: reset() gives a new id
        t.devices.remove(device)
        t.new_device()
    if rng.random() < 0.08:  # a server-side event, for someone no identify named yet
        yield t.track("Invoice Paid", user=f"billing-{t.sent}", device=None)


def hostile(count: int, seed: int = 13) -> Iterator[dict[str, object]]:
    """`count` messages of the hostile mix (see the module's text)."""
    t = _Traffic(seed)
    rng = t.rng
    made = 0
    while made < count:
        roll = rng.random()
        if roll < 0.35 or len(t.devices) < 20:
            device = rng.choice(t.devices[-300:]) if t.devices and rng.random() < 0.7 else None
            yield t.track("Page Viewed", user=None, device=device or t.new_device())
        elif roll < 0.55:  # an identify reusing an id assigned to someone else
            device = rng.choice(t.devices[-2_000:])
            yield t.identify(t.new_user(), device, plan=rng.choice(("free", "pro", "team")))
            t.log_in(device, t.users[-1])
        elif roll < 0.75 and t.owner:  # an assigned id's event, long after the window
            device = rng.choice(t.assigned[-2_000:])
            at = t.tick()
            yield t.track("Late Event", user=None, device=device, at=at)
            t.clock += timedelta(minutes=rng.randint(6, 90))
        elif roll < 0.9 and t.owner:  # the same identify again, its traits changed
            device = rng.choice(t.assigned[-2_000:])
            yield t.identify(t.owner[device], device, plan=rng.choice(("free", "pro", "team")))
        else:  # an identified event naming both
            device = rng.choice(t.devices[-2_000:])
            yield t.track("Checkout Started", user=t.owner.get(device), device=device)
        made += 1


def generate(shape: str, count: int) -> Iterator[dict[str, object]]:
    if shape == "sessions":
        return sessions(count)
    if shape == "hostile":
        return hostile(count)
    raise ValueError(f"no shape {shape!r}: one of {', '.join(SHAPES)}")


def write(out: Path, shape: str, count: int) -> None:
    with out.open("wb") as handle:
        for record in generate(shape, count):
            handle.write(orjson.dumps(record) + b"\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--shape", choices=SHAPES, default="sessions")
    args = parser.parse_args()
    write(args.out, args.shape, args.records)


if __name__ == "__main__":
    main()
