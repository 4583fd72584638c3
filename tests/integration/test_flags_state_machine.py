"""A hypothesis state machine over flags THROUGH THE SERVICES on the real database.

Random actors (every role, in and out of scope) try random actions with and without reasons, while
new evidence arrives and the clock and the sweep move on. After every step the flag in the
database must be in a state the transition table allows, every change must have come with the
reason the table requires, out-of-scope actors must have got NotFound, the level must never have
dropped except by a counsellor's change with a reason, and every change must be one event.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from flags_world import build_world, quick_hashes  # noqa: F401 - fixtures
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test

from mh_platform.core import flag_lifecycle as fl
from mh_platform.core.errors import Conflict, Forbidden, InvalidTransition, NotFound, ValidationFailed
from mh_platform.core.types import LEVEL_RANK, Level, Role, Tier
from mh_platform.db.models import EventLog, Flag, FlagEvent, Student
from mh_platform.services import concerns, escalation, flags, students
from mh_platform.services.flags import to_state

ACTORS = ["monitor", "head", "head2", "counsellor", "counsellor2", "leader", "county", "county2", "city", "admin"]
ACTIONS = [a.value for a in fl.FlagAction] + ["close_wrapper"]
REASONS = [None, "", "   ", "访谈记录：情况已稳定"]
IN_SCOPE_ALWAYS = {"head", "counsellor"}
NEVER = {"monitor", "admin", "head2", "counsellor2", "county2"}


def test_random_actors_and_orders_never_reach_a_forbidden_state(ctx):
    world = build_world(ctx, n=2)
    counter = {"n": 0}

    class FlagMachine(RuleBasedStateMachine):
        @initialize(source=st.sampled_from(["monitor", "head", "watch"]),
                    urgency=st.sampled_from(["immediate", "soon", "routine"]))
        def open_flag(self, source, urgency):
            counter["n"] += 1
            with ctx.uow() as uow:
                s = uow.session
                klass = world.klass
                from mh_platform.db.models import AcademicYear

                year = s.scalar(sa.select(AcademicYear))
                [self.student] = students.add_students_bulk(
                    ctx, s, [students.StudentIn(name=f"状态机{counter['n']}", sex="F", birth_year=2012,
                                                class_unit=klass)], year, ctx.now())
                uow.commit()
            if source == "watch":
                from mh_platform.core.flag_rules import WatchSignal

                out = flags.raise_watch(ctx, world.actors["counsellor"], self.student, WatchSignal(True, 0.4, "t"))
                self.flag_id = out.flag_id
            else:
                self.flag_id = concerns.submit_concern(ctx, world.actors[source], student_id=self.student,
                                                       category="mood", urgency=urgency, note="")["flag_id"]
            self.events = self._event_count()
            self.last = self._state()

        def _flag(self) -> Flag:
            with ctx.uow() as uow:
                f = uow.session.get(Flag, self.flag_id if not isinstance(self.flag_id, str)
                                    else __import__("uuid").UUID(self.flag_id))
                uow.session.expunge(f)
                return f

        def _state(self) -> fl.FlagState:
            return to_state(self._flag())

        def _event_count(self) -> int:
            with ctx.uow() as uow:
                return uow.session.scalar(sa.select(sa.func.count()).select_from(FlagEvent)
                                          .where(FlagEvent.flag_id == self._flag().id))

        @rule(who=st.sampled_from(ACTORS), action=st.sampled_from(ACTIONS), reason=st.sampled_from(REASONS),
              new_level=st.sampled_from([None, "red", "orange", "yellow"]))
        def person_acts(self, who, action, reason, new_level):
            actor = world.actors[who]
            before = self._state()
            flag_obj = self._flag()
            try:
                if action == "close_wrapper":
                    flags.close(ctx, actor, flag_obj.id, reason)
                else:
                    flags.act(ctx, actor, flag_obj.id, action, reason=reason, new_level=new_level)
                ok = True
            except NotFound:
                ok = False
                # a watch-only flag (the model's signal alone) is the counsellor's only (model:read_watch)
                assert who in NEVER or who in {"leader", "county", "city"} or (flag_obj.is_watch and who == "head"), \
                    f"{who} got NotFound in scope"
            except (Forbidden, InvalidTransition, ValidationFailed, Conflict):
                ok = False
                assert who not in NEVER, f"{who} (out of scope) learnt the flag exists"
            after = self._state()
            if not ok:
                assert after == before, "a refused action changed the flag"
                assert self._event_count() == self.events
                return
            assert who not in NEVER, f"{who} acted on a flag outside their scope"
            role = Role(actor.role)
            real = action
            if action == "close_wrapper":
                real = "close" if before.level == Level.YELLOW and role == Role.COUNSELLOR else "request_close"
            t = fl.TRANSITION_BY.get((fl.FlagAction(real), before.status))
            assert t is not None, f"{real} from {before.status} is not in the table"
            assert before.tier in t.actors.get(role, frozenset()), f"{role} may not {real} at {before.tier}"
            if t.needs_reason:
                assert reason is not None and reason.strip(), f"{real} went through without a reason"
            if real == "close":
                assert before.level == Level.YELLOW  # red and orange need the counsellor's review
            if LEVEL_RANK[after.level] < LEVEL_RANK[before.level]:
                assert real == "change_level" and role == Role.COUNSELLOR
            n = self._event_count()
            assert n == self.events + 1, "every change is exactly one event"
            self.events = n

        @rule()
        def outsiders_try_everything(self):
            """Every out-of-scope actor, every action, with a reason: always NotFound, nothing changes."""
            before = self._state()
            fid = self._flag().id
            for who in sorted(NEVER):
                for action in ACTIONS:
                    if action == "close_wrapper":
                        call = lambda w=who: flags.close(ctx, world.actors[w], fid, "理由")  # noqa: E731
                    else:
                        call = lambda w=who, a=action: flags.act(  # noqa: E731
                            ctx, world.actors[w], fid, a, reason="理由", new_level="yellow")
                    with pytest.raises(NotFound):
                        call()
                with pytest.raises(NotFound):
                    flags.get_flag(ctx, world.actors[who], fid)
            assert self._state() == before and self._event_count() == self.events

        @rule(urgency=st.sampled_from(["immediate", "soon", "routine"]))
        def new_evidence(self, urgency):
            before = self._state()
            out = concerns.submit_concern(ctx, world.actors["head"], student_id=self.student, category="other",
                                          urgency=urgency, note="")
            after = self._state()
            if before.status == fl.FlagStatus.CLOSED:
                assert str(out["flag_id"]) != str(self.flag_id)  # a new episode
                self.flag_id = out["flag_id"]
                self.events = self._event_count()
                return
            assert str(out["flag_id"]) == str(self.flag_id)  # joins the open flag
            assert LEVEL_RANK[after.level] >= LEVEL_RANK[before.level]  # never lowered by evidence
            self.events = self._event_count()

        @rule(hours=st.sampled_from([0.5, 1.1, 25, 73, 24 * 8]))
        def time_passes_and_sweep(self, hours):
            before = self._state()
            ctx.clock.advance(minutes=int(hours * 60))
            escalation.sweep(ctx, ctx.now())
            after = self._state()
            order = list(Tier)
            assert order.index(after.tier) >= order.index(before.tier)  # responsibility only moves up
            assert after.status == before.status and after.level == before.level
            self.events = self._event_count()

        @invariant()
        def consistent(self):
            if not hasattr(self, "flag_id"):
                return
            f = self._flag()
            state = to_state(f)
            assert state.status in fl.FlagStatus
            if state.status == fl.FlagStatus.CLOSED:
                assert f.closed_at is not None and f.ack_due_at is None and f.handle_due_at is None
            if state.status not in fl.ACK_CLOCK:
                assert f.ack_due_at is None
            if state.status not in fl.HANDLE_CLOCK:
                assert f.handle_due_at is None
            if f.is_watch:
                assert f.level == "yellow" and state.tier in (Tier.CLASS, Tier.SCHOOL)
            with ctx.uow() as uow:
                s = uow.session
                n_open = s.scalar(sa.select(sa.func.count()).select_from(Flag)
                                  .where(Flag.student_id == f.student_id, Flag.status != "closed"))
                logged = s.scalar(sa.select(sa.func.count()).select_from(EventLog)
                                  .where(EventLog.object_id == str(f.id), EventLog.kind.like("flag:%"),
                                         EventLog.kind.not_in(("flag:evidence_attached", "flag:reported"))))
                events = s.scalar(sa.select(sa.func.count()).select_from(FlagEvent).where(FlagEvent.flag_id == f.id))
            assert n_open <= 1
            assert logged == events, "every flag event is in the hash-chained log"

    run_state_machine_as_test(FlagMachine, settings=settings(
        max_examples=20, stateful_step_count=15, deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]))
    with ctx.uow() as uow:
        assert uow.session.scalar(sa.select(sa.func.count()).select_from(Student)) > 25
