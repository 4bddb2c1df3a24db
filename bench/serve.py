"""`cio-anon serve` under load: 16 concurrent keep-alive clients on loopback (goal: at
least 2,000 requests/s sustained, p99 under 50 ms, and every 200 in the workspace); then
1,000 slow connections each holding an unfinished body while one normal client works
(goal: its p99 stays under 200 ms), with the server's memory before and after.

    python bench/serve.py [--clients 16] [--seconds 10] [--processes 4] [--slow 1000]

The clients run in separate processes (threads inside each), so the load generator
does not share the server's interpreter.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import multiprocessing
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import in_processes, p99, posted, serving, summary  # noqa: E402


def client_process(
    port: int,
    threads: int,
    seconds: float,
    number: int,
    out: multiprocessing.Queue[tuple[int, list[float]]],
) -> None:
    results: list[tuple[int, list[float]]] = []

    def one(thread: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        ok, latencies, index = 0, [], 0
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            index += 1
            anonymous = f"p{number}-t{thread}-a{index // 5}"
            body = json.dumps(
                {
                    "type": "track",
                    "anonymousId": anonymous,
                    "event": "Viewed",
                    "properties": {"i": index},
                    "messageId": f"p{number}-t{thread}-m{index}",
                }
            )
            status, took = posted(connection, "/v1/track", body)
            latencies.append(took)
            ok += status == 200
        connection.close()
        results.append((ok, latencies))

    workers = [threading.Thread(target=one, args=(t,)) for t in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    ok = sum(r[0] for r in results)
    out.put((ok, [latency for r in results for latency in r[1]]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--slow", type=int, default=1000)
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory() as folder,
        serving(Path(folder) / "served.db") as (
            server,
            port,
        ),
    ):
        per_process = args.clients // args.processes
        elapsed, gathered = in_processes(
            client_process,
            [(port, per_process, args.seconds, n) for n in range(args.processes)],
        )
        counts = summary(port)
        slow = slow_connections(port, server.pid, args.slow, seconds=min(args.seconds, 5.0))
    ok = sum(g[0] for g in gathered)
    latencies = sorted(latency for g in gathered for latency in g[1])
    print(
        f"{args.clients} keep-alive clients ({args.processes} processes) for "
        f"{args.seconds:.0f} s: {len(latencies):,} requests, {ok:,} answered 200"
    )
    print(
        f"throughput {len(latencies) / elapsed:,.0f} requests/s (goal >= 2,000); latency "
        f"median {statistics.median(latencies) * 1000:.1f} ms, p99 {p99(latencies) * 1000:.1f} ms "
        f"(goal < 50 ms)"
    )
    print(
        f"events in the workspace afterwards: {counts['events']:,} "
        f"({'every 200 is there' if counts['events'] == ok else 'MISSING EVENTS'})"
    )
    print(
        f"{args.slow:,} slow connections held open (each an unfinished 500 KB batch): a "
        f"normal client's p99 {slow['p99'] * 1000:.1f} ms over {slow['requests']:,} requests "
        f"(goal < 200 ms); server memory {slow['rss_before'] / 1e6:.0f} MB before, "
        f"{slow['rss_during'] / 1e6:.0f} MB while held, {slow['rss_after'] / 1e6:.0f} MB "
        "a second after they closed (bodies being read hold at most 64 MiB in all)"
    )


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def slow_connections(port: int, pid: int, count: int, seconds: float) -> dict[str, float]:
    """Open `count` connections that each send headers declaring the largest body a
    batch may be (500 KB) and 400 KB of it, then stall (the worst a client can do: a
    larger body is refused before it is read); meanwhile one keep-alive client posts
    tracks. Memory is read before, while they are held, and a second after they close."""
    before = rss(pid)
    held = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setblocking(False)
        head = b"POST /v1/batch HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 512000\r\n\r\n"
        with contextlib.suppress(BlockingIOError):
            sock.send(head + b"x" * 400_000)
        held.append(sock)
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    latencies = []
    deadline = time.perf_counter() + seconds
    index = 0
    while time.perf_counter() < deadline:
        index += 1
        body = json.dumps({"anonymous_id": "n", "name": "Normal", "id": f"slow-phase-{index}"})
        start = time.perf_counter()
        connection.request("POST", "/api/v1/events", body, {"Content-Type": "application/json"})
        response = connection.getresponse()
        response.read()
        latencies.append(time.perf_counter() - start)
    during = rss(pid)
    connection.close()
    for sock in held:
        sock.close()
    time.sleep(1.0)
    after = rss(pid)
    latencies.sort()
    return {
        "p99": p99(latencies),
        "requests": len(latencies),
        "rss_before": before,
        "rss_during": during,
        "rss_after": after,
    }


if __name__ == "__main__":
    main()
