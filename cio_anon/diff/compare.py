"""Two runs' outcomes held side by side: the events whose person, status, rule or
campaign eligibility changed, the events only one run has, and the counts per rule and
per person.

Events are matched by message id where both runs carry the same ids (a replayed
fixture), and otherwise by key (`anon#1 / Checkout Started / 1`): the same journey, the
same name, the same occurrence. Events of different names may be reordered freely; two
events of one name in one journey are matched in the order they came.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from cio_anon.diff.outcomes import Outcome, Outcomes


@dataclass(frozen=True)
class Change:
    before: Outcome
    after: Outcome

    @property
    def what(self) -> list[str]:
        """Which of person, status, rule and campaign eligibility changed."""
        names = ("person", "status", "rule", "campaign")
        pairs = zip(names, self.before.verdict(), self.after.verdict(), strict=True)
        return [name for name, was, now in pairs if was != now]


@dataclass
class Diff:
    base: Outcomes
    new: Outcomes
    matched_by: str
    """"message id" or "journey": how events were paired."""
    changed: list[Change] = field(default_factory=list)
    unchanged: int = 0
    added: list[Outcome] = field(default_factory=list)
    missing: list[Outcome] = field(default_factory=list)

    @property
    def differs(self) -> bool:
        """Whether any matched event's outcome changed (what fails a CI run)."""
        return bool(self.changed)

    def rules(self) -> dict[str, tuple[int, int]]:
        """Events per rule, before and after, for the rules whose count changed."""
        before = Counter(o.rule for o in self.base.events)
        after = Counter(o.rule for o in self.new.events)
        return {
            rule: (before[rule], after[rule])
            for rule in sorted(before.keys() | after.keys())
            if before[rule] != after[rule]
        }

    def people(self) -> dict[str, tuple[int, int]]:
        """Events per person, before and after, for the people whose count changed."""
        before = Counter(o.person for o in self.base.events if o.person is not None)
        after = Counter(o.person for o in self.new.events if o.person is not None)
        return {
            person: (before[person], after[person])
            for person in sorted(before.keys() | after.keys())
            if before[person] != after[person]
        }


def compare(base: Outcomes, new: Outcomes) -> Diff:
    shared = {o.event_id for o in base.events} & {o.event_id for o in new.events}
    by_id = bool(shared)

    def key(outcome: Outcome) -> str:
        return outcome.event_id if by_id else outcome.key

    before = {key(o): o for o in base.events}
    after = {key(o): o for o in new.events}
    diff = Diff(base, new, "message id" if by_id else "journey")
    for outcome in new.events:
        old = before.get(key(outcome))
        if old is None:
            diff.added.append(outcome)
        elif old.verdict() != outcome.verdict():
            diff.changed.append(Change(old, outcome))
        else:
            diff.unchanged += 1
    diff.missing = [o for o in base.events if key(o) not in after]
    return diff
