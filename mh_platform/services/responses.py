"""The student answering flow: code → consent check → one page per instrument → finished.

Not a staff flow: the "actor" is an access code. Every call re-checks, in one query, that the code
is not revoked, the campaign is open and inside its window, the student has a granted consent for
the school year and the battery is not finished — so a page skipped, a URL edited or a consent
withdrawn mid-campaign is refused by the service, whatever the page did.

Answers are saved one at a time as given (``save_answer``): a read-modify-write of the encrypted
``Response.answers_enc`` (JSON ``{item: value}`` sealed under the student's data key) under a row
lock (``FOR UPDATE`` on PostgreSQL; SQLite transactions are serial), so a closed tab resumes where
it stopped and two tabs cannot lose each other's answers. ``submit`` scores the page with the engine
(``core.scoring.score``), runs the quality checks and the flag path — answers, score and flag in
one transaction. A critical item answered positively triggers the flag path at once, on save.

A signed-in student holds a **sitting** (``Sitting``: the code row's id and a random 128-bit token,
both in the signed cookie). ``begin`` starts a new one and stores only the token's SHA-256 on the
code row (``AccessCode.sitting_hash``); every call compares it in constant time, from the same one
query, before anything else (``SittingEnded`` — "signed out" — when it does not match). ``pause``
clears it, finishing the battery turns it into the "finished" digest (only the thank-you page
accepts it), and reprinting, revoking and closing clear it (``services.campaigns``,
``services.consent``): a copied cookie stops working at that moment, whatever its signature says.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mh_platform.core.errors import DomainError, NotFound, ValidationFailed
from mh_platform.core.instruments import Instrument, load_instrument
from mh_platform.core.scoring import INVALID, ScoreResult, score, unanswered_items
from mh_platform.db.base import time_ordered_uuid
from mh_platform.db.models import AccessCode, Campaign, DataKey, Enrolment, Response, Student
from mh_platform.services import audit, codes
from mh_platform.services.consent import consent_ok
from mh_platform.services.context import SYSTEM, CoreUnitOfWork, ServiceContext

log = logging.getLogger(__name__)

FAST_SECONDS_PER_ITEM = 2.0  # same rule as risk.quality's page-time index
LONGSTRING_MIN = 7  # every item of a >= 7-item page the same non-zero answer
MAX_ITEM_MS = 3_600_000


class CodeRejected(DomainError):
    """The code cannot be used now. ``reason`` is one of: invalid, closed, no_consent, completed."""

    code = "code_rejected"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class PageSubmitted(ValidationFailed):
    """The page was already submitted (a double click, a second tab, the back button): nothing was
    changed. The student goes on with the battery rather than seeing an error about their answers."""

    def __init__(self) -> None:
        super().__init__("this page is already submitted")


class SittingEnded(CodeRejected):
    """The cookie's sitting is not the code's current one (paused, finished, the code entered again
    elsewhere, reprinted or revoked): treat it as signed out, like no cookie at all."""

    def __init__(self) -> None:
        super().__init__("signed_out")


# --------------------------------------------------------------------------- sittings

SITTING_BYTES = 16  # 128 bits from the OS CSPRNG


@dataclass(frozen=True)
class Sitting:
    """What a signed-in student presents: the code row's id and the sitting's random token."""

    access_code_id: uuid.UUID
    token: bytes = field(repr=False)  # a credential: kept out of reprs (logs, tracebacks)


def sitting_digest(token: bytes, *, finished: bool = False) -> bytes:
    """What ``AccessCode.sitting_hash`` stores for a token: SHA-256, with a separate label once the
    battery is finished (that digest opens only the thank-you page)."""
    return hashlib.sha256((b"mhp-sitting-finished\0" if finished else b"mhp-sitting\0") + token).digest()


def _check_sitting(stored: bytes | None, token: bytes, *, finished: bool = False) -> None:
    if stored is None or not hmac.compare_digest(stored, sitting_digest(token, finished=finished)):
        raise SittingEnded()


# --------------------------------------------------------------------------- session state


@dataclass(frozen=True)
class StudentSession:
    sitting: Sitting
    campaign_id: uuid.UUID
    student_id: uuid.UUID
    battery: tuple[str, ...]
    submitted: frozenset[str]
    closes_at: datetime
    year_id: uuid.UUID
    school_unit_id: uuid.UUID
    unit_path: str
    completed: bool = False

    @property
    def access_code_id(self) -> uuid.UUID:
        return self.sitting.access_code_id

    @property
    def current(self) -> str | None:
        return next((i for i in self.battery if i not in self.submitted), None)

    @property
    def index(self) -> int:
        """1-based number of the current page (len(battery) + 1 when finished)."""
        cur = self.current
        return self.battery.index(cur) + 1 if cur else len(self.battery) + 1


def _state_query(by_hash: bool) -> sa.Select:
    """Built once per process: a reused statement keeps its cache key (no per-request re-keying)."""
    crit = (AccessCode.code_hash == sa.bindparam("code_hash")) if by_hash else \
        (AccessCode.id == sa.bindparam("access_code_id", type_=sa.Uuid()))
    return (sa.select(AccessCode, Campaign, Enrolment, Student.birth_year,
                      consent_ok(AccessCode.student_id, Campaign.academic_year_id).label("ok"),
                      DataKey.id.label("key_id"), DataKey.master_key_id, DataKey.wrapped)
            .join(Campaign, Campaign.id == AccessCode.campaign_id)
            .join(Student, Student.id == AccessCode.student_id)
            .join(Enrolment, sa.and_(Enrolment.student_id == AccessCode.student_id,
                                     Enrolment.academic_year_id == Campaign.academic_year_id,
                                     Enrolment.active.is_(True)))
            # the student's active data key rides along: sealing needs no look-up of its own
            .outerjoin(DataKey, sa.and_(DataKey.student_id == AccessCode.student_id, DataKey.active.is_(True)))
            .where(crit, Student.erased_at.is_(None)))  # an erased student's code opens nothing


_STATE_BY_ID = _state_query(False)
_STATE_BY_HASH = _state_query(True)


def _state(ctx: ServiceContext, s: Session, *, sitting: Sitting | None = None, code_hash: bytes | None = None,
           allow_completed: bool = False) -> tuple[AccessCode, Campaign, Enrolment, int | None]:
    """The code, campaign and enrolment if the code may be used now; else CodeRejected (by a typed
    code's hash, or by a sitting, which must be the code's current one: SittingEnded otherwise)."""
    now = ctx.now()
    params: dict[str, Any]
    if code_hash is not None:
        q, params = _STATE_BY_HASH, {"code_hash": code_hash}
    elif sitting is not None:
        q, params = _STATE_BY_ID, {"access_code_id": sitting.access_code_id}
    else:
        raise CodeRejected("invalid")
    row = s.execute(q, params).first()
    if row is None:
        raise CodeRejected("invalid")
    ac, camp, enr, birth_year, ok, key_id, master_key_id, wrapped = row
    if sitting is not None:  # a finished battery's sitting still opens the thank-you page (allow_completed)
        _check_sitting(ac.sitting_hash, sitting.token,
                       finished=allow_completed and ac.completed_at is not None)
    ctx.keyring.prime_student_key(s, ac.student_id, key_id, master_key_id, wrapped)
    # a typed code needs the window open; a live sitting also has the grace after the close
    grace = sitting_grace(ctx) if sitting is not None else _NO_GRACE
    _gate(now, ac.revoked_at, camp.status, camp.opens_at, camp.closes_at, ok, ac.completed_at, allow_completed,
          grace)
    return ac, camp, enr, birth_year


_NO_GRACE = timedelta(0)


def sitting_grace(ctx: ServiceContext) -> timedelta:
    """How long after the window closes a sitting that was open at the close may still save and
    submit (the deployment's ``sitting_grace_minutes``; 0 = none)."""
    return timedelta(minutes=ctx.settings.sitting_grace_minutes)


def window_admits(now: datetime, status: str, opens_at: datetime, closes_at: datetime,
                  grace: timedelta = _NO_GRACE) -> bool:
    """The campaign window rule. Open: the campaign is open and ``opens_at <= now < closes_at``.
    Grace (``grace`` > 0, only ever passed for a live sitting): ``closes_at <= now < closes_at +
    grace``, whether or not the close job has already marked the campaign closed — so a student who
    was answering at the close loses no answer typed in the last minute. A new sitting cannot start
    after the close (``begin`` passes no grace), so a live sitting in the grace began before it; a
    cancelled campaign never admits."""
    if status == "open" and opens_at <= now < closes_at:
        return True
    return grace > _NO_GRACE and status in ("open", "closed") and closes_at <= now < closes_at + grace


def _gate(now: datetime, revoked_at: datetime | None, status: str, opens_at: datetime, closes_at: datetime, ok: bool,
          completed_at: datetime | None, allow_completed: bool, grace: timedelta = _NO_GRACE) -> None:
    """The one rule for whether a code may be used now (CodeRejected with the reason otherwise).
    A revoked code never passes: with consent it is "invalid" (replaced by a newer slip), without
    it the consent or window reason is given. ``grace``: see ``window_admits``."""
    if revoked_at is not None and ok:
        raise CodeRejected("invalid")  # replaced by a newer slip
    if not window_admits(now, status, opens_at, closes_at, grace):
        raise CodeRejected("closed")
    if not ok:
        raise CodeRejected("no_consent")
    if completed_at is not None and not allow_completed:
        raise CodeRejected("completed")


def _battery(camp: Campaign, enr: Enrolment, birth_year: int | None) -> tuple[str, ...]:
    from mh_platform.services.campaigns import student_battery

    return student_battery(camp, enr.grade_level, birth_year)


def _session(s: Session, sitting: Sitting, ac: AccessCode, camp: Campaign, enr: Enrolment,
             birth_year: int | None) -> StudentSession:
    battery = _battery(camp, enr, birth_year)
    done = frozenset(s.connection().execute(_DONE_Q, {"c": camp.id, "s": ac.student_id}).scalars())
    return StudentSession(sitting, camp.id, ac.student_id, battery, done, camp.closes_at, camp.academic_year_id,
                          enr.school_unit_id, enr.unit_path, ac.completed_at is not None)


def begin(ctx: ServiceContext, raw_code: str) -> StudentSession:
    """Enter with a code: a new sitting starts (any earlier sitting of this code, on this or another
    device, ends). Marks the code used on first entry; later entries resume the saved answers."""
    code = codes.normalise(raw_code)
    if code is None:
        raise CodeRejected("invalid")
    with ctx.uow() as uow:
        s = uow.session
        h = codes.hash_code(ctx, s, code)
        ac, camp, enr, by = _state(ctx, s, code_hash=h)
        sitting = Sitting(ac.id, secrets.token_bytes(SITTING_BYTES))
        s.execute(sa.update(AccessCode).where(AccessCode.id == ac.id)
                  .values(sitting_hash=sitting_digest(sitting.token)))
        first = s.execute(sa.update(AccessCode).where(AccessCode.id == ac.id, AccessCode.first_used_at.is_(None))
                          .values(first_used_at=ctx.now())).rowcount == 1  # type: ignore[attr-defined]
        if first:
            audit.record(ctx, s, SYSTEM, "screening:code_first_used", "access_code", ac.id,
                         {"campaign_id": camp.id})
        sess = _session(s, sitting, ac, camp, enr, by)
        uow.commit()
        return sess


def load(ctx: ServiceContext, sitting: Sitting, *, allow_completed: bool = False) -> StudentSession:
    """Re-check a signed-in sitting on every request (a read: no write lock on SQLite).
    ``allow_completed``: the thank-you page, which also accepts the sitting that finished."""
    with ctx.uow(read_only=True) as uow:
        s = uow.session
        ac, camp, enr, by = _state(ctx, s, sitting=sitting, allow_completed=allow_completed)
        return _session(s, sitting, ac, camp, enr, by)


def pause(ctx: ServiceContext, sitting: Sitting) -> bool:
    """"Leave for now": end the sitting server-side (answers are already saved; entering the code
    again starts a new sitting and resumes). Only the current sitting can end itself; True if it did.
    One statement, no state read: a stale or forged sitting changes nothing."""
    with ctx.core_uow() as uow:
        n = uow.connection.execute(sa.update(_AC).where(_AC.c.id == sitting.access_code_id,
                                                        _AC.c.sitting_hash == sitting_digest(sitting.token))
                                   .values(sitting_hash=None)).rowcount
        uow.commit()
    return n == 1


# --------------------------------------------------------------------------- answers


def _open_answers(ctx: ServiceContext, s: Session, envelope: bytes | None, row_id: uuid.UUID) -> dict[str, Any]:
    """A page's answers ``{item: value}`` from ``Response.answers_enc`` ({} when none yet)."""
    if envelope is None:
        return {}
    txt = ctx.keyring.open_field(s, envelope, table="response", column="answers_enc", row_id=row_id)
    return json.loads(txt) if txt else {}


def _open_answers_on(ctx: ServiceContext, conn: sa.Connection, envelope: bytes | None,
                     row_id: uuid.UUID | None) -> dict[str, Any]:
    """``_open_answers`` in a transaction on a Core connection (no Session)."""
    if envelope is None or row_id is None:
        return {}
    txt = ctx.keyring.open_field_on(conn, envelope, table="response", column="answers_enc", row_id=row_id)
    return json.loads(txt) if txt else {}


def _answers_json(answers: Mapping[str, Any]) -> str:
    """What ``Response.answers_enc`` seals: the answers as JSON in item order."""
    ordered = {k: answers[k] for k in sorted(answers, key=int)}
    return json.dumps(ordered, separators=(",", ":"))


def _seal_answers(ctx: ServiceContext, s: Session, student_id: uuid.UUID, row_id: uuid.UUID,
                  answers: Mapping[str, Any], now: datetime) -> bytes | None:
    """``Response.answers_enc`` for ``answers``: JSON in item order, sealed under the student's key."""
    return ctx.keyring.seal(s, table="response", column="answers_enc", row_id=row_id,
                            value=_answers_json(answers), student_id=student_id, now=now)


def _apply(current: dict[str, Any], coerced: list[tuple[str, Any]]) -> dict[str, Any]:
    """Posted answers merged into the page's (None clears one), as given."""
    for k, v in coerced:
        if v is None:
            current.pop(k, None)
        else:
            current[k] = v
    return current


def _merged_ms(old: Mapping[str, Any] | None, item_ms: Mapping[Any, Any] | None) -> dict[str, Any]:
    """Time per item (ms, clamped), the posted ones over the stored ones; junk entries are skipped."""
    ms = dict(old or {})
    for k, v in (item_ms or {}).items():
        try:
            ms[str(int(k))] = max(0, min(int(v), MAX_ITEM_MS))
        except (TypeError, ValueError):
            continue
    return ms


def coerce_value(inst: Instrument, item: int | str, value: Any) -> tuple[str, Any]:
    """(item key, printed value) from form/JSON input; ValidationFailed when not an option."""
    try:
        n = int(item)
        it = inst.item(n)
    except (TypeError, ValueError, KeyError, IndexError, NotFound):
        raise ValidationFailed("unknown item") from None
    if value is None or value == "":
        return str(n), None
    if it.kind == "yes_no":
        v: Any = str(value)
    else:
        if isinstance(value, bool) or not isinstance(value, int | str):  # 1.7 or true is not "as given"
            raise ValidationFailed("not an option of this item")
        try:
            v = int(value)
        except (TypeError, ValueError):
            raise ValidationFailed("not an option of this item") from None
    if it.response_set.option(v) is None:
        raise ValidationFailed("not an option of this item")
    return str(n), v


def unanswered(inst: Instrument, answers: Mapping[Any, Any]) -> list[int]:
    """The asked items a page's answers (form or stored: item → value as given) leave blank; answers
    that are not options count as blank here (the submit refuses them with its own message)."""
    raw: dict[int, Any] = {}
    for k, v in answers.items():
        try:
            key, val = coerce_value(inst, k, v)
        except ValidationFailed:
            continue
        if val is not None:
            raw[int(key)] = val
    return unanswered_items(inst, raw)


def _instrument(sess_battery: tuple[str, ...], instrument_id: str) -> Instrument:
    if instrument_id not in sess_battery:
        raise NotFound("instrument not in this battery")
    return load_instrument(instrument_id)


_RESPONSE_Q = sa.select(Response).where(Response.campaign_id == sa.bindparam("c", type_=sa.Uuid()),
                                         Response.student_id == sa.bindparam("s", type_=sa.Uuid()),
                                         Response.instrument_id == sa.bindparam("i"))
_RESPONSE_Q_LOCK = _RESPONSE_Q.with_for_update()


def _lock_response(s: Session, campaign_id: uuid.UUID, student_id: uuid.UUID, instrument_id: str) -> Response | None:
    q = _RESPONSE_Q_LOCK if s.get_bind().dialect.name == "postgresql" else _RESPONSE_Q
    return s.scalar(q, {"c": campaign_id, "s": student_id, "i": instrument_id})


def _get_or_create(s: Session, st: Any, inst: Instrument, now) -> Response:
    """The page's response, locked, or a new one (``st``, the page read: campaign_id, student_id, school_unit_id)."""
    resp = _lock_response(s, st.campaign_id, st.student_id, inst.id)
    if resp is not None:
        return resp
    resp = Response(id=time_ordered_uuid(), campaign_id=st.campaign_id, student_id=st.student_id,
                    school_unit_id=st.school_unit_id, instrument_id=inst.id,
                    instrument_version=inst.version, source="online", status="in_progress", n_answered=0,
                    item_ms={}, started_at=now, updated_at=now)
    try:
        with s.begin_nested():
            s.add(resp)
    except IntegrityError:  # a second tab created it at the same moment: use theirs, locked
        resp = _lock_response(s, st.campaign_id, st.student_id, inst.id)
        if resp is None:
            raise
    return resp


def _merge_page(ctx: ServiceContext, s: Session, st: Any, inst: Instrument, answers: Mapping[Any, Any],
                item_ms: Mapping[Any, Any] | None, now: datetime) -> tuple[Response, dict[str, Any]]:
    """Merge posted answers (None clears one) and item times into the page's response and seal the
    answers again, as given. Refuses a page already submitted (the submit path; autosave writes
    the same values through ``_plan_save``)."""
    coerced = [coerce_value(inst, k, v) for k, v in answers.items()]
    resp = _get_or_create(s, st, inst, now)
    if resp.status == "submitted":
        raise PageSubmitted()
    current = _apply(_open_answers(ctx, s, resp.answers_enc, resp.id), coerced)
    if item_ms:
        resp.item_ms = _merged_ms(resp.item_ms, item_ms)
    resp.answers_enc = _seal_answers(ctx, s, resp.student_id, resp.id, current, now)
    resp.n_answered = len(current)
    return resp, current


@dataclass(frozen=True)
class SaveResult:
    n_answered: int
    critical: bool  # a critical item of this page is answered positively: show help at once


def save_answer(ctx: ServiceContext, sitting: Sitting, instrument_id: str, item: int | str, value: Any,
                item_ms: int | None = None) -> SaveResult:
    """Save one answer as given (None clears it). One transaction; the flag path on a critical item."""
    return save_answers(ctx, sitting, instrument_id, {item: value}, {item: item_ms} if item_ms else None)


def save_answers(ctx: ServiceContext, sitting: Sitting, instrument_id: str,
                 answers: Mapping[Any, Any], item_ms: Mapping[Any, Any] | None = None) -> SaveResult:
    """Autosave (the hot path: ~85% of a screening's requests) — Core statements on Core units of work
    (``ctx.core_uow``: no ORM Session unless the flag path or a student's first data key needs one).

    One query reads the code (with its sitting digest, compared here: a stale sitting writes nothing),
    campaign, enrolment, consent, the student's active data key and the page's response together; the merged answers are sealed again and written with a
    compare-and-swap on the previous envelope (every envelope has a fresh nonce), so two tabs
    saving at once cannot lose each other's answers: the loser reads again and re-applies. The
    first answer of a page inserts the response (``ON CONFLICT DO NOTHING``, then the same retry).

    On SQLite the read and the sealing run in a read transaction and only the write takes the
    database's single write lock (held for one statement, not for the decryption and sealing);
    on PostgreSQL both run in one transaction, and an attempt that lost a race first locks the
    page's row, so it cannot lose twice. Either way the checks (window, consent, code) hold at a
    snapshot taken at most one statement before the write."""
    split = ctx.engine.dialect.name == "sqlite"
    for attempt in range(8):
        plan: _SavePlan | None = None
        if split:
            with ctx.core_uow(read_only=True) as ruow:
                plan = _plan_save(ctx, ruow, sitting, instrument_id, answers, item_ms)
        with ctx.core_uow() as uow:
            if plan is None or plan.needs_write_txn:
                if attempt and not split:
                    # lost a race: take the page's row lock first, so this attempt cannot lose again
                    uow.connection.execute(_LOCK_PAGE, {"acid": sitting.access_code_id, "iid": instrument_id})
                plan = _plan_save(ctx, uow, sitting, instrument_id, answers, item_ms)
            if _write_save(ctx, uow, plan):
                uow.commit()
                return SaveResult(plan.n_answered, plan.critical)
    raise DomainError("the page is being saved from several places at once; try again")


@dataclass
class _SavePlan:
    """What one autosave will write: computed from a snapshot, written with a compare-and-swap."""

    rid: uuid.UUID
    insert: dict[str, Any] | None  # the new page's row, or None to update ``cas``
    cas: dict[str, Any] | None
    n_answered: int
    critical: bool
    fire: bool  # a critical item answered positively for the first time on this page
    result: ScoreResult | None
    needs_write_txn: bool  # the student has no data key yet: it is created with the write


_RESP: sa.Table = Response.__table__  # type: ignore[assignment]
_AC, _CAMP, _ENR, _STU, _KEY = (cast(sa.Table, m.__table__) for m in (AccessCode, Campaign, Enrolment, Student, DataKey))
_SAVE_Q = (
    sa.select(_AC.c.student_id, _AC.c.campaign_id, _AC.c.revoked_at, _AC.c.completed_at, _AC.c.sitting_hash,
              _CAMP.c.status, _CAMP.c.opens_at, _CAMP.c.closes_at, _CAMP.c.battery,
              _ENR.c.grade_level, _ENR.c.school_unit_id, _STU.c.birth_year,
              consent_ok(_AC.c.student_id, _CAMP.c.academic_year_id).label("ok"),
              _KEY.c.id.label("key_id"), _KEY.c.master_key_id, _KEY.c.wrapped,
              _RESP.c.id.label("rid"), _RESP.c.status.label("rstatus"), _RESP.c.answers_enc, _RESP.c.item_ms,
              _RESP.c.critical_fired)
    .select_from(_AC)
    .join(_CAMP, _CAMP.c.id == _AC.c.campaign_id)
    .join(_STU, _STU.c.id == _AC.c.student_id)
    .join(_ENR, sa.and_(_ENR.c.student_id == _AC.c.student_id, _ENR.c.academic_year_id == _CAMP.c.academic_year_id,
                        _ENR.c.active.is_(True)))
    .outerjoin(_KEY, sa.and_(_KEY.c.student_id == _AC.c.student_id, _KEY.c.active.is_(True)))
    .outerjoin(_RESP, sa.and_(_RESP.c.campaign_id == _AC.c.campaign_id, _RESP.c.student_id == _AC.c.student_id,
                              _RESP.c.instrument_id == sa.bindparam("iid")))
    .where(_AC.c.id == sa.bindparam("acid", type_=sa.Uuid()), _STU.c.erased_at.is_(None))
)
_DONE_Q = sa.select(Response.instrument_id).where(Response.campaign_id == sa.bindparam("c", type_=sa.Uuid()),
                                                  Response.student_id == sa.bindparam("s", type_=sa.Uuid()),
                                                  Response.status == "submitted")
_DONE_Q_AUDITED = audit.riding(_DONE_Q)  # the submission's audit event rides on it (PostgreSQL)
_LOCK_PAGE = (sa.select(_RESP.c.id).select_from(_RESP.join(_AC, sa.and_(_AC.c.campaign_id == _RESP.c.campaign_id,
                                                                      _AC.c.student_id == _RESP.c.student_id)))
              .where(_AC.c.id == sa.bindparam("acid", type_=sa.Uuid()), _RESP.c.instrument_id == sa.bindparam("iid"))
              .with_for_update(of=_RESP))
_SAVE_CAS = (_RESP.update()
             .where(_RESP.c.id == sa.bindparam("b_id", type_=sa.Uuid()), _RESP.c.status == "in_progress",
                    _RESP.c.answers_enc.is_not_distinct_from(sa.bindparam("b_old", type_=_RESP.c.answers_enc.type)))
             .values(answers_enc=sa.bindparam("b_enc"), n_answered=sa.bindparam("b_n"), item_ms=sa.bindparam("b_ms"),
                     updated_at=sa.bindparam("b_now"), critical_fired=sa.bindparam("b_crit")))


# The new page's row, inserted unless another tab created it first (0 rows then). Written as text,
# built once per dialect: SQLAlchemy 2.0 does not cache the dialects' ``insert().on_conflict_do_nothing()``
# (their Insert has ``inherit_cache = False``), so that construct was compiled again on every first
# answer of a page. The SQL is the same on SQLite and PostgreSQL; the bound values keep the columns'
# types (UUID, JSON, UTC datetime and envelope processing as for any insert).
_INSERT_COLUMNS = ("id", "campaign_id", "student_id", "school_unit_id", "instrument_id",
                   "instrument_version", "source", "status", "answers_enc", "n_answered", "item_ms", "started_at",
                   "updated_at", "critical_fired", "critical_unanswered")
_INSERT_IGNORE: dict[str, Any] = {}


def _insert_ignore_for(dialect: sa.Dialect) -> Any:
    q = dialect.identifier_preparer
    cols = ", ".join(q.quote(c) for c in _INSERT_COLUMNS)
    binds = ", ".join(f":{c}" for c in _INSERT_COLUMNS)
    sql = f"INSERT INTO {q.format_table(_RESP)} ({cols}) VALUES ({binds}) ON CONFLICT DO NOTHING"  # noqa: S608 - quoted names from the metadata, values bound  # nosec B608
    # nosemgrep: mhp-sql-built-string - quoted names from the metadata; every value a typed bindparam
    stmt = sa.text(sql).bindparams(*(sa.bindparam(c, type_=_RESP.c[c].type) for c in _INSERT_COLUMNS))
    # an INSERT's rowcount is only kept when asked for; 0 here means another tab created the page
    return stmt.execution_options(preserve_rowcount=True)


def _insert_ignore(conn: sa.Connection) -> Any:
    dialect = conn.dialect
    stmt = _INSERT_IGNORE.get(dialect.name)
    if stmt is None:
        stmt = _INSERT_IGNORE[dialect.name] = _insert_ignore_for(dialect)
    return stmt


def _page_row(ctx: ServiceContext, conn: sa.Connection, sitting: Sitting, instrument_id: str,
              now: datetime) -> tuple[Any, Instrument, tuple[str, ...]]:
    """The one-query read of a page (code and its sitting, campaign, enrolment, consent, data key,
    response), gated: the sitting first (SittingEnded), then the code's own rules."""
    from mh_platform.services.campaigns import battery_from

    row = conn.execute(_SAVE_Q, {"acid": sitting.access_code_id, "iid": instrument_id}).first()
    if row is None:
        raise CodeRejected("invalid")
    _check_sitting(row.sitting_hash, sitting.token)
    _gate(now, row.revoked_at, row.status, row.opens_at, row.closes_at, row.ok, row.completed_at, False,
          sitting_grace(ctx))
    battery = battery_from(row.battery, row.opens_at, row.grade_level, row.birth_year)
    return row, _instrument(battery, instrument_id), battery


def _plan_save(ctx: ServiceContext, uow: CoreUnitOfWork, sitting: Sitting, instrument_id: str,
               answers: Mapping[Any, Any], item_ms: Mapping[Any, Any] | None) -> _SavePlan:
    now = ctx.now()
    row, inst, _battery_ids = _page_row(ctx, uow.connection, sitting, instrument_id, now)
    coerced = [coerce_value(inst, k, v) for k, v in answers.items()]
    if row.rid is not None and row.rstatus == "submitted":
        raise PageSubmitted()
    rid = row.rid or time_ordered_uuid()
    key = ctx.keyring.unwrap_student_key(row.student_id, row.key_id, row.master_key_id, row.wrapped)
    if key is None and uow.read_only:
        # no active key yet: sealing creates one, which must commit with the write
        return _SavePlan(rid, None, None, 0, False, False, None, needs_write_txn=True)
    return _sealed_plan(ctx, uow, key, row, inst, rid, coerced, item_ms, now)


def _sealed_plan(ctx: ServiceContext, uow: CoreUnitOfWork, key: Any, row: Any, inst: Instrument, rid: uuid.UUID,
                 coerced: list[tuple[str, Any]], item_ms: Mapping[Any, Any] | None, now: datetime) -> _SavePlan:
    # with the student's active key (from the page query) the answers are opened and sealed on the
    # connection; with none, the Session way creates the student's first key in this write, or refuses
    # a shredded one
    if key is not None:
        current = _open_answers_on(ctx, uow.connection, row.answers_enc, rid)
    else:
        current = _open_answers(ctx, uow.session, row.answers_enc, rid)
    fired_before = _fired(inst, current, row.critical_fired)
    current = _apply(current, coerced)
    if key is not None:
        enc = ctx.keyring.seal_with(key, table="response", column="answers_enc", row_id=rid,
                                    value=_answers_json(current))
    else:
        enc = _seal_answers(ctx, uow.session, row.student_id, rid, current, now)
    ms = _merged_ms(row.item_ms, item_ms)
    result = score(inst, current) if inst.critical_items else None
    critical = bool(result and result.critical)
    # the flag path runs when a critical item fires that had not fired on this page before: the
    # first one, or a later one (ASQ Q5 "yes", acute, after Q1 "yes" fired the page)
    fire = result is not None and critical and (not row.critical_fired or not set(result.critical) <= fired_before)
    if row.rid is None:
        insert = {"id": rid, "campaign_id": row.campaign_id, "student_id": row.student_id,
                  "school_unit_id": row.school_unit_id, "instrument_id": inst.id,
                  "instrument_version": inst.version, "source": "online", "status": "in_progress", "answers_enc": enc,
                  "n_answered": len(current), "item_ms": ms, "started_at": now, "updated_at": now,
                  "critical_fired": fire, "critical_unanswered": False}
        return _SavePlan(rid, insert, None, len(current), critical, fire, result, False)
    cas = {"b_id": rid, "b_old": row.answers_enc, "b_enc": enc, "b_n": len(current), "b_ms": ms, "b_now": now,
           "b_crit": bool(row.critical_fired) or fire}
    return _SavePlan(rid, None, cas, len(current), critical, fire, result, False)


def _fired(inst: Instrument, answers: dict[str, Any], page_fired: bool | None) -> frozenset[int]:
    """The critical items the page's stored answers fire — only needed once the page has fired (else
    any fired item is new)."""
    if not page_fired or not inst.critical_items or not answers:
        return frozenset()
    return frozenset(score(inst, answers).critical)


def _write_save(ctx: ServiceContext, uow: CoreUnitOfWork, plan: _SavePlan) -> bool:
    """Write a plan; False when another tab saved (or created the page) first."""
    conn = uow.connection
    if plan.insert is not None:
        n = conn.execute(_insert_ignore(conn), plan.insert).rowcount
    else:
        n = conn.execute(_SAVE_CAS, plan.cas).rowcount
    if n != 1:
        return False
    if plan.fire and plan.result is not None:  # the flag path is ORM work: a Session in this transaction
        s = uow.session
        resp = cast(Response, s.get(Response, plan.rid))  # written just above, in this transaction
        flag_path(ctx, s, resp, plan.result, ctx.now(), trigger="critical_item", uow=uow)
    return True


@dataclass(frozen=True)
class PageState:
    instrument: Instrument
    index: int
    count: int
    answers: dict[int, Any]
    critical: bool
    submitted: bool
    percent: int = 0
    battery: tuple[str, ...] = field(default_factory=tuple)
    grace_until: datetime | None = None  # the window has closed: this sitting may finish until then


def page(ctx: ServiceContext, sitting: Sitting, instrument_id: str) -> PageState:
    """What the student has answered so far on one page (the student's own answers: no access log).
    A read (no write lock on SQLite): the page query of the autosave, then the submitted pages."""
    with ctx.core_uow(read_only=True) as uow:
        conn = uow.connection
        now = ctx.now()
        row, inst, battery = _page_row(ctx, conn, sitting, instrument_id, now)
        ctx.keyring.unwrap_student_key(row.student_id, row.key_id, row.master_key_id, row.wrapped)  # cached for opening
        answers = _open_answers_on(ctx, conn, row.answers_enc, row.rid)
        done = set(conn.execute(_DONE_Q, {"c": row.campaign_id, "s": row.student_id}).scalars())
        sizes = {i: (inst.n_items if i == inst.id else load_instrument(i).n_items) for i in battery}
        total_items = sum(sizes.values())
        answered = sum(sizes[i] for i in battery if i in done)
        if instrument_id not in done:
            answered += len(answers)
        pct = int(100 * answered / total_items) if total_items else 100
        grace_until = row.closes_at + sitting_grace(ctx) if now >= row.closes_at else None
        return PageState(inst, battery.index(inst.id) + 1, len(battery), {int(k): v for k, v in answers.items()},
                         bool(row.critical_fired), row.rstatus == "submitted", pct, battery, grace_until)


# --------------------------------------------------------------------------- submit, score, flag


def quality_checks(inst: Instrument, answers: Mapping[str, Any], item_ms: Mapping[str, Any] | None) -> tuple[dict[str, Any], str | None]:
    """Response-quality indices for one page (advice for the counsellor; never lowers a flag)."""
    q: dict[str, Any] = {}
    times = [int(v) for v in (item_ms or {}).values() if isinstance(v, int | float)]
    if times and len(times) >= max(1, inst.n_items // 2):
        sec = sum(times) / 1000.0 / len(times)
        q["seconds_per_item"] = round(sec, 2)
        q["too_fast"] = sec < FAST_SECONDS_PER_ITEM
    vals = [answers.get(str(n)) for n in range(1, inst.n_items + 1)]
    choice = [v for v in vals if isinstance(v, int)]
    q["longstring"] = (inst.n_items >= LONGSTRING_MIN and len(choice) == inst.n_items and len(set(choice)) == 1
                       and choice[0] != min(o.value for o in inst.items[0].options if isinstance(o.value, int)))
    suggestion = "readminister" if q.get("too_fast") or q["longstring"] else None
    return q, suggestion


def apply_score(resp: Response, result: ScoreResult, quality: dict[str, Any], suggestion: str | None, now) -> None:
    resp.total = None if result.total is None else float(result.total)
    resp.score_status = result.status
    resp.band_id = result.band.id if result.band else None
    concern = result.concern
    resp.concern_level = concern.value if concern else None
    resp.subscales = {k: {"score": v.score, "positive": v.positive} for k, v in result.subscales.items()} or None
    resp.critical_fired = bool(result.critical) or resp.critical_fired
    resp.critical_unanswered = bool(result.critical_unanswered)
    resp.quality = quality
    resp.quality_suggestion = suggestion
    resp.instrument_version = result.instrument_version
    resp.scored_at = now


def flag_path(ctx: ServiceContext, s: Session, resp: Response, result: ScoreResult, now, *,
              trigger: str = "submitted", uow: Any = None, batch: Any = None) -> Any:
    """Hand a scored (or critical) response to the flags area, in the caller's transaction.

    Calls ``services.flags.raise_from_response`` (answers, score and flag commit together); with a
    ``uow``, the notifications it wrote to the outbox are sent after the commit (without one, the
    outbox job delivers them). ``batch`` (a ``flags.FlagBatch``): one of many flags in this
    transaction; its notices and cluster check wait for ``batch.finish``.
    """
    from mh_platform.services import flags

    out = flags.raise_from_response(ctx, s, resp, result, now=now, trigger=trigger, batch=batch)
    ids = list(getattr(out, "outbox_ids", None) or [])
    if ids and uow is not None:
        pending = getattr(uow, "_mhp_flag_outbox", None)
        if pending is None:  # one hand-off per transaction, however many responses it flagged
            pending = []
            uow._mhp_flag_outbox = pending

            def send() -> None:
                from mh_platform.services import notify

                try:
                    notify.send_soon(ctx, list(pending))
                except Exception:  # noqa: BLE001 - the outbox job retries; the answer is already saved
                    log.exception("flag notification hand-off failed; the outbox sweep will retry")

            uow.after_commit(send)
        pending.extend(ids)
    return out


@dataclass(frozen=True)
class SubmitResult:
    next_instrument: str | None
    finished: bool
    critical: bool
    missing: int


def submit(ctx: ServiceContext, sitting: Sitting, instrument_id: str,
           answers: Mapping[Any, Any] | None = None, item_ms: Mapping[Any, Any] | None = None) -> SubmitResult:
    """Finish one page: merge any posted answers, score, quality, flag path, in one transaction.
    The last page completes the code and ends the sitting (its digest becomes the "finished" one,
    which opens the thank-you page and nothing else)."""
    with ctx.uow() as uow:
        s = uow.session
        now = ctx.now()
        # the autosave's one-query page read (Core columns, same gate and battery) instead of ORM entities
        st, inst, battery = _page_row(ctx, s.connection(), sitting, instrument_id, now)
        ctx.keyring.prime_student_key(s, st.student_id, st.key_id, st.master_key_id, st.wrapped)
        resp, current = _merge_page(ctx, s, st, inst, answers or {}, item_ms, now)
        result = score(inst, current)
        if result.errors and result.status == INVALID and any("not an option" in e or "unknown" in e for e in result.errors):
            raise ValidationFailed("answers do not fit the instrument")
        quality, suggestion = quality_checks(inst, current, resp.item_ms)
        was_critical = resp.critical_fired
        apply_score(resp, result, quality, suggestion, now)
        resp.status, resp.submitted_at, resp.updated_at = "submitted", now, now
        s.flush()
        flag_path(ctx, s, resp, result, now, trigger="submitted", uow=uow)
        done = set(audit.record_riding(ctx, s, _DONE_Q, _DONE_Q_AUDITED, {"c": st.campaign_id, "s": st.student_id},
                                       SYSTEM, "screening:response_submitted", "response", resp.id,
                                       {"campaign_id": st.campaign_id, "instrument": inst.id,
                                        "status": result.status}).scalars())
        nxt = next((i for i in battery if i not in done), None)
        finished = nxt is None
        if finished:
            s.execute(sa.update(AccessCode).where(AccessCode.id == sitting.access_code_id,
                                                  AccessCode.completed_at.is_(None))
                      .values(completed_at=now, sitting_hash=sitting_digest(sitting.token, finished=True)))
            audit.record(ctx, s, SYSTEM, "screening:code_completed", "access_code", sitting.access_code_id,
                         {"campaign_id": st.campaign_id})
        uow.commit()
        return SubmitResult(nxt, finished, bool(result.critical) or was_critical,
                            inst.n_items - len(current))
