"""The escalation sweep and cluster alerts.

``sweep(ctx, now)`` moves every overdue open flag one tier up (or reminds at its ceiling) — exactly
once per missed deadline, even with two scheduler processes or a run killed midway:

- candidates come from two indexed range scans (open flags whose acknowledge / handle deadline has
  passed), in id order, in small batches;
- each batch is one transaction that first takes the audit anchor lock (the common lock order),
  then claims each flag with ``UPDATE flag SET tier = :to, … , version = version + 1
  WHERE id = :id AND tier = :from AND version = :v`` — a rowcount of 0 means another process (or a
  person) changed it first, and the flag is skipped;
- the claim, the ``flag_event`` row, the hash-chained audit entry and the outbox rows commit together,
  and the new tier's clocks start at ``now``, so a rerun finds nothing more to do for that deadline;
- a killed run loses only its uncommitted batch, which the next sweep redoes.

It also sends the one-time oversight notices (a red flag open longer than the policy allows is
reported to the city) with the same conditional-update claim.

Cluster alerts: ``check_clusters`` runs when a flag opens or its level rises: at least
``class_threshold`` (3) red/orange flags opened in one class, or ``school_threshold`` (5) in one
school, within ``window`` (14 days) → one ``cluster_alert`` per unit per window (unique
``dedupe_key``) and a notice to the school (counsellors, leader) and the county with the suggested
postvention step (targeted re-screening of the class). A flag counts in the class and school where it
was when it became red/orange (``Flag.opened_class_unit_id`` / ``opened_school_unit_id``, see
``flags.follow_enrolment``); an alert's page counts only the flags it lists for the viewer.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterable
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mh_platform.core import flag_lifecycle as fl
from mh_platform.core.errors import Conflict
from mh_platform.core.escalation import due_escalation
from mh_platform.core.flag_rules import default_flag_policy
from mh_platform.core.types import Role, Tier
from mh_platform.db.bulk import in_chunks
from mh_platform.db.models import ClusterAlert, Flag, FlagEvent, OrgUnit
from mh_platform.services import audit, notify
from mh_platform.services.context import SYSTEM, ServiceContext
from mh_platform.services.flags import (
    _PATH_INDEX,
    ROLE_TIER,
    FlagBatch,
    add_event,
    add_unique,
    audit_buffer,
    claim_update,
    lock_audit,
    notify_roles,
    oversight,
    reach,
    state_values,
    to_state,
)
from mh_platform.services.flags_access import escalation_policy

BATCH = 100


def _due_ids(s: Session, now: datetime, after: uuid.UUID | None, limit: int) -> list[uuid.UUID]:
    open_ = Flag.status != "closed"
    conds_after = [Flag.id > after] if after is not None else []
    a = sa.select(Flag.id).where(open_, Flag.ack_due_at <= now, *conds_after)
    h = sa.select(Flag.id).where(open_, Flag.handle_due_at <= now, *conds_after)
    u = sa.union(a, h).subquery()
    return list(s.scalars(sa.select(u.c.id).order_by(u.c.id).limit(limit)))


def _oversight_due_ids(ctx: ServiceContext, s: Session, now: datetime) -> list[uuid.UUID]:
    p = escalation_policy(ctx)
    conds = []
    for lv, lp in p.levels.items():
        if lp.inform_city_after is not None:
            conds.append(sa.and_(Flag.level == lv.value, Flag.city_informed_at.is_(None),
                                 Flag.opened_at < now - lp.inform_city_after))
        if lp.inform_county_at_once:
            conds.append(sa.and_(Flag.level == lv.value, Flag.county_informed_at.is_(None)))
    if not conds:
        return []
    return list(s.scalars(sa.select(Flag.id).where(Flag.status != "closed", sa.or_(*conds)).order_by(Flag.id)))


def _fast_batch(ctx: ServiceContext, s: Session, flags: list[Flag], now: datetime, p: Any
                ) -> tuple[list[tuple[uuid.UUID, Any]], list[uuid.UUID]] | None:
    """Escalate a batch with a handful of statements: one executemany of conditional UPDATEs
    (``WHERE id AND version AND tier``), bulk events, one chained audit append, bulk outbox rows.
    Returns None — and writes nothing that the caller must keep — if any claim was lost, or if nobody
    holds the acting role at a flag's new tier (the flag-by-flag path hands that flag up, ``flags.reach``)."""
    plans = []
    for flag in flags:
        state = to_state(flag)
        step = due_escalation(state, now, p)
        if step is None:
            continue
        new, ev = fl.apply_escalation(state, step, p)
        plans.append((flag, step, new, ev))
    if not plans:
        return [], []
    # who is told: units and recipients for the whole batch in two queries, before anything is written
    wanted: dict[tuple[Role, uuid.UUID], None] = {}
    targets = []
    for f, st, new, _ev in plans:
        parts = f.unit_path.strip("/").split("/")
        for role in dict.fromkeys(st.inform):
            i = _PATH_INDEX[ROLE_TIER[role]]
            if i < len(parts):
                uid = uuid.UUID(parts[i])
                wanted[(role, uid)] = None
                template = "flag_reminder" if st.is_reminder else "flag_escalated"
                targets.append((f, role, uid, template, f"/flags/{f.id}",
                                f"flag:{f.id}:esc{new.escalations}:{role.value}"))
    people = notify.recipients_by_unit(s, wanted)
    for f, st, _new, _ev in plans:
        i = _PATH_INDEX[st.to_tier]
        parts = f.unit_path.strip("/").split("/")
        if i < len(parts) and not people.get((p.tier_roles[st.to_tier].value, uuid.UUID(parts[i]))):
            return None  # nobody to act at the new tier: the flag-by-flag path hands it up (``flags.reach``)
    stmt = (sa.update(Flag)
            .where(Flag.id == sa.bindparam("b_id"), Flag.version == sa.bindparam("b_version"),
                   Flag.tier == sa.bindparam("b_tier"))
            .values(tier=sa.bindparam("n_tier"), tier_entered_at=sa.bindparam("n_entered"),
                    ack_due_at=sa.bindparam("n_ack"), handle_due_at=sa.bindparam("n_handle"),
                    escalations=sa.bindparam("n_esc"), version=sa.bindparam("n_version")))
    params = [{"b_id": f.id, "b_version": f.version, "b_tier": st.from_tier.value, "n_tier": new.tier.value,
               "n_entered": new.tier_entered_at, "n_ack": new.ack_due_at, "n_handle": new.handle_due_at,
               "n_esc": new.escalations, "n_version": f.version + 1} for f, st, new, _ev in plans]
    conn = s.connection()
    if not conn.dialect.supports_sane_multi_rowcount:
        return None
    res = conn.execute(stmt, params)
    if res.rowcount != len(plans):
        return None
    events, audit_items = [], []
    for f, st, _new, ev in plans:
        eid = uuid.uuid4()
        row = {"id": eid, "flag_id": f.id, "kind": ev.kind.value, "from_status": ev.from_status.value if ev.from_status
               else None, "to_status": ev.to_status.value, "from_tier": ev.from_tier.value if ev.from_tier else None,
               "to_tier": ev.to_tier.value, "from_level": ev.from_level.value if ev.from_level else None,
               "to_level": ev.to_level.value, "actor_user_id": None, "reason_code": ev.reason_code,
               "reason_enc": None, "at": ev.at, "seq": f.version + 1}
        events.append(row)
        audit_items.append((ev.kind.value, "flag", f.id, {
            "event": str(eid), "from_status": row["from_status"], "to_status": row["to_status"],
            "from_tier": row["from_tier"], "to_tier": row["to_tier"], "from_level": row["from_level"],
            "to_level": row["to_level"], "reason_code": row["reason_code"], "has_reason": False,
            "missed": st.missed}))
    s.execute(sa.insert(FlagEvent), events)
    audit.record_many(ctx, s, SYSTEM, audit_items)
    unit_ids = {u for _, u in wanted}
    units = {u.id: u for u in s.scalars(sa.select(OrgUnit).where(OrgUnit.id.in_(unit_ids)))} if unit_ids else {}
    rows: list[dict[str, Any]] = []
    gaps: list[tuple[str, str, Any, dict[str, Any]]] = []
    for f, role, uid, template, link, dedupe in targets:
        unit = units.get(uid)
        if unit is None:
            continue
        users = people.get((role.value, uid), [])
        if not users:  # e.g. no school leader to tell of a missed deadline: recorded for the administrator
            gaps.append(("notify:no_recipient", "org_unit", uid, {"role": role.value, "template": template,
                                                                  "flag": str(f.id)}))
        rows += notify.plan_unit_role(ctx, users, role=role, unit=unit,
                                      template=template, link=link, dedupe=dedupe, now=now)
    if gaps:
        audit.record_many(ctx, s, SYSTEM, gaps)
    queued = notify.enqueue_many(s, rows)
    return [(f.id, st) for f, st, _n, _e in plans], queued


