"""Completion of a campaign per class, school, county and city; the head teacher's to-finish list.

Figures per unit: eligible (enrolled in a screened grade under a screened unit), consented,
started (entered a code or has any response), completed (the whole battery submitted, online or
on paper), re-administration advised (a response-quality check fired). County and city officers
see small cells (1-4 students) suppressed, with a second cell suppressed where one suppressed cell
could be recovered from the total.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mh_platform.core import spreadsheet
from mh_platform.core.errors import Forbidden, NotFound, ValidationFailed
from mh_platform.core.i18n import N_
from mh_platform.core.types import UNIT_DEPTH, Role, UnitKind
from mh_platform.db.models import AccessCode, Enrolment, OrgUnit, Response, Student
from mh_platform.services import audit
from mh_platform.services.access import in_scope
from mh_platform.services.campaigns import eligible_condition, get_campaign
from mh_platform.services.consent import consent_ok
from mh_platform.services.context import Actor, ServiceContext

SMALL_CELL = 5
AGGREGATE_ONLY = {Role.COUNTY_OFFICER, Role.CITY_OFFICER}
VIEWERS = {Role.HEAD_TEACHER, Role.COUNSELLOR, Role.SCHOOL_LEADER, Role.COUNTY_OFFICER, Role.CITY_OFFICER}
CHILD_KIND = {UnitKind.CITY: UnitKind.COUNTY, UnitKind.COUNTY: UnitKind.SCHOOL, UnitKind.SCHOOL: UnitKind.CLASS,
              UnitKind.GRADE: UnitKind.CLASS, UnitKind.CLASS: UnitKind.CLASS}
FIGURES = ("eligible", "consented", "started", "completed", "readminister")


@dataclass
class Figures:
    unit_id: uuid.UUID
    name: str
    kind: str
    eligible: int | None = 0
    consented: int | None = 0
    started: int | None = 0
    completed: int | None = 0
    readminister: int | None = 0
    suppressed: list[str] = field(default_factory=list)
    path: str = ""  # the unit's materialised path (org tree)

    def add(self, other: Figures) -> None:
        for f in FIGURES:
            setattr(self, f, (getattr(self, f) or 0) + (getattr(other, f) or 0))

    @property
    def rate(self) -> float | None:
        if not self.consented or self.completed is None:
            return None
        return self.completed / self.consented


@dataclass
class CompletionReport:
    campaign_id: uuid.UUID
    unit: Figures
    rows: list[Figures]


def _suppress(rows: list[Figures], total: Figures) -> list[Figures]:
    """The units × figures table suppressed as one (``core.suppression.suppress_linked_counts``):
    counts of 1-4 hidden, a unit with a hidden figure hidden whole (its figures bound each other),
    and complements where a lone hidden count could be worked out from the total."""
    from mh_platform.core.suppression import suppress_linked_counts

    out = [replace(r, suppressed=[]) for r in rows]
    if not out:
        return out
    published, totals = suppress_linked_counts([[int(getattr(r, f) or 0) for f in FIGURES] for r in out], SMALL_CELL)
    for r, values in [*zip(out, published, strict=True), (total, totals)]:
        for f, v in zip(FIGURES, values, strict=True):
            if v is None:
                r.suppressed.append(f)
            setattr(r, f, v)
    return out


def completion(ctx: ServiceContext, actor: Actor, campaign_id: uuid.UUID,
               unit_id: uuid.UUID | None = None) -> CompletionReport:
    """Figures for ``unit_id`` (default: the actor's unit) and one row per unit just below it
    (city → counties, county → schools, school or grade → classes, class → itself)."""
    with ctx.uow() as uow:
        return _report(uow.session, actor, campaign_id, unit_id)


def _report(s: Session, actor: Actor, campaign_id: uuid.UUID, unit_id: uuid.UUID | None) -> CompletionReport:
    if actor.role not in VIEWERS or not actor.unit_path:
        raise Forbidden(N_("completion figures are for school staff and officers"))
    camp, units = get_campaign(s, actor, campaign_id)
    unit = s.get(OrgUnit, unit_id or actor.unit_id)
    if unit is None or not in_scope(actor, unit.path):
        raise NotFound("unit not found")
    officer = actor.role in AGGREGATE_ONLY
    # one aggregate query: an officer's drill-down also needs the tables above the viewed unit, up to
    # the officer's own (``_hidden_above``), and all of them are made from the same class rows
    classes = _class_figures(s, camp, units, str(actor.unit_path) if officer else unit.path)
    total, rows = _table(s, classes, unit)
    if officer:
        rows = _suppress(rows, total)
        inherited = _hidden_above(s, actor, classes, unit)
        for r in [*rows, total]:
            for f in inherited:
                if getattr(r, f) is not None:
                    setattr(r, f, None)
                    r.suppressed.append(f)
    return CompletionReport(camp.id, total, rows)


def _hidden_above(s: Session, actor: Actor, classes: list[tuple[str, Figures]], unit: OrgUnit) -> set[str]:
    """Figures an officer's drill-down must hide because a table higher up hid them (T19: no
    differencing across the levels). For each unit A from the officer's own unit down to the viewed
    unit's parent, A's published table is made again (from ``classes``, the class figures of the
    officer's whole unit); a figure it hides in a row that is the viewed unit, lies above it or lies
    under it would otherwise be recoverable from the viewed unit's total or rows (e.g. the county
    shows school A (3 students) and school B as "*" with the total 23; the view of school B would
    show B = 20, and so A = 3). Such a figure is hidden in the whole view."""
    ids = unit.path.strip("/").split("/")
    own_depth = len(str(actor.unit_path).strip("/").split("/")) - 1
    hidden: set[str] = set()
    for depth in range(own_depth, len(ids) - 1):
        above = s.get(OrgUnit, uuid.UUID(ids[depth]))
        if above is None:
            continue
        a_total, a_rows = _table(s, classes, above)
        for r in _suppress(a_rows, a_total):
            if r.suppressed and (r.path.startswith(unit.path) or unit.path.startswith(r.path)):
                hidden.update(r.suppressed)
    return hidden


def _started(camp: Any, student_id: Any) -> Any:
    """The student (``student_id``: a column of the outer query) entered a code or has any response."""
    return sa.or_(sa.exists().where(AccessCode.campaign_id == camp.id, AccessCode.student_id == student_id,
                                    AccessCode.first_used_at.is_not(None)),
                  sa.exists().where(Response.campaign_id == camp.id, Response.student_id == student_id))


def _completed(camp: Any, student_id: Any) -> Any:
    """The student's whole battery is submitted (online, on paper, or both): the code is completed."""
    return sa.exists().where(AccessCode.campaign_id == camp.id, AccessCode.student_id == student_id,
                             AccessCode.completed_at.is_not(None))


