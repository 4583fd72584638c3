"""The student answering flow (public: a one-time access code is the credential).

``/s/`` code entry → one page per instrument (``/s/p/<instrument>``) → ``/s/done``. Works with plain
form posts (no JavaScript needed); ``static/student.js`` adds per-answer autosave via
``POST /s/answer`` (JSON). The student's state is a separate short-lived signed cookie
(``mhp_student``, path ``/s``, HttpOnly, SameSite=Strict) holding only the access-code row id and the
sitting's random token (``services.responses.Sitting``); every request re-checks, in the service, that
the sitting is the code's current one and the code, window and consent. Entering the code starts a
new sitting; pausing ends it server-side and finishing turns it into a "finished" one (a copied
cookie stops working then; a stale sitting is treated like no cookie: back to code entry, or 401
``signed_out`` for the autosave). Finishing or pausing also clears that cookie and the Flask session,
and the response asks the browser to clear cache and storage (``Clear-Site-Data``); every page is
``no-store``; nothing is written to local/session storage.
Code entry is rate limited per IP and globally (failed attempts only): when the per-IP budget is
spent the IP is locked out until the window rolls over.
"""

from __future__ import annotations

import base64
import binascii
import time
import uuid
from typing import Any

from flask import (
    Blueprint,
    Response,
    current_app,
    jsonify,
    make_response,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import gettext as _
from itsdangerous import BadSignature, URLSafeTimedSerializer
from markupsafe import Markup

from mh_platform.core.errors import NotFound, ValidationFailed
from mh_platform.core.instruments import load_instrument
from mh_platform.services import responses
from mh_platform.services.responses import SITTING_BYTES, CodeRejected, Sitting, SittingEnded
from mh_platform.web.authz import public, service_ctx
from mh_platform.web.extensions import SUPPORTED_LOCALES, limiter

bp = Blueprint("student", __name__, url_prefix="/s")

COOKIE = "mhp_student"
COOKIE_PATH = "/s"
COOKIE_MAX_AGE = 2 * 3600  # a sitting is one lesson; resuming later means typing the code again
CLEAR_SITE_DATA = '"cache", "cookies", "storage"'


COOKIE_SALT = "mhp-student-session"


def _serializer(secret: str | None = None) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret or current_app.config["SECRET_KEY"], salt=COOKIE_SALT)


def cookie_value(secret: str, sitting: Sitting) -> str:
    """The signed ``mhp_student`` value for a sitting: ``{"c": code row id, "t": token (base64url)}``."""
    token = base64.urlsafe_b64encode(sitting.token).decode("ascii").rstrip("=")
    return _serializer(secret).dumps({"c": str(sitting.access_code_id), "t": token})


def _sitting() -> Sitting | None:
    """The cookie's sitting (signature and 2 h age checked), or None: whether it is still the code's
    current sitting is the service's check, on every request."""
    raw = request.cookies.get(COOKIE)
    if not raw:
        return None
    try:
        data = _serializer().loads(raw, max_age=COOKIE_MAX_AGE)
        t = str(data["t"])
        token = base64.urlsafe_b64decode(t + "=" * (-len(t) % 4))
        if len(token) != SITTING_BYTES:
            return None
        return Sitting(uuid.UUID(data["c"]), token)
    except (BadSignature, KeyError, ValueError, TypeError, binascii.Error):
        return None


def _set_cookie(resp: Response, sitting: Sitting) -> None:
    ctx = service_ctx()
    resp.set_cookie(COOKIE, cookie_value(current_app.config["SECRET_KEY"], sitting), max_age=COOKIE_MAX_AGE,
                    path=COOKIE_PATH, httponly=True, samesite="Strict", secure=ctx.settings.cookie_secure)


def _forget() -> None:
    """Empty the session (its CSRF token included); the language choice stays for the next student."""
    lang = session.get("lang")
    session.clear()
    if lang:  # the language choice is not personal
        session["lang"] = lang


def _drop(resp: Response) -> Response:
    resp.delete_cookie(COOKIE, path=COOKIE_PATH, httponly=True, samesite="Strict",
                       secure=service_ctx().settings.cookie_secure)
    resp.headers["Clear-Site-Data"] = CLEAR_SITE_DATA
    return resp


