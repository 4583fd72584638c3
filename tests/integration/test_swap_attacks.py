"""T5 — swap attacks and blind indexes (security.md §5 T5, issue 6 "Must show").

Someone with write access to the database (not to the keys) copies ciphertext around with raw SQL:
(i) to another row of the same column, (ii) to another column of the same row, (iii) to another
table — always between fields sealed under the SAME student key, so only the associated data
(table, column, row id) can tell. Each read is refused: the disclosure service gives UNREADABLE and
appends ``security:envelope_refused`` to the hash chain, ``keyring.open_field`` raises
``TamperedOrMisbound``; the case page shows the placeholder, never the moved plaintext. A single
flipped byte anywhere in an envelope is refused. A blind index copied to another row does not make
that row read as the other value, and no blind index is an unkeyed hash.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import timedelta

import pytest
import sqlalchemy as sa
from cases_world import build, confirmed_flag, quick_argon2  # noqa: F401 - autouse fixture

from mh_platform.crypto import blind_index as bi
from mh_platform.crypto import envelope as env
from mh_platform.db.models import (
    AcademicYear,
    Case,
    EventLog,
    Guardian,
    OrgUnit,
    PlanItem,
    Student,
)
from mh_platform.services import audit, cases, disclosure, students

NAME_A, NAME_B = "欧阳明月", "司马青山"
ID_A, ID_B = "211103201203140021", "21110320120515004X"
SNO_A, SNO_B = "G2100000000001", "G2100000000002"
PHONE_A, PHONE_B = "13900000001", "13900000002"


@pytest.fixture
def world(ctx):
    w = build(ctx, n=1)
    now = ctx.now()
    with ctx.uow() as uow:
        s = uow.session
        cls, year = s.get(OrgUnit, w.class_a.id), s.get(AcademicYear, w.year_id)
        a = students.add_student(ctx, s, name=NAME_A, sex="F", birth_year=2012, class_unit=cls, year=year, now=now,
                                 student_number=SNO_A, id_number=ID_A,
                                 guardians=[students.GuardianIn("欧阳母", "mother", PHONE_A)])
        b = students.add_student(ctx, s, name=NAME_B, sex="M", birth_year=2012, class_unit=cls, year=year, now=now,
                                 student_number=SNO_B, id_number=ID_B,
                                 guardians=[students.GuardianIn("司马父", "father", PHONE_B)])
        uow.commit()
    w.ids = {"a": a.id, "b": b.id}  # type: ignore[attr-defined]
    c = w.actors["counsellor.a"]
    w.case_a = cases.open_case(ctx, c, confirmed_flag(ctx, a.id), summary="甲的个案摘要：家庭冲突")  # type: ignore[attr-defined]
    w.case_b = cases.open_case(ctx, c, confirmed_flag(ctx, b.id), summary="乙的个案摘要：学业压力")  # type: ignore[attr-defined]
    w.item_a = cases.add_plan_item(ctx, c, w.case_a, goal="甲的目标：规律作息", action="每周两次面谈",  # type: ignore[attr-defined]
                                   review_at=now + timedelta(days=7))
    return w


def _raw(ctx, sql: str, **params) -> None:
    with ctx.uow() as uow:
        uow.session.execute(sa.text(sql), params)
        uow.commit()


def _blob(ctx, table: str, column: str, row_id: uuid.UUID) -> bytes:
    with ctx.uow() as uow:
        return bytes(uow.session.execute(sa.text(f"SELECT {column} FROM {table} WHERE id = :id"),
                                         {"id": _param(ctx, row_id)}).scalar_one())


def _param(ctx, row_id: uuid.UUID):
    """How a uuid is bound in raw SQL on this dialect (SQLite stores 32 hex characters)."""
    return row_id.hex if ctx.engine.dialect.name == "sqlite" else row_id


def _refused(ctx, actor, model, row_id: uuid.UUID, column: str, student_id: uuid.UUID) -> None:
    """Reading (model.column of row_id) is refused through disclosure and open_field, with a chain event."""
    with ctx.uow() as uow:
        s = uow.session
        obj = s.get(model, row_id)
        before = s.scalar(sa.select(sa.func.count()).select_from(EventLog)
                          .where(EventLog.kind == "security:envelope_refused"))
        assert disclosure.reveal(ctx, s, actor, obj, column, student_id=student_id, purpose="t5") == disclosure.UNREADABLE
        s.flush()  # the event is pending in this transaction (sessions do not autoflush)
        ev = s.scalars(sa.select(EventLog).where(EventLog.kind == "security:envelope_refused")
                       .order_by(EventLog.id.desc())).first()
        assert ev is not None and s.scalar(sa.select(sa.func.count()).select_from(EventLog)
                                           .where(EventLog.kind == "security:envelope_refused")) == before + 1
        assert ev.object_type == model.__tablename__ and ev.object_id == str(row_id)
        assert ev.data == {"field": column, "error": "TamperedOrMisbound"}
        with pytest.raises(env.TamperedOrMisbound):
            ctx.keyring.open_field(s, getattr(obj, column), table=model.__tablename__, column=column, row_id=row_id)
        uow.commit()
    assert audit.sequence(ctx).rejected == 0 and audit.verify(ctx).ok


def test_copy_to_another_row_of_the_same_column(ctx, world):
    w, c = world, world.actors["counsellor.a"]
    a, b = w.ids["a"], w.ids["b"]
    _raw(ctx, "UPDATE student SET name_enc = :v WHERE id = :id", v=_blob(ctx, "student", "name_enc", a), id=_param(ctx, b))
    _refused(ctx, c, Student, b, "name_enc", b)
    # a case summary moved to another case of the same school: the case page shows the placeholder
    _raw(ctx, "UPDATE case_file SET summary_enc = :v WHERE id = :id",
         v=_blob(ctx, "case_file", "summary_enc", w.case_a), id=_param(ctx, w.case_b))
    detail = cases.case_detail(ctx, c, w.case_b)
    assert detail["summary"] == disclosure.UNREADABLE and "甲的个案摘要" not in str(detail)
    assert cases.case_detail(ctx, c, w.case_a)["summary"] == "甲的个案摘要：家庭冲突"  # the original still reads
    _refused(ctx, c, Case, w.case_b, "summary_enc", b)


def test_copy_to_another_column_of_the_same_row(ctx, world):
    w, c = world, world.actors["counsellor.a"]
    a = w.ids["a"]
    _raw(ctx, "UPDATE student SET id_number_enc = :v WHERE id = :id", v=_blob(ctx, "student", "name_enc", a),
         id=_param(ctx, a))
    _refused(ctx, c, Student, a, "id_number_enc", a)
    # the plan's goal moved into its action column: same row, same student key
    _raw(ctx, "UPDATE plan_item SET action_enc = :v WHERE id = :id",
         v=_blob(ctx, "plan_item", "goal_enc", w.item_a), id=_param(ctx, w.item_a))
    plan = cases.case_detail(ctx, c, w.case_a)["plan"]
    assert plan[0]["goal"] == "甲的目标：规律作息" and plan[0]["action"] == disclosure.UNREADABLE
    _refused(ctx, c, PlanItem, w.item_a, "action_enc", a)


def test_copy_to_another_table(ctx, world):
    w, c = world, world.actors["counsellor.a"]
    a = w.ids["a"]
    with ctx.uow() as uow:
        gid = uow.session.scalar(sa.select(Guardian.id).where(Guardian.student_id == a))
    # the student's name into their guardian's name (same student key, same column name, other table)
    _raw(ctx, "UPDATE guardian SET name_enc = :v WHERE id = :id", v=_blob(ctx, "student", "name_enc", a),
         id=_param(ctx, gid))
    _refused(ctx, c, Guardian, gid, "name_enc", a)
    # the case summary into a plan goal of the same case (what a page would show)
    _raw(ctx, "UPDATE plan_item SET goal_enc = :v WHERE id = :id",
         v=_blob(ctx, "case_file", "summary_enc", w.case_a), id=_param(ctx, w.item_a))
    plan = cases.case_detail(ctx, c, w.case_a)["plan"]
    assert plan[0]["goal"] == disclosure.UNREADABLE
    _refused(ctx, c, PlanItem, w.item_a, "goal_enc", a)


def test_every_flipped_byte_is_refused(ctx, world):
    a = world.ids["a"]
    blob = _blob(ctx, "student", "name_enc", a)
    with ctx.uow() as uow:
        s = uow.session
        assert ctx.keyring.open_field(s, blob, table="student", column="name_enc", row_id=a) == NAME_A
        for i in range(len(blob)):
            bad = bytearray(blob)
            bad[i] ^= 0x01
            with pytest.raises(env.EnvelopeError):
                ctx.keyring.open_field(s, bytes(bad), table="student", column="name_enc", row_id=a)
        for bad in (blob[:-1], blob + b"\x00", blob[:20], b""):
            with pytest.raises(env.EnvelopeError):
                ctx.keyring.open_field(s, bad, table="student", column="name_enc", row_id=a)
    # one flipped ciphertext byte stored in the database: refused through disclosure with an event
    bad = bytearray(blob)
    bad[-5] ^= 0x80
    _raw(ctx, "UPDATE student SET name_enc = :v WHERE id = :id", v=bytes(bad), id=_param(ctx, a))
    _refused(ctx, world.actors["counsellor.a"], Student, a, "name_enc", a)


def test_a_copied_blind_index_reveals_nothing(ctx, world):
    a, b = world.ids["a"], world.ids["b"]
    with ctx.uow() as uow:
        bidx_a = uow.session.get(Student, a).id_number_bidx
    _raw(ctx, "UPDATE student SET id_number_bidx = :v WHERE id = :id", v=bidx_a, id=_param(ctx, b))
    with ctx.uow() as uow:
        s = uow.session
        bidx = ctx.keyring.blind_index(s, "id_number", ID_A)
        candidates = list(s.scalars(sa.select(Student).where(Student.id_number_bidx == bidx)))
        assert {st.id for st in candidates} == {a, b}  # the forged index makes B a candidate ...
        opened = {st.id: ctx.keyring.open_field(s, st.id_number_enc, table="student", column="id_number_enc",
                                                row_id=st.id) for st in candidates}
        assert opened == {a: ID_A, b: ID_B}  # ... but B still decrypts to B's own number: post-filter drops it
        assert [sid for sid, v in opened.items() if v == ID_A] == [a]
    # the student-number index is unique: a copy is refused by the database itself
    with ctx.uow() as uow:
        s = uow.session
        sno_a = s.get(Student, a).student_number_bidx
        forged = sa.text("UPDATE student SET student_number_bidx = :v WHERE id = :id")
        with pytest.raises(sa.exc.IntegrityError):
            s.execute(forged, {"v": sno_a, "id": _param(ctx, b)})
    with ctx.uow() as uow:
        assert students.find_by_student_number(ctx, uow.session, SNO_A).id == a


def test_blind_indexes_are_keyed_and_lookups_exact(ctx, world):
    """200 students looked up by ID number: recall 100 %, no false match; no index is a bare hash."""
    now = ctx.now()
    ids: dict[str, uuid.UUID] = {}
    with ctx.uow() as uow:
        s = uow.session
        cls, year = s.get(OrgUnit, world.class_a.id), s.get(AcademicYear, world.year_id)
        for i in range(200):
            number = f"21110320120{i:06d}X"[:17] + "X"
            st = students.add_student(ctx, s, name=f"查询{i}", sex="F", birth_year=2012, class_unit=cls, year=year,
                                      now=now, id_number=number, student_number=f"Q{i:08d}")
            ids[number] = st.id
        uow.commit()
    with ctx.uow() as uow:
        s = uow.session
        for number, sid in ids.items():
            found = list(s.scalars(sa.select(Student.id).where(
                Student.id_number_bidx == ctx.keyring.blind_index(s, "id_number", number))))
            assert found == [sid]
            # the same number typed with spaces and a lower-case x finds the same student
            assert ctx.keyring.blind_index(s, "id_number", " ".join(number[:6]) + number[6:].lower()) == \
                s.get(Student, sid).id_number_bidx
        stored = {bytes(v) for v in s.scalars(sa.select(Student.id_number_bidx).where(Student.id_number_bidx.is_not(None)))}
        length = len(next(iter(stored)))
        for number in list(ids) + [ID_A, ID_B]:
            norm = bi.normalise(bi.IndexKind.ID_NUMBER, number).encode()
            for h in (hashlib.sha256(norm).digest(), hashlib.sha256(number.encode()).digest(),
                      hashlib.md5(norm).digest(), hashlib.sha1(norm).digest()):  # noqa: S324 - what an attacker tries
                assert h[:length] not in stored
