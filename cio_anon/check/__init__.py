"""`cio-anon check`: fixtures replayed into a throwaway workspace and judged (`run`),
against tracking plans in three dialects (`plans`), reported for people and for CI
(`report`)."""

from cio_anon.check.run import Report, accept_known, baseline_json, check, infer_plan

__all__ = ["Report", "accept_known", "baseline_json", "check", "infer_plan"]