def _clear(resp: Response) -> Response:
    """The end of a student's visit: session emptied, student cookie dropped, browser told to clear."""
    _forget()
    return _drop(resp)


def _rate(key: str, default: str) -> str:
    return str(service_ctx().settings.extra.get(key, default))


def _failed(resp: Response) -> bool:
    return resp.status_code >= 400


REASONS = {
    "invalid": lambda: _("验证码无效，请核对后重新输入。 The code is not valid."),
    "closed": lambda: _("本次测评不在开放时间内。 This screening is not open now."),
    "no_consent": lambda: _("暂时无法参加本次测评，请联系班主任。 You cannot take part now; please ask your head teacher."),
    "completed": lambda: _("你已完成本次测评，谢谢！ You have already finished. Thank you!"),
}


def _signed_out() -> Response:
    """A cookie whose sitting ended (paused, finished, the code entered again elsewhere, reprinted,
    revoked): like no cookie — back to code entry, and the stale cookie is dropped."""
    return _clear(redirect(url_for("student.start")))


def _rejected(exc: CodeRejected, status: int = 403) -> Response:
    if isinstance(exc, SittingEnded):
        return _signed_out()
    _forget()  # before rendering: the code form carries a CSRF token of the new, empty session
    resp = make_response(render_template("student/code.html", error=REASONS.get(exc.reason, REASONS["invalid"])()),
                         status)
    return _drop(resp)


@bp.get("/")
@public
def start() -> Any:
    if _sitting() is not None:
        return redirect(url_for("student.resume"))
    return render_template("student/code.html", error=None)


@bp.post("/")
@public
@limiter.limit(lambda: _rate("student_code_rate_limit", "40 per 10 minutes"), deduct_when=_failed,
               error_message="locked")
@limiter.limit(lambda: _rate("student_code_global_limit", "2000 per minute"), key_func=lambda: "student-code-global",
               deduct_when=_failed, error_message="busy")
def enter() -> Any:
    try:
        sess = responses.begin(service_ctx(), request.form.get("code", ""))
    except CodeRejected as exc:
        return _rejected(exc)
    target = url_for("student.page", instrument_id=sess.current) if sess.current else url_for("student.done")
    resp = redirect(target, code=303)
    _set_cookie(resp, sess.sitting)
    return resp


@bp.get("/resume")
@public
def resume() -> Any:
    sitting = _sitting()
    if sitting is None:
        return redirect(url_for("student.start"))
    try:
        sess = responses.load(service_ctx(), sitting)
    except CodeRejected as exc:
        return _rejected(exc)
    return redirect(url_for("student.page", instrument_id=sess.current) if sess.current else url_for("student.done"))


_LABELS: dict[tuple[str, str, bool], dict[str, Any]] = {}
# per (instrument, version, language): the questions' HTML cut at each option's "checked" slot —
# static text, then (item, value) of the slot, alternating (see _questions)
_QUESTIONS: dict[tuple[str, str, bool], tuple[tuple[str, ...], tuple[tuple[int, Any], ...]]] = {}
_MARK = "\x00"


def _lang_key(inst) -> tuple[str, str, bool]:
    zh = not str(session.get("lang") or service_ctx().settings.default_locale).startswith("en")
    return (inst.id, inst.version, zh)


def _labels(inst) -> dict[str, Any]:
    """The page's texts in the student's language (built once per instrument version and language)."""
    key = _lang_key(inst)
    hit = _LABELS.get(key)
    if hit is None:
        hit = _LABELS[key] = _build_labels(inst, key[2])
    return hit


