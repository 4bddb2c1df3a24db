"""The documented rules in their corners: scenarios written from Customer.io's pages and
the spec, each one a wrong answer a developer or a support person would act on."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cio_anon import service
from cio_anon.errors import RuleViolation
from cio_anon.rules import Rule
from tests.conftest import Space, t

Cli = Callable[..., Any]
AT = ("--at", "2026-03-01T09:00:00Z")


def test_a_deleted_person_does_not_free_their_anonymous_id(space: Space) -> None:
    space.track(t(), anonymous_id="A", event_id="before")
    space.identify(t(minutes=1), "dan", anonymous_id="A")
    deleted = space.run(t(minutes=2), service.delete_person, identifier="dan")
    assert deleted.assignments_kept == 1  # naming nobody
    space.track(t(minutes=3), anonymous_id="A", event_id="after")
    eve = space.identify(t(minutes=4), "eve", anonymous_id="A")
    assert eve.rule is Rule.ANONYMOUS_ID_TAKEN and eve.merged == []
    assert [w.rule for w in eve.warnings] == [Rule.ANONYMOUS_ID_TAKEN]
    assert "deleted" in eve.warnings[0].message
    profile = space.profile(t(minutes=4), "eve")
    assert profile.counts.total == 0 and profile.anonymous_ids == []
    # the event sent inside dan's window did not go anywhere: nothing merges into the deleted
    after = space.explain(t(minutes=4), "after")
    assert after.status == "anonymous" and after.decision.rule is Rule.ANONYMOUS
    assert "deleted" in after.decision.reason


def test_explain_reports_the_decision_taken_on_arrival(space: Space) -> None:
    space.identify(t(), "ann", anonymous_id="A")
    space.run(
        t(seconds=10), lambda ws, now: service.update_settings(ws, now, anonymous_merge=False)
    )
    arrived = space.track(t(minutes=1), anonymous_id="A", event_id="e1")
    assert arrived.rule is Rule.MERGE_DISABLED and arrived.status == "anonymous"
    space.run(t(minutes=2), lambda ws, now: service.update_settings(ws, now, anonymous_merge=True))
    explanation = space.explain(t(minutes=3), "e1")
    assert explanation.status == "anonymous"
    assert explanation.decision.rule is Rule.MERGE_DISABLED
    assert "turned off" in explanation.decision.reason
    assert explanation.decision.facts["received_at"] == t(minutes=1)
    # re-identifying warns with the rule the event was left with, not window_closed
    again = space.identify(t(minutes=10), "ann", anonymous_id="A")
    assert [w.rule for w in again.warnings] == [Rule.MERGE_DISABLED]


def test_an_identify_while_merging_is_off_keeps_its_decision(space: Space) -> None:
    space.run(t(), lambda ws, now: service.update_settings(ws, now, anonymous_merge=False))
    space.track(t(), anonymous_id="A", event_id="e1")
    space.identify(t(minutes=1), "ann", anonymous_id="A")
    space.run(t(minutes=2), lambda ws, now: service.update_settings(ws, now, anonymous_merge=True))
    # on again, nothing re-decided it: the identify with merging off left it so
    assert space.explain(t(minutes=3), "e1").decision.rule is Rule.MERGE_DISABLED


def test_invites_within_72_hours_can_trigger_campaigns(space: Space, cli: Cli) -> None:
    fresh = space.track(
        t(), "https://example.com/join", type="page", recipient="new@example.com", event_id="i1"
    )
    stale = space.track(
        t(),
        "Invited",
        data={"recipient": "old@example.com"},
        timestamp=t(hours=-73).isoformat(),
        event_id="i2",
    )
    assert (fresh.rule, fresh.can_trigger_campaigns) == (Rule.INVITE, True)
    assert stale.can_trigger_campaigns is False
    explanation = space.explain(t(), "i1")
    assert explanation.status == "invite" and explanation.campaign is not None
    assert explanation.campaign.rule is Rule.CAMPAIGN_ELIGIBLE
    cli("track", "Invited", "--recipient", "x@example.com", "--type", "page", *AT)
    (row,) = cli("log", "--tab", "anonymous", "--json", *AT)["anonymous"]
    assert (row["type"], row["sent_as"], row["can_trigger_campaigns"]) == ("invite", "page", True)


def test_traits_for_an_assigned_id_reach_the_person(space: Space, tmp_path: Path) -> None:
    fixture = tmp_path / "traits.ndjson"
    fixture.write_text(
        "\n".join(
            json.dumps(record)
            for record in (
                {"type": "identify", "userId": "u", "anonymousId": "A", "at": "2026-03-01T09:00Z"},
                {
                    "type": "identify",
                    "anonymousId": "A",
                    "traits": {"color": "teal", "plan": "pro"},
                    "at": "2026-03-01T09:10Z",
                },
            )
        )
    )
    from cio_anon.replay import replay_into

    assert replay_into(space.path, t(), [fixture]).ok
    person = space.profile(t(hours=1), "u").person
    assert person.attributes["color"] == "teal"
    page = space.read(t(hours=1), lambda ws: service.activity_log(ws, t(hours=1), person="u"))
    changes = [r.data["attribute"] for r in page.identified if r.type == "attribute_change"]
    assert {"color", "plan"} <= set(changes)
    # a later trait fills only what the person lacks
    space.identify(t(hours=2), "u", attributes={"plan": "free"})
    space.run(
        t(hours=3), service.set_anonymous_traits, anonymous_id="A", traits={"plan": "enterprise"}
    )
    assert space.profile(t(hours=3), "u").person.attributes["plan"] == "free"


def test_merge_people_keeps_the_was_anonymous_marker(space: Space, cli: Cli) -> None:
    space.track(t(), anonymous_id="phone-anon", event_id="anon-1")
    space.identify(t(minutes=1), "phone", anonymous_id="phone-anon")
    space.identify(t(minutes=2), "web")
    space.run(t(minutes=3), service.merge_people, primary="web", secondary="phone")
    page = space.read(t(minutes=3), lambda ws: service.activity_log(ws, t(minutes=3), person="web"))
    (row,) = [r for r in page.identified if r.event_id == "anon-1"]
    assert row.event is not None and row.event.was_anonymous
    from cio_anon.present import documents

    doc = documents.activity_json(row, t(minutes=3))
    assert (doc["previously_anonymous"], doc["provenance"]) == (True, "inherited")


def test_show_json_merges_are_activity_objects(cli: Cli) -> None:
    cli("track", "Viewed", "--anonymous-id", "a", "--event-id", "v", *AT)
    cli("identify", "ann", "--anonymous-id", "a", *AT)
    cli("identify", "bob", *AT)
    cli("merge", "ann", "bob", *AT)
    shown = cli("show", "ann", "--json", *AT)
    log = cli("log", "--person", "ann", "--tab", "identified", "--json", *AT)["identified"]
    assert len(shown["merges"]) == 2
    for item in shown["merges"]:
        assert item["person"]["id"] == "ann"
        (same,) = [row for row in log if row["type"] == item["type"]]
        assert set(item) == set(same) and item == same


def test_an_empty_or_null_anonymous_id_removes_the_attribute(space: Space, cli: Cli) -> None:
    cli("identify", "lou", "--anonymous-id", "L", *AT)
    removed = cli("identify", "lou", "--attrs", '{"anonymous_id": ""}', "--json", *AT)
    assert removed["attribute_changes"] == [{"attribute": "anonymous_id", "from": "L", "to": None}]
    shown = cli("show", "lou", "--json", *AT)
    assert "anonymous_id" not in shown["person"]["attributes"]
    assert [a["anonymous_id"] for a in shown["anonymous_ids"]] == ["L"]  # still assigned
    cli("identify", "kim", "--attrs", '{"anonymous_id": null, "nick": null}', *AT)
    assert cli("show", "kim", "--json", *AT)["person"]["attributes"] == {}


def test_an_empty_anonymous_id_in_a_track_v1_call_replays(cli: Cli, tmp_path: Path) -> None:
    fixture = tmp_path / "v1.ndjson"
    fixture.write_text(
        json.dumps(
            {
                "at": "2026-03-01T09:00:00Z",
                "method": "PUT",
                "path": "/api/v1/customers/lou",
                "body": {"anonymous_id": "", "plan": "pro"},
            }
        )
    )
    summary = cli("replay", str(fixture), "--json", *AT)
    assert summary["ok"] and summary["applied"] == 1
    assert cli("show", "lou", "--json", *AT)["person"]["attributes"] == {"plan": "pro"}


def test_a_refused_anonymous_id_is_not_the_second_persons(space: Space) -> None:
    space.track(t(), anonymous_id="A", event_id="early")
    space.identify(t(minutes=1), "p", anonymous_id="A")
    space.run(t(minutes=1), service.set_anonymous_traits, anonymous_id="A", traits={"x": 1})
    space.track(t(minutes=30), anonymous_id="A", event_id="late")
    assert space.identify(t(minutes=31), "q", anonymous_id="A").rule is Rule.ANONYMOUS_ID_TAKEN
    page = space.read(
        t(minutes=32),
        lambda ws: service.activity_log(ws, t(minutes=32), person="q", tab="anonymous"),
    )
    assert page.anonymous == []
    space.run(t(minutes=33), service.delete_person, identifier="q")
    assert space.read(t(minutes=33), lambda ws: ws.anonymous_traits("A")) == {"x": 1}
    # p's Anonymous tab does list the late event
    page = space.read(
        t(minutes=34),
        lambda ws: service.activity_log(ws, t(minutes=34), person="p", tab="anonymous"),
    )
    assert [r.event_id for r in page.anonymous or []] == ["late"]


def test_activities_moved_by_a_merge_name_the_secondary(cli: Cli) -> None:
    cli("identify", "web@example.com", *AT)
    cli("identify", "app-7", "--attr", "email=web@example.com", *AT)  # fails: taken
    cli("merge", "web@example.com", "app-7", *AT)
    rows = cli("log", "--person", "web@example.com", "--tab", "identified", "--json", *AT)
    rows = rows["identified"]
    creates = [r for r in rows if r["type"] == "profile_create"]
    assert sorted(json.dumps(r["merged_from"]) for r in creates) == sorted(
        [json.dumps(None), json.dumps({"cio_id": "00000002", "id": "app-7", "email": None})]
    )
    (failed,) = [r for r in rows if r["type"] == "failed_attribute_change"]
    assert failed["merged_from"]["id"] == "app-7"
    text = cli("log", "--person", "web@example.com", "--tab", "identified", *AT).stdout
    assert "from app-7" in text


def test_limits_are_measured_on_compact_json(space: Space) -> None:
    big = {f"k{i:03d}": i for i in range(95)}  # 941 bytes stored, 1,130 with ", " and ": "
    assert len(json.dumps(big, separators=(",", ":"))) <= 1000 < len(json.dumps(big))
    result = space.identify(t(), "ann", attributes={"map": big})
    assert [c.attribute for c in result.attribute_changes] == ["map"]
    bigger = {f"k{i:03d}": i for i in range(101)}
    stored = len(json.dumps(bigger, separators=(",", ":")))
    with pytest.raises(RuleViolation, match=f"is {stored} bytes"):
        space.identify(t(), "ann", attributes={"map": bigger})


def test_a_rejected_file_reports_all_its_records_and_the_line(cli: Cli, tmp_path: Path) -> None:
    fixture = tmp_path / "three.ndjson"
    fixture.write_text(
        '{"type": "track", "anonymousId": "a", "event": "x", "at": 1772355600}\n'
        '{"type": "track", "event": "no identity", "at": 1772355600}\n'
        '{"type": "track", "anonymousId": "a", "event": "y", "at": 1772355600}\n'
    )
    summary = cli("replay", str(fixture), "--json", code=None)
    assert summary.exit_code == 1
    doc = json.loads(summary.stdout)
    assert doc["records"] == 3 and doc["applied"] == 0
    assert doc["stopped_at"] == {str(fixture): 2}
    text = cli("replay", str(fixture), code=1).stderr
    assert f"rejected at line 2 (nothing applied): {fixture}" in text


def test_an_expect_record_about_an_event_reads_right(cli: Cli, tmp_path: Path) -> None:
    fixture = tmp_path / "expect.ndjson"
    fixture.write_text('{"op": "expect", "event": "e", "bogus": 1}\n')
    result = cli("replay", str(fixture), code=1)
    assert "An expect record about an event" in result.stderr
