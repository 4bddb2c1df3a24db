"""The operations on a real temp workspace, one rule code at a time."""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path

import pendulum
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cio_anon import service
from cio_anon.errors import InvalidInput, NotFound, RuleViolation, WorkspaceError
from cio_anon.rules import Rule
from cio_anon.store import Workspace
from cio_anon.store.migrations import SCHEMA_VERSION
from tests.conftest import T0, Space, t


def test_anonymous_event_merges_on_identify(space: Space) -> None:
    space.track(t(), "Product Viewed", anonymous_id="a1", event_id="e1")
    space.track(t(minutes=2), "Added to Cart", anonymous_id="a1", event_id="e2")
    result = space.identify(t(days=1), "ann@example.com", anonymous_id="a1")
    assert result.created and result.rule is Rule.MERGED_ON_IDENTIFY
    assert sorted(result.merged) == ["e1", "e2"]
    profile = space.profile(t(days=1), "ann@example.com")
    assert profile.counts.merged == 2 and profile.counts.total == 2
    assert profile.person.attributes["anonymous_id"] == "a1"
    assert [a.anonymous_id for a in profile.anonymous_ids] == ["a1"]
    # one anon_merge activity with count, oldest timestamp and the id
    (merge,) = profile.merges
    assert merge.data == {"count": 2, "oldest_timestamp": int(T0.timestamp()), "anonymous_id": "a1"}
    explanation = space.explain(t(days=1), "e1")
    assert explanation.status == "identified"
    assert explanation.decision.rule is Rule.MERGED_ON_IDENTIFY


def test_merge_of_nothing_writes_no_activity(space: Space) -> None:
    result = space.identify(t(), "bob", anonymous_id="unused")
    assert result.merged == []
    assert space.profile(t(), "bob").merges == []


def test_window_merges_then_closes(space: Space) -> None:
    space.identify(t(), "ann", anonymous_id="a1")
    inside = space.track(t(minutes=5), anonymous_id="a1", event_id="in")
    outside = space.track(t(minutes=5, seconds=1), anonymous_id="a1", event_id="out")
    assert inside.rule is Rule.MERGED_IN_WINDOW and inside.person is not None
    assert outside.rule is Rule.WINDOW_CLOSED and outside.status == "anonymous"
    assert [w.rule for w in outside.warnings] == [Rule.WINDOW_CLOSED]
    # identifying again does not reopen the window
    again = space.identify(t(minutes=10), "ann", anonymous_id="a1")
    assert again.merged == []
    assert [w.rule for w in again.warnings] == [Rule.WINDOW_CLOSED]
    assert space.explain(t(minutes=10), "out").decision.rule is Rule.WINDOW_CLOSED
    # the remedy: a new anonymous id and a new identify
    space.track(t(minutes=11), anonymous_id="a2", event_id="fresh")
    assert space.identify(t(minutes=12), "ann", anonymous_id="a2").merged == ["fresh"]


def test_anonymous_id_taken_by_another_person(space: Space) -> None:
    space.track(t(), anonymous_id="shared", event_id="e1")
    space.identify(t(minutes=1), "ann", anonymous_id="shared")
    space.track(t(minutes=2), anonymous_id="shared", event_id="e2")
    result = space.identify(t(minutes=3), "bob", anonymous_id="shared")
    assert result.created and result.rule is Rule.ANONYMOUS_ID_TAKEN
    assert [w.rule for w in result.warnings] == [Rule.ANONYMOUS_ID_TAKEN]
    assert space.profile(t(minutes=3), "bob").counts.total == 0
    assert space.profile(t(minutes=3), "ann").counts.merged == 2


def test_merge_disabled_then_enabled(space: Space, tmp_path: Path) -> None:
    service.init_workspace(space.path, T0, created_at=t(days=-2000), force=False)
    assert space.read(T0, lambda ws: ws.settings()).anonymous_merge is False
    space.track(t(), anonymous_id="old", event_id="e1")
    result = space.identify(t(minutes=1), "ann", anonymous_id="old")
    assert result.rule is Rule.MERGE_DISABLED and result.merged == []
    assert space.profile(t(minutes=1), "ann").person.attributes["anonymous_id"] == "old"
    assert space.explain(t(minutes=2), "e1").decision.rule is Rule.MERGE_DISABLED
    # the claims read once (as `diff` reads them) say what the lookup for one id says
    space.track(t(minutes=2), anonymous_id="other", event_id="e2")

    def both_ways(ws: Workspace) -> list[tuple[service.Explanation, service.Explanation]]:
        claims = ws.anonymous_claims()
        assert list(claims) == ["old"]
        return [
            (
                service.explain(ws, t(minutes=3), event_id=e),
                service.explain(ws, t(minutes=3), event_id=e, claims=claims),
            )
            for e in ("e1", "e2")
        ]

    pairs = space.read(t(minutes=3), both_ways)
    assert all(one == other for one, other in pairs)
    assert [one.decision.rule for one, _ in pairs] == [Rule.MERGE_DISABLED, Rule.ANONYMOUS]
    space.run(t(minutes=3), lambda ws, now: service.update_settings(ws, now, anonymous_merge=True))
    assert space.identify(t(minutes=4), "ann", anonymous_id="old").merged == ["e1"]


