"""Paper results import: scored by score_many exactly as the online engine scores, same flag path,
completion, and all-or-nothing with per-row errors."""

from __future__ import annotations

import json
import random
import uuid

import numpy as np
import pytest
import sqlalchemy as sa
from screening_world import build_world, screening_ready, to_csv, to_xlsx

from mh_platform.core.errors import NotFound, ValidationFailed
from mh_platform.core.instruments import YES_NO_CODES, load_instrument
from mh_platform.core.scoring import score
from mh_platform.db.models import AccessCode, Flag, FlagEvidence, Response
from mh_platform.services import completion, paper_import, responses
from mh_platform.services import flags as flags_service
from mh_platform.services.codes import normalise

BATTERY = ("phq9", "gad7", "asq", "k10", "who5")


@pytest.fixture
def ready(ctx):
    world = build_world(ctx)
    cid, codes, refused, hts = screening_ready(ctx, world, per_class=6, refused=1)
    return world, cid, codes, refused, hts


def numbers(ctx, ids):
    from mh_platform.db.models import Student

    with ctx.uow() as uow:
        s = uow.session
        return {sid: ctx.keyring.open_field(s, s.get(Student, sid).student_number_enc, table="student",
                                            column="student_number_enc", row_id=sid) for sid in ids}


def cell(inst, item, rng, critical=False):
    it = inst.item(item)
    crit = {c.item: c for c in inst.critical_items}.get(item)
    values = [o.value for o in it.options if crit is None or (o.value in crit.levels) == critical] or \
        [o.value for o in it.options]
    v = rng.choice(values)
    return {"yes": "是", "no": "否", "refused": "拒绝回答"}[v] if it.kind == "yes_no" else str(v)


def sheet(rows):
    width = max(load_instrument(i).n_items for i in BATTERY)
    header = ["学籍号", "量表"] + [str(n) for n in range(1, width + 1)]
    return to_csv(rows, header=header)


def test_paper_import_scores_flags_and_completes(ctx, ready):
    world, cid, codes, refused, hts = ready
    rng = random.Random(3)
    sids = list(codes)
    num = numbers(ctx, sids + refused)
    rows, expected = [], {}
    for k, sid in enumerate(sids[:4]):
        for iid in BATTERY:
            inst = load_instrument(iid)
            cells = [cell(inst, n, rng, critical=(k == 0 and iid == "phq9")) for n in range(1, inst.n_items + 1)]
            if k == 1 and iid == "gad7":
                cells[2] = ""  # one missing item: prorated like online
            rows.append([num[sid], iid] + cells)
            expected[(sid, iid)] = cells
    rows.append([num[sids[4]], "phq9"] + ["0"] * 10)  # a fifth student only did one page
    pv = paper_import.preview(ctx, world.counsellor, sheet(rows), "paper.csv", cid)
    assert pv.ok and pv.responses == 21 and pv.students == 5
    paper_import.commit(ctx, world.counsellor, sheet(rows), "paper.csv", cid)
    with ctx.uow() as uow:
        s = uow.session
        got = list(s.scalars(sa.select(Response).where(Response.campaign_id == cid)))
        assert len(got) == 21 and {r.source for r in got} == {"paper"}
        for r in got:
            answers = json.loads(ctx.keyring.open_field(s, r.answers_enc, table="response", column="answers_enc",
                                                        row_id=r.id))
            ref = score(load_instrument(r.instrument_id), answers)  # the one-at-a-time engine agrees
            assert r.total == (None if ref.total is None else float(ref.total))
            assert r.band_id == (ref.band.id if ref.band else None) and r.score_status == ref.status
            assert r.critical_fired == bool(ref.critical)
            assert r.concern_level == (ref.concern.value if ref.concern else None)
        assert s.scalar(sa.select(Flag).where(Flag.student_id == sids[0])) is not None  # the critical item's flag
        done = set(s.scalars(sa.select(AccessCode.student_id).where(AccessCode.campaign_id == cid,
                                                                     AccessCode.completed_at.is_not(None))))
        assert done == set(sids[:4])
    rep = completion.completion(ctx, world.counsellor, cid)
    assert (rep.unit.consented, rep.unit.started, rep.unit.completed) == (5, 5, 4)
    # the fifth student can finish online with their code; a paper-complete student's code no longer opens
    sess = responses.begin(ctx, codes[sids[4]])
    assert sess.current == "gad7"
    with pytest.raises(responses.CodeRejected):
        responses.begin(ctx, codes[sids[0]])
    # importing the same sheet again: every row is a duplicate, nothing written
    with pytest.raises(ValidationFailed) as e:
        paper_import.commit(ctx, world.counsellor, sheet(rows), "paper.csv", cid)
    assert len([x for x in e.value.errors if not x.get("critical")]) == 21
    # student 0's PHQ-9 item 9 is positive again, but stored (and flagged) by the first import: not named
    assert [x for x in e.value.errors if x.get("critical")] == []


def test_bad_rows_are_reported_and_nothing_is_written(ctx, ready):
    world, cid, codes, refused, hts = ready
    sids = list(codes)
    num = numbers(ctx, sids + refused)
    ok = [num[sids[0]], "phq9"] + ["1"] * 10
    bad = [
        ([num[sids[1]], "phq9"] + ["1", "7"] + ["1"] * 8, "2"),  # not an option
        ([num[refused[0]], "phq9"] + ["1"] * 10, "学籍号"),  # no consent
        (["G99999999", "phq9"] + ["1"] * 10, "学籍号"),  # unknown student
        ([num[sids[2]], "scared"] + ["1"] * 10, "量表"),  # not in this student's battery
        ([num[sids[0]], "phq9"] + ["1"] * 10, "学籍号"),  # duplicate of the first row
        ([num[sids[3]], "asq", "是", "=cmd", "否", "否", "否"], "2"),  # formula text
        ([num[sids[3]], "who5"] + ["3"] * 5 + ["", "2"], "7"),  # WHO-5 has no item 7
    ]
    for row, column in bad:
        pv = paper_import.preview(ctx, world.counsellor, sheet([ok, row]), "p.csv", cid)
        assert [(e.row, e.column) for e in pv.errors] == [(3, column)], row
        with pytest.raises(ValidationFailed):
            paper_import.commit(ctx, world.counsellor, sheet([ok, row]), "p.csv", cid)
        with ctx.uow() as uow:
            assert uow.session.scalar(sa.select(sa.func.count()).select_from(Response)) == 0
    # another school's counsellor reaches none of these students
    pv = paper_import.preview(ctx, world.counsellor, sheet([ok]), "p.csv", cid)
    assert pv.ok
    with pytest.raises(NotFound):
        paper_import.preview(ctx, world.other_counsellor, sheet([ok]), "p.csv", cid)
    # a student who already answered online cannot get a paper response for the same page
    sess = responses.begin(ctx, codes[sids[5 - 1]])
    responses.save_answer(ctx, sess.sitting, "phq9", 1, 0)
    pv = paper_import.preview(ctx, world.counsellor, sheet([[num[sids[4]], "phq9"] + ["0"] * 10]), "p.csv", cid)
    assert [e.column for e in pv.errors] == ["量表"]
    assert normalise(codes[sids[0]])


