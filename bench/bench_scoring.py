"""Scoring engine throughput, each against a baseline measured in the same run (issue 3).

* batch: ``score_many`` (validation, proration, bands, critical items, short forms) over PHQ-9
  arrays vs a hand-written numpy sum-and-cut over the same arrays (no validation at all);
  target ratio ≥ 0.25.
* single: ``score`` on one PHQ-9 response vs a naive generic Python loop over the definition
  (linear option search, proration, band scan, critical items); target ratio ≥ 0.5.
Medians of several runs; about 10–20 s in total.
"""

from __future__ import annotations

import time

import numpy as np

from bench.common import median_time, result
from mh_platform.core.instruments import load_instrument
from mh_platform.core.scoring import score, score_many

N_BATCH = 1_000_000
N_SINGLE = 20_000


def _arrays(n: int, seed: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    # complete forms, skewed like real PHQ-9 answers (most answers 0/1), item 10 answered
    return rng.choice(4, size=(n, 10), p=[0.5, 0.3, 0.12, 0.08]).astype(np.float64)


def naive_score(inst, answers: dict) -> tuple:
    """A straightforward generic loop over the definition: the single-response baseline."""
    s = answered = expected = 0
    for item in inst.items:
        if not item.scored:
            continue
        expected += 1
        v = answers.get(str(item.number))
        if v is None:
            continue
        for o in item.response_set.options:
            if o.value == v:
                s += o.score
                answered += 1
                break
    missing = expected - answered
    if missing == 0:
        total = s
    elif missing <= inst.missing.max_missing:
        total = int(s * expected / answered + 0.5)
    else:
        total = None
    band = None
    if total is not None:
        for b in inst.cutoff_sets[0].bands:
            if b.min <= total <= b.max:
                band = b
                break
    critical = [c.item for c in inst.critical_items if answers.get(str(c.item)) in c.levels]
    return total, band, critical


def run() -> list[dict]:
    inst = load_instrument("phq9")
    X = _arrays(N_BATCH)
    cuts = np.array([b.max for b in inst.cutoff_set().bands[:-1]], dtype=np.float64)

    def baseline_batch():
        tot = X[:, :9].sum(axis=1)
        return np.searchsorted(cuts, tot, side="left")

    def engine_batch():
        return score_many(inst, X)

    engine_batch()  # warm the compiled plan
    t_base = median_time(baseline_batch, repeat=5)
    t_eng = median_time(engine_batch, repeat=5)
    rows = [result("scoring.batch_phq9", "responses/s", N_BATCH / t_eng, N_BATCH / t_base, 0.25,
                   n=N_BATCH, engine_s=round(t_eng, 4), baseline_s=round(t_base, 4))]

    answers = [{str(j + 1): (None if np.isnan(v) else int(v)) for j, v in enumerate(row)}
               for row in X[:N_SINGLE]]

    def baseline_single():
        for a in answers:
            naive_score(inst, a)

    def engine_single():
        for a in answers:
            score(inst, a)

    engine_single()
    # interleave the two to share the machine's load fairly
    tb, te = [], []
    for _ in range(5):
        t0 = time.perf_counter()
        baseline_single()
        tb.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        engine_single()
        te.append(time.perf_counter() - t0)
    tb_med, te_med = float(np.median(tb)), float(np.median(te))
    rows.append(result("scoring.single_phq9", "responses/s", N_SINGLE / te_med, N_SINGLE / tb_med, 0.5,
                       engine_us=round(te_med / N_SINGLE * 1e6, 3), baseline_us=round(tb_med / N_SINGLE * 1e6, 3)))
    return rows


if __name__ == "__main__":
    for r in run():
        print(r)