def _questions(inst, answers: dict[int, Any]) -> Markup:
    """The page's questions with the saved answers checked.

    The fragment (``student/_questions.html``) depends only on the instrument and the language, so
    it is rendered once per process and cut at every option's "checked" slot; a request only joins
    the pieces — most of a page's rendering time otherwise, for the same HTML every time."""
    key = _lang_key(inst)
    hit = _QUESTIONS.get(key)
    if hit is None:
        slots: list[tuple[int, Any]] = []

        def mark(n: int, value: Any) -> Markup:
            slots.append((n, value))
            return Markup(_MARK)  # noqa: S704 - a constant marker, cut out below  # nosec B704  # nosemgrep: mhp-markup-on-data

        html = render_template("student/_questions.html", q=_labels(inst), mark=mark)
        texts = tuple(html.split(_MARK))
        if len(texts) != len(slots) + 1:  # a NUL in an instrument text would shift every slot
            raise ValueError(f"instrument {inst.id}: its texts contain a NUL character")
        hit = _QUESTIONS[key] = (texts, tuple(slots))
    texts, slots = hit
    out = [texts[0]]
    for (n, value), text in zip(slots, texts[1:], strict=True):
        if n in answers and answers[n] == value:
            out.append(" checked")
        out.append(text)
    return Markup("".join(out))  # noqa: S704 - pieces of a template rendered with autoescape  # nosec B704  # nosemgrep: mhp-markup-on-data


def _build_labels(inst, zh: bool) -> dict[str, Any]:
    def txt(zh_text: str | None, en_text: str | None, fallback: str) -> str:
        return (zh_text or en_text or fallback) if zh else (en_text or zh_text or fallback)

    items = []
    for it in inst.items:
        items.append({"n": it.number, "text": txt(it.zh, it.en, _("第%(n)d题", n=it.number)),
                      "options": [{"value": o.value, "label": txt(o.zh, o.en, str(o.value))} for o in it.options]})
    return {"title": txt(inst.name_zh, inst.name_en, inst.short_name),
            "instructions": txt(inst.instructions_zh, inst.instructions_en, ""),
            "time_frame": txt(inst.time_frame_zh, inst.time_frame_en, ""), "questions": items}


def _state_or_redirect(instrument_id: str) -> tuple[Any, Any]:
    sitting = _sitting()
    if sitting is None:
        return None, redirect(url_for("student.start"))
    try:
        return (sitting, responses.page(service_ctx(), sitting, instrument_id)), None
    except CodeRejected as exc:
        return None, _rejected(exc)


@bp.get("/p/<instrument_id>")
@public
def page(instrument_id: str) -> Any:
    got, early = _state_or_redirect(instrument_id)
    if early is not None:
        return early
    _, st = got
    if st.submitted:
        return redirect(url_for("student.resume"))
    return _render_page(st)


def _render_page(st: Any, errors: str | None = None, *, incomplete_ok: bool = False) -> str:
    return render_template("student/page.html", st=st, q=_labels(st.instrument),
                           questions=_questions(st.instrument, st.answers), errors=errors,
                           incomplete_ok=incomplete_ok, now_ms=int(time.time() * 1000))


def _form_answers(inst) -> tuple[dict[str, Any], dict[str, int]]:
    answers: dict[str, Any] = {}
    ms: dict[str, int] = {}
    for it in inst.items:
        v = request.form.get(f"i{it.number}")
        if v not in (None, ""):
            answers[str(it.number)] = v
        t = request.form.get(f"t{it.number}")
        if t and t.isdigit():
            ms[str(it.number)] = int(t)
    return answers, ms


@bp.post("/p/<instrument_id>")
@public
def submit(instrument_id: str) -> Any:
    sitting = _sitting()
    if sitting is None:
        return redirect(url_for("student.start"))
    inst = load_instrument(instrument_id)  # NotFound → 404; the battery is checked below
    answers, ms = _form_answers(inst)
    if request.form.get("incomplete_ok") != "1" and responses.unanswered(inst, answers):
        early = _confirm_incomplete(sitting, inst, answers, ms)
        if early is not None:
            return early
    try:
        res = responses.submit(service_ctx(), sitting, instrument_id, answers, ms)
    except responses.PageSubmitted:  # a double click or a second tab: the first post counted, go on
        return redirect(url_for("student.resume"), code=303)
    except SittingEnded:
        # the last page posted twice: the first post finished the battery (the sitting is now the
        # finished one, which opens the thank-you page only) — show that page, not code entry
        if _finished(sitting):
            return redirect(url_for("student.done"), code=303)
        return _signed_out()
    except ValidationFailed:  # the page again, with what is saved so far (the rare path reads the state)
        got, early = _state_or_redirect(instrument_id)
        if early is not None:
            return early
        return make_response(_render_page(got[1], _("有答案无法识别，请重新选择。 Some answers were not recognised.")),
                             422)
    except CodeRejected as exc:
        return _rejected(exc)
    nxt = url_for("student.page", instrument_id=res.next_instrument) if res.next_instrument else url_for("student.done")
    if res.critical:  # without JavaScript the help is shown here, before going on
        return render_template("student/help.html", next_url=nxt)
    return redirect(nxt, code=303)