def test_retention_expired_and_purge(space: Space) -> None:
    space.track(t(), anonymous_id="gone", event_id="old", timestamp=t(days=-31).isoformat())
    space.track(t(), anonymous_id="gone", event_id="young", timestamp=t(days=-1).isoformat())
    space.track(
        t(),
        "invite",
        data={"recipient": "x@y.z"},
        event_id="inv",
        timestamp=t(days=-90).isoformat(),
    )
    assert space.explain(t(), "old").decision.rule is Rule.RETENTION_EXPIRED
    result = space.identify(t(), "ann", anonymous_id="gone")
    assert result.merged == ["young"]
    assert [w.rule for w in result.warnings] == [Rule.RETENTION_EXPIRED]

    dry = space.run(t(), service.purge, dry_run=True)
    assert dry.deleted == {"gone": 1}
    assert space.explain(t(), "old").status == "anonymous"  # the dry run changed nothing
    purged = space.run(t(), service.purge)
    assert purged.deleted == {"gone": 1}
    explanation = space.explain(t(), "old")
    assert explanation.status == "purged" and explanation.decision.rule is Rule.RETENTION_EXPIRED
    # invites are never purged
    assert space.explain(t(), "inv").status == "invite"
    # the purged id is remembered: sending it again is a duplicate
    again = space.track(t(), anonymous_id="gone", event_id="old")
    assert again.rule is Rule.DUPLICATE and not again.stored


def test_campaign_window(space: Space) -> None:
    space.track(t(), anonymous_id="a", event_id="fresh", timestamp=t(hours=-1).isoformat())
    space.track(t(), anonymous_id="a", event_id="stale", timestamp=t(days=-4).isoformat())
    space.identify(t(), "ann", anonymous_id="a")
    tracked = space.track(
        t(), person="ann", event_id="late-send", timestamp=t(hours=-73).isoformat()
    )
    assert tracked.rule is Rule.SEGMENT_ONLY and not tracked.can_trigger_campaigns
    counts = space.profile(t(), "ann").counts
    assert (counts.total, counts.campaign_eligible) == (3, 1)
    assert space.explain(t(), "stale").campaign.rule is Rule.SEGMENT_ONLY  # type: ignore[union-attr]
    assert space.explain(t(), "fresh").campaign.rule is Rule.CAMPAIGN_ELIGIBLE  # type: ignore[union-attr]


def test_invite_and_no_identity(space: Space) -> None:
    invite = space.track(
        t(), "https://example.com/invite-me", type="page", data={"recipient": "person@example.com"}
    )
    assert invite.status == "invite" and invite.rule is Rule.INVITE
    with pytest.raises(RuleViolation) as info:
        space.track(t(), "orphan")
    assert info.value.rule == Rule.NO_IDENTITY


def test_duplicate_event_ids_are_ignored(space: Space) -> None:
    space.identify(t(), "ann")
    first = space.track(t(), person="ann", event_id="same")
    second = space.track(t(minutes=1), anonymous_id="x", event_id="same")
    assert first.stored and not second.stored and second.rule is Rule.DUPLICATE
    assert space.profile(t(), "ann").counts.total == 1


def test_limit_exceeded_writes_nothing(space: Space) -> None:
    space.identify(t(), "ann")
    with pytest.raises(RuleViolation, match="100 bytes"):
        space.track(t(), "x" * 101, person="ann")
    with pytest.raises(RuleViolation, match="1000 bytes"):
        space.identify(t(), "ann", attributes={"bio": "x" * 1001})
    assert space.profile(t(), "ann").counts.total == 0
    assert "bio" not in space.profile(t(), "ann").person.attributes


