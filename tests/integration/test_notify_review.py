"""Outbox delivery when a channel fails in an unexpected way (review-flags): the job goes on with the
rest of its batch and the failure is recorded on the row, retried with backoff like any other."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from test_notify_delivery import configure, fetch, smtp  # noqa: F401 - fixtures

from mh_platform.db.models import Outbox
from mh_platform.services import notify


def test_an_undeliverable_row_does_not_stop_the_batch_and_its_failure_is_recorded(ctx, smtp):  # noqa: F811
    """An address the email library refuses (here a line break: a header injection) raised ValueError,
    not DeliveryError, out of ``send_pending``: every later row of the run stayed undelivered, the row
    sat in 'sending' for its 5-minute lease, and after 8 such runs it was 'failed' with no last_error."""
    configure(ctx, smtp_port=smtp.port)
    now = ctx.now()
    with ctx.uow() as uow:
        s = uow.session
        params = {"unit": "第一中学", "link": "/flags/x"}
        bad = notify.enqueue(s, channel="email", template="flag_needs_action", params=params, dedupe_key="t:bad",
                             now=now - timedelta(seconds=1), address="a@school.example\nBcc: all@school.example")
        good = notify.enqueue(s, channel="email", template="flag_needs_action", params=params, dedupe_key="t:good",
                              now=now, address="b@school.example")
        uow.commit()
    out = notify.send_pending(ctx)
    assert (out["sent"], out["retry"]) == (1, 1), out
    assert [m["To"] for m in smtp.messages] == ["b@school.example"]
    rows = {r.id: r for r in fetch(ctx, sa.select(Outbox))}
    assert rows[good].status == "sent"
    b = rows[bad]
    assert (b.status, b.attempts, b.claimed_by) == ("pending", 1, None)
    assert b.last_error and "ValueError" in b.last_error
    assert b.next_attempt_at == now + notify.backoff(1)
