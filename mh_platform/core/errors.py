"""Domain errors. The web layer maps them to HTTP; the CLI to one clear line and exit code."""

from __future__ import annotations


class DomainError(Exception):
    """Base of every error the domain raises on purpose."""

    code = "domain_error"


class NotFound(DomainError):
    """Missing, or outside the caller's scope: the two must look the same (404)."""

    code = "not_found"


class Forbidden(DomainError):
    """In scope but the role may not do this (403). Never used where it would reveal existence."""

    code = "forbidden"


class InvalidTransition(DomainError):
    """A state change the declared transition table does not allow."""

    code = "invalid_transition"


class ValidationFailed(DomainError):
    """Input that breaks a rule; ``errors`` lists what and where."""

    code = "validation_failed"

    def __init__(self, message: str, errors: list[dict] | None = None) -> None:
        super().__init__(message)
        self.errors = errors or []


class Conflict(DomainError):
    """The object changed under us (lost a conditional update, duplicate)."""

    code = "conflict"
