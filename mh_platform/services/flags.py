"""Risk flags: raise or attach evidence, and every person's action on a flag — one transaction each.

Sources: a scored response (band, critical item, unanswered critical item, reliable deterioration
since the student's previous screening on the same instrument), a concern from a class monitor or
a teacher, and the risk model's watch signal (at most yellow, never above the school).

One open flag per student per episode (a partial unique index): new evidence attaches to the open
flag and may raise its level, never lower it. Where a flag starts and its deadlines come from the
escalation policy (``core.escalation``); what may happen next from the transition table
(``core.flag_lifecycle``). Every change is a ``flag_event`` row (reason sealed with the keyring)
AND an entry in the hash-chained event log, in the same transaction as the change and its outbox
notifications.

Locking order (no deadlocks between the sweep, people and raises): every writer here first locks
the audit anchor row (PostgreSQL ``FOR UPDATE``; SQLite transactions are serial anyway), then the
flag row with a conditional UPDATE on ``version``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mh_platform.core import flag_lifecycle as fl
from mh_platform.core import flag_rules as fr
from mh_platform.core.errors import Conflict, Forbidden, NotFound, ValidationFailed
from mh_platform.core.escalation import (
    EscalationPolicy,
    due_oversight_notices,
    reachable_tier,
    start_tier,
    tier_rank,
)
from mh_platform.core.i18n import N_
from mh_platform.core.types import TIER_ORDER, Level, Role, Tier
from mh_platform.db.models import (
    Concern,
    Enrolment,
    Flag,
    FlagEvent,
    FlagEvidence,
    OrgUnit,
    Response,
    Student,
)
from mh_platform.services import audit, notify
from mh_platform.services.access import current_enrolment
from mh_platform.services.context import SYSTEM, Actor, ServiceContext
from mh_platform.services.flags_access import (
    access_flag_by_id,
    escalation_policy,
    flag_scope,
    sees_clinical,
    sees_watch,
)

# What the person holding the flag should do, by level (shown to head teachers instead of scores).
GUIDANCE: dict[str, tuple[str, str]] = {
    "red": ("立即关注：确保学生不独处，1小时内联系学校心理教师，按危机干预流程处理。",
            "Act now: keep the student accompanied, reach the school counsellor within 1 hour, follow the crisis protocol."),
    "orange": ("尽快关注：24小时内与学校心理教师沟通，安排访谈。",
               "Soon: talk to the school counsellor within 24 hours and arrange an interview."),
    "yellow": ("持续关注：日常留意学生状态，72小时内确认，必要时与心理教师沟通。",
               "Watch: keep an eye on the student, acknowledge within 72 hours, consult the counsellor if needed."),
}

# Which unit of a flag's path each role is reached at.
ROLE_TIER: dict[Role, Tier] = {Role.HEAD_TEACHER: Tier.CLASS, Role.COUNSELLOR: Tier.SCHOOL,
                               Role.SCHOOL_LEADER: Tier.SCHOOL, Role.COUNTY_OFFICER: Tier.COUNTY,
                               Role.CITY_OFFICER: Tier.CITY}
_PATH_INDEX = {Tier.CITY: 0, Tier.COUNTY: 1, Tier.SCHOOL: 2, Tier.CLASS: 4}


@dataclass
class FlagOutcome:
    """What raising or attaching did."""

    flag_id: uuid.UUID
    created: bool
    level: str
    tier: str
    level_raised: bool = False
    outbox_ids: list[uuid.UUID] = field(default_factory=list)


# ----------------------------------------------------------------------------- helpers


AUDIT_LOCK = 7303720601  # services.audit's writer lock (pg_advisory_xact_lock)


def lock_audit(s: Session) -> None:
    """Take the audit writers' lock first (PostgreSQL), so every writer locks in the same order:
    audit lock, then flag rows. SQLite transactions are serial (BEGIN IMMEDIATE) anyway."""
    if s.get_bind().dialect.name == "postgresql":
        # nosemgrep: mhp-sql-built-string - AUDIT_LOCK is this module's integer constant
        s.execute(sa.text(f"SELECT pg_advisory_xact_lock({AUDIT_LOCK})"))


def to_state(flag: Flag) -> fl.FlagState:
    return fl.FlagState(level=Level(flag.level), tier=Tier(flag.tier), status=fl.FlagStatus(flag.status),
                        opened_at=flag.opened_at, tier_entered_at=flag.tier_entered_at, ack_due_at=flag.ack_due_at,
                        handle_due_at=flag.handle_due_at, is_watch=flag.is_watch, escalations=flag.escalations,
                        county_informed_at=flag.county_informed_at, city_informed_at=flag.city_informed_at)


def state_values(state: fl.FlagState) -> dict[str, Any]:
    return {"level": state.level.value, "tier": state.tier.value, "status": state.status.value,
            "tier_entered_at": state.tier_entered_at, "ack_due_at": state.ack_due_at,
            "handle_due_at": state.handle_due_at, "is_watch": state.is_watch, "escalations": state.escalations}


def claim_update(s: Session, flag: Flag, values: dict[str, Any], *, tier: str | None = None) -> bool:
    """``UPDATE flag SET … , version = version + 1 WHERE id = :id AND version = :v [AND tier = :t]``;
    True when this transaction won (rowcount 1). The loaded object is refreshed on success.

    A flag added in this transaction and not flushed yet (``FlagBatch``) has no row anyone else
    could change: the values and the next version are set on the object, and its INSERT writes
    them — the row the INSERT-then-UPDATE of the one-by-one path leaves."""
    if sa.inspect(flag).pending:
        if tier is not None and flag.tier != tier:
            return False
        for k, v in values.items():
            setattr(flag, k, v)
        flag.version += 1
        return True
    conds = [Flag.id == flag.id, Flag.version == flag.version]
    if tier is not None:
        conds.append(Flag.tier == tier)
    stmt = (sa.update(Flag).where(*conds).values(**values, version=flag.version + 1)
            .execution_options(synchronize_session=False))
    res: sa.CursorResult[Any] = s.execute(stmt)  # type: ignore[assignment]
    if res.rowcount != 1:
        return False
    s.refresh(flag)
    return True


def add_unique(s: Session, row: Any, batch: FlagBatch | None) -> bool:
    """Add a flag or cluster alert that a unique index may refuse (one open flag per student, one
    alert per unit and day); True when added, False when a concurrent transaction has the row.
    One by one, a savepoint catches that race. In a ``FlagBatch`` there is none to catch: the batch
    holds the audit lock (``prefetch``) that every flag opener and alert raiser takes before it
    reads or inserts, so the row is added without a savepoint and written by the batch's next flush."""
    if batch is not None:
        s.add(row)
        return True
    try:
        with s.begin_nested():
            s.add(row)
            s.flush()
        return True
    except sa.exc.IntegrityError:
        return False


