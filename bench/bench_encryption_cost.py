"""What field encryption and the hash-chained audit event cost answer submission (issue 6).

The same service call — ``responses.submit`` of one PHQ-9 page per student (validation, row lock,
seal the answers under the student's data key, score, quality checks, flag path, the
``screening:response_submitted`` audit event, commit) — is timed with encryption and audit ON (the
real key service and ``audit.record``) and OFF (a bench-only key service whose ``seal`` returns the
plaintext bytes without touching any key, and an ``audit.record`` that does nothing). OFF exists only
in this file, switched by patching objects for the duration of one timed batch; nothing in the
configuration can reach it. Calls are interleaved one by one across the modes (ON, OFF, and for the breakdown encryption-only
and audit-only) on fresh students, so drift on the shared machine hits all alike; the result is
the ratio of the median per-round throughputs ON/OFF (target ≥ 0.90), on
SQLite (file, WAL) and on PostgreSQL (a database of its own, created and dropped here on the server
``MHP_BENCH_PG_URL`` names; default postgresql://postgres@127.0.0.1:5432/postgres).
"""

from __future__ import annotations

import contextlib
import os
import random
import statistics
import tempfile
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import sqlalchemy as sa

from bench.common import create_pg_database, drop_pg_database, result, seed_open_campaign

if TYPE_CHECKING:
    from mh_platform.services.responses import Sitting

