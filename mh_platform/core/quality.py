"""Response quality (careless / insufficient-effort responding) — ml.md §4. Pure: stdlib + numpy.

Indices, over one student's battery (one page per instrument):

* **time per item** — seconds on a page / answered items on it; below 2 s/item is "too fast"
  (Huang et al. 2012 page-time rule; consistency drops sharply below 1 s/item, Wood et al. 2017).
* **non-zero longstring** — the longest run of identical answers across the battery, counting only
  answers that are *not* the lowest option of their item (all-zero is the commonest healthy pattern
  and must not count); flagged at ≥ 12 (ml.md §4: ≥ 12 of 16 flags 0.10 % of attentive students).
* **inconsistency pairs** — cross-instrument antonym pairs (WHO-5 positive items vs PHQ-9 / PHQ-A
  mood, anhedonia, fatigue, sleep items): a pair is contradictory when both answers sit at the same
  end of their scales (e.g. cheerful "all of the time" and depressed "nearly every day").
* **polytomous person-fit lz** (Drasgow, Levine & Williams 1985) under a graded response model
  (Samejima) with known item parameters. For answered items i with observed category x_i and
  category probabilities P_ik(θ̂)::

      l0     = Σ_i log P_{i,x_i}(θ̂)
      E[l0]  = Σ_i Σ_k P_ik log P_ik
      Var[l0]= Σ_i [ Σ_k P_ik (log P_ik)² − (Σ_k P_ik log P_ik)² ]
      lz     = (l0 − E[l0]) / sqrt(Var[l0])

  θ̂ is the EAP estimate on a grid with a standard-normal prior (finite for all-zero patterns).
  GRM: P*(x ≥ k) = 1 / (1 + exp(−a(θ − b_k))), P_ik = P*(≥k) − P*(≥k+1). Low lz (< −2) means a
  pattern unlikely given the student's own level (e.g. random answers). lz needs item parameters
  (e.g. from the city's own data); without them it is not computed.

The result is a note (zh/en) and a suggestion: ``re_administer`` when the response shows no risk,
``interview_advised`` when it also carries a risk signal (a band with a concern level or a critical
item fired or unanswered) — a quality problem then *raises* the priority of a human interview. It never
changes a score, never removes or lowers a flag (ml.md §4 safety rules).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mh_platform.core.instruments import Instrument
from mh_platform.core.scoring import ScoreResult, score

RE_ADMINISTER = "re_administer"
INTERVIEW_ADVISED = "interview_advised"

#: antonym pairs (instrument id, item key) x (instrument id, item key): opposite poles of one state
ANTONYM_PAIRS: tuple[tuple[tuple[str, str], tuple[str, str]], ...] = (
    (("who5", "cheerful"), ("phq9", "depressed_mood")),
    (("who5", "interest"), ("phq9", "anhedonia")),
    (("who5", "active"), ("phq9", "fatigue")),
    (("who5", "rested"), ("phq9", "sleep")),
    (("who5", "cheerful"), ("phq_a", "depressed_mood")),
    (("who5", "interest"), ("phq_a", "anhedonia")),
    (("who5", "active"), ("phq_a", "fatigue")),
    (("who5", "rested"), ("phq_a", "sleep")),
)


@dataclass(frozen=True)
class Thresholds:
    seconds_per_item: float = 2.0
    min_items_for_timing: int = 3
    longstring_nonzero: int = 12
    contradictory_pairs: int = 2
    pole: float = 0.75  # a scaled answer ≥ pole (or ≤ 1 − pole) sits at an end of its scale
    lz: float = -2.0
    min_items_for_lz: int = 5


DEFAULT_THRESHOLDS = Thresholds()


@dataclass(frozen=True)
class GRMItem:
    """Graded-response-model parameters of one item: discrimination and ordered thresholds."""

    a: float
    b: tuple[float, ...]


@dataclass(frozen=True)
class Page:
    """One instrument page of a student's battery."""

    instrument: Instrument
    answers: Mapping[Any, Any]
    seconds: float | None = None
    result: ScoreResult | None = None


@dataclass(frozen=True)
class QualityResult:
    flags: tuple[str, ...]  # too_fast, longstring, inconsistent, person_misfit
    suggestion: str | None  # re_administer | interview_advised | None
    note_en: str
    note_zh: str
    indices: Mapping[str, Any] = field(default_factory=dict)
    risk: bool = False

    @property
    def ok(self) -> bool:
        return not self.flags


# --------------------------------------------------------------------------- IRT person fit


