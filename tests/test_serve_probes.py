"""`serve` probed as a network service: credentials on every route, the Host header and
cross-site posts, chunked and cut-off requests, record and commit together, one bad
request among many, slow bodies, quiet disconnects, and the small ones. Raw sockets
where the framing is the point."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cio_anon import server
from tests.conftest import free_port
from tests.test_serve import KEY, SITE, TRACK_AUTH, WRITE, Running, client_for, serving, start

TOKEN = "inspect-secret"


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[Running]:
    running, instance = start(tmp_path, site_id=SITE, api_key=KEY, inspect_token=TOKEN)
    yield running
    instance.shutdown()


def raw(port: int, data: bytes, *, wait: float = 5.0, close_after: bool = False) -> bytes:
    """Send bytes on a fresh connection; what came back before the server closed it or
    `wait` passed."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as sock:
        sock.sendall(data)
        if close_after:
            sock.shutdown(socket.SHUT_WR)
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
                if b"\r\n\r\n" in b"".join(chunks) and not close_after:
                    head, _, rest = b"".join(chunks).partition(b"\r\n\r\n")
                    length = _content_length(head)
                    if length is not None and len(rest) >= length:
                        break
        except TimeoutError:
            pass
    return b"".join(chunks)


def http(method: str, path: str, body: bytes = b"", **headers: str) -> bytes:
    """One HTTP/1.1 request as bytes (header names from keywords: Content_Type → Content-Type)."""
    fields = {"Host": "127.0.0.1", **{k.replace("_", "-"): v for k, v in headers.items()}}
    if body and "Transfer-Encoding" not in fields:
        fields.setdefault("Content-Length", str(len(body)))
    head = "".join(f"{name}: {value}\r\n" for name, value in fields.items())
    return f"{method} {path} HTTP/1.1\r\n{head}\r\n".encode() + body


def serve_argv(port: object, db: Path, *options: str) -> list[str]:
    """`cio-anon serve` as a child process's command line."""
    return [
        sys.executable,
        "-m",
        "cio_anon",
        "serve",
        "--port",
        str(port),
        "--db",
        str(db),
        *options,
    ]


def _content_length(head: bytes) -> int | None:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return None


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1]) if response else 0


