"""The engines an audit runs on, as the shared steps see them (`Engine`): DuckDB
(`duckdb_engine`, embedded, the default) and Spark (`spark_engine`) each read the
exports its own way into one staged shape (`Engine.load`, from what `reading` says a
record holds), and give the few SQL expressions whose dialects differ."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from cio_anon.audit.exports import AuditError, Export
from cio_anon.rules import identity

ENGINES = ("duckdb", "spark")
Progress = Callable[[str, float | None], None]
"""Told what an audit is doing: the step, and how far its running statement is (0 to 1;
None where the engine cannot say)."""
Notice = Callable[[str], None]
"""Told, in a sentence, what the user should know while the audit goes on (a cluster
that gives it no executor)."""


class Engine:
    """What differs between engines: reading the exports into `staged` (seq, record,
    file, the FIELDS, received_at, happened), naming tables, timestamps, writing
    Parquet. Everything else is the shared SQL below."""

    name = ""
    title = ""
    """The engine's name in a sentence."""
    errors: tuple[type[Exception], ...] = ()
    """What the engine itself raises when it fails (not for the input: that is said as
    an AuditError where it is found)."""
    progress: Progress | None = None
    notice: Notice | None = None
    step = ""

    _scratch: Path | None = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        """Close; a failure of the engine's own (not the input's) said in a sentence.
        Closing after a failure may fail too (an engine that died): the first is said."""
        try:
            self.close()
        except Exception as closing:
            if error is None:
                said = self.failure(closing)
                if said is None:
                    raise
                raise AuditError(said) from None
        if isinstance(error, Exception):
            said = self.failure(error)
            if said is not None:
                raise AuditError(said) from None

    def failure(self, error: Exception) -> str | None:
        """The sentence for an error the engine itself raised, or None for another (an
        AuditError says itself)."""
        if not isinstance(error, self.errors) or isinstance(error, AuditError):
            return None
        where = f"while {self.step[0].lower()}{self.step[1:]}" if self.step else "at the start"
        return f"{self.title} failed {where}: {self._reason(error)}."

    def _reason(self, error: Exception) -> str:
        """What went wrong, from one of the engine's errors."""
        return first_line(str(error)).rstrip(".")

    def scratch(self) -> Path:
        """A folder of the engine's own, removed when it closes (Spark reads lazily)."""
        if self._scratch is None:
            self._scratch = Path(tempfile.mkdtemp(prefix="cio-anon-audit-"))
        return self._scratch

    def _remove_scratch(self) -> None:
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)

    def begin(self, step: str) -> None:
        """Say that a new step starts (to `progress`, if anyone listens)."""
        self.step = step
        if self.progress is not None:
            self.progress(step, None)

    def load(self, exports: Sequence[Export]) -> int:
        raise NotImplementedError

    def table(self, name: str, select: str) -> None:
        """Keep a query's rows as a table."""
        raise NotImplementedError

    def view(self, name: str, select: str) -> None:
        """A name for a query, computed where it is used (not stored)."""
        raise NotImplementedError

    def drop(self, *names: str) -> None:
        """Forget tables and views no step reads any more (their memory is the next
        steps' to use)."""
        raise NotImplementedError

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def located(self, seqs: Sequence[int]) -> dict[int, tuple[str, int]]:
        """Where each of these staged rows was read (seq → file, record)."""
        if not seqs:
            return {}
        listed = ", ".join(str(seq) for seq in sorted(set(seqs)))
        rows = self.rows(f"SELECT seq, file, record FROM staged WHERE seq IN ({listed})")
        return {int(seq): (str(file), int(record)) for seq, file, record in rows}

    def release_staged(self) -> None:
        """Let the staged rows go once the steps have read what they need of them; only
        `located` reads them after (an engine that keeps them answers from them)."""

    raw = ""
    """The table of every record's JSON text by seq."""
    refused: list[tuple[int, str, int, str]] = []
    """The records Customer.io would refuse for a limit (see `refusals`)."""
    all_plain = False
    """Whether every identifier staged is printable ASCII (`identity.PLAIN`): then the
    identity forms are SQL's own trim and lower (see `identity.fold_sql`)."""

    # -- the identity rules' SQL forms, as this engine and its data need them ----------

    def fold(self, text: str) -> str:
        """SQL: `rules.fold(text)`."""
        return identity.fold_sql(text, self.matches, all_plain=self.all_plain)

    def stripped(self, text: str) -> str:
        """SQL: `rules.stripped(text)`."""
        return identity.stripped_sql(text, self.matches, all_plain=self.all_plain)

    def is_placeholder(self, text: str) -> str:
        """SQL: `rules.is_placeholder(text)`."""
        return identity.is_placeholder_sql(text, self.matches, all_plain=self.all_plain)

    def moment(self, seconds: str) -> str:
        """The SQL turning Unix seconds into a timestamp (UTC)."""
        raise NotImplementedError

    def matches(self, text: str, pattern: str) -> str:
        """The SQL for whether `text` matches a regular expression whole."""
        raise NotImplementedError

    def size(self, text: str) -> str:
        """The SQL for a text's size in UTF-8 bytes."""
        raise NotImplementedError

    def key(self, text: str) -> str:
        """The SQL for a cheap key of a text, equal for equal texts (a 64-bit hash: two
        texts may share one, so whoever groups by it compares the texts too)."""
        raise NotImplementedError

    def longest_key(self, json_object: str) -> str:
        """The SQL for the size of a JSON object's longest key, in UTF-8 bytes."""
        raise NotImplementedError

    def gives_twice(self, json: str, parent: str, keys: Sequence[str]) -> str:
        """The SQL for whether the object at JSON path `parent` of a JSON text gives one
        of `keys` twice."""
        raise NotImplementedError

    def rows_table(self, name: str, columns: str, rows: list[tuple[Any, ...]]) -> None:
        """A table of rows made here (`columns`: its SQL column definitions)."""
        raise NotImplementedError

    def write_parquet(self, select: str, path: Path) -> None:
        """Write a query's rows to `path`, one Parquet file."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


def first_line(text: str) -> str:
    """The first line of an error's text (what follows is a stack, or the SQL it quotes)."""
    return text.strip().splitlines()[0] if text.strip() else text