def test_withdrawn_consent_and_an_inactive_enrolment_are_row_errors(ctx, ready):
    """The one joined look-up (student, the year's active enrolment, granted consent not withdrawn)
    refuses what the three separate look-ups refused."""
    from mh_platform.db.models import Consent, Enrolment

    world, cid, codes, refused, hts = ready
    sids = list(codes)
    num = numbers(ctx, sids)
    with ctx.uow() as uow:
        s = uow.session
        s.execute(sa.update(Consent).where(Consent.student_id == sids[0]).values(withdrawn_at=ctx.now()))
        s.execute(sa.update(Enrolment).where(Enrolment.student_id == sids[1]).values(active=False))
        uow.commit()
    rows = [[num[sid], "phq9"] + ["1"] * 9 for sid in sids[:3]]
    pv = paper_import.preview(ctx, world.counsellor, sheet(rows), "p.csv", cid)
    assert [(e.row, e.column, e.message.split(" / ")[1]) for e in pv.errors] == [
        (2, "学籍号", "no guardian consent"), (3, "学籍号", "student not in this campaign or your units")]
    assert pv.responses == 1


# --------------------------------------------------------------------------- the set-based write


def _stored(s, table: sa.Table, row_id) -> dict:
    """Every column of one row as the database stores it, without SQLAlchemy's types: the driver's
    raw values on SQLite, each column's text form on PostgreSQL (json columns keep their text)."""
    pg = s.get_bind().dialect.name == "postgresql"
    cols = ", ".join(f"CAST({c.name} AS TEXT) AS {c.name}" if pg else c.name for c in table.c)
    key = str(row_id) if pg else row_id.hex
    got = s.execute(sa.text(f"SELECT {cols} FROM {table.name} WHERE CAST(id AS TEXT) = :k"),  # noqa: S608
                    {"k": key}).mappings().one()
    return dict(got)


def test_bulk_rows_are_stored_as_the_orm_stores_them(ctx, ready):
    """The import writes through the driver (executemany / COPY): each column must hold exactly what
    SQLAlchemy's own insert of the same values holds, so every reader of these tables is unaffected."""
    world, cid, codes, refused, hts = ready
    sids = list(codes)
    num = numbers(ctx, sids)
    with ctx.uow() as uow:  # two students never got a code: the import writes completion markers
        uow.session.execute(sa.delete(AccessCode).where(AccessCode.student_id.in_(sids[:2])))
        uow.commit()
    rng = random.Random(5)
    rows = []
    for iid in BATTERY:
        inst = load_instrument(iid)
        rows.append([num[sids[0]], iid] + [cell(inst, n, rng) for n in range(1, inst.n_items + 1)])
    rows.append([num[sids[2]], "phq9"] + ["3"] * 9)  # a band with a concern: flag path
    paper_import.commit(ctx, world.counsellor, sheet(rows), "paper.csv", cid)
    resp_t, code_t = Response.__table__, AccessCode.__table__
    with ctx.uow() as uow:
        s = uow.session
        imported = list(s.scalars(sa.select(Response).where(Response.campaign_id == cid)))
        assert len(imported) == 6
        marker = s.scalar(sa.select(AccessCode).where(AccessCode.student_id == sids[0]))
        assert marker is not None and marker.completed_at == marker.revoked_at == marker.first_used_at
        # fresh time-ordered ids (UUIDv7 layout), ascending in the order the rows were written
        # (student, then the file's instrument order)
        assert all(r.id.version == 7 for r in imported) and marker.id.version == 7
        written = sorted(imported, key=lambda r: (r.student_id.bytes, BATTERY.index(r.instrument_id)))
        assert [r.id.bytes for r in written] == sorted(r.id.bytes for r in imported)
        # the same values through SQLAlchemy: the other student without a code, another instrument set
        other = sids[1]
        ref_ids = {}
        for r in imported:
            values = {c.key: getattr(r, c.key) for c in resp_t.c}
            values.update(id=uuid.uuid4(), student_id=other,
                          instrument_id=f"{r.instrument_id}-{r.student_id == sids[2]:d}")
            s.execute(sa.insert(resp_t), [values])
            ref_ids[r.id] = values["id"]
        ref_marker = {c.key: getattr(marker, c.key) for c in code_t.c}
        ref_marker.update(id=uuid.uuid4(), student_id=other, code_hash=b"\x01" * 32)
        s.execute(sa.insert(code_t), [ref_marker])
        s.flush()
        for r in imported:
            got, want = _stored(s, resp_t, r.id), _stored(s, resp_t, ref_ids[r.id])
            for c in ("id", "student_id", "instrument_id"):
                got.pop(c), want.pop(c)
            assert got == want, r.instrument_id
        got, want = _stored(s, code_t, marker.id), _stored(s, code_t, ref_marker["id"])
        for c in ("id", "student_id", "code_hash"):
            got.pop(c), want.pop(c)
        assert got == want


