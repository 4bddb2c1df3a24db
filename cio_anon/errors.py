"""The exceptions domain code raises. Each carries the HTTP status `serve` answers it
with (as Click's exceptions carry their exit code); the CLI turns any of them into one
sentence on stderr and exit 1."""

from __future__ import annotations


class CioAnonError(Exception):
    """A request that was understood but refused or failed: one sentence for the user."""

    status = 400


class InvalidInput(CioAnonError):
    """Input that cannot be used: malformed JSON, an unparseable time, a bad identifier."""


class RuleViolation(CioAnonError):
    """Input that breaks a Customer.io rule; carries the rule code (e.g. `limit_exceeded`)."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(message)
        self.rule = rule


class NotFound(CioAnonError):
    """A person, event or workspace that does not exist."""

    status = 404


class WorkspaceError(CioAnonError):
    """The workspace file cannot be used: missing, not ours, or from a newer version."""

    status = 503


class WorkspaceBusy(WorkspaceError):
    """Another process held the workspace's lock longer than the wait: nothing was
    changed, and the same call may be made again (`serve` says when: Retry-After)."""

    headers = {"Retry-After": "1"}
