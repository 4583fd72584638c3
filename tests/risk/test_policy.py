"""The model can only add a yellow watch level; it never removes, lowers or delays a rule flag."""

import math

from hypothesis import given
from hypothesis import strategies as st

from mh_platform.core import flag_rules as fr
from mh_platform.core.types import Level
from mh_platform.risk.policy import DEFAULT_POLICY, combine, rank
from mh_platform.risk.predict import WatchSignal

levels = st.sampled_from([None, Level.YELLOW, Level.ORANGE, Level.RED])
probabilities = st.floats(allow_nan=True, allow_infinity=True)
watch_values = st.one_of(
    st.none(),
    st.booleans(),
    st.builds(lambda p, o, t: WatchSignal(probability=p, top_items=(), over_threshold=o, threshold=t),
              probabilities, st.booleans(), probabilities),
    st.builds(lambda w, p: fr.WatchSignal(watch=w, probability=p), st.booleans(), probabilities),
    st.text(max_size=5), st.integers(), st.floats(allow_nan=True),
)


@given(levels, watch_values)
def test_combine_never_removes_lowers_or_changes_a_rule_flag(rule, watch):
    out = combine(rule, watch)
    assert rank(out) >= rank(rule)
    if rule is not None:
        assert out == rule  # returned as the rules gave it; the model is not consulted
    else:
        assert out in (None, Level.YELLOW)  # the model alone reaches at most yellow


@given(levels, watch_values, watch_values)
def test_combine_result_does_not_depend_on_the_model_when_a_rule_fired(rule, w1, w2):
    if rule is not None:
        assert combine(rule, w1) == combine(rule, w2)


@given(st.booleans(), probabilities)
def test_yellow_only_when_the_signal_is_over_threshold(over, p):
    sig = WatchSignal(probability=p, top_items=(), over_threshold=over, threshold=0.2)
    assert combine(None, sig) == (Level.YELLOW if over else None)
    assert combine(None, fr.WatchSignal(watch=over, probability=None if math.isnan(p) else p)) == (
        Level.YELLOW if over else None)


@given(levels, st.booleans())
def test_combine_agrees_with_the_core_evidence_merge(rule, over):
    rule_evidence = [] if rule is None else [fr.Evidence(fr.EvidenceSource.BAND, rule, "band:x:y")]
    me = fr.model_evidence(fr.WatchSignal(watch=over))
    core = fr.evidence_level(rule_evidence + ([me] if me is not None else []))
    assert combine(rule, over) == core


def test_policy_is_data_with_a_yellow_ceiling():
    assert DEFAULT_POLICY.max_level == Level.YELLOW
    assert 0 < DEFAULT_POLICY.target_flag_rate <= DEFAULT_POLICY.flag_rate_cap <= 0.10
    d = DEFAULT_POLICY.as_dict()
    assert d["max_level"] == "yellow" and d["flag_rate_cap"] == DEFAULT_POLICY.flag_rate_cap