def test_imported_responses_read_back_like_online_ones(ctx, ready):
    """Quality, concern, subscales and answers as the online path computes them; the flag path ran on
    the flag-raising rows only; the stored answers reopen for the flag service and the counsellor view."""
    world, cid, codes, refused, hts = ready
    sids = list(codes)
    num = numbers(ctx, sids)
    rows = [
        [num[sids[0]], "phq9"] + ["2"] * 9,  # longstring, band with a concern → flag
        [num[sids[0]], "gad7"] + ["1"] * 7,  # longstring, no concern
        [num[sids[1]], "phq9"] + ["0"] * 8 + ["2"],  # critical item 9
        [num[sids[1]], "asq", "否", "否", "否", "否", ""],
        [num[sids[2]], "k10"] + ["1", "", "1", " 1 ", "1", "1", "1", "1", "1", "1"],  # blank + padded cell
        [num[sids[2]], "who5"] + ["5", "4", "3", "2", "1"],
    ]
    pv = paper_import.commit(ctx, world.counsellor, sheet(rows), "paper.csv", cid)
    assert pv.responses == 6 and pv.flagged == 2
    with ctx.uow() as uow:
        s = uow.session
        for r in s.scalars(sa.select(Response).where(Response.campaign_id == cid)):
            inst = load_instrument(r.instrument_id)
            answers = json.loads(ctx.keyring.open_field(s, r.answers_enc, table="response", column="answers_enc",
                                                        row_id=r.id))
            ref = score(inst, answers)
            quality, suggestion = responses.quality_checks(inst, answers, None)
            assert (r.quality, r.quality_suggestion) == (quality, suggestion), r.instrument_id
            assert r.concern_level == (ref.concern.value if ref.concern else None)
            assert r.subscales == ({k: {"score": v.score, "positive": v.positive} for k, v in ref.subscales.items()}
                                   or None)
            assert r.n_answered == len(answers) and r.instrument_version == ref.instrument_version
            assert (r.status, r.source, r.item_ms) == ("submitted", "paper", None)
            assert r.submitted_at == r.started_at == r.scored_at == ctx.now()
        k10 = s.scalar(sa.select(Response).where(Response.instrument_id == "k10"))
        assert json.loads(ctx.keyring.open_field(s, k10.answers_enc, table="response", column="answers_enc",
                                                 row_id=k10.id)) == {str(n): 1 for n in range(1, 11) if n != 2}
        flags = {f.student_id: f.id for f in s.scalars(sa.select(Flag))}
        assert set(flags) == {sids[0], sids[1]}
        ev = {e.response_id for e in s.scalars(sa.select(FlagEvidence))}
        phq9 = {r.student_id: r.id for r in s.scalars(sa.select(Response).where(Response.instrument_id == "phq9"))}
        assert ev == {phq9[sids[0]], phq9[sids[1]]}
    view = flags_service.get_flag(ctx, world.counsellor, flags[sids[1]])
    assert [e["response_id"] for e in view["evidence"]] == [str(phq9[sids[1]])] * len(view["evidence"])
    # the stored answers reopen and rescore for the standalone flag service
    out = flags_service.raise_for_response(ctx, world.counsellor, phq9[sids[1]])
    assert out is not None and out.flag_id == flags[sids[1]]


def test_a_bad_row_writes_nothing_even_beside_flag_raising_rows(ctx, ready):
    world, cid, codes, refused, hts = ready
    sids = list(codes)
    num = numbers(ctx, sids)
    rows = [[num[sids[0]], "phq9"] + ["3"] * 9, [num[sids[1]], "phq9"] + ["0"] * 8 + ["3"],
            [num[sids[2]], "phq9"] + ["0"] * 8 + ["4"]]  # not an option
    with pytest.raises(ValidationFailed) as e:
        paper_import.commit(ctx, world.counsellor, sheet(rows), "paper.csv", cid)
    assert [(x["row"], x["column"]) for x in e.value.errors if not x.get("critical")] == [(4, "9")]
    # nothing was imported, so no flag was raised: the refusal names the rows with a positive critical
    # answer (row 2: item 9 = 3; row 3: item 9 = 3), to be acted on now
    assert [x["row"] for x in e.value.errors if x.get("critical")] == [2, 3]
    pv = paper_import.preview(ctx, world.counsellor, sheet(rows), "paper.csv", cid)
    assert pv.critical_lines == [2, 3] and [(x.row, x.column) for x in pv.errors] == [(4, "9")]
    # an ASQ "yes" and a "refused" count too, and an unknown student number still names a child
    more = rows + [["G99999999", "asq", "否", "否", "是", "否", "否"], [num[sids[3]], "asq", "否", "拒绝回答", "否", "否", "否"],
                   [num[sids[4]], "asq", "否", "否", "否", "否", "否"]]
    assert paper_import.preview(ctx, world.counsellor, sheet(more), "paper.csv", cid).critical_lines == [2, 3, 5, 6]
    assert paper_import.preview(ctx, world.counsellor, sheet(rows[:2]), "paper.csv", cid).critical_lines == []  # no errors
    with ctx.uow() as uow:
        s = uow.session
        assert s.scalar(sa.select(sa.func.count()).select_from(Response)) == 0
        assert s.scalar(sa.select(sa.func.count()).select_from(Flag)) == 0
        assert s.scalar(sa.select(sa.func.count()).select_from(AccessCode).where(
            AccessCode.completed_at.is_not(None))) == 0


@pytest.mark.parametrize("iid", ["phq9", "asq", "k10", "sdq", "psc17"])
def test_answer_texts_are_the_json_of_the_answers(iid):
    inst = load_instrument(iid)
    rng = random.Random(iid)
    names = {v: k for k, v in YES_NO_CODES.items()}
    X = np.full((60, inst.n_items), np.nan)
    for r in range(60):
        for j, it in enumerate(inst.items):
            if rng.random() < 0.8:
                X[r, j] = YES_NO_CODES[rng.choice(list(YES_NO_CODES))] if it.kind == "yes_no" else \
                    rng.choice([o.value for o in it.options])
    texts = paper_import._answer_texts(inst, X)
    for r, text in enumerate(texts):
        answers = {str(j + 1): (names[int(v)] if inst.items[j].kind == "yes_no" else int(v))
                   for j, v in enumerate(X[r]) if v == v}
        assert text == json.dumps(answers, separators=(",", ":"))
        assert paper_import._answers_of(inst, X[r]) == answers


