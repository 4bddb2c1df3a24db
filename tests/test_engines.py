"""Every engine gives the same answer: replay one call at a time (the service), replay's
bulk path, and `audit` on DuckDB and on Spark place every event under the same rule, on
the same person. The rules' SQL forms are held to their Python forms value by value,
then whole streams are driven through every engine: each rule at its edges (the
5-minute window, 30-day retention, 72 hours), emails folded by case and Unicode, ids
with stray whitespace, `cio_` ids that name a person and ones that name no one, and
Hypothesis streams of all of it."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cio_anon import audit, rules, service
from cio_anon.audit import reading, setrules
from cio_anon.replay import replay
from cio_anon.rules import identity
from tests.test_audit import spark_examples, spark_ready  # noqa: F401 (a fixture)
from tests.test_setrules import together

NOW = datetime(2026, 12, 1, tzinfo=UTC)
BASE = 1_772_000_000
DAY = 86_400

Placed = dict[str, tuple[str, str | None, bool]]
"""event id → (rule, person, can trigger campaigns)."""


# -- the rules' SQL forms against their Python forms ----------------------------------

VALUES = [
    "u1",
    "  u1 ",
    " u1",  # a space on one side only: trimmed (the forms test for one first)
    "u1 ",
    "u 1",  # within: kept
    "%u_",  # what LIKE reads as wildcards, as a value
    "\tu1\n",
    "",
    " ",
    "   ",
    "STRASSE@x.com",
    "Straße@x.com",
    " straße@X.COM\t",
    "ÅNGSTRÖM@x.se",
    "ﬁle@x.com",
    "cio_",
    "cio_00000001",
    " cio_0000000a",
    "CIO_1",
    "a@b",
    "Null",
    "[object Object]",
    "FALſE",
    "00000000-0000-0000-0000-000000000000",
    "00000000000000000000000000000000",
    "0000",
    "\u00a0guest\u00a0",
    "İ",
    "user@",
]


def _duckdb_forms(values: list[str], all_plain: bool = False) -> list[tuple[Any, ...]]:
    db = audit.DuckDB()
    try:
        return _forms(db, values, all_plain)
    finally:
        db.close()


def _forms(db: audit.Engine, values: list[str], all_plain: bool = False) -> list[tuple[Any, ...]]:
    db.rows_table("v", "seq BIGINT, value STRING", list(enumerate(values)))
    db.rows_table(
        identity.OUTSIDE_PLAIN,
        identity.OUTSIDE_PLAIN_COLUMNS,
        identity.outside_plain(v for v in values if not _plain(v)),
    )
    m = db.matches
    stripped = identity.stripped_sql("value", m, all_plain=all_plain)
    return [
        (str(value), folded, strip, kind, bool(placeholder))
        for value, folded, strip, kind, placeholder in db.rows(
            f"SELECT value, {identity.fold_sql('value', m, all_plain=all_plain)}, {stripped}, "
            f"CASE WHEN {stripped} IS NOT NULL THEN {identity.kind_sql(stripped)} END, "
            f"{identity.is_placeholder_sql('value', m, all_plain=all_plain)} FROM v ORDER BY seq"
        )
    ]


def _plain(value: str) -> bool:
    import re

    return re.fullmatch(identity.PLAIN, value) is not None


def _python_forms(values: list[str]) -> list[tuple[Any, ...]]:
    out = []
    for value in values:
        strip = identity.stripped(value)
        kind = None if strip is None else str(rules.resolve_identifier(strip)[0])
        out.append((value, identity.fold(value), strip, kind, rules.is_placeholder(value)))
    return out


def _flags(db: audit.Engine, values: list[str]) -> list[tuple[Any, ...]]:
    """Each value's `odd_ids` flag, given as each of the staged identifiers."""
    columns = reading.IDENTIFIERS
    db.rows_table("given", "seq BIGINT, value STRING", list(enumerate(values)))
    rows = ", ".join(
        f"CASE WHEN n = {index} THEN value END AS {column}" for index, column in enumerate(columns)
    )
    each = " UNION ALL ".join(f"SELECT {index} AS n" for index in range(len(columns)))
    flagged: dict[int, list[bool]] = {}
    for seq, _, flag in db.rows(
        f"SELECT seq, n, {reading.odd_ids(db)} FROM (SELECT seq, n, {rows} "
        f"FROM given CROSS JOIN ({each}) columns) staged ORDER BY seq, n"
    ):
        flagged.setdefault(int(seq), []).append(bool(flag))
    return [(value, *flagged[seq]) for seq, value in enumerate(values)]