def _confirm_incomplete(sitting: Any, inst: Any, answers: dict[str, Any], ms: dict[str, int]) -> Any:
    """A page submitted with asked items left blank: what was given is saved, and the page comes
    back once with the blank items named; submitting it again (``incomplete_ok``) goes on — answering
    is never forced. None when, with the answers saved before, nothing is blank after all."""
    try:
        if answers:
            responses.save_answers(service_ctx(), sitting, inst.id, answers, ms)
        st = responses.page(service_ctx(), sitting, inst.id)
    except CodeRejected as exc:
        return _rejected(exc)
    except ValidationFailed:
        return None  # an answer that is not an option: the submit says so
    blank = responses.unanswered(inst, {str(k): v for k, v in st.answers.items()})
    if not blank:
        return None
    note = _("还有 %(n)d 题没有作答（第 %(items)s 题）。可以回去补上；如果不想回答，再点一次提交即可。",
             n=len(blank), items="、".join(str(n) for n in blank))
    return make_response(_render_page(st, note, incomplete_ok=True), 200)


@bp.post("/answer")
@public
def answer() -> Any:
    """Autosave of one answer (JSON {instrument, item, value, ms}); 200 {saved, n, critical}.
    401 ``signed_out`` without a cookie or with one whose sitting ended."""
    sitting = _sitting()
    if sitting is None:
        return jsonify({"saved": False, "error": "signed_out"}), 401
    data = request.get_json(silent=True) or {}
    try:
        res = responses.save_answer(service_ctx(), sitting, str(data.get("instrument", ""))[:32], data.get("item"),
                                    data.get("value"), _int(data.get("ms")))
    except SittingEnded:
        return jsonify({"saved": False, "error": "signed_out"}), 401
    except CodeRejected as exc:
        return jsonify({"saved": False, "error": exc.reason}), 403
    except (ValidationFailed, NotFound):
        return jsonify({"saved": False, "error": "invalid"}), 422
    return jsonify({"saved": True, "n": res.n_answered, "critical": res.critical})


def _int(v: Any) -> int | None:
    try:
        return int(v) if v is not None else None
    except (TypeError, ValueError):
        return None


def _finished(sitting: Sitting | None) -> bool:
    """The sitting is the one that finished its battery (only the thank-you page accepts it)."""
    if sitting is None:
        return False
    try:
        return responses.load(service_ctx(), sitting, allow_completed=True).completed
    except CodeRejected:
        return False


@bp.get("/done")
@public
def done() -> Any:
    finished = _finished(_sitting())
    resp = make_response(render_template("student/done.html", finished=finished))
    return _clear(resp)


@bp.post("/pause")
@public
def pause() -> Any:
    """"Leave for now": answers are already saved; the sitting ends server-side (a copy of this
    cookie no longer opens anything); the next entry with the same code resumes."""
    sitting = _sitting()
    if sitting is not None:
        responses.pause(service_ctx(), sitting)
    return _clear(make_response(render_template("student/done.html", finished=False, paused=True)))


@bp.post("/lang")
@public
def set_lang() -> Any:
    lang = request.form.get("lang")
    if lang in SUPPORTED_LOCALES:
        session["lang"] = lang
    nxt = request.form.get("next") or ""
    if not nxt.startswith("/s/") or nxt.startswith("//"):
        nxt = url_for("student.start")
    return redirect(nxt, code=303)