def test_an_xlsx_sheet_with_numeric_and_short_rows_imports_like_csv(ctx, ready):
    world, cid, codes, refused, hts = ready
    sids = list(codes)
    num = numbers(ctx, sids)
    width = max(load_instrument(i).n_items for i in BATTERY)
    header = ["学籍号", "量表"] + [str(n) for n in range(1, width + 1)]
    rows = [[num[sids[0]], "PHQ9 "] + [1, 2, 0, 0, 1, 0, 0, 0, 0],  # numbers as numbers, no item 10 cell at all
            [num[sids[1]], "asq", "否", "否", "否", "否"]]  # a short row: item 5 unanswered
    pv = paper_import.commit(ctx, world.counsellor, to_xlsx(rows, header=header), "paper.xlsx", cid)
    assert pv.responses == 2 and pv.answers == 13 and not pv.errors
    with ctx.uow() as uow:
        s = uow.session
        got = {r.instrument_id: json.loads(ctx.keyring.open_field(s, r.answers_enc, table="response",
                                                                  column="answers_enc", row_id=r.id))
               for r in s.scalars(sa.select(Response).where(Response.campaign_id == cid))}
    assert got == {"phq9": {"1": 1, "2": 2, "3": 0, "4": 0, "5": 1, "6": 0, "7": 0, "8": 0, "9": 0},
                   "asq": {"1": "no", "2": "no", "3": "no", "4": "no"}}


def test_a_class_over_the_cluster_threshold_gets_one_alert_and_the_notices_wait_for_the_outbox_job(ctx, ready):
    """Four students of one class imported in the orange band (class threshold 3): one class cluster
    alert, checked once the batch is in, with the class's final count; the import's notices are
    committed to the outbox and delivered by the outbox job, not inline."""
    from mh_platform.db.models import ClusterAlert, Enrolment, Outbox
    from mh_platform.services import notify

    world, cid, codes, refused, hts = ready
    with ctx.uow() as uow:
        by_class: dict[uuid.UUID, list[uuid.UUID]] = {}
        for sid, cls in uow.session.execute(sa.select(Enrolment.student_id, Enrolment.class_unit_id)
                                            .where(Enrolment.student_id.in_(list(codes)))):
            by_class.setdefault(cls, []).append(sid)
    cls, members = next((c, m) for c, m in by_class.items() if len(m) >= 4)
    num = numbers(ctx, members[:4])
    rows = [[num[sid], "phq9"] + ["2"] * 8 + ["0"] for sid in members[:4]]  # total 16: moderately severe, orange
    pv = paper_import.commit(ctx, world.counsellor, sheet(rows), "paper.csv", cid)
    assert pv.flagged == 4
    with ctx.uow(read_only=True) as uow:
        s = uow.session
        alerts = s.execute(sa.select(ClusterAlert.scope, ClusterAlert.flag_count)
                           .where(ClusterAlert.unit_id == cls)).all()
        assert alerts == [("class", 4)]
        statuses = s.scalars(sa.select(Outbox.status)).all()
        assert statuses and set(statuses) == {"pending"}  # queued with the import, not yet sent
    out = notify.send_pending(ctx)
    assert out["sent"] == len(statuses)


def test_the_batched_flag_path_writes_the_notices_the_one_by_one_path_writes(ctx, ready):
    """The import plans its flags' and cluster alerts' notices into one ``FlagBatch`` and writes them
    together. For every notice key it wrote, the one-by-one path (``notify_roles`` /
    ``notify_unit_role`` without a batch, each row through ``notify.enqueue``) writes the same rows —
    recipients, channels, addresses, templates, params, links — and nothing more; a red flag's
    oversight notices, a flag raised from orange to red within the batch, and the class and school
    cluster alerts' notices are among them."""
    from mh_platform.core.types import Role, Tier
    from mh_platform.db.models import ClusterAlert, Outbox, User
    from mh_platform.services import notify

    world, cid, codes, refused, hts = ready
    with ctx.uow() as uow:  # every user with an address: the email channel is planned too
        for u in uow.session.scalars(sa.select(User)):
            u.email = f"{u.username}@example.org"
        uow.commit()
    sids = list(codes)[:5]
    num = numbers(ctx, sids)
    rows = [[num[sid], "phq9"] + ["2"] * 8 + ["0"] for sid in sids[1:]]  # orange
    rows.append([num[sids[0]], "phq9"] + ["3"] * 9)  # item 9 answered "3": red at once
    rows.append([num[sids[1]], "asq", "是", "否", "否", "否", "否"])  # raises that student's orange flag to red
    pv = paper_import.commit(ctx, world.counsellor, sheet(rows), "paper.csv", cid)
    assert pv.flagged == 6
    cols = (Outbox.dedupe_key, Outbox.channel, Outbox.recipient_user_id, Outbox.address, Outbox.template,
            Outbox.params, Outbox.status)
    with ctx.uow() as uow:
        s = uow.session
        flags = {f.id: f for f in s.scalars(sa.select(Flag).where(Flag.student_id.in_(sids)))}
        assert len(flags) == 5
        batched = {r[0]: r[1:] for r in s.execute(sa.select(*cols))}
        assert batched and all(r[-1] == "pending" for r in batched.values())
        templates = {r[3] for r in batched.values()}
        # the red flag's county notice, and the class (3) and school (5) cluster alerts' notices
        assert {"flag_needs_action", "flag_oversight", "cluster_alert"} <= templates
        assert {r[0] for r in batched.values()} == {"inbox", "email"}
        assert any(":level:red:" in k for k in batched)  # the level raised within the batch was notified
        alerts = {a.dedupe_key: a for a in s.scalars(sa.select(ClusterAlert))}
        assert {a.scope for a in alerts.values()} == {"class", "school"}
        # what the one-by-one path writes for the same notice keys, in a savepoint
        calls = {}
        for key, r in batched.items():
            *head, role, _user, _channel = key.split(":")
            calls[(":".join(head), Role(role))] = r[3]
        any_flag = next(iter(flags.values()))
        # every flag's owner notice and every alert's notice to each role with someone to tell is there
        assert {uuid.UUID(h.split(":")[1]) for h, _r in calls if h.endswith(":raised")} == set(flags)
        targets = ((Role.COUNSELLOR, Tier.SCHOOL), (Role.SCHOOL_LEADER, Tier.SCHOOL), (Role.COUNTY_OFFICER, Tier.COUNTY))
        assert {(h, r) for h, r in calls if h.startswith("cluster:")} == {
            (key, role) for key in alerts for role, tier in targets
            if notify.users_with_role(s, role, flags_service.unit_for_tier(s, any_flag, tier).id)}
        nested = s.begin_nested()
        s.execute(sa.delete(Outbox))
        for (head, role), template in calls.items():
            if head.startswith("flag:"):
                fid = uuid.UUID(head.split(":")[1])
                flags_service.notify_roles(ctx, s, flags[fid], [role], template, head, ctx.now())
            else:
                tier = Tier.COUNTY if role == Role.COUNTY_OFFICER else Tier.SCHOOL
                notify.notify_unit_role(ctx, s, role=role, unit=flags_service.unit_for_tier(s, any_flag, tier),
                                        template=template, link=f"/flags/clusters/{alerts[head].id}",
                                        dedupe=f"{head}:{role.value}", now=ctx.now())
        one_by_one = {r[0]: r[1:] for r in s.execute(sa.select(*cols))}
        nested.rollback()
    assert one_by_one == batched


