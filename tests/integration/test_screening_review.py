"""Review of the screening area: regressions for defects found in review (each failed before its fix)."""

from __future__ import annotations

import json
import re

import pytest
import sqlalchemy as sa
from screening_world import build_world, quick_argon2, screening_ready, to_csv  # noqa: F401 - fixtures

from mh_platform.core.instruments import load_instrument
from mh_platform.core.scoring import score
from mh_platform.core.types import UnitKind
from mh_platform.db.models import AcademicYear, OrgUnit, Response, Student
from mh_platform.services import paper_import, responses, students
from mh_platform.services.org import add_unit
from mh_platform.web.app import create_app


@pytest.fixture
def ready(ctx):
    world = build_world(ctx)
    return world, *screening_ready(ctx, world, per_class=4, refused=1)


@pytest.fixture
def client(ctx):
    from mh_platform.web.extensions import limiter

    app = create_app(ctx=ctx, extra_config={"TESTING": True, "MHP_PROPAGATE_ERRORS": True})
    limiter.reset()
    return app.test_client()


def csrf(html: str) -> str:
    return re.search(r'name="csrf-token" content="([^"]+)"', html).group(1)


def numbers(ctx, ids):
    with ctx.uow() as uow:
        s = uow.session
        return {sid: ctx.keyring.open_field(s, s.get(Student, sid).student_number_enc, table="student",
                                            column="student_number_enc", row_id=sid) for sid in ids}


def test_a_paper_response_stores_the_concern_level_the_online_submit_stores(ctx, ready):
    """K10 25-29 is the "moderate" band: its definition gives it a concern (yellow) while the flag
    policy does not flag it. The online submit stores the result's concern for every response; the
    paper import stored it only for the rows that went through the flag path."""
    world, cid, codes, refused, hts = ready
    sids = list(codes)
    num = numbers(ctx, sids[:1])
    cells = ["3"] * 5 + ["2"] * 5  # total 25: the moderate band
    header = ["学籍号", "量表"] + [str(n) for n in range(1, 11)]
    paper_import.commit(ctx, world.counsellor, to_csv([[num[sids[0]], "k10", *cells]], header=header), "p.csv", cid)
    ref = score(load_instrument("k10"), {str(n): int(v) for n, v in enumerate(cells, 1)})
    assert ref.band.id == "moderate" and ref.concern is not None
    with ctx.uow() as uow:
        r = uow.session.scalar(sa.select(Response).where(Response.campaign_id == cid))
        assert (r.band_id, r.concern_level) == ("moderate", ref.concern.value)


def test_a_double_clicked_page_post_goes_on_instead_of_saying_answers_were_not_recognised(ctx, ready, client):
    world, cid, codes, refused, hts = ready
    code = next(iter(codes.values()))
    page = client.get("/s/")
    r = client.post("/s/", data={"code": code, "csrf_token": csrf(page.text)})
    assert r.headers["Location"].endswith("/s/p/phq9")
    page = client.get("/s/p/phq9")
    form = {"csrf_token": csrf(page.text)} | {f"i{n}": "0" for n in range(1, 10)}
    first = client.post("/s/p/phq9", data=form)
    assert first.status_code == 303 and first.headers["Location"].endswith("/s/p/gad7")
    # the same post again (a double click; the browser shows this response): it was 422 "some answers
    # were not recognised" with the submitted page again, and every further post of it the same
    second = client.post("/s/p/phq9", data=form | {"i1": "3"})
    assert second.status_code == 303, second.status_code
    assert client.get(second.headers["Location"]).headers["Location"].endswith("/s/p/gad7")
    with ctx.uow() as uow:  # the first post counted; the second changed nothing
        s = uow.session
        r = s.scalar(sa.select(Response).where(Response.instrument_id == "phq9"))
        answers = json.loads(ctx.keyring.open_field(s, r.answers_enc, table="response", column="answers_enc",
                                                    row_id=r.id))
        assert (r.status, r.total, answers["1"]) == ("submitted", 0.0, 0)




def _class_in(ctx, school_id, code: str, name: str, grade_level: int = 7):
    with ctx.uow() as uow:
        s = uow.session
        now = ctx.now()
        school = s.get(OrgUnit, school_id)
        grade = s.scalar(sa.select(OrgUnit).where(OrgUnit.parent_id == school.id, OrgUnit.grade_level == grade_level))
        if grade is None:
            grade = add_unit(s, kind=UnitKind.GRADE, name=f"{grade_level}年级", code=f"{code}-g", parent=school, now=now,
                             grade_level=grade_level)
            s.flush()
        cls = add_unit(s, kind=UnitKind.CLASS, name=name, code=code, parent=grade, now=now, grade_level=grade_level)
        uow.commit()
        return cls.id


def _move(ctx, sid, class_id):
    with ctx.uow() as uow:
        s = uow.session
        year = s.scalar(sa.select(AcademicYear).where(AcademicYear.is_current.is_(True)))
        students.enrol(s, s.get(Student, sid), s.get(OrgUnit, class_id), year, ctx.now(), ctx)
        uow.commit()


def test_a_student_who_moved_to_a_school_outside_the_campaign_cannot_use_the_old_code(ctx, ready):
    """The code kept working after the student moved to a school the campaign does not screen: the
    answers were stored (and flags raised) for a school whose staff never ran the campaign, and no
    completion figure, to-finish list or reminder of either school counted the student."""
    world, cid, codes, refused, hts = ready
    (sid, code), (sid2, code2) = list(codes.items())[:2]
    sitting = responses.begin(ctx, code).sitting  # a live sitting at the moment of the move
    responses.save_answer(ctx, sitting, "phq9", 1, 1)
    away = _class_in(ctx, world.other_school.id, "dw-g7-c1", "七年级1班")
    _move(ctx, sid, away)
    with pytest.raises(responses.CodeRejected):
        responses.save_answer(ctx, sitting, "phq9", 2, 1)
    with pytest.raises(responses.CodeRejected):
        responses.begin(ctx, code)
    # a move to another class the campaign screens keeps the code; the battery resumes
    near = _class_in(ctx, world.school.id, "xlt-g7-c9", "七年级9班")
    _move(ctx, sid2, near)
    assert responses.begin(ctx, code2).current == "phq9"