def test_identify_attributes_and_identifiers(space: Space) -> None:
    space.identify(t(), "ann", attributes={"email": "Ann@Example.com", "plan": "free"})
    space.identify(t(), "bob")
    result = space.identify(
        t(minutes=1), "ann@example.com", attributes={"plan": "pro", "city": "", "id": "bob"}
    )
    assert result.person.id == "ann"  # found by email, case-insensitively
    assert [f["attribute"] for f in result.failed_attribute_changes] == ["id"]
    assert [(c.attribute, c.before, c.after) for c in result.attribute_changes] == [
        ("plan", "free", "pro")
    ]
    removed = space.identify(t(minutes=2), "ann", attributes={"plan": ""})
    assert [(c.attribute, c.after) for c in removed.attribute_changes] == [("plan", None)]
    with pytest.raises(NotFound, match="_update"):
        space.identify(t(), "nobody", attributes={"_update": True})
    with pytest.raises(NotFound):
        space.identify(t(), "cio_ffff")


def test_anonymous_traits_fill_missing_attributes(space: Space) -> None:
    space.run(
        t(),
        service.set_anonymous_traits,
        anonymous_id="a",
        traits={"plan": "trial", "city": "Oslo", "email": "ann@example.com"},
    )
    space.identify(t(), "ann", anonymous_id="a", attributes={"plan": "pro"})
    person = space.profile(t(), "ann").person
    assert person.attributes["plan"] == "pro" and person.attributes["city"] == "Oslo"
    assert person.email == "ann@example.com"


def test_merge_people(space: Space) -> None:
    space.identify(t(days=-60), "web@example.com", attributes={"plan": "free", "source": "web"})
    space.identify(t(days=-60), "app-7", attributes={"plan": "pro"})
    space.track(t(days=-1), anonymous_id="dev", event_id="anon")
    space.identify(t(days=-1), "app-7", anonymous_id="dev")
    space.track(t(days=-40), person="app-7", event_id="ancient")
    space.track(t(days=-2), person="app-7", event_id="recent")

    dry = space.run(
        t(), service.merge_people, primary="web@example.com", secondary="app-7", dry_run=True
    )
    assert space.profile(t(), "app-7").counts.total == 3  # nothing changed
    result = space.run(t(), service.merge_people, primary="web@example.com", secondary="app-7")
    assert (sorted(result.moved), result.dropped) == (sorted(dry.moved), dry.dropped)
    assert sorted(result.moved) == ["anon", "recent"] and result.dropped == ["ancient"]
    assert result.filled == ["anonymous_id", "id"]
    profile = space.profile(t(), "web@example.com")
    assert profile.person.id == "app-7" and profile.person.attributes["plan"] == "free"
    assert (profile.counts.inherited, profile.counts.campaign_eligible) == (2, 0)
    assert [a.anonymous_id for a in profile.anonymous_ids] == ["dev"]
    assert space.explain(t(), "ancient").status == "purged"
    with pytest.raises(InvalidInput, match="same person"):
        space.run(t(), service.merge_people, primary="app-7", secondary="web@example.com")


def test_failed_command_on_a_new_path_leaves_no_file(space: Space) -> None:
    with pytest.raises(RuleViolation):
        space.track(t(), "orphan")
    assert not space.path.exists()


def test_workspace_file_is_private(space: Space) -> None:
    space.identify(t(), "ann")
    assert stat.S_IMODE(os.stat(space.path).st_mode) == 0o600


def test_newer_and_foreign_files_are_refused(tmp_path: Path, space: Space) -> None:
    space.identify(t(), "ann")
    conn = sqlite3.connect(space.path)
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(WorkspaceError, match="newer cio-anon"):
        Workspace.open(space.path, create=False)
    foreign = tmp_path / "other.db"
    conn = sqlite3.connect(foreign)
    conn.execute("CREATE TABLE x (y)")
    conn.close()
    with pytest.raises(WorkspaceError, match="not a cio-anon workspace"):
        Workspace.open(foreign, create=True)
    text = tmp_path / "notes.db"
    text.write_text("hello, this is not sqlite at all" * 10)
    with pytest.raises(WorkspaceError, match="not a SQLite database"):
        Workspace.open(text, create=True)


# -- properties ---------------------------------------------------------------------