def audit_buffer(batch: FlagBatch | None) -> list[dict[str, Any]] | None:
    """Where ``audit.record`` puts an entry: the batch's buffer (written by ``FlagBatch.flush``), or
    None (written at once)."""
    return batch.audit if batch is not None else None


def unit_for_tier(s: Session, flag: Flag, tier: Tier, cache: dict[uuid.UUID, OrgUnit] | None = None) -> OrgUnit | None:
    parts = flag.unit_path.strip("/").split("/")
    i = _PATH_INDEX[tier]
    if i >= len(parts):
        return None
    uid = uuid.UUID(parts[i])
    if cache is not None and uid in cache:
        return cache[uid]
    unit = s.get(OrgUnit, uid)
    if cache is not None and unit is not None:
        cache[uid] = unit
    return unit


@dataclass
class FlagBatch:
    """Many flags raised in one transaction (a paper import), with the same outcome as one by one and
    less work per flag:

    - the org units and each (role, unit)'s recipients are looked up once for the batch, not once
      per flag (the same class, school and county come back for every student of a class);
    - the notices are planned per flag and written together by ``finish`` (one set-based insert,
      skipping dedupe keys already queued, as ``notify.enqueue`` does one by one); none is sent
      inline — the outbox job delivers them;
    - cluster alerts are checked once per class and once per school by ``finish``, after the last
      flag is in (``escalation.check_clusters_once``), not after every flag;
    - the new flags, their events and evidence are written by ``flush`` (after each chunk, and in
      ``finish``), many rows per INSERT, and a new flag needs no savepoint: ``prefetch`` took the
      audit lock, which every flag opener takes before its insert, so no other transaction can open
      the same student's flag meanwhile (one by one, the savepoint catches that race).

    Only for one transaction: ``finish`` before the caller commits."""

    units: dict[uuid.UUID, OrgUnit] = field(default_factory=dict)
    recipients: dict[tuple[str, uuid.UUID], list[tuple[uuid.UUID, str | None]]] = field(default_factory=dict)
    outbox: dict[str, dict[str, Any]] = field(default_factory=dict)  # planned rows by dedupe key
    enrolments: dict[uuid.UUID, Enrolment | None] = field(default_factory=dict)  # by student, from ``prefetch``
    open_flags: dict[uuid.UUID, Flag | None] = field(default_factory=dict)  # by student: the open flag (held)
    changed: dict[uuid.UUID, Flag] = field(default_factory=dict)  # flags opened or raised, in order (held:
    # the session's identity map keeps only weak references, so a flag no one holds is read again)
    audit: list[dict[str, Any]] = field(default_factory=list)  # audit entries for ``flush`` to insert
    without_previous: set[tuple[uuid.UUID, str]] = field(default_factory=set)  # (student, instrument)
    # pairs the caller found to have no scored screening in another campaign: no look-up per response

    def prefetch(self, s: Session, student_ids: Sequence[uuid.UUID]) -> None:
        """The current enrolments and open flags of the students about to be flagged, in two set-based
        reads (as ``current_enrolment`` and ``_open_flag`` read them one by one; on PostgreSQL the open
        flags are locked ``FOR UPDATE`` as there). A flag the batch opens is recorded as the student's
        open flag, so a second flagged response of the same student attaches to it."""
        from mh_platform.db.bulk import in_chunks

        todo = [sid for sid in dict.fromkeys(student_ids) if sid not in self.enrolments]
        if not todo:
            return
        lock_audit(s)  # the writers' lock order: audit lock first, then flag rows (see the module docstring)
        for cond in in_chunks(s, Enrolment.student_id, todo):
            for e in s.scalars(sa.select(Enrolment).where(cond, Enrolment.active.is_(True))
                               .order_by(Enrolment.started_at.desc())):
                self.enrolments.setdefault(e.student_id, e)  # the newest active one, as current_enrolment
        for cond in in_chunks(s, Flag.student_id, todo):
            q = sa.select(Flag).where(cond, Flag.status != "closed")
            if s.get_bind().dialect.name == "postgresql":
                q = q.with_for_update()
            for f in s.scalars(q):
                self.open_flags[f.student_id] = f
        for sid in todo:
            self.enrolments.setdefault(sid, None)
            self.open_flags.setdefault(sid, None)

    def users(self, s: Session, role: Role, unit_id: uuid.UUID) -> list[tuple[uuid.UUID, str | None]]:
        key = (Role(role).value, unit_id)
        if key not in self.recipients:
            self.recipients.update(notify.recipients_by_unit(s, [(role, unit_id)]))
        return self.recipients[key]

    def plan(self, ctx: ServiceContext, s: Session, *, role: Role, unit: OrgUnit, template: str, link: str,
             dedupe: str, now: datetime) -> None:
        """``notify.notify_unit_role``'s notices, planned for ``finish`` to write."""
        for row in notify.plan_unit_role(ctx, self.users(s, role, unit.id), role=role, unit=unit, template=template,
                                         link=link, dedupe=dedupe, now=now):
            self.outbox.setdefault(row["dedupe_key"], row)

    def flush(self, s: Session) -> None:
        """Write the flags, events and evidence the batch has added since the last flush: one
        INSERT per table for many rows, and the audit entries collected meanwhile (one INSERT, in the
        order recorded). The caller flushes after each chunk; ``finish`` does too."""
        s.flush()
        audit.write_buffered(s, self.audit)

    def finish(self, ctx: ServiceContext, s: Session, now: datetime) -> None:
        """Check clusters for the flags the batch opened or raised, then write every planned notice."""
        from mh_platform.services.escalation import check_clusters_once

        self.flush(s)
        check_clusters_once(ctx, s, list(self.changed.values()), now, batch=self)
        self.flush(s)  # the cluster alerts and their audit entries
        notify.enqueue_many(s, list(self.outbox.values()))
        self.outbox.clear()


def has_recipient(s: Session, role: Role, unit_id: uuid.UUID, batch: FlagBatch | None = None) -> bool:
    """Someone active holds ``role`` at exactly ``unit_id`` (a batch's cached look-up when given)."""
    if batch is not None:
        return bool(batch.users(s, role, unit_id))
    return bool(notify.users_with_role(s, role, unit_id))


def record_no_recipient(ctx: ServiceContext, s: Session, *, role: Role, unit: OrgUnit, flag_id: uuid.UUID | None,
                        template: str, batch: FlagBatch | None = None) -> None:
    """Audit a notice that found nobody in ``role`` at ``unit`` (codes and ids only), so an administrator
    sees the units missing a role (``coverage.units_missing_roles`` lists them as they are now)."""
    data: dict[str, Any] = {"role": Role(role).value, "template": template}
    if flag_id is not None:
        data["flag"] = str(flag_id)
    audit.record(ctx, s, SYSTEM, "notify:no_recipient", "org_unit", unit.id, data, buffer=audit_buffer(batch))


