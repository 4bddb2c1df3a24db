"""Table-driven and property tests of the pure rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pendulum
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pendulum import DateTime

from cio_anon import clock, rules
from cio_anon.errors import InvalidInput, RuleViolation
from cio_anon.rules import Assignment, IdentifierKind, Provenance, Rule

T = pendulum.datetime(2026, 3, 10, 12, 0, 0, tz="UTC")
A = Assignment("anon-1", "p1", T)


def at(**delta: float) -> DateTime:
    return T + pendulum.duration(**delta)


@pytest.mark.parametrize(
    ("received", "happened", "assignment", "merge_on", "rule", "merged_at"),
    [
        # never assigned: stays anonymous
        (at(hours=-1), at(hours=-1), None, True, Rule.ANONYMOUS, None),
        # received before the identify, within 30 days: merges at the identify
        (at(hours=-1), at(hours=-1), A, True, Rule.MERGED_ON_IDENTIFY, T),
        (at(days=-10), at(days=-30), A, True, Rule.MERGED_ON_IDENTIFY, T),
        (T, T, A, True, Rule.MERGED_ON_IDENTIFY, T),
        # older than 30 days at the identify: retention
        (at(days=-10), at(days=-30, seconds=-1), A, True, Rule.RETENTION_EXPIRED, None),
        # inside the window, merges on arrival
        (at(seconds=1), at(seconds=1), A, True, Rule.MERGED_IN_WINDOW, at(seconds=1)),
        (at(minutes=5), at(minutes=1), A, True, Rule.MERGED_IN_WINDOW, at(minutes=5)),
        # just after the window: stays anonymous
        (at(minutes=5, seconds=1), at(minutes=5), A, True, Rule.WINDOW_CLOSED, None),
        (at(days=2), at(days=2), A, True, Rule.WINDOW_CLOSED, None),
        # merging switched off after the assignment
        (at(minutes=1), at(minutes=1), A, False, Rule.MERGE_DISABLED, None),
    ],
)
def test_place_anonymous_event(
    received: DateTime,
    happened: DateTime,
    assignment: Assignment | None,
    merge_on: bool,
    rule: Rule,
    merged_at: DateTime | None,
) -> None:
    placement = rules.place_anonymous_event(
        received_at=received, timestamp=happened, assignment=assignment, merge_enabled=merge_on
    )
    assert placement.decision.rule is rule
    assert placement.merged_at == merged_at
    assert placement.merges == (merged_at is not None)
    if placement.merges:
        assert placement.cio_id == "p1"


def test_an_event_received_with_its_identify_is_told_so() -> None:
    # an SDK's batch: the identify, then the event, one receive time for both
    tie, before = (
        rules.place_anonymous_event(
            received_at=received, timestamp=at(seconds=-5), assignment=A, merge_enabled=True
        ).decision
        for received in (T, at(seconds=-1))
    )
    assert tie.rule is before.rule is Rule.MERGED_ON_IDENTIFY
    assert tie.reason.startswith("It was received at the same moment as the identify")
    assert before.reason.startswith("It was received before the identify")


@pytest.mark.parametrize(
    ("existing", "merge_on", "rule", "newly"),
    [
        (None, True, Rule.MERGED_ON_IDENTIFY, True),
        (None, False, Rule.MERGE_DISABLED, None),
        (Assignment("anon-1", "p1", at(days=-1)), True, Rule.MERGED_ON_IDENTIFY, False),
        (Assignment("anon-1", "p2", at(days=-1)), True, Rule.ANONYMOUS_ID_TAKEN, None),
        (Assignment("anon-1", "p2", at(days=-1)), False, Rule.ANONYMOUS_ID_TAKEN, None),
    ],
)
def test_decide_assignment(
    existing: Assignment | None, merge_on: bool, rule: Rule, newly: bool | None
) -> None:
    decision = rules.decide_assignment(
        anonymous_id="anon-1", cio_id="p1", existing=existing, merge_enabled=merge_on, now=T
    )
    assert decision.rule is rule
    assert decision.facts.get("newly_assigned") == newly


@pytest.mark.parametrize(
    ("provenance", "happened", "received", "merged", "rule"),
    [
        (Provenance.TRACKED, at(hours=-72), T, None, Rule.CAMPAIGN_ELIGIBLE),
        (Provenance.TRACKED, at(hours=-72, seconds=-1), T, None, Rule.SEGMENT_ONLY),
        (Provenance.MERGED, at(hours=-1), at(hours=-1), at(hours=71), Rule.CAMPAIGN_ELIGIBLE),
        (Provenance.MERGED, at(hours=-1), at(hours=-1), at(hours=71, seconds=1), Rule.SEGMENT_ONLY),
        # received long ago but merged soon after it happened? no: merge time decides
        (Provenance.MERGED, at(days=-5), at(days=-5), T, Rule.SEGMENT_ONLY),
        (Provenance.INHERITED, T, T, T, Rule.SEGMENT_ONLY),
    ],
)
def test_campaign_eligibility(
    provenance: Provenance,
    happened: DateTime,
    received: DateTime,
    merged: DateTime | None,
    rule: Rule,
) -> None:
    decision = rules.campaign_eligibility(
        provenance=provenance, timestamp=happened, received_at=received, merged_at=merged
    )
    assert decision.rule is rule


def test_default_anonymous_merge_follows_july_2021() -> None:
    assert rules.default_anonymous_merge(pendulum.datetime(2021, 7, 1, tz="UTC"))
    assert not rules.default_anonymous_merge(pendulum.datetime(2021, 6, 30, 23, 59, tz="UTC"))


@pytest.mark.parametrize(
    ("text", "kind", "value"),
    [
        ("cio_abc123", IdentifierKind.CIO_ID, "abc123"),
        ("ann@example.com", IdentifierKind.EMAIL, "ann@example.com"),
        ("  42 ", IdentifierKind.ID, "42"),
        ("cio_", IdentifierKind.ID, "cio_"),
    ],
)
def test_resolve_identifier(text: str, kind: IdentifierKind, value: str) -> None:
    assert rules.resolve_identifier(text) == (kind, value)


def test_resolve_identifier_rejects_empty_and_long() -> None:
    with pytest.raises(InvalidInput):
        rules.resolve_identifier("  ")
    with pytest.raises(RuleViolation, match="150 bytes") as info:
        rules.resolve_identifier("x" * 151)
    assert info.value.rule == Rule.LIMIT_EXCEEDED
    assert rules.resolve_identifier("é" * 75)[1] == "é" * 75  # 150 bytes exactly


@pytest.mark.parametrize(
    ("call", "limit"),
    [
        (lambda: rules.check_event_limits("n" * 101, "{}"), "100 bytes"),
        (lambda: rules.check_event_limits("ok", '{"a":"' + "x" * 100_000 + '"}'), "100000 bytes"),
        (lambda: rules.check_attribute_limits({"k" * 151: 1}), "150 bytes"),
        (lambda: rules.check_attribute_limits({"k": "v" * 1001}), "1000 bytes"),
        (lambda: rules.check_attribute_limits({f"a{i}": i for i in range(301)}), "300"),
    ],
)
def test_limits_name_the_limit(call: object, limit: str) -> None:
    with pytest.raises(RuleViolation, match=limit) as info:
        call()  # type: ignore[operator]
    assert info.value.rule == Rule.LIMIT_EXCEEDED


def test_limits_accept_values_at_the_limit() -> None:
    rules.check_event_limits("n" * 100, "{}")
    rules.check_attribute_limits({"k" * 150: "v" * 1000})
    rules.check_attribute_limits({f"a{i}": i for i in range(300)})


@pytest.mark.parametrize(
    ("url", "without_query"),
    [
        ("https://shop.example/products/tee?" + "utm_campaign=winter-sale&" * 4, 33),
        ("https://shop.example/" + "p" * 90 + "?q=1", None),  # too long without it too
        ("https://shop.example/" + "p" * 90, None),
    ],
)
def test_a_page_over_the_limit_is_said_as_a_page(url: str, without_query: int | None) -> None:
    """A page's event is named by its URL, which nobody wrote as a name: the sentence
    says so, and what the URL is without its query (campaign parameters are what most
    often take it over) when that would fit."""
    with pytest.raises(RuleViolation) as info:
        rules.check_event_limits(url, "{}", page=True)
    said = str(info.value)
    assert said.startswith(f"The page {url[:60]!r}... is {len(url)} bytes: Customer.io names")
    clause = f"Without its query string the URL is {without_query} bytes"
    assert (clause in said) is (without_query is not None)
    with pytest.raises(RuleViolation, match=r"^The event name 'https://"):
        rules.check_event_limits(url, "{}")


def test_classify_unattached() -> None:
    assert rules.classify_unattached("a", None).rule is Rule.ANONYMOUS
    assert rules.classify_unattached("a", "x@y.z").rule is Rule.ANONYMOUS
    assert rules.classify_unattached(None, "x@y.z").rule is Rule.INVITE
    with pytest.raises(RuleViolation) as info:
        rules.classify_unattached(None, None)
    assert info.value.rule == Rule.NO_IDENTITY


def test_apply_attributes_merges_shallowly_and_removes_empty() -> None:
    result, changes = rules.apply_attributes(
        {"plan": "free", "city": "Oslo", "keep": 1}, {"plan": "pro", "city": "", "new": [1]}
    )
    assert result == {"plan": "pro", "keep": 1, "new": [1]}
    assert [(c.attribute, c.before, c.after) for c in changes] == [
        ("plan", "free", "pro"),
        ("city", "Oslo", None),
        ("new", None, [1]),
    ]
    assert rules.apply_attributes({"a": 1}, {"a": 1, "gone": ""}) == ({"a": 1}, [])


def test_change_identifier() -> None:
    change = rules.change_identifier(
        "email", before=None, after="a@b.c", holder=None, cio_id="p", has_other_identifier=True
    )
    assert change == rules.AttributeChange("email", None, "a@b.c")
    failed = rules.change_identifier(
        "email", before=None, after="a@b.c", holder="q", cio_id="p", has_other_identifier=True
    )
    assert isinstance(failed, dict) and failed["held_by"] == "q"
    only = rules.change_identifier(
        "id", before="7", after=None, holder=None, cio_id="p", has_other_identifier=False
    )
    assert isinstance(only, dict) and "only identifier" in only["reason"]


def test_inherits_keeps_the_last_30_days() -> None:
    assert rules.inherits(at(days=-30), T).rule is Rule.SEGMENT_ONLY
    assert rules.inherits(at(days=-30, seconds=-1), T).rule is Rule.RETENTION_EXPIRED


def test_retention() -> None:
    assert rules.retention_deadline(T) == at(days=30)
    assert not rules.is_expired(at(days=-30), T)
    assert rules.is_expired(at(days=-30, seconds=-1), T)


# -- properties ---------------------------------------------------------------------

offsets = st.integers(min_value=-40 * 86_400, max_value=3 * 86_400)


@given(
    received=offsets, lag=st.integers(min_value=0, max_value=40 * 86_400), merge_on=st.booleans()
)
def test_placement_is_consistent_with_the_windows(received: int, lag: int, merge_on: bool) -> None:
    """A merge happens exactly when the event arrived by T+5min and was within retention."""
    received_at = at(seconds=received)
    happened = received_at - pendulum.duration(seconds=lag)
    placement = rules.place_anonymous_event(
        received_at=received_at, timestamp=happened, assignment=A, merge_enabled=merge_on
    )
    merge_time = max(received_at, T)
    expected = (
        merge_on
        and received_at <= T + rules.MERGE_WINDOW
        and happened >= merge_time - rules.RETENTION
    )
    assert placement.merges == expected
    if placement.merges:
        assert placement.merged_at == merge_time
        assert placement.decision.rule in (Rule.MERGED_ON_IDENTIFY, Rule.MERGED_IN_WINDOW)


@given(
    st.datetimes(
        min_value=datetime(1970, 1, 1), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
    ),
    st.sampled_from(["auto", "milliseconds", "seconds"]),
    st.sampled_from(["Z", "+00:00", "+02:00", "-05:30", ""]),
)
def test_an_iso_time_reads_as_the_same_instant_however_it_is_written(
    moment: datetime, timespec: str, suffix: str
) -> None:
    """The times the SDKs send (ISO 8601 in UTC, with a Z) are read at once; every form
    gives the instant it names, in UTC."""
    offset = {"Z": 0, "+00:00": 0, "": 0, "+02:00": 120, "-05:30": -330}[suffix]
    local = moment.astimezone(timezone(timedelta(minutes=offset))).replace(tzinfo=None)
    text = local.isoformat(timespec=timespec) + suffix
    parsed = clock.parse_time(text)
    expected = moment.replace(microsecond=0) if timespec == "seconds" else moment
    if timespec == "milliseconds":
        expected = moment.replace(microsecond=moment.microsecond // 1000 * 1000)
    assert parsed == expected and parsed.tzinfo is UTC
    assert clock.parse_time(" " + text + " ") == parsed  # the slower reading agrees


def test_an_iso_time_before_1970_is_refused() -> None:
    with pytest.raises(InvalidInput, match="outside 1970-01-01"):
        clock.parse_time("1969-12-31T23:59:59Z")


def test_a_placeholder_is_a_listed_id_or_the_zero_uuid_folded_and_nothing_else() -> None:
    from cio_anon.rules import identity

    for value in identity.PLACEHOLDER_IDS:
        assert rules.is_placeholder(value) and rules.is_placeholder(f" {value.upper()}\t")
        assert not rules.is_placeholder(f"{value}x") and not rules.is_placeholder(f"x{value}")
    assert rules.is_placeholder("00000000-0000-0000-0000-000000000000")
    assert rules.is_placeholder("00000000000000000000000000000000")
    # the pattern's own characters are literal: no single letter of "[object object]"
    assert not any(rules.is_placeholder(letter) for letter in "[object ]")
    assert not rules.is_placeholder("0000") and not rules.is_placeholder("n.a")
