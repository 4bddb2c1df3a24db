"""`cio-anon serve` taking session traffic in batches, as a server library sends it:
messages per second, request latency, and every message stored.

    python bench/serve_batches.py [--records 100000] [--batch 50] [--clients 8] [--runs 3]
                                  [--group-every K]

Session traffic (`make_sessions.py`, its times moved to end now) is cut into Data
Pipelines batches of `--batch` messages, in order, and `--clients` keep-alive clients
(each a process of its own, so the load does not share the server's interpreter) post
them to `/v1/batch` as fast as they are answered, each client a contiguous share of
the batches. Each run starts a fresh `serve --quiet` (as a script or CI runs it) on a
fresh workspace; medians of `--runs`. The server is started from a scratch folder, so
`PYTHONPATH` chooses the tree it runs (see "Comparing two commits" in the README).
With `--group-every K`, a `group` call (a B2B app's, naming the account of the user
before it) follows every K-th message.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import statistics
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import in_processes, p99, posted, serving, summary  # noqa: E402
from make_sessions import sessions  # noqa: E402


def batches(records: int, size: int, group_every: int = 0) -> list[bytes]:
    """The traffic as request bodies, its times moved so that its last is now, with a
    `group` after every `group_every`-th message (none when 0)."""
    messages = list(sessions(records))
    stamps = [datetime.fromisoformat(str(m["timestamp"])) for m in messages]
    offset = datetime.now(UTC) - max(stamps)
    sent: list[dict[str, object]] = []
    for number, (message, stamp) in enumerate(zip(messages, stamps, strict=True), 1):
        message["timestamp"] = (stamp + offset).isoformat()
        message.pop("receivedAt", None)
        sent.append(message)
        if group_every and number % group_every == 0:
            user = message.get("userId") or f"billing-{number}"
            sent.append({"type": "group", "userId": user, "groupId": f"acct-{number % 97}"})
    return [json.dumps({"batch": sent[i : i + size]}).encode() for i in range(0, len(sent), size)]


def client(
    port: int, bodies: list[bytes], out: multiprocessing.Queue[tuple[int, list[float]]]
) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    answers = [posted(connection, "/v1/batch", body) for body in bodies]
    connection.close()
    out.put((sum(status == 200 for status, _ in answers), [seconds for _, seconds in answers]))


def run(bodies: list[bytes], clients: int) -> tuple[float, list[float], int, dict[str, int]]:
    """One run against a fresh server: seconds, latencies, requests answered 200, and the
    workspace's summary."""
    with tempfile.TemporaryDirectory() as folder, serving(Path(folder) / "served.db") as (_, port):
        share = -(-len(bodies) // clients)
        shares = [(port, bodies[i : i + share]) for i in range(0, len(bodies), share)]
        elapsed, gathered = in_processes(client, shares)
        counts = summary(port)
    latencies = [latency for _, got in gathered for latency in got]
    return elapsed, latencies, sum(ok for ok, _ in gathered), counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--group-every", type=int, default=0)
    args = parser.parse_args()
    bodies = batches(args.records, args.batch, args.group_every)
    rates, medians, p99s = [], [], []
    for number in range(args.runs):
        elapsed, latencies, ok, summary = run(bodies, args.clients)
        latencies.sort()
        rates.append(args.records / elapsed)
        medians.append(statistics.median(latencies))
        p99s.append(p99(latencies))
        print(
            f"run {number + 1}: {args.records:,} messages in {len(bodies):,} batches of "
            f"{args.batch}, {elapsed:.2f} s ({rates[-1]:,.0f} messages/s); {ok:,} answered "
            f"200; latency median {medians[-1] * 1000:.0f} ms, p99 {p99s[-1] * 1000:.0f} ms; "
            f"workspace: {summary['events']:,} events, {summary['people']:,} people"
        )
    print(
        f"median of {args.runs}: {statistics.median(rates):,.0f} messages/s, latency median "
        f"{statistics.median(medians) * 1000:.0f} ms, p99 {statistics.median(p99s) * 1000:.0f} ms"
    )


if __name__ == "__main__":
    main()
