"""Flag rules: evidence from bands, critical items, concerns, deterioration and the model; merge never lowers."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mh_platform.core.errors import ValidationFailed
from mh_platform.core.flag_rules import (
    ConcernEvidence,
    Evidence,
    EvidenceSource,
    ScreeningEvidence,
    Urgency,
    WatchSignal,
    concern_evidence,
    default_flag_policy,
    evidence_level,
    is_watch_only,
    merge_into_open_flag,
    model_evidence,
    parse_flag_policy,
    reliable_deterioration,
    screening_evidence,
)
from mh_platform.core.types import LEVEL_RANK, Level

R, OR, Y = Level.RED, Level.ORANGE, Level.YELLOW


def phq9(band, total, **kw):
    return ScreeningEvidence(instrument_id="phq9", band_id=band, total=total, **kw)


def by_source(evs):
    return {e.source: e for e in evs}


@pytest.mark.parametrize(("band", "total", "level"), [
    ("minimal", 2, None), ("mild", 7, None), ("moderate", 12, Y), ("moderately_severe", 17, OR),
    ("severe", 23, R), ("negative", 14, None), ("positive", 15, OR),
])
def test_phq9_band_levels(band, total, level):
    ev = [e for e in screening_evidence(phq9(band, total)) if e.source == EvidenceSource.BAND]
    assert (ev[0].level if ev else None) == level
    if ev:
        assert ev[0].reason_code == f"band:phq9:{band}"
        assert ev[0].detail == {"instrument": "phq9", "band": band, "total": total}


def test_phq9_item9_is_red_even_when_total_is_minimal():
    evs = by_source(screening_evidence(phq9("minimal", 1, critical=[9])))
    assert evs[EvidenceSource.CRITICAL].level == R
    assert evs[EvidenceSource.CRITICAL].reason_code == "critical:phq9:9"
    assert EvidenceSource.BAND not in evs


def test_critical_counts_on_invalid_form_and_low_quality():
    evs = screening_evidence(ScreeningEvidence("phq9", None, None, critical=[9], quality_ok=False))
    assert [(e.source, e.level) for e in evs] == [(EvidenceSource.CRITICAL, R)]


def test_low_quality_never_suppresses_evidence_only_annotates_it():
    """ml.md §4: a quality note suggests re-administration; it never removes a risk flag."""
    s = phq9("severe", 23, previous_total=3, previous_band_id="minimal", rc_value=6, quality_ok=False)
    low = screening_evidence(s)
    ok = screening_evidence(phq9("severe", 23, previous_total=3, previous_band_id="minimal", rc_value=6))
    assert [(e.source, e.level) for e in low] == [(e.source, e.level) for e in ok]
    assert {e.source for e in low} == {EvidenceSource.BAND, EvidenceSource.DETERIORATION}
    assert all(e.detail.get("quality") == "readminister" for e in low)


def test_unanswered_critical_is_orange_never_silent():
    evs = screening_evidence(phq9("minimal", 0, critical_unanswered=[9]))
    assert [(e.source, e.level) for e in evs] == [(EvidenceSource.CRITICAL_UNANSWERED, OR)]


def test_fired_and_unanswered_same_item_counts_once_as_fired():
    evs = screening_evidence(phq9("minimal", 0, critical=[9], critical_unanswered=[9]))
    assert [e.source for e in evs] == [EvidenceSource.CRITICAL]


def test_asq_any_positive_is_red():
    """NIMH: a non-acute positive still needs a safety assessment before the student leaves (same day)."""
    acute = screening_evidence(ScreeningEvidence("asq", "acute_positive", None, critical=[1, 5]))
    assert evidence_level(acute) == R
    non_acute = screening_evidence(ScreeningEvidence("asq", "non_acute_positive", None, critical=[2]))
    assert {e.level for e in non_acute} == {R}


def test_k10_moderate_is_shown_not_flagged_severe_is_yellow():
    assert screening_evidence(ScreeningEvidence("k10", "moderate", 27)) == []
    assert evidence_level(screening_evidence(ScreeningEvidence("k10", "severe", 33))) == Y


def test_unconfigured_critical_item_defaults_to_red_and_instrument_level_can_raise():
    evs = screening_evidence(ScreeningEvidence("newscale", "low", 1, critical=[3]))
    assert evs[0].level == R
    # configured orange (PHQ-9 unanswered-style level), but the instrument file says red → red
    evs = screening_evidence(ScreeningEvidence("asq", None, None, critical=[1], critical_levels={1: R}))
    assert evs[0].level == R


def test_unlisted_instrument_uses_band_concern_from_definition():
    s = ScreeningEvidence("gad7", "severe", 18, band_concern=OR)
    assert evidence_level(screening_evidence(s)) == OR
    assert screening_evidence(ScreeningEvidence("gad7", "mild", 6)) == []


def test_a_band_the_policy_names_overrides_the_definition_concern_others_keep_it():
    # k10: the policy names "moderate" as "none" and "severe" as yellow, against the file's yellow / orange
    assert screening_evidence(ScreeningEvidence("k10", "moderate", 27, band_concern=Y)) == []
    assert evidence_level(screening_evidence(ScreeningEvidence("k10", "severe", 33, band_concern=OR))) == Y
    # a band of a cut-off set the policy does not name keeps the file's concern: never silent
    assert evidence_level(screening_evidence(ScreeningEvidence("gad7", "positive", 7, band_concern=Y))) == Y
    assert screening_evidence(phq9("mild", 7)) == []  # no concern in the file, none in the policy


def test_a_band_level_of_none_parses_and_is_not_flagged():
    p = parse_flag_policy('''format = 1
[concern_urgency]
immediate = "red"
soon = "orange"
routine = "yellow"
[instruments.gad7.bands]
mild = "none"
moderate = "orange"
''')
    assert screening_evidence(ScreeningEvidence("gad7", "mild", 6, band_concern=Y), p) == []
    assert evidence_level(screening_evidence(ScreeningEvidence("gad7", "moderate", 11, band_concern=Y), p)) == OR
    assert evidence_level(screening_evidence(ScreeningEvidence("gad7", "severe", 18, band_concern=OR), p)) == OR


def test_every_shipped_band_with_a_concern_flags_under_the_default_policy_unless_named_none():
    """No shipped cut-off set is silent by accident: a band whose file gives a concern raises a flag,
    except the bands the policy deliberately names "none" (K10 moderate / ABS high)."""
    from mh_platform.core.flag_rules import band_level
    from mh_platform.core.instruments import load_all

    silent = set()
    for iid, inst in load_all().items():
        for cs in inst.cutoff_sets:
            for b in cs.bands:
                if b.concern is not None and band_level(iid, b.id, b.concern) is None:
                    silent.add((iid, b.id))
    assert silent == {("k10", "moderate"), ("k10", "high")}


def test_an_unanswered_critical_item_takes_the_higher_of_the_policy_and_the_file():
    evs = screening_evidence(ScreeningEvidence("newscale", None, None, critical_unanswered=[4], critical_levels={4: R}))
    assert [(e.source, e.level) for e in evs] == [(EvidenceSource.CRITICAL_UNANSWERED, R)]
    evs = screening_evidence(ScreeningEvidence("phq9", None, None, critical_unanswered=[9], critical_levels={9: Y}))
    assert [e.level for e in evs] == [OR]  # the policy's orange; the file never lowers it


def test_reliable_deterioration_needs_rc_and_band_crossing():
    up = phq9("moderate", 10, previous_total=4, previous_band_id="minimal", rc_value=6)
    assert reliable_deterioration(up)
    det = by_source(screening_evidence(up))[EvidenceSource.DETERIORATION]
    assert det.level == Y and det.detail["change"] == 6 and det.detail["from_band"] == "minimal"
    # change below the RC value: no deterioration, even with a crossing
    assert not reliable_deterioration(phq9("mild", 5, previous_total=4, previous_band_id="minimal", rc_value=6))
    # big change inside one band: no crossing
    assert not reliable_deterioration(phq9("severe", 27, previous_total=20, previous_band_id="severe", rc_value=6))
    # improvement is not deterioration
    assert not reliable_deterioration(phq9("minimal", 2, previous_total=12, previous_band_id="moderate", rc_value=6))
    # no previous screening
    assert not reliable_deterioration(phq9("severe", 27, rc_value=6))


def test_deterioration_on_strength_scale_is_a_drop():
    s = ScreeningEvidence("who5", "poor", 8, previous_total=20, previous_band_id="good", rc_value=5,
                          higher_is_worse=False)
    assert reliable_deterioration(s)
    assert not reliable_deterioration(ScreeningEvidence("who5", "good", 20, previous_total=8,
                                                        previous_band_id="poor", rc_value=5, higher_is_worse=False))


@pytest.mark.parametrize(("urgency", "level"), [("immediate", R), ("soon", OR), ("routine", Y)])
def test_concern_urgency(urgency, level):
    e = concern_evidence(ConcernEvidence(Urgency(urgency), "withdrawn"))
    assert (e.source, e.level, e.reason_code) == (EvidenceSource.CONCERN, level, f"concern:{urgency}")
    assert e.detail == {"category": "withdrawn", "urgency": urgency}


def test_model_watch_is_at_most_yellow():
    assert model_evidence(WatchSignal(False, 0.1)) is None
    e = model_evidence(WatchSignal(True, 0.912345, "risk-v1"))
    assert e is not None and e.level == Y and e.detail == {"model_version": "risk-v1", "probability": 0.9123}
    assert is_watch_only([e]) and not is_watch_only([]) and not is_watch_only(
        [e, concern_evidence(ConcernEvidence(Urgency.ROUTINE))])


def test_policy_refuses_model_above_yellow_and_bad_levels():
    text = """format = 1
