"""Roster import: schools' classes, students and guardians from CSV or XLSX.

``preview`` parses and validates a file and says, per row, what is wrong (row number as in the
spreadsheet, column, message) and how many rows are new, changed or already present (duplicate);
``commit`` does the same and then writes everything in ONE transaction, or nothing at all when any
row has an error. Re-importing the same file finds every row already present and writes nothing:
students are matched on the blind index of their student number (学籍号).

Hostile files are refused before they can cost memory or time: a size cap (settings
``extra.import_max_bytes``, default 5 MB) and a row cap (``extra.import_max_rows``, default 50,000); for XLSX the zip directory is checked first (member count,
declared uncompressed sizes, compression ratio), XML members are streamed with a byte cap and any
DTD/entity declaration is refused, and openpyxl then parses with defusedxml; CSV fields are
bounded; text cells starting with ``= + - @`` (or a tab/CR) are refused as formula injection.
Grades and classes missing under a school are created; schools must already exist in the
importer's scope (matched by code or name). Identity is written only through ``services.students``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mh_platform.core.errors import Forbidden, ValidationFailed
from mh_platform.core.i18n import N_
from mh_platform.core.types import Role, UnitKind
from mh_platform.db.models import AcademicYear, Enrolment, Guardian, OrgUnit, Student
from mh_platform.services import audit, disclosure, students
from mh_platform.services.access import current_year_id
from mh_platform.services.context import Actor, ServiceContext
from mh_platform.services.org import add_unit, under

IMPORTERS = {Role.COUNSELLOR, Role.SCHOOL_LEADER, Role.COUNTY_OFFICER, Role.CITY_OFFICER}
DEFAULT_MAX_BYTES = 5_000_000
MAX_ROWS = 50_000
MAX_COLS = 40
MAX_FIELD = 200
ZIP_MAX_MEMBERS = 200
ZIP_MAX_MEMBER_BYTES = 50_000_000
ZIP_MAX_TOTAL_BYTES = 100_000_000
ZIP_MAX_RATIO = 100
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")

COLUMNS: dict[str, tuple[str, ...]] = {
    "school": ("学校", "学校名称", "学校代码", "school", "school_code"),
    "grade": ("年级", "grade"),
    "class": ("班级", "class"),
    "student_number": ("学籍号", "全国学籍号", "学号", "student_number", "student_no"),
    "name": ("姓名", "学生姓名", "name"),
    "sex": ("性别", "sex"),
    "birth_year": ("出生年份", "出生年", "birth_year"),
    "guardian_name": ("监护人姓名", "监护人", "guardian_name"),
    "guardian_relation": ("监护人关系", "与学生关系", "guardian_relation"),
    "guardian_phone": ("监护人电话", "联系电话", "guardian_phone"),
}
REQUIRED = ("school", "grade", "class", "student_number", "name", "sex")
GRADE_NAMES = {1: "一年级", 2: "二年级", 3: "三年级", 4: "四年级", 5: "五年级", 6: "六年级", 7: "七年级",
               8: "八年级", 9: "九年级", 10: "高一", 11: "高二", 12: "高三"}
GRADE_ALIASES = {v: k for k, v in GRADE_NAMES.items()} | {"初一": 7, "初二": 8, "初三": 9, "高中一年级": 10,
                                                         "高中二年级": 11, "高中三年级": 12}
SEX = {"男": "M", "女": "F", "m": "M", "f": "F", "male": "M", "female": "F"}
RELATIONS = {"父亲": "father", "母亲": "mother", "爸爸": "father", "妈妈": "mother", "祖父": "grandparent",
             "祖母": "grandparent", "外祖父": "grandparent", "外祖母": "grandparent", "爷爷": "grandparent",
             "奶奶": "grandparent", "其他": "other", "监护人": "guardian", "father": "father", "mother": "mother",
             "grandparent": "grandparent", "guardian": "guardian", "other": "other"}
PHONE_RE = re.compile(r"^\d{7,15}$")
NUMBER_RE = re.compile(r"^[0-9A-Za-z]{4,32}$")


class ImportRefused(ValidationFailed):
    """The file as a whole is refused (size, format, hostile content). Nothing was read into the database."""

    code = "import_refused"


@dataclass(frozen=True)
class RowError:
    row: int  # spreadsheet row number (header = 1)
    column: str | None
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"row": self.row, "column": self.column, "message": self.message}


@dataclass
class ImportPreview:
    rows: int = 0
    new: int = 0
    changed: int = 0
    duplicate: int = 0
    new_units: int = 0
    errors: list[RowError] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors and self.rows > 0

    def summary(self) -> dict[str, int]:
        return {"rows": self.rows, "new": self.new, "changed": self.changed, "duplicate": self.duplicate,
                "new_units": self.new_units, "errors": len(self.errors)}


# --------------------------------------------------------------------------- reading files safely


def _max_bytes(ctx: ServiceContext) -> int:
    return int(ctx.settings.extra.get("import_max_bytes", DEFAULT_MAX_BYTES))


def _max_rows(ctx: ServiceContext) -> int:
    return int(ctx.settings.extra.get("import_max_rows", MAX_ROWS))


def _check_zip(data: bytes) -> None:
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError):
        raise ImportRefused(N_("not a readable XLSX file")) from None
    with zf:
        infos = zf.infolist()
        if len(infos) > ZIP_MAX_MEMBERS:
            raise ImportRefused(N_("XLSX has too many parts"))
        total = 0
        for i in infos:
            if i.filename.startswith(("/", "\\")) or ".." in i.filename:
                raise ImportRefused(N_("XLSX has a part with an unsafe name"))
            if i.file_size > ZIP_MAX_MEMBER_BYTES:
                raise ImportRefused(N_("XLSX part too large when decompressed (zip bomb?)"))
            total += i.file_size
            if i.file_size > 1_000_000 and i.file_size > ZIP_MAX_RATIO * max(i.compress_size, 1):
                raise ImportRefused(N_("XLSX part compressed too strongly (zip bomb?)"))
        if total > ZIP_MAX_TOTAL_BYTES:
            raise ImportRefused(N_("XLSX too large when decompressed (zip bomb?)"))
        for i in infos:
            if not i.filename.lower().endswith((".xml", ".rels", ".vml")):
                continue
            limit, read, head = i.file_size, 0, b""
            try:
                with zf.open(i) as fh:
                    while True:
                        chunk = fh.read(65536)
                        if not chunk:
                            break
                        read += len(chunk)
                        if read > limit:  # the directory lied about the size
                            raise ImportRefused(N_("XLSX part larger than declared (zip bomb?)"))
                        window = (head + chunk).upper()
                        if b"<!DOCTYPE" in window or b"<!ENTITY" in window:
                            raise ImportRefused(N_("XLSX contains XML declarations (DTD/entities) that are not allowed"))
                        head = chunk[-16:]
            except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError, OSError):
                raise ImportRefused(N_("not a readable XLSX file")) from None


def _cell_text(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return str(int(v)) if v.is_integer() else repr(v)
    return str(v)


def _read_xlsx(data: bytes, max_rows: int = MAX_ROWS) -> list[list[str]]:
    _check_zip(data)
    import openpyxl  # defusedxml is installed, so openpyxl parses with it

    try:
        wb = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=False)
    except Exception:  # noqa: BLE001 - any parser failure is a refused file, never a traceback
        raise ImportRefused(N_("not a readable XLSX file")) from None
    try:
        ws = wb.worksheets[0]
        out: list[list[str]] = []
        for row in ws.iter_rows(max_col=MAX_COLS, values_only=True):
            if len(out) > max_rows:
                raise ImportRefused(N_("too many rows (at most %(max)d)"), params={"max": max_rows})
            out.append([_cell_text(v) for v in row])
        return out
    finally:
        wb.close()


def _decode(data: bytes) -> str:
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8", errors="strict")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("gb18030")  # GBK and its superset: what Excel in zh_CN writes
    except UnicodeDecodeError:
        raise ImportRefused(N_("unknown text encoding (use UTF-8 or GBK)")) from None


def _read_csv(data: bytes, max_rows: int = MAX_ROWS) -> list[list[str]]:
    if b"\x00" in data[:4096] and not data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise ImportRefused(N_("not a text file"))
    text = _decode(data)
    try:
        dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel  # type: ignore[assignment]
    out: list[list[str]] = []
    old = csv.field_size_limit()
    csv.field_size_limit(MAX_FIELD * 8)
    try:
        for row in csv.reader(io.StringIO(text, newline=""), dialect):
            if len(out) > max_rows:
                raise ImportRefused(N_("too many rows (at most %(max)d)"), params={"max": max_rows})
            out.append(row[:MAX_COLS])
    except csv.Error:
        raise ImportRefused(N_("the CSV cannot be read (a field too long or a broken quote)")) from None
    finally:
        csv.field_size_limit(old)
    return out


def read_table(ctx: ServiceContext, data: bytes, filename: str) -> list[list[str]]:
    """Rows of cell texts (header first) from a CSV or XLSX upload, or ImportRefused."""
    if not data:
        raise ImportRefused(N_("the file is empty"))
    if len(data) > _max_bytes(ctx):
        raise ImportRefused(N_("the file is larger than %(mb)d MB"), params={"mb": _max_bytes(ctx) // 1_000_000})
    name = (filename or "").lower()
    if data[:4] == b"PK\x03\x04" or name.endswith((".xlsx", ".xlsm")):
        if name.endswith((".csv", ".txt")):
            raise ImportRefused(N_("file content does not match its .csv name"))
        return _read_xlsx(data, _max_rows(ctx))
    if name.endswith((".csv", ".txt")) or not name:
        return _read_csv(data, _max_rows(ctx))
    raise ImportRefused(N_("only .csv and .xlsx files are accepted"))


def map_header(header: list[str], columns: dict[str, tuple[str, ...]] = COLUMNS,
               required: tuple[str, ...] = REQUIRED) -> dict[str, int]:
    """Field → column index from the header row (Chinese or English names); ImportRefused if incomplete."""
    idx: dict[str, int] = {}
    for i, h in enumerate(header):
        key = h.strip().lstrip("\ufeff").lower()
        for fld, aliases in columns.items():
            if key in (a.lower() for a in aliases) and fld not in idx:
                idx[fld] = i
    missing = [f for f in required if f not in idx]
    if missing:
        names = ", ".join(f"{columns[f][0]} ({f})" for f in missing)
        raise ImportRefused(N_("missing column(s): %(cols)s"), params={"cols": names})
    return idx


def formula_like(text: str) -> bool:
    return text.startswith(FORMULA_START)


# --------------------------------------------------------------------------- validation


@dataclass
class _Row:
    line: int
    school: OrgUnit
    grade: int
    class_name: str
    number: str
    bidx: bytes
    name: str
    sex: str
    birth_year: int | None
    guardian: students.GuardianIn | None
    status: str = "new"  # new / changed / duplicate
    student: Student | None = None
    changes: tuple[str, ...] = ()


def _class_name(grade: int, raw: str) -> str:
    raw = raw.strip()
    if raw.isdigit():
        return f"{GRADE_NAMES[grade]}{int(raw)}班"
    if raw.endswith("班") and raw[:-1].isdigit():
        return f"{GRADE_NAMES[grade]}{raw}"
    return raw


def _grade(raw: str) -> int | None:
    t = raw.strip().replace(" ", "")
    if t.isdigit() and 1 <= int(t) <= 12:
        return int(t)
    if t in GRADE_ALIASES:
        return GRADE_ALIASES[t]
    m = re.fullmatch(r"(\d{1,2})年级", t)
    if m and 1 <= int(m.group(1)) <= 12:
        return int(m.group(1))
    return None


@dataclass
class _Analysis:
    preview: ImportPreview
    rows: list[_Row]
    year: AcademicYear


def _analyse(ctx: ServiceContext, s: Session, actor: Actor, table: list[list[str]]) -> _Analysis:
    if actor.role not in IMPORTERS or not actor.unit_path:
        raise Forbidden(N_("your role does not import rosters"))
    pv = ImportPreview()
    # skip leading blank rows, then the header
    start = 0
    while start < len(table) and not any(c.strip() for c in table[start]):
        start += 1
    if start >= len(table):
        raise ImportRefused(N_("the file has no header row"))
    cols = map_header(table[start])
    yid = current_year_id(s)
    year = s.get(AcademicYear, yid) if yid else None
    if year is None:
        raise ValidationFailed(N_("no current school year: create one first"))
    schools = list(s.scalars(sa.select(OrgUnit).where(OrgUnit.kind == UnitKind.SCHOOL.value,
                                                       under(OrgUnit.path, actor.unit_path))))
    by_code = {u.code.lower(): u for u in schools}
    by_name: dict[str, list[OrgUnit]] = {}
    for u in schools:
        by_name.setdefault(u.name, []).append(u)
    rows: list[_Row] = []
    seen: dict[bytes, int] = {}
    err = pv.errors.append

    def cell(r: list[str], fld: str) -> str:
        i = cols.get(fld)
        return r[i].strip() if i is not None and i < len(r) and r[i] is not None else ""

    for offset, r in enumerate(table[start + 1:], start=start + 2):
        if not any((c or "").strip() for c in r):
            continue
        pv.rows += 1
        bad = False
        for fld, i in cols.items():
            v = r[i] if i < len(r) else ""
            if v and formula_like(v.lstrip(" ")):
                err(RowError(offset, COLUMNS[fld][0], "以 = + - @ 开头的内容不允许（公式） / formula-like text refused"))
                bad = True
            elif v and len(v) > MAX_FIELD:
                err(RowError(offset, COLUMNS[fld][0], f"内容过长 / longer than {MAX_FIELD} characters"))
                bad = True
        if bad:
            continue
        sch_raw = cell(r, "school")
        school = by_code.get(sch_raw.lower())
        if school is None:
            cands = by_name.get(sch_raw, [])
            school = cands[0] if len(cands) == 1 else None
        if school is None:
            err(RowError(offset, "学校", "学校不存在或不在您的管辖范围 / school not found in your units"))
            continue
        grade = _grade(cell(r, "grade"))
        if grade is None:
            err(RowError(offset, "年级", "年级无法识别 / grade not recognised (1-12 or 七年级…)"))
            continue
        cls_raw = cell(r, "class")
        if not cls_raw:
            err(RowError(offset, "班级", "缺少班级 / class is required"))
            continue
        number = cell(r, "student_number")
        if not NUMBER_RE.match(number):
            err(RowError(offset, "学籍号", "学籍号应为4-32位字母或数字 / student number: 4-32 letters or digits"))
            continue
        try:
            bidx = ctx.keyring.blind_index(s, "student_number", number)
        except ValueError:
            err(RowError(offset, "学籍号", "学籍号格式不正确 / student number not valid"))
            continue
        if bidx in seen:
            err(RowError(offset, "学籍号", f"与第{seen[bidx]}行重复 / same student number as row {seen[bidx]}"))
            continue
        seen[bidx] = offset
        name = cell(r, "name")
        if not name:
            err(RowError(offset, "姓名", "缺少姓名 / name is required"))
            continue
        sex = SEX.get(cell(r, "sex").lower()) or SEX.get(cell(r, "sex"))
        if sex is None:
            err(RowError(offset, "性别", "性别应为 男/女 / sex must be 男/女 (M/F)"))
            continue
        by_raw = cell(r, "birth_year")
        birth_year = None
        if by_raw:
            if not by_raw.isdigit() or not (1990 <= int(by_raw) <= year.starts_on.year):
                err(RowError(offset, "出生年份", "出生年份不正确 / birth year not valid"))
                continue
            birth_year = int(by_raw)
        g_name, g_rel, g_phone = cell(r, "guardian_name"), cell(r, "guardian_relation"), cell(r, "guardian_phone")
        guardian = None
        if g_name or g_phone or g_rel:
            rel = RELATIONS.get(g_rel.lower() if g_rel else "guardian")
            phone = re.sub(r"[\s-]", "", g_phone) if g_phone else None
            if not g_name:
                err(RowError(offset, "监护人姓名", "有监护人信息但缺少姓名 / guardian name is required"))
                continue
            if rel is None:
                err(RowError(offset, "监护人关系", "监护人关系无法识别 / guardian relation not recognised"))
                continue
            if phone is not None and not PHONE_RE.match(phone):
                err(RowError(offset, "监护人电话", "电话应为7-15位数字 / phone: 7-15 digits"))
                continue
            guardian = students.GuardianIn(g_name, rel, phone)
        rows.append(_Row(offset, school, grade, _class_name(grade, cls_raw), number, bidx, name, sex, birth_year,
                         guardian))
    if pv.rows == 0:
        raise ImportRefused(N_("the file has no data rows"))
    _classify(ctx, s, actor, rows, year, pv)
    return _Analysis(pv, rows, year)


def _chunks(seq: list, n: int = 900) -> Iterator[list]:
    for i in range(0, len(seq), n):
        yield seq[i:i + n]


def _classify(ctx: ServiceContext, s: Session, actor: Actor, rows: list[_Row], year: AcademicYear,
              pv: ImportPreview) -> None:
    unit_path = actor.unit_path
    if not unit_path:  # _analyse refuses such an actor first
        raise Forbidden(N_("your role does not import rosters"))
    existing: dict[bytes | None, Student] = {}  # keys are never None: matched by IN (bidx, ...)
    for part in _chunks([r.bidx for r in rows]):
        for found in s.scalars(sa.select(Student).where(Student.student_number_bidx.in_(part))):
            existing[found.student_number_bidx] = found
    ids = [found.id for found in existing.values()]
    enrols: dict[uuid.UUID, Enrolment] = {}
    guards: dict[uuid.UUID, set[bytes | None]] = {}
    for part in _chunks(ids):
        for enrolment in s.scalars(sa.select(Enrolment).where(Enrolment.student_id.in_(part),
                                                              Enrolment.active.is_(True))):
            enrols[enrolment.student_id] = enrolment
        for guardian in s.scalars(sa.select(Guardian).where(Guardian.student_id.in_(part))):
            guards.setdefault(guardian.student_id, set()).add(guardian.phone_bidx)
    class_names = {(u.parent_id, u.name): u for u in s.scalars(
        sa.select(OrgUnit).where(OrgUnit.kind == UnitKind.CLASS.value, under(OrgUnit.path, unit_path)))}
    grades = {(u.parent_id, u.grade_level): u for u in s.scalars(
        sa.select(OrgUnit).where(OrgUnit.kind == UnitKind.GRADE.value, under(OrgUnit.path, unit_path)))}
    new_units: set[tuple] = set()
    for r in rows:
        g = grades.get((r.school.id, r.grade))
        cls = class_names.get((g.id, r.class_name)) if g else None
        if g is None:
            new_units.add(("g", r.school.id, r.grade))
        if cls is None:
            new_units.add(("c", r.school.id, r.grade, r.class_name))
        st = existing.get(r.bidx)
        if st is None:
            pv.new += 1
            continue
        if st.erased_at is not None:
            pv.errors.append(RowError(r.line, "学籍号", "该学生的数据已被删除，不能再导入 / this student was erased"))
            continue
        e = enrols.get(st.id)
        if e is not None and not e.unit_path.startswith(unit_path):
            pv.errors.append(RowError(r.line, "学籍号", "学籍号已在其他单位登记，转学请由县区办理 / "
                                                       "registered in another unit: transfers go through the county"))
            continue
        changes = []
        if e is None or cls is None or e.class_unit_id != cls.id or e.academic_year_id != year.id:
            changes.append("class")
        # compared with the file's name, never shown; still a decryption the importer causes: logged
        old_name = disclosure.reveal(ctx, s, actor, st, "name_enc", student_id=st.id, purpose="roster_import")
        if old_name != r.name:
            changes.append("name")
        if st.sex != r.sex:
            changes.append("sex")
        if r.birth_year is not None and st.birth_year != r.birth_year:
            changes.append("birth_year")
        if r.guardian is not None:
            pb = ctx.keyring.blind_index(s, "phone", r.guardian.phone) if r.guardian.phone else None
            if pb is None or pb not in guards.get(st.id, set()):
                changes.append("guardian")
        r.student, r.changes = st, tuple(changes)
        r.status = "changed" if changes else "duplicate"
        if changes:
            pv.changed += 1
        else:
            pv.duplicate += 1
    pv.new_units = len(new_units)


def preview(ctx: ServiceContext, actor: Actor, file_bytes: bytes, filename: str) -> ImportPreview:
    """Validate a roster file and count what a commit would do. Writes nothing but the access log of
    the existing students' names it compared with the file (purpose ``roster_import``)."""
    table = read_table(ctx, file_bytes, filename)
    with ctx.uow() as uow:
        pv = _analyse(ctx, uow.session, actor, table).preview
        uow.commit()
        return pv


