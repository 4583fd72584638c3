"""Notifications through an outbox: written in the cause's transaction, delivered after commit, once.

Writing: ``enqueue`` / ``notify_unit_role`` add ``outbox`` rows in the caller's session. A row's
``dedupe_key`` is unique, so the same notice for the same cause is never queued twice (a re-run of a
sweep, two processes racing). Nothing is sent inside the transaction: a rollback sends nothing.

Delivering: ``send_pending`` (job ``notify_send_pending``, ``mhp notify send-pending``, and
opportunistically ``uow.after_commit(lambda: send_soon(ctx, ids))``) claims each due row with a
conditional UPDATE (``… WHERE id = :id AND status = :s AND attempts = :n`` → rowcount 1), commits the
claim, delivers, then marks it sent. Two processes never deliver the same row. A claim abandoned by
a killed process is taken again after ``CLAIM_LEASE``; failures retry with exponential backoff up to
``MAX_ATTEMPTS``, then the row is ``failed`` (visible to administrators).

Channels: ``inbox`` (an ``inbox_message`` row inserted in the same transaction that marks the outbox
row sent — exactly once), ``email`` (SMTP; the Message-ID is the outbox id so a receiver can drop the
rare duplicate after a crash between the SMTP hand-off and the commit), ``wecom`` (企业微信 group
robot webhook, ``{"msgtype": "text", "text": {"content": …}}``).

Bodies carry no names and no clinical detail: only that something needs the reader, where (the
unit's name) and a link. Params hold ids, codes, unit names and links only.
"""

from __future__ import annotations

import logging
import os
import smtplib
import socket
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mh_platform.core.types import Role
from mh_platform.db.bulk import in_chunks, upsert_insert
from mh_platform.db.models import InboxMessage, OrgUnit, Outbox, RoleAssignment, User
from mh_platform.services.context import ServiceContext

log = logging.getLogger(__name__)

CHANNELS = ("inbox", "email", "wecom")
MAX_ATTEMPTS = 8
CLAIM_LEASE = timedelta(minutes=5)
BACKOFF_BASE = timedelta(seconds=30)
BACKOFF_MAX = timedelta(hours=1)
FORBIDDEN_PARAM_KEYS = {"name", "student_name", "note", "text", "reason", "reason_text", "score", "total",
                        "answers", "band", "level"}


@dataclass(frozen=True)
class Template:
    subject_zh: str
    subject_en: str
    body_zh: str
    body_en: str


# Every template says only: something needs you, where, and a link. No names, no clinical detail.
TEMPLATES: dict[str, Template] = {
    "flag_needs_action": Template(
        "【心理预警平台】有一项预警需要您处理", "[MHP] A flag needs your attention",
        "{unit} 有一项预警事项需要您处理，请登录平台查看。", "A flag at {unit} needs your attention. Please sign in to view it."),
    "flag_escalated": Template(
        "【心理预警平台】一项预警已上报至您", "[MHP] A flag was escalated to you",
        "{unit} 的一项预警事项已上报，需要您跟进，请登录平台查看。",
        "A flag at {unit} has been escalated and needs your follow-up. Please sign in to view it."),
    "flag_oversight": Template(
        "【心理预警平台】请关注一项预警", "[MHP] A flag for your oversight",
        "{unit} 有一项需要上级关注的预警事项，请登录平台查看。",
        "A flag at {unit} is reported for your oversight. Please sign in to view it."),
    "flag_reminder": Template(
        "【心理预警平台】预警事项尚未处理", "[MHP] A flag is still waiting",
        "{unit} 的一项预警事项已超过处理时限，请尽快处理。",
        "A flag at {unit} has passed its deadline. Please act on it soon."),
    "cluster_alert": Template(
        "【心理预警平台】聚集性预警提示", "[MHP] Cluster notice",
        "{unit} 近期出现多项预警，建议开展危机后干预（如对相关班级定向复筛）。请登录平台查看。",
        "Several flags at {unit} in a short time. Suggested postvention: targeted re-screening. Please sign in."),
    "concern_received": Template(
        "【心理预警平台】收到一条关注报告", "[MHP] A concern was reported",
        "{unit} 收到一条学生关注报告，需要您查看。", "A concern was reported at {unit} and needs your review."),
    # cases, referrals, break-glass and transfers
    "case_red_opened": Template(
        "【心理预警平台】红色预警个案已建档", "[MHP] A red-level case was opened",
        "{unit} 已为一项红色预警建立个案（一生一策），请知悉并督导。请登录平台查看。",
        "A case (support plan) was opened at {unit} for a red-level flag. Please sign in to supervise."),
    "referral_received": Template(
        "【心理预警平台】收到一项转介申请", "[MHP] A referral was sent to your institution",
        "{unit} 通过绿色通道向贵机构发送了一项转介申请，请尽快登录平台处理。",
        "{unit} sent a green-channel referral to your institution. Please sign in to respond."),
    "referral_updated": Template(
        "【心理预警平台】转介状态已更新", "[MHP] A referral was updated",
        "{unit} 的一项转介状态已更新，请登录平台查看。", "A referral for {unit} was updated. Please sign in to view it."),
    "referral_overdue": Template(
        "【心理预警平台】一项转介已超时并上报", "[MHP] An overdue referral was escalated to you",
        "{unit} 的一项转介已超过时限，已上报至您，请督促跟进。请登录平台查看。",
        "A referral for {unit} missed its deadline and was escalated to you. Please sign in and follow up."),
    "breakglass_opened": Template(
        "【心理预警平台】紧急查阅已启用", "[MHP] Emergency access was used",
        "有上级人员对 {unit} 的一个个案启用了紧急查阅（限时），该使用将接受复核。请登录平台查看。",
        "An officer used time-limited emergency access to a case at {unit}; the use will be reviewed."),
    "transfer_requested": Template(
        "【心理预警平台】有一个个案等待交接", "[MHP] A case handover is waiting for you",
        "一名转入 {unit} 的学生有在办个案，原校心理教师已发起交接，请登录平台接收。",
        "A student who moved to {unit} has an open case; the previous counsellor asked for a handover."),
    "transfer_accepted": Template(
        "【心理预警平台】个案交接已完成", "[MHP] A case handover was accepted",
        "您发起的个案交接已由 {unit} 接收。", "The case handover you requested was accepted by {unit}."),
}


