"""Web fixtures: the city (see web_helpers), the app on the test's rolled-back context, a client."""

from __future__ import annotations

import pytest
from web_helpers import City, build_city

from mh_platform.web.app import create_app


@pytest.fixture(autouse=True)
def quick_argon2(monkeypatch):
    """Real argon2id hashing and verification, with light parameters so the suite stays fast on 2 cores.
    (Production parameters are the library's RFC 9106 defaults; nothing here tests hash strength.)"""
    from argon2 import PasswordHasher

    from mh_platform.services import passwords

    monkeypatch.setattr(passwords, "_HASHER", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))


@pytest.fixture
def city(ctx) -> City:
    return build_city(ctx)


@pytest.fixture
def app(ctx):
    return create_app(ctx=ctx, extra_config={"TESTING": True, "MHP_PROPAGATE_ERRORS": True})


@pytest.fixture
def client(app):
    return app.test_client()


