"""``mhp model``: the synthetic cohort, training, evaluation and approval of the risk (watch) model."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click


def _echo_json(obj: object) -> None:
    click.echo(json.dumps(obj, indent=2, ensure_ascii=False, default=str))


@click.group()
def cli() -> None:
    """Risk model: synthetic cohort, training, evaluation, approval (scikit-learn)."""


@cli.command("cohort-stats")
@click.option("--students", "n_students", type=click.IntRange(min=100), default=20_000, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def cohort_stats_cmd(n_students: int, seed: int, as_json: bool) -> None:
    """Prevalences by sex and school stage and Cronbach's alpha of a synthetic cohort."""
    from mh_platform.risk.stats import cohort_stats

    stats = cohort_stats(n_students, seed)
    if as_json:
        _echo_json(stats)
        return
    click.echo(f"cohort {stats['generator']} seed {seed}: {stats['students']} students, {stats['schools']} schools, "
               f"{stats['counties']} counties (generated in {stats['generation_seconds']} s)")
    for key, row in stats["prevalence"].items():
        click.echo(f"  {key:22s} " + "  ".join(f"{g} {100 * v:5.1f}%" for g, v in row.items()))
    click.echo("  alpha: " + ", ".join(f"{k} {v:.3f}" for k, v in stats["cronbach_alpha"].items()))
    bad = [k for k, v in stats["checks"].items() if not v["passed"]]
    click.echo("  calibration checks: " + ("all passed" if not bad else "FAILED " + ", ".join(bad)))


@cli.command("train")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--students", "n_students", type=click.IntRange(min=2000), default=20_000, show_default=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Artifact directory to create (default: models/risk-<UTC time>). Never overwritten.")
@click.option("--evaluate/--no-evaluate", "do_eval", default=True, show_default=True,
              help="Run the bars on a fresh held-out cohort and store them in the manifest.")
@click.option("--json", "as_json", is_flag=True)
def train_cmd(seed: int, n_students: int, out_dir: Path | None, do_eval: bool, as_json: bool) -> None:
    """Train a candidate watch model; it is not used until `mhp model approve`."""
    from mh_platform.risk.retrain import build_artifact, new_artifact_dir

    out = out_dir or new_artifact_dir()
    manifest = build_artifact(out, seed=seed, n_students=n_students, evaluate_bars=do_eval)
    summary = {"artifact": str(out), "sha256": manifest["sha256"], "threshold": manifest["threshold"],
               "all_bars_passed": manifest.get("all_bars_passed"),
               "next": f"review {out}/manifest.json, write MODEL_CARD.md, then `mhp model approve {out} --by NAME`"}
    if as_json:
        _echo_json(summary)
    else:
        for k, v in summary.items():
            click.echo(f"{k}: {v}")


@cli.command("evaluate")
@click.option("--dir", "artifact_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Artifact to evaluate (default: the approved one in models/ACTIVE).")
@click.option("--students", "n_students", type=click.IntRange(min=2000), default=20_000, show_default=True)
@click.option("--seed", type=int, default=1, show_default=True, help="Seed of the fresh held-out cohort.")
@click.option("--boot", "n_boot", type=click.IntRange(min=0), default=200, show_default=True,
              help="School-clustered bootstrap resamples for the AUC CI (0 = none).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def evaluate_cmd(artifact_dir: Path | None, n_students: int, seed: int, n_boot: int, as_json: bool) -> None:
    """Metrics and bars B1-B14 of the model on a fresh held-out synthetic cohort."""
    from threadpoolctl import threadpool_limits

    from mh_platform.risk.artifact import load_active, load_artifact
    from mh_platform.risk.evaluate import evaluate

    loaded = load_artifact(artifact_dir) if artifact_dir else load_active()
    with threadpool_limits(limits=1):
        report = evaluate(loaded.model, loaded.threshold, n_students=n_students, seed=seed, n_boot=n_boot)
    report = {"artifact": loaded.version, **report}
    if as_json:
        _echo_json(report)
        if not report["all_bars_passed"]:
            sys.exit(1)  # the JSON says which bar failed
        return
    click.echo(f"{loaded.version}: AUC {report['auc']} (PHQ-9 total alone {report['auc_total_score_baseline']}), "
               f"calibration slope {report['calibration_slope']}, AUC gap by sex {report['auc_gap_sex']}, "
               f"flag rate {report['flag_rate']}")
    for name, bar in report["bars"].items():
        click.echo(f"  {name:4s} {'pass' if bar['passed'] else 'FAIL'}  {bar['threshold']}")
    if not report["all_bars_passed"]:
        raise click.ClickException("some bars failed")


@cli.command("approve")
@click.argument("artifact_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--by", "approved_by", required=True, help="Name of the person approving.")
@click.option("--re-evaluate", is_flag=True, help="Re-run the bars instead of using the stored evaluation.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def approve_cmd(artifact_dir: Path, approved_by: str, re_evaluate: bool, yes: bool) -> None:
    """Point models/ACTIVE at ARTIFACT_DIR after checking its hash and its bars."""
    from mh_platform.risk.retrain import approve

    if not yes:
        click.confirm(f"Make {artifact_dir} the active watch model?", abort=True)
    record = approve(artifact_dir, approved_by, re_evaluate=re_evaluate)
    click.echo(f"approved {record['artifact']} sha256 {record['sha256'][:16]}... by {record['approved_by']} "
               f"at {record['approved_at']}")