def sweep(ctx: ServiceContext, now: datetime | None = None, *, batch: int = BATCH,
          limit: int | None = None) -> dict[str, Any]:
    """One sweep at ``now``: ``{"checked": N, "escalated": [{"flag", "from_tier", "to_tier", "level"}], …}``.

    ``checked`` counts the overdue open flags examined; ``escalated`` lists the steps this call made
    (reminders at a level's ceiling are counted in ``reminded``, not listed)."""
    now = now or ctx.now()
    p = escalation_policy(ctx)
    escalated: list[dict[str, Any]] = []
    reminded = 0
    checked = 0
    skipped = 0
    after: uuid.UUID | None = None
    sent_ids: list[uuid.UUID] = []
    while True:
        with ctx.uow() as uow:
            s = uow.session
            ids = _due_ids(s, now, after, batch)
            if not ids:
                break
            after = ids[-1]
            lock_audit(s)
            cache: dict[uuid.UUID, OrgUnit] = {}
            flags = s.scalars(sa.select(Flag).where(Flag.id.in_(ids)).order_by(Flag.id)).all()
            checked += len(flags)
            fast = _fast_batch(ctx, s, list(flags), now, p)
            if fast is None:  # another writer changed one of them: redo this batch flag by flag
                s.rollback()
                lock_audit(s)
                flags = s.scalars(sa.select(Flag).where(Flag.id.in_(ids)).order_by(Flag.id)).all()
                for flag in flags:
                    state = to_state(flag)
                    step = due_escalation(state, now, p)
                    if step is None:
                        skipped += 1
                        continue
                    new, ev = fl.apply_escalation(state, step, p)
                    if not claim_update(s, flag, state_values(new), tier=step.from_tier.value):
                        skipped += 1
                        continue
                    add_event(ctx, s, flag, ev, SYSTEM, extra={"missed": step.missed})
                    template = "flag_reminder" if step.is_reminder else "flag_escalated"
                    inform = step.inform
                    if reach(ctx, s, flag, now, p, cache, template=template):  # nobody at the step's tier
                        template = "flag_escalated"
                        inform = (p.tier_roles[Tier(flag.tier)],
                                  *[r for r in step.inform if r != p.tier_roles[step.to_tier]])
                    sent_ids += notify_roles(ctx, s, flag, inform, template,
                                             f"flag:{flag.id}:esc{flag.escalations}", now, cache)
                    if step.is_reminder:
                        reminded += 1
                    else:
                        escalated.append({"flag": str(flag.id), "from_tier": step.from_tier.value,
                                          "to_tier": step.to_tier.value, "level": step.level.value})
            else:
                steps, queued = fast
                sent_ids += queued
                skipped += len(flags) - len(steps)
                for flag_id, step in steps:
                    if step.is_reminder:
                        reminded += 1
                    else:
                        escalated.append({"flag": str(flag_id), "from_tier": step.from_tier.value,
                                          "to_tier": step.to_tier.value, "level": step.level.value})
            uow.commit()
        if limit is not None and checked >= limit:
            break
    informed = 0
    with ctx.uow() as uow:
        s = uow.session
        oids = _oversight_due_ids(ctx, s, now)
    for fid in oids:
        with ctx.uow() as uow:
            s = uow.session
            lock_audit(s)
            held = s.get(Flag, fid)
            if held is None or held.status == "closed":
                continue
            try:
                got = oversight(ctx, s, held, now, p)
            except Conflict:  # lost the claim to another process: its notice, not ours
                uow.session.rollback()
                continue
            if got:
                informed += 1
                sent_ids += got
            uow.commit()
    return {"checked": checked, "escalated": escalated, "reminded": reminded, "skipped": skipped,
            "reported": informed, "queued": len(sent_ids)}


