"""Domain errors. The web layer maps them to HTTP; the CLI to one clear line and exit code."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class DomainError(Exception):
    """Base of every error the domain raises on purpose.

    ``template`` is the message as written (an English template, marked with ``core.i18n.N_`` when a
    page can show it) and ``params`` its named ``%(name)s`` values; ``str(exc)`` is the template with
    the values filled in (the API's message and the log text). Pages translate ``template`` instead
    (``web.errors.error_text``).
    """

    code = "domain_error"

    def __init__(self, message: str = "", *, params: Mapping[str, Any] | None = None) -> None:
        self.template = message
        self.params: dict[str, Any] = dict(params or {})
        super().__init__(message % self.params if self.params else message)

    @property
    def message(self) -> str:
        return str(self)


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

    def __init__(self, message: str, errors: list[dict] | None = None, *,
                 params: Mapping[str, Any] | None = None) -> None:
        super().__init__(message, params=params)
        self.errors = errors or []


class Conflict(DomainError):
    """The object changed under us (lost a conditional update, duplicate)."""

    code = "conflict"
