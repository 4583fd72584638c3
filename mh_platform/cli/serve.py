"""``mhp serve``: the web app under gunicorn (programmatic), optionally with the scheduler beside it.

Production runs the same app with ``gunicorn mh_platform.web.wsgi:app`` behind a reverse proxy, and
the scheduler as its own process (``mhp scheduler run``). ``--with-scheduler`` is for the
single-machine demo (``make run``): it starts ``mhp scheduler run`` as a child process and stops it
when the server stops. Never run the scheduler inside web workers.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
from typing import Any

import click

from mh_platform.cli._common import make_ctx


def _gunicorn_app(options: dict[str, Any]):  # noqa: ANN202 - gunicorn BaseApplication subclass
    from gunicorn.app.base import BaseApplication

    class _Server(BaseApplication):
        def __init__(self) -> None:
            self.options = options
            super().__init__()

        def load_config(self) -> None:
            for key, value in self.options.items():
                if key in self.cfg.settings and value is not None:
                    self.cfg.set(key, value)

        def load(self):  # noqa: ANN202 - called in each worker after fork (no preload)
            from mh_platform.web.app import create_app

            return create_app()

    return _Server()


def _start_scheduler() -> subprocess.Popen | None:
    if importlib.util.find_spec("mh_platform.cli.scheduler") is None:
        click.echo("warning: the scheduler is not installed (mh_platform.cli.scheduler); serving without it", err=True)
        return None
    proc = subprocess.Popen([sys.executable, "-m", "mh_platform.cli", "scheduler", "run"],  # noqa: S603
                            env=os.environ.copy())
    click.echo(f"scheduler started (pid {proc.pid})", err=True)
    return proc


def _stop(proc: subprocess.Popen | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=5000, show_default=True, type=click.IntRange(1, 65535), help="TCP port.")
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 64), help="gunicorn worker processes.")
@click.option("--threads", default=4, show_default=True, type=click.IntRange(1, 64), help="Threads per worker.")
@click.option("--with-scheduler", is_flag=True, help="Also run `mhp scheduler run` as a child process (demo).")
def cli(host: str, port: int, workers: int, threads: int, with_scheduler: bool) -> None:
    """网页服务 / serve the web app (gunicorn)."""
    ctx = make_ctx()  # refuse to start on bad configuration or a wrong master key, before forking
    ctx.engine.dispose()
    options = {
        "bind": f"{host}:{port}",
        "workers": workers,
        "threads": threads,
        "worker_class": "gthread",
        "timeout": 60,
        "graceful_timeout": 20,
        "accesslog": "-",
        "errorlog": "-",
        "proc_name": "mhp-web",
        "preload_app": False,
        "limit_request_line": 8190,
    }
    click.echo(f"serving on http://{host}:{port} ({workers} workers)", err=True)
    scheduler = _start_scheduler() if with_scheduler else None
    try:
        _gunicorn_app(options).run()
    finally:
        _stop(scheduler)
