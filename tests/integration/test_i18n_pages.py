"""The pages in English show no Chinese except data (names, units, instrument texts that exist only in
Chinese); ``<html lang>`` follows the language; domain error messages are shown in the page's language."""

from __future__ import annotations

import html as html_lib
import re

import pytest
import sqlalchemy as sa
from screening_world import app, quick_argon2, ready  # noqa: F401 - fixtures

from mh_platform.core.instruments import instrument_files, load_instrument
from mh_platform.db.models import Campaign, OrgUnit

CJK_RUN = re.compile(r"[\u3000-\u303f\u3400-\u9fff\uf900-\ufaff\uff00-\uffef]+")
CJK = re.compile(r"[\u3400-\u9fff]")
# Chinese punctuation on its own (e.g. "·" lists, a full-width bracket around a name) says nothing
PUNCT_ONLY = re.compile(r"^[\u3000-\u303f\uff00-\uffef]+$")


def form_token(page: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def meta_token(page: str) -> str:
    return re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)


def login(client, username: str, lang: str) -> None:
    page = client.get("/login").text
    r = client.post("/login", data={"username": username, "password": "correct horse 1",
                                    "csrf_token": form_token(page)})
    assert r.status_code in (302, 303), r.text[:300]
    client.post("/lang", data={"lang": lang, "csrf_token": form_token(client.get("/").text)})


def data_strings(ctx) -> list[str]:
    """What may stay Chinese on an English page: data, not interface text — unit names, campaign
    names, the students' names and guardians (roster), and instrument texts without an English version."""
    from screening_world import roster_rows

    with ctx.uow() as uow:
        s = uow.session
        out = list(s.scalars(sa.select(OrgUnit.name))) + list(s.scalars(sa.select(Campaign.name)))
    out += [r[4] for r in roster_rows(classes=2, per_class=25)]
    for path in instrument_files():
        inst = load_instrument(path.stem)
        out += [it.zh for it in inst.items if it.zh and not it.en]
    return out


def visible_chinese(page: str, allowed: list[str]) -> list[str]:
    """Chinese runs of the visible text that are not part of an allowed data string. Text inside an
    element marked ``lang="zh-CN"`` (the "中文" language switch) is Chinese on purpose."""
    body = re.sub(r"<(script|style)\b.*?</\1>", " ", page, flags=re.S | re.I)
    body = re.sub(r'<(\w+)[^>]*\blang="zh[^"]*"[^>]*>.*?</\1>', " ", body, flags=re.S)
    title = " ".join(re.findall(r"<title>(.*?)</title>", body, flags=re.S))
    text = html_lib.unescape(re.sub(r"<[^>]+>", " ", body) + " " + title)
    # attributes a user sees or hears: placeholder, aria-label, title, alt
    text += " " + " ".join(html_lib.unescape(v) for v in
                           re.findall(r'\b(?:placeholder|aria-label|title|alt)="([^"]*)"', body))
    blob = "\n".join(allowed)
    return [run for run in CJK_RUN.findall(text) if not PUNCT_ONLY.match(run) and run not in blob]


def assert_english(page: str, allowed: list[str], where: str) -> None:
    assert '<html lang="en">' in page, where
    left = visible_chinese(page, allowed)
    assert not left, f"{where}: Chinese left on the English page: {left[:15]}"


def test_allow_list_is_not_a_blanket():
    allowed = ["兴隆台第一中学", "王伟芳"]
    assert visible_chinese("<p>预警 王伟芳</p>", allowed) == ["预警"]
    assert visible_chinese('<button lang="zh-CN">中文</button><p>兴隆台第一中学 · x</p>', allowed) == []
    assert visible_chinese('<input placeholder="请输入">', allowed) == ["请输入"]


def test_student_pages_in_english(ctx, ready, app):
    world, cid, codes, refused, hts = ready
    allowed = data_strings(ctx)
    client = app.test_client()
    page = client.get("/s/").text
    client.post("/s/lang", data={"lang": "en", "next": "/s/", "csrf_token": meta_token(page)})
    page = client.get("/s/").text
    assert_english(page, allowed, "code page")
    assert "Enter your code" in page
    wrong = client.post("/s/", data={"code": "AAAAA-BBBBB", "csrf_token": meta_token(page)})
    assert_english(wrong.text, allowed, "wrong code")
    assert "The code is not valid" in wrong.text

    code = next(iter(codes.values()))
    r = client.post("/s/", data={"code": code, "csrf_token": meta_token(client.get("/s/").text)})
    assert r.status_code == 303
    page = client.get("/s/p/phq9").text
    assert_english(page, allowed, "questionnaire page")
    assert "Part 1 of" in page
    inst = load_instrument("phq9")
    form = {"csrf_token": meta_token(page)} | {f"i{it.number}": str(it.options[0].value) for it in inst.items}
    form["i9"] = "1"  # a critical answer: the help page before going on
    help_page = client.post("/s/p/phq9", data=form)
    assert help_page.status_code == 200 and 'id="continue"' in help_page.text
    assert_english(help_page.text, allowed, "help page")
    for text in ("You are not alone", "National psychological assistance hotline", "12356", 'href="tel:12356"',
                 "counselling room"):
        assert text in help_page.text
    paused = client.post("/s/pause", data={"csrf_token": meta_token(help_page.text)}, follow_redirects=True)
    assert_english(paused.text, allowed, "paused page")


def test_student_pages_in_chinese_say_so(ctx, ready, app):
    client = app.test_client()
    page = client.get("/s/").text
    assert '<html lang="zh-CN">' in page and "请输入测评验证码" in page