[defaults]
model_watch = "orange"
[concern_urgency]
immediate = "red"
soon = "purple"
[instruments.x.critical]
zero = "red"
[cluster]
window = "two weeks"
class_threshold = 0
"""
    with pytest.raises(ValidationFailed) as exc:
        parse_flag_policy(text)
    fields = {e["field"] for e in exc.value.errors}
    assert {"defaults.model_watch", "concern_urgency.soon", "concern_urgency.routine", "instruments.x.critical",
            "cluster.window", "cluster.class_threshold"} <= fields


def test_policy_not_toml_and_wrong_format():
    with pytest.raises(ValidationFailed):
        parse_flag_policy("not = [toml")
    with pytest.raises(ValidationFailed):
        parse_flag_policy({"format": 2, "concern_urgency": {"immediate": "red", "soon": "orange", "routine": "yellow"}})


def test_default_policy_loads_with_cluster_settings():
    p = default_flag_policy()
    assert p.cluster.class_threshold == 3 and p.cluster.school_threshold == 5
    assert p.cluster.window.days == 14 and p.cluster.levels == {R, OR}


levels = st.sampled_from(list(Level))
evidence = st.builds(Evidence, st.sampled_from(list(EvidenceSource)), levels, st.just("x"))


@given(st.one_of(st.none(), levels), st.lists(evidence, max_size=5))
def test_merge_never_lowers_and_takes_max(current, evs):
    new = merge_into_open_flag(current, evs)
    everything = [lv for lv in [current, *(e.level for e in evs)] if lv is not None]
    if not everything:
        assert new is None
    else:
        assert new is not None and LEVEL_RANK[new] == max(LEVEL_RANK[lv] for lv in everything)
        if current is not None:
            assert LEVEL_RANK[new] >= LEVEL_RANK[current]
