"""Defects found in the review of the path from a risk signal to a person who acts (branch review-flags)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from flags_world import quick_hashes, world  # noqa: F401 - fixtures

from mh_platform.core.errors import NotFound
from mh_platform.core.flag_rules import WatchSignal
from mh_platform.db.models import Outbox
from mh_platform.services import concerns, escalation, flags, queues
from mh_platform.services.context import SYSTEM


def _told(ctx, actor, link):
    with ctx.uow() as uow:
        rows = list(uow.session.scalars(sa.select(Outbox).where(Outbox.recipient_user_id == actor.user_id,
                                                                Outbox.channel == "inbox")))
        uow.session.expunge_all()
    return [r for r in rows if r.params.get("link") == link]


# ------------------------------------------------------------- the model's watch signal is the counsellor's only

def test_the_models_watch_only_flag_is_shown_to_the_counsellor_only(ctx, world):
    """risk.md: the watch signal is "not shown to students, parents or head teachers"; the matrix gives
    ``model:read_watch`` to the counsellor alone. A watch-only flag was listed in the head teacher's
    class queue (with ``is_watch: true``) and, after its first reminder, in the school leader's
    "missed" list, and the leader was told of it."""
    a = world.actors
    sid = world.students[2]
    fid = flags.raise_watch(ctx, SYSTEM, sid, WatchSignal(True, 0.5, "m1")).flag_id
    assert flags.get_flag(ctx, a["counsellor"], fid)["is_watch"] is True
    assert [v["id"] for v in queues.queue_for(ctx, a["counsellor"])["flags"]] == [str(fid)]
    # the head teacher of the student's class: nothing, by list, queue or id
    assert flags.list_flags(ctx, a["head"]) == ([], 0)
    assert queues.queue_for(ctx, a["head"])["flags"] == []
    with pytest.raises(NotFound):
        flags.get_flag(ctx, a["head"], fid)
    # a missed deadline: a reminder at the school, told to the counsellor, not to the school leader
    ctx.clock.advance(hours=73)
    escalation.sweep(ctx, ctx.now())
    assert _told(ctx, a["counsellor"], f"/flags/{fid}")
    assert _told(ctx, a["leader"], f"/flags/{fid}") == []
    assert queues.queue_for(ctx, a["leader"])["missed"] == []
    with pytest.raises(NotFound):
        flags.get_flag(ctx, a["leader"], fid)
    # a person's concern ends watch-only: the head teacher now sees the flag, not that the model raised it
    concerns.submit_concern(ctx, a["monitor"], student_id=sid, category="mood", urgency="routine", note="")
    view = flags.get_flag(ctx, a["head"], fid)
    assert "is_watch" not in view
    assert "model" not in {e["reason_code"] for e in view["events"]}
    assert "model" in {e["reason_code"] for e in flags.get_flag(ctx, a["counsellor"], fid)["events"]}