# ----------------------------------------------------------------------------- clusters


def cluster_counted(since: Any, levels: Collection[str]) -> sa.ColumnElement[bool]:
    """The flags a cluster alert counts (docs/flags.md §6): opened since ``since`` (a time, or a column
    such as ``ClusterAlert.window_start``), at one of the policy's ``levels``, and not dismissed as a
    false positive at the interview. One rule for the one-by-one check, the batch's grouped counts and
    the alert's pages; each compares the unit with the class or school the flag counts in
    (``Flag.opened_class_unit_id`` / ``opened_school_unit_id``): where it was opened, or where it was
    when it reached a cluster level — a yellow flag that follows its student counts at the new class
    and school (``flags.follow_enrolment``), a red or orange one keeps counting where it was."""
    return sa.and_(Flag.opened_at >= since, Flag.level.in_(sorted(levels)),
                   ~sa.exists().where(FlagEvent.flag_id == Flag.id, FlagEvent.kind == fl.FlagEventKind.DISMISSED.value))


def alert_counted(alert: Any) -> sa.ColumnElement[bool]:
    """The flags the cluster alert ``alert`` counts: ``cluster_counted`` at its class or school, within
    its window and opened by its time. ``alert`` is one loaded ``ClusterAlert``, or the class itself
    (its columns, for a query over many alerts: ``list_clusters``) — the same rule either way."""
    levels = default_flag_policy().cluster.level_values
    if isinstance(alert, ClusterAlert):
        col = Flag.opened_class_unit_id if alert.scope == "class" else Flag.opened_school_unit_id
        at_unit: sa.ColumnElement[bool] = col == alert.unit_id
    else:
        at_unit = sa.or_(sa.and_(alert.scope == "class", Flag.opened_class_unit_id == alert.unit_id),
                         sa.and_(alert.scope == "school", Flag.opened_school_unit_id == alert.unit_id))
    return sa.and_(at_unit, cluster_counted(alert.window_start, levels), Flag.opened_at <= alert.created_at)


