"""The exceptions domain code raises; only the CLI turns them into exit codes."""

from __future__ import annotations


class CioAnonError(Exception):
    """A request that was understood but refused or failed: one sentence for the user."""


class InvalidInput(CioAnonError):
    """Input that cannot be used: malformed JSON, an unparseable time, a bad identifier."""


class RuleViolation(CioAnonError):
    """Input that breaks a Customer.io rule; carries the rule code (e.g. `limit_exceeded`)."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(message)
        self.rule = rule


class NotFound(CioAnonError):
    """A person, event or workspace that does not exist."""


class WorkspaceError(CioAnonError):
    """The workspace file cannot be used: missing, not ours, or from a newer version."""
