"""Write one shopper's session as an end-to-end run records it: fresh anonymous ids,
message ids and users on every run (`--seed`). She browses, is identified, starts a
checkout some seconds after the identify (`--identify-before-checkout`), and orders as
herself. Two runs that differ only in their ids give no `cio-anon diff`; moving the
identify past the 5-minute window changes one event.

    python bench/make_journey.py OUT.ndjson [--seed S] [--identify-before-checkout SECONDS]
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path
from typing import Any

START = 1_772_000_000  # 2026-02-25, Unix seconds


def journey(seed: int, identify_before_checkout: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)

    def fresh(prefix: str) -> str:
        return f"{prefix}-{rng.getrandbits(48):012x}"

    anonymous, user = fresh("anon"), fresh("user")
    checkout = START + 900
    identified = checkout - identify_before_checkout

    def message(kind: str, at: int, **fields: Any) -> dict[str, Any]:
        return {"type": kind, "messageId": fresh("m"), "receivedAt": at, "timestamp": at, **fields}

    return [
        message("page", START, anonymousId=anonymous, name="Home"),
        message("track", START + 60, anonymousId=anonymous, event="Product Viewed"),
        message("track", START + 90, anonymousId=anonymous, event="Product Viewed"),
        message("identify", identified, anonymousId=anonymous, userId=user),
        message("track", checkout, anonymousId=anonymous, event="Checkout Started"),
        message("track", checkout + 60, userId=user, event="Order Completed"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--identify-before-checkout", type=int, default=120)
    args = parser.parse_args()
    records = journey(args.seed, args.identify_before_checkout)
    args.out.write_text("".join(json.dumps(r) + "\n" for r in records))


if __name__ == "__main__":
    main()