def _class_figures(s: Session, camp: Any, units: Any, path: str) -> list[tuple[str, Figures]]:
    """The unsuppressed figures of every class at or under the unit with ``path``, each with its
    path: one aggregate query, from which the table of any unit at or under ``path`` is made
    (``_table``) — an officer's drill-down reads the enrolments once, not once per level above."""
    from mh_platform.services.org import under

    started, completed = _started(camp, Enrolment.student_id), _completed(camp, Enrolment.student_id)
    readmin = sa.exists().where(Response.campaign_id == camp.id, Response.student_id == Enrolment.student_id,
                                Response.quality_suggestion == "readminister")
    ok = consent_ok(Enrolment.student_id, camp.academic_year_id)

    def n(cond):
        return sa.func.sum(sa.case((cond, 1), else_=0))

    q = (sa.select(Enrolment.class_unit_id, Enrolment.unit_path, sa.func.count(), n(ok), n(sa.and_(ok, started)),
                   n(sa.and_(ok, completed)), n(sa.and_(ok, readmin)))
         .join(Student, Student.id == Enrolment.student_id)
         .where(eligible_condition(camp, units), under(Enrolment.unit_path, path),
                Student.erased_at.is_(None))  # as the to-finish list and the slips: an erased student is not counted
         .group_by(Enrolment.class_unit_id, Enrolment.unit_path))
    return [(p, Figures(cid, "", "", int(elig or 0), int(cons or 0), int(st or 0), int(comp or 0), int(ra or 0)))
            for cid, p, elig, cons, st, comp, ra in s.execute(q)]


def _table(s: Session, classes: list[tuple[str, Figures]], unit: OrgUnit) -> tuple[Figures, list[Figures]]:
    """The unsuppressed figures of ``unit`` (its total) and of each unit just below it, from the
    class figures of ``unit`` or of a unit above it (``_class_figures``)."""
    from mh_platform.services.org import unit_sort_key

    child_depth = UNIT_DEPTH[CHILD_KIND[UnitKind(unit.kind)]]
    groups: dict[uuid.UUID, Figures] = {}
    total = Figures(unit.id, unit.name, unit.kind, path=unit.path)
    for path, f in classes:
        if not path.startswith(unit.path):
            continue
        parts = path.strip("/").split("/")
        child = uuid.UUID(parts[child_depth]) if UnitKind(unit.kind) != UnitKind.CLASS else unit.id
        groups.setdefault(child, Figures(child, "", "")).add(f)
        total.add(f)
    found = {u.id: u for u in s.scalars(sa.select(OrgUnit).where(OrgUnit.id.in_(list(groups))))}
    rows = []
    for cid, f in groups.items():
        u = found.get(cid)
        f.name, f.kind, f.path = (u.name, u.kind, u.path) if u is not None else ("", "", "")
        rows.append(f)
    rows.sort(key=lambda r: unit_sort_key(r.name, found[r.unit_id].grade_level if r.unit_id in found else None))
    return total, rows


