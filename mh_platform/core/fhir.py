"""FHIR R4 interchange for instruments (pure: plain dicts in and out, no FHIR library needed).

* ``to_questionnaire(instrument)`` — the instrument as a FHIR R4 Questionnaire: LOINC panel code on
  ``Questionnaire.code``, LOINC item codes on ``item.code``, answer options as ``valueCoding`` (LOINC
  answer codes where the definition has them) carrying the item score both as the R4
  ``ordinalValue`` extension (as in NLM's LHC-Forms PHQ-9) and as the newer ``itemWeight`` extension,
  plus the printed value as ``questionnaire-optionPrefix``. Skip logic becomes ``enableWhen`` where
  it can be expressed. linkIds follow LHC-Forms (``/44250-9``) when an item has a LOINC code,
  otherwise ``item-<n>``.
* ``answers_from_response(instrument, qr)`` — a QuestionnaireResponse (ours, or LHC-Forms' for the
  same LOINC form) to the answers mapping ``scoring.score`` takes. Anything it cannot map is passed
  on as a value that ``score`` reports as an error, never silently dropped.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from mh_platform.core.instruments import Condition, Instrument, Item, Option

LOINC = "http://loinc.org"
ORDINAL_VALUE = "http://hl7.org/fhir/StructureDefinition/ordinalValue"
ITEM_WEIGHT = "http://hl7.org/fhir/StructureDefinition/itemWeight"
OPTION_PREFIX = "http://hl7.org/fhir/StructureDefinition/questionnaire-optionPrefix"
BASE_URL = "urn:mh-platform:fhir"
# alternative LOINC answer codes seen in published forms, mapped to the code our definitions use
LOINC_ANSWER_ALIASES = {"LA18938-3": "LA6570-1"}  # GAD-7 item 2 "More days than not" (LHC-Forms), score 2


def fhir_id(instrument_id: str) -> str:
    """FHIR ids allow [A-Za-z0-9-.] only."""
    return instrument_id.replace("_", "-")


def option_system(inst: Instrument) -> str:
    return f"{BASE_URL}:CodeSystem:{inst.id}:option"


def link_id(item: Item) -> str:
    return f"/{item.loinc}" if item.loinc else f"item-{item.number}"


def _text(en: str | None, zh: str | None, lang: str) -> str | None:
    return (zh or en) if lang == "zh" else (en or zh)


def _coding(inst: Instrument, o: Option, lang: str) -> dict[str, Any]:
    c: dict[str, Any] = ({"system": LOINC, "code": o.loinc} if o.loinc
                         else {"system": option_system(inst), "code": str(o.value)})
    display = _text(o.en, o.zh, lang)
    if display:
        c["display"] = display
    return c


def _enable_when(inst: Instrument, cond: Condition, lang: str) -> tuple[list[dict], str] | None:
    """FHIR enableWhen for 'ask unless <cond>' when expressible (single 'in', or 'all' of single 'in')."""

    def neq(c: Condition) -> list[dict]:
        it = inst.item(c.item)
        out = []
        for v in c.values:
            o = it.response_set.option(v)
            if o is None:
                return []
            out.append({"question": link_id(it), "operator": "!=", "answerCoding": _coding(inst, o, lang)})
        return out

    if cond.op == "in":
        ew = neq(cond)
        return (ew, "all") if ew else None
    if cond.op == "all" and all(c.op == "in" and len(c.values) == 1 for c in cond.children):
        ew = [e for c in cond.children for e in neq(c)]
        return (ew, "any") if len(ew) == len(cond.children) else None
    return None


def to_questionnaire(inst: Instrument, lang: str = "en") -> dict[str, Any]:
    """The instrument as a FHIR R4 Questionnaire resource (a JSON-ready dict)."""
    variant = inst.default_variant
    q: dict[str, Any] = {
        "resourceType": "Questionnaire",
        "id": fhir_id(inst.id),
        "url": f"{BASE_URL}:Questionnaire:{inst.id}",
        "version": inst.version,
        "name": re.sub(r"[^A-Za-z0-9_]", "_", inst.short_name.upper()),
        "title": _text(inst.name_en, inst.name_zh, lang),
        "status": "active",
        "language": "zh-CN" if lang == "zh" else "en",
        "subjectType": ["Patient"],
        "copyright": inst.licence.copyright,
        "description": f"{_text(inst.time_frame_en, inst.time_frame_zh, lang)}. {inst.licence.citation}",
    }
    if inst.loinc_panel:
        q["identifier"] = [{"system": LOINC, "value": inst.loinc_panel}]
        q["code"] = [{"system": LOINC, "code": inst.loinc_panel, "display": inst.name_en}]
    items: list[dict[str, Any]] = []
    if inst.instructions_en or inst.instructions_zh:
        items.append({"linkId": "instructions", "type": "display",
                      "text": _text(inst.instructions_en, inst.instructions_zh, lang)})
    for it in inst.items:
        entry: dict[str, Any] = {
            "linkId": link_id(it),
            "prefix": str(it.number),
            "text": _text(it.en, it.zh, lang) or f"{inst.short_name} item {it.number}",
            "type": "choice",
            "required": False,
        }
        if it.loinc:
            entry["code"] = [{"system": LOINC, "code": it.loinc, "display": it.en or f"item {it.number}"}]
        opts = []
        for o in it.options:
            s = it.item_score(o.value, variant.item_score_offset)
            ext = [{"url": OPTION_PREFIX, "valueString": str(o.value)},
                   {"url": ORDINAL_VALUE, "valueDecimal": s},
                   {"url": ITEM_WEIGHT, "valueDecimal": s}]
            opts.append({"extension": ext, "valueCoding": _coding(inst, o, lang)})
        entry["answerOption"] = opts
        if it.skip is not None:
            ew = _enable_when(inst, it.skip.when, lang)
            if ew:
                entry["enableWhen"], entry["enableBehavior"] = ew
        items.append(entry)
    if inst.loinc_total:
        items.append({"linkId": f"/{inst.loinc_total}", "type": "integer", "readOnly": True,
                      "code": [{"system": LOINC, "code": inst.loinc_total, "display": f"{inst.short_name} total score"}],
                      "text": f"{inst.short_name} total score" if lang == "en" else f"{inst.short_name} 总分"})
    q["item"] = items
    return q


def _walk(items: Iterable[Mapping[str, Any]]) -> Iterable[Mapping[str, Any]]:
    for it in items or ():
        yield it
        yield from _walk(it.get("item", ()))
        for ans in it.get("answer", ()) or ():
            yield from _walk(ans.get("item", ()))


def answers_from_response(inst: Instrument, qr: Mapping[str, Any]) -> dict[str, Any]:
    """A FHIR QuestionnaireResponse as the answers mapping of ``scoring.score``.

    Items are matched by linkId (``/<LOINC>``, ``item-<n>`` or the bare item number); answers by
    coding (LOINC answer code or our option code), or by a plain valueInteger / valueString /
    valueBoolean. An unmappable answer is passed on as a marker string so that ``score`` reports it.
    """
    if qr.get("resourceType") != "QuestionnaireResponse":
        raise ValueError("not a QuestionnaireResponse")
    by_link: dict[str, Item] = {}
    for known in inst.items:
        by_link[link_id(known)] = known
        by_link[f"item-{known.number}"] = known
        by_link[str(known.number)] = known
        if known.loinc:
            by_link[known.loinc] = known
    sys_own = option_system(inst)
    out: dict[str, Any] = {}
    for node in _walk(qr.get("item", ())):
        it = by_link.get(str(node.get("linkId", "")))
        if it is None:
            continue
        answers = node.get("answer") or []
        if not answers:
            out[str(it.number)] = None
            continue
        a = answers[0]
        value: Any = f"unmapped FHIR answer {sorted(k for k in a if k.startswith('value'))}"
        if "valueCoding" in a:
            c = a["valueCoding"]
            code, system = c.get("code"), c.get("system")
            code = LOINC_ANSWER_ALIASES.get(code, code)
            for o in it.options:
                if (o.loinc and code == o.loinc and system in (None, LOINC)) or \
                        (system in (None, sys_own) and code == str(o.value)):
                    value = o.value
                    break
            else:
                value = f"unknown coding {system}|{code}"
        elif "valueInteger" in a:
            value = a["valueInteger"]
        elif "valueDecimal" in a and float(a["valueDecimal"]).is_integer():
            value = int(a["valueDecimal"])
        elif "valueString" in a:
            value = a["valueString"]
        elif "valueBoolean" in a:
            value = "yes" if a["valueBoolean"] else "no"
        if len(answers) > 1:
            value = "more than one answer"
        out[str(it.number)] = value
    return out


def to_questionnaire_response(inst: Instrument, answers: Mapping[Any, Any], lang: str = "en") -> dict[str, Any]:
    """Answers as a completed QuestionnaireResponse for our Questionnaire (round-trip and tests)."""
    items = []
    for it in inst.items:
        v = answers.get(str(it.number), answers.get(it.number))
        node: dict[str, Any] = {"linkId": link_id(it)}
        o = it.response_set.option(v) if v is not None else None
        if o is not None:
            node["answer"] = [{"valueCoding": _coding(inst, o, lang)}]
        items.append(node)
    return {"resourceType": "QuestionnaireResponse", "status": "completed",
            "questionnaire": f"{BASE_URL}:Questionnaire:{inst.id}|{inst.version}", "item": items}
