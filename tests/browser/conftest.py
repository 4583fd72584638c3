"""Page tests: the live server is Werkzeug's threaded development server (``kit.live_server``).

When chromium drops a connection while that server is sending a static file (it cancels a favicon
or stylesheet request it no longer needs), the server can leave the file to the garbage collector,
which pytest reports as an unraisable ``ResourceWarning`` (``kit.live_server`` collects it before the
test ends, so it is reported in the page test that caused it). That is a
test-server artefact (production serves through gunicorn, and static files from the reverse proxy),
so exactly that warning — an unclosed file under ``mh_platform/web/static/`` — is ignored in the
page tests; every other warning still fails them."""

from __future__ import annotations

import pathlib

import pytest

HERE = pathlib.Path(__file__).resolve().parent
_STATIC_FILE_LEFT_OPEN = pytest.mark.filterwarnings(
    r"ignore:Exception ignored in. <_io.FileIO name='[^']*/mh_platform/web/static/"
    r":pytest.PytestUnraisableExceptionWarning")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in pathlib.Path(str(item.path)).resolve().parents:
            item.add_marker(_STATIC_FILE_LEFT_OPEN)