def render(template: str, params: dict[str, Any], base_url: str) -> tuple[str, str]:
    """(subject, body) in Chinese then English, with the link made absolute."""
    t = TEMPLATES[template]
    unit = str(params.get("unit") or "")
    link = base_url.rstrip("/") + str(params.get("link") or "/")
    subject = f"{t.subject_zh} / {t.subject_en}"
    body = (f"{t.body_zh.format(unit=unit)}\n{t.body_en.format(unit=unit)}\n\n{link}\n\n"
            "本邮件由系统自动发送，不含学生个人信息。/ Sent automatically; contains no student information.")
    return subject, body


def _check_params(params: dict[str, Any]) -> None:
    bad = FORBIDDEN_PARAM_KEYS & set(params)
    if bad:
        raise ValueError(f"notification params may not carry {sorted(bad)}")


# ----------------------------------------------------------------------------- writing (in the cause's transaction)


def enqueue(s: Session, *, channel: str, template: str, params: dict[str, Any], dedupe_key: str, now: datetime,
            recipient_user_id: uuid.UUID | None = None, address: str | None = None) -> uuid.UUID | None:
    """Add one outbox row in the caller's transaction; None if ``dedupe_key`` is already queued."""
    if channel not in CHANNELS:
        raise ValueError(f"unknown channel {channel!r}")
    if template not in TEMPLATES:
        raise ValueError(f"unknown template {template!r}")
    _check_params(params)
    if s.scalar(sa.select(Outbox.id).where(Outbox.dedupe_key == dedupe_key)) is not None:
        return None
    row = Outbox(id=uuid.uuid4(), channel=channel, recipient_user_id=recipient_user_id, address=address,
                 template=template, params=params, dedupe_key=dedupe_key[:200], status="pending", attempts=0,
                 next_attempt_at=now, created_at=now)
    try:
        with s.begin_nested():
            s.add(row)
            s.flush()
    except sa.exc.IntegrityError:  # a concurrent writer queued the same notice first
        return None
    return row.id


def users_with_role(s: Session, role: Role, unit_id: uuid.UUID) -> list[User]:
    """Active users holding ``role`` at exactly ``unit_id``."""
    return list(s.scalars(sa.select(User).join(RoleAssignment, RoleAssignment.user_id == User.id)
                          .where(RoleAssignment.role == Role(role).value, RoleAssignment.unit_id == unit_id,
                                 User.is_active.is_(True)).order_by(User.username)))


