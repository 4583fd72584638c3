"""Translatable message templates, without any translation machinery (the core stays pure).

The core and the services raise their errors in English: that text is the JSON API's ``message``
and what the logs show. A message a page may show is written as a fixed template marked with
``N_``::

    raise ValidationFailed(N_("a reason is required"))
    raise ImportRefused(N_("missing column(s): %(cols)s"), params={"cols": names})

``N_`` returns its argument unchanged; it only marks the template for ``pybabel extract``
(keyword ``-k N_``, see the Makefile ``extract`` target). Variable parts go in ``params`` (named
``%(name)s`` placeholders), never into the template itself, so the template is a catalog entry. The
web layer (``web.errors.error_text``) looks the template up in the current language and fills in the
parameters; ``str(exc)`` stays the English text with the parameters filled in.
"""

from __future__ import annotations


def N_(message: str) -> str:  # noqa: N802 - the conventional gettext marker name
    """Mark ``message`` for extraction; returns it unchanged."""
    return message
