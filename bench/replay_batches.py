"""Replay of a server SDK's recorded batches, with a group or an alias among their
messages now and then, against the same batches without them.

    python bench/replay_batches.py [--records 200000] [--runs 3] [--every 25]

A server SDK (`@segment/analytics-node`, `customerio-cdp-analytics`) posts its messages
in batches, and `serve --record` writes each batch as one recorded request. The
messages here are `make_sessions.py`'s session traffic, fifty to a request as
`serve --record` writes them (the request's receive time, not the messages'); among
them, every `--every` messages, a `group` or an `alias` (Segment's calls for accounts
and for a second id: the service takes a group, and an alias only says so). Three replays, each in
a fresh workspace, interleaved, medians of `--runs`:

- `plain`: the batches without the groups and aliases;
- `with groups and aliases`: the bulk path takes the other messages (and notes each
  alias), the service each group alone;
- the same with `--keep-going`, where a request is applied or refused whole: each
  request with a group is applied apart, inside a savepoint of its own.

The goal: the batches with groups and aliases cost little more than without them.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import timed  # noqa: E402
from make_sessions import generate  # noqa: E402

from cio_anon.replay import replay_into  # noqa: E402

BATCH = 50
"""Messages a request, as a server SDK sends them."""


def requests(count: int, every: int) -> Iterator[dict[str, Any]]:
    """`count` session messages as recorded batch requests, with a group or an alias
    after every `every` messages when `every` is not 0 (then more than `count`)."""
    batch: list[dict[str, Any]] = []
    user = "user-0"
    for index, message in enumerate(generate("sessions", count), 1):
        received = message.pop("receivedAt")
        batch.append(message)
        user = str(message.get("userId") or user)
        if every and index % every == 0:
            batch.append(_group(user, index) if index // every % 2 else _alias(user, message))
        if len(batch) >= BATCH:
            yield _request(received, batch)
            batch = []
    if batch:
        yield _request(received, batch)


def _group(user: str, index: int) -> dict[str, Any]:
    return {
        "type": "group",
        "messageId": f"group-{index}",
        "userId": user,
        "groupId": f"account-{index % 97}",
        "traits": {"name": f"Account {index % 97}", "plan": "team"},
    }


def _alias(user: str, message: dict[str, Any]) -> dict[str, Any]:
    previous = message.get("anonymousId") or f"{user}-previous"
    return {
        "type": "alias",
        "messageId": f"alias-{previous}",
        "userId": user,
        "previousId": previous,
    }


def _request(received: object, batch: list[dict[str, Any]]) -> dict[str, Any]:
    """A batch as `serve --record` writes it: the request, at its receive time."""
    return {"at": received, "method": "POST", "path": "/v1/batch", "body": {"batch": batch}}


def write(path: Path, count: int, every: int) -> int:
    """Write the requests; how many messages they carry."""
    messages = 0
    with path.open("wb") as handle:
        for request in requests(count, every):
            messages += len(request["body"]["batch"])
            handle.write(orjson.dumps(request) + b"\n")
    return messages


VARIANTS = (
    ("plain", False, False),
    ("with groups and aliases", True, False),
    ("with groups and aliases, --keep-going", True, True),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--every", type=int, default=25)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        files: dict[bool, tuple[Path, int]] = {}
        for mixed in (False, True):
            path = folder / ("mixed.ndjson" if mixed else "plain.ndjson")
            files[mixed] = (path, write(path, args.records, args.every if mixed else 0))
        seconds: dict[str, list[float]] = {label: [] for label, _, _ in VARIANTS}
        for run in range(args.runs):  # interleaved, so all see the same machine load
            for label, mixed, keep_going in VARIANTS:
                db = folder / f"replayed-{run}.db"
                replay = partial(
                    replay_into, db, datetime.now(UTC), [files[mixed][0]], keep_going=keep_going
                )
                took, summary = timed(replay)
                assert summary.ok, summary.invalid[:3]
                seconds[label].append(took)
                for leftover in folder.glob(f"replayed-{run}.db*"):
                    leftover.unlink()
    plain = statistics.median(seconds["plain"])
    print(
        f"{args.records:,} session messages in batches of {BATCH}, a group or an alias "
        f"after every {args.every}; medians of {args.runs} runs"
    )
    print("| replay | messages | time | × plain |")
    print("|---|---|---|---|")
    for label, mixed, _ in VARIANTS:
        median = statistics.median(seconds[label])
        print(f"| {label} | {files[mixed][1]:,} | {median:.2f} s | {median / plain:.2f} |")


if __name__ == "__main__":
    main()
