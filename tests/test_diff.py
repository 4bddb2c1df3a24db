"""`cio-anon diff`: two runs of one journey, matched across fresh ids, judged by who the
events belong to."""

from __future__ import annotations

import gzip
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest

from cio_anon.diff.outcomes import timeline

Cli = Callable[..., Any]
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from make_journey import journey  # noqa: E402


def _write(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_two_runs_with_fresh_ids_do_not_differ(cli: Cli, tmp_path: Path) -> None:
    base = _write(tmp_path / "main.ndjson", journey(1, identify_before_checkout=120))
    new = _write(tmp_path / "branch.ndjson", journey(2, identify_before_checkout=120))
    found = cli("diff", str(base), str(new), "--json")
    assert found["differs"] is False and found["matched_by"] == "journey"
    assert found["summary"]["unchanged"] == found["summary"]["events"]["new"] == 5
    assert (found["changed"], found["added"], found["missing"]) == ([], [], [])
    text = cli("diff", str(base), str(new), code=0).stdout
    assert "No event changed hands or rules" in text


def test_an_identify_moved_past_the_window_names_the_event_that_changed(
    cli: Cli, tmp_path: Path
) -> None:
    base = _write(tmp_path / "main.ndjson", journey(1, identify_before_checkout=120))
    new = _write(tmp_path / "branch.ndjson", journey(2, identify_before_checkout=360))
    found = json.loads(cli("diff", str(base), str(new), "--json", code=1).stdout)
    assert found["differs"] is True and found["summary"]["unchanged"] == 4
    (change,) = found["changed"]
    assert change["key"] == "anon#1 / Checkout Started / 1"
    assert change["what"] == ["person", "status", "rule", "campaign"]
    before, after = change["before"], change["after"]
    assert (before["person"], before["rule"], before["can_trigger_campaigns"]) == (
        "user#1",
        "merged_in_window",
        True,
    )
    assert (after["person"], after["status"], after["rule"]) == (None, "anonymous", "window_closed")
    # the facts explain says, with the ids in the run's own labels
    assert after["facts"]["anonymous_id"] == "anon#1"
    assert after["facts"]["received_at"] - after["facts"]["assigned_at"] == 360
    assert after["timeline"] == "received 6m after the identify, past the 5m window"
    assert before["timeline"] == "received 2m after the identify, inside the 5m window"
    assert after["reason"].startswith("It arrived after the 5-minute window")
    assert found["summary"]["rules"] == {
        "merged_in_window": {"base": 1, "new": 0},
        "window_closed": {"base": 0, "new": 1},
    }
    assert found["summary"]["people"] == {"user#1": {"base": 5, "new": 4}}
    assert after["source"].endswith("branch.ndjson:5")


def test_an_event_sent_with_its_identify_in_one_request_says_so(cli: Cli, tmp_path: Path) -> None:
    # An app identifies, then tracks; its SDK sends both in one batch or in two.
    def run(anon: str, together: bool) -> list[dict[str, Any]]:
        calls = [
            {"type": "identify", "userId": "u-" + anon, "anonymousId": anon, "messageId": "i"},
            {"type": "track", "anonymousId": anon, "event": "Checkout Started", "messageId": "c"},
        ]
        for call in calls:
            call["messageId"] += anon
            call["timestamp"] = "2026-12-01T10:00:00Z"
        times = ["2026-12-01T10:00:01Z", "2026-12-01T10:00:02Z"]
        batches = [calls] if together else [[call] for call in calls]
        return [
            {"at": at, "method": "POST", "path": "/v1/batch", "body": {"batch": batch}}
            for at, batch in zip(times, batches, strict=False)
        ]

    base = _write(tmp_path / "main.ndjson", run("a1", together=False))
    new = _write(tmp_path / "branch.ndjson", run("b2", together=True))
    found = json.loads(cli("diff", str(base), str(new), "--json", code=1).stdout)
    (change,) = found["changed"]
    before, after = change["before"], change["after"]
    assert (before["rule"], after["rule"]) == ("merged_in_window", "merged_on_identify")
    assert before["timeline"] == "received 1s after the identify, inside the 5m window"
    assert after["timeline"] == "received with the identify, at the same moment"
    assert after["reason"].startswith("It was received at the same moment as the identify")


@pytest.mark.parametrize(
    ("after_identify", "said"),
    [
        (0.0, "received with the identify, at the same moment"),
        (0.0005, "received under 1s after the identify, inside the 5m window"),
        (-0.3, "identified under 1s after this event was received"),
        (42.0, "received 42s after the identify, inside the 5m window"),
        (301.0, "received 5m after the identify, past the 5m window"),
        (-7200.0, "identified 2h 0m after this event was received"),
    ],
)
def test_the_timeline_says_how_far_apart_in_words(after_identify: float, said: str) -> None:
    # a server receives one session's batches milliseconds apart
    identified = datetime(2026, 12, 1, 10, tzinfo=UTC)
    received = identified + timedelta(seconds=after_identify)
    assert timeline({"received_at": received, "assigned_at": identified}) == said


def test_a_checkout_moved_before_the_login_is_a_change_as_a_browser_sends_it(
    cli: Cli, tmp_path: Path
) -> None:
    # A browser SDK sends the anonymous id with every call, the userId too once the
    # visitor logged in: a checkout after the login is the person's own, one before it
    # merges at the login. The same journey either way, so a change, not added and missing.
    def run(anon: str, checkout_first: bool) -> list[dict[str, Any]]:
        at = iter(range(1772000000, 1772000100, 10))
        login = {"type": "identify", "userId": f"u-{anon}", "anonymousId": anon}
        checkout = {"type": "track", "event": "Checkout Started", "anonymousId": anon}
        calls = [{"type": "track", "event": "Product Viewed", "anonymousId": anon}]
        calls += (
            [checkout, login]
            if checkout_first
            else [login, {**checkout, "userId": login["userId"]}]
        )
        return [
            {**call, "messageId": f"{anon}-{n}", "receivedAt": next(at)}
            for n, call in enumerate(calls)
        ]

    base = _write(tmp_path / "main.ndjson", run("a1", checkout_first=False))
    new = _write(tmp_path / "branch.ndjson", run("b2", checkout_first=True))
    found = json.loads(cli("diff", str(base), str(new), "--json", code=1).stdout)
    assert (found["added"], found["missing"]) == ([], [])
    (change,) = found["changed"]
    assert change["key"] == "anon#1 / Checkout Started / 1"
    assert (change["before"]["rule"], change["after"]["rule"]) == (
        "campaign_eligible",
        "merged_on_identify",
    )
    assert change["before"]["person"] == change["after"]["person"] == "user#1"


def test_ci_formats_follow_the_exit_code(cli: Cli, tmp_path: Path) -> None:
    base = _write(tmp_path / "main.ndjson", journey(1, identify_before_checkout=120))
    new = _write(tmp_path / "branch.ndjson", journey(2, identify_before_checkout=360))
    junit = cli("diff", str(base), str(new), "--format", "junit", code=1).stdout
    root = ElementTree.fromstring(junit.split("?>", 1)[1])
    (suite,) = root
    assert (suite.get("tests"), suite.get("failures")) == ("5", "1")
    failed = [case for case in suite if case.find("failure") is not None]
    assert [case.get("name") for case in failed] == ["anon#1 / Checkout Started / 1"]
    assert "merged_in_window" in (failed[0].find("failure").text or "")  # type: ignore[union-attr]
    (annotation,) = cli(
        "diff", str(base), str(new), "--format", "github", code=1
    ).stdout.splitlines()
    assert annotation.startswith(f"::error file={new},line=5,title=identity changed::")
    same = _write(tmp_path / "again.ndjson", journey(3, identify_before_checkout=120))
    clean = cli("diff", str(base), str(same), "--format", "junit", code=0).stdout
    assert 'failures="0"' in clean
    assert cli("diff", str(base), str(same), "--format", "github", code=0).stdout == ""


def test_accepted_outcomes_are_the_base_a_repository_keeps(cli: Cli, tmp_path: Path) -> None:
    recorded = _write(tmp_path / "main.ndjson", journey(1, identify_before_checkout=120))
    expected = tmp_path / "identity-outcomes.json"
    done = cli("diff", str(recorded), str(recorded), "--accept", str(expected), code=0)
    assert "5 outcomes written" in done.stderr
    kept = json.loads(expected.read_text())
    assert (kept["format"], kept["version"], len(kept["events"])) == ("cio-anon outcomes", 1, 5)
    # kept in the team's repository: one value a line, so a review's diff shows what moved
    lines = [line.strip() for line in expected.read_text().splitlines()]
    assert '"rule": "merged_in_window",' in lines
    fresh = _write(tmp_path / "pr-1.ndjson", journey(7, identify_before_checkout=120))
    assert cli("diff", str(expected), str(fresh), "--json")["differs"] is False
    moved = _write(tmp_path / "pr-2.ndjson", journey(8, identify_before_checkout=360))
    changed = json.loads(cli("diff", str(expected), str(moved), "--json", code=1).stdout)
    assert len(changed["changed"]) == 1
    # accepting the change: exit 0, and the file now expects it
    cli("diff", str(expected), str(moved), "--accept", str(expected), code=0)
    assert cli("diff", str(expected), str(moved), "--json")["differs"] is False


def _browsed(seed: int, origin: str) -> list[dict[str, Any]]:
    """The journey as a browser SDK sends it on a site at `origin`: three pages carrying
    their URL (Customer.io names a page's event by it), then the rest."""
    records = journey(seed, identify_before_checkout=120)
    home = records[0]
    pages = [
        {**home, "messageId": f"{home['messageId']}-{n}", "properties": {"url": origin + path}}
        for n, path in enumerate(["/", "/products/tee?ref=mail", "/cart"])
    ]
    return pages + records[1:]


def test_pages_of_one_journey_on_another_host_are_the_same_pages(cli: Cli, tmp_path: Path) -> None:
    """A branch's run against a preview deploy, or a dev server on a port of its own:
    its pages are matched by the URL's path."""
    base = _write(tmp_path / "main.ndjson", _browsed(1, "http://localhost:3000"))
    new = _write(tmp_path / "branch.ndjson", _browsed(2, "https://shop-git-branch.example.app"))
    found = cli("diff", str(base), str(new), "--json")
    assert (found["added"], found["missing"], found["differs"]) == ([], [], False)
    assert found["summary"]["unchanged"] == 7
    expected = tmp_path / "outcomes.json"
    cli("diff", str(base), str(base), "--accept", str(expected), code=0)
    kept = json.loads(expected.read_text())
    keys = [event["key"] for event in kept["events"]]
    assert keys[:3] == ["anon#1 / / / 1", "anon#1 / /products/tee / 1", "anon#1 / /cart / 1"]
    for event in kept["events"]:  # as a file written before pages were matched by path
        event["key"] = event["key"].replace(" / /", " / http://localhost:3000/")
    expected.write_text(json.dumps(kept))
    again = cli("diff", str(expected), str(new), "--json")
    assert (again["added"], again["missing"], again["differs"]) == ([], [], False)


def test_a_replayed_fixture_is_matched_by_its_message_ids(cli: Cli, tmp_path: Path) -> None:
    shopper = ROOT / "fixtures" / "shopper.ndjson"
    found = cli("diff", str(shopper), str(shopper), "--json")
    assert (found["matched_by"], found["differs"]) == ("message id", False)
    assert found["summary"]["unchanged"] == found["summary"]["events"]["base"] > 0
    # one event dropped from the new run is missing, and does not fail the run
    lines = shopper.read_text().splitlines()
    fewer = tmp_path / "fewer.ndjson"
    fewer.write_text("\n".join(line for line in lines if '"m-0003"' not in line) + "\n")
    dropped = cli("diff", str(shopper), str(fewer), "--json")
    assert [o["event_id"] for o in dropped["missing"]] == ["m-0003"]
    assert dropped["differs"] is False


def test_the_html_page_shows_both_sides(cli: Cli, tmp_path: Path) -> None:
    base = _write(tmp_path / "main.ndjson", journey(1, identify_before_checkout=120))
    new = _write(tmp_path / "branch.ndjson", journey(2, identify_before_checkout=360))
    page = tmp_path / "diff.html"
    cli("diff", str(base), str(new), "--html", str(page), code=1)
    text = page.read_text()
    assert "anon#1 / Checkout Started / 1" in text
    assert text.index("merged_in_window") < text.index("window_closed")


def test_what_cannot_be_read_is_one_sentence_and_exit_2(cli: Cli, tmp_path: Path) -> None:
    base = _write(tmp_path / "main.ndjson", journey(1, identify_before_checkout=120))
    missing = cli("diff", str(base), str(tmp_path / "nowhere.ndjson"), code=2)
    assert (
        missing.stderr.strip() == f"Error: {tmp_path / 'nowhere.ndjson'}: no such file or folder."
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "No recordings in" in cli("diff", str(base), str(empty), code=2).stderr
    assert "Traceback" not in missing.stderr
    outcomes = tmp_path / "outcomes.json"
    cli("diff", str(base), str(base), "--accept", str(outcomes), code=0)
    kept = json.loads(outcomes.read_text())
    kept["events"][0]["name"] = 5
    outcomes.write_text(json.dumps(kept))
    damaged = cli("diff", str(outcomes), str(base), code=2).stderr
    assert damaged.startswith(f"Error: {outcomes}: a damaged outcomes file (an event's journey")


def test_events_in_one_run_only_are_counted_past_the_first_twenty(cli: Cli, tmp_path: Path) -> None:
    base = _write(tmp_path / "main.ndjson", journey(1, identify_before_checkout=120))
    extra = [
        {"type": "track", "anonymousId": f"extra-{n}", "event": "Banner Seen",
         "messageId": f"extra-{n}", "timestamp": 1772000000, "receivedAt": 1772000000}
        for n in range(25)
    ]  # fmt: skip
    new = _write(tmp_path / "branch.ndjson", journey(2, identify_before_checkout=120) + extra)
    text = " ".join(cli("diff", str(base), str(new), code=0).stdout.split())
    assert "Only in the new run (25): anon#2 / Banner Seen / 1, " in text
    assert "anon#21 / Banner Seen / 1, and 5 more (--json lists every one)" in text
    assert "anon#22 / Banner Seen" not in text
    assert len(cli("diff", str(base), str(new), "--json")["added"]) == 25


def test_a_gzipped_recording_is_read_where_it_lies(cli: Cli, tmp_path: Path) -> None:
    base = _write(tmp_path / "main.ndjson", journey(1, identify_before_checkout=120))
    plain = _write(tmp_path / "branch.ndjson", journey(2, identify_before_checkout=360))
    packed = tmp_path / "branch.ndjson.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    found = json.loads(cli("diff", str(base), str(packed), "--json", code=1).stdout)
    (change,) = found["changed"]
    # the event's source is the recording a user has, not a copy unpacked and deleted
    assert change["after"]["source"] == f"{packed}:5"
    as_plain = json.loads(cli("diff", str(base), str(plain), "--json", code=1).stdout)
    assert as_plain["summary"] == found["summary"]


def test_a_damaged_recording_is_refused_not_compared(cli: Cli, tmp_path: Path) -> None:
    # what a damaged recording lost would only be missing events, which pass a diff
    base = _write(tmp_path / "main.ndjson", journey(1, identify_before_checkout=120))
    whole = _write(tmp_path / "whole.ndjson", journey(2, identify_before_checkout=120))
    cut_gzip = tmp_path / "cut.ndjson.gz"
    cut_gzip.write_bytes(gzip.compress(whole.read_bytes())[:-20])
    refused = cli("diff", str(base), str(cut_gzip), code=2)
    assert refused.stderr.startswith(f"Error: {cut_gzip}: cannot be read after line ")
    assert refused.stderr.strip().endswith("; diff compares whole recordings.")
    lines = whole.read_text().splitlines(keepends=True)
    cut = tmp_path / "cut.ndjson"
    cut.write_text("".join(lines[:-1]) + lines[-1][:30])
    refused = cli("diff", str(base), str(cut), code=2)
    assert refused.stderr.startswith(f"Error: {cut}:{len(lines)}: not valid JSON (")
    assert "Traceback" not in refused.stderr
    # a call Customer.io refuses is left out, as replay --keep-going leaves it, and said
    nobody = [
        {"type": "track", "event": "Orphan", "messageId": f"x{n}", "timestamp": 1772000000}
        for n in range(7)
    ]
    kept = _write(tmp_path / "kept.ndjson", [*journey(2, identify_before_checkout=120), *nobody])
    found = cli("diff", str(base), str(kept), "--json")
    assert found["differs"] is False and found["left_out"]["base"] == []
    assert len(found["left_out"]["new"]) == 7
    said = cli("diff", str(base), str(kept), code=0).stderr.splitlines()
    first = len(journey(2, identify_before_checkout=120)) + 1
    assert said == [
        *(
            f"note: left out of the new run: {kept}:{line}: The message needs a userId or "
            "an anonymousId."
            for line in range(first, first + 5)
        ),
        "note: 2 more calls left out of the new run (`cio-anon replay --keep-going` lists "
        "every one)",
    ]


def test_what_serve_refused_when_recording_is_left_out_and_said(cli: Cli, tmp_path: Path) -> None:
    base = _write(tmp_path / "main.ndjson", journey(1, identify_before_checkout=120))
    page = {"type": "page", "anonymousId": "a-x", "properties": {"url": "https://x.io/"}}
    refused = {
        "at": "2026-03-01T10:00:00Z",
        "method": "POST",
        "path": "/v1/batch",
        "body": {"batch": [page]},
        "refused": "batch item 3: refused by the server",
    }
    new = _write(tmp_path / "new.ndjson", [*journey(2, identify_before_checkout=120), refused])
    found = cli("diff", str(base), str(new), "--json")
    line = len(journey(2, identify_before_checkout=120)) + 1
    assert found["left_out"]["new"] == [f"{new}:{line}: batch item 3: refused by the server"]
    assert found["differs"] is False