def _rss(pid: int) -> int:
    """Resident memory of a process, in bytes (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def summary(running: Running) -> dict[str, int]:
    return running.inspect("summary")  # type: ignore[no-any-return]


# -- 1. credentials on every route ----------------------------------------------------


def test_the_inspection_api_needs_a_credential_when_any_is_configured(guarded: Running) -> None:
    for path in ("summary", "log", "profile/x", "explain/x"):
        status, _ = guarded.call("GET", f"/_cio-anon/{path}", headers={"Authorization": ""})
        assert status == 401, path
    assert guarded.call("POST", "/_cio-anon/reset", headers={"Authorization": ""})[0] == 401
    for auth in (f"Bearer {TOKEN}", f"bearer {TOKEN}"):
        assert guarded.call("GET", "/_cio-anon/summary", headers={"Authorization": auth})[0] == 200
    # an API's credential is not a reader's: the write key ships in every web page
    assert (
        guarded.call("GET", "/_cio-anon/summary", headers={"Authorization": TRACK_AUTH})[0] == 401
    )
    # the inspection token opens inspection only
    event = {"anonymous_id": "a", "name": "x"}
    status, _ = guarded.call(
        "POST", "/api/v1/events", event, headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert status == 401


def test_an_api_without_its_own_credentials_takes_the_configured_ones(tmp_path: Path) -> None:
    """With only a write key, the Track APIs are not left open: they take the write key."""
    with serving(tmp_path, write_key=WRITE) as running:
        event = {"anonymous_id": "a", "name": "x"}
        assert running.call("POST", "/api/v1/events", event)[0] == 401
        as_user = "Basic " + base64.b64encode(f"{WRITE}:".encode()).decode()
        assert (
            running.call("POST", "/api/v1/events", event, headers={"Authorization": as_user})[0]
            == 200
        )
        assert summary(running)["events"] == 1


def test_no_public_address_without_credentials(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="needs credentials"):
        server.Server(server.ServerConfig(db=tmp_path / "x.db", host="0.0.0.0", port=0))
    assert not (tmp_path / "x.db").exists()


# -- 2. browsers and DNS rebinding ----------------------------------------------------


def test_a_foreign_host_header_is_refused(guarded: Running) -> None:
    body = json.dumps({"anonymous_id": "a", "name": "x"}).encode()
    request = http(
        "POST",
        "/api/v1/events",
        body,
        Host=f"rebound.attacker.example:{guarded.port}",
        Authorization=TRACK_AUTH,
        Content_Type="application/json",
    )
    assert status_of(raw(guarded.port, request)) == 421
    assert summary(guarded)["events"] == 0
    ok = request.replace(b"rebound.attacker.example", b"localhost")
    assert status_of(raw(guarded.port, ok)) == 200


def test_an_allowed_host_is_answered(tmp_path: Path) -> None:
    with serving(tmp_path, allowed_hosts=("cio.test",)) as running:
        request = http("GET", "/_cio-anon/summary", Host=f"cio.test:{running.port}")
        assert status_of(raw(running.port, request)) == 200
        other = request.replace(b"cio.test", b"other.test")
        assert status_of(raw(running.port, other)) == 421


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://evil.example"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Content-Type": "application/x-www-form-urlencoded"},
        {"Content-Type": "text/plain"},
    ],
    ids=["origin", "sec-fetch-site", "form", "text-plain"],
)
def test_a_web_page_cannot_reset_the_workspace(guarded: Running, headers: dict[str, str]) -> None:
    guarded.call(
        "POST",
        "/api/v1/events",
        {"anonymous_id": "a", "name": "x"},
        headers={"Authorization": TRACK_AUTH},
    )
    status, _ = guarded.call("POST", "/_cio-anon/reset", raw=b"", headers=headers)
    assert status == 403
    assert summary(guarded)["events"] == 1
    assert guarded.call("POST", "/_cio-anon/reset", raw=b"")[0] == 200
    assert summary(guarded)["events"] == 0


# -- 3. chunked bodies and cut-off requests -------------------------------------------


def test_a_chunked_body_is_read_whole_and_nothing_in_it_runs(guarded: Running) -> None:
    guarded.call(
        "PUT", "/api/v1/customers/keep", {"plan": "seed"}, headers={"Authorization": TRACK_AUTH}
    )
    embedded = b"POST /_cio-anon/reset HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n"
    payload = json.dumps({"plan": "pro", "note": embedded.decode()}).encode()
    half = len(payload) // 2
    chunks = b"".join(
        b"%x\r\n%s\r\n" % (len(part), part) for part in (payload[:half], payload[half:])
    )
    request = http(
        "PUT",
        "/api/v1/customers/chunky",
        chunks + b"0\r\n\r\n",
        Authorization=TRACK_AUTH,
        Content_Type="application/json",
        Transfer_Encoding="chunked",
    )
    assert status_of(raw(guarded.port, request)) == 200
    person = guarded.inspect("profile/chunky")["person"]
    assert person["attributes"]["plan"] == "pro"
    assert summary(guarded)["people"] == 2  # the reset inside the body never ran


@pytest.mark.parametrize(
    "cut",
    [
        b"PUT /api/v1/customers/cut HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 40\r\n"
        b'Content-Type: application/json\r\n\r\n{"plan": "pro"}',  # whole JSON, short body
        b"PUT /api/v1/customers/cut HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n"
        b'\r\nf\r\n{"plan": "pro"}\r\n',  # a whole chunk, no last one
        b"PUT /api/v1/customers/cut HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Le",
    ],
    ids=["body-cut", "no-last-chunk", "headers-cut"],
)
def test_a_cut_off_request_applies_nothing(tmp_path: Path, cut: bytes) -> None:
    with serving(tmp_path) as running:
        raw(running.port, cut, close_after=True, wait=2)
        time.sleep(0.3)
        assert summary(running)["people"] == 0


# -- 4. record and commit together ----------------------------------------------------


def _deep(levels: int) -> Any:
    value: Any = "bottom"
    for _ in range(levels):
        value = {"k": value}
    return value


def test_what_cannot_be_recorded_is_not_stored(tmp_path: Path) -> None:
    record = tmp_path / "calls.ndjson"
    with serving(tmp_path, record=record) as running:
        message = {"anonymousId": "a", "event": "Deep", "messageId": "m-1", "context": _deep(300)}
        for _ in range(2):  # a client retries what failed: still stored zero times
            status, body = running.call(
                "POST", "/v1/track", message, headers={"X-Strict-Mode": "1"}
            )
            assert status == 400 and "record" in json.dumps(body)
        assert summary(running)["events"] == 0
        running.call("POST", "/v1/track", {"anonymousId": "a", "event": "Fine", "messageId": "m-2"})
        assert summary(running)["events"] == 1
    lines = record.read_text().splitlines()
    assert len(lines) == 1 and '"Fine"' in lines[0]


def test_a_record_that_cannot_be_written_stores_nothing(tmp_path: Path) -> None:
    """/dev/full: every write fails with ENOSPC."""
    with serving(tmp_path, record=Path("/dev/full")) as running:
        status, body = running.call("POST", "/api/v1/events", {"anonymous_id": "a", "name": "x"})
        assert status == 503 and "nothing was stored" in json.dumps(body)
        assert summary(running)["events"] == 0


# -- 5. one bad request among many ----------------------------------------------------


def test_a_bad_request_fails_alone(tmp_path: Path) -> None:
    with serving(tmp_path) as running:
        results: list[int] = []
        bad: list[tuple[int, Any]] = []

        def good(number: int) -> None:
            for index in range(25):
                event = {"anonymous_id": f"g{number}", "name": "ok", "id": f"g{number}-{index}"}
                results.append(running.call("POST", "/api/v1/events", event)[0])

        def poison() -> None:
            for index in range(10):
                attributes = {"deep": _deep(990), "anonymous_id": f"p{index}"}
                bad.append(running.call("PUT", f"/api/v1/customers/p{index}", attributes))
                bad.append(running.call("GET", "/_cio-anon/log?limit=abc"))

        threads = [threading.Thread(target=good, args=(n,)) for n in range(8)]
        threads.append(threading.Thread(target=poison))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert results == [200] * 200
        assert summary(running)["events"] == 200
        assert all(status == 400 for status, _ in bad), bad
        assert summary(running)["people"] == 0


# -- 6. slow bodies -------------------------------------------------------------------


def test_credentials_and_size_are_checked_before_the_body_is_read(guarded: Running) -> None:
    head = b"POST /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 4000000\r\n\r\n"
    started = time.perf_counter()
    assert status_of(raw(guarded.port, head + b"{")) == 401  # no body was waited for
    huge = head.replace(b"4000000", b"6000000").replace(
        b"\r\n\r\n", b"\r\nAuthorization: " + TRACK_AUTH.encode() + b"\r\n\r\n"
    )
    assert status_of(raw(guarded.port, huge)) == 413
    assert time.perf_counter() - started < 2


def test_a_body_that_does_not_arrive_in_time_is_refused(tmp_path: Path) -> None:
    with serving(tmp_path, body_seconds=0.5) as running:
        head = b"POST /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\n{"
        assert status_of(raw(running.port, head, wait=5)) == 408
        assert summary(running)["events"] == 0


@pytest.mark.slow
def test_many_slow_bodies_hold_little_memory_and_others_are_served(tmp_path: Path) -> None:
    """200 connections each holding an unfinished 5 MB body: memory stays bounded (the
    server reads no faster than it needs), and a normal client is answered at once."""
    port, process = _serve_process(tmp_path, "--quiet")
    try:
        before = _rss(process.pid)
        holders = []
        for _ in range(200):
            sock = socket.create_connection(("127.0.0.1", port))
            sock.sendall(
                b"POST /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Content-Length: 5000000\r\n\r\n" + b"x" * 200_000
            )
            holders.append(sock)
        time.sleep(1)
        grown = _rss(process.pid) - before
        running = client_for(port)
        started = time.perf_counter()
        assert running.call("POST", "/api/v1/events", {"anonymous_id": "a", "name": "x"})[0] == 200
        assert time.perf_counter() - started < 0.5
        assert grown < 150 * 1024 * 1024, f"grew {grown / 1e6:.0f} MB"
        for sock in holders:
            sock.close()
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0


def test_a_thousand_connects_do_not_wait_for_the_backlog(guarded: Running) -> None:
    slowest = 0.0
    opened = []
    for _ in range(1000):
        started = time.perf_counter()
        opened.append(socket.create_connection(("127.0.0.1", guarded.port), timeout=5))
        slowest = max(slowest, time.perf_counter() - started)
    for sock in opened:
        sock.close()
    assert slowest < 0.5  # a full backlog of 5 made 15 % wait a second for a SYN retry


# -- 7. quiet disconnects, an access log, a stderr nobody reads -----------------------


def _serve_process(
    tmp_path: Path, *options: str, stderr: Any = subprocess.PIPE, env: Any = None
) -> tuple[int, subprocess.Popen[str]]:
    port = free_port()
    process = subprocess.Popen(
        serve_argv(port, tmp_path / "p.db", *options),
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
        env=env,
    )
    assert process.stdout is not None
    assert "listening on" in process.stdout.readline()
    return port, process


def test_aborted_connections_are_quiet_and_each_request_is_one_log_line(tmp_path: Path) -> None:
    port, process = _serve_process(tmp_path)
    try:
        for _ in range(5):
            sock = socket.create_connection(("127.0.0.1", port))
            sock.sendall(
                b'POST /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 50\r\n\r\n{"a'
            )
            sock.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
            )
            sock.close()  # a reset, mid-body
        running = client_for(port)
        for index in range(3):
            running.call(
                "POST", "/api/v1/events", {"anonymous_id": "a", "name": "x", "id": f"e{index}"}
            )
        time.sleep(0.3)
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=15)
    assert process.returncode == 0
    assert "Traceback" not in stderr
    answered = [
        line for line in stderr.splitlines() if '"POST /api/v1/events HTTP/1.1" 200' in line
    ]
    assert len(answered) == 3, stderr


def test_a_request_over_the_connection_limit_is_explained_once_a_burst(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A client sending every batch at once meets the connection limit thousands of
    times: the first 503 says what happened and what to read, the others say it short."""
    with serving(tmp_path, connections=16, quiet=False) as running:
        held = []
        for _ in range(16):  # requests whose bodies never finish hold every slot
            sock = socket.create_connection(("127.0.0.1", running.port))
            sock.sendall(
                b"POST /v1/batch HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 99\r\n\r\n{"
            )
            held.append(sock)
        time.sleep(0.3)
        request = b"GET /_cio-anon/summary HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        assert [status_of(raw(running.port, request)) for _ in range(3)] == [503] * 3
        for sock in held:
            sock.close()
        time.sleep(0.3)
    said = "cio-anon serve: a request answered 503"  # (a client's port may hold "503")
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith(said)]
    assert lines[0].startswith("cio-anon serve: a request answered 503: 16 connections")
    assert "A burst from a server library" in lines[0]
    short = "cio-anon serve: a request answered 503: over the connection limit"
    assert len(lines) >= 3 and set(lines[1:]) == {short}  # (the last held one may be 503 too)