def grm_probs(theta: np.ndarray, item: GRMItem) -> np.ndarray:
    """Category probabilities, shape (len(theta), len(b) + 1)."""
    theta = np.atleast_1d(np.asarray(theta, dtype=np.float64))
    b = np.asarray(item.b, dtype=np.float64)
    star = 1.0 / (1.0 + np.exp(-item.a * (theta[:, None] - b[None, :])))  # P(X >= k), k = 1..K-1
    upper = np.concatenate([np.ones((theta.size, 1)), star], axis=1)
    lower = np.concatenate([star, np.zeros((theta.size, 1))], axis=1)
    return np.clip(upper - lower, 1e-12, 1.0)


_GRID = np.linspace(-4.0, 4.0, 81)
_LOG_PRIOR = -0.5 * _GRID**2


def lz_many(X: np.ndarray, items: Sequence[GRMItem], min_items: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Polytomous lz for each row of X (n, k) of category indexes 0..K-1 (NaN = missing).

    Returns (lz, theta_eap); lz is NaN for rows with fewer than ``min_items`` answered items.
    """
    X = np.asarray(X, dtype=np.float64)
    n, k = X.shape
    if k != len(items):
        raise ValueError(f"X has {k} columns, {len(items)} item parameter sets given")
    answered = ~np.isnan(X)
    loglik = np.zeros((n, _GRID.size))
    probs = [grm_probs(_GRID, it) for it in items]  # each (G, K_i)
    for j, P in enumerate(probs):
        xj = np.where(answered[:, j], X[:, j], 0).astype(np.intp)
        if (xj >= P.shape[1]).any() or (xj < 0).any():
            raise ValueError(f"item {j + 1}: category out of range")
        loglik += np.where(answered[:, j, None], np.log(P[:, xj].T), 0.0)
    post = loglik + _LOG_PRIOR
    post -= post.max(axis=1, keepdims=True)
    w = np.exp(post)
    w /= w.sum(axis=1, keepdims=True)
    theta = w @ _GRID
    l0 = np.zeros(n)
    e0 = np.zeros(n)
    v0 = np.zeros(n)
    for j, it in enumerate(items):
        P = grm_probs(theta, it)  # (n, K)
        logP = np.log(P)
        xj = np.where(answered[:, j], X[:, j], 0).astype(np.intp)
        m = answered[:, j]
        l0 += np.where(m, logP[np.arange(n), xj], 0.0)
        el = (P * logP).sum(axis=1)
        e0 += np.where(m, el, 0.0)
        v0 += np.where(m, (P * logP**2).sum(axis=1) - el**2, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        lz = (l0 - e0) / np.sqrt(v0)
    lz = np.where(answered.sum(axis=1) >= max(min_items, 1), lz, np.nan)
    return lz, theta


def lz_one(categories: Sequence[int | None], items: Sequence[GRMItem]) -> float | None:
    """lz of one response pattern (category indexes, None = missing)."""
    row = np.array([[np.nan if c is None else float(c) for c in categories]])
    lz, _ = lz_many(row, items)
    return None if np.isnan(lz[0]) else float(lz[0])


# --------------------------------------------------------------------------- helpers


def _category(inst: Instrument, number: int, value: Any) -> int | None:
    """Index of the answer among the item's options ordered by score (0 = lowest score)."""
    it = inst.item(number)
    o = it.response_set.option(value) if value is not None else None
    if o is None:
        return None
    ordered = sorted({x.score for x in it.options})
    s = o.score
    if it.reverse:
        s = it.response_set.min_score + it.response_set.max_score - s
        ordered = sorted({it.response_set.min_score + it.response_set.max_score - x for x in ordered})
    return ordered.index(s)


def _raw(answers: Mapping[Any, Any], number: int) -> Any:
    v = answers.get(str(number))
    return answers.get(number) if v is None else v


def _scaled(inst: Instrument, key: str, answers: Mapping[Any, Any]) -> float | None:
    """Answer of the item with ``key`` on [0, 1] by its score range (None if absent)."""
    try:
        it = inst.item_by_key(key)
    except KeyError:
        return None
    v = _raw(answers, it.number)
    s = it.item_score(v) if v is not None else None
    if s is None:
        return None
    lo, hi = it.response_set.min_score, it.response_set.max_score
    return (s - lo) / (hi - lo) if hi > lo else None


# --------------------------------------------------------------------------- assessment


def assess(pages: Sequence[Page], *, grm: Mapping[str, Sequence[GRMItem]] | None = None,
           thresholds: Thresholds = DEFAULT_THRESHOLDS,
           antonym_pairs: Sequence[tuple[tuple[str, str], tuple[str, str]]] = ANTONYM_PAIRS) -> QualityResult:
    """Quality of one student's battery. ``grm`` maps instrument id → item parameters (scored items)."""
    th = thresholds
    flags: list[str] = []
    reasons_en: list[str] = []
    reasons_zh: list[str] = []
    indices: dict[str, Any] = {}
    risk = False
    by_id: dict[str, Page] = {}

    # time per item, and the risk signal of each page (scored here if the caller did not)
    spi: dict[str, float] = {}
    for page in pages:
        inst = page.instrument
        by_id[inst.id] = page
        res = page.result if page.result is not None else score(inst, page.answers)
        if res.concern is not None:
            risk = True
        n_answered = sum(1 for it in inst.items if _raw(page.answers, it.number) is not None)
        if page.seconds is not None and n_answered >= th.min_items_for_timing:
            spi[inst.id] = page.seconds / n_answered
    indices["seconds_per_item"] = spi
    fast = sorted(i for i, v in spi.items() if v < th.seconds_per_item)
    if fast:
        flags.append("too_fast")
        reasons_en.append(f"answered too fast ({', '.join(f'{i} {spi[i]:.1f} s/item' for i in fast)})")
        reasons_zh.append(f"作答过快（{'，'.join(f'{i} 每题 {spi[i]:.1f} 秒' for i in fast)}）")

    # non-zero longstring across the whole battery, in page and item order
    best = run = 0
    last: Any = None
    for page in pages:
        inst = page.instrument
        for it in inst.items:
            if not it.scored or it.kind != "choice":
                continue  # unscored or yes/no items neither extend nor break a run
            v = _raw(page.answers, it.number)
            lowest = min(o.value for o in it.options)
            if v is None or v == lowest or it.response_set.option(v) is None:
                last, run = None, 0
                continue
            run = run + 1 if v == last else 1
            last = v
            best = max(best, run)
    indices["longstring_nonzero"] = best
    if best >= th.longstring_nonzero:
        flags.append("longstring")
        reasons_en.append(f"{best} identical non-zero answers in a row")
        reasons_zh.append(f"连续 {best} 题选择相同的非零选项")

    # cross-instrument antonym pairs
    checked = contradictory = 0
    for (ia, ka), (ib, kb) in antonym_pairs:
        if ia not in by_id or ib not in by_id:
            continue
        sa = _scaled(by_id[ia].instrument, ka, by_id[ia].answers)
        sb = _scaled(by_id[ib].instrument, kb, by_id[ib].answers)
        if sa is None or sb is None:
            continue
        checked += 1
        if (sa >= th.pole and sb >= th.pole) or (sa <= 1 - th.pole and sb <= 1 - th.pole):
            contradictory += 1
    indices["pairs_checked"] = checked
    indices["pairs_contradictory"] = contradictory
    if checked and contradictory >= min(th.contradictory_pairs, checked):
        flags.append("inconsistent")
        reasons_en.append(f"{contradictory} of {checked} opposite-meaning item pairs answered alike")
        reasons_zh.append(f"{checked} 组意义相反的题目中有 {contradictory} 组答案相互矛盾")

    # person fit
    if grm:
        lzs: dict[str, float] = {}
        for iid, params in grm.items():
            fit_page = by_id.get(iid)
            if fit_page is None:
                continue
            inst = fit_page.instrument
            scored = [it.number for it in inst.items if it.scored]
            if len(params) != len(scored):
                raise ValueError(f"{iid}: {len(params)} item parameter sets for {len(scored)} scored items")
            cats = [_category(inst, n, _raw(fit_page.answers, n)) for n in scored]
            if sum(c is not None for c in cats) >= th.min_items_for_lz:
                value = lz_one(cats, params)
                if value is not None:
                    lzs[iid] = round(value, 3)
        indices["lz"] = lzs
        misfit = sorted(i for i, v in lzs.items() if v < th.lz)
        if misfit:
            flags.append("person_misfit")
            reasons_en.append(f"answer pattern unlikely for the student's own level ({', '.join(f'{i} lz {lzs[i]:.2f}' for i in misfit)})")
            reasons_zh.append(f"作答模式与其整体水平不符（{'，'.join(f'{i} lz {lzs[i]:.2f}' for i in misfit)}）")

    if not flags:
        return QualityResult((), None, "No response-quality concern.", "未发现作答质量问题。", indices, risk)
    if risk:
        suggestion = INTERVIEW_ADVISED
        tail_en = ("The response also shows a risk signal: interview the student (do not wait for a "
                   "re-administration); scores and flags stand as scored.")
        tail_zh = "该作答同时存在风险信号：建议尽快访谈学生（不要等待重测）；得分与预警照常有效。"
    else:
        suggestion = RE_ADMINISTER
        tail_en = "Consider re-administering the screening; scores stand as scored until then."
        tail_zh = "建议重新施测；在此之前得分照常有效。"
    note_en = "Response quality: " + "; ".join(reasons_en) + ". " + tail_en
    note_zh = "作答质量：" + "；".join(reasons_zh) + "。" + tail_zh
    return QualityResult(tuple(flags), suggestion, note_en, note_zh, indices, risk)