def notify_unit_role(ctx: ServiceContext, s: Session, *, role: Role, unit: OrgUnit, template: str, link: str,
                     dedupe: str, now: datetime, wecom: bool = True,
                     users: list[User] | None = None) -> list[uuid.UUID]:
    """Queue the notice for everyone with ``role`` at ``unit``: inbox always, email when the user has an
    address, and one WeCom group message for the unit when a webhook is configured. ``users``: the
    caller's ``users_with_role`` look-up, when it already made it.

    Nobody in the role there writes no personal notice: callers about a flag make the flag reachable
    first (``flags.reach``: handed up to the next tier with someone) and record the gap."""
    params = {"unit": unit.name, "link": link, "unit_id": str(unit.id), "role": Role(role).value}
    ids: list[uuid.UUID] = []
    for user in (users if users is not None else users_with_role(s, role, unit.id)):
        base = f"{dedupe}:{user.id}"
        for channel, address in (("inbox", None), ("email", user.email)):
            if channel == "email" and not address:
                continue
            oid = enqueue(s, channel=channel, template=template, params=params, dedupe_key=f"{base}:{channel}",
                          now=now, recipient_user_id=user.id, address=address)
            if oid is not None:
                ids.append(oid)
    if wecom and ctx.settings.wecom_webhook_url:
        oid = enqueue(s, channel="wecom", template=template, params=params, dedupe_key=f"{dedupe}:{unit.id}:wecom",
                      now=now, address=None)
        if oid is not None:
            ids.append(oid)
    return ids


def recipients_by_unit(s: Session, pairs: Iterable[tuple[Role, uuid.UUID]]
                       ) -> dict[tuple[str, uuid.UUID], list[tuple[uuid.UUID, str | None]]]:
    """Active users for many (role, unit) pairs in one query: {(role, unit_id): [(user_id, email)]}."""
    keys = {(Role(r).value, u) for r, u in pairs}
    out: dict[tuple[str, uuid.UUID], list[tuple[uuid.UUID, str | None]]] = {k: [] for k in keys}
    if not keys:
        return out
    rows = s.execute(sa.select(RoleAssignment.role, RoleAssignment.unit_id, User.id, User.email)
                     .join(User, User.id == RoleAssignment.user_id)
                     .where(RoleAssignment.unit_id.in_({u for _, u in keys}),
                            RoleAssignment.role.in_({r for r, _ in keys}), User.is_active.is_(True))
                     .order_by(User.username)).all()
    for role, unit_id, uid, email in rows:
        if (role, unit_id) in out:
            out[(role, unit_id)].append((uid, email))
    return out


def plan_unit_role(ctx: ServiceContext, users: list[tuple[uuid.UUID, str | None]], *, role: Role, unit: OrgUnit,
                   template: str, link: str, dedupe: str, now: datetime, wecom: bool = True) -> list[dict[str, Any]]:
    """The outbox rows ``notify_unit_role`` would write, as dicts for ``enqueue_many`` (batch jobs)."""
    if template not in TEMPLATES:
        raise ValueError(f"unknown template {template!r}")
    params = {"unit": unit.name, "link": link, "unit_id": str(unit.id), "role": Role(role).value}
    rows: list[dict[str, Any]] = []

    def row(channel: str, key: str, user_id: uuid.UUID | None, address: str | None) -> None:
        rows.append({"id": uuid.uuid4(), "channel": channel, "recipient_user_id": user_id, "address": address,
                     "template": template, "params": params, "dedupe_key": key[:200], "status": "pending",
                     "attempts": 0, "next_attempt_at": now, "created_at": now})

    for uid, email_ in users:
        row("inbox", f"{dedupe}:{uid}:inbox", uid, None)
        if email_:
            row("email", f"{dedupe}:{uid}:email", uid, email_)
    if wecom and ctx.settings.wecom_webhook_url:
        row("wecom", f"{dedupe}:{unit.id}:wecom", None, None)
    return rows


def enqueue_many(s: Session, rows: list[dict[str, Any]]) -> list[uuid.UUID]:
    """Insert planned outbox rows in the caller's transaction, skipping dedupe keys already queued
    (``ON CONFLICT DO NOTHING`` on both databases). Returns the ids actually queued."""
    if not rows:
        return []
    keys = [r["dedupe_key"] for r in rows]
    existing: set[str] = set()
    for cond in in_chunks(s, Outbox.dedupe_key, keys):  # a bulk import can plan tens of thousands
        existing.update(s.scalars(sa.select(Outbox.dedupe_key).where(cond)))
    fresh = [r for r in rows if r["dedupe_key"] not in existing]
    if not fresh:
        return []
    # core executemany (batched "insertmanyvalues"), not the ORM bulk path that goes row by row here
    table = sa.Table("outbox", Outbox.metadata)  # the Table object, for the core insert
    s.connection().execute(upsert_insert(s, table).on_conflict_do_nothing(index_elements=["dedupe_key"]), fresh)
    return [r["id"] for r in fresh]