def test_the_access_log_says_what_a_permissive_answer_refused(tmp_path: Path) -> None:
    """A browser SDK sends no X-Strict-Mode, so a refused call is answered 200, as Data
    Pipelines answers it: the access line is where a developer learns why the call is
    not in the workspace. A page's event is named by its URL, and a URL with campaign
    parameters is over the 100 bytes a name may have."""
    url = (
        "https://shop.example.com/products/graphic-tee?utm_source=newsletter"
        "&utm_medium=email&utm_campaign=spring-sale"
    )
    port, process = _serve_process(tmp_path)
    running = client_for(port)
    sent = [
        ("/v1/p", {"type": "page", "name": "Tee", "anonymousId": "a", "properties": {"url": url}}),
        ("/v1/p", {"type": "page", "name": "Home", "anonymousId": "a", "properties": {}}),
        (
            "/v1/batch",
            {
                "batch": [{"type": "track", "event": "Ok", "anonymousId": "a"}]
                + [{"type": "track", "anonymousId": "a"}] * 2
            },
        ),
    ]
    try:
        answers = [running.call("POST", path, body)[0] for path, body in sent]
        time.sleep(0.3)
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=15)
    assert answers == [200, 200, 200]
    page, home, batch = [line for line in stderr.splitlines() if '"POST /v1/' in line]
    assert page.endswith(
        f" refused: The page {url[:60]!r}... is {len(url)} bytes: Customer.io names a page's "
        "event by its URL and allows at most 100 bytes. Without its query string the URL is "
        f"{len(url.partition('?')[0])} bytes (the browser SDKs send the query as "
        "properties.search, and its utm_ parameters as context.campaign, as well)."
    )
    assert "refused" not in home
    assert batch.endswith(
        " refused: Batch item 1 needs `event` as a string, not null. (and 1 more)"
    )