def _python_flags(values: list[str]) -> list[tuple[Any, ...]]:
    """What the steps reading `odd_ids` look for: an identifier outside PLAIN, a person's
    id that is a placeholder."""
    return [
        (
            value,
            *(
                not _plain(value) or (column in reading.PERSON_IDS and rules.is_placeholder(value))
                for column in reading.IDENTIFIERS
            ),
        )
        for value in values
    ]


def _duckdb_flags(values: list[str]) -> list[tuple[Any, ...]]:
    db = audit.DuckDB()
    try:
        return _flags(db, values)
    finally:
        db.close()


def _missed_by_the_cheap_test(values: list[str]) -> list[str]:
    """The values `resolve_identifier` reads as an email or a cio_id (stripped) that
    `may_not_be_id_sql` says surely name no one that way."""
    db = audit.DuckDB()
    try:
        db.rows_table("v", "seq BIGINT, value STRING", list(enumerate(values)))
        tested = db.rows(f"SELECT value, {identity.may_not_be_id_sql('value')} FROM v ORDER BY seq")
    finally:
        db.close()
    missed = []
    for value, may in tested:
        strip = identity.stripped(value)
        kind = None if strip is None else rules.resolve_identifier(strip)[0]
        if kind not in (None, identity.IdentifierKind.ID) and not may:
            missed.append(value)
    return missed


def test_identity_rules_in_sql_answer_as_in_python() -> None:
    assert _duckdb_forms(VALUES) == _python_forms(VALUES)
    # the cheap test of which messages `named` keeps misses no email and no cio_id
    assert _missed_by_the_cheap_test(VALUES) == []
    # the short forms, for data whose identifiers are all printable ASCII, on such data
    plain = [value for value in VALUES if _plain(value)]
    assert len(plain) > 10 and _duckdb_forms(plain, all_plain=True) == _python_forms(plain)


def test_the_rows_the_identity_steps_read_are_flagged_as_they_are_read() -> None:
    flags = _duckdb_flags(VALUES)
    assert flags == _python_flags(VALUES)
    assert any(flagged[1] and not flagged[3] for _, *flagged in flags)  # placeholders
    assert any(not any(flagged) for _, *flagged in flags)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(max_size=12), min_size=1, max_size=20))
def test_identity_rules_in_sql_answer_as_in_python_for_any_text(values: list[str]) -> None:
    values = [v.replace("\x00", "") for v in values]  # no engine stores NUL in a string
    assert _duckdb_forms(values) == _python_forms(values)
    assert _duckdb_flags(values) == _python_flags(values)
    assert _missed_by_the_cheap_test(values) == []


def test_cio_ids_in_sql_are_made_as_the_workspace_makes_them() -> None:
    db = audit.DuckDB()
    try:
        numbers = [1, 9, 10, 255, 0xFFFFFFFF, 0x1_0000_0000]
        made = db.rows("SELECT " + ", ".join(identity.cio_id_of_sql(str(n)) for n in numbers))[0]
    finally:
        db.close()
    assert list(made) == [identity.cio_id_of(n) for n in numbers]


def test_the_placement_arms_stand_in_the_order_of_the_python_rule() -> None:
    """Every rule the Python placement can give set-based (merging on, no one deleted)
    has its arm, and the set-based statement is made of them."""
    arms = " ".join(rule for _, rule in rules.placement.PLACEMENT_SQL_ARMS)
    for rule in (
        rules.Rule.ANONYMOUS,
        rules.Rule.RETENTION_EXPIRED,
        rules.Rule.WINDOW_CLOSED,
        rules.Rule.MERGED_IN_WINDOW,
        rules.Rule.MERGED_ON_IDENTIFY,
    ):
        assert f"'{rule}'" in arms
    assert rules.placement.placement_sql() in setrules.placements()


# -- whole streams through every engine -----------------------------------------------


def _track(at: int, **fields: Any) -> dict[str, Any]:
    age = fields.pop("age", 0)
    return {"type": "track", "event": "Viewed", "receivedAt": at, "timestamp": at - age, **fields}


def _identify(at: int, user: str, **fields: Any) -> dict[str, Any]:
    return {"type": "identify", "userId": user, "receivedAt": at, **fields}


