"""Faults, privacy and a faithful record: a lock, a full disk, a file that is not a
workspace, what `delete` and `purge` leave behind — each a sentence, nothing half done."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from tests.conftest import T0
from tests.test_origins import ask, post
from tests.test_serve import serving


def test_reads_do_not_wait_behind_a_write_that_waits_for_a_lock(tmp_path: Path) -> None:
    import threading

    with serving(tmp_path, fixed_now=T0, lock_seconds=5) as running:
        message = {"type": "track", "anonymousId": "a", "event": "E", "messageId": "w1"}
        assert post(running, "/v1/t", message)[0] == 200
        holder = sqlite3.connect(tmp_path / "served.db", isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        answers: list[int] = []
        write = threading.Thread(
            target=lambda: answers.append(post(running, "/v1/t", {**message, "messageId": "w2"})[0])
        )
        try:
            write.start()
            write.join(0.3)
            assert write.is_alive()  # the write waits for the lock...
            assert running.inspect("summary")["events"] == 1  # ...the read does not
            assert ask(running, "GET", "/people")[0] == 200
            assert write.is_alive()
        finally:
            holder.execute("ROLLBACK")
            holder.close()
            write.join(10)
        assert answers == [200] and running.inspect("summary")["events"] == 2


def test_a_command_that_meets_a_lock_says_so(cli: Any, tmp_path: Path, monkeypatch: Any) -> None:
    from cio_anon.store import base as workspace

    db = tmp_path / "locked.db"
    cli("track", "Viewed", "--anonymous-id", "a", "--db", str(db))
    monkeypatch.setattr(workspace, "BUSY_TIMEOUT_SECONDS", 0.2)
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        refused = cli("track", "Viewed", "--anonymous-id", "a", "--db", str(db), code=1)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert refused.stderr.strip() == (
        f"Error: The workspace {db} is busy: another process has held it for 0.2 s; nothing "
        "was changed. Try again when it is done."
    )


def test_a_sqlite_file_that_is_not_a_workspace_is_left_byte_for_byte(
    cli: Any, tmp_path: Path
) -> None:
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE notes (body TEXT)")
        conn.execute("INSERT INTO notes VALUES ('mine')")
    conn.close()
    before = other.read_bytes()
    refused = cli("track", "Viewed", "--anonymous-id", "a", "--db", str(other), code=1)
    assert "is a SQLite file but not a cio-anon workspace" in refused.stderr
    assert other.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.db"]


def _cli_process(*args: str, file_limit: int | None = None) -> Any:
    """`cio-anon ARGS` in a process of its own, optionally under `ulimit -f`."""
    import resource
    import subprocess
    import sys

    def limit() -> None:
        if file_limit is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_limit, resource.RLIM_INFINITY))

    return subprocess.run(
        [sys.executable, "-m", "cio_anon", *args],
        capture_output=True,
        text=True,
        preexec_fn=limit,
        timeout=120,
    )


def _fixture(path: Path, count: int) -> Path:
    import json

    lines = [
        json.dumps(
            {
                "type": "track",
                "anonymousId": f"a-{n % 50}",
                "event": "Viewed",
                "messageId": f"m-{n}",
                "properties": {"pad": "x" * 200},
                "receivedAt": "2026-03-01T09:00:00Z",
            }
        )
        for n in range(count)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_file_size_limit_is_a_sentence_and_applies_nothing(tmp_path: Path) -> None:
    db = tmp_path / "ws.db"
    at = ("--at", "2026-03-02T00:00:00Z")
    # creating a workspace under the limit: the sentence names it (not a temp file)
    made = _cli_process(
        "track", "Viewed", "--anonymous-id", "a", "--db", str(db), *at, file_limit=2048
    )
    assert made.returncode == 1, made.stderr
    assert "Traceback" not in made.stderr and ".new" not in made.stderr
    assert f"Cannot create the workspace {db}" in made.stderr or f"workspace {db}" in made.stderr
    assert "not a SQLite database" not in made.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    # a replay that outgrows the limit: a sentence, nothing applied, usable afterwards
    assert (
        _cli_process("track", "First", "--anonymous-id", "a", "--db", str(db), *at).returncode == 0
    )
    size = db.stat().st_size
    fixture = _fixture(tmp_path / "big.ndjson", 3000)
    full = _cli_process("replay", str(fixture), "--db", str(db), *at, file_limit=size + 4096)
    assert full.returncode == 1, (full.stdout, full.stderr)
    assert "Traceback" not in full.stderr
    assert "the disk is full, or a file-size limit was reached" in full.stderr or (
        "a file-size limit reached" in full.stderr
    ), full.stderr
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == 1
    conn.close()
    again = _cli_process("replay", str(fixture), "--db", str(db), *at)
    assert again.returncode == 0, again.stderr
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == 3001
    conn.close()


def test_a_damaged_workspace_is_a_sentence(cli: Any, tmp_path: Path) -> None:
    db = tmp_path / "ws.db"
    cli("track", "Viewed", "--anonymous-id", "a", "--db", str(db))
    with sqlite3.connect(db) as conn:
        page = conn.execute("PRAGMA page_size").fetchone()[0]
        root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'events'").fetchone()[
            0
        ]
    conn.close()
    data = bytearray(db.read_bytes())
    start = (root - 1) * page
    data[start : start + page] = b"\xff" * page  # the events table's first page
    db.write_bytes(bytes(data))
    damaged = cli("log", "--db", str(db), code=1)
    assert "is damaged: recover what it holds with `sqlite3 FILE .recover`" in damaged.stderr


def test_delete_leaves_nothing_of_the_person_in_the_file(cli: Any, tmp_path: Path) -> None:
    """Every value the person ever had is gone from the database file and its WAL, and
    from what `export` writes: their events and attributes, the invites addressed to
    them, a form they sent before they were a person."""
    import json

    db = tmp_path / "ws.db"
    at = ("--db", str(db), "--at", "2026-03-01T10:00:00Z")
    form = tmp_path / "form.ndjson"
    form.write_text(
        json.dumps(
            {
                "at": "2026-03-01T09:00:00Z",
                "method": "POST",
                "path": "/api/v1/forms/newsletter/submit",
                "body": {"data": {"email": "Zed@Example.com", "topic": "zed-topic-77"}},
            }
        )
        + "\n"
    )
    cli("replay", str(form), *at)
    cli("track", "https://x.io/invite", "--recipient", "zed@example.com", "--type", "page", *at)
    cli("track", "Viewed", "--anonymous-id", "zed-anon-1", "--data", '{"n": "zed-note-1"}', *at)
    cli(
        "identify",
        "zed-id-9",
        "--anonymous-id",
        "zed-anon-1",
        "--attr",
        "email=zed@example.com",
        "--attr",
        "first_name=Zedekiah",
        *at,
    )
    cli("track", "Paid", "--person", "zed-id-9", "--data", '{"n": "zed-note-2"}', *at)
    cli("track", "Kept", "--anonymous-id", "someone-else", *at)  # another's, stays
    cli("delete", "zed-id-9", *at)
    cli("log", *at)  # a later command: the WAL checkpointed as it is used
    exported = cli("export", *at).stdout
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("ws.db*")).lower()
    for value in ("zed@example.com", "zedekiah", "zed-note-1", "zed-note-2", "zed-topic-77"):
        assert value.encode() not in raw, value
        assert value not in exported.lower(), value
    assert "someone-else" in exported


def test_purge_keeps_only_what_deduplication_needs(cli: Any, tmp_path: Path) -> None:
    """A purged event's name, data and anonymous id are gone from the file, the WAL and
    `export`; its id still refuses a copy, and `explain` still says why it is gone."""
    db = tmp_path / "ws.db"
    then = ("--db", str(db), "--at", "2026-01-01T00:00:00Z")
    later = ("--db", str(db), "--at", "2026-03-01T00:00:00Z")
    secret = ("--data", '{"card": "purge-me-4242"}', "--event-id", "ev-old")
    cli("track", "Secret Viewed", "--anonymous-id", "anon-purge-1", *secret, *then)
    cli("track", "Kept", "--anonymous-id", "anon-kept", "--event-id", "ev-new", *later)
    cli("purge", *later)
    cli("log", *later)
    exported = cli("export", *later).stdout
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("ws.db*"))
    for value in ("purge-me-4242", "Secret Viewed", "anon-purge-1"):
        assert value.encode() not in raw, value
        assert value not in exported, value
    assert "ev-old" in exported and "anon-kept" in exported
    explained = cli("explain", "ev-old", "--json", *later)
    assert explained["status"] == "purged" and explained["rule"] == "retention_expired"
    again = cli("track", "Secret Viewed", "--anonymous-id", "x", *secret, *later)
    assert "duplicate" in again.stderr
    # the export replays to the same workspace: the stand-in is placed and purged again
    copy = tmp_path / "copy.db"
    (tmp_path / "export.ndjson").write_text(exported)
    cli("replay", str(tmp_path / "export.ndjson"), "--db", str(copy), "--at", later[3])
    assert cli("explain", "ev-old", "--json", "--db", str(copy), "--at", later[3]) == explained


def test_connections_that_never_finish_their_headers_are_closed(tmp_path: Path) -> None:
    """Slots held by clients that open connections and never finish a request's headers
    are given back: real clients are served again once the header time limit passes."""
    import socket
    import time

    from tests.test_serve_probes import raw, status_of

    with serving(tmp_path, fixed_now=T0, connections=16, header_seconds=0.5) as running:
        idle = []
        for _ in range(40):
            sock = socket.create_connection(("127.0.0.1", running.port))
            sock.sendall(b"GET /_cio-anon/summary HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            idle.append(sock)
        time.sleep(1.5)
        answers = []
        for sock in idle:
            sock.settimeout(2)
            try:
                answers.append(sock.recv(1024))
            except OSError:
                answers.append(b"?")
            sock.close()
        assert all(a.startswith(b"HTTP/1.1 408") or a == b"" for a in answers), answers[:3]
        message = b'{"anonymous_id": "a", "name": "x"}'
        request = (
            b"POST /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json"
            b"\r\nContent-Length: " + str(len(message)).encode() + b"\r\n\r\n" + message
        )
        assert status_of(raw(running.port, request)) == 200


def test_a_body_is_read_no_further_than_the_route_accepts(tmp_path: Path) -> None:
    """A chunked body past the 500 KB a batch may be is refused when it passes it, not
    buffered to the 5 MB ceiling; a declared one before a byte of it is read."""
    import socket

    from tests.test_serve_probes import status_of

    with serving(tmp_path, fixed_now=T0) as running:
        with socket.create_connection(("127.0.0.1", running.port), timeout=5) as sock:
            sock.sendall(
                b"POST /v1/batch HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n"
                b"Content-Type: application/json\r\n\r\n"
            )
            chunk = b"x" * 65536
            answer = b""
            for _ in range(40):  # 2.5 MB offered; the answer comes after about 500 KB
                try:
                    sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                except OSError:
                    break
                sock.settimeout(0.05)
                try:
                    answer = sock.recv(4096)
                except TimeoutError:
                    continue
                if answer:
                    break
        assert status_of(answer) == 400 and b"at most 500 KB" in answer, answer[:200]
        declared = b"POST /v1/track HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 40000\r\n\r\n{"
        from tests.test_serve_probes import raw

        refused = raw(running.port, declared)
        assert status_of(refused) == 400 and b"at most 32 KB" in refused
        assert running.inspect("summary")["events"] == 0


def test_what_cannot_be_kept_exactly_is_refused_not_folded(cli: Any, tmp_path: Path) -> None:
    """An integer beyond 64 bits is refused (it became a float); path bytes that are not
    UTF-8 are refused (`%ff` and `%fe` became the same person); a path no route matches
    still answers JSON; the pages say what a browser may do with them."""
    import json

    refused = cli(
        "track",
        "Viewed",
        "--anonymous-id",
        "a",
        "--data",
        '{"n": 18446744073709551616}',
        "--db",
        str(tmp_path / "cli.db"),
        code=1,
    )
    assert "beyond 64 bits (send it as a string)" in refused.stderr
    kept = cli(
        "track",
        "Viewed",
        "--anonymous-id",
        "a",
        "--data",
        '{"n": 18446744073709551615}',
        "--event-id",
        "big",
        "--db",
        str(tmp_path / "cli.db"),
        "--json",
    )
    assert kept["stored"]
    log = cli("log", "--json", "--db", str(tmp_path / "cli.db"))
    assert [row["data"] for row in log["anonymous"]] == [{"n": 18446744073709551615}]
    with serving(tmp_path, fixed_now=T0) as running:
        status, answer = running.call("PUT", "/api/v1/customers/%ff", {"plan": "a"})
        assert status == 400 and "not UTF-8" in json.dumps(answer)
        assert running.call("PUT", "/api/v1/customers/%fe", {"plan": "b"})[0] == 400
        assert running.inspect("summary")["people"] == 0
        status, answer = running.call(
            "POST",
            "/api/v1/events",
            raw=b'{"anonymous_id": "a", "name": "x", "data": {"n": 99999999999999999999}}',
        )
        assert status == 400 and "beyond 64 bits" in json.dumps(answer)
        status, body, _ = ask(running, "GET", "/api/v1/customers/a%0Ab")
        assert status == 404 and json.loads(body)["meta"]["errors"]
        status, _, headers = ask(running, "GET", "/people")
        assert status == 200 and headers["X-Frame-Options"] == "DENY"
        assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
        assert headers["X-Content-Type-Options"] == "nosniff"