def notify_roles(ctx: ServiceContext, s: Session, flag: Flag, roles: Iterable[Role], template: str, dedupe: str,
                 now: datetime, cache: dict[uuid.UUID, OrgUnit] | None = None,
                 batch: FlagBatch | None = None) -> list[uuid.UUID]:
    """Queue ``template`` for each role at the flag's unit of that role's tier (link to the flag).
    With ``batch``, the notices are planned into it (``FlagBatch.finish`` writes them) and no id is
    returned. A role nobody holds at its unit is recorded (``notify:no_recipient``); who acts on the
    flag is made reachable beforehand by ``reach``."""
    ids: list[uuid.UUID] = []
    for role in dict.fromkeys(roles):
        unit = unit_for_tier(s, flag, ROLE_TIER[role], batch.units if batch is not None else cache)
        if unit is None:
            continue
        if batch is not None:
            if not batch.users(s, role, unit.id):
                record_no_recipient(ctx, s, role=role, unit=unit, flag_id=flag.id, template=template, batch=batch)
            batch.plan(ctx, s, role=role, unit=unit, template=template, link=f"/flags/{flag.id}",
                       dedupe=f"{dedupe}:{role.value}", now=now)
            continue
        users = notify.users_with_role(s, role, unit.id)
        if not users:
            record_no_recipient(ctx, s, role=role, unit=unit, flag_id=flag.id, template=template)
        ids += notify.notify_unit_role(ctx, s, role=role, unit=unit, template=template, link=f"/flags/{flag.id}",
                                       dedupe=f"{dedupe}:{role.value}", now=now, users=users)
    return ids


def reach(ctx: ServiceContext, s: Session, flag: Flag, now: datetime, policy: EscalationPolicy,
          cache: dict[uuid.UUID, OrgUnit] | None = None, batch: FlagBatch | None = None,
          template: str = "flag_needs_action") -> bool:
    """Make sure someone can act on the flag where it is: when nobody active holds the acting role
    (``tier_roles``) at the flag's unit of its tier, hand it up at once to the lowest tier that has
    someone (``core.escalation.reachable_tier``, ``core.flag_lifecycle.reroute``): an event
    ``flag:escalated`` with ``reason_code="no_recipient"`` and, for each tier passed over, a
    ``notify:no_recipient`` audit entry. The caller then tells the acting role of ``flag.tier``, who can
    open the flag (it is at their tier). True when the flag moved.

    Call it whenever a flag enters a tier (raise, escalation, a level raised, a move of school)."""
    units = batch.units if batch is not None else cache
    tier = Tier(flag.tier)
    staffed: set[Tier] = set()
    gaps: list[tuple[Tier, Role, OrgUnit]] = []
    for t in TIER_ORDER[tier_rank(tier):]:
        role = policy.tier_roles[t]
        unit = unit_for_tier(s, flag, t, units)
        if unit is None:
            continue
        if has_recipient(s, role, unit.id, batch):
            staffed.add(t)
            break
        gaps.append((t, role, unit))
    target = reachable_tier(tier, staffed, is_watch=flag.is_watch, policy=policy)
    for t, role, unit in gaps:
        if target is None or tier_rank(t) < tier_rank(target):
            record_no_recipient(ctx, s, role=role, unit=unit, flag_id=flag.id, template=template, batch=batch)
    if target is None or target == tier:
        return False
    new, ev = fl.reroute(to_state(flag), target, now, policy)
    if not claim_update(s, flag, state_values(new)):
        raise Conflict(N_("the flag changed meanwhile; retry"))
    add_event(ctx, s, flag, ev, SYSTEM, extra={"passed_over": [str(u.id) for t, _r, u in gaps
                                                                if tier_rank(t) < tier_rank(target)]},
              batch=batch)
    return True


def add_event(ctx: ServiceContext, s: Session, flag: Flag, ev: fl.FlagEvent, actor: Actor | None,
              reason: str | None = None, *, extra: dict[str, Any] | None = None,
              batch: FlagBatch | None = None) -> FlagEvent:
    """The flag_event row (reason sealed) and its hash-chained audit entry, in this transaction. Call it
    after the change is claimed: the event's ``seq`` is the flag's version after it."""
    eid = uuid.uuid4()
    reason_enc = None
    if reason:
        reason_enc = ctx.keyring.seal(s, table="flag_event", column="reason_enc", row_id=eid, value=reason,
                                      student_id=flag.student_id, now=ev.at)
    row = FlagEvent(id=eid, flag_id=flag.id, kind=ev.kind.value,
                    from_status=ev.from_status.value if ev.from_status else None, to_status=ev.to_status.value,
                    from_tier=ev.from_tier.value if ev.from_tier else None, to_tier=ev.to_tier.value,
                    from_level=ev.from_level.value if ev.from_level else None, to_level=ev.to_level.value,
                    actor_user_id=actor.user_id if actor else None, reason_code=ev.reason_code,
                    reason_enc=reason_enc, at=ev.at, seq=flag.version)
    s.add(row)
    data = {"event": str(eid), "from_status": row.from_status, "to_status": row.to_status,
            "from_tier": row.from_tier, "to_tier": row.to_tier, "from_level": row.from_level,
            "to_level": row.to_level, "reason_code": row.reason_code, "has_reason": reason_enc is not None,
            **(extra or {})}
    audit.record(ctx, s, actor, ev.kind.value, "flag", flag.id, data, buffer=audit_buffer(batch))
    return row


def oversight(ctx: ServiceContext, s: Session, flag: Flag, now: datetime, policy: EscalationPolicy,
              cache: dict[uuid.UUID, OrgUnit] | None = None, batch: FlagBatch | None = None) -> list[uuid.UUID]:
    """Send the one-time oversight notices still owed (red: county at once; city when open > 48 h).

    A county with no active officer: the city officer is told instead, at once, and ``city_informed_at``
    is stamped with it, which is what lets the city open the flag (``flags_access``); the gap is
    recorded (``notify:no_recipient``).

    Caller holds the flag (fresh claim or just created); the *_informed_at columns make it once."""
    ids: list[uuid.UUID] = []
    units = batch.units if batch is not None else cache
    for n in due_oversight_notices(to_state(flag), now, policy):
        if n.tier == Tier.CITY and flag.city_informed_at is not None:
            continue  # already told the city in this loop, instead of an unstaffed county
        col = "county_informed_at" if n.tier == Tier.COUNTY else "city_informed_at"
        values: dict[str, Any] = {col: now}
        role, code, tier = n.role, n.reason_code, n.tier
        if n.tier == Tier.COUNTY:
            county = unit_for_tier(s, flag, Tier.COUNTY, units)
            if county is not None and not has_recipient(s, n.role, county.id, batch):
                record_no_recipient(ctx, s, role=n.role, unit=county, flag_id=flag.id, template="flag_oversight",
                                    batch=batch)
                if flag.city_informed_at is not None:  # the city already knows
                    if not claim_update(s, flag, values):
                        raise Conflict(N_("the flag changed meanwhile"))
                    continue
                values["city_informed_at"] = now
                role, code, tier = policy.tier_roles[Tier.CITY], f"{n.reason_code}:no_county", Tier.CITY
        if not claim_update(s, flag, values):
            raise Conflict(N_("the flag changed meanwhile"))
        ids += notify_roles(ctx, s, flag, [role], "flag_oversight", f"flag:{flag.id}:{code}", now, cache,
                            batch)
        audit.record(ctx, s, SYSTEM, "flag:reported", "flag", flag.id,
                     {"tier": tier.value, "reason_code": code}, buffer=audit_buffer(batch))
    return ids