def _counts_here(flag: Flag, scope: str) -> bool:
    """The flag is in the class (or school) it counts in. Not so only for a flag that followed its
    student while red or orange: it counts where it was, and its later rise there (orange → red) adds
    nothing to that count — and must neither check nor tell the unit it left."""
    if scope == "class":
        return flag.opened_class_unit_id == flag.class_unit_id
    return flag.opened_school_unit_id == flag.school_unit_id


def check_clusters(ctx: ServiceContext, s: Session, flag: Flag, now: datetime,
                   scopes: Collection[str] = ("class", "school"), batch: FlagBatch | None = None,
                   count: int | None = None, recent: bool | None = None) -> list[uuid.UUID]:
    """Cluster alerts for the class and school the flag counts in (in the caller's transaction), when it
    is there: a flag that followed its student while red or orange counts where it was, but its rise
    at the new class checks nothing at the old one (``_counts_here``); returns outbox ids
    (none with ``batch``: the notices are planned into it, the alert and its audit entry are written
    by the batch's next flush). ``count`` and ``recent`` (an alert for the unit within the window):
    already read by the caller (one scope only)."""
    cp = default_flag_policy().cluster
    levels = cp.level_values
    if flag.level not in levels:
        return []
    since = now - cp.window
    ids: list[uuid.UUID] = []
    for scope, col, unit_id, threshold in (
            ("class", Flag.opened_class_unit_id, flag.opened_class_unit_id, cp.class_threshold),
            ("school", Flag.opened_school_unit_id, flag.opened_school_unit_id, cp.school_threshold)):
        if scope not in scopes or not _counts_here(flag, scope):
            continue
        n = count if count is not None else s.scalar(
            sa.select(sa.func.count()).select_from(Flag)
            .where(col == unit_id, cluster_counted(since, levels))) or 0
        if n < threshold:
            continue
        already = recent if recent is not None else s.scalar(
            sa.select(ClusterAlert.id).where(ClusterAlert.unit_id == unit_id, ClusterAlert.scope == scope,
                                             ClusterAlert.created_at >= since)) is not None
        if already:
            continue
        alert = ClusterAlert(id=uuid.uuid4(), unit_id=unit_id, scope=scope, window_start=since, flag_count=n,
                             suggestion="targeted_rescreening", created_at=now,
                             dedupe_key=f"cluster:{scope}:{unit_id}:{now.date().isoformat()}")
        if not add_unique(s, alert, batch):
            continue
        audit.record(ctx, s, SYSTEM, "cluster:alerted", "cluster_alert", alert.id,
                     {"scope": scope, "unit": str(unit_id), "count": n, "suggestion": "targeted_rescreening"},
                     buffer=audit_buffer(batch))
        unit = _unit(s, unit_id, batch)
        if unit is None:
            continue
        # told where the cluster is (the alert's class or school); the flag that completed it is there
        parts = unit.path.strip("/").split("/")
        for role, tier in ((Role.COUNSELLOR, Tier.SCHOOL), (Role.SCHOOL_LEADER, Tier.SCHOOL),
                           (Role.COUNTY_OFFICER, Tier.COUNTY)):
            target = _unit(s, uuid.UUID(parts[_PATH_INDEX[tier]]), batch)
            if target is None:
                continue
            link, dedupe = f"/flags/clusters/{alert.id}", f"{alert.dedupe_key}:{role.value}"
            if batch is not None:
                batch.plan(ctx, s, role=role, unit=target, template="cluster_alert", link=link, dedupe=dedupe, now=now)
            else:
                ids += notify.notify_unit_role(ctx, s, role=role, unit=target, template="cluster_alert", link=link,
                                               dedupe=dedupe, now=now)
    return ids