EXPORT_FORMATS = {"csv": "text/csv; charset=utf-8",
                  "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}
EXPORT_LABELS = ("unit", *FIGURES, "total", "suppressed", "note")
"""The words of an exported table, given by the caller in the reader's language: the column
headers (unit and the five figures), the total row's name, the mark of a suppressed cell and the
note under the table."""


@dataclass(frozen=True)
class Export:
    filename: str  # no names in it: the campaign's short id and the format
    mimetype: str
    data: bytes
    rows: int


def export(ctx: ServiceContext, actor: Actor, campaign_id: uuid.UUID, unit_id: uuid.UUID | None, fmt: str,
           labels: Mapping[str, str]) -> Export:
    """The completion table the page shows (same rows, same suppression for county and city
    officers) as a CSV or XLSX file, in one transaction with its audit event
    (``screening:completion_exported``: campaign, unit, format, rows). Aggregates only: no student
    is named, and a suppressed cell is written as the ``suppressed`` mark (never its count).
    Text cells are written formula-safe (``core.spreadsheet``)."""
    mimetype = EXPORT_FORMATS.get(fmt)
    if mimetype is None:
        raise ValidationFailed(N_("export formats are csv and xlsx"))
    missing = [k for k in EXPORT_LABELS if k not in labels]
    if missing:
        raise ValueError(f"export labels missing: {missing}")
    with ctx.uow() as uow:
        s = uow.session
        rep = _report(s, actor, campaign_id, unit_id)
        mark = labels["suppressed"]
        table: list[list[spreadsheet.Cell]] = [[labels[k] for k in ("unit", *FIGURES)]]
        for r, name in [(r, r.name) for r in rep.rows] + [(rep.unit, labels["total"])]:
            table.append([name, *[mark if getattr(r, f) is None else getattr(r, f) for f in FIGURES]])
        if any(r.suppressed for r in [*rep.rows, rep.unit]):
            table += [[], [labels["note"]]]
        data = spreadsheet.to_csv(table) if fmt == "csv" else spreadsheet.to_xlsx(table, sheet="completion")
        audit.record(ctx, s, actor, "screening:completion_exported", "campaign", rep.campaign_id,
                     {"unit_id": rep.unit.unit_id, "format": fmt, "rows": len(rep.rows)})
        uow.commit()
    return Export(f"completion-{rep.campaign_id.hex[:8]}.{fmt}", mimetype, data, len(rep.rows))


@dataclass(frozen=True)
class ToFinish:
    student_id: uuid.UUID
    name: str | None
    state: str  # not_started / in_progress


TO_FINISH_READERS = frozenset({Role.HEAD_TEACHER, Role.COUNSELLOR})  # they may name the students


def to_finish(ctx: ServiceContext, actor: Actor, campaign_id: uuid.UUID, class_unit_id: uuid.UUID) -> list[ToFinish]:
    """Consented students of one class who have not finished (names opened through disclosure)."""
    if actor.role not in TO_FINISH_READERS:
        raise Forbidden(N_("the to-finish list is for the head teacher and the counsellor"))
    from mh_platform.services.disclosure import student_names

    with ctx.uow() as uow:
        s = uow.session
        camp, units = get_campaign(s, actor, campaign_id)
        cls = s.get(OrgUnit, class_unit_id)
        if cls is None or cls.kind != UnitKind.CLASS.value or not in_scope(actor, cls.path):
            raise NotFound("class not found")
        started, completed = _started(camp, Student.id), _completed(camp, Student.id)
        rows = s.execute(sa.select(Student, started.label("started"))
                         .join(Enrolment, Enrolment.student_id == Student.id)
                         .where(eligible_condition(camp, units), Enrolment.class_unit_id == cls.id,
                                consent_ok(Student.id, camp.academic_year_id), ~completed,
                                Student.erased_at.is_(None))).all()
        names = student_names(ctx, s, actor, [r[0] for r in rows], purpose="completion_follow_up")
        uow.commit()  # the access-log rows
        out = [ToFinish(st.id, names.get(st.id), "in_progress" if started else "not_started") for st, started in rows]
        return sorted(out, key=lambda t: t.name or "")
