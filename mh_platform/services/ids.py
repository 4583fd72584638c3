"""Object ids from callers (pages, API, CLI): a malformed id is simply "not found", like a missing one."""

from __future__ import annotations

import uuid

from mh_platform.core.errors import NotFound


def id_or_404(value: uuid.UUID | str | None, what: str = "") -> uuid.UUID:
    """``value`` as a UUID, or ``NotFound("<what> not found")`` — never a hint that the id was malformed."""
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise NotFound(f"{what} not found".strip()) from None
