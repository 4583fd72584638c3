"""Screening campaigns: creation, the window jobs (open, close, reminders) and access codes.

A campaign screens the chosen grades of some units (and everything under them) in one school year,
with a battery copied from ``core/batteries.toml`` at creation. The scheduler opens and closes the
window and sends daily reminders; each step claims its rows with a conditional UPDATE, so running a
job twice, or in two processes at once, has the effect of running it once.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mh_platform.core import batteries
from mh_platform.core.errors import Forbidden, InvalidTransition, NotFound, ValidationFailed
from mh_platform.core.i18n import N_
from mh_platform.core.instruments import load_instrument
from mh_platform.core.types import Role, UnitKind
from mh_platform.db.models import (
    AccessCode,
    Campaign,
    CampaignUnit,
    Enrolment,
    OrgUnit,
    Outbox,
    RoleAssignment,
    Student,
)
from mh_platform.services import audit, codes
from mh_platform.services.access import current_year_id, in_scope
from mh_platform.services.consent import consent_ok
from mh_platform.services.context import SYSTEM, Actor, ServiceContext
from mh_platform.services.org import under

CREATORS = {Role.CITY_OFFICER, Role.COUNTY_OFFICER, Role.COUNSELLOR}
SLIP_PRINTERS = {Role.HEAD_TEACHER, Role.COUNSELLOR}
VIEWERS = {Role.HEAD_TEACHER, Role.COUNSELLOR, Role.SCHOOL_LEADER, Role.COUNTY_OFFICER, Role.CITY_OFFICER}


# --------------------------------------------------------------------------- queries


def campaign_units(s: Session, campaign_id: uuid.UUID) -> list[OrgUnit]:
    return list(s.scalars(sa.select(OrgUnit).join(CampaignUnit, CampaignUnit.unit_id == OrgUnit.id)
                          .where(CampaignUnit.campaign_id == campaign_id).order_by(OrgUnit.path)))


def eligible_condition(camp: Campaign, units: Sequence[OrgUnit]) -> sa.ColumnElement[bool]:
    """SQL on Enrolment: enrolled this school year in a screened grade under a screened unit."""
    return sa.and_(Enrolment.academic_year_id == camp.academic_year_id, Enrolment.active.is_(True),
                   Enrolment.grade_level.in_([int(g) for g in camp.grades]),
                   sa.or_(*[under(Enrolment.unit_path, u.path) for u in units]) if units else sa.false())


def rules_of(camp: Campaign) -> tuple[batteries.BatteryRule, ...]:
    return batteries.parse_rules(camp.battery)


def student_battery(camp: Campaign, grade: int, birth_year: int | None) -> tuple[str, ...]:
    return battery_from(camp.battery, camp.opens_at, grade, birth_year)


def battery_from(battery: Any, opens_at: datetime, grade: int, birth_year: int | None) -> tuple[str, ...]:
    """A student's battery from the campaign's stored rules (``Campaign.battery``): by grade, and by
    age in the year the window opens. For callers that read the columns, not the entity."""
    return batteries.battery_for(batteries.parse_rules(battery), grade, batteries.age_on(birth_year, opens_at.year))


def visible(actor: Actor, units: Iterable[OrgUnit]) -> bool:
    """A campaign is visible to an actor whose unit lies under, or above, one of its units."""
    if actor.role not in VIEWERS or not actor.unit_path:
        return False
    return any(u.path.startswith(actor.unit_path) or actor.unit_path.startswith(u.path) for u in units)


def get_campaign(s: Session, actor: Actor, campaign_id: uuid.UUID) -> tuple[Campaign, list[OrgUnit]]:
    camp = s.get(Campaign, campaign_id)
    if camp is None:
        raise NotFound("campaign not found")
    units = campaign_units(s, camp.id)
    if actor is not SYSTEM and not visible(actor, units):
        raise NotFound("campaign not found")
    return camp, units


@dataclass(frozen=True)
class CampaignView:
    id: uuid.UUID
    name: str
    status: str
    opens_at: datetime
    closes_at: datetime
    grades: list[int]
    instruments: tuple[str, ...]
    unit_names: list[str]
    without_chinese: tuple[str, ...] = ()  # instruments a student on the Chinese interface would read in English


def without_text(instrument_ids: Sequence[str], lang: str = "zh") -> tuple[str, ...]:
    """The instruments of a battery that have no item wording in ``lang`` (their licensed Chinese
    wording is not shipped; a deployment adds it): staff are told before codes go out."""
    return tuple(i for i in instrument_ids if not load_instrument(i).has_item_text(lang))


def _view(camp: Campaign, units: Sequence[OrgUnit]) -> CampaignView:
    instruments = batteries.all_instruments(rules_of(camp))
    return CampaignView(camp.id, camp.name, camp.status, camp.opens_at, camp.closes_at, list(camp.grades),
                        instruments, [u.name for u in units], without_text(instruments))


def list_campaigns(ctx: ServiceContext, actor: Actor) -> list[CampaignView]:
    with ctx.uow() as uow:
        s = uow.session
        out = []
        for camp in s.scalars(sa.select(Campaign).order_by(Campaign.opens_at.desc()).limit(200)):
            units = campaign_units(s, camp.id)
            if visible(actor, units):
                out.append(_view(camp, units))
        return out


def view(ctx: ServiceContext, actor: Actor, campaign_id: uuid.UUID) -> CampaignView:
    with ctx.uow() as uow:
        return _view(*get_campaign(uow.session, actor, campaign_id))


# --------------------------------------------------------------------------- create / cancel


def create(ctx: ServiceContext, actor: Actor, *, name: str, unit_ids: Sequence[uuid.UUID], grades: Sequence[int],
           opens_at: datetime, closes_at: datetime, rules: dict[str, Any] | None = None) -> uuid.UUID:
    """A scheduled campaign for ``grades`` of ``unit_ids`` (all in the actor's scope)."""
    if actor.role not in CREATORS:
        raise Forbidden(N_("only city and county officers and school counsellors create campaigns"))
    name = (name or "").strip()
    if not name or len(name) > 200:
        raise ValidationFailed(N_("a campaign needs a name (at most 200 characters)"))
    gs = sorted({int(g) for g in grades})
    if not gs or any(g < 1 or g > 12 for g in gs):
        raise ValidationFailed(N_("grades must be chosen from 1 to 12"))
    if opens_at.tzinfo is None or closes_at.tzinfo is None:
        raise ValidationFailed(N_("the window needs timezone-aware times"))
    if closes_at <= opens_at:
        raise ValidationFailed(N_("the window must close after it opens"))
    now = ctx.now()
    if closes_at <= now:
        raise ValidationFailed(N_("the window must close in the future"))
    rule_set = batteries.parse_rules(rules) if rules else batteries.load_rules()
    rule_set = batteries.restrict_to_grades(rule_set, gs)
    if not rule_set:
        raise ValidationFailed(N_("no battery rule covers the chosen grades"))
    uncovered = [g for g in gs if not any(r.applies(g) for r in rule_set)]
    if uncovered:
        raise ValidationFailed(N_("no battery rule covers grade(s) %(grades)s"), params={"grades": str(uncovered)})
    for iid in batteries.all_instruments(rule_set):
        load_instrument(iid)  # NotFound / InstrumentError when a battery names a missing instrument
    if not unit_ids:
        raise ValidationFailed(N_("choose at least one unit"))
    with ctx.uow() as uow:
        s = uow.session
        yid = current_year_id(s)
        if yid is None:
            raise ValidationFailed(N_("no current school year: create one first"))
        units = []
        for uid in dict.fromkeys(unit_ids):
            u = s.get(OrgUnit, uid)
            if u is None or not in_scope(actor, u.path):
                raise NotFound("unit not found")
            if UnitKind(u.kind) in (UnitKind.GRADE, UnitKind.CLASS):
                raise ValidationFailed(N_("campaigns are for schools, counties or the city (choose grades separately)"))
            units.append(u)
        camp = Campaign(id=uuid.uuid4(), name=name, academic_year_id=yid, owner_unit_id=actor.unit_id,
                        created_by=actor.user_id, grades=gs, battery=batteries.rules_to_json(rule_set),
                        opens_at=opens_at, closes_at=closes_at, status="scheduled", created_at=now)
        s.add(camp)
        s.flush()
        for u in units:
            s.add(CampaignUnit(campaign_id=camp.id, unit_id=u.id))
        audit.record(ctx, s, actor, "campaign:created", "campaign", camp.id,
                     {"units": [str(u.id) for u in units], "grades": gs,
                      "instruments": list(batteries.all_instruments(rule_set))})
        uow.commit()
        return camp.id


def cancel(ctx: ServiceContext, actor: Actor, campaign_id: uuid.UUID) -> None:
    if actor.role not in CREATORS:
        raise Forbidden(N_("only campaign creators cancel campaigns"))
    with ctx.uow() as uow:
        s = uow.session
        camp, units = get_campaign(s, actor, campaign_id)
        if not all(in_scope(actor, u.path) for u in units):
            raise Forbidden(N_("the campaign reaches beyond your units"))
        res = s.execute(sa.update(Campaign).where(Campaign.id == camp.id, Campaign.status.in_(("scheduled", "open")))
                        .values(status="cancelled", closed_at=ctx.now()))
        if res.rowcount != 1:  # type: ignore[attr-defined]
            raise InvalidTransition(N_("only a scheduled or open campaign can be cancelled"))
        _end_sittings(s, camp.id)
        audit.record(ctx, s, actor, "campaign:cancelled", "campaign", camp.id, {})
        uow.commit()


# --------------------------------------------------------------------------- window jobs


def open_due(ctx: ServiceContext, now: datetime | None = None) -> dict[str, Any]:
    """Open every scheduled campaign whose window has begun (and not yet ended). Idempotent."""
    now = now or ctx.now()
    opened: list[str] = []
    with ctx.uow() as uow:
        s = uow.session
        due = list(s.scalars(sa.select(Campaign.id).where(Campaign.status == "scheduled", Campaign.opens_at <= now,
                                                           Campaign.closes_at > now)))
        for cid in due:
            res = cast(sa.CursorResult, s.execute(sa.update(Campaign).where(Campaign.id == cid,
                                                                            Campaign.status == "scheduled")
                                                  .values(status="open", opened_at=now)))
            if res.rowcount == 1:  # claimed: another process did not get there first
                audit.record(ctx, s, SYSTEM, "campaign:opened", "campaign", cid, {})
                opened.append(str(cid))
        uow.commit()
    return {"opened": opened}


def _end_sittings(s: Session, campaign_id: uuid.UUID) -> int:
    """Every student sitting of the campaign ends (the code's gate refuses a closed window anyway;
    this leaves no live sitting behind). The unique key's prefix finds them. Returns how many."""
    return s.execute(sa.update(AccessCode).where(AccessCode.campaign_id == campaign_id,  # type: ignore[attr-defined]
                                                 AccessCode.sitting_hash.is_not(None))
                     .values(sitting_hash=None)).rowcount


GRACE_SWEEP_DAYS = 7
"""How far back ``close_due`` looks for closed campaigns whose grace has ended with sittings still
set (hygiene only: the gate refuses them by time whatever the job does)."""


def close_due(ctx: ServiceContext, now: datetime | None = None) -> dict[str, Any]:
    """Close every scheduled or open campaign whose window has ended, and end the sittings of
    closed campaigns whose grace (``responses.sitting_grace``) has passed. Idempotent.

    At the close no new sitting can start (a typed code needs the window open). A sitting already
    open keeps working for the grace (``responses.window_admits``), so an answer typed in the last
    minute is saved; with no grace, or once it has passed, the sittings end here."""
    from mh_platform.services.responses import sitting_grace

    now = now or ctx.now()
    grace = sitting_grace(ctx)
    closed: list[str] = []
    ended = 0
    with ctx.uow() as uow:
        s = uow.session
        due = list(s.scalars(sa.select(Campaign.id).where(Campaign.status.in_(("scheduled", "open")),
                                                           Campaign.closes_at <= now)))
        for cid in due:
            res = s.execute(sa.update(Campaign).where(Campaign.id == cid, Campaign.status.in_(("scheduled", "open")))
                            .values(status="closed", closed_at=now))
            if res.rowcount == 1:  # type: ignore[attr-defined]
                n_open = s.scalar(sa.select(sa.func.count()).select_from(AccessCode)
                                  .where(AccessCode.campaign_id == cid, AccessCode.completed_at.is_(None),
                                         AccessCode.first_used_at.is_not(None))) or 0
                audit.record(ctx, s, SYSTEM, "campaign:closed", "campaign", cid, {"unfinished": n_open})
                closed.append(str(cid))
        # the grace has passed: the sittings still open end (a few closed campaigns, recent ones)
        past_grace = s.scalars(sa.select(Campaign.id).where(Campaign.status == "closed",
                                                            Campaign.closes_at <= now - grace,
                                                            Campaign.closes_at > now - timedelta(days=GRACE_SWEEP_DAYS)))
        for cid in list(past_grace):
            ended += _end_sittings(s, cid)
        uow.commit()
    return {"closed": closed, "sittings_ended": ended}


REMINDER_TEMPLATE = "screening_reminder"


def send_reminders(ctx: ServiceContext, now: datetime | None = None) -> dict[str, Any]:
    """Once per day per class of an open campaign: tell the head teacher(s) how many consented
    students have not finished (a count, never names). Non-consented students are never counted
    or reminded. The outbox's unique dedupe key makes a second run (or process) a no-op."""
    now = now or ctx.now()
    day = now.date().isoformat()
    written = 0
    with ctx.uow() as uow:
        s = uow.session
        camps = list(s.scalars(sa.select(Campaign).where(Campaign.status == "open", Campaign.opens_at <= now,
                                                          Campaign.closes_at > now)))
        for camp in camps:
            units = campaign_units(s, camp.id)
            done = sa.exists().where(AccessCode.campaign_id == camp.id, AccessCode.student_id == Enrolment.student_id,
                                     AccessCode.completed_at.is_not(None))
            q = (sa.select(Enrolment.class_unit_id, sa.func.count())
                 .join(Student, Student.id == Enrolment.student_id)
                 .where(eligible_condition(camp, units), consent_ok(Enrolment.student_id, camp.academic_year_id),
                        ~done, Student.erased_at.is_(None))
                 .group_by(Enrolment.class_unit_id))
            remaining: dict[uuid.UUID, int] = {r[0]: int(r[1]) for r in s.execute(q)}
            if not remaining:
                continue
            prefix = f"screening-reminder:{camp.id}:"
            already = set(s.scalars(sa.select(Outbox.dedupe_key).where(Outbox.dedupe_key.like(prefix + "%:" + day + ":%"))))
            teachers = s.execute(sa.select(RoleAssignment.unit_id, RoleAssignment.user_id)
                                 .where(RoleAssignment.role == Role.HEAD_TEACHER.value,
                                        RoleAssignment.unit_id.in_(list(remaining)))).all()
            for class_id, user_id in teachers:
                key = f"{prefix}{class_id}:{day}:{user_id}"
                if key in already:
                    continue
                try:
                    with s.begin_nested():
                        s.add(Outbox(id=uuid.uuid4(), channel="inbox", recipient_user_id=user_id,
                                     template=REMINDER_TEMPLATE,
                                     params={"campaign_id": str(camp.id), "class_unit_id": str(class_id),
                                             "remaining": int(remaining[class_id]), "closes_at": camp.closes_at.isoformat()},
                                     dedupe_key=key, status="pending", attempts=0, next_attempt_at=now, created_at=now))
                    written += 1
                except IntegrityError:  # another process wrote it first
                    continue
        uow.commit()
    return {"reminders": written}


# --------------------------------------------------------------------------- codes and slips


def revoke_codes_after_move(s: Session, student_id: uuid.UUID, enrolment: Enrolment, now: datetime) -> int:
    """A student moved (``students.enrol``): their unfinished codes of that school year's campaigns
    that do not screen the new class (its units or its grade) are revoked, and a live sitting ends
    with them, in the caller's transaction — as a consent withdrawal does. A move within a
    campaign's units and grades keeps the code (the battery resumes). Returns how many."""
    rows = s.execute(sa.select(AccessCode.id, Campaign.id, Campaign.grades)
                     .join(Campaign, Campaign.id == AccessCode.campaign_id)
                     .where(AccessCode.student_id == student_id,
                            Campaign.academic_year_id == enrolment.academic_year_id,
                            AccessCode.completed_at.is_(None), AccessCode.revoked_at.is_(None))).all()
    gone = [acid for acid, cid, grades in rows
            if enrolment.grade_level not in {int(g) for g in grades}
            or not any(enrolment.unit_path.startswith(u.path) for u in campaign_units(s, cid))]
    if gone:
        s.execute(sa.update(AccessCode).where(AccessCode.id.in_(gone)).values(revoked_at=now, sitting_hash=None)
                  .execution_options(synchronize_session=False))
    return len(gone)


@dataclass(frozen=True)
class Slip:
    student_id: uuid.UUID
    name: str | None
    code: str | None  # display form; None when no code is due (finished / no consent)
    state: str  # issued / completed / no_consent
    instruments: tuple[str, ...]


@dataclass(frozen=True)
class SlipSheet:
    campaign_name: str
    class_name: str
    closes_at: datetime
    slips: list[Slip]


def print_slips(ctx: ServiceContext, actor: Actor, campaign_id: uuid.UUID, class_unit_id: uuid.UUID) -> SlipSheet:
    """Fresh codes for one class (codes are stored hashed, so every print issues new ones and the
    previous slips of unfinished students stop working; a started battery resumes under the new
    code). Students without consent get no code. Names are opened through disclosure with the
    purpose ``print_code_slips``."""
    if actor.role not in SLIP_PRINTERS:
        raise Forbidden(N_("code slips are printed by the head teacher or the counsellor"))
    from mh_platform.services.disclosure import student_names

    with ctx.uow() as uow:
        s = uow.session
        now = ctx.now()
        camp, units = get_campaign(s, actor, campaign_id)
        cls = s.get(OrgUnit, class_unit_id)
        if cls is None or cls.kind != UnitKind.CLASS.value or not in_scope(actor, cls.path):
            raise NotFound("class not found")
        if camp.status not in ("scheduled", "open") or camp.closes_at <= now:
            raise InvalidTransition(N_("codes are printed only before the window closes"))
        rows = s.execute(sa.select(Student, Enrolment, consent_ok(Student.id, camp.academic_year_id).label("ok"))
                         .join(Enrolment, Enrolment.student_id == Student.id)
                         .where(eligible_condition(camp, units), Enrolment.class_unit_id == cls.id,
                                Student.erased_at.is_(None))).all()
        existing = {c.student_id: c for c in s.scalars(sa.select(AccessCode).where(
            AccessCode.campaign_id == camp.id, AccessCode.student_id.in_([r[0].id for r in rows])))}
        names = student_names(ctx, s, actor, [r[0] for r in rows], purpose="print_code_slips")
        slips: list[Slip] = []
        issued = 0
        for st, enr, ok in rows:
            battery = student_battery(camp, enr.grade_level, st.birth_year)
            ac = existing.get(st.id)
            if not ok:
                slips.append(Slip(st.id, names.get(st.id), None, "no_consent", battery))
                continue
            if ac is not None and ac.completed_at is not None:
                slips.append(Slip(st.id, names.get(st.id), None, "completed", battery))
                continue
            code = codes.generate()
            h = codes.hash_code(ctx, s, code)
            if ac is None:
                s.add(AccessCode(id=uuid.uuid4(), campaign_id=camp.id, student_id=st.id, code_hash=h,
                                 class_unit_id=cls.id, created_at=now))
            else:
                # a new slip: the old one and any sitting it started stop working
                ac.code_hash, ac.revoked_at, ac.class_unit_id, ac.sitting_hash = h, None, cls.id, None
            issued += 1
            slips.append(Slip(st.id, names.get(st.id), codes.display(code), "issued", battery))
        s.flush()
        audit.record(ctx, s, actor, "campaign:codes_issued", "campaign", camp.id,
                     {"class_unit_id": cls.id, "issued": issued, "students": len(rows)})
        uow.commit()
    slips.sort(key=lambda x: (x.name or ""))
    return SlipSheet(camp.name, cls.name, camp.closes_at, slips)


def issue_codes_system(ctx: ServiceContext, campaign_id: uuid.UUID) -> dict[uuid.UUID, str]:
    """Codes for every consented, unfinished eligible student of a campaign (tests, demo, benchmarks;
    staff use ``print_slips``). Returns student id → canonical code (shown once, never stored)."""
    out: dict[uuid.UUID, str] = {}
    with ctx.uow() as uow:
        s = uow.session
        now = ctx.now()
        camp, units = get_campaign(s, SYSTEM, campaign_id)
        rows = s.execute(sa.select(Enrolment.student_id, Enrolment.class_unit_id)
                         .where(eligible_condition(camp, units), consent_ok(Enrolment.student_id, camp.academic_year_id))).all()
        existing = {c.student_id: c for c in s.scalars(sa.select(AccessCode).where(AccessCode.campaign_id == camp.id))}
        for sid, cid in rows:
            ac = existing.get(sid)
            if ac is not None and ac.completed_at is not None:
                continue
            code = codes.generate()
            h = codes.hash_code(ctx, s, code)
            if ac is None:
                s.add(AccessCode(id=uuid.uuid4(), campaign_id=camp.id, student_id=sid, code_hash=h,
                                 class_unit_id=cid, created_at=now))
            else:
                ac.code_hash, ac.revoked_at, ac.sitting_hash = h, None, None
            out[sid] = code
        audit.record(ctx, s, SYSTEM, "campaign:codes_issued", "campaign", camp.id, {"issued": len(out)})
        uow.commit()
    return out


def units_for_form(ctx: ServiceContext, actor: Actor) -> list[tuple[str, str]]:
    """City, county and school units in the actor's scope that a campaign can target (id, name)."""
    if not actor.unit_path:
        return []
    with ctx.uow() as uow:
        rows = uow.session.execute(sa.select(OrgUnit.id, OrgUnit.name).where(
            under(OrgUnit.path, actor.unit_path), OrgUnit.kind.in_(("city", "county", "school")))
            .order_by(OrgUnit.path).limit(500)).all()
    return [(str(i), n) for i, n in rows]