def _open_flag(s: Session, student_id: uuid.UUID) -> Flag | None:
    q = sa.select(Flag).where(Flag.student_id == student_id, Flag.status != "closed")
    if s.get_bind().dialect.name == "postgresql":
        q = q.with_for_update()
    return s.scalar(q)


def _source_kind(evidence: Sequence[fr.Evidence]) -> str:
    if fr.is_watch_only(evidence):
        return "model"
    if all(e.source == fr.EvidenceSource.CONCERN for e in evidence):
        return "concern"
    if any(e.source != fr.EvidenceSource.CONCERN and e.source != fr.EvidenceSource.MODEL for e in evidence):
        return "screening"
    return "concern"


# ----------------------------------------------------------------------------- the student moves


def _start_tier_of(s: Session, flag: Flag, policy: EscalationPolicy) -> Tier:
    """Where a flag like this one starts (``core.escalation.start_tier``), from its raise event's source."""
    source = s.scalar(sa.select(FlagEvent.reason_code).where(FlagEvent.flag_id == flag.id,
                                                             FlagEvent.kind == fl.FlagEventKind.RAISED.value))
    try:
        return start_tier(source or "screening", None, policy)
    except ValidationFailed:
        return policy.start_screening


def follow_enrolment(ctx: ServiceContext, s: Session, student_id: uuid.UUID, enrol: Enrolment, now: datetime, *,
                     flag: Flag | None = None, batch: FlagBatch | None = None) -> list[uuid.UUID]:
    """Move the student's open flag to their current enrolment, in the caller's transaction (called by
    ``students.enrol`` for every move, and by ``open_or_attach_in`` for a flag found left behind).

    - Another class of the same school: the flag's class and unit path change; tier, status and clocks
      run on; if it is at the class tier, the new class's head teacher is told.
    - Another school: the flag restarts there (``core.flag_lifecycle.relocate``): ``raised`` at the tier
      its source starts at, at least the school tier, fresh clocks, no owner; made reachable (``reach``);
      the new acting role is told at once; a red flag is reported again to a county or city that changed.
    - Cluster alerts (``escalation.check_clusters``): a flag below the cluster levels (yellow) now counts
      at the new class and school (``opened_class_unit_id`` / ``opened_school_unit_id`` re-pointed); a
      red or orange flag keeps counting where it became one, and never in the new class.
    - Either way one ``flag:transferred`` event (``student_moved_class`` / ``student_transferred``) and its
      audit entry, with the old and new school and class ids. The evidence and the history stay with the
      flag; the old school's people no longer reach it (access is by the flag's unit path), as with a
      case after its handover. Returns the outbox ids (none with ``batch``)."""
    p = escalation_policy(ctx)
    if flag is None:
        lock_audit(s)
        flag = _open_flag(s, student_id)
    if flag is None or (flag.class_unit_id == enrol.class_unit_id and flag.unit_path == enrol.unit_path):
        return []
    old_parts, new_parts = flag.unit_path.strip("/").split("/"), enrol.unit_path.strip("/").split("/")
    new_school = flag.school_unit_id != enrol.school_unit_id
    new, ev = fl.relocate(to_state(flag), now, new_school=new_school, start=_start_tier_of(s, flag, p), policy=p)
    moved = {"from_school": str(flag.school_unit_id), "to_school": str(enrol.school_unit_id),
             "from_class": str(flag.class_unit_id), "to_class": str(enrol.class_unit_id)}
    values: dict[str, Any] = {**state_values(new), "school_unit_id": enrol.school_unit_id,
                              "class_unit_id": enrol.class_unit_id, "unit_path": enrol.unit_path}
    if flag.level not in fr.default_flag_policy().cluster.level_values:
        # not (yet) a cluster level: it counted towards no cluster where it was, and a later rise
        # happens where the student is now, so it counts there (docs/flags.md §6). A flag at a
        # cluster level keeps its units: it was counted there, and not in the new class.
        values.update(opened_class_unit_id=enrol.class_unit_id, opened_school_unit_id=enrol.school_unit_id)
    if new_school:
        values.update(owner_user_id=None, acknowledged_at=None, handled_at=None)
        if old_parts[_PATH_INDEX[Tier.COUNTY]] != new_parts[_PATH_INDEX[Tier.COUNTY]]:
            values["county_informed_at"] = None  # the new county has not been told
        if old_parts[_PATH_INDEX[Tier.CITY]] != new_parts[_PATH_INDEX[Tier.CITY]]:
            values["city_informed_at"] = None
    if not claim_update(s, flag, values):
        raise Conflict(N_("the flag changed meanwhile; retry"))
    add_event(ctx, s, flag, ev, SYSTEM, extra=moved, batch=batch)
    cache: dict[uuid.UUID, OrgUnit] = batch.units if batch is not None else {}
    handed_up = reach(ctx, s, flag, now, p, cache, batch)
    ids: list[uuid.UUID] = []
    if new_school or handed_up or Tier(flag.tier) == Tier.CLASS:
        ids += notify_roles(ctx, s, flag, [p.tier_roles[Tier(flag.tier)]], "flag_needs_action",
                            f"flag:{flag.id}:moved:{flag.version}", now, cache, batch)
    if new_school:
        ids += oversight(ctx, s, flag, now, p, cache, batch)
    return ids


# ----------------------------------------------------------------------------- raise / attach


