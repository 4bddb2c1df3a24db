"""What a recording's events come to: each replayed into a throwaway workspace and
explained, with its identifiers normalised so that two runs of one journey, made with
fresh anonymous ids, message ids and users each time, can be held side by side.

Normalising: anonymous ids are numbered in the order they first appear among the events
(`anon#1`, `anon#2`, ...), people in the order they were created (`user#1`, ...: a
person is created by the first call that names them). An event's *journey* is its
anonymous id's label (or, sent with a user alone, its person's), and its *key* is the
journey, its name (a page's: its URL's path) and how many events of that name came
before it in that journey: `anon#1 / Product Viewed / 2`.

Outcomes can be written to a file and read back (`--accept`): the expected outcomes a
team keeps beside its tests.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cio_anon import service
from cio_anon.errors import InvalidInput
from cio_anon.ingest.fixtures import files_named, read_document
from cio_anon.models import Event
from cio_anon.present.documents import facts_json
from cio_anon.present.words import duration_text
from cio_anon.replay import ReplaySummary, replay
from cio_anon.rules import MERGE_WINDOW, Assignment
from cio_anon.store import Workspace

FORMAT = "cio-anon outcomes"
FORMAT_VERSION = 1
SUFFIXES = (".ndjson", ".jsonl", ".json", ".ndjson.gz", ".jsonl.gz", ".json.gz")


@dataclass(frozen=True)
class Outcome:
    """Where one event ended up, in words that hold across runs."""

    key: str
    """`journey / name / occurrence`: the event's place in its run, for matching."""
    event_id: str
    name: str
    journey: str
    person: str | None
    """The person's label (`user#1`), None while anonymous."""
    status: str
    """identified, anonymous or invite, as `explain` says."""
    rule: str
    can_trigger: bool
    """Whether it can trigger campaigns (an anonymous event cannot)."""
    reason: str
    """`explain`'s sentence."""
    facts: dict[str, Any]
    """`explain`'s facts, times as Unix seconds."""
    timeline: str
    """The facts that matter, relative to the event: when its id was identified."""
    source: str | None

    def verdict(self) -> tuple[str | None, str, str, bool]:
        """What a change is judged on: person, status, rule, campaign eligibility."""
        return (self.person, self.status, self.rule, self.can_trigger)


@dataclass
class Outcomes:
    """A run's outcomes, in stream order; `origin` names what was replayed."""

    origin: list[str]
    events: list[Outcome] = field(default_factory=list)
    records: int = 0
    left_out: list[str] = field(default_factory=list)
    """The calls the run's replay refused, as Customer.io would (`FILE:LINE: why`); not
    kept in an outcomes file."""

    def by_key(self) -> dict[str, Outcome]:
        return {outcome.key: outcome for outcome in self.events}

    def as_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "origin": self.origin,
            "records": self.records,
            "events": [asdict(outcome) for outcome in self.events],
        }


def load(paths: Sequence[Path], now: datetime) -> Outcomes:
    """The outcomes of a recording (files or folders of NDJSON, gzipped too), or those
    kept in an outcomes file written by `--accept`."""
    if len(paths) == 1 and _is_outcomes_file(paths[0]):
        return _read_outcomes(paths[0])
    return replayed(files_named([str(p) for p in paths], SUFFIXES, "recordings"), now)


def replayed(files: Sequence[Path], now: datetime) -> Outcomes:
    """Replay `files` into a throwaway workspace (created `now`, the receive time of a
    record that gives none) and explain every event, judged at the run's last receive
    time: an old recording is judged as it stood then, not as it has aged since."""
    with tempfile.TemporaryDirectory(prefix="cio-anon-diff-") as folder:
        with service.opened(Path(folder) / "run.db", now, write=True) as workspace:
            summary = replay(workspace, now, files, keep_going=True)
            _refuse_unreadable(summary)
            events = list(workspace.events_in_order())
            judged = max((e.received_at for e in events), default=now)
            outcomes = Outcomes([str(f) for f in files], records=summary.tally.records)
            # refused now, or by the server when it recorded them: stored neither way
            outcomes.left_out = [str(problem) for problem in summary.left_out]
            outcomes.events = list(_explained(workspace, judged, events))
    return outcomes


def _explained(workspace: Workspace, now: datetime, events: list[Event]) -> Iterable[Outcome]:
    sessions = _sessions(workspace, events)
    anonymous = _numbered(session for session in sessions if session is not None)
    people = {ref.cio_id: f"user#{n}" for n, ref in enumerate(workspace.people_in_order(), 1)}
    seen: Counter[tuple[str, str]] = Counter()
    claims = workspace.anonymous_claims()  # once, not a reading of every person an event
    for event, session in zip(events, sessions, strict=True):
        why = service.explain(workspace, now, event_id=event.event_id, claims=claims)
        person = None if why.person is None else people.get(why.person.cio_id, "user#?")
        if session is not None:
            journey = anonymous[session]
        elif event.cio_id is not None:
            journey = people.get(event.cio_id, "user#?")
        else:
            journey = "invite"
        # the facts, with ids in the run's own words (labels, as the outcome's)
        facts = facts_json(why.decision.facts)
        for key, labels in (("anonymous_id", anonymous), ("assigned_to", people)):
            value = facts.get(key)
            if isinstance(value, str):
                facts[key] = labels.get(value, value)
        yield Outcome(
            key=_key(seen, journey, event.name),
            event_id=event.event_id,
            name=event.name,
            journey=journey,
            person=person,
            status=why.status,
            rule=str(why.decision.rule),
            can_trigger=event.can_trigger,
            reason=why.decision.reason,
            facts=facts,
            timeline=timeline(why.decision.facts),
            source=why.source,
        )