# ----------------------------------------------------------------------------- delivering (after commit)


class DeliveryError(Exception):
    pass


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def _deliver_email(ctx: ServiceContext, row: Outbox) -> None:
    st = ctx.settings
    subject, body = render(row.template, row.params, st.base_url)
    msg = EmailMessage()
    msg["From"] = st.smtp_sender
    msg["To"] = row.address or ""
    msg["Subject"] = subject
    msg["Message-ID"] = f"<{row.id}@mhp.outbox>"
    msg.set_content(body)
    try:
        with smtplib.SMTP(st.smtp_host, st.smtp_port, timeout=15) as smtp:
            smtp.send_message(msg)
    except (OSError, smtplib.SMTPException) as exc:
        raise DeliveryError(f"smtp: {type(exc).__name__}: {exc}"[:300]) from exc


def _deliver_wecom(ctx: ServiceContext, row: Outbox) -> None:
    import requests

    url = row.address or ctx.settings.wecom_webhook_url
    if not url:
        raise DeliveryError("wecom: no webhook configured")
    subject, body = render(row.template, row.params, ctx.settings.base_url)
    try:
        # nosemgrep: mhp-outbound-http - the operator-configured WeCom robot; the body names no student (tests)
        resp = requests.post(url, json={"msgtype": "text", "text": {"content": f"{subject}\n{body}"}}, timeout=15)
    except requests.RequestException as exc:
        raise DeliveryError(f"wecom: {type(exc).__name__}") from exc
    if resp.status_code != 200:
        raise DeliveryError(f"wecom: http {resp.status_code}")
    try:
        code = resp.json().get("errcode", 0)
    except ValueError:
        code = -1
    if code != 0:
        raise DeliveryError(f"wecom: errcode {code}")


def backoff(attempts: int) -> timedelta:
    return min(BACKOFF_BASE * (2 ** max(0, attempts - 1)), BACKOFF_MAX)


def _claim(ctx: ServiceContext, row_id: uuid.UUID, status: str, attempts: int, worker: str,
           now: datetime) -> bool:
    with ctx.uow() as uow:
        res: sa.CursorResult[Any] = uow.session.execute(  # type: ignore[assignment]
            sa.update(Outbox).where(Outbox.id == row_id, Outbox.status == status, Outbox.attempts == attempts)
            .values(status="sending", attempts=attempts + 1, claimed_by=worker[:64], next_attempt_at=now + CLAIM_LEASE))
        uow.commit()
        return res.rowcount == 1


def _mark(ctx: ServiceContext, row_id: uuid.UUID, worker: str, now: datetime, error: str | None) -> str:
    """Finish a claimed row: sent, or back to pending with backoff (failed after MAX_ATTEMPTS)."""
    with ctx.uow() as uow:
        s = uow.session
        row = s.get(Outbox, row_id)
        if row is None or row.status != "sending" or row.claimed_by != worker[:64]:
            return "lost"
        if error is None:
            row.status, row.sent_at, row.last_error = "sent", now, None
        else:
            row.status = "failed" if row.attempts >= MAX_ATTEMPTS else "pending"
            row.next_attempt_at = now + backoff(row.attempts)
            row.last_error = error[:300]
            row.claimed_by = None
            log.warning("outbox %s %s attempt %d: %s", row.id, row.channel, row.attempts, error)
        status = row.status
        uow.commit()
        return status