PER_BATCH = int(os.environ.get("MHP_BENCH_ENC_BATCH", "50"))
REPEATS = int(os.environ.get("MHP_BENCH_ENC_REPEATS", "7"))
PG_URL = os.environ.get("MHP_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
INSTRUMENT = "phq9"


# --------------------------------------------------------------------------- the OFF seam (bench only)


def _plain_key_service(real):
    """A key service that stores the plaintext: same interface, no key lookup, no AES-GCM."""
    from mh_platform.services.keys import KeyService

    class PlainKeys(KeyService):
        def __init__(self) -> None:  # share the real one's state; only sealing/opening differ
            self.__dict__.update(real.__dict__)

        def seal(self, s, *, table, column, row_id, value, student_id, now, pad_to=None):  # noqa: ANN001
            if value is None:
                return None
            return value.encode("utf-8") if isinstance(value, str) else bytes(value)

        def open_field(self, s, envelope, *, table, column, row_id):  # noqa: ANN001
            return None if envelope is None else bytes(envelope).decode("utf-8")

        def prime_student_key(self, s, student_id, key_id, master_key_id, wrapped):  # noqa: ANN001
            return None  # no key needed (the state query's join to data_key still runs)

    return PlainKeys()


@contextlib.contextmanager
def _mode(ctx, mode: str) -> Iterator[None]:
    """``on``; ``off`` (plaintext seal, no audit); ``no_crypto`` (audit kept); ``no_audit`` (crypto kept)."""
    from mh_platform.services import audit

    real_keys, real_record, real_riding = ctx.keyring, audit.record, audit.record_riding
    if mode in ("off", "no_crypto"):
        ctx.keyring = _plain_key_service(real_keys)
    if mode in ("off", "no_audit"):
        audit.record = lambda *a, **k: None  # type: ignore[assignment]
        audit.record_riding = (lambda ctx, s, stmt, stmt_with_event, params, *a, **k:  # type: ignore[assignment]
                               s.execute(stmt, params))
    try:
        yield
    finally:
        ctx.keyring, audit.record, audit.record_riding = real_keys, real_record, real_riding


# --------------------------------------------------------------------------- set-up


def _context(url: str, key_file: str):
    from mh_platform.config import load_settings
    from mh_platform.db import migrate
    from mh_platform.services.context import build_context
    from mh_platform.services.keys import bootstrap_keys

    migrate.upgrade(url)
    st = load_settings({"env": "test", "database_url": url, "master_key_file": key_file, "secret_key": "e" * 40,
                        "extra": {"student_code_rate_limit": "100000 per minute",
                                  "student_code_global_limit": "100000 per minute"}}, environ={})
    ctx = build_context(st)
    bootstrap_keys(ctx)
    return ctx


def _seed(ctx, n: int) -> list[Sitting]:
    """``n`` consenting grade-7 students in an open campaign; returns their sittings (code entered)."""
    from mh_platform.services import campaigns, responses

    _actor, cid = seed_open_campaign(ctx, n, prefix="e", number_prefix="E")
    codes = campaigns.issue_codes_system(ctx, cid)
    return [responses.begin(ctx, code).sitting for code in codes.values()]


def _answers(rng: random.Random) -> dict[str, int]:
    # mild answers: no critical item, no flag — the path under test is seal + score + audit + commit;
    # item 10 (difficulty, asked once a problem is endorsed) answered too: a whole page, as students send it
    return {str(i): rng.choice((0, 1)) for i in range(1, 9)} | {"9": 0, "10": 0}


MODES = ("on", "off", "no_crypto", "no_audit")


def _check(ctx, done: dict[str, list[Sitting]]) -> None:
    """ON rows hold envelopes that open to JSON; OFF rows hold the plaintext (proof the switch worked)."""
    from mh_platform.db.models import AccessCode, EventLog, Response

    with ctx.uow() as uow:
        s = uow.session
        for mode, codes in done.items():
            sealed = mode in ("on", "no_audit")
            for ac in codes[:3]:
                sid = s.scalar(sa.select(AccessCode.student_id).where(AccessCode.id == ac.access_code_id))
                r = s.scalar(sa.select(Response).where(Response.student_id == sid, Response.instrument_id == INSTRUMENT))
                blob = bytes(r.answers_enc)
                assert blob.startswith(b"{") != sealed, (mode, blob[:20])
                if sealed:
                    assert ctx.keyring.open_field(s, blob, table="response", column="answers_enc",
                                                  row_id=r.id).startswith("{")
                audited = s.scalar(sa.select(sa.func.count()).select_from(EventLog).where(
                    EventLog.kind == "screening:response_submitted", EventLog.object_id == str(r.id)))
                assert audited == (1 if mode in ("on", "no_crypto") else 0), (mode, audited)
    from mh_platform.services import audit

    assert audit.verify(ctx).ok  # the chain is whole around the gaps the OFF calls left


def _measure_http(ctx, codes: Iterator[Sitting], rng: random.Random,
                  done: dict[str, list[Sitting]]) -> dict[str, list[float]]:
    """The same submission as a student's browser sends it, through the app (ON and OFF only)."""
    import re

    from mh_platform.web.app import create_app
    from mh_platform.web.blueprints.student import cookie_value

    app = create_app(ctx=ctx, extra_config={"TESTING": True})
    client = app.test_client()

    def enter(ac: Sitting) -> None:  # the cookie of the sitting begun in _seed, as the login sets it
        client.set_cookie("mhp_student", cookie_value(app.config["SECRET_KEY"], ac), path="/s")

    first = next(codes)
    enter(first)
    html = client.get(f"/s/p/{INSTRUMENT}").get_data(as_text=True)
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html).group(1)

    def post(ac: Sitting) -> None:
        enter(ac)
        form = {f"i{k}": str(v) for k, v in _answers(rng).items()} | {"csrf_token": token}
        r = client.post(f"/s/p/{INSTRUMENT}", data=form)
        assert r.status_code == 303, (r.status_code, r.get_data(as_text=True)[:200])

    post(first)
    for _ in range(PER_BATCH):  # warm-up
        post(next(codes))
    rounds: dict[str, list[float]] = {"on": [], "off": []}
    for _ in range(REPEATS):
        spent = {"on": 0.0, "off": 0.0}
        for _ in range(PER_BATCH):
            order = ["on", "off"]
            rng.shuffle(order)
            for mode in order:
                ac = next(codes)
                with _mode(ctx, mode):
                    t0 = time.perf_counter()
                    post(ac)
                    spent[mode] += time.perf_counter() - t0
                done[mode].append(ac)
        for mode in spent:
            rounds[mode].append(PER_BATCH / spent[mode])
    return rounds


