"""Rate-limit counters in the database (``services.rate_limits``, the ``database://`` storage):
fixed windows, atomic hits from several processes, no client address stored, purge; and through
the app, one limit shared by two servers on one database."""

from __future__ import annotations

import hashlib
import hmac
import multiprocessing
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import UTC, datetime
from http.cookiejar import CookieJar

import pytest
import sqlalchemy as sa

from mh_platform.db.models import RateLimitCounter
from mh_platform.services import rate_limits

KEY = "LIMITER/10.1.2.3/student.enter/40/10/minute"


def test_hits_count_within_a_window_and_a_new_window_starts_when_it_ends(ctx):
    assert rate_limits.count(ctx, KEY, 1000.0) == 0
    assert rate_limits.window_end(ctx, KEY, 1000.0) == 1000.0  # no window running
    assert rate_limits.hit(ctx, KEY, 60, 1, 1000.0) == 1
    assert rate_limits.hit(ctx, KEY, 60, 1, 1010.0) == 2
    assert rate_limits.hit(ctx, KEY, 60, 3, 1020.0) == 5
    assert rate_limits.count(ctx, KEY, 1059.9) == 5
    assert rate_limits.window_end(ctx, KEY, 1030.0) == 1060.0  # the window began with the first hit
    assert rate_limits.count(ctx, KEY, 1060.0) == 0  # ended
    assert rate_limits.hit(ctx, KEY, 60, 1, 1061.0) == 1  # a new window, counted from 1
    assert rate_limits.window_end(ctx, KEY, 1061.0) == 1121.0
    assert rate_limits.count(ctx, "LIMITER/10.9.9.9/student.enter/40/10/minute", 1061.0) == 0  # keys apart


def test_no_client_address_is_stored(ctx):
    rate_limits.hit(ctx, KEY, 60, 1, 1000.0)
    with ctx.uow(read_only=True) as uow:
        keys = uow.session.scalars(sa.select(RateLimitCounter.key)).all()
    assert keys == [hmac.new(ctx.settings.secret_key.encode(), b"mhp-rate-limit\x00" + KEY.encode(),
                             hashlib.sha256).hexdigest()]
    assert "10.1.2.3" not in keys[0]


def test_clear_reset_and_purge(ctx):
    rate_limits.hit(ctx, KEY, 60, 1, 1000.0)
    rate_limits.hit(ctx, "other", 600, 1, 1000.0)
    rate_limits.clear(ctx, KEY)
    assert rate_limits.count(ctx, KEY, 1001.0) == 0 and rate_limits.count(ctx, "other", 1001.0) == 1
    rate_limits.hit(ctx, KEY, 60, 1, 1000.0)
    # the purge job deletes ended windows only
    assert rate_limits.purge_expired(ctx, datetime.fromtimestamp(1100.0, UTC)) == {"deleted": 1}
    assert rate_limits.count(ctx, "other", 1100.0) == 1
    assert rate_limits.clear_all(ctx) == 1
    assert rate_limits.count(ctx, "other", 1100.0) == 0
    assert rate_limits.check(ctx) is True


def _hammer(db_url: str, key_file: str, n: int, start: multiprocessing.synchronize.Event) -> None:
    from mh_platform.config import load_settings
    from mh_platform.services.context import build_context

    ctx = build_context(load_settings({"env": "test", "database_url": db_url, "master_key_file": key_file,
                                       "secret_key": "t" * 40}, environ={}))
    start.wait(30)
    for _ in range(n):
        rate_limits.hit(ctx, KEY, 3600, 1, time.time())
    ctx.engine.dispose()


@pytest.mark.slow
def test_hits_from_several_processes_at_once_are_all_counted(fresh_db_url, master_key_file, fresh_ctx):
    """Four processes hit one key together: the count is every hit (an atomic upsert, not
    read-then-write); a lost update would leave it short."""
    mp = multiprocessing.get_context("spawn")
    start = mp.Event()
    procs = [mp.Process(target=_hammer, args=(fresh_db_url, master_key_file, 60, start)) for _ in range(4)]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    assert rate_limits.count(fresh_ctx, KEY, time.time()) == 240