def test_the_inspection_api_lists_what_was_refused(tmp_path: Path) -> None:
    """A test suite that drove a browser's SDK asks what serve refused (each call, with
    the id it was sent with and why) and finds it even when every answer was 200; a
    reset starts the list again."""
    url = "https://shop.example.com/p/tee?" + "utm_campaign=spring-sale&" * 4
    page = {"type": "page", "anonymousId": "a", "messageId": "p-1", "properties": {"url": url}}
    good = {"type": "track", "event": "Ok", "anonymousId": "a", "messageId": "t-1"}
    bad = {"type": "track", "anonymousId": "a", "messageId": "t-2"}
    with serving(tmp_path) as running:
        assert running.inspect("refused") == {"count": 0, "refused": []}
        assert running.call("POST", "/v1/p", page)[0] == 200
        assert running.call("POST", "/v1/batch", {"batch": [good, bad, good]})[0] == 200
        assert running.call("POST", "/v1/nowhere", good)[0] == 404
        listed = running.inspect("refused")
        assert listed["count"] == 3
        said = [(r["method"], r["path"], r["message_id"], r["refused"]) for r in listed["refused"]]
        assert said[0][:3] == ("POST", "/v1/p", "p-1") and f"is {len(url)} bytes" in said[0][3]
        assert said[1] == (
            "POST",
            "/v1/batch",
            "t-2",
            "Batch item 1 needs `event` as a string, not null.",
        )
        assert said[2][:3] == ("POST", "/v1/nowhere", "t-1")
        assert all(r["at"].endswith("Z") for r in listed["refused"])
        assert running.inspect("summary")["events"] == 1  # the good track, once
        # support staff asking after the page's id learn why it is nowhere
        status, answer = running.call("GET", "/_cio-anon/explain/p-1")
        assert status == 404
        said = "No event has the id 'p-1': serve refused the call sent with it, at "
        error = answer["error"]
        assert error.startswith(said) and "(POST /v1/p): The page " in error
        assert error.endswith(" as well). A call that was refused is never stored.")
        status, page = running.call("GET", "/event/p-1", headers={"Accept": "text/html"})
        assert status == 404 and "serve refused the call sent with it" in page
        assert running.call("POST", "/_cio-anon/reset")[0] == 200
        assert running.inspect("refused") == {"count": 0, "refused": []}


