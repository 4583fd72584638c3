"""Outbox delivery against a real SMTP server (aiosmtpd) and a local WeCom-style webhook server."""

from __future__ import annotations

import dataclasses
import email
import json
import socket
import threading
import uuid
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
import sqlalchemy as sa
from aiosmtpd.controller import Controller
from flags_world import build_world, quick_hashes  # noqa: F401 - fixtures

from mh_platform.db.models import InboxMessage, Outbox
from mh_platform.services import concerns, notify


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Collector:
    def __init__(self) -> None:
        self.messages: list[email.message.Message] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        self.messages.append(email.message_from_bytes(envelope.content))
        return "250 OK"


@pytest.fixture
def smtp():
    port = free_port()
    handler = Collector()
    ctl = Controller(handler, hostname="127.0.0.1", port=port)
    ctl.start()
    handler.port = port
    yield handler
    ctl.stop()


class Hook(BaseHTTPRequestHandler):
    received: list[dict] = []
    errcode = 0

    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append(json.loads(body))
        out = json.dumps({"errcode": type(self).errcode, "errmsg": "ok"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *a):
        pass


@pytest.fixture
def webhook():
    Hook.received = []
    Hook.errcode = 0
    srv = HTTPServer(("127.0.0.1", 0), Hook)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/cgi-bin/webhook/send?key=test", Hook
    srv.shutdown()
    srv.server_close()


def configure(ctx, **kw):
    ctx.settings = dataclasses.replace(ctx.settings, **kw)


def fetch(ctx, stmt):
    with ctx.uow() as uow:
        out = list(uow.session.scalars(stmt).all())
        uow.session.expunge_all()
        return out


def test_concern_notice_delivered_once_by_email_inbox_and_wecom(ctx, smtp, webhook):
    url, hook = webhook
    configure(ctx, smtp_port=smtp.port, wecom_webhook_url=url)
    w = build_world(ctx)
    concerns.submit_concern(ctx, w.actors["monitor"], student_id=w.students[1], category="self_harm",
                            urgency="soon", note="说不想活了")
    rows = fetch(ctx, sa.select(Outbox))
    assert rows and all(r.status == "sent" for r in rows), [(r.channel, r.status, r.last_error) for r in rows]
    emails = [r for r in rows if r.channel == "email"]
    assert len(smtp.messages) == len(emails) == 1
    msg = smtp.messages[0]
    assert msg["To"] == "t.head@school.example"
    assert msg["Message-ID"] == f"<{emails[0].id}@mhp.outbox>"
    body = msg.get_payload(decode=True).decode()
    flag_link = emails[0].params["link"]
    assert flag_link.startswith("/flags/") and flag_link in body and "七年级1班" in body
    for secret in ("说不想活了", "学生k1", "orange", "橙", "self_harm"):
        assert secret not in body and secret not in str(msg["Subject"])
    assert len(hook.received) == 1
    payload = hook.received[0]
    assert payload["msgtype"] == "text" and flag_link in payload["text"]["content"]
    assert "说不想活了" not in payload["text"]["content"]
    inbox = fetch(ctx, sa.select(InboxMessage).where(InboxMessage.user_id == w.actors["head"].user_id))
    assert len(inbox) == 1 and inbox[0].link == flag_link
    # nothing left to send: a second run delivers nothing again
    assert notify.send_pending(ctx)["sent"] == 0
    assert len(smtp.messages) == 1 and len(hook.received) == 1
    rendered = notify.inbox_for(ctx, w.actors["head"].user_id)
    assert rendered[0]["subject_zh"].startswith("【心理预警平台】")


def test_failed_delivery_retries_with_backoff_then_succeeds(ctx, smtp):
    closed = free_port()
    configure(ctx, smtp_port=closed)
    w = build_world(ctx)
    concerns.submit_concern(ctx, w.actors["head"], student_id=w.students[1], category="mood", urgency="routine",
                            note="")
    emails = fetch(ctx, sa.select(Outbox).where(Outbox.channel == "email"))
    assert emails and all(e.status == "pending" and e.attempts == 1 and e.last_error for e in emails)
    assert all(e.next_attempt_at == ctx.now() + notify.backoff(1) for e in emails)
    assert notify.send_pending(ctx)["due"] == 0  # not due yet
    configure(ctx, smtp_port=smtp.port)
    ctx.clock.advance(seconds=31)
    res = notify.send_pending(ctx)
    assert res["sent"] == len(emails) and len(smtp.messages) == len(emails)
    assert all(e.status == "sent" and e.attempts == 2 for e in fetch(ctx, sa.select(Outbox).where(
        Outbox.channel == "email")))


def test_gives_up_after_max_attempts(ctx):
    configure(ctx, smtp_port=free_port())
    with ctx.uow() as uow:
        notify.enqueue(uow.session, channel="email", template="flag_needs_action", params={"unit": "x", "link": "/"},
                       dedupe_key="t:giveup", now=ctx.now(), address="a@b.example")
        uow.commit()
    for _ in range(notify.MAX_ATTEMPTS):
        notify.send_pending(ctx)
        ctx.clock.advance(hours=2)
    row = fetch(ctx, sa.select(Outbox).where(Outbox.dedupe_key == "t:giveup"))[0]
    assert (row.status, row.attempts) == ("failed", notify.MAX_ATTEMPTS)


def test_wecom_error_code_is_retried(ctx, webhook):
    url, hook = webhook
    hook.errcode = 93000
    configure(ctx, wecom_webhook_url=url)
    with ctx.uow() as uow:
        notify.enqueue(uow.session, channel="wecom", template="cluster_alert", params={"unit": "一中", "link": "/x"},
                       dedupe_key="t:wecom", now=ctx.now())
        uow.commit()
    assert notify.send_pending(ctx)["retry"] == 1
    hook.errcode = 0
    ctx.clock.advance(minutes=5)
    assert notify.send_pending(ctx)["sent"] == 1
    assert len(hook.received) == 2


def test_rollback_sends_nothing_and_dedupe_key_queues_once(ctx):
    with ctx.uow() as uow:
        notify.enqueue(uow.session, channel="inbox", template="flag_needs_action", params={"unit": "x", "link": "/"},
                       dedupe_key="t:rolled", now=ctx.now(), recipient_user_id=None)
        # no commit: the cause rolled back, so must its notice
    assert fetch(ctx, sa.select(Outbox).where(Outbox.dedupe_key == "t:rolled")) == []
    with ctx.uow() as uow:
        a = notify.enqueue(uow.session, channel="email", template="flag_needs_action",
                           params={"unit": "x", "link": "/"}, dedupe_key="t:once", now=ctx.now(), address="a@b.c")
        b = notify.enqueue(uow.session, channel="email", template="flag_needs_action",
                           params={"unit": "x", "link": "/"}, dedupe_key="t:once", now=ctx.now(), address="a@b.c")
        uow.commit()
    assert a is not None and b is None
    with pytest.raises(ValueError, match="may not carry"), ctx.uow() as uow:
        notify.enqueue(uow.session, channel="email", template="flag_needs_action",
                       params={"unit": "x", "link": "/", "name": "张三"}, dedupe_key="t:bad", now=ctx.now())


def test_a_claimed_row_is_not_claimed_again_until_its_lease_expires(ctx):
    with ctx.uow() as uow:
        oid = notify.enqueue(uow.session, channel="email", template="flag_needs_action",
                             params={"unit": "x", "link": "/"}, dedupe_key="t:claim", now=ctx.now(), address="a@b.c")
        uow.commit()
    now = ctx.now()
    assert notify._claim(ctx, oid, "pending", 0, "w1", now) is True
    assert notify._claim(ctx, oid, "pending", 0, "w2", now) is False  # the loser's UPDATE matches no row
    assert notify.send_pending(ctx, worker="w2")["due"] == 0  # leased to w1
    ctx.clock.advance(minutes=6)  # w1 died holding it: the lease expires and w2 takes over
    due = notify.send_pending(ctx, worker="w2")
    assert due["due"] == 1
    row = fetch(ctx, sa.select(Outbox).where(Outbox.id == oid))[0]
    assert row.attempts == 2 and row.claimed_by in (None, "w2")
    assert uuid.UUID(str(oid)) == row.id
    assert timedelta(0) < notify.backoff(3) <= notify.BACKOFF_MAX


def test_enqueue_many_skips_queued_keys_across_look_up_chunks(ctx, monkeypatch):
    """The dedupe look-up runs in chunks (``db.bulk.in_chunks``: a bulk import plans tens of
    thousands of notices, more than one statement may bind). On SQLite the statement's parameter
    limit is lowered to 13 (one planned row binds 12) and 20 keys are queued in chunks of 3: one
    look-up of all 20 would be refused. The keys already queued are skipped wherever they fall and
    every new key is queued once."""
    import sqlite3

    from mh_platform.db import bulk

    monkeypatch.setattr(bulk, "IN_CHUNK", 3)

    def rows(keys):
        return [{"id": uuid.uuid4(), "channel": "inbox", "recipient_user_id": None, "address": None,
                 "template": "flag_needs_action", "params": {"unit": "x", "link": "/"}, "dedupe_key": k,
                 "status": "pending", "attempts": 0, "next_attempt_at": ctx.now(), "created_at": ctx.now()}
                for k in keys]

    keys = [f"t:many:{n}" for n in range(20)]
    before = {keys[n] for n in (0, 4, 5, 9, 17)}
    with ctx.uow() as uow:
        assert len(notify.enqueue_many(uow.session, rows(sorted(before)))) == 5
        uow.commit()
    with ctx.uow() as uow:
        dbc = uow.session.connection().connection.dbapi_connection
        limited = isinstance(dbc, sqlite3.Connection)
        if limited:
            old = dbc.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 13)
        try:
            planned = rows(keys)
            queued = notify.enqueue_many(uow.session, planned)
            uow.commit()
        finally:
            if limited:
                dbc.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, old)
    assert set(queued) == {r["id"] for r in planned if r["dedupe_key"] not in before}
    got = fetch(ctx, sa.select(Outbox.dedupe_key).where(Outbox.dedupe_key.like("t:many:%")))
    assert sorted(got) == sorted(keys)
