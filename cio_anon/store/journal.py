"""The journal: every call that changed the workspace, as the fixture record that
replays it (written through `Store.add_journal_rows`; read and rewritten here)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cio_anon import jsonio
from cio_anon.clock import from_unix
from cio_anon.store.base import Store

_JOURNAL_COLUMNS = "seq, at, kind, record, people, anonymous_id"


@dataclass(frozen=True)
class JournalEntry:
    """One call that changed the workspace: its receive time and its fixture record."""

    seq: int
    at: datetime
    kind: str
    record: str
    """The record as JSON text, without its `at`."""
    people: tuple[str, ...]
    anonymous_id: str | None


@dataclass(frozen=True)
class JournalRewrite:
    """A new fixture record for the journal entry at `seq` (`kind`: its operation's class
    name; `anonymous_id`, when given, the id the entry is now about), or, without a
    record, the entry's removal."""

    seq: int
    kind: str = ""
    record: dict[str, Any] | None = None
    anonymous_id: str | None = None


class JournalTables(Store):
    """Reading and rewriting the journal."""

    def journal_tracks(self, anonymous_ids: Sequence[str]) -> Iterator[JournalEntry]:
        """The journal's tracked events sent with one of `anonymous_ids`, oldest first."""
        self._flush_journal()
        for start in range(0, len(anonymous_ids), 500):
            chunk = anonymous_ids[start : start + 500]
            marks = ", ".join("?" * len(chunk))
            cursor = self.conn.execute(
                f"SELECT {_JOURNAL_COLUMNS} FROM journal "
                f"WHERE kind = 'Track' AND anonymous_id IN ({marks}) ORDER BY seq",
                chunk,
            )
            for row in cursor:
                yield self._journal_entry(row)

    def journal(
        self,
        *,
        merges_and: Sequence[str] | None = None,
        anonymous_ids: Sequence[str] = (),
        mentioning: Sequence[str] = (),
    ) -> Iterator[JournalEntry]:
        """The journal, oldest first. With `merges_and` (cio_ids): only the profile merges,
        the entries naming one of those people, those about `anonymous_ids` and those whose
        record holds one of the texts `mentioning` — what forgetting a deleted person
        needs, without reading the whole journal."""
        self._flush_journal()
        where, params = "", []
        if merges_and is not None:
            named = " OR ".join(
                ["instr(' ' || people || ' ', ' ' || ? || ' ') > 0"] * len(merges_and)
            )
            told = "".join([" OR instr(lower(record), ?) > 0"] * len(mentioning))
            marks = ", ".join("?" * len(anonymous_ids))
            where = (
                f"WHERE kind = 'MergePeople' OR {named or '0'} OR anonymous_id IN ({marks})" + told
            )
            params = [*merges_and, *anonymous_ids, *(text.lower() for text in mentioning)]
        cursor = self.conn.execute(
            f"SELECT {_JOURNAL_COLUMNS} FROM journal {where} ORDER BY seq",
            params,
        )
        for row in cursor:
            yield self._journal_entry(row)

    @staticmethod
    def _journal_entry(row: sqlite3.Row) -> JournalEntry:
        return JournalEntry(
            row["seq"],
            from_unix(row["at"]),
            row["kind"],
            row["record"],
            tuple((row["people"] or "").split()),
            row["anonymous_id"],
        )

    def rewrite_journal(self, rewrites: Iterable[JournalRewrite]) -> None:
        """Replace entries' records, or (no record) remove the entries."""
        for rewrite in rewrites:
            if rewrite.record is None:
                self.conn.execute("DELETE FROM journal WHERE seq = ?", (rewrite.seq,))
            else:
                # the anonymous id the entry is about follows its new record's
                self.conn.execute(
                    "UPDATE journal SET kind = ?, record = ?, "
                    "anonymous_id = coalesce(?, anonymous_id) WHERE seq = ?",
                    (
                        rewrite.kind,
                        jsonio.dumps(rewrite.record),
                        rewrite.anonymous_id,
                        rewrite.seq,
                    ),
                )
