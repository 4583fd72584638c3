"""Roster import: formats and encodings, per-row errors, all-or-nothing, idempotence, scope, hostile files."""

from __future__ import annotations

import io
import time
import tracemalloc
import zipfile

import pytest
import sqlalchemy as sa
from screening_world import HEADER, build_world, roster_rows, to_csv, to_xlsx

from mh_platform.core.errors import Forbidden, ValidationFailed
from mh_platform.db.models import AccessLog, EventLog, Guardian, OrgUnit, Student
from mh_platform.services import roster
from mh_platform.services.roster import ImportRefused


@pytest.fixture
def world(ctx):
    return build_world(ctx)


def counts(ctx) -> tuple[int, int, int]:
    with ctx.uow() as uow:
        s = uow.session
        return (s.scalar(sa.select(sa.func.count()).select_from(Student)),
                s.scalar(sa.select(sa.func.count()).select_from(Guardian)),
                s.scalar(sa.select(sa.func.count()).select_from(OrgUnit).where(OrgUnit.kind == "class")))


@pytest.mark.parametrize("fmt", ["utf8", "utf8-bom", "gbk", "xlsx", "semicolon"])
def test_formats_and_encodings_import_the_same(ctx, world, fmt):
    rows = roster_rows(classes=2, per_class=5)
    data = {"utf8": lambda: to_csv(rows), "utf8-bom": lambda: to_csv(rows, bom=True),
            "gbk": lambda: to_csv(rows, encoding="gbk"), "xlsx": lambda: to_xlsx(rows),
            "semicolon": lambda: to_csv(rows).replace(b",", b";")}[fmt]()
    name = "名单.xlsx" if fmt == "xlsx" else "名单.csv"
    pv = roster.preview(ctx, world.counsellor, data, name)
    assert pv.errors == [] and (pv.rows, pv.new) == (10, 10)
    roster.commit(ctx, world.counsellor, data, name)
    assert counts(ctx) == (10, 10, 2)
    with ctx.uow() as uow:  # names decoded right (GBK/BOM) and sealed
        st = uow.session.scalars(sa.select(Student)).first()
        name0 = ctx.keyring.open_field(uow.session, st.name_enc, table="student", column="name_enc", row_id=st.id)
        assert name0 in {r[4] for r in rows}


def test_reimport_is_idempotent_and_changes_are_counted(ctx, world):
    rows = roster_rows(classes=2, per_class=10)
    data = to_csv(rows)
    roster.commit(ctx, world.counsellor, data, "a.csv")
    before = counts(ctx)
    with ctx.uow() as uow:
        n_events = uow.session.scalar(sa.select(sa.func.count()).select_from(EventLog))
    pv = roster.preview(ctx, world.counsellor, data, "a.csv")
    assert (pv.new, pv.changed, pv.duplicate) == (0, 0, 20)
    # the stored names were decrypted to compare them with the file: each one is in the access log
    with ctx.uow() as uow:
        logged = uow.session.execute(sa.select(AccessLog.user_id, AccessLog.field, AccessLog.purpose)
                                     .where(AccessLog.purpose == "roster_import")).all()
    assert len(logged) == 20 and set(logged) == {(world.counsellor.user_id, "name_enc", "roster_import")}
    roster.commit(ctx, world.counsellor, data, "a.csv")
    assert counts(ctx) == before
    with ctx.uow() as uow:  # no data changed, not even an audit event (only the comparisons are logged)
        assert uow.session.scalar(sa.select(sa.func.count()).select_from(EventLog)) == n_events
        assert uow.session.scalar(sa.select(sa.func.count()).select_from(AccessLog)
                                  .where(AccessLog.purpose == "roster_import")) == 40
    # a class move, a renamed student and one new student
    rows2 = [list(r) for r in rows]
    rows2[0][2] = "2班"
    rows2[1][4] = "新名字"
    rows2.append(roster_rows(classes=1, per_class=1, start=99)[0])
    pv = roster.preview(ctx, world.counsellor, to_csv(rows2), "b.csv")
    assert (pv.new, pv.changed, pv.duplicate) == (1, 2, 18)
    roster.commit(ctx, world.counsellor, to_csv(rows2), "b.csv")
    assert counts(ctx)[0] == before[0] + 1
    assert roster.preview(ctx, world.counsellor, to_csv(rows2), "b.csv").duplicate == 21