def _unit(s: Session, unit_id: uuid.UUID, batch: FlagBatch | None) -> OrgUnit | None:
    """An org unit, from the batch's cache when there is one."""
    if batch is not None and unit_id in batch.units:
        return batch.units[unit_id]
    unit = s.get(OrgUnit, unit_id)
    if batch is not None and unit is not None:
        batch.units[unit_id] = unit
    return unit


def check_clusters_once(ctx: ServiceContext, s: Session, flags: Iterable[Flag], now: datetime,
                        batch: FlagBatch | None = None) -> list[uuid.UUID]:
    """``check_clusters`` once per class and once per school for a batch of opened or raised flags (a
    bulk import), after the whole batch is in: with the first flag of each class (class scope) and of
    each school (school scope) that can count towards a cluster. An alert is raised once a count
    reaches its threshold either way, and then carries the final count."""
    levels = default_flag_policy().cluster.level_values
    first: dict[tuple[str, uuid.UUID], Flag] = {}
    for f in flags:
        if f.level in levels:
            if _counts_here(f, "class"):
                first.setdefault(("class", f.opened_class_unit_id), f)
            if _counts_here(f, "school"):
                first.setdefault(("school", f.opened_school_unit_id), f)
    # the counts of all these classes and schools in one grouped read per scope; only the units at
    # or above their threshold go on to the alert check
    cp = default_flag_policy().cluster
    since = now - cp.window
    counts: dict[tuple[str, uuid.UUID], int] = {}
    for scope, col in (("class", Flag.opened_class_unit_id), ("school", Flag.opened_school_unit_id)):
        units = [u for sc, u in first if sc == scope]
        for cond in in_chunks(s, col, units):
            counts.update(((scope, u), n) for u, n in s.execute(
                sa.select(col, sa.func.count()).where(cond, cluster_counted(since, levels))
                .group_by(col)).all())
    thresholds = {"class": cp.class_threshold, "school": cp.school_threshold}
    due = [key for key in first if counts.get(key, 0) >= thresholds[key[0]]]
    # units with an alert within the window — or with today's alert (its unique dedupe key), which a
    # window shorter than a day may leave behind: one read for all
    alerted: set[tuple[str, uuid.UUID]] = set()
    today = f":{now.date().isoformat()}"  # the end of a dedupe key, cluster:<scope>:<unit>:<date>
    for cond in in_chunks(s, ClusterAlert.unit_id, list({u for _sc, u in due})):
        alerted.update((sc, u) for u, sc in s.execute(
            sa.select(ClusterAlert.unit_id, ClusterAlert.scope)
            .where(cond, sa.or_(ClusterAlert.created_at >= since, ClusterAlert.dedupe_key.endswith(today)))).all())
    ids: list[uuid.UUID] = []
    for key in due:
        ids += check_clusters(ctx, s, first[key], now, scopes=(key[0],), batch=batch, count=counts[key],
                              recent=key in alerted)
    return ids