def test_a_batch_checks_each_class_and_each_school_once_with_their_final_counts(ctx):
    """Three orange students in one class and two in another class of the same school (class
    threshold 3, school threshold 5): one class alert (3) for the first class, none for the second,
    and one school alert with the school's final count (5). A later import adds only the alert not
    raised yet."""
    from mh_platform.db.models import ClusterAlert, Enrolment

    world = build_world(ctx)
    cid, codes, _refused, _hts = screening_ready(ctx, world, classes=2, per_class=6, refused=1)
    with ctx.uow() as uow:
        by_class: dict[uuid.UUID, list[uuid.UUID]] = {}
        for sid, cls in uow.session.execute(sa.select(Enrolment.student_id, Enrolment.class_unit_id)
                                            .where(Enrolment.student_id.in_(list(codes)))
                                            .order_by(Enrolment.student_id)):
            by_class.setdefault(cls, []).append(sid)
    a, b = sorted(by_class)
    chosen = by_class[a][:3] + by_class[b][:2]
    num = numbers(ctx, chosen)
    rows = [[num[sid], "phq9"] + ["2"] * 8 + ["0"] for sid in chosen]
    assert paper_import.commit(ctx, world.counsellor, sheet(rows), "paper.csv", cid).flagged == 5
    with ctx.uow(read_only=True) as uow:
        alerts = set(uow.session.execute(sa.select(ClusterAlert.scope, ClusterAlert.unit_id, ClusterAlert.flag_count)))
    assert alerts == {("class", a, 3), ("school", world.school.id, 5)}
    _assert_alert_audit(ctx)
    # a later import in the same window: the second class reaches its threshold and gets its alert;
    # the first class and the school have theirs already (read once for all units) and get no other
    more = by_class[b][2:3] + by_class[a][3:4]
    num = numbers(ctx, more)
    rows = [[num[sid], "phq9"] + ["2"] * 8 + ["0"] for sid in more]
    assert paper_import.commit(ctx, world.counsellor, sheet(rows), "paper.csv", cid).flagged == 2
    with ctx.uow(read_only=True) as uow:
        alerts = set(uow.session.execute(sa.select(ClusterAlert.scope, ClusterAlert.unit_id, ClusterAlert.flag_count)))
    assert alerts == {("class", a, 3), ("school", world.school.id, 5), ("class", b, 3)}
    _assert_alert_audit(ctx)


def _assert_alert_audit(ctx) -> None:
    """Every cluster alert has its one ``cluster:alerted`` audit entry, with its scope, unit and count."""
    from mh_platform.db.models import ClusterAlert, EventLog

    with ctx.uow(read_only=True) as uow:
        s = uow.session
        want = sorted((str(a.id), a.scope, str(a.unit_id), a.flag_count) for a in s.scalars(sa.select(ClusterAlert)))
        got = sorted((e.object_id, e.data["scope"], e.data["unit"], e.data["count"]) for e in s.scalars(
            sa.select(EventLog).where(EventLog.kind == "cluster:alerted")))
    assert got == want


def test_a_window_shorter_than_a_day_does_not_fail_an_import_over_todays_alert(ctx, clock, monkeypatch):
    """A cluster window under a day (the policy allows "12h"): an import two hours after a class's
    alert, outside the window but on the same day, must not try to write a second alert under the
    same unique dedupe key (that would roll the whole import back); as one by one, it is skipped."""
    import dataclasses
    from datetime import timedelta

    from mh_platform.core import flag_rules
    from mh_platform.db.models import ClusterAlert
    from mh_platform.services import escalation

    policy = flag_rules.default_flag_policy()
    short = dataclasses.replace(policy, cluster=dataclasses.replace(policy.cluster, window=timedelta(hours=1)))
    monkeypatch.setattr(escalation, "default_flag_policy", lambda: short)
    world = build_world(ctx)
    cid, codes, _refused, _hts = screening_ready(ctx, world, classes=1, per_class=8, refused=1)
    sids = list(codes)
    assert len(sids) >= 6
    num = numbers(ctx, sids)
    orange = ["2"] * 8 + ["0"]
    first = [[num[sid], "phq9"] + orange for sid in sids[:3]]
    assert paper_import.commit(ctx, world.counsellor, sheet(first), "paper.csv", cid).flagged == 3
    with ctx.uow(read_only=True) as uow:
        assert uow.session.scalar(sa.select(sa.func.count()).select_from(ClusterAlert)) == 1
    clock.advance(hours=2)  # outside the window, the same date (the fixture's clock is set in the morning)
    later = [[num[sid], "phq9"] + orange for sid in sids[3:6]]  # three more in the class within the window
    assert paper_import.commit(ctx, world.counsellor, sheet(later), "paper.csv", cid).flagged == 3
    with ctx.uow(read_only=True) as uow:
        assert uow.session.scalar(sa.select(sa.func.count()).select_from(ClusterAlert)) == 1