# ---- through the app: two servers, one database -----------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(db_url: str, key_file: str, storage: str) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MHP_")}
    env.update(MHP_ENV="test", MHP_DATABASE_URL=db_url, MHP_MASTER_KEY_FILE=key_file, MHP_SECRET_KEY="s" * 40,
               MHP_CONFIG_FILE="/nonexistent/mhp.toml", MHP_RATE_LIMIT_STORAGE=storage)
    proc = subprocess.Popen([sys.executable, "-m", "mh_platform.cli", "serve", "--port", str(port), "--workers", "1"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(proc.stderr.read().decode(errors="replace")[-2000:])
        try:
            with urllib.request.urlopen(base + "/healthz", timeout=2):  # noqa: S310 - loopback test server
                return proc, base
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.3)
    proc.kill()
    proc.wait(10)
    proc.stderr.close()
    raise AssertionError("server did not come up")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *a, **k):  # noqa: ANN002, ANN003, ANN201
        return None


def _wrong_code(opener: urllib.request.OpenerDirector, base: str) -> int:
    html = opener.open(base + "/s/", timeout=10).read().decode()
    token = re.search(r'name="csrf-token" content="([^"]+)"', html).group(1)
    body = urllib.parse.urlencode({"code": "ABCDE-FGHJK", "csrf_token": token}).encode()
    try:
        with opener.open(base + "/s/", data=body, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


@pytest.mark.slow
@pytest.mark.parametrize("storage", ["database://", "memory://"])
def test_two_servers_on_one_database_share_the_code_limit(fresh_db_url, master_key_file, storage):
    """40 wrong codes per address per 10 minutes, alternating between two servers on one database:
    with the database storage (the default) the 41st attempt is refused on either server; with
    per-process memory counters each server has counted only 20, so it is not — the gap this
    storage closes."""
    servers = [_serve(fresh_db_url, master_key_file, storage) for _ in range(2)]
    try:
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()), _NoRedirect)
        statuses = [_wrong_code(opener, servers[i % 2][1]) for i in range(40)]
        assert statuses == [403] * 40  # a wrong code: refused, and counted
        nxt = [_wrong_code(opener, servers[i % 2][1]) for i in range(2)]
        if storage == "database://":
            assert nxt == [429, 429]
        else:
            assert nxt == [403, 403]
    finally:
        for proc, _ in servers:
            proc.send_signal(signal.SIGTERM)
        for proc, _ in servers:
            try:
                proc.wait(40)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
            proc.stderr.close()


def test_the_purge_job_runs_from_the_registry(ctx, clock):
    from mh_platform.jobs.registry import job_by_id
    from mh_platform.jobs.scheduler import run_job

    t = clock.now().timestamp()
    rate_limits.hit(ctx, "ended", 60, 1, t - 120)
    rate_limits.hit(ctx, "running", 600, 1, t - 120)
    out = run_job(ctx, job_by_id("rate_limit_purge"))
    assert out["ok"] and out["result"] == {"deleted": 1}
    assert rate_limits.count(ctx, "running", t) == 1


def test_the_limiter_hook_is_dropped_only_while_no_app_wide_limit_exists(ctx):
    """Decorated limits are checked by their own wrapper; the app-wide hook only serves application,
    default, blueprint and meta limits, so it is taken out while there are none, and kept otherwise."""
    from mh_platform.web.app import create_app
    from mh_platform.web.extensions import limiter

    app = create_app(ctx=ctx, extra_config={"TESTING": True})
    assert limiter._check_request_limit not in app.before_request_funcs[None]
    saved = limiter.limit_manager._default_limits
    try:  # a deployment that sets RATELIMIT_DEFAULT keeps the hook (and the limit applies)
        kept = create_app(ctx=ctx, extra_config={"TESTING": True, "RATELIMIT_DEFAULT": "2 per minute"})
        assert limiter._check_request_limit in kept.before_request_funcs[None]
        c = kept.test_client()
        assert [c.get("/s/").status_code for _ in range(3)] == [200, 200, 429]
    finally:
        limiter.limit_manager.set_default_limits(saved)  # the extension object is shared by every app