def list_clusters(ctx: ServiceContext, actor: Any, *, limit: int = 50) -> list[dict[str, Any]]:
    """Cluster alerts under the actor's unit (counsellor, school leader, county and city officers).
    ``count``: as on the alert's page (``get_cluster``), the flags it counts that the actor may see."""
    from mh_platform.services.flags_access import flag_scope
    from mh_platform.services.org import under

    if actor.role not in (Role.COUNSELLOR, Role.SCHOOL_LEADER, Role.COUNTY_OFFICER, Role.CITY_OFFICER) \
            or not actor.unit_path:
        return []
    with ctx.uow() as uow:
        s = uow.session
        seen = (sa.select(sa.func.count()).select_from(Flag)
                .where(alert_counted(ClusterAlert), flag_scope(actor, ctx.now(), escalation_policy(ctx)))
                .correlate(ClusterAlert).scalar_subquery())
        rows = s.execute(sa.select(ClusterAlert, OrgUnit, seen).join(OrgUnit, OrgUnit.id == ClusterAlert.unit_id)
                         .where(under(OrgUnit.path.expression, actor.unit_path))
                         .order_by(ClusterAlert.created_at.desc()).limit(limit)).all()
        return [{"id": str(a.id), "scope": a.scope, "unit": u.name, "unit_id": str(u.id), "count": n,
                 "suggestion": a.suggestion, "created_at": a.created_at.isoformat()} for a, u, n in rows]


CLUSTER_ROLES = frozenset({Role.COUNSELLOR, Role.SCHOOL_LEADER, Role.COUNTY_OFFICER, Role.CITY_OFFICER})


def get_cluster(ctx: ServiceContext, actor: Any, cluster_id: uuid.UUID | str) -> dict[str, Any]:
    """One cluster alert for the page its notices link to (``/flags/clusters/<id>``).

    Who: the counsellors and school leader of the alert's school, and the county and city officers
    above it (the unit lies under the actor's unit); everyone else — and a missing or malformed id —
    gets ``NotFound``. What: the scope (class / school), the unit's name (and its school's, for a
    class), the window and when it was raised — plus the flags it counts (``alert_counted``) that the
    actor may see on ``/flags`` (``flag_scope``), as ``flag_view`` shows them to that role (no names,
    no scores beyond what the role already sees), and ``count``, the number of those flags: one rule
    and one scope for both, so the count never tells of a flag the page does not list (a student who
    left the school, a flag outside the role's ``/flags``). The number the alert was raised with stays
    in its audit entry (``cluster:alerted``) and ``cluster_alert.flag_count``."""
    from mh_platform.core.errors import NotFound
    from mh_platform.services.flags import flag_view
    from mh_platform.services.flags_access import flag_scope
    from mh_platform.services.ids import id_or_404
    from mh_platform.services.org import under

    if actor.role not in CLUSTER_ROLES or not actor.unit_path:
        raise NotFound("cluster alert not found")
    aid = id_or_404(cluster_id, "cluster alert")
    with ctx.uow() as uow:
        s = uow.session
        row = s.execute(sa.select(ClusterAlert, OrgUnit).join(OrgUnit, OrgUnit.id == ClusterAlert.unit_id)
                        .where(ClusterAlert.id == aid, under(OrgUnit.path.expression, actor.unit_path))).first()
        if row is None:
            raise NotFound("cluster alert not found")
        alert, unit = row
        now = ctx.now()
        levels = default_flag_policy().cluster.level_values
        flags = s.scalars(sa.select(Flag).where(alert_counted(alert), flag_scope(actor, now, escalation_policy(ctx)))
                          .order_by(Flag.opened_at, Flag.id)).all()
        school = None
        if alert.scope == "class":
            school_id = uuid.UUID(unit.path.strip("/").split("/")[_PATH_INDEX[Tier.SCHOOL]])
            school_unit = s.get(OrgUnit, school_id)
            school = school_unit.name if school_unit is not None else None
        return {"id": str(alert.id), "scope": alert.scope, "unit": unit.name, "unit_id": str(unit.id),
                "school": school, "window_start": alert.window_start.isoformat(),
                "created_at": alert.created_at.isoformat(), "count": len(flags),
                "levels": levels, "suggestion": alert.suggestion,
                "flags": [flag_view(ctx, s, actor, f, now, with_events=False) for f in flags]}