def open_or_attach_in(s: Session, ctx: ServiceContext, actor: Actor | None, *, student_id: uuid.UUID,
                      evidence: Sequence[fr.Evidence], now: datetime, reporter_role: Role | None = None,
                      response_id: uuid.UUID | None = None, concern_id: uuid.UUID | None = None,
                      batch: FlagBatch | None = None) -> FlagOutcome | None:
    """Open the student's flag or attach ``evidence`` to the open one, in the caller's transaction.

    ``batch``: one of many flags in this transaction (a bulk import); its notices and cluster check
    are left to ``FlagBatch.finish`` (see there)."""
    if not evidence:
        return None
    p = escalation_policy(ctx)
    if batch is not None:
        batch.prefetch(s, [student_id])  # nothing to read when the caller prefetched the batch
    enrol = batch.enrolments[student_id] if batch is not None else current_enrolment(s, student_id)
    if enrol is None:
        raise NotFound("student not found")
    if batch is None:
        lock_audit(s)  # a batch took it in ``prefetch`` and holds it to the commit
    level = fr.evidence_level(evidence)
    assert level is not None
    watch_only = fr.is_watch_only(evidence)
    flag = batch.open_flags[student_id] if batch is not None else _open_flag(s, student_id)
    created = False
    level_raised = False
    ids: list[uuid.UUID] = []
    cache: dict[uuid.UUID, OrgUnit] = batch.units if batch is not None else {}
    if flag is not None and (flag.class_unit_id != enrol.class_unit_id or flag.unit_path != enrol.unit_path):
        # the student moved and the flag stayed behind (an enrolment changed without ``students.enrol``):
        # move it to where the student is now before the evidence attaches
        ids += follow_enrolment(ctx, s, student_id, enrol, now, flag=flag, batch=batch)
    if flag is None:
        kind = _source_kind(evidence)
        state, ev = fl.raise_flag(level, kind, now, reporter_role=reporter_role if kind == "concern" else None,
                                  is_watch=watch_only, policy=p)
        candidate = Flag(id=uuid.uuid4(), student_id=student_id, school_unit_id=enrol.school_unit_id,
                         class_unit_id=enrol.class_unit_id, unit_path=enrol.unit_path, opened_at=now,
                         opened_school_unit_id=enrol.school_unit_id, opened_class_unit_id=enrol.class_unit_id,
                         **state_values(state), version=1)
        if add_unique(s, candidate, batch):
            flag, created = candidate, True
        else:  # a concurrent transaction opened the student's flag first
            flag = _open_flag(s, student_id)
            if flag is None:
                raise Conflict(N_("could not open or find the student's flag; retry"))
        if batch is not None:
            batch.open_flags[student_id] = flag
        if created:
            add_event(ctx, s, flag, ev, actor, extra={"source": kind}, batch=batch)
            reach(ctx, s, flag, now, p, cache, batch)  # nobody to act at the start tier: handed up at once
            owner = p.tier_roles[Tier(flag.tier)]
            ids += notify_roles(ctx, s, flag, [owner], "flag_needs_action", f"flag:{flag.id}:raised", now, cache,
                                batch)
            ids += oversight(ctx, s, flag, now, p, cache, batch)
    seen: set[tuple[Any, ...]] = set()  # a new flag has no evidence yet
    if not created:
        if batch is not None and sa.inspect(flag).pending:
            s.flush()  # a flag this batch opened, and its evidence, written before the evidence is read
        seen = {tuple(r) for r in s.execute(
            sa.select(FlagEvidence.reason_code, FlagEvidence.response_id, FlagEvidence.concern_id)
            .where(FlagEvidence.flag_id == flag.id)).all()}
        # Only evidence the flag does not have yet may move it up a tier or re-open triage: running the
        # rules again for a stored response (``raise_for_response``) changes nothing.
        fresh = [fl.NewEvidence(e.source.value, e.level,
                                reporter_role if e.source == fr.EvidenceSource.CONCERN else None)
                 for e in evidence if (e.reason_code, response_id, concern_id) not in seen]
        old = to_state(flag)
        new, ev2 = fl.add_evidence(old, level, now, watch_only=watch_only, new=fresh, policy=p)
        if ev2 is not None:
            if not claim_update(s, flag, state_values(new)):
                raise Conflict(N_("the flag changed meanwhile; retry"))
            add_event(ctx, s, flag, ev2, actor, batch=batch)
            level_raised = new.level != old.level
            # each change is its own notice (the version in the key): a level reached a second time —
            # lowered by the counsellor, then raised again — is told again
            if level_raised:
                notice: str | None = f"flag:{flag.id}:level:{new.level.value}:{flag.version}"
            elif new.tier != old.tier or new.status != old.status:
                notice = f"flag:{flag.id}:evidence:{flag.version}"  # moved up a tier, or back to triage
            elif old.is_watch and not new.is_watch:
                # a person's evidence on the model's watch-only flag: it now needs someone able to act
                # at its tier (handed up at once where nobody holds the role)
                notice = f"flag:{flag.id}:confirmed:{flag.version}"
            else:
                notice = None
            if notice is not None:
                # what opening the flag at its tier sends: its tier's role (handed up at once when
                # nobody holds it there), and a red flag's oversight
                handed_up = reach(ctx, s, flag, now, p, cache, batch)
                told = [p.tier_roles[Tier(flag.tier)]]
                # ``reach`` handed the flag up past the school: nobody holds the school's acting role
                # there, and that gap is recorded already (once, not again by the notice below)
                passed_school = (handed_up and tier_rank(new.tier) <= tier_rank(Tier.SCHOOL)
                                 and p.tier_roles[Tier.SCHOOL] == Role.COUNSELLOR)
                if (new.status == fl.FlagStatus.RAISED and old.status != fl.FlagStatus.RAISED
                        and tier_rank(Tier(flag.tier)) > tier_rank(Tier.SCHOOL) and not passed_school):
                    # back to triage above the school: the tier's role acknowledges there, but only the
                    # counsellor interviews the student again (the transition table), so they are told too
                    told.append(Role.COUNSELLOR)
                ids += notify_roles(ctx, s, flag, told, "flag_needs_action", notice, now, cache, batch)
                ids += oversight(ctx, s, flag, now, p, cache, batch)
    added = []
    for e in evidence:
        key = (e.reason_code, response_id, concern_id)
        if key in seen:
            continue
        seen.add(key)
        s.add(FlagEvidence(flag_id=flag.id, source=e.source.value, level=e.level.value, reason_code=e.reason_code,
                           response_id=response_id, concern_id=concern_id, detail=dict(e.detail), created_at=now))
        added.append(e.reason_code)
    if added and not created:
        audit.record(ctx, s, actor, "flag:evidence_attached", "flag", flag.id,
                     {"sources": sorted({e.source.value for e in evidence}), "count": len(added),
                      "response": str(response_id) if response_id else None,
                      "concern": str(concern_id) if concern_id else None}, buffer=audit_buffer(batch))
    if batch is None:
        s.flush()  # a batch flushes its rows together (``FlagBatch.flush``), many per INSERT
    if created or level_raised:
        if batch is not None:
            batch.changed[flag.id] = flag
        else:
            from mh_platform.services.escalation import check_clusters

            ids += check_clusters(ctx, s, flag, now)
    return FlagOutcome(flag.id, created, flag.level, flag.tier, level_raised, ids)