T = BASE
CORNERS: dict[str, list[dict[str, Any]]] = {
    "the 5-minute window, at and past its edge": [
        _track(T, anonymousId="a1", messageId="before"),
        _identify(T + 100, "u1", anonymousId="a1"),
        _track(T + 100, anonymousId="a1", messageId="with"),
        _track(T + 400, anonymousId="a1", messageId="last-second"),
        _track(T + 401, anonymousId="a1", messageId="past"),
    ],
    "30-day retention, at and past its edge": [
        _track(T, anonymousId="a1", messageId="kept", age=30 * DAY - 100),
        _track(T, anonymousId="a1", messageId="expired", age=30 * DAY - 99),
        _track(T, anonymousId="a2", messageId="old-on-arrival", age=30 * DAY + 1),
        _identify(T + 100, "u1", anonymousId="a1"),
        _track(T + 200, anonymousId="a1", messageId="in-window-old", age=30 * DAY),
        _track(T + 200, anonymousId="a1", messageId="in-window-older", age=30 * DAY + 1),
    ],
    "72 hours, at and past its edge": [
        _identify(T, "u1", anonymousId="a1"),
        _track(T + 10, userId="u1", messageId="own-72h", age=72 * 3600),
        _track(T + 10, userId="u1", messageId="own-past", age=72 * 3600 + 1),
        _track(T + 20, anonymousId="a1", messageId="merged-72h", age=72 * 3600),
        _track(T + 20, anonymousId="a1", messageId="merged-past", age=72 * 3600 + 1),
    ],
    "emails folded by case and Unicode": [
        _identify(T, "STRASSE@x.com"),
        _track(T + 1, userId="Straße@x.com", messageId="by-sharp-s"),
        _identify(T + 2, "straße@X.COM", anonymousId="a1"),
        _track(T + 3, anonymousId="a1", messageId="merged-to-strasse"),
        _identify(T + 4, "u2", traits={"email": "ÅNGSTRÖM@x.se"}),
        _track(T + 5, userId="ångström@X.se", messageId="held-by-u2"),
        _identify(T + 6, "ÅngStröm@x.se", anonymousId="a2"),
        _track(T + 7, anonymousId="a2", messageId="merged-to-u2"),
    ],
    "ids with stray whitespace": [
        _track(T, anonymousId="\ta1 ", messageId="tabbed"),
        _identify(T + 1, " u1\t", anonymousId="a1\n"),
        _track(T + 2, userId="u1", messageId="own"),
        _track(T + 3, anonymousId="a1", messageId="in-window"),
    ],
    "cio_ ids: one that names a person, ones that name no one": [
        _track(T, anonymousId="a1", messageId="a1-before"),
        _identify(T + 1, "cio_x", anonymousId="a1"),
        _track(T + 2, anonymousId="a1", messageId="a1-after"),
        _identify(T + 3, "u1"),
        _identify(T + 4, "u2"),
        _track(T + 5, anonymousId="a2", messageId="a2-before"),
        _identify(T + 6, "cio_00000002", anonymousId="a2"),
        _track(T + 7, anonymousId="a2", messageId="a2-after"),
        _track(T + 8, userId="cio_00000001", messageId="by-cio-id"),
        _track(T + 9, userId="cio_00000003", messageId="no-such-person"),
        _identify(T + 10, "cio_00000009", anonymousId="a3"),
        _track(T + 11, anonymousId="a3", messageId="a3-after"),
    ],
    "re-identifies, duplicates, an anonymous id taken": [
        _identify(T, "u1", anonymousId="a1", messageId="i1"),
        _identify(T + 1, "u1", anonymousId="a1", messageId="i1"),
        _identify(T + 2, "u2", anonymousId="a1"),
        _track(T + 3, anonymousId="a1", messageId="e1"),
        _track(T + 4, anonymousId="a1", messageId="e1"),
        _identify(T + 500, "u1", anonymousId="a1"),
        _track(T + 501, anonymousId="a1", messageId="e2"),
    ],
    "identify traits in context.traits, as RudderStack's SDKs send them": [
        _track(T, anonymousId="a1", messageId="anon-1"),
        _identify(T + 10, "u1", anonymousId="a1", context={"traits": {"email": "Lee@x.io"}}),
        _track(T + 20, userId="lee@x.io", messageId="by-email"),  # names u1, who has it
        _identify(T + 30, "u2", traits={}, context={"traits": {"email": "dee@x.io"}}),
        _track(T + 40, userId="DEE@x.io", messageId="not-u2"),  # u2 sent traits: not its
        {"type": "identify", "receivedAt": T + 50, "context": {"traits": {"email": "kim@x.io"}}},
        _track(T + 60, userId="cio_00000004", messageId="by-cio-id"),  # kim, created fourth
    ],
}