operation = st.one_of(
    st.tuples(st.just("track"), st.sampled_from(["a1", "a2", "a3"]), st.integers(0, 600)),
    st.tuples(
        st.just("identify"), st.sampled_from(["a1", "a2", "a3"]), st.sampled_from(["p", "q"])
    ),
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=st.lists(operation, min_size=1, max_size=14))
def test_merging_never_loses_or_duplicates_events(
    tmp_path: Path, ops: list[tuple[str, str, object]]
) -> None:
    """Whatever the sequence of tracks and identifies, every stored event is in exactly one
    place, and the anon_merge counts add up to the merged events."""
    path = tmp_path / f"prop-{os.urandom(4).hex()}.db"
    space = Space(path)
    tracked = []
    clock = T0
    for index, (kind, anon, arg) in enumerate(ops):
        clock = clock + pendulum.duration(seconds=int(arg) if kind == "track" else 90)
        if kind == "track":
            space.track(clock, anonymous_id=anon, event_id=f"e{index}")
            tracked.append(f"e{index}")
        else:
            space.identify(clock, str(arg), anonymous_id=anon)
    ws = space.workspace()
    try:
        people = [p for p, _ in ws.people(100)]
        owned = [e.event_id for p in people for e in ws.person_events(p.cio_id)]
        pending = [e.event_id for a in ("a1", "a2", "a3") for e in ws.pending_events(a)]
        assert sorted(owned + pending) == sorted(tracked)
        merges = [m for p in people for m, _ in ws.activities_of(p.cio_id, ("anon_merge",))]
        assert sum(m.data["count"] for m in merges) == len(owned)
    finally:
        ws.close()


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    receipts=st.lists(st.integers(-3600, 900), min_size=1, max_size=5, unique=True),
    order=st.randoms(use_true_random=False),
)
def test_outcome_does_not_depend_on_arrival_order(
    tmp_path: Path, receipts: list[int], order: object
) -> None:
    """The same calls (each with its own receive time) applied in any order place every
    event the same way."""
    calls: list[tuple[str, int]] = [("identify", 0)] + [("track", r) for r in receipts]
    outcomes = []
    for attempt in range(2):
        shuffled = list(calls)
        if attempt:
            order.shuffle(shuffled)  # type: ignore[attr-defined]
        space = Space(tmp_path / f"order-{os.urandom(4).hex()}.db")
        for kind, offset in shuffled:
            if kind == "identify":
                space.identify(t(seconds=offset), "ann", anonymous_id="a")
            else:
                space.track(t(seconds=offset), anonymous_id="a", event_id=f"e{offset}")
        placed = {
            f"e{r}": (x.status, x.decision.rule)
            for r in receipts
            for x in [space.explain(t(hours=1), f"e{r}")]
        }
        outcomes.append(placed)
    assert outcomes[0] == outcomes[1]


def test_every_rule_code_is_reachable() -> None:
    """Guard: the codes the spec lists are the codes the rules module has."""
    spec = {
        "anonymous",
        "invite",
        "no_identity",
        "merged_on_identify",
        "merged_in_window",
        "window_closed",
        "anonymous_id_taken",
        "merge_disabled",
        "retention_expired",
        "campaign_eligible",
        "segment_only",
        "duplicate",
        "limit_exceeded",
        "suppressed",  # added with the rest of Customer.io's calls
    }
    assert {str(rule) for rule in Rule} == spec


def test_an_older_workspace_is_migrated_on_open(tmp_path: Path) -> None:
    """tests/data/workspace-v1.db was written at schema 1 (the shopper scenario)."""
    import shutil

    old = tmp_path / "v1.db"
    shutil.copy(Path(__file__).parent / "data" / "workspace-v1.db", old)
    space = Space(old)
    profile = space.profile(T0, "cust-1042")
    assert profile.counts.total == 7 and profile.person.email == "maya@example.com"
    conn = sqlite3.connect(old)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        indexes = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        assert {"events_identified_by_time", "activities_by_time"} <= indexes
    finally:
        conn.close()
    # and it keeps working: a new event merges within the old assignment's rules
    assert space.track(t(days=2), anonymous_id="web-7f3a", event_id="new").status == "anonymous"


def test_purge_in_chunks_deletes_everything_expired(space: Space) -> None:
    for index in range(5):
        space.track(
            t(),
            anonymous_id=f"a{index % 2}",
            event_id=f"old{index}",
            timestamp=t(days=-40, minutes=index).isoformat(),
        )
    space.track(t(), anonymous_id="a0", event_id="young")
    result = service.purge_in_chunks(space.path, t(), chunk=2)
    assert result.deleted == {"a0": 3, "a1": 2}
    assert [space.explain(t(), f"old{i}").status for i in range(5)] == ["purged"] * 5
    assert space.explain(t(), "young").status == "anonymous"
    assert service.purge_in_chunks(space.path, t(), chunk=2).deleted == {}