_PREVIOUS_Q = (sa.select(Response.total, Response.band_id)
               .where(Response.student_id == sa.bindparam("s", type_=sa.Uuid()),
                      Response.instrument_id == sa.bindparam("i"),
                      Response.status == "submitted", Response.id != sa.bindparam("r", type_=sa.Uuid()),
                      Response.campaign_id != sa.bindparam("c", type_=sa.Uuid()),
                      Response.total.is_not(None),
                      # a response not submitted yet has no time: every earlier one counts
                      sa.or_(sa.bindparam("t", type_=Response.submitted_at.type).is_(None),
                             Response.submitted_at < sa.bindparam("t", type_=Response.submitted_at.type)))
               .order_by(Response.submitted_at.desc()).limit(1))


def _previous_response(s: Session, response: Response) -> Any:
    """The student's last scored screening with this instrument in another campaign: (total, band_id)
    or None. Two columns from a statement built once: this runs on every submitted page."""
    return s.execute(_PREVIOUS_Q, {"s": response.student_id, "i": response.instrument_id, "r": response.id,
                                   "c": response.campaign_id, "t": response.submitted_at}).first()


def screening_evidence_for(s: Session, response: Response, result: Any, *, critical_only: bool = False,
                           batch: FlagBatch | None = None) -> list[fr.Evidence]:
    """Evidence in a scored response (core.flag_rules), with the previous screening for deterioration."""
    from mh_platform.core.instruments import load_instrument

    rc_value = None
    higher_is_worse = True
    try:
        inst = load_instrument(result.instrument_id)
        if inst.reliable_change is not None:
            rc_value = inst.reliable_change.value
            higher_is_worse = inst.reliable_change.worse != "lower"
    except Exception:  # noqa: BLE001 - an unknown instrument gives no deterioration evidence
        inst = None
    known_none = batch is not None and (response.student_id, response.instrument_id) in batch.without_previous
    prev = None if critical_only or known_none else _previous_response(s, response)
    band = result.band
    unanswered = () if critical_only else tuple(result.critical_unanswered)
    # the instrument file's level for each fired and each unanswered critical item (the rules take
    # the higher of it and the policy's)
    item_levels = {int(k): v for k, v in dict(getattr(result, "critical_levels", {}) or {}).items()
                   if int(k) in set(result.critical) or int(k) in set(unanswered)}
    ev = fr.ScreeningEvidence(
        instrument_id=result.instrument_id,
        band_id=None if critical_only or band is None else band.id,
        total=None if critical_only or result.total is None else float(result.total),
        critical=tuple(result.critical),
        critical_unanswered=unanswered,
        previous_total=prev.total if prev else None, previous_band_id=prev.band_id if prev else None,
        rc_value=rc_value, band_concern=None if band is None else band.concern,
        critical_levels=item_levels, higher_is_worse=higher_is_worse,
        quality_ok=response.quality_suggestion != "readminister",
    )
    return fr.screening_evidence(ev)


def raise_from_response_in(s: Session, ctx: ServiceContext, actor: Actor | None, response: Response, score_result: Any,
                           *, now: datetime | None = None, trigger: str = "submitted",
                           batch: FlagBatch | None = None) -> FlagOutcome | None:
    """Flag path for a scored response inside the caller's (answer submission) transaction.

    ``trigger="critical_item"`` (a critical item answered while the page is still open) uses only the
    critical items: a partial total says nothing yet."""
    now = now or ctx.now()
    evidence = screening_evidence_for(s, response, score_result, critical_only=trigger == "critical_item",
                                      batch=batch)
    if not evidence:
        return None
    return open_or_attach_in(s, ctx, actor or SYSTEM, student_id=response.student_id, evidence=evidence, now=now,
                             response_id=response.id, batch=batch)


def raise_from_response(ctx: ServiceContext, s: Session, response: Response, result: Any, *,
                        now: datetime | None = None, trigger: str = "submitted",
                        batch: FlagBatch | None = None) -> FlagOutcome | None:
    """The hook ``services.responses.flag_path`` calls (same transaction as the answers)."""
    out = raise_from_response_in(s, ctx, SYSTEM, response, result, now=now, trigger=trigger, batch=batch)
    return out


def raise_for_response(ctx: ServiceContext, actor: Actor, response_id: uuid.UUID) -> FlagOutcome | None:
    """Standalone service: (re)run the flag rules for a stored response (e.g. after a policy change).

    The answers are opened for system work only (no person sees them here)."""
    from mh_platform.core.instruments import load_instrument
    from mh_platform.core.scoring import score

    with ctx.uow() as uow:
        s = uow.session
        resp = s.get(Response, response_id)
        if resp is None or resp.status != "submitted" or resp.answers_enc is None:
            raise NotFound("response not found")
        import json

        answers = json.loads(ctx.keyring.open_field(s, resp.answers_enc, table="response", column="answers_enc",
                                                    row_id=resp.id))
        result = score(load_instrument(resp.instrument_id), answers)
        out = raise_from_response_in(s, ctx, actor, resp, result)
        _commit_and_send(ctx, uow, out.outbox_ids if out else [])
        return out


def raise_from_concern_in(s: Session, ctx: ServiceContext, actor: Actor, concern: Concern, now: datetime
                          ) -> FlagOutcome:
    evidence = [fr.concern_evidence(fr.ConcernEvidence(fr.Urgency(concern.urgency), concern.category))]
    out = open_or_attach_in(s, ctx, actor, student_id=concern.student_id, evidence=evidence, now=now,
                            reporter_role=Role(concern.reporter_role), concern_id=concern.id)
    assert out is not None
    return out


def raise_watch(ctx: ServiceContext, actor: Actor, student_id: uuid.UUID, signal: fr.WatchSignal
                ) -> FlagOutcome | None:
    """The risk model's watch signal: a yellow watch flag at the school (or evidence on the open flag).

    Never escalates beyond the school while only the model speaks (core rules); the risk engineer's
    job calls this per student the model flags."""
    ev = fr.model_evidence(signal)
    if ev is None:
        return None
    with ctx.uow() as uow:
        out = open_or_attach_in(uow.session, ctx, actor, student_id=student_id, evidence=[ev], now=ctx.now())
        _commit_and_send(ctx, uow, out.outbox_ids if out else [])
        return out


def _commit_and_send(ctx: ServiceContext, uow: Any, ids: Sequence[uuid.UUID]) -> None:
    if ids:
        ids = list(ids)
        uow.after_commit(lambda: notify.send_soon(ctx, ids))
    uow.commit()


# ----------------------------------------------------------------------------- people's actions


_STAMP = {fl.FlagStatus.ACKNOWLEDGED: "acknowledged_at", fl.FlagStatus.ASSESSED: "handled_at",
          fl.FlagStatus.CLOSED: "closed_at"}


