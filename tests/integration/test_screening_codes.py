"""One-time codes: alphabet and entropy, input normalisation, stored only as a keyed hash,
one student and one campaign, resumable until finished, only inside the window, revoked by consent."""

from __future__ import annotations

import collections
import math
from datetime import timedelta

import pytest
import sqlalchemy as sa
from screening_world import build_world, screening_ready

from mh_platform.db.models import AccessCode
from mh_platform.services import campaigns, codes, consent, responses
from mh_platform.services.responses import CodeRejected


def test_alphabet_length_and_entropy():
    assert len(codes.ALPHABET) == 32 and not set("ILOU") & set(codes.ALPHABET)
    assert codes.BITS == 50 >= 40
    sample = [codes.generate() for _ in range(4000)]
    assert all(len(c) == 10 and set(c) <= set(codes.ALPHABET) for c in sample)
    assert len(set(sample)) == len(sample)
    counts = collections.Counter("".join(sample))
    expected = 40000 / 32
    chi2 = sum((counts[ch] - expected) ** 2 / expected for ch in codes.ALPHABET)
    assert chi2 < 70  # 31 degrees of freedom: p < 0.0002 for a fair source to fail
    assert math.log2(32 ** 10) == 50


def test_normalise_is_forgiving_but_strict_on_length():
    assert codes.normalise("7kq2m-xw9dh") == "7KQ2MXW9DH"
    assert codes.normalise(" 7KQ2M XW9DH ") == "7KQ2MXW9DH"
    assert codes.normalise("OIL23-45678") == "0112345678"  # O→0, I→1, L→1
    assert codes.normalise("UUUUU-UUUUU") is None  # U is not in the alphabet
    assert codes.normalise("7KQ2M") is None and codes.normalise("7KQ2MXW9DH7") is None
    assert codes.display("7KQ2MXW9DH") == "7KQ2M-XW9DH"


@pytest.fixture
def ready(ctx):
    world = build_world(ctx)
    return world, *screening_ready(ctx, world, per_class=4, refused=1)


def test_stored_only_as_keyed_hash(ctx, ready):
    world, cid, issued, refused, hts = ready
    import hashlib

    with ctx.uow() as uow:
        rows = list(uow.session.scalars(sa.select(AccessCode).where(AccessCode.campaign_id == cid)))
        assert len(rows) == 3
        by_student = {r.student_id: r for r in rows}
        for sid, code in issued.items():
            h = by_student[sid].code_hash
            assert len(h) == 32 and code.encode() not in h
            assert h != hashlib.sha256(code.encode()).digest()  # keyed, not a plain digest
            assert h == codes.hash_code(ctx, uow.session, code)


def test_one_student_one_campaign_until_finished(ctx, ready):
    world, cid, issued, refused, hts = ready
    (s1, c1), (s2, c2) = list(issued.items())[:2]
    a = responses.begin(ctx, c1)
    b = responses.begin(ctx, c1)  # resumable: same code row, same student
    assert a.access_code_id == b.access_code_id and a.student_id == s1
    assert responses.begin(ctx, c2).student_id == s2
    # a second campaign: the old code does not open it
    now = ctx.now()
    cid2 = campaigns.create(ctx, world.counsellor, name="二次", unit_ids=[world.school.id], grades=[7],
                            opens_at=now - timedelta(minutes=1), closes_at=now + timedelta(days=1))
    campaigns.open_due(ctx, now)
    issued2 = campaigns.issue_codes_system(ctx, cid2)
    assert responses.begin(ctx, issued2[s1]).campaign_id == cid2
    assert responses.begin(ctx, c1).campaign_id == cid
    # reprinting replaces the code: the old one stops working, the new one resumes the same row
    again = campaigns.issue_codes_system(ctx, cid)
    with pytest.raises(CodeRejected):
        responses.begin(ctx, c1)
    assert responses.begin(ctx, again[s1]).access_code_id == a.access_code_id


def test_window_and_consent(ctx, ready):
    world, cid, issued, refused, hts = ready
    sid, code = next(iter(issued.items()))
    consent.record(ctx, hts[0], sid, "refused")  # refusal after issue revokes at once
    with pytest.raises(CodeRejected) as e:
        responses.begin(ctx, code)
    assert e.value.reason in ("no_consent", "invalid")
    other = list(issued.values())[1]
    ctx.clock.advance(days=4)  # past closes_at, before the job ran: still refused
    with pytest.raises(CodeRejected) as e:
        responses.begin(ctx, other)
    assert e.value.reason == "closed"
    # a code given before the window opened does not work early either
    now = ctx.now()
    cid3 = campaigns.create(ctx, world.counsellor, name="将来", unit_ids=[world.school.id], grades=[7],
                            opens_at=now + timedelta(days=1), closes_at=now + timedelta(days=2))
    early = campaigns.issue_codes_system(ctx, cid3)
    with pytest.raises(CodeRejected) as e:
        responses.begin(ctx, next(iter(early.values())))
    assert e.value.reason == "closed"
