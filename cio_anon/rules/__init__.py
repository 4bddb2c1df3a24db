"""Customer.io's anonymous-activity rules as pure decisions.

Plain values and an explicit `now` go in; a `Decision` with a rule code (as the spec
spells it) and the facts it used comes out. Nothing here reads the clock, the disk or
the workspace, so every rule can be tested with a table of times.

One module per family of rules, each rule written once: `codes` (the codes, the shapes
of a decision, the times), `identity` (who a call names), `limits`, `placement` (where
an event belongs), `campaigns`, `attributes`, `findings` (what `check` and `audit`
report). Where a set-based engine needs a rule as SQL, its SQL form stands beside its
Python form, in the same module. This face hands the names on: `rules.placement_rule`.
"""

from cio_anon.rules.attributes import (
    AttributeChange,
    apply_attributes,
    change_identifier,
    fill_missing,
    inherits,
    is_removal,
)
from cio_anon.rules.campaigns import (
    campaign_eligibility,
    campaign_rule,
    can_trigger,
    invite_campaign,
)
from cio_anon.rules.codes import (
    CAMPAIGN_WINDOW,
    MERGE_ON_BY_DEFAULT_SINCE,
    MERGE_WINDOW,
    RETENTION,
    RULE_SENTENCES,
    Assignment,
    Decision,
    EventType,
    Facts,
    Placement,
    Provenance,
    Rule,
    default_anonymous_merge,
)
from cio_anon.rules.identity import (
    IdentifierKind,
    email_key,
    fold,
    is_placeholder,
    message_person,
    resolve_identifier,
)
from cio_anon.rules.limits import (
    ATTRIBUTE_NAME_MAX_BYTES,
    ATTRIBUTE_VALUE_MAX_BYTES,
    ATTRIBUTES_PER_CALL_MAX,
    EVENT_DATA_MAX_BYTES,
    EVENT_NAME_MAX_BYTES,
    IDENTIFIER_MAX_BYTES,
    check_attribute_limits,
    check_event_limits,
    check_identifier_limit,
)
from cio_anon.rules.placement import (
    Placed,
    classify_unattached,
    decide_assignment,
    decide_pending,
    is_expired,
    pending_rule,
    place_anonymous_event,
    place_event,
    placement_rule,
    recorded_placement,
    retention_cutoff,
    retention_deadline,
)

__all__ = [
    "ATTRIBUTES_PER_CALL_MAX",
    "ATTRIBUTE_NAME_MAX_BYTES",
    "ATTRIBUTE_VALUE_MAX_BYTES",
    "CAMPAIGN_WINDOW",
    "EVENT_DATA_MAX_BYTES",
    "EVENT_NAME_MAX_BYTES",
    "IDENTIFIER_MAX_BYTES",
    "MERGE_ON_BY_DEFAULT_SINCE",
    "MERGE_WINDOW",
    "RETENTION",
    "RULE_SENTENCES",
    "Assignment",
    "AttributeChange",
    "Decision",
    "EventType",
    "Facts",
    "IdentifierKind",
    "Placement",
    "Provenance",
    "Rule",
    "apply_attributes",
    "campaign_eligibility",
    "campaign_rule",
    "can_trigger",
    "change_identifier",
    "check_attribute_limits",
    "check_event_limits",
    "check_identifier_limit",
    "classify_unattached",
    "decide_assignment",
    "decide_pending",
    "default_anonymous_merge",
    "email_key",
    "fold",
    "fold",
    "fill_missing",
    "inherits",
    "is_placeholder",
    "is_placeholder",
    "invite_campaign",
    "is_expired",
    "is_removal",
    "message_person",
    "message_person",
    "pending_rule",
    "place_anonymous_event",
    "Placed",
    "place_event",
    "placement_rule",
    "recorded_placement",
    "resolve_identifier",
    "retention_cutoff",
    "retention_deadline",
]