def act(ctx: ServiceContext, actor: Actor, flag_id: uuid.UUID | str, action: fl.FlagAction | str, *,
        reason: str | None = None, new_level: Level | str | None = None) -> dict[str, Any]:
    """One person's action on one flag: scope (404), table and permission (403/409), reason, event, audit."""
    if actor.role is None:
        raise Forbidden(N_("a person must act on a flag"))
    try:
        action = fl.FlagAction(action)
    except ValueError:
        raise ValidationFailed(f"unknown action {action!r}") from None
    with ctx.uow() as uow:
        s = uow.session
        now = ctx.now()
        p = escalation_policy(ctx)
        lock_audit(s)
        flag = access_flag_by_id(s, actor, flag_id, now, policy=p, for_update=True)
        old = to_state(flag)
        new, ev = fl.apply(old, action, Role(actor.role), reason, now,
                           new_level=Level(new_level) if new_level else None, policy=p)
        values = state_values(new)
        stamp = _STAMP.get(new.status)
        if stamp and new.status != old.status:
            values[stamp] = now
        if action == fl.FlagAction.ACKNOWLEDGE:
            values["owner_user_id"] = actor.user_id
        if not claim_update(s, flag, values):
            raise Conflict(N_("the flag changed meanwhile; reload and try again"))
        add_event(ctx, s, flag, ev, actor, ev.reason)
        ids: list[uuid.UUID] = []
        if action == fl.FlagAction.ESCALATE:
            reach(ctx, s, flag, now, p, template="flag_escalated")
            ids += notify_roles(ctx, s, flag, [p.tier_roles[Tier(flag.tier)]], "flag_escalated",
                                f"flag:{flag.id}:esc{flag.escalations}", now)
        elif action == fl.FlagAction.REQUEST_CLOSE:
            ids += notify_roles(ctx, s, flag, [Role.COUNSELLOR], "flag_needs_action",
                                f"flag:{flag.id}:close_req:{flag.version}", now)
        if new.level != old.level:
            ids += oversight(ctx, s, flag, now, p)
        view = flag_view(ctx, s, actor, flag, now, with_events=False)
        _commit_and_send(ctx, uow, ids)
        return view


def acknowledge(ctx: ServiceContext, actor: Actor, flag_id: uuid.UUID | str) -> dict[str, Any]:
    return act(ctx, actor, flag_id, fl.FlagAction.ACKNOWLEDGE)


ASSESS_OUTCOMES = {"confirm": fl.FlagAction.CONFIRM, "change_level": fl.FlagAction.CHANGE_LEVEL,
                   "dismiss": fl.FlagAction.DISMISS}


def assess(ctx: ServiceContext, actor: Actor, flag_id: uuid.UUID | str, outcome: str, *,
           reason: str | None = None, new_level: Level | str | None = None) -> dict[str, Any]:
    """The counsellor's interview: confirm, change the level (reason), or dismiss as false positive (reason)."""
    if outcome not in ASSESS_OUTCOMES:
        raise ValidationFailed(N_("outcome must be confirm, change_level or dismiss"),
                               [{"field": "outcome", "error": "invalid"}])
    return act(ctx, actor, flag_id, ASSESS_OUTCOMES[outcome], reason=reason, new_level=new_level)


def start_intervention(ctx: ServiceContext, actor: Actor, flag_id: uuid.UUID | str) -> dict[str, Any]:
    return act(ctx, actor, flag_id, fl.FlagAction.START_INTERVENTION)


def refer(ctx: ServiceContext, actor: Actor, flag_id: uuid.UUID | str) -> dict[str, Any]:
    return act(ctx, actor, flag_id, fl.FlagAction.REFER)


def start_monitoring(ctx: ServiceContext, actor: Actor, flag_id: uuid.UUID | str) -> dict[str, Any]:
    return act(ctx, actor, flag_id, fl.FlagAction.START_MONITORING)


def close(ctx: ServiceContext, actor: Actor, flag_id: uuid.UUID | str, reason: str | None) -> dict[str, Any]:
    """Close with a reason: a counsellor closes a yellow flag directly; red and orange (or anyone
    but the counsellor) request closing, which a counsellor then reviews (``review_close``)."""
    with ctx.uow() as uow:
        now = ctx.now()
        flag = access_flag_by_id(uow.session, actor, flag_id, now, policy=escalation_policy(ctx))
        direct = flag.level == Level.YELLOW.value and actor.role == Role.COUNSELLOR
    return act(ctx, actor, flag_id, fl.FlagAction.CLOSE if direct else fl.FlagAction.REQUEST_CLOSE, reason=reason)


def review_close(ctx: ServiceContext, actor: Actor, flag_id: uuid.UUID | str, approve: bool,
                 reason: str | None = None) -> dict[str, Any]:
    return act(ctx, actor, flag_id, fl.FlagAction.REVIEW_CLOSE if approve else fl.FlagAction.REJECT_CLOSE,
               reason=reason)


def escalate(ctx: ServiceContext, actor: Actor, flag_id: uuid.UUID | str, reason: str | None) -> dict[str, Any]:
    """Push the flag one tier up by hand (a reason is required)."""
    return act(ctx, actor, flag_id, fl.FlagAction.ESCALATE, reason=reason)


# ----------------------------------------------------------------------------- views


def _iso(d: datetime | None) -> str | None:
    return d.isoformat() if d else None


def overdue(flag: Flag, now: datetime) -> bool:
    return flag.status != "closed" and any(d is not None and d <= now for d in (flag.ack_due_at, flag.handle_due_at))


def next_due(flag: Flag) -> datetime | None:
    ds = [d for d in (flag.ack_due_at, flag.handle_due_at) if d is not None]
    return min(ds) if ds else None


CONCERN_READERS = frozenset({Role.HEAD_TEACHER, Role.COUNSELLOR})  # core.authz: concern:read


