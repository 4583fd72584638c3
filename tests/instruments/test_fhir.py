"""FHIR export/import, validated with fhir.resources (R4B models: the installed fhir.resources 8.x
ships R5 as default plus R4B and STU3; R4B is the R4-compatible release) and compared with NLM's
LHC-Forms PHQ-9 Questionnaire (/work/shared/reference/fhir)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fhir.resources.R4B.questionnaire import Questionnaire
from fhir.resources.R4B.questionnaireresponse import QuestionnaireResponse

from mh_platform.core.fhir import (
    ITEM_WEIGHT,
    LOINC,
    ORDINAL_VALUE,
    answers_from_response,
    to_questionnaire,
    to_questionnaire_response,
)
from mh_platform.core.instruments import load_all, load_instrument
from mh_platform.core.scoring import score

REF = Path(__file__).resolve().parents[1] / "fixtures" / "fhir" / "lhcforms_phq9_r4.json"  # NLM LHC-Forms PHQ-9
ALL = load_all()


def _ref() -> dict:
    return json.loads(REF.read_text(encoding="utf-8"))


def _ext(option: dict, url: str):
    return next(e["valueDecimal"] for e in option["extension"] if e["url"] == url)


@pytest.mark.parametrize("iid", sorted(ALL))
@pytest.mark.parametrize("lang", ["en", "zh"])
def test_every_instrument_exports_a_valid_questionnaire(iid, lang):
    q = to_questionnaire(ALL[iid], lang=lang)
    model = Questionnaire.model_validate(q)
    assert model.copyright == ALL[iid].licence.copyright
    assert model.status == "active"


def test_phq9_carries_loinc_panel_item_and_answer_codes_like_the_nlm_form():
    ref = _ref()
    q = to_questionnaire(load_instrument("phq9"))
    assert q["code"][0] == {"system": LOINC, "code": "44249-1", "display": q["code"][0]["display"]}
    ours = {i["code"][0]["code"]: i for i in q["item"] if i.get("code")}
    ref_items = [i for i in ref["item"] if i.get("answerOption")]
    for r in ref_items:
        code = r["code"][0]["code"]
        assert code in ours, f"item {code} missing"
        mine = ours[code]
        assert mine["linkId"] == r["linkId"]
        got = [(o["valueCoding"]["code"], _ext(o, ORDINAL_VALUE)) for o in mine["answerOption"]]
        if any(e["url"] == ORDINAL_VALUE for e in r["answerOption"][0].get("extension", [])):
            want = [(o["valueCoding"]["code"], _ext(o, ORDINAL_VALUE)) for o in r["answerOption"]]
            assert got == want, code
        else:  # the difficulty item has codes but no scores in the reference
            assert [c for c, _ in got] == [o["valueCoding"]["code"] for o in r["answerOption"]]
    # the 9 scored items in the official order
    assert [c for c in ours if c not in ("44261-6", "69722-7")] == \
        ["44250-9", "44255-8", "44259-0", "44254-1", "44251-7", "44258-2", "44252-5", "44253-3", "44260-8"]
    assert "44261-6" in ours  # total score item
    for o in ours["44250-9"]["answerOption"]:
        assert _ext(o, ITEM_WEIGHT) == _ext(o, ORDINAL_VALUE)
        assert o["valueCoding"]["system"] == LOINC


def test_gad7_carries_loinc_codes():
    q = to_questionnaire(load_instrument("gad7"))
    Questionnaire.model_validate(q)
    assert q["code"][0]["code"] == "69737-5"
    codes = [i["code"][0]["code"] for i in q["item"] if i.get("code")]
    assert codes[:7] == ["69725-0", "68509-9", "69733-4", "69734-2", "69735-9", "69689-8", "69736-7"]
    assert "70274-6" in codes
    first = next(i for i in q["item"] if i.get("code") and i["code"][0]["code"] == "69725-0")
    assert [(o["valueCoding"]["code"], _ext(o, ORDINAL_VALUE)) for o in first["answerOption"]] == \
        [("LA6568-5", 0), ("LA6569-3", 1), ("LA6570-1", 2), ("LA6571-9", 3)]


def test_skip_logic_becomes_enable_when():
    q = to_questionnaire(load_instrument("asq"))
    q5 = next(i for i in q["item"] if i.get("prefix") == "5")
    assert q5["enableBehavior"] == "any"
    assert [e["question"] for e in q5["enableWhen"]] == ["item-1", "item-2", "item-3", "item-4"]
    assert all(e["operator"] == "!=" and e["answerCoding"]["code"] == "no" for e in q5["enableWhen"])


def test_chinese_export_uses_chinese_text():
    q = to_questionnaire(load_instrument("phq9"), lang="zh")
    assert q["language"] == "zh-CN"
    item1 = next(i for i in q["item"] if i.get("prefix") == "1")
    assert item1["text"] == "做事时提不起劲或没有兴趣"
    assert item1["answerOption"][0]["valueCoding"]["display"] == "完全不会"


def _nlm_response(values: dict[str, int | None]) -> dict:
    """A QuestionnaireResponse as LHC-Forms would write it for the NLM PHQ-9 form (no coding system)."""
    ref = _ref()
    items = []
    for r in ref["item"]:
        if not r.get("answerOption"):
            continue
        v = values.get(r["code"][0]["code"])
        node = {"linkId": r["linkId"], "text": r["text"]}
        if v is not None:
            node["answer"] = [{"valueCoding": r["answerOption"][v]["valueCoding"]}]
        items.append(node)
    return {"resourceType": "QuestionnaireResponse", "status": "completed", "item": items}


def test_import_of_an_nlm_style_response_scores_like_the_form():
    vals = {"44250-9": 3, "44255-8": 2, "44259-0": 1, "44254-1": 0, "44251-7": 0,
            "44258-2": 1, "44252-5": 0, "44253-3": 0, "44260-8": 1, "69722-7": 1}
    qr = _nlm_response(vals)
    QuestionnaireResponse.model_validate(qr)
    inst = load_instrument("phq9")
    answers = answers_from_response(inst, qr)
    assert answers["1"] == 3 and answers["2"] == 2 and answers["9"] == 1 and answers["10"] == 1
    r = score(inst, answers)
    assert (r.total, r.band.id, r.critical) == (8, "mild", [9])


def test_import_with_missing_answers_and_unknown_code():
    inst = load_instrument("phq9")
    vals = {"44250-9": 1, "44255-8": 1, "44259-0": 1, "44254-1": 1, "44251-7": 1, "44258-2": 1,
            "44252-5": 1, "44253-3": 1, "44260-8": None}
    r = score(inst, answers_from_response(inst, _nlm_response(vals)))
    assert (r.total, r.status, r.critical_unanswered) == (9, "prorated", [9])
    qr = _nlm_response({**vals, "44260-8": 0})
    qr["item"][0]["answer"] = [{"valueCoding": {"system": LOINC, "code": "LA9999-9"}}]
    r = score(inst, answers_from_response(inst, qr))
    assert r.status == "invalid" and r.errors


def test_gad7_alias_answer_code_maps_by_score():
    inst = load_instrument("gad7")
    qr = to_questionnaire_response(inst, {str(n): 0 for n in range(1, 8)})
    qr["item"][1]["answer"] = [{"valueCoding": {"system": LOINC, "code": "LA18938-3", "display": "More days than not"}}]
    assert score(inst, answers_from_response(inst, qr)).total == 2


@pytest.mark.parametrize("iid", sorted(ALL))
def test_round_trip_through_a_questionnaire_response(iid):
    inst = ALL[iid]
    answers = {str(it.number): it.options[len(it.options) // 2].value for it in inst.items}
    qr = to_questionnaire_response(inst, answers)
    QuestionnaireResponse.model_validate(qr)
    back = answers_from_response(inst, qr)
    assert back == answers
    assert score(inst, back).to_json() == score(inst, answers).to_json()


def test_rejects_other_resources():
    with pytest.raises(ValueError, match="QuestionnaireResponse"):
        answers_from_response(load_instrument("phq9"), {"resourceType": "Patient"})
