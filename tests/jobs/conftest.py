"""Fixtures for tests that run real ``mhp`` processes."""

from __future__ import annotations

import pytest
from procs_helpers import Proc, mhp_env


@pytest.fixture
def spawn(tmp_path, fresh_db_url, master_key_file):
    procs: list[Proc] = []

    def _spawn(args: list[str], name: str, **extra_env: str) -> Proc:
        pr = Proc(args, mhp_env(fresh_db_url, master_key_file, **extra_env), tmp_path / f"{name}.log")
        procs.append(pr)
        return pr

    yield _spawn
    for pr in procs:
        pr.stop(9)

