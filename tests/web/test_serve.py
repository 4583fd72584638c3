"""`mhp serve` as a real process: gunicorn serves the app; --with-scheduler runs the scheduler as a
child that stops with the server; bad configuration is one clear line and a non-zero exit."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(db_url: str, key_file: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MHP_")}
    env.update(MHP_ENV="test", MHP_DATABASE_URL=db_url, MHP_MASTER_KEY_FILE=key_file, MHP_SECRET_KEY="s" * 40,
               MHP_CONFIG_FILE="/nonexistent/mhp.toml")
    return env


def _wait_up(url: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited early: {proc.stderr.read().decode(errors='replace')[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:  # noqa: S310 - loopback test server
                if r.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.3)
    raise AssertionError("server did not come up")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize("with_scheduler", [False, True], ids=["web", "web+scheduler"])
def test_serve_runs_gunicorn_and_stops_cleanly(fresh_db_url, master_key_file, with_scheduler):
    port = _free_port()
    args = [sys.executable, "-m", "mh_platform.cli", "serve", "--port", str(port), "--workers", "1"]
    if with_scheduler:
        args.append("--with-scheduler")
    proc = subprocess.Popen(args, env=_env(fresh_db_url, master_key_file), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        _wait_up(f"http://127.0.0.1:{port}/healthz", proc)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/login", timeout=5) as r:  # noqa: S310
            html = r.read().decode()
            assert r.status == 200 and "登录" in html
            assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            _out, err = proc.communicate(timeout=40)
        except subprocess.TimeoutExpired:
            proc.kill()
            _out, err = proc.communicate()
    text = err.decode(errors="replace")
    assert proc.returncode == 0, text[-2000:]
    assert "Traceback" not in text
    if with_scheduler:
        m = re.search(r"scheduler started \(pid (\d+)\)", text)
        assert m, text[-2000:]
        assert not _pid_alive(int(m.group(1)))


def test_serve_refuses_bad_configuration(fresh_db_url, master_key_file):
    env = _env(fresh_db_url, master_key_file)
    env["MHP_ENV"] = "production"  # with a short secret and insecure cookies
    r = subprocess.run([sys.executable, "-m", "mh_platform.cli", "serve", "--port", str(_free_port())], env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert r.stderr.strip().startswith("error: configuration:")
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("args", [["--port", "0"], ["--port", "http"], ["--workers", "0"], ["--nonsense"]])
def test_serve_bad_arguments_are_one_clear_line(args):
    r = subprocess.run([sys.executable, "-m", "mh_platform.cli", "serve", *args], capture_output=True, text=True,
                       timeout=60, env={k: v for k, v in os.environ.items() if not k.startswith("MHP_")})
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