def _class_unit(s: Session, actor: Actor, school: OrgUnit, grade: int, class_name: str, now,
                cache: dict[tuple, OrgUnit]) -> OrgUnit:
    key = (school.id, grade, class_name)
    if key in cache:
        return cache[key]
    g = s.scalar(sa.select(OrgUnit).where(OrgUnit.parent_id == school.id, OrgUnit.kind == UnitKind.GRADE.value,
                                          OrgUnit.grade_level == grade))
    if g is None:
        g = add_unit(s, kind=UnitKind.GRADE, name=GRADE_NAMES[grade], code=f"{school.code}-g{grade}-{uuid.uuid4().hex[:6]}",
                     parent=school, now=now, grade_level=grade)
        s.flush()
    c = s.scalar(sa.select(OrgUnit).where(OrgUnit.parent_id == g.id, OrgUnit.kind == UnitKind.CLASS.value,
                                          OrgUnit.name == class_name))
    if c is None:
        c = add_unit(s, kind=UnitKind.CLASS, name=class_name, code=f"{school.code}-g{grade}-c{uuid.uuid4().hex[:8]}",
                     parent=g, now=now, grade_level=grade)
        s.flush()
    cache[key] = c
    return c


def commit(ctx: ServiceContext, actor: Actor, file_bytes: bytes, filename: str) -> ImportPreview:
    """Import the file in one transaction; any row error → ValidationFailed with every error, nothing written."""
    table = read_table(ctx, file_bytes, filename)
    with ctx.uow() as uow:
        s = uow.session
        now = ctx.now()
        an = _analyse(ctx, s, actor, table)
        pv = an.preview
        if pv.errors:
            raise ValidationFailed(N_("%(n)d row(s) have errors; nothing was imported"),
                                   errors=[e.as_dict() for e in pv.errors], params={"n": len(pv.errors)})
        cache: dict[tuple, OrgUnit] = {}
        new_items: list[students.StudentIn] = []
        for r in an.rows:
            if r.status == "duplicate":
                continue
            cls = _class_unit(s, actor, r.school, r.grade, r.class_name, now, cache)
            if r.status == "new":
                new_items.append(students.StudentIn(name=r.name, sex=r.sex, birth_year=r.birth_year, class_unit=cls,
                                                    student_number=r.number,
                                                    guardians=(r.guardian,) if r.guardian else ()))
                continue
            st = r.student
            assert st is not None
            if "class" in r.changes:
                students.enrol(s, st, cls, an.year, now, ctx)
            if {"name", "sex", "birth_year"} & set(r.changes):
                students.update_identity(ctx, s, st, now=now, name=r.name if "name" in r.changes else None,
                                         sex=r.sex if "sex" in r.changes else None,
                                         birth_year=r.birth_year if "birth_year" in r.changes else None)
            if "guardian" in r.changes and r.guardian is not None:
                students.add_guardian(ctx, s, st, r.guardian, now)
        if new_items:
            students.add_students_bulk(ctx, s, new_items, an.year, now)
        if pv.new or pv.changed:
            audit.record(ctx, s, actor, "roster:imported", "org_unit", actor.unit_id,
                         {**pv.summary(), "file_sha256": hashlib.sha256(file_bytes).hexdigest()[:16]})
        uow.commit()
        return pv