def test_quiet_means_no_access_log(tmp_path: Path) -> None:
    port, process = _serve_process(tmp_path, "--quiet")
    running = client_for(port)
    running.call("POST", "/api/v1/events", {"anonymous_id": "a", "name": "x"})
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=15)
    assert process.returncode == 0 and stderr == ""


@pytest.mark.slow
@pytest.mark.parametrize("unbuffered", ["", "1"], ids=["buffered", "PYTHONUNBUFFERED"])
def test_a_stderr_nobody_reads_neither_blocks_requests_nor_the_stop(
    tmp_path: Path, unbuffered: str
) -> None:
    """With Python's stderr buffered (as it is unless `PYTHONUNBUFFERED` says otherwise)
    the stop waited for ever: the interpreter's flush at exit waited on the stream's
    lock, which the log's thread held while the full pipe blocked it."""
    read_end, write_end = os.pipe()  # never read: fills after ~64 KB of log
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    env |= {"PYTHONUNBUFFERED": unbuffered} if unbuffered else {}
    port, process = _serve_process(tmp_path, stderr=write_end, env=env)
    try:
        running = client_for(port)
        started = time.perf_counter()
        for index in range(3000):
            status, _ = running.call(
                "POST",
                "/api/v1/events",
                {"anonymous_id": "a", "name": "x", "id": f"e{index}"},
            )
            assert status == 200
        assert time.perf_counter() - started < 60
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
    finally:
        if process.poll() is None:
            process.kill()
        os.close(read_end)
        os.close(write_end)


