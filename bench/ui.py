"""The web view's person page for a person with 100,000 events: the first page of the
Identified tab must be ready in under 0.5 s — measured on the server (the HTTP answer)
and in a real browser (first contentful paint, Debian's Chromium via Playwright).

    python bench/ui.py [--events 100000] [--runs 7]
"""

from __future__ import annotations

import argparse
import http.client
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from seed import seed  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        db = Path(folder) / "big.db"
        seed(db, person_events=args.events, anonymous=args.events)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        ui = subprocess.Popen(
            [sys.executable, "-m", "cio_anon", "ui", "--db", str(db), "--port", str(port)]
            + ["--quiet", "--at", "2026-03-10T00:00:00Z"],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert ui.stdout is not None
        ui.stdout.readline()
        try:
            server_times = []
            for tab in ("identified", "anonymous"):
                for _ in range(args.runs):
                    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                    start = time.perf_counter()
                    connection.request("GET", f"/person/big?tab={tab}")
                    response = connection.getresponse()
                    body = response.read()
                    server_times.append((tab, time.perf_counter() - start, len(body)))
                    connection.close()
            paints = browser_paints(f"http://127.0.0.1:{port}/person/big", args.runs)
        finally:
            ui.terminate()
            ui.wait(timeout=30)
    print(f"person with {args.events:,} events ({args.events // 10:,} activities)")
    for tab in ("identified", "anonymous"):
        times = [t for name, t, _ in server_times if name == tab]
        size = next(n for name, _, n in server_times if name == tab)
        print(
            f"GET /person/big?tab={tab:10} median {statistics.median(times) * 1000:6.1f} ms "
            f"({size / 1024:.0f} KB; goal < 500 ms)"
        )
    if paints:
        print(
            f"browser first contentful paint: median {statistics.median(paints):.0f} ms over "
            f"{len(paints)} loads (goal < 500 ms)"
        )


def browser_paints(url: str, runs: int) -> list[float]:
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(chromium).exists():
        print("no Chromium: browser timing skipped (apt-get install -y chromium)")
        return []
    from playwright.sync_api import sync_playwright

    paints = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        for _ in range(runs):
            page = browser.new_page()
            page.goto(url)
            paint = "performance.getEntriesByName('first-contentful-paint')"
            page.wait_for_function(f"{paint}.length > 0", timeout=10_000)
            paints.append(page.evaluate(f"{paint}[0].startTime"))
            page.close()
        browser.close()
    return paints


if __name__ == "__main__":
    main()