BAD_ROWS = [
    (["xlt-s001", "七年级", "1班", "G21000000001", "", "男", "2013", "", "", ""], "姓名"),
    (["xlt-s001", "十五年级", "1班", "G21000000002", "张三", "男", "2013", "", "", ""], "年级"),
    (["xlt-s001", "七年级", "1班", "G2!", "张三", "男", "2013", "", "", ""], "学籍号"),
    (["xlt-s001", "七年级", "1班", "G21000000003", "张三", "X", "2013", "", "", ""], "性别"),
    (["xlt-s001", "七年级", "1班", "G21000000004", "张三", "男", "1850", "", "", ""], "出生年份"),
    (["xlt-s001", "七年级", "1班", "G21000000005", "张三", "男", "2013", "张父", "父亲", "12ab"], "监护人电话"),
    (["xlt-s001", "七年级", "1班", "G21000000006", "=HYPERLINK(\"http://x\")", "男", "2013", "", "", ""], "姓名"),
    (["xlt-s001", "七年级", "1班", "G21000000007", "张三", "男", "2013", "@SUM(1)", "父亲", ""], "监护人姓名"),
    (["xlt-s001", "七年级", "1班", "G21000000008", "张三", "男", "2013", "张父", "+1", ""], "监护人关系"),
    (["no-such-school", "七年级", "1班", "G21000000009", "张三", "男", "2013", "", "", ""], "学校"),
    (["dw-s001", "七年级", "1班", "G21000000010", "张三", "男", "2013", "", "", ""], "学校"),  # out of scope
    (["xlt-s001", "七年级", "", "G21000000011", "张三", "男", "2013", "", "", ""], "班级"),
]


@pytest.mark.parametrize(("bad", "column"), BAD_ROWS)
def test_each_bad_row_is_reported_and_nothing_is_committed(ctx, world, bad, column):
    rows = roster_rows(classes=1, per_class=3) + [bad]
    pv = roster.preview(ctx, world.counsellor, to_csv(rows), "x.csv")
    assert [(e.row, e.column) for e in pv.errors] == [(5, column)]
    assert pv.new == 3
    with pytest.raises(ValidationFailed) as exc:
        roster.commit(ctx, world.counsellor, to_csv(rows), "x.csv")
    assert exc.value.errors == [e.as_dict() for e in pv.errors]
    assert counts(ctx) == (0, 0, 0)


def test_duplicate_number_in_file_names_the_first_row(ctx, world):
    rows = roster_rows(classes=1, per_class=3)
    rows.append(list(rows[0]))
    pv = roster.preview(ctx, world.counsellor, to_csv(rows), "x.csv")
    assert [(e.row, e.column) for e in pv.errors] == [(5, "学籍号")] and "row 2" in pv.errors[0].message


def test_formula_cells_in_xlsx_are_refused(ctx, world):
    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(HEADER)
    ws.append(["xlt-s001", "七年级", "1班", "G21000000001", "张三", "男", 2013, "张父", "父亲", "13900000000"])
    ws.append(["xlt-s001", "七年级", "1班", "G21000000002", "=1+1", "男", 2013, "", "", ""])
    buf = io.BytesIO()
    wb.save(buf)
    pv = roster.preview(ctx, world.counsellor, buf.getvalue(), "x.xlsx")
    assert [(e.row, e.column) for e in pv.errors] == [(3, "姓名")]


def test_missing_columns_and_empty_files(ctx, world):
    with pytest.raises(ImportRefused, match="学籍号"):
        roster.preview(ctx, world.counsellor, to_csv([["a"]], header=["学校", "年级", "班级", "姓名", "性别"]), "x.csv")
    with pytest.raises(ImportRefused, match="empty"):
        roster.preview(ctx, world.counsellor, b"", "x.csv")
    with pytest.raises(ImportRefused, match="no data rows"):
        roster.preview(ctx, world.counsellor, to_csv([]), "x.csv")
    with pytest.raises(ImportRefused, match=r"\.csv and \.xlsx"):
        roster.preview(ctx, world.counsellor, b"hello", "x.exe")