def test_a_student_flagged_twice_has_one_flag_with_both_responses_as_evidence(ctx, ready):
    """Two flag-raising responses of one student in one import attach to the one flag the first
    opened; a later import's flag-raising response attaches to that open flag too."""
    world, cid, codes, refused, hts = ready
    sid, other = list(codes)[:2]
    num = numbers(ctx, [sid, other])
    first = [[num[sid], "phq9"] + ["2"] * 8 + ["0"], [num[sid], "gad7"] + ["2"] * 7]  # orange twice
    assert paper_import.commit(ctx, world.counsellor, sheet(first), "paper.csv", cid).flagged == 2
    later = [[num[sid], "k10"] + ["5"] * 10, [num[other], "phq9"] + ["2"] * 8 + ["0"]]
    assert paper_import.commit(ctx, world.counsellor, sheet(later), "paper.csv", cid).flagged == 2
    with ctx.uow(read_only=True) as uow:
        s = uow.session
        flags = list(s.scalars(sa.select(Flag).where(Flag.student_id == sid)))
        assert len(flags) == 1
        evidence = set(s.scalars(sa.select(Response.instrument_id).join(
            FlagEvidence, FlagEvidence.response_id == Response.id).where(FlagEvidence.flag_id == flags[0].id)))
        assert evidence == {"phq9", "gad7", "k10"}
        assert s.scalar(sa.select(sa.func.count()).select_from(Flag).where(Flag.student_id == other)) == 1


def test_an_import_takes_the_audit_lock_before_it_locks_any_flag(ctx, ready):
    """Every flag writer locks in one order — the audit writers' lock, then flag rows — so an import
    cannot deadlock with a counsellor's action or the sweep (which take the audit lock first). On
    PostgreSQL the batch locks the students' open flags (``FOR UPDATE``) after the advisory lock; on
    SQLite the transaction holds the database's write lock and no row lock is taken."""
    world, cid, codes, refused, hts = ready
    sids = list(codes)[:3]
    num = numbers(ctx, sids)
    first = [[num[sids[0]], "phq9"] + ["2"] * 8 + ["0"]]
    assert paper_import.commit(ctx, world.counsellor, sheet(first), "paper.csv", cid).flagged == 1  # an open flag
    sent: list[str] = []

    def trace(conn, cursor, statement, params, context, executemany):  # noqa: ANN001
        sent.append(" ".join(statement.split()))

    sa.event.listen(ctx.engine, "before_cursor_execute", trace)
    try:
        later = [[num[sid], "gad7"] + ["2"] * 7 for sid in sids]
        assert paper_import.commit(ctx, world.counsellor, sheet(later), "paper.csv", cid).flagged == 3
    finally:
        sa.event.remove(ctx.engine, "before_cursor_execute", trace)
    row_locks = [i for i, q in enumerate(sent) if q.startswith("SELECT") and "FOR UPDATE" in q and " flag" in q]
    audit_locks = [i for i, q in enumerate(sent) if "pg_advisory_xact_lock" in q]
    if ctx.engine.dialect.name == "postgresql":
        assert row_locks and audit_locks and audit_locks[0] < row_locks[0]
    else:
        assert row_locks == []


def test_the_batch_writes_the_flags_events_evidence_and_audit_entries_of_the_one_by_one_path(ctx, ready):
    """The batch adds new flags without a savepoint each and writes them, their events and evidence
    together at the end of each chunk; an update of a flag it added (a red flag's county notice, a
    second response raising the level) is applied to the pending row. The rows must be those the
    one-by-one path writes: the import's flags are removed again (in this test's transaction) and
    the flag path runs response by response without a batch; flags, events, evidence and audit
    entries are compared field by field (ids aside)."""
    from mh_platform.db.models import ClusterAlert, EventLog, FlagEvent, Outbox
    from mh_platform.services.context import SYSTEM

    world, cid, codes, refused, hts = ready
    sids = list(codes)[:5]
    num = numbers(ctx, sids)
    rows = [[num[sid], "phq9"] + ["2"] * 8 + ["0"] for sid in sids[1:]]  # orange
    rows.append([num[sids[0]], "phq9"] + ["3"] * 9)  # red at once: the county's oversight notice
    rows.append([num[sids[1]], "asq", "是", "否", "否", "否", "否"])  # raises that orange flag to red
    rows.append([num[sids[2]], "gad7"] + ["2"] * 7)  # a second orange response: attaches
    last_log = _last_log_id(ctx)
    assert paper_import.commit(ctx, world.counsellor, sheet(rows), "paper.csv", cid).flagged == 7

    def snapshot(s, since: int) -> dict:
        flags = {f.student_id: f for f in s.scalars(sa.select(Flag).where(Flag.student_id.in_(sids)))}
        by_id = {f.id: f.student_id for f in flags.values()}
        skip = {"id", "flag_id", "created_at"}
        out = {sid: {"flag": {c.key: getattr(f, c.key) for c in Flag.__table__.c if c.key not in skip},
                     "events": [], "evidence": [], "audit": []} for sid, f in flags.items()}
        for e in s.scalars(sa.select(FlagEvent).where(FlagEvent.flag_id.in_(by_id)).order_by(FlagEvent.at)):
            out[by_id[e.flag_id]]["events"].append(
                tuple(getattr(e, c.key) for c in FlagEvent.__table__.c if c.key not in skip | {"reason_enc"}))
        for e in s.scalars(sa.select(FlagEvidence).where(FlagEvidence.flag_id.in_(by_id))):
            out[by_id[e.flag_id]]["evidence"].append(
                tuple(getattr(e, c.key) for c in FlagEvidence.__table__.c if c.key not in skip | {"detail"})
                + (json.dumps(e.detail, sort_keys=True),))
        for a in s.scalars(sa.select(EventLog).where(EventLog.id > since, EventLog.object_type == "flag",
                                                     EventLog.object_id.in_([str(i) for i in by_id]))
                           .order_by(EventLog.id)):
            data = {k: v for k, v in (a.data or {}).items() if k != "event"}  # the flag_event row's id
            out[by_id[uuid.UUID(a.object_id)]]["audit"].append((a.kind, json.dumps(data, sort_keys=True)))
        for v in out.values():
            v["evidence"].sort(key=repr)
        return out

    with ctx.uow() as uow:
        s = uow.session
        batched = snapshot(s, last_log)
        assert len(batched) == 5
        assert batched[sids[0]]["flag"]["county_informed_at"] is not None  # updated while pending
        assert batched[sids[1]]["flag"]["level"] == "red" and batched[sids[1]]["flag"]["version"] > 2
        assert len(batched[sids[2]]["evidence"]) == 2
        imported = list(s.scalars(sa.select(Response).where(Response.campaign_id == cid,
                                                            Response.student_id.in_(sids))
                                  .order_by(Response.id)))
        fids = list(s.scalars(sa.select(Flag.id).where(Flag.student_id.in_(sids))))
        s.execute(sa.delete(FlagEvidence).where(FlagEvidence.flag_id.in_(fids)))
        s.execute(sa.delete(FlagEvent).where(FlagEvent.flag_id.in_(fids)))
        s.execute(sa.delete(ClusterAlert))
        s.execute(sa.delete(Outbox))
        s.execute(sa.delete(Flag).where(Flag.id.in_(fids)))
        mark = _last_log_id(ctx, s)
        for r in imported:  # the import's write order: student, then the file's instrument order
            res = score(load_instrument(r.instrument_id), responses._open_answers(ctx, s, r.answers_enc, r.id))
            flags_service.raise_from_response_in(s, ctx, SYSTEM, r, res, now=ctx.now())
        s.flush()
        one_by_one = snapshot(s, mark)
    for sid in sids:
        assert batched[sid]["flag"] == one_by_one[sid]["flag"], sid
        assert batched[sid]["events"] == one_by_one[sid]["events"], sid
        assert batched[sid]["evidence"] == one_by_one[sid]["evidence"], sid
        assert batched[sid]["audit"] == one_by_one[sid]["audit"], sid


