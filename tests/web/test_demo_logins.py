"""Every demo account (`mhp demo accounts`) signs in to its own home page, in Chinese, and its
roster/API scope holds up on the demo city."""

from __future__ import annotations

from web_helpers import api_token, bearer, login

from mh_platform.services import demo
from mh_platform.web.labels import role_label


def test_every_demo_account_reaches_its_home_page(ctx, client):
    client.application.config["MHP_LOGIN_IP_RATE_LIMIT"] = "1000 per minute"  # one address, many accounts
    demo.seed_city(ctx, n_students=200, seed=7, password=demo.DEFAULT_PASSWORD)
    accounts = demo.list_accounts(ctx)
    assert len({a["role"] for a in accounts}) == 8
    for acc in accounts:
        c = client.application.test_client()
        r = login(c, acc["username"], demo.DEFAULT_PASSWORD)
        assert r.status_code == 302 and r.headers["Location"] == "/", acc
        html = c.get("/").get_data(as_text=True)
        assert role_label(acc["role"]) in html, acc
        if acc.get("unit") not in (None, "", "—"):
            assert acc["unit"] in html, acc
        token = api_token(c, acc["username"], demo.DEFAULT_PASSWORD)
        body = c.get("/api/v1/students?per_page=200", headers=bearer(token)).get_json()
        if acc["role"] in ("county_officer", "city_officer", "clinician", "sysadmin"):
            assert body["total"] == 0, acc
        else:
            assert body["total"] > 0, acc
