"""Shared plumbing of the page tests: Debian's chromium through Playwright, a live app server."""

from __future__ import annotations

import contextlib
import gc
import pathlib
import threading
from collections.abc import Iterator
from typing import Any

CHROMIUM = "/usr/bin/chromium"
# Flags that keep chromium off the (closed) network and quiet in a root sandbox.
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]


@contextlib.contextmanager
def live_server(app: Any) -> Iterator[str]:
    """Serve ``app`` on a free loopback port in a thread; yields the base URL."""
    from werkzeug.serving import make_server

    srv = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{srv.server_port}"
    finally:
        srv.shutdown()
        thread.join(timeout=10)
        srv.server_close()
        gc.collect()  # a file the dev server left open is reported here, inside the page test (conftest.py)


def launch(p: Any) -> Any:
    """A headless chromium from Debian's package (never a downloaded browser build)."""
    assert pathlib.Path(CHROMIUM).exists(), "install Debian's chromium: make browser-deps"
    return p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)


def login(page: Any, base: str, username: str, password: str) -> None:
    page.goto(f"{base}/login")
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("#submit")
    page.wait_for_url(f"{base}/")


def logout(page: Any, base: str) -> None:
    page.click("#logout")
    page.wait_for_url(f"{base}/login")


def watch_errors(page: Any) -> list[str]:
    """A list that collects the page's console errors and uncaught exceptions (CSP violations too)."""
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    return problems