# -- 8. the small ones ----------------------------------------------------------------


def test_non_ascii_credentials_are_a_401(guarded: Running) -> None:
    for header in (
        "Basic " + base64.b64encode("sité:clé".encode()).decode(),
        "Basic " + base64.b64encode(b"\xff\xfe:\xff").decode(),
        "Bearer jeton-\u00e9",
        "Basic !!!",
    ):
        request = (
            b"GET /_cio-anon/summary HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: "
            + header.encode("utf-8")
            + b"\r\n\r\n"
        )
        assert status_of(raw(guarded.port, request)) == 401, header


def test_the_record_file_is_private_and_not_a_symlink(tmp_path: Path) -> None:
    record = tmp_path / "calls.ndjson"
    running, instance = start(tmp_path, record=record)
    instance.shutdown()
    assert record.stat().st_mode & 0o777 == 0o600
    target = tmp_path / "elsewhere.ndjson"
    target.write_text("")
    link = tmp_path / "link.ndjson"
    link.symlink_to(target)
    with pytest.raises(Exception, match="symbolic link"):
        server.Server(server.ServerConfig(db=tmp_path / "l.db", port=0, record=link))
    assert not (tmp_path / "l.db").exists()
    # a name saying gzip is refused: what is written there is lines, which zcat cannot read
    zipped = tmp_path / "calls.ndjson.gz"
    with pytest.raises(Exception, match="named as gzipped"):
        server.Server(server.ServerConfig(db=tmp_path / "z.db", port=0, record=zipped))
    assert not zipped.exists() and not (tmp_path / "z.db").exists()


def test_failed_starts_leave_no_workspace(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "calls.ndjson"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "cio_anon",
            "serve",
            "--port",
            "0",
            "--db",
            str(tmp_path / "a.db"),
            "--record",
            str(missing),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert (
        done.returncode == 1 and "no such folder" in done.stderr and "Traceback" not in done.stderr
    )
    assert not (tmp_path / "a.db").exists()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            serve_argv(port, tmp_path / "b.db"),
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert done.returncode == 1 and "Cannot listen" in done.stderr
    assert not (tmp_path / "b.db").exists()


def test_ipv6_loopback(tmp_path: Path) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 here")
    try:
        running, instance = start(tmp_path, host="::1")
    except Exception as error:  # noqa: BLE001
        pytest.skip(f"IPv6 loopback unavailable: {error}")
    try:
        assert running.url.startswith("http://[::1]:")
        assert running.call("POST", "/api/v1/events", {"anonymous_id": "a", "name": "x"})[0] == 200
        assert summary(running)["events"] == 1
    finally:
        instance.shutdown()


def test_a_strict_pipelines_batch_is_all_or_nothing(tmp_path: Path) -> None:
    with serving(tmp_path) as running:
        batch = {
            "batch": [
                {"type": "track", "anonymousId": "a", "event": "ok", "messageId": "b1"},
                {"type": "track", "event": "no identity", "messageId": "b2"},
            ]
        }
        status, body = running.call("POST", "/v1/batch", batch, headers={"X-Strict-Mode": "1"})
        assert status == 400 and [e["batch_index"] for e in body["errors"]] == [1]
        assert summary(running)["events"] == 0
        # permissive (the default): the valid items apply, the answer is 200
        assert running.call("POST", "/v1/batch", batch)[0] == 200
        assert summary(running)["events"] == 1


@pytest.mark.parametrize("given", [["--site-id", "s"], ["--api-key", "k"]])
def test_half_of_the_track_apis_credentials_is_a_usage_error(cli: Any, given: list[str]) -> None:
    """`--site-id` alone used to leave every route open with no word."""
    refused = cli("serve", "--port", "0", *given, code=2)
    assert "--site-id and --api-key go together" in refused.output
