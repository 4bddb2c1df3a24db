"""`cio-anon diff`: did a change alter who the events belong to? Two recordings of one
journey replayed and explained (`outcomes`), matched event by event (`compare`), and
reported for people and for CI (`report`)."""

from cio_anon.diff.compare import Change, Diff, compare
from cio_anon.diff.outcomes import Outcome, Outcomes, load

__all__ = ["Change", "Diff", "Outcome", "Outcomes", "compare", "load"]