def test_staff_pages_in_english(ctx, ready, app):
    world, cid, codes, refused, hts = ready
    allowed = data_strings(ctx)
    # a critical answer raises a red flag for the school's counsellor
    student = app.test_client()
    student.post("/s/", data={"code": next(iter(codes.values())), "csrf_token": meta_token(student.get("/s/").text)})
    page = student.get("/s/p/phq9").text
    student.post("/s/answer", json={"instrument": "phq9", "item": 9, "value": 2},
                 headers={"X-CSRFToken": meta_token(page)})

    counsellor = app.test_client()
    login(counsellor, "t.counsellor", "en")
    home = counsellor.get("/").text
    assert_english(home, allowed, "home")
    queue = counsellor.get("/flags").text
    assert_english(queue, allowed, "/flags")
    flag_path = re.search(r'href="(/flags/[0-9a-f-]{36})"', queue).group(1)
    assert_english(counsellor.get(flag_path).text, allowed, "/flags/<id>")
    for path in ("/inbox", "/screening/", "/screening/new", f"/screening/{cid}", "/screening/consent"):
        r = counsellor.get(path)
        assert r.status_code == 200, path
        assert_english(r.text, allowed, path)

    head = app.test_client()
    login(head, hts[0].username if hasattr(hts[0], "username") else "t.ht1", "en")
    assert_english(head.get("/concerns").text, allowed, "/concerns")


# --------------------------------------------------------------------------- error messages


def flash_text(page: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", "", m) for m in re.findall(r'<li class="flash flash-error"[^>]*>(.*?)</li>',
                                                                   page, flags=re.S))


@pytest.mark.parametrize(("lang", "expected", "absent"), [
    ("zh_CN", "未能完成：请填写理由。", "a reason is required"),
    ("en", "Not done: a reason is required", "请填写理由"),
])
def test_flag_action_error_in_the_page_language(ctx, ready, app, lang, expected, absent):
    world, cid, codes, refused, hts = ready
    student = app.test_client()
    student.post("/s/", data={"code": next(iter(codes.values())), "csrf_token": meta_token(student.get("/s/").text)})
    page = student.get("/s/p/phq9").text
    student.post("/s/answer", json={"instrument": "phq9", "item": 9, "value": 2},
                 headers={"X-CSRFToken": meta_token(page)})
    client = app.test_client()
    login(client, "t.counsellor", lang)
    flag_path = re.search(r'href="(/flags/[0-9a-f-]{36})"', client.get("/flags").text).group(1)
    page = client.get(flag_path).text
    r = client.post(f"{flag_path}/act", data={"action": "escalate", "reason": "", "csrf_token": form_token(page)},
                    follow_redirects=True)
    shown = flash_text(r.text)
    assert expected in shown and absent not in shown, shown


@pytest.mark.parametrize(("lang", "expected", "english"), [
    ("zh_CN", ["请选择1–12年级中的年级。"], False),
    ("en", ["grades must be chosen from 1 to 12"], True),
])
def test_campaign_form_error_in_the_page_language(ctx, ready, app, lang, expected, english):
    client = app.test_client()
    login(client, "t.counsellor", lang)
    page = client.get("/screening/new").text
    r = client.post("/screening/new", data={"name": "x", "opens_at": "2030-01-01T08:00", "closes_at": "2030-01-02T08:00",
                                            "csrf_token": form_token(page)})
    for text in expected:
        assert text in r.text
    if not english:
        assert "grades must be chosen" not in r.text


@pytest.mark.parametrize("lang", ["zh_CN", "en"])
def test_roster_import_errors_in_the_page_language(ctx, ready, app, lang):
    import io

    client = app.test_client()
    login(client, "t.counsellor", lang)
    page = client.get("/screening/roster").text
    r = client.post("/screening/roster", data={"csrf_token": form_token(page), "action": "preview",
                                               "file": (io.BytesIO("学校,年级\nxlt-s001,七年级\n".encode()), "r.csv")},
                    content_type="multipart/form-data")
    if lang == "zh_CN":
        assert "缺少以下列：" in r.text and "missing column" not in r.text
    else:
        assert "missing column(s):" in r.text
    r = client.post("/screening/roster", data={"csrf_token": form_token(page), "action": "preview",
                                               "file": (io.BytesIO(b"PK\x03\x04broken"), "r.xlsx")},
                    content_type="multipart/form-data")
    assert ("无法读取该 XLSX 文件。" if lang == "zh_CN" else "not a readable XLSX file") in r.text


@pytest.mark.parametrize(("lang", "expected", "absent"), [
    ("zh_CN", "具体情况内容过长", "the note is too long"),
    ("en", "the note is too long", "具体情况内容过长"),
])
def test_concern_note_too_long_in_the_page_language(ctx, ready, app, lang, expected, absent):
    world, cid, codes, refused, hts = ready
    client = app.test_client()
    login(client, "t.ht1", lang)
    page = client.get("/concerns").text
    student_id = re.search(r'name="student_id"[^>]*>\s*(?:<option value="">[^<]*</option>\s*)?'
                           r'<option value="([0-9a-f-]{36})"', page, flags=re.S).group(1)
    r = client.post("/concerns", data={"student_id": student_id, "category": "mood", "urgency": "soon",
                                       "note": "长" * 2001, "csrf_token": form_token(page)}, follow_redirects=True)
    shown = flash_text(r.text)
    assert expected in shown and absent not in shown, shown