def _replayed(tmp_path: Path, records: list[dict[str, Any]], *, bulk: bool) -> Placed:
    """Every stored event of a replay (keep going: a refused call changes nothing)."""
    fixture = tmp_path / "stream.ndjson"
    fixture.write_text("".join(json.dumps(r) + "\n" for r in records))
    db = tmp_path / ("bulk.db" if bulk else "service.db")
    if db.exists():
        db.unlink()
    with service.opened(db, NOW, write=True) as workspace:
        replay(workspace, NOW, [fixture], keep_going=True, bulk=bulk)
    ids = {r["messageId"] for r in records if r["type"] != "identify" and "messageId" in r}
    placed: Placed = {}
    with service.opened(db, NOW, write=False) as workspace:
        for event_id in sorted(ids):
            event = workspace.get_event(event_id)
            if event is None:
                continue
            person = None
            if event.cio_id is not None:
                ref = workspace.person_refs([event.cio_id])[event.cio_id]
                person = ref.id if ref.id is not None else ref.email
            placed[event_id] = (str(event.rule), person, event.can_trigger)
    return placed


def _audited(tmp_path: Path, records: list[dict[str, Any]], engine: str) -> Placed:
    export = tmp_path / "export.ndjson"
    export.write_text("".join(json.dumps(r) + "\n" for r in records))
    return {
        p.event_id: (p.rule, p.person, p.can_trigger)
        for p in audit.placements([export], engine_name=engine)
    }


Engines = dict[str, Callable[[Path, list[dict[str, Any]]], Placed]]
ENGINES: Engines = {
    "service": lambda tmp, records: _replayed(tmp, records, bulk=False),
    "bulk": lambda tmp, records: _replayed(tmp, records, bulk=True),
    "duckdb": lambda tmp, records: _audited(tmp, records, "duckdb"),
}


def _every_engine(tmp_path: Path, records: list[dict[str, Any]], engines: Engines) -> None:
    answers = {name: run(tmp_path, records) for name, run in engines.items()}
    expected = answers.pop("service")
    for name, answer in answers.items():
        assert answer == expected, name


EXPECTED = {
    "identify traits in context.traits, as RudderStack's SDKs send them": {
        "anon-1": ("merged_on_identify", "u1", True),
        "by-email": ("campaign_eligible", "u1", True),
        "not-u2": ("campaign_eligible", "DEE@x.io", True),
        "by-cio-id": ("campaign_eligible", "kim@x.io", True),
    },
    "the 5-minute window, at and past its edge": {
        "before": ("merged_on_identify", "u1", True),
        "with": ("merged_on_identify", "u1", True),
        "last-second": ("merged_in_window", "u1", True),
        "past": ("window_closed", None, False),
    },
    "emails folded by case and Unicode": {
        "by-sharp-s": ("campaign_eligible", "STRASSE@x.com", True),
        "merged-to-strasse": ("merged_in_window", "STRASSE@x.com", True),
        "held-by-u2": ("campaign_eligible", "u2", True),
        "merged-to-u2": ("merged_in_window", "u2", True),
    },
    "cio_ ids: one that names a person, ones that name no one": {
        "a1-before": ("anonymous", None, False),
        "a1-after": ("anonymous", None, False),
        "a2-before": ("merged_on_identify", "u2", True),
        "a2-after": ("merged_in_window", "u2", True),
        "by-cio-id": ("campaign_eligible", "u1", True),
        "a3-after": ("anonymous", None, False),
    },
}


@pytest.mark.parametrize("corner", list(CORNERS))
def test_every_engine_places_the_corners_alike(tmp_path: Path, corner: str) -> None:
    records = CORNERS[corner]
    _every_engine(tmp_path, records, ENGINES)
    if corner in EXPECTED:  # and the answer is the one the rules give
        assert _replayed(tmp_path, records, bulk=False) == EXPECTED[corner]


