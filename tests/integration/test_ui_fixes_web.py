"""Defects found by the browser walkthrough, through Flask on the real database: the cluster-alert page
its notices link to, paging of the county/city flag queues, role navigation, links that answered 403,
readable flag details, unique element ids, natural class order, staff wording on /concerns, the page
shell, and dates the case and referral services refuse."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa
from flags_world import PASSWORD, build_world, quick_hashes, world  # noqa: F401 - fixtures

from mh_platform.web.app import create_app

CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
def app(ctx):
    return create_app(ctx=ctx, extra_config={"TESTING": True, "MHP_PROPAGATE_ERRORS": True})


def login(client, username):
    html = client.get("/login").get_data(as_text=True)
    token = CSRF_RE.search(html).group(1)
    r = client.post("/login", data={"username": username, "password": PASSWORD, "csrf_token": token})
    assert r.status_code in (302, 303), r.get_data(as_text=True)[:500]


def as_user(app, username):
    """A fresh test client signed in as ``username``."""
    client = app.test_client()
    login(client, username)
    return client


# ----------------------------------------------------------------------------- 1. cluster alerts


def _cluster(ctx, world):
    """Three flags in one class (two orange, one red), a minute apart, then a fourth after the alert."""
    from mh_platform.db.models import ClusterAlert
    from mh_platform.services import concerns

    head = world.actors["head"]
    fids = []
    for i, urgency in enumerate(("soon", "immediate", "soon", "soon")):
        fids.append(concerns.submit_concern(ctx, head, student_id=world.students[i], category="mood",
                                            urgency=urgency, note="")["flag_id"])
        ctx.clock.advance(minutes=1)
    with ctx.uow() as uow:
        alerts = [(a.id, a.scope, a.flag_count) for a in uow.session.scalars(sa.select(ClusterAlert))]
    assert [a[1:] for a in alerts] == [("class", 3)]
    return alerts[0][0], fids


def test_cluster_notice_links_resolve_for_recipients_and_404_for_others(app, world, ctx):
    from mh_platform.db.models import InboxMessage, Outbox

    alert_id, fids = _cluster(ctx, world)
    link = f"/flags/clusters/{alert_id}"
    with ctx.uow() as uow:
        s = uow.session
        outbox = [(o.channel, o.params["link"]) for o in
                  s.scalars(sa.select(Outbox).where(Outbox.template == "cluster_alert"))]
        inbox = [(m.user_id, m.link) for m in
                 s.scalars(sa.select(InboxMessage).where(InboxMessage.template == "cluster_alert"))]
    assert outbox and inbox
    assert {lk for _c, lk in outbox} == {link} and {lk for _u, lk in inbox} == {link}
    assert {c for c, _lk in outbox} >= {"inbox", "email"}
    recipients = {u for u, _lk in inbox}
    names = {"counsellor", "leader", "county"}
    assert {world.actors[k].user_id for k in names} <= recipients
    for key in ("counsellor", "leader", "county", "city"):
        client = as_user(app, f"t.{key}")
        if key != "city":  # the inbox shows the notice and its link
            assert link in client.get("/inbox").get_data(as_text=True)
        r = client.get(link)
        assert r.status_code == 200, key
        page = r.get_data(as_text=True)
        assert "七年级1班" in page and "第一中学" in page
        assert "学生k1" not in page or key == "counsellor"  # names only where /flags already names them
        listed = set(re.findall(r'data-flag="([^"]+)"', page))
        # the count is of the flags listed (docs/flags.md §6): never of flags the viewer may not see
        assert f'id="cluster-count">{len(listed)}<' in page
        if key == "counsellor":  # the three counted flags, not the one opened after the alert
            assert listed == set(fids[:3])
        elif key in ("leader", "county"):  # red only (their /flags scope)
            assert listed == {fids[1]}
        else:  # the city sees a red flag only after 48 h
            assert listed == set()
        for fid in listed:
            assert client.get(f"/flags/{fid}").status_code == 200
        assert "总分" not in page and "mood" not in page
    for key in ("head", "head2", "counsellor2", "county2", "monitor", "admin"):
        client = as_user(app, f"t.{key}")
        assert client.get(link).status_code == 404, key
    client = as_user(app, "t.county")
    assert client.get("/flags/clusters/not-a-uuid").status_code == 404
    assert client.get("/flags/clusters/00000000-0000-4000-8000-000000000000").status_code == 404
    assert f'href="{link}"' in client.get("/flags").get_data(as_text=True)


def test_get_cluster_service_scope(ctx, world):
    from mh_platform.core.errors import NotFound
    from mh_platform.services import escalation

    alert_id, fids = _cluster(ctx, world)
    a = world.actors
    got = escalation.get_cluster(ctx, a["counsellor"], alert_id)
    assert (got["scope"], got["unit"], got["school"], got["count"]) == ("class", "七年级1班", "第一中学", 3)
    assert [f["id"] for f in got["flags"]] == fids[:3]
    assert "name" not in got["flags"][0]
    for key in ("head", "counsellor2", "county2", "monitor", "admin"):
        with pytest.raises(NotFound):
            escalation.get_cluster(ctx, a[key], alert_id)


# ----------------------------------------------------------------------------- 2. paging past 200


def _insert_red_flags(ctx, world, *, escalated: int, overdue: int):
    """Open red flags for every student of the first county (240 with n=80): the first ``escalated`` at the
    county tier (the first ``overdue`` of them past their acknowledge deadline), the rest at the school."""
    import uuid
    from datetime import timedelta

    from mh_platform.db.models import Enrolment, Flag

    now = ctx.now()
    county_students = world.students + world.students2 + world.students_other
    with ctx.uow() as uow:
        s = uow.session
        enrol = {e.student_id: e for e in s.execute(sa.select(
            Enrolment.student_id, Enrolment.class_unit_id, Enrolment.school_unit_id, Enrolment.unit_path)).all()}
        rows = []
        for i, sid in enumerate(county_students):
            e = enrol[sid]
            ack = now - timedelta(minutes=5) if i < overdue else now + timedelta(hours=1)
            rows.append({"id": uuid.uuid4(), "student_id": sid, "school_unit_id": e.school_unit_id,
                         "class_unit_id": e.class_unit_id, "unit_path": e.unit_path, "level": "red",
                         "tier": "county" if i < escalated else "school", "status": "raised", "is_watch": False,
                         "opened_at": now - timedelta(hours=2), "tier_entered_at": now - timedelta(hours=1),
                         "ack_due_at": ack, "handle_due_at": ack + timedelta(hours=20), "escalations": 0,
                         "county_informed_at": now, "version": 1})
        s.execute(sa.insert(Flag), rows)
        uow.commit()
    return len(county_students)


def test_county_queue_pages_past_200_and_counts_everything(app, ctx):
    from mh_platform.services import queues

    world = build_world(ctx, n=80)
    total = _insert_red_flags(ctx, world, escalated=210, overdue=15)
    assert total == 240
    q = queues.queue_for(ctx, world.actors["county"])
    assert q["waiting"] == 210 and q["overdue"] == 15
    assert q["paging"]["escalated"]["total"] == 210 and q["paging"]["oversight"]["total"] == 30
    by_school = {r["school"]: (r["open"], r["overdue"]) for r in q["by_school"]}
    assert by_school == {"第一中学": (160, 15), "第二中学": (80, 0)}
    client = as_user(app, "t.county")
    home = client.get("/").get_data(as_text=True)
    assert '<a href="/flags">210</a>' in home
    seen: list[str] = []
    page, url = 0, "/flags"
    while url:
        page += 1
        html = client.get(url).get_data(as_text=True)
        esc = html.split('id="queue-escalated"', 1)[1].split("</table>", 1)[0]
        ids = re.findall(r'data-flag="([^"]+)"', esc)
        assert ids and len(ids) <= queues.PER_PAGE
        if page == 1:  # the overdue ones first, and the by-school table counts every flag
            assert 'id="pager-escalated"' in html and 'data-total="210"' in html
            assert ">160<" in html.split('id="by-school"', 1)[1]
            first_overdue = ids[:15]
        seen += ids
        nxt = re.search(r'<nav class="pager" id="pager-escalated".*?</nav>', html, re.S).group(0)
        m = re.search(r'href="([^"]+)" class="pager-next"', nxt)
        url = m.group(1).replace("&amp;", "&") if m else None
    assert page == 5 and len(seen) == 210 and len(set(seen)) == 210
    with ctx.uow() as uow:
        from mh_platform.db.models import Flag

        overdue_ids = {str(i) for i in uow.session.scalars(
            sa.select(Flag.id).where(Flag.ack_due_at < ctx.now()))}
    assert set(first_overdue) == overdue_ids
    # the other list keeps its own page; a page past the end shows the last one
    html = client.get("/flags?escalated_page=3&oversight_page=9").get_data(as_text=True)
    assert re.search(r'id="pager-escalated"[^>]*data-page="3"', html)
    assert re.search(r'id="pager-oversight"[^>]*data-page="1"', html)
    nav = html.split('id="pager-escalated"', 1)[1].split("</nav>", 1)[0]
    assert "escalated_page=2" in nav and "escalated_page=4" in nav and "oversight_page=9" in nav
    assert client.get("/flags?escalated_page=x").status_code == 200


# ----------------------------------------------------------------------------- 3./4. navigation and links per role

ALL_USERS = ("monitor", "head", "counsellor", "leader", "county", "city", "admin", "clinician")
NAV_EXPECTED = {
    "monitor": {"concerns"},
    "head": {"inbox", "flags", "concerns", "screening"},
    "counsellor": {"inbox", "flags", "concerns", "screening", "cases", "referrals"},
    "leader": {"inbox", "flags", "screening", "cases", "referrals"},
    "county": {"inbox", "flags", "screening", "cases", "referrals", "break-glass-review"},
    "city": {"inbox", "flags", "screening", "cases", "referrals", "break-glass-review", "institutions"},
    "admin": {"inbox"},
    "clinician": {"inbox", "referrals"},
}


@pytest.fixture
def world_all(ctx, world):
    """The flags world plus a clinician of a partner institution."""
    from mh_platform.services import institutions

    inst = institutions.create_institution(ctx, world.actors["city"], name="盘锦市精神卫生中心", code="ui-pjmh")
    institutions.add_clinician(ctx, world.actors["city"], inst, username="t.clinician", password=PASSWORD,
                               email="t.clinician@example.test")
    return world


def _links(html: str, *, within: str | None = None) -> list[str]:
    if within is not None:
        html = html.split(within, 1)[1]
    return [h.replace("&amp;", "&") for h in re.findall(r'<a [^>]*href="(/[^"]*)"', html)]


def _nav(html: str) -> dict[str, str]:
    nav = html.split('class="topnav"', 1)[1].split("</nav>", 1)[0]
    return {k: h for h, k in re.findall(r'<a href="([^"]+)" id="nav-([a-z-]+)"', nav)}


def test_each_roles_nav_links_all_answer_200(app, world_all):
    for user in ALL_USERS:
        client = as_user(app, f"t.{user}")
        nav = _nav(client.get("/").get_data(as_text=True))
        assert set(nav) - {"home"} == NAV_EXPECTED[user], user
        for key, href in nav.items():
            r = client.get(href)
            assert r.status_code == 200, (user, key, href, r.status_code)
        # the pages a role may not open are not in its bar (they answer 403/404, or send the monitor on);
        # the inbox is in every staff role's bar (a monitor's own inbox still opens, empty)
        hidden = {"flags": "/flags", "concerns": "/concerns", "screening": "/screening/",
                  "cases": "/cases", "referrals": "/referrals", "institutions": "/institutions",
                  "break-glass-review": "/break-glass/review"}
        for key, href in hidden.items():
            if key not in nav:
                assert client.get(href).status_code in (302, 403, 404), (user, key)


# ----------------------------------------------------------------------------- 5. flag detail labels


def test_flag_detail_shows_labels_not_codes_and_reveal_link_only_to_readers(app, world, ctx):
    import uuid

    from mh_platform.db.models import FlagEvidence
    from mh_platform.services import concerns

    fid = concerns.submit_concern(ctx, world.actors["head"], student_id=world.students[0], category="self_harm",
                                  urgency="immediate", note="说过不想活了")["flag_id"]
    with ctx.uow() as uow:  # screening evidence on the same flag, as a scored PHQ-9 leaves it
        for source, code, detail in (
                ("band", "band:phq9:moderate", {"instrument": "phq9", "band": "moderate", "total": 12}),
                ("critical", "critical:phq9:9", {"instrument": "phq9", "item": 9}),
                ("deterioration", "deterioration:phq9", {"instrument": "phq9", "from_band": "mild",
                                                         "to_band": "moderate", "change": 6, "rc": 6})):
            uow.session.add(FlagEvidence(id=uuid.uuid4(), flag_id=uuid.UUID(fid), source=source, level="red",
                                         reason_code=code, detail=detail, created_at=ctx.now()))
        uow.commit()
    client = as_user(app, "t.counsellor")
    html = client.get(f"/flags/{fid}?reasons=1").get_data(as_text=True)
    evidence = html.split('id="evidence"', 1)[1].split("</section>", 1)[0]
    shown = [re.sub(r"<[^>]+>", "", x) for x in re.findall(r'class="evidence-label"[^>]*>(.*?)</span>', evidence)]
    assert "测评得分区间 · PHQ-9 · 中度" in shown
    assert "关键条目 · PHQ-9 · 第9题" in shown
    assert "较上次测评明显加重 · PHQ-9 · 轻度 → 中度" in shown
    assert "关注报告 · 自伤迹象或言语 · 紧急（现在就需要关注）" in shown
    assert "band · band:" not in evidence and ">band:phq9" not in evidence
    section = html.split('id="concerns"', 1)[1].split("</section>", 1)[0]
    assert "自伤迹象或言语 · 紧急（现在就需要关注）" in section and "self_harm" not in section
    assert "说过不想活了" in section
    # the reveal link: for the roles that may read concern content, never for the others
    for user, shown_link in (("counsellor", True), ("head", True), ("leader", False), ("county", False)):
        client = as_user(app, f"t.{user}")
        html = client.get(f"/flags/{fid}").get_data(as_text=True)
        assert ('id="reveal-concerns"' in html) == shown_link, user
        assert "查看关注内容与理由" in html if shown_link else "查看关注内容与理由" not in html
        if shown_link:
            assert client.get(f"/flags/{fid}?reasons=1").status_code == 200


# ----------------------------------------------------------------------------- 6. one id per element


def test_flag_pages_and_concerns_have_unique_ids(app, world, ctx):
    from html_ids import assert_clean

    from mh_platform.services import flags as flag_service

    alert_id, fids = _cluster(ctx, world)
    flag_service.acknowledge(ctx, world.actors["counsellor"], fids[0])  # more actions on its page
    for user, paths in (("counsellor", ["/flags", f"/flags/{fids[0]}", f"/flags/{fids[1]}?reasons=1",
                                        f"/flags/clusters/{alert_id}", "/concerns", "/inbox", "/"]),
                        ("head", ["/flags", f"/flags/{fids[0]}", "/concerns"]),
                        ("monitor", ["/concerns"]),
                        ("county", ["/flags", f"/flags/{fids[1]}", f"/flags/clusters/{alert_id}"])):
        client = as_user(app, f"t.{user}")
        for path in paths:
            r = client.get(path)
            assert r.status_code == 200, (user, path)
            assert_clean(r.get_data(as_text=True), f"{user} {path}")


# ----------------------------------------------------------------------------- 8. staff wording on /concerns

STUDENT_INTRO = "你看到的情况只会交给老师处理"
STUDENT_DONE = "已提交，谢谢你。老师会尽快关注。"


def test_concern_page_speaks_to_staff_as_staff(app, world, ctx):
    from mh_platform.db.models import Flag

    for user, student in (("head", world.students[1]), ("counsellor", world.students2[1])):
        client = as_user(app, f"t.{user}")
        page = client.get("/concerns").get_data(as_text=True)
        assert STUDENT_INTRO not in page and "只有老师能看到" not in page, user
        assert 'data-for="staff"' in page and "本校心理教师确认和跟进" in page
        tok = CSRF_RE.search(page).group(1)
        r = client.post("/concerns", data={"csrf_token": tok, "student_id": str(student), "category": "mood",
                                           "urgency": "soon", "note": ""}, follow_redirects=True)
        done = r.get_data(as_text=True)
        assert STUDENT_DONE not in done and "已提交。该关注已交由本校心理教师（学校层级）确认和跟进。" in done, user
        with ctx.uow() as uow:  # the wording is what happens: the flag starts at the school tier
            assert uow.session.scalar(sa.select(Flag.tier).where(Flag.student_id == student)) == "school"
    client = as_user(app, "t.monitor")
    page = client.get("/concerns").get_data(as_text=True)
    assert STUDENT_INTRO in page and 'data-for="monitor"' in page
    tok = CSRF_RE.search(page).group(1)
    r = client.post("/concerns", data={"csrf_token": tok, "student_id": str(world.students[2]), "category": "mood",
                                       "urgency": "soon", "note": ""}, follow_redirects=True)
    assert STUDENT_DONE in r.get_data(as_text=True)