def flag_view(ctx: ServiceContext, s: Session, actor: Actor, flag: Flag, now: datetime, *,
              with_events: bool = True, reveal_reasons: bool = False) -> dict[str, Any]:
    """What ``actor`` may see of a flag they already reach (``access_flag_by_id``/``flag_scope``).

    Everyone: level, tier, status, deadlines, what to do, allowed actions, event kinds. The
    counsellor also: evidence (scores, bands, critical items) and — with ``reveal_reasons`` — the
    sealed event reasons through ``disclosure`` (access-logged). Nobody else sees scores or answers."""
    from mh_platform.core.flag_lifecycle import allowed_actions

    p = escalation_policy(ctx)
    school = s.get(OrgUnit, flag.school_unit_id)
    klass = s.get(OrgUnit, flag.class_unit_id)
    out: dict[str, Any] = {
        "id": str(flag.id), "level": flag.level, "tier": flag.tier, "status": flag.status,
        "opened_at": _iso(flag.opened_at), "tier_entered_at": _iso(flag.tier_entered_at),
        "ack_due_at": _iso(flag.ack_due_at), "handle_due_at": _iso(flag.handle_due_at),
        "acknowledged_at": _iso(flag.acknowledged_at), "closed_at": _iso(flag.closed_at),
        "overdue": overdue(flag, now), "escalations": flag.escalations,
        "school": {"id": str(school.id), "name": school.name} if school else None,
        "class": {"id": str(klass.id), "name": klass.name} if klass else None,
        "what_to_do": {"zh": GUIDANCE[flag.level][0], "en": GUIDANCE[flag.level][1]},
        "actions": [a.value for a in allowed_actions(to_state(flag), Role(actor.role), p)] if actor.role else [],
    }
    if sees_watch(actor):  # the model's signal is the counsellor's alone (risk.md, model:read_watch)
        out["is_watch"] = flag.is_watch
    if actor.role in (Role.HEAD_TEACHER, Role.COUNSELLOR):
        out["student_id"] = str(flag.student_id)
    student = s.get(Student, flag.student_id)
    out["pseudonym"] = student.pseudonym if student else None
    if sees_clinical(actor):
        ev_rows = s.scalars(sa.select(FlagEvidence).where(FlagEvidence.flag_id == flag.id)
                            .order_by(FlagEvidence.created_at)).all()
        out["evidence"] = [{"source": e.source, "level": e.level, "reason_code": e.reason_code,
                            "detail": e.detail, "response_id": str(e.response_id) if e.response_id else None,
                            "concern_id": str(e.concern_id) if e.concern_id else None,
                            "at": _iso(e.created_at)} for e in ev_rows]
    if reveal_reasons and actor.role in CONCERN_READERS:
        # What the monitor or teacher saw, read on request; each opened note is access-logged with
        # purpose "flag_review". The counsellor reads every concern on the flag; the head teacher,
        # who reviews class-tier concerns, reads the class monitors' and their own — not a note a
        # counsellor wrote, which starts at the school tier and may hold clinical detail.
        from mh_platform.services import disclosure

        q = sa.select(Concern).where(Concern.flag_id == flag.id).order_by(Concern.created_at)
        if actor.role == Role.HEAD_TEACHER:
            q = q.where(sa.or_(Concern.reporter_role == Role.CLASS_MONITOR.value,
                               Concern.reporter_user_id == actor.user_id))
        concerns = s.scalars(q).all()
        out["concerns"] = [{"id": str(c.id), "category": c.category, "urgency": c.urgency,
                            "reporter_role": c.reporter_role, "at": _iso(c.created_at),
                            "note": disclosure.reveal(ctx, s, actor, c, "note_enc", student_id=flag.student_id,
                                                      purpose="flag_review")} for c in concerns]
    if with_events:
        from mh_platform.services import disclosure

        rows = s.scalars(sa.select(FlagEvent).where(FlagEvent.flag_id == flag.id).order_by(FlagEvent.seq)).all()
        events = []
        for r in rows:
            code = r.reason_code
            if code == fr.EvidenceSource.MODEL.value and not sees_watch(actor):
                code = None  # raised by the model's watch signal: not for this role to know
            e = {"kind": r.kind, "at": _iso(r.at), "from_status": r.from_status, "to_status": r.to_status,
                 "from_tier": r.from_tier, "to_tier": r.to_tier, "reason_code": code,
                 "has_reason": r.reason_enc is not None}
            if sees_clinical(actor):
                e["from_level"], e["to_level"] = r.from_level, r.to_level
                if reveal_reasons and r.reason_enc is not None:
                    e["reason"] = disclosure.reveal(ctx, s, actor, r, "reason_enc", student_id=flag.student_id,
                                                    purpose="flag_review")
            events.append(e)
        out["events"] = events
    return out


def get_flag(ctx: ServiceContext, actor: Actor, flag_id: uuid.UUID | str, *, reveal_reasons: bool = False
             ) -> dict[str, Any]:
    with ctx.uow() as uow:
        s = uow.session
        now = ctx.now()
        flag = access_flag_by_id(s, actor, flag_id, now, policy=escalation_policy(ctx))
        reveal = reveal_reasons and (sees_clinical(actor) or actor.role in CONCERN_READERS)
        view = flag_view(ctx, s, actor, flag, now, reveal_reasons=reveal)
        if reveal:
            uow.commit()  # keep the access-log rows
        return view


# The furthest a flag list may be paged: far beyond any city's flags. Without a bound an offset past
# 64 bits reached the database and failed there (a 500) instead of being refused.
MAX_LIST_OFFSET = 10_000_000


def list_flags(ctx: ServiceContext, actor: Actor, *, status: str | None = None, level: str | None = None,
               tier: str | None = None, open_only: bool = False, limit: int = 100, offset: int = 0
               ) -> tuple[list[dict[str, Any]], int]:
    """Flags ``actor`` may see, filtered; newest deadline first overdue first. Returns (page, total)."""
    if status is not None and status not in {x.value for x in fl.FlagStatus}:
        raise ValidationFailed(N_("unknown status"), [{"field": "status", "error": "invalid"}])
    if level is not None and level not in {x.value for x in Level}:
        raise ValidationFailed(N_("unknown level"), [{"field": "level", "error": "invalid"}])
    if tier is not None and tier not in {x.value for x in Tier}:
        raise ValidationFailed(N_("unknown tier"), [{"field": "tier", "error": "invalid"}])
    if not 0 <= offset <= MAX_LIST_OFFSET:
        raise ValidationFailed(N_("offset must be between 0 and 10000000"),
                               [{"field": "offset", "error": "out_of_range"}])
    limit = max(1, min(limit, 500))
    with ctx.uow() as uow:
        s = uow.session
        now = ctx.now()
        conds = [flag_scope(actor, now, escalation_policy(ctx))]
        if status:
            conds.append(Flag.status == status)
        if open_only:
            conds.append(Flag.status != "closed")
        if level:
            conds.append(Flag.level == level)
        if tier:
            conds.append(Flag.tier == tier)
        total = s.scalar(sa.select(sa.func.count()).select_from(Flag).where(*conds)) or 0
        due = sa.func.coalesce(Flag.ack_due_at, Flag.handle_due_at)
        rows = s.scalars(sa.select(Flag).where(*conds).order_by(due.is_(None), due, Flag.opened_at)
                         .limit(limit).offset(offset)).all()
        return [flag_view(ctx, s, actor, f, now, with_events=False) for f in rows], total


__all__ = ["GUIDANCE", "FlagOutcome", "access_flag_by_id", "acknowledge", "act", "assess", "close", "escalate",
           "flag_view", "follow_enrolment", "get_flag", "reach", "list_flags", "open_or_attach_in", "raise_for_response", "raise_from_concern_in",
           "raise_from_response", "raise_from_response_in", "raise_watch", "refer", "review_close",
           "start_intervention", "start_monitoring", "Enrolment"]