def test_an_erased_students_code_opens_nothing(ctx, ready):
    """After an erasure (the student's keys destroyed) the code still opened the screening, and the
    first answer failed with KeyShredded (a 500 for the student; the page's script then retried and
    said the connection was bad). The code is now refused like an unknown one, sitting or not."""
    from mh_platform.services import key_ops

    world, cid, codes, refused, hts = ready
    (sid, code), (sid2, code2) = list(codes.items())[:2]
    sitting = responses.begin(ctx, code2).sitting  # a sitting open at the moment of the erasure
    with ctx.uow() as uow:
        key_ops._destroy_in(uow.session, sid, ctx.now())
        key_ops._destroy_in(uow.session, sid2, ctx.now())
        uow.commit()
    with pytest.raises(responses.CodeRejected) as e:
        responses.begin(ctx, code)
    assert e.value.reason == "invalid"
    for call in (lambda: responses.load(ctx, sitting), lambda: responses.page(ctx, sitting, "phq9"),
                 lambda: responses.save_answer(ctx, sitting, "phq9", 1, 1),
                 lambda: responses.submit(ctx, sitting, "phq9", {"1": 0})):
        with pytest.raises(responses.CodeRejected):
            call()


def test_an_erased_student_is_counted_by_no_completion_figure_and_no_reminder(ctx, ready):
    """The to-finish list and the slips leave erased students out; the completion figures and the
    head teacher's daily reminder counted them, for ever 'consented, not finished' (a reminder about
    a student the to-finish list does not show, and a completion rate that could not reach 100 %)."""
    from mh_platform.db.models import Outbox
    from mh_platform.services import campaigns, completion, key_ops

    world, cid, codes, refused, hts = ready
    sid = next(iter(codes))
    before = completion.completion(ctx, world.counsellor, cid).unit
    with ctx.uow() as uow:
        key_ops._destroy_in(uow.session, sid, ctx.now())
        uow.commit()
    after = completion.completion(ctx, world.counsellor, cid).unit
    assert (after.eligible, after.consented) == (before.eligible - 1, before.consented - 1)
    cls = hts[0].unit_id
    left = completion.to_finish(ctx, hts[0], cid, cls)
    assert sid not in {t.student_id for t in left}
    campaigns.send_reminders(ctx)
    with ctx.uow() as uow:
        sent = uow.session.scalar(sa.select(Outbox).where(Outbox.template == campaigns.REMINDER_TEMPLATE))
        assert sent.params["remaining"] == len(left) == len(codes) - 1


def test_an_answer_that_is_not_an_option_is_refused_not_rounded(ctx, ready, client):
    """A JSON autosave of 0.9 for PHQ-9 item 9 was stored as 0 (int() truncates), 1.5 as 1 and true
    as 1: answers not as given, and a critical item's answer changed on the way in. They are refused
    like any other value that is not an option."""
    world, cid, codes, refused, hts = ready
    code = next(iter(codes.values()))
    page = client.get("/s/")
    client.post("/s/", data={"code": code, "csrf_token": csrf(page.text)})
    token = csrf(client.get("/s/p/phq9").text)
    for value in (0.9, 1.5, True, [1]):
        r = client.post("/s/answer", json={"instrument": "phq9", "item": 9, "value": value},
                        headers={"X-CSRFToken": token})
        assert r.status_code == 422 and r.json == {"saved": False, "error": "invalid"}, value
    r = client.post("/s/answer", json={"instrument": "phq9", "item": 9, "value": "1"}, headers={"X-CSRFToken": token})
    assert r.json == {"saved": True, "n": 1, "critical": True}
    r = client.post("/s/answer", json={"instrument": "phq9", "item": 1, "value": 2}, headers={"X-CSRFToken": token})
    assert r.json["saved"] is True


def test_a_double_clicked_last_page_ends_on_the_thank_you_page_not_code_entry(ctx, ready, client):
    """The first post of the last page finishes the battery (the sitting becomes the finished one);
    the second post of it was 'signed out': back to code entry with the cookie dropped, as if the
    answers were lost (the code then says 'already finished'). It goes to the thank-you page now."""
    world, cid, codes, refused, hts = ready
    code = next(iter(codes.values()))
    page = client.get("/s/")
    client.post("/s/", data={"code": code, "csrf_token": csrf(page.text)})
    last = None
    for iid in ("phq9", "gad7", "asq", "k10", "who5"):
        inst = load_instrument(iid)
        page = client.get(f"/s/p/{iid}")
        crit = {c.item: c for c in inst.critical_items}
        form = {"csrf_token": csrf(page.text)} | {
            f"i{it.number}": str(next(o.value for o in it.options
                                      if it.number not in crit or o.value not in crit[it.number].levels))
            for it in inst.items}
        last = client.post(f"/s/p/{iid}", data=form)
    assert last.headers["Location"].endswith("/s/done")
    again = client.post("/s/p/who5", data=form)  # the last page's post again (a double click)
    assert again.status_code == 303 and again.headers["Location"].endswith("/s/done"), again.headers.get("Location")
    done = client.get("/s/done")
    assert "已完成" in done.text
