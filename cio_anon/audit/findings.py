"""The identity findings a set-based pass sees, with the finding codes `check` shares
(`rules.findings`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cio_anon.audit.engines import Engine

if TYPE_CHECKING:
    from cio_anon.rules.findings import Finding


def findings(db: Engine) -> list[Finding]:
    """The identity findings a set-based pass sees, each at the first record showing it:
    anonymous ids identified to several people, placeholder ids, one email under several
    userIds (split profiles), late anonymous events."""
    from cio_anon.rules.findings import Finding

    found: list[Finding] = []
    if db.refused:
        _, file, record, why = db.refused[0]
        message = (
            f"{len(db.refused):,} record(s) break Customer.io's limits, so their calls are "
            f"refused and change nothing (an identify among them assigns no anonymous id); "
            f"the first: {why}"
        )
        found.append(Finding("limit_exceeded", file, record, message))
    for anonymous_id, people, file, record in db.rows(
        "WITH claims AS (SELECT anonymous_id, person, seq, first_value(person) OVER "
        "(PARTITION BY anonymous_id ORDER BY seq) AS owner FROM staged_identifies "
        "WHERE anonymous_id IS NOT NULL), "
        "reused AS (SELECT anonymous_id, min(seq) AS seq, count(DISTINCT person) + 1 AS people "
        "FROM claims WHERE person != owner GROUP BY anonymous_id) "
        "SELECT r.anonymous_id, r.people, s.file, s.record FROM reused r "
        "JOIN staged s ON s.seq = r.seq ORDER BY r.people DESC, r.anonymous_id LIMIT 50"
    ):
        message = (
            f"anonymous_id {anonymous_id!r} was identified to {people} people; only the first "
            "got its events."
        )
        found.append(Finding("anonymous_id_reused", file, record, message))
    ids = " UNION ALL ".join(
        f"SELECT {db.fold(column)} AS id, seq FROM staged WHERE {db.is_placeholder(column)}"
        for column in ("user_id", "anonymous_id")
    )
    for value, count, file, record in db.rows(
        f"WITH marked AS (SELECT id, count(*) AS n, min(seq) AS seq FROM ({ids}) ids "
        "GROUP BY id) "
        "SELECT m.id, m.n, s.file, s.record FROM marked m JOIN staged s ON s.seq = m.seq "
        "ORDER BY m.n DESC, m.id"
    ):
        message = f"{count:,} record(s) use the placeholder id {value!r}."
        found.append(Finding("placeholder_id", file, record, message))
    # as a replay finds it: an identify sends, as its traits.email, an email that another
    # person already has (from an earlier traits.email, or as the userId that created them)
    for email, people, file, record in db.rows(
        "WITH owners AS (SELECT email, holder, seq, by_trait, first_value(holder) OVER "
        "(PARTITION BY email ORDER BY seq) AS first FROM email_claims), "
        "split AS (SELECT email, min(seq) AS seq, count(DISTINCT holder) + 1 AS people "
        "FROM owners WHERE by_trait AND holder != first GROUP BY email) "
        "SELECT x.email, x.people, s.file, s.record FROM split x JOIN staged s ON s.seq = x.seq "
        "ORDER BY x.people DESC, x.email LIMIT 50"
    ):
        message = (
            f"the email {email!r} is sent as a trait under {people} userIds: one person, "
            "split across profiles."
        )
        found.append(Finding("split_profile", file, record, message))
    late = db.rows(
        "SELECT count(*) AS n, min(seq) AS seq FROM placements WHERE rule = 'window_closed'"
    )[0]
    if late[0]:
        file, record = db.rows(f"SELECT file, record FROM staged WHERE seq = {int(late[1])}")[0]
        message = (
            f"{late[0]:,} anonymous event(s) arrived after the 5-minute window that followed "
            "their identify: they stay anonymous."
        )
        found.append(Finding("late_anonymous_event", file, record, message))
    return found
