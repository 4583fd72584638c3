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


def test_a_claim_taken_late_in_a_long_run_still_holds_its_lease(ctx, monkeypatch):
    """``send_pending`` read the clock once and gave every claim the lease "run start + 5 minutes". In a
    long run (slow SMTP: each message up to its 15 s timeout, 500 rows a run) a row claimed after the
    first 5 minutes had a lease already over while it was on the wire, so another sender (a second
    ``mhp notify send-pending``, which the design allows) took it again and the email went out twice."""
    now = ctx.now()
    with ctx.uow() as uow:
        for i in range(3):
            notify.enqueue(uow.session, channel="email", template="flag_needs_action",
                           params={"unit": "第一中学", "link": f"/flags/{i}"}, dedupe_key=f"t:{i}", now=now,
                           address=f"u{i}@school.example")
        uow.commit()
    sent: list = []
    other: list = []

    def slow_smtp(ctx_, row):  # each message takes 4 minutes to hand over
        sent.append(row.id)
        ctx.clock.advance(minutes=4)
        if len(sent) == 3:  # while the third is on the wire, another sender runs
            other.append(notify.send_pending(ctx, worker="other-process"))

    monkeypatch.setattr(notify, "_deliver_email", slow_smtp)
    out = notify.send_pending(ctx, worker="job")
    assert len(sent) == len(set(sent)) == 3, (out, other)
    assert out["sent"] == 3 and other[0]["due"] == 0