def _last_log_id(ctx, s=None) -> int:
    from mh_platform.db.models import EventLog

    if s is not None:
        return s.scalar(sa.select(sa.func.coalesce(sa.func.max(EventLog.id), 0)))
    with ctx.uow(read_only=True) as uow:
        return uow.session.scalar(sa.select(sa.func.coalesce(sa.func.max(EventLog.id), 0)))


def test_a_paper_response_is_compared_with_the_students_previous_screening(ctx, ready):
    """Deterioration through the import: a student with an earlier campaign's PHQ-9 total of 3 now
    scores 9 on paper (mild: no concern band of its own; +6 reaches the reliable change) and gets a
    yellow flag with deterioration evidence; a student with the same answers and no earlier
    screening gets none. The batch skips the look-up only where the analysis found no earlier one."""
    from datetime import timedelta

    from mh_platform.db.models import AcademicYear, Campaign

    world, cid, codes, refused, hts = ready
    sid, fresh = list(codes)[:2]
    num = numbers(ctx, [sid, fresh])
    inst = load_instrument("phq9")
    before = score(inst, {**{str(i): 0 for i in range(1, 10)}, "1": 1, "2": 1, "3": 1})
    at = ctx.now() - timedelta(days=120)
    with ctx.uow() as uow:
        s = uow.session
        camp = Campaign(name="秋季", academic_year_id=s.scalar(sa.select(AcademicYear.id)), owner_unit_id=world.school.id,
                        grades=[7], battery={"junior": ["phq9"]}, opens_at=at, closes_at=at + timedelta(days=3),
                        status="closed", created_at=at)
        s.add(camp)
        s.flush()
        s.add(Response(campaign_id=camp.id, student_id=sid, school_unit_id=world.school.id, instrument_id="phq9",
                       instrument_version=before.instrument_version, status="submitted", n_answered=9, started_at=at,
                       updated_at=at, submitted_at=at, total=float(before.total), score_status=before.status,
                       band_id=before.band.id, scored_at=at))
        uow.commit()
    mild = ["2", "2", "2", "1", "1", "1", "0", "0", "0"]
    pv = paper_import.commit(ctx, world.counsellor, sheet([[num[sid], "phq9"] + mild, [num[fresh], "phq9"] + mild]),
                             "paper.csv", cid)
    assert pv.flagged == 1  # only the row with an earlier screening can raise a flag
    with ctx.uow(read_only=True) as uow:
        s = uow.session
        flag = s.scalar(sa.select(Flag).where(Flag.student_id == sid))
        assert flag is not None and flag.level == "yellow"
        assert [e.source for e in s.scalars(sa.select(FlagEvidence).where(FlagEvidence.flag_id == flag.id))] == \
            ["deterioration"]
        assert s.scalar(sa.select(Flag).where(Flag.student_id == fresh)) is None


def test_an_import_and_an_online_answer_for_the_same_student_wait_for_each_other(fresh_ctx, monkeypatch):
    """The batch opens flags without a savepoint because it holds the audit lock that every flag
    writer takes first. Here an import is held just after taking it (``FlagBatch.prefetch``), and the
    same student answers PHQ-9 item 9 online meanwhile (real commits, two threads): the online flag
    path waits for the import, then finds the flag the import opened and attaches to it. No error on
    either side, one flag, both responses as its evidence, raised to red."""
    import threading
    import time

    from mh_platform.services.flags import FlagBatch

    ctx = fresh_ctx
    world = build_world(ctx)
    cid, codes, _refused, _hts = screening_ready(ctx, world, per_class=4, refused=1)
    sid = next(iter(codes))
    num = numbers(ctx, [sid])
    sess = responses.begin(ctx, codes[sid])
    inside, go = threading.Event(), threading.Event()
    original = FlagBatch.prefetch

    def held(self, s, student_ids):  # noqa: ANN001
        original(self, s, student_ids)
        if not inside.is_set():
            inside.set()
            go.wait(30)

    monkeypatch.setattr(FlagBatch, "prefetch", held)
    errors: list[str] = []

    def run(fn) -> threading.Thread:  # noqa: ANN001
        def body() -> None:
            try:
                fn()
            except Exception as exc:  # noqa: BLE001 - every failure is reported
                errors.append(repr(exc))
        t = threading.Thread(target=body)
        t.start()
        return t

    importer = run(lambda: paper_import.commit(ctx, world.counsellor, sheet([[num[sid], "gad7"] + ["2"] * 7]),
                                               "paper.csv", cid))
    assert inside.wait(30)
    online = run(lambda: responses.submit(ctx, sess.sitting, "phq9",
                                          {**{str(i): 0 for i in range(1, 9)}, "9": 1}))
    time.sleep(0.5)
    assert online.is_alive()  # waiting for the import's lock (PostgreSQL: advisory; SQLite: the write lock)
    go.set()
    importer.join(60)
    online.join(60)
    assert errors == []
    with ctx.uow(read_only=True) as uow:
        s = uow.session
        flags = list(s.scalars(sa.select(Flag).where(Flag.student_id == sid)))
        assert len(flags) == 1 and flags[0].level == "red"
        evidence = set(s.scalars(sa.select(Response.instrument_id).join(
            FlagEvidence, FlagEvidence.response_id == Response.id).where(FlagEvidence.flag_id == flags[0].id)))
        assert evidence == {"gad7", "phq9"}