def test_event_ids_whose_keys_collide_are_told_apart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Duplicates are looked for among the event and message ids whose keys (a 64-bit
    hash) repeat, comparing the ids themselves: with a key that every id of one length
    shares, the placements are still the service's."""
    monkeypatch.setattr(audit.DuckDB, "key", lambda self, text: f"length({text})")
    records = [
        *CORNERS["re-identifies, duplicates, an anonymous id taken"],
        _track(T + 600, anonymousId="a2", messageId="e3"),
        _track(T + 601, anonymousId="a2", messageId="e4"),
        _identify(T + 602, "u3", anonymousId="a2"),
        _track(T + 603, anonymousId="a2", messageId="e3"),  # a retry: not placed twice
        _track(T + 604, userId="u3", messageId="e5"),
        _track(T + 605, userId="u3", messageId="e4"),
        _identify(T + 606, "u1", anonymousId="a3", messageId="i2"),  # i1's key, not i1
        _track(T + 607, anonymousId="a3", messageId="e6"),
    ]
    _every_engine(tmp_path, records, ENGINES)


def _stream() -> st.SearchStrategy[list[dict[str, Any]]]:
    """Streams over a few people and devices, with what trips set-based engines: emails
    in several spellings, cio_ ids, whitespace, placeholders, late and old events."""
    users = st.sampled_from(["u1", "u2", " u3\t", "cio_00000001", "cio_00000002", "cio_x"])
    spellings = {"u1": ["STRASSE@x.com", "Straße@x.com", "strasse@X.com"], "u2": ["Ö@x.io"]}
    emails = st.sampled_from([e for names in spellings.values() for e in names])
    anonymous_ids = st.sampled_from(["a1", "a2", " a3", "null"])
    offsets = st.integers(min_value=0, max_value=900)
    ages = st.sampled_from([0, 30, 200, 3 * DAY, 3 * DAY + 1, 29 * DAY, 30 * DAY + 1])
    message_ids = st.sampled_from([f"m{i}" for i in range(10)])
    who = st.one_of(users, emails)
    track = st.fixed_dictionaries(
        {"offset": offsets, "age": ages, "messageId": message_ids},
        optional={"anonymousId": anonymous_ids, "userId": who},
    ).filter(lambda r: "anonymousId" in r or "userId" in r)
    identify = st.fixed_dictionaries(
        {"offset": offsets, "userId": who},
        optional={"anonymousId": anonymous_ids, "email": st.sampled_from(["u1", "u2"])},
    )

    def as_message(kind: str, spec: dict[str, Any]) -> dict[str, Any]:
        at = BASE + spec["offset"]
        fields = {k: spec[k] for k in ("userId", "anonymousId", "messageId") if k in spec}
        if kind == "track":
            return _track(at, age=spec["age"], **fields)
        message = {"type": "identify", "receivedAt": at, **fields}
        owner = spec.get("email")
        if owner is not None and message["userId"] == owner:  # a person's own email
            message["traits"] = {"email": spellings[owner][0]}
        return message

    messages = st.one_of(
        track.map(lambda spec: as_message("track", spec)),
        identify.map(lambda spec: as_message("identify", spec)),
    )
    return st.lists(messages, min_size=1, max_size=20)


@settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(records=_stream())
@pytest.mark.slow
def test_every_engine_places_generated_streams_alike(
    tmp_path: Path, records: list[dict[str, Any]]
) -> None:
    _every_engine(tmp_path, records, ENGINES)


@pytest.mark.slow
def test_spark_places_the_corners_alike(spark_ready: None, tmp_path: Path) -> None:  # noqa: F811
    records = together(list(CORNERS.values()))
    assert _audited(tmp_path, records, "spark") == _replayed(tmp_path, records, bulk=False)


@pytest.mark.slow
def test_the_identity_rules_in_spark_sql_answer_as_in_python(spark_ready: None) -> None:  # noqa: F811
    db = audit.Spark()
    try:
        assert _forms(db, VALUES) == _python_forms(VALUES)
        assert _flags(db, VALUES) == _python_flags(VALUES)
    finally:
        db.close()


@spark_examples(1)
@given(streams=st.lists(_stream(), min_size=15, max_size=25))
@pytest.mark.slow
def test_spark_places_generated_streams_alike(
    spark_ready: None,  # noqa: F811
    tmp_path: Path,
    streams: list[list[dict[str, Any]]],
) -> None:
    """Many streams in one export: a Spark run costs seconds, not the stream."""
    records = together(streams)
    assert _audited(tmp_path, records, "spark") == _replayed(tmp_path, records, bulk=False)
