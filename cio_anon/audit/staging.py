"""Staging: the exports read by an engine, checked (settings, Customer.io's limits with
the replay's own code) and laid out as the rows `setrules` places."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

from cio_anon import rules
from cio_anon.audit.engines import Engine
from cio_anon.audit.exports import AuditError, readable
from cio_anon.audit.reading import IDENTIFIERS, PERSON_IDS
from cio_anon.clock import from_unix, parse_time
from cio_anon.errors import CioAnonError
from cio_anon.rules import IdentifierKind, identity


def refusals(db: Engine) -> list[tuple[int, str, int, str]]:
    """The records Customer.io would refuse for a limit (seq, file, record, why), found
    among those `suspect` flags by applying each, as a replay does, to a scratch
    workspace: its call changes nothing, as with `replay --keep-going`."""
    import orjson

    from cio_anon import service
    from cio_anon.errors import RuleViolation
    from cio_anon.ingest.fixtures import to_operations
    from cio_anon.replay.apply import Source, Tally, apply_operation

    flagged = db.rows(
        f"SELECT s.seq, s.file, s.record, r.json FROM staged s JOIN {db.raw} r "
        "ON r.seq = s.seq WHERE s.suspect ORDER BY s.seq"
    )
    refused: list[tuple[int, str, int, str]] = []
    if not flagged:
        return refused
    now = from_unix(0)  # the scratch workspace's own time: no limit looks at the clock
    with tempfile.TemporaryDirectory() as folder:
        with service.opened(Path(folder) / "scratch.db", now, write=True) as scratch:
            for seq, file, record, text in flagged:
                try:
                    with scratch.savepoint(keep=False):
                        for timed in to_operations(orjson.loads(text), now):
                            apply_operation(scratch, timed, Source(file, record), Tally())
                except RuleViolation as violation:
                    if violation.rule == str(rules.Rule.LIMIT_EXCEEDED):
                        refused.append((int(seq), str(file), int(record), str(violation)))
                except CioAnonError:
                    continue  # not a limit: the set-based staging reads it as a replay would
    return refused


def stage(db: Engine, paths: Sequence[Path]) -> int:
    """Read the exports and stage the rows `setrules` places; how many records were read
    (a recorded request counts once per message it carried)."""
    db.begin("Reading the exports")
    records = db.load(readable(paths, db.scratch()))
    db.begin("Checking settings and Customer.io's limits")
    _check_settings(db)
    refused = db.rows(
        "SELECT file, record, coalesce(op, method) FROM staged "
        "WHERE (op IS NOT NULL AND op NOT IN ('expect', 'settings')) OR method IS NOT NULL "
        "ORDER BY seq LIMIT 1"
    )
    if refused:
        file, record, kind = refused[0]
        what = f"a {kind} record" if kind in ("purge", "settings") else f"an HTTP call ({kind})"
        raise AuditError(
            f"{file}: record {record} is {what}, which only a replay in order can apply; "
            "audit reads Data Pipelines messages (use `cio-anon replay` for this file)."
        )
    unreadable = db.rows("SELECT file, record FROM staged WHERE bad_time ORDER BY seq LIMIT 1")
    if unreadable:
        file, record = unreadable[0]
        raise AuditError(
            f"{file}: record {record} has a time that is not one: give `at`, `receivedAt` "
            "and `timestamp` as ISO-8601 or Unix seconds."
        )
    missing = db.rows(
        "SELECT file, record FROM staged WHERE op IS NULL AND received_at IS NULL "
        "ORDER BY seq LIMIT 1"
    )
    if missing:
        raise AuditError(f"{missing[0][0]}: record {missing[0][1]} has no receive time.")
    db.refused = refusals(db)
    db.rows_table("refused", "seq BIGINT", [(seq,) for seq, *_ in db.refused])
    db.begin("Staging events and identifies")
    matches = db.matches
    unplain = " UNION ".join(
        f"SELECT {column} AS value FROM staged WHERE odd_ids AND {column} IS NOT NULL "
        f"AND NOT {matches(column, identity.PLAIN)}"
        for column in IDENTIFIERS
    )
    outside = identity.outside_plain(value for (value,) in db.rows(unplain))
    db.rows_table(identity.OUTSIDE_PLAIN, identity.OUTSIDE_PLAIN_COLUMNS, outside)
    db.all_plain = not outside  # then the forms need no test and no look-up
    # every record's placeholder ids, for `findings` (the staged rows are let go below)
    ids = " UNION ALL ".join(
        f"SELECT {db.fold(column)} AS id, seq FROM staged "
        f"WHERE odd_ids AND {db.is_placeholder(column)}"
        for column in PERSON_IDS
    )
    db.table(
        "placeholder_ids", f"SELECT id, count(*) AS n, min(seq) AS seq FROM ({ids}) ids GROUP BY id"
    )

    # whom each message names (`rules.message_person`), and how (`rules.resolve_identifier`):
    # `named` keeps the identifies and the events that may name someone by email or
    # cio_id (what the steps below read again and again); the events are named once, as
    # they are staged (at 20M records, every event kept in `named` was written out beyond
    # memory and read back)
    db.table("named", _named(db, f"identifies OR {identity.may_not_be_id_sql('user_id')}"))
    # An email names the person who has it: the first who had it — the person an email
    # created (sent as the userId), or the first userId that sent it as traits.email
    # (later ones cannot take it from them). Emails compare folded (`rules.fold`).
    trait_key = db.fold("trait_email")
    db.table(
        "email_claims",
        f"""
        SELECT email, who AS holder, seq, false AS by_trait FROM named WHERE email IS NOT NULL
        UNION ALL
        SELECT {trait_key}, who, seq, true FROM named
        WHERE identifies AND by_id AND trait_email IS NOT NULL
        """,
    )
    db.table(
        "email_holders",
        """
        SELECT email, holder, seq FROM (
            SELECT email, holder, seq,
                   row_number() OVER (PARTITION BY email ORDER BY seq) AS claim
            FROM email_claims
            -- only emails some message names someone by
            WHERE email IN (SELECT email FROM named WHERE email IS NOT NULL)
        ) ranked WHERE claim = 1
        """,
    )
    events = _named(db, "NOT identifies")
    # A person named by cio_id is the one the workspace created in that place: people are
    # created in the order they are first named (`rules.cio_id_of`); a cio_id that names
    # no one yet names no one (the replay refuses the call). Only the messages naming
    # someone by cio_id look people up (a join of every message with every person would
    # hold the people in memory beside all the messages), and without such a message no
    # one is numbered (nor are the events read for whom they name first).
    by_cio_id = bool(db.rows("SELECT count(*) FROM named WHERE by_cio_id")[0][0])
    if by_cio_id:
        db.table(
            "people",
            f"""
            SELECT person, created,
                   {identity.cio_id_of_sql("row_number() OVER (ORDER BY created)")} AS cio_id
            FROM (SELECT named_person AS person, min(seq) AS created FROM (
                      SELECT named_person, seq FROM ({_people_by_id("named")}) n
                      UNION ALL
                      SELECT named_person, seq FROM ({_people_by_id(f"({events})")}) e
                  ) firsts WHERE named_person IS NOT NULL GROUP BY named_person) p
            """,
        )
    db.table(
        "staged_events",
        f"""
        SELECT seq, coalesce(message_id, 'seq:' || seq) AS event_id, person,
               CASE WHEN who IS NULL THEN anonymous_id END AS anonymous_id,
               received_at, timestamp, coalesce(source, 'unknown') AS source
        FROM ({_people_named(f"({events})", by_cio_id)}) n
        WHERE person IS NOT NULL OR who IS NULL
        """,
    )
    db.release_staged()  # the steps below read `named` and the staged events, not `staged`
    db.table(
        "staged_identifies",
        f"""
        SELECT seq, person, anonymous_id, message_id, received_at
        FROM ({_people_named("named", by_cio_id)}) n WHERE identifies AND person IS NOT NULL
        """,
    )
    # what placing reads is staged: the steps' own tables make room for it
    db.drop(*(["people"] if by_cio_id else []), "email_holders", "named")
    return records


def _named(db: Engine, where: str) -> str:
    """SQL: the staged messages for which `where` holds (SQL over `staged`), each with
    whom it names and how: `who` (`rules.message_person`), `by_id`, `by_cio_id` and,
    when by email, its folded `email` (`rules.resolve_identifier`)."""
    who = identity.message_person_sql("identifies", "user_id", "anonymous_id", "trait_email")
    return f"""
        -- the kind as the steps below ask it: a byte each a row, where its name took 16
        SELECT seq, identifies, who, anonymous_id, message_id, received_at, source,
               timestamp, trait_email,
               kind = '{IdentifierKind.ID}' AS by_id, kind = '{IdentifierKind.CIO_ID}' AS by_cio_id,
               CASE WHEN kind = '{IdentifierKind.EMAIL}' THEN {db.fold("who")} END AS email
        FROM (SELECT *, {identity.kind_sql("who")} AS kind
              FROM (SELECT seq, identifies, {who} AS who, anonymous_id, message_id,
                           received_at, source, timestamp, trait_email
                    FROM (SELECT seq, identifies, {db.stripped("user_id")} AS user_id,
                                 {db.stripped("anonymous_id")} AS anonymous_id,
                                 {db.stripped("message_id")} AS message_id, received_at, source,
                                 coalesce(happened, received_at) AS timestamp,
                                 {db.stripped("trait_email")} AS trait_email
                          FROM staged
                          WHERE op IS NULL AND seq NOT IN (SELECT seq FROM refused)
                            AND placed AND ({where})) s) w) k
        """


def _people_by_id(named: str) -> str:
    """SQL: the `named` messages (a table, or a query in parentheses), each with the
    person its identifier names when not by cio_id (`named_person`): by email, whoever
    holds that email (`email_holders`) by then."""
    return f"""
        SELECT n.*, CASE WHEN n.by_cio_id THEN NULL
                         WHEN n.email IS NULL THEN n.who ELSE coalesce(h.holder, n.who) END
                    AS named_person
        FROM {named} n LEFT JOIN email_holders h ON h.email = n.email AND h.seq <= n.seq
        """


def _people_named(named: str, by_cio_id: bool) -> str:
    """SQL: the `named` messages that name someone or carry an anonymous id, each with
    its `person` (by cio_id: the person the workspace created in that place, `people`)."""
    found = f"""
        SELECT n.*, n.named_person AS person FROM ({_people_by_id(named)}) n
        WHERE NOT n.by_cio_id AND (n.who IS NOT NULL OR n.anonymous_id IS NOT NULL)
        """
    if not by_cio_id:
        return found
    return f"""{found}
        UNION ALL
        SELECT n.*, p.person FROM ({_people_by_id(named)}) n
        LEFT JOIN people p ON p.cio_id = substr(n.who, 5) AND p.created < n.seq
        WHERE n.by_cio_id
        """


def _check_settings(db: Engine) -> None:
    """Settings records are taken before the first message, when they leave merging on
    (the set-based pass places with merging on); anywhere else they are refused."""
    first = db.rows("SELECT min(seq) FROM staged WHERE op IS NULL")[0][0]
    merge_on = True
    for file, seq, record, merge, created in db.rows(
        "SELECT file, seq, record, anonymous_merge, created_at FROM staged "
        "WHERE op = 'settings' ORDER BY seq"
    ):
        if first is not None and seq > first:
            raise AuditError(
                f"{file}: record {record} changes settings in the middle of the stream; "
                "replay it with `cio-anon replay` instead."
            )
        if merge is not None:
            merge_on = merge == "true"
        elif created is not None:
            merge_on = rules.default_anonymous_merge(parse_time(created, what="created_at"))
    if not merge_on:
        raise AuditError(
            "The exports turn anonymous merging off; audit places with merging on (replay "
            "them with `cio-anon replay`)."
        )