def test_evidence_through_the_import_moves_and_retriages_open_flags_as_one_by_one(ctx, ready):
    """Two clinical-safety rules for evidence on an open flag hold on the import's batch path, with the
    outcome of the one-by-one path (docs/flags.md §3):

    - a class monitor's concern opened a class-tier flag the head teacher acknowledged; a paper PHQ-9
      with item 9 = 3 moves it to the school (the counsellor), back to 'raised', red clocks, notices;
    - a red flag confirmed by interview and in monitoring gets a paper PHQ-9 with item 9 = 3: it goes
      back to triage with fresh clocks and the counsellor is told.

    Each situation is built for two students; one gets the evidence through ``paper_import.commit``
    (one ``FlagBatch``), the other at the same moment through the one-by-one flag path. Their flags,
    their last events and the notices those events queued must match field by field."""
    from datetime import timedelta

    from screening_world import actor

    from mh_platform.core.types import Role
    from mh_platform.db.models import AcademicYear, Campaign, FlagEvent, Outbox
    from mh_platform.services import auth, concerns
    from mh_platform.services.context import SYSTEM

    world, cid, codes, refused, hts = ready
    head = hts[0]
    sids = list(codes)
    monitor = actor(ctx, auth.create_user(ctx, SYSTEM, username="t.monitor", password="correct horse 1",
                                          role=Role.CLASS_MONITOR, unit_id=head.unit_id, student_id=refused[0]))
    class_tier, class_twin, monitored, monitored_twin = sids[:4]
    fids = {}
    for sid in (class_tier, class_twin):
        fids[sid] = concerns.submit_concern(ctx, monitor, student_id=sid, category="mood", urgency="routine",
                                            note="")["flag_id"]
        flags_service.acknowledge(ctx, head, fids[sid])
    for sid in (monitored, monitored_twin):
        fids[sid] = concerns.submit_concern(ctx, head, student_id=sid, category="self_harm", urgency="immediate",
                                            note="")["flag_id"]
        flags_service.acknowledge(ctx, world.counsellor, fids[sid])
        flags_service.assess(ctx, world.counsellor, fids[sid], "confirm")
        flags_service.start_monitoring(ctx, world.counsellor, fids[sid])
    ctx.clock.advance(days=3)
    with ctx.uow() as uow:
        seen = set(uow.session.scalars(sa.select(Outbox.id)))
    item9 = ["0"] * 8 + ["3"]
    num = numbers(ctx, [class_tier, monitored])
    pv = paper_import.commit(ctx, world.counsellor, sheet([[num[class_tier], "phq9"] + item9,
                                                           [num[monitored], "phq9"] + item9]), "paper.csv", cid)
    assert pv.flagged == 2
    answers = {**{str(i): 0 for i in range(1, 10)}, "9": 3}
    result = score(load_instrument("phq9"), answers)
    with ctx.uow() as uow:  # the one-by-one path, at the same moment, for the twins
        s = uow.session
        at = ctx.now()
        camp = Campaign(name="补测", academic_year_id=s.scalar(sa.select(AcademicYear.id)),
                        owner_unit_id=world.school.id, grades=[7], battery={"junior": ["phq9"]}, opens_at=at,
                        closes_at=at + timedelta(days=3), status="open", created_at=at)
        s.add(camp)
        s.flush()
        for sid in (class_twin, monitored_twin):
            r = Response(campaign_id=camp.id, student_id=sid, school_unit_id=world.school.id, instrument_id="phq9",
                         instrument_version=result.instrument_version, status="submitted", n_answered=9,
                         started_at=at, updated_at=at, submitted_at=at, total=float(result.total),
                         score_status=result.status, band_id=result.band.id, scored_at=at)
            s.add(r)
            s.flush()
            flags_service.raise_from_response_in(s, ctx, SYSTEM, r, result, now=at)
        uow.commit()

    def outcome(s, sid) -> dict:
        f = s.get(Flag, uuid.UUID(str(fids[sid])))
        keep = ("level", "tier", "status", "tier_entered_at", "ack_due_at", "handle_due_at", "is_watch",
                "escalations", "county_informed_at", "version", "acknowledged_at")
        last = s.scalars(sa.select(FlagEvent).where(FlagEvent.flag_id == f.id)
                         .order_by(FlagEvent.at.desc(), FlagEvent.id)).first()
        notices = sorted((o.dedupe_key.replace(str(f.id), "F"), o.template, o.recipient_user_id, o.channel)
                         for o in s.scalars(sa.select(Outbox).where(Outbox.id.not_in(seen),
                                                                    Outbox.dedupe_key.like(f"flag:{f.id}:%"))))
        return {"flag": {k: getattr(f, k) for k in keep},
                "event": (last.kind, last.from_status, last.to_status, last.from_tier, last.to_tier, last.from_level,
                          last.to_level, last.reason_code, last.at),
                "notices": notices}

    with ctx.uow(read_only=True) as uow:
        s = uow.session
        got = {sid: outcome(s, sid) for sid in fids}
    now = ctx.now()
    moved = got[class_tier]
    assert (moved["flag"]["level"], moved["flag"]["tier"], moved["flag"]["status"]) == ("red", "school", "raised")
    assert (moved["flag"]["ack_due_at"], moved["flag"]["handle_due_at"]) == (now + timedelta(hours=1),
                                                                             now + timedelta(hours=24))
    assert moved["event"][0] == "flag:escalated" and moved["event"][7] == "evidence_start_tier"
    told = {(t, u) for _k, t, u, _c in moved["notices"]}
    assert ("flag_needs_action", world.counsellor.user_id) in told
    assert ("flag_oversight", world.county_officer.user_id) in told
    again = got[monitored]
    assert (again["flag"]["status"], again["flag"]["ack_due_at"]) == ("raised", now + timedelta(hours=1))
    assert again["event"][0] == "flag:retriaged" and again["event"][7] == "evidence_retriage"
    assert ("flag_needs_action", world.counsellor.user_id) in {(t, u) for _k, t, u, _c in again["notices"]}
    assert got[class_tier] == got[class_twin]
    assert got[monitored] == got[monitored_twin]