def deliver_one(ctx: ServiceContext, row_id: uuid.UUID, worker: str) -> str:
    """Deliver a row this worker has claimed; returns the new status (sent / pending / failed / lost).

    The inbox channel inserts the message and marks the row sent in one transaction. External
    channels are called outside any transaction (no database lock is held during network I/O).
    """
    now = ctx.now()
    with ctx.uow() as uow:
        s = uow.session
        row = s.get(Outbox, row_id)
        if row is None or row.status != "sending" or row.claimed_by != worker[:64]:
            return "lost"
        if row.channel == "inbox":
            if row.recipient_user_id is None:
                snapshot = None
            else:
                if s.scalar(sa.select(InboxMessage.id).where(InboxMessage.outbox_id == row.id)) is None:
                    s.add(InboxMessage(user_id=row.recipient_user_id, template=row.template, params=row.params,
                                       link=row.params.get("link"), outbox_id=row.id, created_at=now))
                row.status, row.sent_at, row.last_error = "sent", now, None
                uow.commit()
                return "sent"
        snapshot = Outbox(id=row.id, channel=row.channel, address=row.address, template=row.template,
                          params=dict(row.params), recipient_user_id=row.recipient_user_id)
    if snapshot is None:
        return _mark(ctx, row_id, worker, now, "inbox: no recipient")
    try:
        if snapshot.channel == "email":
            _deliver_email(ctx, snapshot)
        elif snapshot.channel == "wecom":
            _deliver_wecom(ctx, snapshot)
        else:
            raise DeliveryError(f"unknown channel {snapshot.channel}")
    except DeliveryError as exc:
        return _mark(ctx, row_id, worker, now, str(exc))
    except Exception as exc:  # noqa: BLE001 - e.g. an address the email library refuses, an odd webhook reply:
        # a failure of this row like any other (recorded, backoff, ``failed`` in the end), not of the batch
        log.exception("outbox %s %s: unexpected delivery error", row_id, snapshot.channel)
        return _mark(ctx, row_id, worker, now, f"{snapshot.channel}: {type(exc).__name__}")
    return _mark(ctx, row_id, worker, now, None)


def send_pending(ctx: ServiceContext, *, limit: int = 500, ids: Iterable[uuid.UUID] | None = None,
                 worker: str | None = None) -> dict[str, int]:
    """Claim and deliver due rows (or just ``ids``); returns counts by outcome."""
    worker = worker or worker_id()
    now = ctx.now()
    with ctx.uow() as uow:
        q = sa.select(Outbox.id, Outbox.status, Outbox.attempts).where(
            Outbox.status.in_(("pending", "sending")), Outbox.next_attempt_at <= now)
        if ids is not None:
            q = q.where(Outbox.id.in_(list(ids)))
        rows = uow.session.execute(q.order_by(Outbox.next_attempt_at).limit(limit)).all()
    out = {"due": len(rows), "sent": 0, "retry": 0, "failed": 0, "skipped": 0}
    for row_id, status, attempts in rows:
        if status == "sending" and attempts >= MAX_ATTEMPTS:
            with ctx.uow() as uow:  # abandoned on its last attempt
                uow.session.execute(sa.update(Outbox).where(Outbox.id == row_id, Outbox.status == "sending",
                                                            Outbox.attempts == attempts).values(status="failed"))
                uow.commit()
            out["failed"] += 1
            continue
        # the lease runs from the claim, not from the start of the run: a row claimed late in a long run
        # (slow SMTP) must not be free for another sender while it is on the wire
        if not _claim(ctx, row_id, status, attempts, worker, ctx.now()):
            out["skipped"] += 1
            continue
        result = deliver_one(ctx, row_id, worker)
        key = {"sent": "sent", "pending": "retry", "failed": "failed"}.get(result, "skipped")
        out[key] += 1
    return out


def send_soon(ctx: ServiceContext, ids: Iterable[uuid.UUID]) -> None:
    """After-commit hook: try to deliver these rows now; the job picks up anything left."""
    ids = list(ids)
    if not ids:
        return
    try:
        send_pending(ctx, ids=ids)
    except Exception as exc:  # noqa: BLE001 - the job retries; the cause is already committed
        log.warning("immediate delivery deferred to the job: %s", exc)


def inbox_for(ctx: ServiceContext, user_id: uuid.UUID, *, limit: int = 50) -> list[dict[str, Any]]:
    """A user's newest inbox messages, rendered (no names, no clinical detail by construction)."""
    with ctx.uow() as uow:
        rows = uow.session.scalars(sa.select(InboxMessage).where(InboxMessage.user_id == user_id)
                                   .order_by(InboxMessage.created_at.desc()).limit(limit)).all()
        out = []
        for m in rows:
            t = TEMPLATES.get(m.template)
            out.append({"id": str(m.id), "template": m.template, "link": m.link, "created_at": m.created_at.isoformat(),
                        "read": m.read_at is not None,
                        "subject_zh": t.subject_zh if t else m.template, "subject_en": t.subject_en if t else m.template,
                        "body_zh": t.body_zh.format(unit=m.params.get("unit", "")) if t else "",
                        "body_en": t.body_en.format(unit=m.params.get("unit", "")) if t else ""})
        return out
