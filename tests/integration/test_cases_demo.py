"""The demo hook seeds cases and referrals in every state across both partner institutions."""

from __future__ import annotations

import random

import sqlalchemy as sa
from cases_world import quick_argon2  # noqa: F401 - autouse fixture

from mh_platform.core.referrals import ReferralState
from mh_platform.db.models import BreakGlass, Case, Referral, Transfer
from mh_platform.services import audit, demo, demo_cases


def test_demo_cases_cover_every_state(ctx):
    city = demo.seed_city(ctx, n_students=400, seed=7)
    out = demo_cases.seed(ctx, random.Random(1), ctx.now(), city)
    assert out["cases"] == len(demo_cases.SCENARIOS)
    with ctx.uow() as uow:
        s = uow.session
        states = set(s.scalars(sa.select(Referral.state)))
        assert states == {st.value for st in ReferralState}
        assert set(s.scalars(sa.select(Referral.institution_id))) == {i.id for i in city.institutions}
        assert set(s.scalars(sa.select(Case.status))) == {"open", "transferring", "closed"}
        # only the referral meant to be overdue was escalated; every other one is within its deadlines
        assert s.scalar(sa.select(sa.func.count()).select_from(Referral).where(Referral.tier == "county")) == 1
        assert s.scalar(sa.select(sa.func.count()).select_from(Referral)
                        .where(Referral.due_at <= ctx.now(), Referral.state != "closed")) == 0
        assert s.scalar(sa.select(sa.func.count()).select_from(BreakGlass).where(BreakGlass.reviewed_at.is_(None))) == 1
        assert s.scalar(sa.select(sa.func.count()).select_from(Transfer).where(Transfer.status == "requested")) == 1
    assert audit.sequence(ctx).rejected == 0 and audit.verify(ctx).ok