def _measure(url: str, key_file: str, label: str) -> list[dict]:
    from mh_platform.services import responses

    ctx = _context(url, key_file)
    try:
        codes = iter(_seed(ctx, (len(MODES) + 2) * REPEATS * PER_BATCH + 4 * PER_BATCH))
        rng = random.Random(11)
        for _ in range(2 * PER_BATCH):  # warm-up (caches, prepared statements), not counted
            responses.submit(ctx, next(codes), INSTRUMENT, _answers(rng))
        rounds: dict[str, list[float]] = {m: [] for m in MODES}
        done: dict[str, list[Sitting]] = {m: [] for m in MODES}
        for _ in range(REPEATS):
            spent = dict.fromkeys(MODES, 0.0)
            for _ in range(PER_BATCH):  # interleaved call by call: drift on the shared box hits every mode alike
                order = list(MODES)
                rng.shuffle(order)
                for mode in order:
                    ac = next(codes)
                    answers = _answers(rng)
                    with _mode(ctx, mode):
                        t0 = time.perf_counter()
                        responses.submit(ctx, ac, INSTRUMENT, answers)
                        spent[mode] += time.perf_counter() - t0
                    done[mode].append(ac)
            for mode in MODES:
                rounds[mode].append(PER_BATCH / spent[mode])
        http_rounds = _measure_http(ctx, codes, rng, done)
        _check(ctx, done)
        med = {m: statistics.median(v) for m, v in rounds.items()}
        hmed = {m: statistics.median(v) for m, v in http_rounds.items()}
        return [result(f"encryption_cost_answer_submit_http_{label}", "submits/s", hmed["on"], hmed["off"], 0.90,
                       note=f"POST /s/p/phq9 through the Flask app in-process (student cookie, CSRF, page state, "
                            f"responses.submit, redirect); {REPEATS} rounds x {PER_BATCH} per mode, interleaved",
                       on_rounds=[round(x, 1) for x in http_rounds["on"]],
                       off_rounds=[round(x, 1) for x in http_rounds["off"]]),
                result(f"encryption_cost_answer_submit_{label}", "submits/s", med["on"], med["off"], 0.90,
                       note=f"responses.submit of one PHQ-9 page; {REPEATS} rounds x {PER_BATCH} calls per mode, "
                            "interleaved call by call; ON = AES-GCM envelope under the student's key + hash-chained "
                            "audit event; OFF = plaintext seal, no audit event (bench-only seam)",
                       no_crypto_per_s=round(med["no_crypto"], 2), no_audit_per_s=round(med["no_audit"], 2),
                       crypto_only_ratio=round(med["no_audit"] / med["off"], 4),
                       audit_only_ratio=round(med["no_crypto"] / med["off"], 4),
                       on_rounds=[round(x, 1) for x in rounds["on"]], off_rounds=[round(x, 1) for x in rounds["off"]])]
    finally:
        ctx.engine.dispose()


def _pg_database(url: str) -> str | None:
    """A fresh database of its own on the server of ``url`` (``bench.common.create_pg_database``),
    or None when no server answers."""
    try:
        return create_pg_database(url, "mhp_bench_enc")
    except sa.exc.OperationalError:
        return None


def run() -> list[dict]:
    from mh_platform.services.keys import write_new_master_key_file

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        key = os.path.join(tmp, "master.key")
        write_new_master_key_file(key)
        rows += _measure(f"sqlite:///{tmp}/enc.sqlite3", key, "sqlite")
        pg = _pg_database(PG_URL)
        if pg is None:
            print(f"   PostgreSQL at {PG_URL} unavailable: skipped")
        else:
            try:
                rows += _measure(pg, key, "postgres")
            finally:
                drop_pg_database(pg)
    return rows


if __name__ == "__main__":
    for row in run():
        print(row)