def test_scope_and_role(ctx, world):
    data = to_csv(roster_rows(classes=1, per_class=2))
    pv = roster.preview(ctx, world.other_counsellor, data, "x.csv")  # another county's counsellor: school not found
    assert {e.column for e in pv.errors} == {"学校"} and len(pv.errors) == 2
    pv = roster.preview(ctx, world.county_officer, data, "x.csv")  # the county above: fine
    assert pv.ok
    from dataclasses import replace

    from mh_platform.core.types import Role
    with pytest.raises(Forbidden):
        roster.preview(ctx, replace(world.counsellor, role=Role.HEAD_TEACHER), data, "x.csv")
    # a student registered in a unit outside the importer's scope cannot be pulled in
    roster.commit(ctx, world.counsellor, data, "x.csv")
    moved = [["dw-s001"] + r[1:] for r in roster_rows(classes=1, per_class=2)]
    pv = roster.preview(ctx, world.other_counsellor, to_csv(moved), "y.csv")
    assert [e.column for e in pv.errors] == ["学籍号", "学籍号"]


# --------------------------------------------------------------------------- hostile files


def test_oversized_file_refused_before_parsing(ctx, world):
    big = b"a" * (roster.DEFAULT_MAX_BYTES + 1)
    with pytest.raises(ImportRefused, match="larger than"):
        roster.preview(ctx, world.counsellor, big, "x.csv")


def _zip(members: dict[str, bytes], level: int = 9) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=level) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def test_zip_bomb_refused_fast_with_little_memory(ctx, world):
    bomb = _zip({"[Content_Types].xml": b"<Types/>", "xl/worksheets/sheet1.xml": b"<a>" + b" " * 200_000_000 + b"</a>"})
    assert len(bomb) < 400_000
    tracemalloc.start()
    t = time.perf_counter()
    with pytest.raises(ImportRefused, match="zip bomb"):
        roster.preview(ctx, world.counsellor, bomb, "x.xlsx")
    elapsed = time.perf_counter() - t
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert elapsed < 2 and peak < 20_000_000


def test_zip_with_lying_sizes_refused(ctx, world):
    data = bytearray(_zip({"xl/worksheets/sheet1.xml": b"<a>" + b"x" * 500_000 + b"</a>"}))
    # shrink the declared uncompressed size in the central directory (offset 24 from its signature)
    i = bytes(data).rfind(b"PK\x01\x02")
    data[i + 24:i + 28] = (100).to_bytes(4, "little")
    with pytest.raises(ImportRefused):
        roster.preview(ctx, world.counsellor, bytes(data), "x.xlsx")


def test_too_many_zip_members_refused(ctx, world):
    data = _zip({f"xl/m{i}.xml": b"<a/>" for i in range(roster.ZIP_MAX_MEMBERS + 1)})
    with pytest.raises(ImportRefused, match="too many parts"):
        roster.preview(ctx, world.counsellor, data, "x.xlsx")


def test_xml_entity_expansion_refused(ctx, world):
    good = to_xlsx(roster_rows(classes=1, per_class=2))
    src = zipfile.ZipFile(io.BytesIO(good))
    members = {n: src.read(n) for n in src.namelist()}
    lol = (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>'
           b'<lolz>&lol2;</lolz>')
    members["xl/sharedStrings.xml"] = lol
    with pytest.raises(ImportRefused, match="DTD"):
        roster.preview(ctx, world.counsellor, _zip(members), "x.xlsx")
    members["xl/sharedStrings.xml"] = b'<?xml version="1.0"?><!DOCTYPE x SYSTEM "file:///etc/passwd"><x/>'
    with pytest.raises(ImportRefused, match="DTD"):
        roster.preview(ctx, world.counsellor, _zip(members), "x.xlsx")


def test_garbage_xlsx_and_mismatched_names(ctx, world):
    with pytest.raises(ImportRefused, match="readable XLSX"):
        roster.preview(ctx, world.counsellor, b"PK\x03\x04garbage" * 10, "x.xlsx")
    with pytest.raises(ImportRefused, match="does not match"):
        roster.preview(ctx, world.counsellor, to_xlsx(roster_rows(classes=1, per_class=1)), "x.csv")


def test_overlong_csv_field_refused(ctx, world):
    data = to_csv([["xlt-s001", "七年级", "1班", "G21000000001", "张" * 5000, "男", "2013", "", "", ""]])
    with pytest.raises(ImportRefused, match="too long"):
        roster.preview(ctx, world.counsellor, data, "x.csv")
