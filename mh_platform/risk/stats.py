"""Descriptive statistics of a synthetic cohort, scored by the project's engine (``cohort-stats``)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from mh_platform.risk.cohort import GENERATOR_VERSION, INSTRUMENTS, Cohort, generate_cohort
from mh_platform.risk.scores import cronbach_alpha, engine_has, totals

# the published figures the generator is calibrated to (ml.md §6.1, instruments.md §7.1)
TARGETS: dict[str, Any] = {
    "phq9_ge10": {"value": 0.23, "tolerance": [0.20, 0.26], "source": "Zigong, n = 63,205 (Chen 2023)"},
    "gad7_ge10": {"value": 0.142, "tolerance": [0.11, 0.17], "source": "Zhejiang, n = 27,019 (Wang 2023)"},
    "gad7_ge10_girls": {"value": 0.186, "tolerance": [0.16, 0.21], "source": "Zhejiang"},
    "gad7_ge10_boys": {"value": 0.102, "tolerance": [0.08, 0.125], "source": "Zhejiang"},
    "gad7_girl_boy_ratio": {"value": 1.82, "tolerance": [1.4, 2.0], "source": "ml.md §6.2"},
    "cronbach_alpha_phq9_gad7": {"value": 0.86, "tolerance": [0.84, 0.90], "source": "Leung 2020; ml.md §6.1"},
    "phq9_item9_positive": {"value": 0.15, "tolerance": [0.08, 0.22],
                            "source": "plausibility: item 9 has the lowest mean (0.18 in Chinese students); ml.md [sim] 19.8 %"},
    "k10_mean": {"value": 21.5, "tolerance": [19.5, 23.5], "source": "national student survey 2019, 9-18 y"},
}


def _rate(x: np.ndarray) -> float:
    return round(float(np.mean(x)), 4) if x.size else float("nan")


def cohort_stats(n_students: int = 20_000, seed: int = 0, cohort: Cohort | None = None, wave: int = 0) -> dict[str, Any]:
    """Prevalences by sex and school stage, Cronbach's alpha and reference checks for one wave."""
    t0 = time.perf_counter()
    c = cohort or generate_cohort(n_students, seed, waves=1)
    gen_seconds = time.perf_counter() - t0
    w = c.waves[wave]
    tot = {name: totals(name, w.items[name]) for name in INSTRUMENTS}
    cases = {
        "phq9_ge10": tot["phq9"] >= 10,
        "phq9_ge15": tot["phq9"] >= 15,
        "gad7_ge10": tot["gad7"] >= 10,
        "k10_ge25": tot["k10"] >= 25,
        "phq9_and_gad7_ge10": (tot["phq9"] >= 10) & (tot["gad7"] >= 10),
        "phq9_item9_positive": w.items["phq9"][:, 8] >= 1,
        "who5_le12": tot["who5"] <= 12,
    }
    groups = {"all": np.ones(c.n, dtype=bool), "girls": c.sex == 1, "boys": c.sex == 0,
              "junior": c.stage == 0, "senior": c.stage == 1}
    prevalence = {k: {g: _rate(v[m]) for g, m in groups.items()} for k, v in cases.items()}
    alpha = {name: round(cronbach_alpha(w.items[name]), 3) for name in INSTRUMENTS}
    means = {name: {"mean": round(float(np.mean(tot[name])), 2), "sd": round(float(np.std(tot[name])), 2)}
             for name in INSTRUMENTS}
    g = prevalence["gad7_ge10"]
    observed = {
        "phq9_ge10": prevalence["phq9_ge10"]["all"], "gad7_ge10": g["all"], "gad7_ge10_girls": g["girls"],
        "gad7_ge10_boys": g["boys"], "gad7_girl_boy_ratio": round(g["girls"] / g["boys"], 3) if g["boys"] else None,
        "cronbach_alpha_phq9_gad7": min(alpha["phq9"], alpha["gad7"]),
        "phq9_item9_positive": prevalence["phq9_item9_positive"]["all"], "k10_mean": means["k10"]["mean"],
    }
    checks = {}
    for key, target in TARGETS.items():
        v = observed[key]
        lo, hi = target["tolerance"]
        if key == "cronbach_alpha_phq9_gad7":
            ok = lo <= alpha["phq9"] <= hi and lo <= alpha["gad7"] <= hi
        else:
            ok = v is not None and lo <= v <= hi
        checks[key] = {"observed": v, **target, "passed": bool(ok)}
    checks["girls_above_boys_phq9"] = {"passed": bool(prevalence["phq9_ge10"]["girls"] > prevalence["phq9_ge10"]["boys"])}
    checks["senior_above_junior_phq9"] = {"passed": bool(prevalence["phq9_ge10"]["senior"] > prevalence["phq9_ge10"]["junior"])}
    checks["senior_above_junior_gad7"] = {"passed": bool(g["senior"] > g["junior"])}
    item_means = w.items["phq9"].mean(axis=0)
    checks["phq9_item9_lowest_mean"] = {"observed": [round(float(v), 3) for v in item_means],
                                        "passed": bool(np.argmin(item_means) == 8)}
    return {
        "generator": GENERATOR_VERSION,
        "seed": c.seed,
        "students": c.n, "schools": c.n_schools, "counties": c.n_counties, "wave": wave,
        "girls_share": _rate(c.sex == 1), "senior_share": _rate(c.stage == 1),
        "careless_share": _rate(w.careless > 0),
        "scored_by": {name: ("core.scoring.score_many" if engine_has(name) else "numpy sum (no engine definition)")
                      for name in INSTRUMENTS},
        "prevalence": prevalence,
        "cronbach_alpha": alpha,
        "totals": means,
        "checks": checks,
        "all_checks_passed": all(v["passed"] for v in checks.values()),
        "generation_seconds": round(gen_seconds, 3),
    }