def _key(seen: Counter[tuple[str, str]], journey: str, name: str) -> str:
    """The next event's key, counting in `seen` the events of each journey and name:
    `anon#1 / Checkout Started / 2`. A page (named by its URL, as Customer.io names it)
    is known by the URL's path: two runs of one journey made against another host or
    port (a preview deploy, a dev server on a port of its own) hold the same pages."""
    place = urlsplit(name)
    if place.scheme in ("http", "https") and place.netloc:
        name = place.path or "/"
    seen[(journey, name)] += 1
    return f"{journey} / {name} / {seen[(journey, name)]}"


def timeline(facts: Mapping[str, object]) -> str:
    """The facts that explain a placement, relative to the event: when its anonymous id
    was identified, and when the window closed."""
    received, assigned = facts.get("received_at"), facts.get("assigned_at")
    if not isinstance(received, datetime):
        return ""
    if not isinstance(assigned, datetime):
        return "its anonymous id was not identified"
    gap = (assigned - received).total_seconds()
    if gap == 0:
        return "received with the identify, at the same moment"
    if gap > 0:
        return f"identified {duration_text(gap)} after this event was received"
    where = "past" if -gap > MERGE_WINDOW.total_seconds() else "inside"
    return f"received {duration_text(-gap)} after the identify, {where} the 5m window"


def _sessions(workspace: Workspace, events: list[Event]) -> list[str | None]:
    """The anonymous id whose journey each event is in: its own; for a person's event
    (a call with a userId is the person's, and the anonymous id it also carried, as a
    browser SDK's always does, is not kept with it), the one the person was last assigned
    by the time it was received; None for an event of neither. So a checkout sent before
    the identify and one sent after it are the same journey's."""
    assigned: dict[str, list[Assignment]] = {}
    sessions: list[str | None] = []
    for event in events:
        session = event.anonymous_id
        if session is None and event.cio_id is not None:
            if event.cio_id not in assigned:
                assigned[event.cio_id] = workspace.assignments_of(event.cio_id)
            earlier = [a for a in assigned[event.cio_id] if a.assigned_at <= event.received_at]
            session = earlier[-1].anonymous_id if earlier else None
        sessions.append(session)
    return sessions


def _numbered(values: Iterable[str]) -> dict[str, str]:
    labels: dict[str, str] = {}
    for value in values:
        labels.setdefault(value, f"anon#{len(labels) + 1}")
    return labels


def _refuse_unreadable(summary: ReplaySummary) -> None:
    """A recording that cannot be read to its end (a damaged gzip, a copy cut off in
    the middle of a line) is refused: compared, what it lost would only be missing
    events, and missing events do not fail a diff. Calls the service refuses are left
    out, as `replay --keep-going` leaves them, since Customer.io refuses them too."""
    damaged = next((p for p in summary.invalid if p.unreadable), None)
    if damaged is not None:
        where = damaged.file if damaged.line == 0 else f"{damaged.file}:{damaged.line}"
        raise InvalidInput(
            f"{where}: {damaged.message.rstrip('.')}; diff compares whole recordings."
        )
    if summary.tally.records == 0 and summary.invalid:
        raise InvalidInput(f"Nothing could be replayed: {summary.invalid[0]}")


def _is_outcomes_file(path: Path) -> bool:
    if not path.is_file() or path.name.endswith(".gz"):
        return False
    with path.open("rb") as head:
        start = head.read(200)
    return start.lstrip().startswith(b"{") and FORMAT.encode() in start


def _read_outcomes(path: Path) -> Outcomes:
    doc = read_document(path, FORMAT, FORMAT_VERSION, "cio-anon diff --accept")
    seen: Counter[tuple[str, str]] = Counter()
    events = []
    try:  # keyed as a run is now (a file written before keeps its old keys to itself)
        for item in doc["events"]:
            journey, name = item["journey"], item["name"]
            if not isinstance(journey, str) or not isinstance(name, str):
                raise TypeError(f"an event's journey and name are text: {journey!r}, {name!r}")
            events.append(Outcome(**{**item, "key": _key(seen, journey, name)}))
    except (KeyError, TypeError) as error:
        raise InvalidInput(f"{path}: a damaged outcomes file ({error}).") from None
    return Outcomes(list(doc.get("origin", [str(path)])), events, int(doc.get("records", 0)))
