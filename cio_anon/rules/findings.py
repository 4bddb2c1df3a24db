"""What `check` and `audit` report: one list of finding codes, each with its severity
and the fix it suggests, and the finding itself. A code means one thing whichever
command finds it."""

from __future__ import annotations

from dataclasses import dataclass

SEVERITIES = ("error", "warning")

CODES: dict[str, tuple[str, str]] = {
    # code: (severity, one-line fix hint)
    "unplanned_event": ("error", "Add the event to the plan, or stop sending it."),
    "required_missing": ("error", "Send the property, or mark it optional in the plan."),
    "type_mismatch": ("error", "Send the type the plan names (or change the plan)."),
    "additional_property": ("error", "Add the property to the plan, or stop sending it."),
    "value_mismatch": ("error", "Send a value the plan allows (enum, pattern, range)."),
    "naming_case": ("warning", "Rename to the plan's naming convention."),
    "near_duplicate_name": ("warning", "Pick one spelling and send it from every surface."),
    "dynamic_name": ("error", "Keep identifiers out of names: put them in properties."),
    "type_drift": ("warning", "Send one type for the property everywhere."),
    "pii_suspected": ("warning", "Mark the property `pii` in the plan, or stop sending it."),
    "limit_exceeded": ("error", "Stay within Customer.io's documented limits."),
    "missing_schema_version": ("warning", "Add a schema_version property to every event."),
    "empty_cart": ("warning", "Send the cart's items (sku, qty, price) with the event."),
    "placeholder_id": ("error", "Identify only with a real, stable customer id."),
    "email_as_id": ("warning", "Identify by the plan's canonical id; send email as a trait."),
    "anonymous_id_reused": ("error", "Give every device or session its own anonymous id."),
    "late_anonymous_event": ("warning", "Send events with the person's id once identified."),
    "expired_before_identify": ("warning", "Identify within 30 days of the activity."),
    "split_profile": ("warning", "Identify one person under one id on every surface."),
    "stale_trigger": ("warning", "Trigger on identify and look back; the event is too old."),
    "expectation_failed": ("error", "Fix the tracking, or the fixture's expectation."),
    "invalid_record": ("error", "Fix the record: see the message."),
}

PLAN_CODES = frozenset(
    {
        "unplanned_event",
        "required_missing",
        "type_mismatch",
        "additional_property",
        "value_mismatch",
        "naming_case",
        "missing_schema_version",
        "email_as_id",
        "stale_trigger",
    }
)
"""The codes only a tracking plan can find (`check --plan`)."""


def failing(fail_on: str) -> tuple[str, ...]:
    """The severities that fail a run at `fail_on` (error, or warning: both)."""
    return SEVERITIES[: SEVERITIES.index(fail_on) + 1]


@dataclass(frozen=True)
class Finding:
    code: str
    file: str
    line: int
    message: str
    event: str | None = None
    path: str | None = None
    message_id: str | None = None
    """The messageId of the call it is about, when it names one: a recorded request
    holds many calls on one line."""

    @property
    def severity(self) -> str:
        return CODES[self.code][0]

    @property
    def hint(self) -> str:
        return CODES[self.code][1]
