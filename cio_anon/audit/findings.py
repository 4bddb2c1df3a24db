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
    reused = db.rows(
        "WITH claims AS (SELECT anonymous_id, person, seq, first_value(person) OVER "
        "(PARTITION BY anonymous_id ORDER BY seq) AS owner FROM staged_identifies "
        "WHERE anonymous_id IS NOT NULL) "
        "SELECT anonymous_id, count(DISTINCT person) + 1 AS people, min(seq) AS seq "
        "FROM claims WHERE person != owner GROUP BY anonymous_id "
        "ORDER BY people DESC, anonymous_id LIMIT 50"
    )
    placeholders = db.rows("SELECT id, n, seq FROM placeholder_ids ORDER BY n DESC, id")
    # as a replay finds it: an identify sends, as its traits.email, an email that another
    # person already has (from an earlier traits.email, or as the userId that created them)
    split = db.rows(
        "WITH owners AS (SELECT email, holder, seq, by_trait, first_value(holder) OVER "
        "(PARTITION BY email ORDER BY seq) AS first FROM email_claims) "
        "SELECT email, count(DISTINCT holder) + 1 AS people, min(seq) AS seq "
        "FROM owners WHERE by_trait AND holder != first GROUP BY email "
        "ORDER BY people DESC, email LIMIT 50"
    )
    late = db.rows(
        "SELECT sum(n) AS n, min(seq) AS seq FROM placed_counts WHERE rule = 'window_closed'"
    )[0]
    where = db.located(
        [int(seq) for *_, seq in reused + placeholders + split + [late] if seq is not None]
    )
    for anonymous_id, people, seq in reused:
        message = (
            f"anonymous_id {anonymous_id!r} was identified to {people} people; only the first "
            "got its events."
        )
        found.append(Finding("anonymous_id_reused", *where[int(seq)], message))
    for value, count, seq in placeholders:
        message = f"{count:,} record(s) use the placeholder id {value!r}."
        found.append(Finding("placeholder_id", *where[int(seq)], message))
    for email, people, seq in split:
        message = (
            f"the email {email!r} is sent as a trait under {people} userIds: one person, "
            "split across profiles."
        )
        found.append(Finding("split_profile", *where[int(seq)], message))
    if late[0]:
        message = (
            f"{late[0]:,} anonymous event(s) arrived after the 5-minute window that followed "
            "their identify: they stay anonymous."
        )
        found.append(Finding("late_anonymous_event", *where[int(late[1])], message))
    return found
