"""`cio-anon check`: fixtures replayed into a throwaway workspace and judged (`run`),
against tracking plans in three dialects (`plans`), reported for people and for CI
(`report`)."""

from cio_anon.check.run import Report, check, infer_plan

__all__ = ["Report", "check", "infer_plan"]
