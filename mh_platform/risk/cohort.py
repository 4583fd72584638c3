"""Seeded synthetic cohort of secondary-school students, screened over several terms.

Pure numpy, vectorised: 200,000 students x 2 waves take a few seconds. Used by the risk model's
training and evaluation, by the tests, and by the demo city and the benchmarks.

Model (see docs/risk.md and ../shared/reference/ml.md §6.2 and Appendix A):

* **Structure.** Counties (the first ``n_urban_counties`` urban districts, the rest rural) hold
  schools; a school is junior (grades 7-9), senior (10-12) or complete (7-12). Students get a
  sex (1 = girl, 0 = boy), a school, a stage and a grade.
* **Latents.** Two correlated latents per wave, depression ``d`` and anxiety ``a`` (person-level
  correlation ``latent_corr`` = 0.75), with fixed shifts for sex, stage and grade and for rural
  counties, plus a school random effect (ICC ~ 0.03) and a small county random effect. Across
  waves the person deviation follows an AR(1) with stability ``stability`` (0.6 per term); the
  school, county, sex and stage parts stay. ``wave_shift`` adds a mean shift per wave (drift).
* **Items.** Graded-response model (GRM) items: PHQ-9 (9 items, 0-3) and K10 depression items on
  ``d``; GAD-7 (7, 0-3) and K10 anxiety items on ``a``; K10 scored 1-5 with the official skip
  logic (item 3 = 1 when item 2 = 1, item 6 = 1 when item 5 = 1); WHO-5 (5 items, 0-5, higher =
  better) on a well-being latent that falls with ``d`` and ``a``. A small somatic nuisance factor
  gives PHQ-9 items 3-5 correlated residuals. Mild DIF: girls' thresholds for PHQ-9 items 6
  (guilt) and 9 (self-harm) are raised so those items show no sex difference (Hangzhou finding).
* **Response behaviour.** Per wave, a share of students answer carelessly: uniformly at random,
  or straight-lining one non-zero option across the whole battery; a share under-report (answer
  from a lowered latent; under-reporting is a trait of the student, the same in every wave). Response times per item are log-normal; careless answers are fast.

Calibration targets (tests/risk/test_cohort.py checks them with stated tolerances; measured
numbers are in docs/risk.md): PHQ-9 >= 10 ~ 23 % overall, girls above boys, senior above junior;
GAD-7 >= 10 ~ 14.2 % (girls ~ 18.6 %, boys ~ 10.2 %); Cronbach's alpha in [0.84, 0.90].
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

GENERATOR_VERSION = "cohort-1.0"

INSTRUMENTS: tuple[str, ...] = ("phq9", "gad7", "k10", "who5")
N_ITEMS: dict[str, int] = {"phq9": 9, "gad7": 7, "k10": 10, "who5": 5}
# lowest and highest item value of each instrument (scores as stored in the answer)
ITEM_RANGE: dict[str, tuple[int, int]] = {"phq9": (0, 3), "gad7": (0, 3), "k10": (1, 5), "who5": (0, 5)}

BOY, GIRL = 0, 1
JUNIOR, SENIOR = 0, 1
CARELESS_NONE, CARELESS_RANDOM, CARELESS_STRAIGHT = 0, 1, 2

# ---- item parameters (GRM discrimination a, ordered thresholds b) on the latent scale ----------
PHQ_A = np.array([2.0, 2.4, 1.5, 1.9, 1.5, 2.2, 1.7, 1.6, 1.8])
PHQ_B = np.array([[0.3, 1.3, 1.9], [0.4, 1.3, 1.9], [0.2, 1.2, 1.8], [0.0, 1.1, 1.7], [0.5, 1.4, 1.9],
                  [0.5, 1.4, 2.0], [0.3, 1.3, 1.9], [0.9, 1.7, 2.2], [1.55, 2.1, 2.6]])
GAD_A = np.array([2.2, 2.3, 2.1, 2.0, 1.7, 1.8, 1.9])
GAD_B = np.array([[0.5, 1.5, 2.0]] * 7) + np.linspace(-0.1, 0.4, 7)[:, None] - 0.05
# K10 items: 1 tired, 2 nervous, 3 so nervous, 4 hopeless, 5 restless, 6 so restless,
# 7 depressed, 8 everything an effort, 9 so sad, 10 worthless. Latent: 0 = d, 1 = a.
K10_LATENT = np.array([0, 1, 1, 0, 1, 1, 0, 0, 0, 0])
K10_A = np.array([1.6, 1.9, 2.1, 2.0, 1.6, 1.8, 2.2, 1.8, 2.1, 1.9])
K10_B = (np.array([[-0.48, 0.42, 1.22, 1.92]]) +
         np.array([-0.2, -0.1, 0.35, 0.15, 0.0, 0.3, 0.0, -0.05, 0.3, 0.25])[:, None])
# WHO-5 is generated as "ill-being" 0..5 (5 - answer) on the well-being deficit latent.
WHO_A = np.array([2.2, 2.1, 2.0, 1.9, 2.1])
WHO_B = (np.array([[-1.2, -0.5, 0.15, 0.95, 1.9]]) + np.array([0.0, 0.05, 0.0, -0.1, 0.05])[:, None])

PHQ_SOMATIC = np.array([2, 3, 4])        # 0-based PHQ-9 items 3-5 (sleep, fatigue, appetite)
PHQ_NO_SEX_DIF = np.array([5, 8])        # 0-based PHQ-9 items 6 (guilt) and 9 (self-harm)

# mean item time in seconds for an attentive student (reading + answering)
_ITEM_SECONDS: dict[str, float] = {"phq9": 4.2, "gad7": 3.8, "k10": 3.6, "who5": 3.4}


@dataclass(frozen=True)
class CohortParams:
    """Every knob of the generator, recorded with the cohort (and in model manifests)."""

    base_depression: float = -0.31
    base_anxiety: float = -0.38
    girl_depression: float = 0.36
    girl_anxiety: float = 0.54
    senior_depression: float = 0.16
    senior_anxiety: float = 0.12
    grade_slope: float = 0.03          # per grade within a stage
    rural_shift: float = 0.08          # rural counties
    latent_corr: float = 0.75
    stability: float = 0.60            # term-to-term AR(1) of the person deviation
    school_sd: float = 0.18
    county_sd: float = 0.05
    somatic_sd: float = 0.45
    wellbeing_loading_d: float = 0.70
    wellbeing_loading_a: float = 0.15
    underreport_rate: float = 0.10
    underreport_shift: float = 0.6


@dataclass(frozen=True)
class Wave:
    """One screening campaign (a term): answers, response times and the true latents."""

    index: int
    items: dict[str, np.ndarray]       # instrument -> (n, k) int8 item scores as answered
    seconds: dict[str, np.ndarray]     # instrument -> (n, k) float32 seconds spent per item
    depression: np.ndarray             # (n,) true latent (before under-reporting)
    anxiety: np.ndarray                # (n,)
    careless: np.ndarray               # (n,) int8: 0 attentive, 1 random, 2 straight-line
    underreport: np.ndarray            # (n,) bool

    def battery(self, instruments: Sequence[str] = ("phq9", "gad7")) -> np.ndarray:
        return np.concatenate([self.items[i] for i in instruments], axis=1)


@dataclass(frozen=True)
class Cohort:
    """Students (one row each, same order in every wave) and their waves."""

    seed: int
    params: CohortParams
    student_id: np.ndarray             # (n,) int64, unique
    school: np.ndarray                 # (n,) int32 school index
    county: np.ndarray                 # (n,) int32 county index
    sex: np.ndarray                    # (n,) int8, 1 girl / 0 boy
    stage: np.ndarray                  # (n,) int8, 0 junior / 1 senior
    grade: np.ndarray                  # (n,) int8, 7..12 (at wave 0)
    school_county: np.ndarray          # (n_schools,) county of each school
    school_kind: np.ndarray            # (n_schools,) 0 junior, 1 senior, 2 complete
    county_rural: np.ndarray           # (n_counties,) bool
    waves: tuple[Wave, ...] = field(default_factory=tuple)

    @property
    def n(self) -> int:
        return int(self.student_id.shape[0])

    @property
    def n_schools(self) -> int:
        return int(self.school_county.shape[0])

    @property
    def n_counties(self) -> int:
        return int(self.county_rural.shape[0])


def _expit(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def grm_sample(rng: np.random.Generator, theta: np.ndarray, a: np.ndarray, b: np.ndarray,
               shift: np.ndarray | None = None) -> np.ndarray:
    """Sample GRM item scores 0..K for latents ``theta`` (n,) or (n, k).

    ``a`` (k,), ``b`` (k, K) ordered thresholds; ``shift`` (n, k) is added to the thresholds
    (DIF). One uniform per item, inverted through the cumulative category probabilities.
    """
    th = theta if theta.ndim == 2 else theta[:, None]
    z = th[:, :, None].astype(np.float32) - b[None, :, :].astype(np.float32)
    if shift is not None:
        z = z - shift[:, :, None].astype(np.float32)
    p_ge = _expit(a[None, :, None].astype(np.float32) * z)
    u = rng.random((th.shape[0], b.shape[0], 1), dtype=np.float32)
    return (u < p_ge).sum(axis=2, dtype=np.int8)


def category_probs(theta: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """GRM category probabilities, shape (n, k, K+1), for latents ``theta`` (n,)."""
    p_ge = _expit(a[None, :, None] * (theta[:, None, None] - b[None]))
    one = np.ones(p_ge.shape[:2] + (1,))
    c = np.concatenate([one, p_ge, 0 * one], axis=-1)
    return c[..., :-1] - c[..., 1:]


def _structure(rng: np.random.Generator, n: int, n_schools: int, n_counties: int,
               n_urban: int) -> dict[str, np.ndarray]:
    county_rural = np.arange(n_counties) >= n_urban
    school_county = rng.integers(0, n_counties, n_schools).astype(np.int32)
    school_county[: min(n_schools, n_counties)] = np.arange(min(n_schools, n_counties))  # none empty
    kind = rng.choice(3, n_schools, p=[0.55, 0.35, 0.10]).astype(np.int8)
    if n_schools >= 2:  # both stages always present
        kind[0], kind[1] = 0, 1
    # students spread over schools with unequal sizes (school size ~ gamma)
    size = rng.gamma(8.0, 1.0, n_schools)
    school = rng.choice(n_schools, n, p=size / size.sum()).astype(np.int32)
    sk = kind[school]
    stage = np.where(sk == 2, (rng.random(n) < 0.5).astype(np.int8), np.where(sk == 1, 1, 0)).astype(np.int8)
    grade = (7 + 3 * stage + rng.integers(0, 3, n)).astype(np.int8)
    sex = (rng.random(n) < 0.49).astype(np.int8)
    return {"school": school, "county": school_county[school], "sex": sex, "stage": stage,
            "grade": grade, "school_county": school_county, "school_kind": kind,
            "county_rural": county_rural}


def generate_cohort(n_students: int, seed: int = 0, *, n_schools: int | None = None, n_counties: int = 5,
                    n_urban_counties: int = 2, waves: int = 2, careless_rate: float = 0.06,
                    straightline_share: float = 1 / 3, wave_shift: Sequence[float] | None = None,
                    params: CohortParams | None = None) -> Cohort:
    """Generate a seeded synthetic cohort.

    ``n_schools`` defaults to about one school per 300 students (at least 2). ``careless_rate`` is
    the share of careless answers per wave, of which ``straightline_share`` straight-line one
    non-zero option and the rest answer uniformly at random. ``wave_shift`` is an extra latent
    mean shift per wave (default none), used to simulate drift for temporal validation.
    The same ``seed`` and arguments give the same cohort on any machine.
    """
    if n_students < 1:
        raise ValueError("n_students must be positive")
    if waves < 1:
        raise ValueError("waves must be at least 1")
    p = params or CohortParams()
    n = int(n_students)
    n_schools = int(n_schools or max(2, round(n / 300)))
    shifts = np.zeros(waves) if wave_shift is None else np.asarray(list(wave_shift), dtype=float)
    if shifts.shape != (waves,):
        raise ValueError("wave_shift needs one value per wave")
    root = np.random.SeedSequence(seed)
    r_struct, r_latent, *r_waves = (np.random.default_rng(s) for s in root.spawn(2 + waves))

    st = _structure(r_struct, n, n_schools, n_counties, n_urban_counties)
    school_u = r_struct.normal(0.0, p.school_sd, n_schools)
    county_u = r_struct.normal(0.0, p.county_sd, n_counties) + p.rural_shift * st["county_rural"]
    within = (st["grade"] - 7 - 3 * st["stage"]).astype(float)
    common = school_u[st["school"]] + county_u[st["county"]] + p.grade_slope * within
    mu_d = p.base_depression + p.girl_depression * st["sex"] + p.senior_depression * st["stage"] + common
    mu_a = p.base_anxiety + p.girl_anxiety * st["sex"] + p.senior_anxiety * st["stage"] + common

    rc = np.sqrt(1 - p.latent_corr ** 2)
    rs = np.sqrt(1 - p.stability ** 2)
    under = r_latent.random(n) < p.underreport_rate  # a trait: the same students every wave
    z1 = r_latent.standard_normal(n)
    z2 = p.latent_corr * z1 + rc * r_latent.standard_normal(n)
    out_waves = []
    for w in range(waves):
        if w > 0:
            e1 = r_latent.standard_normal(n)
            e2 = p.latent_corr * e1 + rc * r_latent.standard_normal(n)
            z1 = p.stability * z1 + rs * e1
            z2 = p.stability * z2 + rs * e2
        d = mu_d + shifts[w] + z1
        a = mu_a + shifts[w] + z2
        out_waves.append(_wave(r_waves[w], w, d, a, st["sex"], under, p, careless_rate, straightline_share))
    return Cohort(seed=seed, params=p, student_id=np.arange(1, n + 1, dtype=np.int64),
                  school=st["school"], county=st["county"], sex=st["sex"], stage=st["stage"],
                  grade=st["grade"], school_county=st["school_county"], school_kind=st["school_kind"],
                  county_rural=st["county_rural"], waves=tuple(out_waves))


def _wave(rng: np.random.Generator, index: int, d: np.ndarray, a: np.ndarray, sex: np.ndarray,
          under: np.ndarray, p: CohortParams, careless_rate: float, straight_share: float) -> Wave:
    n = d.shape[0]
    d_obs = d - p.underreport_shift * under
    a_obs = a - p.underreport_shift * under

    # PHQ-9: somatic nuisance on items 3-5; items 6 and 9 without the girls' shift (no DIF)
    theta = np.repeat(d_obs[:, None], 9, axis=1)
    theta[:, PHQ_SOMATIC] += np.asarray(rng.normal(0.0, p.somatic_sd, n))[:, None]
    dif = np.zeros((n, 9))
    dif[:, PHQ_NO_SEX_DIF] = (p.girl_depression * sex)[:, None]
    phq = grm_sample(rng, theta, PHQ_A, PHQ_B, shift=dif)
    gad = grm_sample(rng, a_obs, GAD_A, GAD_B)
    k_theta = np.where(K10_LATENT[None, :] == 0, d_obs[:, None], a_obs[:, None])
    k10 = grm_sample(rng, k_theta, K10_A, K10_B) + 1
    wb = p.wellbeing_loading_d * d_obs + p.wellbeing_loading_a * a_obs
    wb = wb + rng.normal(0.0, np.sqrt(max(1e-6, 1 - p.wellbeing_loading_d ** 2 - p.wellbeing_loading_a ** 2)), n)
    who = (5 - grm_sample(rng, wb, WHO_A, WHO_B)).astype(np.int8)
    items = {"phq9": phq, "gad7": gad, "k10": k10.astype(np.int8), "who5": who}

    # careless responding
    u = rng.random(n)
    careless = np.zeros(n, dtype=np.int8)
    careless[u < careless_rate] = CARELESS_RANDOM
    careless[u < careless_rate * straight_share] = CARELESS_STRAIGHT
    rnd = careless == CARELESS_RANDOM
    sl = careless == CARELESS_STRAIGHT
    opt = np.asarray(rng.integers(1, 4, n))  # option position 1..3 (non-zero) for straight-liners
    for name, m in items.items():
        lo, hi = ITEM_RANGE[name]
        k = m.shape[1]
        m[rnd] = rng.integers(lo, hi + 1, (int(rnd.sum()), k))
        m[sl] = np.add(opt[sl], lo).reshape(-1, 1)
    _apply_k10_skip(items["k10"])

    # response times (seconds per item)
    speed = np.exp(rng.normal(0.0, 0.3, n))[:, None]
    fast = np.where(rnd, 0.33, np.where(sl, 0.25, 1.0))[:, None]
    seconds = {}
    for name, m in items.items():
        base = _ITEM_SECONDS[name]
        seconds[name] = (base * speed * fast * np.exp(rng.normal(0.0, 0.4, m.shape))).astype(np.float32)
    return Wave(index=index, items=items, seconds=seconds, depression=d, anxiety=a,
                careless=careless, underreport=under)


def _apply_k10_skip(k10: np.ndarray) -> None:
    """K10 skip logic (Andrews & Slade 2001): item 3 scores 1 if item 2 = 1; item 6 if item 5 = 1."""
    k10[k10[:, 1] == 1, 2] = 1
    k10[k10[:, 4] == 1, 5] = 1
