"""MODEL_CARD.md from an artifact's manifest: TRIPOD+AI items, use, subgroup results, PIPL Art. 55.

``mhp model train`` writes this card next to every new artifact so that its numbers always come
from the manifest; a person reviews it (and may add to it) before ``mhp model approve``.
"""

from __future__ import annotations

from typing import Any


def _f(x: Any, nd: int = 3) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, float):
        return f"{x:.{nd}f}"
    return str(x)


def _pct(x: Any) -> str:
    return "n/a" if x is None else f"{100 * float(x):.1f} %"


def render_model_card(manifest: dict[str, Any]) -> str:
    m = manifest
    e = m.get("metrics") or {}
    held = e.get("held_out", {})
    cv = e.get("grouped_cv", {})
    tmp = e.get("temporal", {})
    loco = e.get("leave_one_county_out", {})
    drift = e.get("committed_model_on_drifted_wave", {})
    allrows = e.get("all_eligible_rows_incl_careless", {})
    q = e.get("quality", {})
    bars = e.get("bars", {})
    sub = held.get("subgroups", {})
    gen = m.get("generator", {})
    train = m.get("train", {})
    pol = m.get("policy", {})
    coef = m.get("coefficients_raw_scale", {})
    top_coef = sorted(coef.items(), key=lambda kv: -kv[1])[:8]
    zero = [k for k, v in coef.items() if v == 0.0]

    lines: list[str] = []
    add = lines.append
    add(f"# Model card: {m.get('artifact', 'risk')} -- the counsellor \"watch\" signal")
    add("")
    add(f"Artifact `model.skops` sha256 `{m.get('sha256', '')}` (first 16: `{str(m.get('sha256', ''))[:16]}`), "
        f"scikit-learn {m.get('sklearn_version')}, skops {m.get('skops_version')}, created {m.get('created_at')}, "
        f"training seed {m.get('seed')}. Every number below comes from `manifest.json` (written by "
        f"`mhp model train`) and can be re-measured with `mhp model evaluate --json`.")
    add("")
    add("**Trained and evaluated on synthetic data only.** The numbers describe the generator as much as the model; "
        "they are not evidence of real-world performance (see Limitations).")
    add("")
    add("## Intended use")
    add("")
    add("- Decision *support* for the school counsellor (心理教师): among students **not** already flagged orange or red "
        "by the rules, point to those whose answers make crossing into the high band at the next screening more likely.")
    add(f"- Output: a calibrated probability, the top {pol.get('top_items', 3)} contributing items, and at most a "
        f"**yellow (III) \"watch\"** flag in the counsellor's queue when the probability is at or above the policy "
        f"threshold ({_f(m.get('threshold'))}). The model never escalates beyond the school and never raises orange or red.")
    add("- Every watch item needs a counsellor's review (interview, 访谈复核) before any action; dismissals and overrides "
        "are logged with who, why and when.")
    add("")
    add("## Out-of-scope use")
    add("")
    add("- Diagnosis, or any decision made solely by the model (PIPL Art. 24).")
    add("- Removing, lowering or delaying a rule flag: `mh_platform.risk.policy.combine` returns any rule level unchanged "
        "and only adds yellow where the rules gave none (property-tested with hypothesis; bar B11).")
    add("- Showing a score to students, parents or head teachers; ranking classes or schools; discipline, admission, "
        "class placement or any other decision about a child.")
    add("- Students below grade 7 or outside secondary school; instruments other than PHQ-9, GAD-7, K10 and WHO-5.")
    add("- Use on real data before local validation and a new approval (see Retraining).")
    add("")
    add("## Outcome and horizon")
    add("")
    add(f"- Task: {m.get('task')}.")
    add("- Horizon: the next screening campaign (one term, about 6 months).")
    add("- Population: eligible rows are students below the high band now (PHQ-9 < 15 and item 9 = 0) whose "
        "responses at both screenings got no response-quality advice (page time, non-zero longstring, lz^p misfit).")
    add("")
    add("## Predictors")
    add("")
    add("- Current screening: PHQ-9 items 1-9, GAD-7 items 1-7, K10 items 1-10 (as 0-4), WHO-5 items 1-5 (reversed, "
        "higher = worse).")
    add("- Previous screening: PHQ-9, GAD-7, K10 totals and WHO-5 deficit; a has-previous indicator.")
    add("- Sex (girl) and school stage (senior). Never school, county, identity or family fields.")
    add("- Monotone: every symptom coefficient is constrained to be >= 0 (active-set `LogisticRegression`), so "
        "the risk never decreases when an answer gets worse.")
    if top_coef:
        add("- Largest raw-scale coefficients (log-odds per point): "
            + ", ".join(f"`{k}` {v:.3f}" for k, v in top_coef) + ".")
    if zero:
        add(f"- Fixed at 0 by the monotonicity constraint: {', '.join(f'`{z}`' for z in zero)}.")
    add("")
    add("## Missing data")
    add("")
    add("- A missing item is replaced by the mean of the student's answered items of the same instrument (prorating, "
        "as the scoring rules do); a fully missing instrument contributes 0; no previous screening -> previous totals 0 "
        "and the indicator 0. The synthetic training data has no missing items, so this handling is untested against "
        "real missingness patterns.")
    add("- Missing answers never affect rule flags (an unanswered PHQ-9 item 9 is its own orange flag in the rules).")
    add("")
    add("## Model")
    add("")
    add(f"- {m.get('estimator')}. No resampling and no class weights (they distort calibration); C fixed at 1.0 "
        "(not tuned: 38 features and tens of thousands of rows).")
    add("- `HistGradientBoostingClassifier` is used only as a comparator (bar B4).")
    add("")
    add("## Training data")
    add("")
    add(f"- Synthetic cohort, generator `{gen.get('version')}` (`mh_platform/risk/cohort.py`): {gen.get('n_students')} "
        f"students, {train.get('schools')} schools, 5 counties, {gen.get('waves')} waves, seed {gen.get('seed')}; "
        f"{train.get('rows')} eligible rows, {train.get('events')} events.")
    add("- Generator: two correlated latents (depression, anxiety; r = 0.75) with sex, stage, grade, rural-county, "
        "school and county effects; term-to-term stability 0.6; graded-response items; 6 % careless answers per wave "
        "(2/3 random, 1/3 straight-line), 10 % under-reporters. Calibrated to Chinese school figures (PHQ-9 >= 10 about 23 %, "
        "GAD-7 >= 10 about 14 %, girls 18.6 % vs boys 10.2 %, alpha 0.84-0.90; see docs/risk.md).")
    add("")
    add("## Evaluation")
    add("")
    c = e.get("cohort", {})
    add(f"Fresh held-out cohort (seed {c.get('seed')}, never used in training): {c.get('students')} students, "
        f"{c.get('schools')} schools, {c.get('counties')} counties; {c.get('rows_main')} eligible quality-passed rows "
        f"(transitions 1->2 and 2->3), a temporal test on wave 3->4 with a latent drift of {c.get('drift_last_wave')}.")
    add("")
    add("| metric | value |")
    add("|---|---|")
    add(f"| AUC (committed model, held-out) | {_f(e.get('auc'))} (school-bootstrap 95 % CI {held.get('auc_ci_school_bootstrap')}) |")
    add(f"| AUC of the PHQ-9 total alone (rule baseline) | {_f(e.get('auc_total_score_baseline'))} |")
    add(f"| gain over the PHQ-9 total (B2) | {_f((e.get('auc') or 0) - (e.get('auc_total_score_baseline') or 0))} |")
    add(f"| average precision / event rate | {_f(held.get('average_precision'))} / {_pct(held.get('event_rate'))} |")
    add(f"| Brier / scaled Brier (d2) | {_f(held.get('brier'), 4)} / {_f(held.get('scaled_brier_d2'), 4)} |")
    add(f"| grouped CV by school: AUC, slope, O/E | {_f(cv.get('auc'))}, {_f(cv.get('calibration_slope'))}, {_f(cv.get('observed_expected'))} |")
    add(f"| HGB comparator (grouped CV) AUC | {_f(cv.get('auc_hgb'))} |")
    add(f"| latent oracle (grouped CV) AUC | {_f(cv.get('auc_oracle'))} |")
    add(f"| temporal (refit, drifted wave): AUC, slope, O/E | {_f(tmp.get('auc'))}, {_f(tmp.get('calibration_slope'))}, {_f(tmp.get('observed_expected'))} |")
    add(f"| committed model on the drifted wave: AUC, slope, O/E | {_f(drift.get('auc'))}, {_f(drift.get('calibration_slope'))}, {_f(drift.get('observed_expected'))} |")
    add(f"| leave-one-county-out: AUC, slope | {_f(loco.get('auc'))}, {_f(loco.get('calibration_slope'))} |")
    add(f"| all eligible rows incl. careless responses: AUC, slope | {_f(allrows.get('auc'))}, {_f(allrows.get('calibration_slope'))} |")
    add("")
    add("## Calibration")
    add("")
    add(f"- Held-out calibration slope {_f(held.get('calibration_slope'))}, intercept {_f(held.get('calibration_intercept'))}, "
        f"O/E {_f(held.get('observed_expected'))} (Van Calster 2019: slope, intercept, curve; no Hosmer-Lemeshow).")
    add(f"- Under a prevalence drift the slope holds but calibration-in-the-large moves (O/E {_f(drift.get('observed_expected'))} "
        "on the drifted wave): recalibrate the intercept on local data before relying on absolute probabilities.")
    add(f"- Including careless responses the model looks worse (slope {_f(allrows.get('calibration_slope'))}): random "
        "answers at the next screening are not a real outcome; this is why training and evaluation use quality-passed rows.")
    add("")
    add("## Threshold and workload")
    add("")
    add(f"- Policy (`mh_platform/risk/policy.py`): target flag rate {_pct(pol.get('target_flag_rate'))}, cap "
        f"{_pct(pol.get('flag_rate_cap'))}; threshold {_f(m.get('threshold'))} set at training as the "
        f"{_pct(1 - float(pol.get('target_flag_rate', 0.08)))} quantile of training probabilities.")
    add(f"- Held-out at this threshold: flag rate {_pct(held.get('flag_rate'))}, sensitivity {_f(held.get('sensitivity'))}, "
        f"PPV {_f(held.get('ppv'))}. The watch signal is weak by nature: most students who cross into the high band "
        "are not flagged in advance, and about "
        f"{round(10 * (1 - float(held.get('ppv') or 0)))} in 10 of those flagged do not cross.")
    add("")
    add("## Subgroup results")
    add("")
    add("| subgroup | n | event rate | AUC | O/E | TPR | FPR | flag rate |")
    add("|---|---|---|---|---|---|---|---|")
    for k, v in sub.items():
        add(f"| {k} | {v.get('n')} | {_pct(v.get('event_rate'))} | {_f(v.get('auc'))} | {_f(v.get('observed_expected'))} | "
            f"{_f(v.get('tpr'))} | {_f(v.get('fpr'))} | {_pct(v.get('flag_rate'))} |")
    add("")
    add(f"AUC gap girls vs boys {_f(e.get('auc_gap_sex'))}, senior vs junior {_f(e.get('auc_gap_stage'))} (bar B8: <= 0.05). "
        "County O/E of the committed model on a new cohort also reflects that cohort's own random school and county "
        "effects; per-county O/E under grouped CV is in the manifest (`grouped_cv.observed_expected_subgroups`).")
    add("")
    add("## Fairness")
    add("")
    add("- Criterion chosen: calibration within groups and similar discrimination (AUC) across sex and stage. Because base "
        "rates differ (girls and seniors have more events), equal TPR/FPR cannot hold at the same time (Kleinberg et al. "
        "2016): at one threshold girls and seniors are flagged more often, in line with their higher risk. TPR/FPR are "
        "reported above, not equalised. Group-specific thresholds would be a documented policy decision, not a default.")
    add("")
    add("## Bars (ml.md §7.3)")
    add("")
    add("| bar | passed | threshold |")
    add("|---|---|---|")
    for k, b in bars.items():
        add(f"| {k} | {'yes' if b.get('passed') else 'NO'} | {b.get('threshold')} |")
    add("")
    add("## Response quality")
    add("")
    lz = q.get("lzp", {})
    iso = q.get("isolation_forest_exploratory", {})
    nz = q.get("nonzero_longstring_rule", {})
    pt = q.get("page_time_rule", {})
    add(f"- lz^p person fit (standardised by its model-implied null at the same latent): AUC vs injected random responders "
        f"{_f(lz.get('auc_random'))}; Spearman with PHQ-9 + GAD-7 among attentive {_f(lz.get('spearman_with_severity'))}; "
        f"severe share of its top 5 % {_f(lz.get('severe_share_top5'))} vs base {_f(lz.get('severe_base_rate'))}.")
    add(f"- Non-zero longstring >= 12: catches {_pct(nz.get('caught_straight'))} of straight-liners, flags "
        f"{_pct(nz.get('flagged_attentive'))} of attentive students. Page time < 2 s/item on >= 2 pages: catches "
        f"{_pct(pt.get('caught_random'))} of random responders, flags {_pct(pt.get('flagged_attentive'))} of attentive students.")
    add(f"- IsolationForest (exploratory, on index features only): Spearman with severity {_f(iso.get('spearman_with_severity'))}, "
        f"severe share of its top 5 % {_f(iso.get('severe_share_top5'))} (ratio {_f(iso.get('ratio'))} to base). It flags nothing.")
    add("- Quality advice never suppresses, lowers or delays a risk flag.")
    add("")
    add("## Limitations")
    add("")
    add("- Synthetic only. The AUC (about 0.72) is set by the generator's assumed stability (0.6) and noise; it sits in the "
        "published prospective band (0.68-0.83) but says nothing about real students. Item-level Chinese adolescent "
        "parameters were not available; the generator is calibrated to total-score prevalences, alpha and sex/stage ratios.")
    add("- Under-reporting (faking good) is in the generator but no index detects it; the model inherits it.")
    add("- Distribution shift (new instruments, new cities, pandemic periods) moves calibration-in-the-large first.")
    add("- The lz^p item parameters are the generator's; on real data they must be refitted on the city's own responses.")
    add("- The model adds little discrimination over the PHQ-9 total; its value is a calibrated probability that combines "
        "instruments and the previous screening, and the item-level explanation.")
    add("")
    add("## Retraining")
    add("")
    add("- `mh_platform.risk.retrain.retrain_candidate` (a scheduler job, **off by default**; enable with "
        "`MHP_RISK_RETRAIN_ENABLED=1`) writes a new artifact directory beside this one and never touches `models/ACTIVE`.")
    add("- A person reviews the new manifest and card, then runs `mhp model approve DIR --by NAME`; approval re-checks the "
        "hash, the trusted types and that every bar passed, and records who approved which hash and what it replaced.")
    add("")
    add("## Impact assessment (PIPL Art. 55)")
    add("")
    add("Personal-information protection impact assessment required before processing sensitive personal information "
        "(health data; all data of children under 14, Art. 28) and before automated decision-making (Art. 55). "
        "This section is the model's input to that assessment; the deploying education bureau owns and signs it.")
    add("")
    add("- Purpose and necessity: prioritising counsellor attention among students below the rule cut-offs; the rules "
        "alone already flag the high band. Processing is limited to answers the screening collects anyway.")
    add("- Data: item answers of the current and previous screening, sex, school stage. No names, IDs, school or family "
        "fields enter the model; answers stay encrypted at rest (field-level AES-GCM).")
    add("- Automated decision-making (Art. 24): none. The output is a yellow queue item for a counsellor; the student or "
        "guardian can ask for an explanation (top contributing items) and may refuse decisions made solely by automated "
        "means -- there are none.")
    add("- Risks: false reassurance (missed students -- mitigated because the model can never remove or lower a rule flag), "
        "labelling and stigma (mitigated: counsellor view only, never shown to head teachers, students or parents as a "
        "score), workload (flag-rate cap), bias across sex and stage (subgroup results above), drift (re-evaluation and "
        "human approval before any new artifact is used).")
    add("- Guardian consent (Art. 31, under 14) is checked upstream: no screening without valid consent.")
    add("- Retention and erasure: the model stores no personal data; a student's erasure shreds their answers.")
    add("- Assessment reference: to be filled in by the deploying bureau (number, date, approver). "
        "Legal references are from ml.md §5.2, to be verified against the official text.")
    add("")
    add("## TRIPOD+AI checklist (core items)")
    add("")
    add("| item | where |")
    add("|---|---|")
    for item, where in (
        ("Title/abstract: prediction model, target, population", "top of this card"),
        ("Source of data; setting; dates", "Training data, Evaluation (synthetic, seeded)"),
        ("Participants and eligibility", "Outcome and horizon"),
        ("Outcome, how and when measured; horizon", "Outcome and horizon"),
        ("Predictors; how measured; timing", "Predictors"),
        ("Sample size; number of events", "Training data, Evaluation"),
        ("Missing data handling", "Missing data"),
        ("Model type, building, tuning, calibration method", "Model"),
        ("Clustering (schools) in validation", "Evaluation (grouped CV by school, leave-one-county-out)"),
        ("Performance: discrimination, calibration, clinical utility", "Evaluation, Calibration, Threshold and workload"),
        ("Fairness / subgroup performance", "Subgroup results, Fairness"),
        ("Model updating / retraining", "Retraining"),
        ("Intended use, users, out-of-scope", "Intended use, Out-of-scope use"),
        ("Limitations, interpretation", "Limitations"),
        ("Code and model availability", "mh_platform/risk, models/ (AGPL-3.0-or-later)"),
        ("Ethics, data protection", "Impact assessment (PIPL Art. 55)"),
    ):
        add(f"| {item} | {where} |")
    add("")
    return "\n".join(lines)
