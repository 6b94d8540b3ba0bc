"""``roadvision monitor``: drift of served traffic against the training reference.

* ``monitor reference --bundle B --data D``: store the reference (a sample of the training
  data through the bundle's encoder) in the bundle folder;
* ``monitor drift --reference BUNDLE_OR_DATA --logged URI``: compare the payload log with it;
  writes an HTML report, JSON, and Prometheus figures (textfile or Pushgateway) when asked.
  Exit code 0 either way, or 3 on drift with ``--fail-on-drift`` (for a CronJob or a script).
  With ``--retrain``, drift that the retraining policy accepts (``monitoring.trigger``) submits
  the training pipeline: to the KFP host of ``--kfp-host``, else locally with ``kfp.local``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import typer

from roadvision.errors import UserError
from roadvision.pipelines.run_profiles import RUN_PROFILES

RunProfile = Literal[tuple(RUN_PROFILES)]
app = typer.Typer(help="Drift monitoring: reference and checks.", no_args_is_help=True)
DRIFT_EXIT = 3


def register(root: typer.Typer) -> None:
    """Add the ``monitor`` group to the root app (called by ``roadvision.cli``)."""
    root.add_typer(app, name="monitor")


def _local_bundle(uri: str) -> Path:
    """A bundle folder for a folder or ``models:/NAME@ALIAS`` (downloaded)."""
    if uri.startswith("models:/"):
        from roadvision.registry import download_bundle

        return Path(download_bundle(uri))
    return Path(uri)


@app.command("reference")
def reference(
    bundle: str = typer.Option(..., help="bundle folder (or MLflow model folder holding one)"),
    data: Path = typer.Option(..., help="training data set folder (its train split is used)"),
    rows: int = typer.Option(200, help="rows sampled into the reference"),
    seed: int = typer.Option(0, help="sampling seed"),
    out: Path | None = typer.Option(None, help="folder to write into (default: the bundle)"),
) -> None:
    """Store the drift reference of a bundle (embeddings, image statistics, scores)."""
    from roadvision.models.bundle import locate_bundle
    from roadvision.monitoring.reference import build_reference, save_reference

    path = locate_bundle(_local_bundle(bundle))
    ref = build_reference(path, data, n=rows, seed=seed)
    written = save_reference(ref, out or path)
    typer.echo(f"drift reference of bundle {ref.info['bundle_version']}: {ref.info['rows']} "
               f"rows of {data} -> {written}")


@app.command("drift")
def drift(
    reference: str = typer.Option(..., help="bundle holding a reference, or a data set folder "
                                            "(then --bundle)"),
    logged: str = typer.Option(..., help="payload log folder or s3://bucket/prefix"),
    bundle: str | None = typer.Option(None, help="model whose encoder embeds (needed when "
                                                 "--reference is a data set)"),
    model: str | None = typer.Option(None, help="served model name to keep (default: all rows)"),
    rows: int | None = typer.Option(None, help="newest logged rows to compare (default: all)"),
    reference_rows: int = typer.Option(200, help="rows sampled when --reference is data"),
    alpha: float = typer.Option(0.05, help="significance level of each test"),
    permutations: int = typer.Option(500, help="permutations for the p-values"),
    report: Path | None = typer.Option(None, help="write the HTML report here"),
    json_out: Path | None = typer.Option(None, "--json", help="write the result as JSON here"),
    metrics_file: Path | None = typer.Option(
        None, help="write Prometheus figures for a textfile collector (*.prom)"),
    pushgateway: str | None = typer.Option(None, help="push the figures to this Pushgateway"),
    endpoint_url: str | None = typer.Option(None, envvar="AWS_ENDPOINT_URL",
                                            help="S3-compatible endpoint for s3:// URIs"),
    fail_on_drift: bool = typer.Option(False, help=f"exit {DRIFT_EXIT} when drift is found"),
    retrain: bool = typer.Option(False, help="submit the training pipeline when drift is found"),
    retrain_profile: RunProfile = typer.Option("tiny", help="run profile of the retraining"),
    retrain_data: str | None = typer.Option(
        None, help="data URI the retraining trains on (default: the run profile's)"),
    kfp_host: str | None = typer.Option(None, help="submit the retraining to this KFP API URL "
                                                   "(default: run it here with kfp.local)"),
    retrain_min_rows: int = typer.Option(50, help="fewer logged rows never retrain"),
    retrain_max_p: float | None = typer.Option(
        None, help="retrain only when the input drift p-value is at most this (default: alpha)"),
    retrain_on_prediction: bool = typer.Option(
        False, help="prediction drift alone is also a reason to retrain"),
) -> None:
    """Compare logged traffic with the training reference."""
    from roadvision.monitoring.check import CheckOptions, resolve_reference, run_check
    from roadvision.monitoring.trigger import RetrainPolicy

    if not 0 < alpha < 1:
        raise UserError(f"--alpha {alpha}: expected a number between 0 and 1")
    if permutations < 19:
        raise UserError(f"--permutations {permutations}: at least 19 (p can go below 0.05)")
    if not retrain and (kfp_host or retrain_data):
        raise UserError("--kfp-host and --retrain-data apply to a retraining: add --retrain")
    ref_path = reference if Path(reference, "manifest.parquet").is_file() \
        else _local_bundle(reference)
    ref, bundle_path = resolve_reference(ref_path, _local_bundle(bundle) if bundle else None,
                                         rows=reference_rows)
    # the retraining is checked before the check runs: a bad option fails in seconds
    policy = RetrainPolicy(min_rows=retrain_min_rows, max_p_value=retrain_max_p,
                           on_prediction_drift=retrain_on_prediction)
    params = _retrain_params(ref.info.get("task", "roadwork"), retrain_profile, retrain_data,
                             model, kfp_host) if retrain else None
    options = CheckOptions(
        logged=logged, model=model, rows=rows, alpha=alpha, permutations=permutations,
        endpoint_url=endpoint_url, report=str(report) if report else None,
        json_path=str(json_out) if json_out else None,
        metrics_file=str(metrics_file) if metrics_file else None, pushgateway=pushgateway)
    outcome = run_check(ref, bundle_path, options)
    result = outcome.result
    typer.echo(f"{'DRIFT' if result.drifted else 'no drift'}: {result.n_current} logged rows vs "
               f"{result.n_reference} reference rows (alpha {alpha})")
    for test in result.tests():
        typer.echo(f"  {test.name:<16} statistic {test.statistic:.4g}  p {test.p_value:.4g}"
                   f"{'  drift' if test.drifted else ''}")
    for name, shares in result.class_shares.items():
        typer.echo(f"  share {name:<12} {shares['reference']:.3f} -> {shares['current']:.3f}")
    for note in result.notes:
        typer.echo(f"  note: {note}")
    for path in outcome.written:
        typer.echo(f"  wrote {path}")
    if params is not None and not _retrain(result, policy, params, kfp_host):
        raise typer.Exit(1)
    if fail_on_drift and result.drifted:
        raise typer.Exit(DRIFT_EXIT)


def _retrain_params(task: str, run_profile: str, data_uri: str | None, model: str | None,
                    kfp_host: str | None):
    """The retraining's pipeline parameters, validated (and the KFP host probed)."""
    from importlib.util import find_spec

    from roadvision.cli.pipeline import build_params

    if find_spec("kfp") is None:  # the serving image has no kfp; the training image has
        raise UserError("--retrain: submitting the training pipeline needs kfp (pip install "
                        "'roadvision[pipeline]', or run the check in the training image)")
    params = build_params(run_profile, task, None, data_uri=data_uri, model_name=model)
    # a cluster reads its own paths and store; a local run needs the data here
    params.validate(check_data=kfp_host is None, check_mlflow=False)
    if kfp_host:
        from roadvision.pipelines.submit import check_host

        check_host(kfp_host)
    return params


def _retrain(result, policy, params, kfp_host: str | None) -> bool:
    """Submit the training pipeline when the policy says so; False when a local run failed."""
    from roadvision.monitoring.trigger import decide_retrain

    decision = decide_retrain(result, policy)
    if not decision.retrain:
        typer.echo(f"retraining: not started ({decision.reason})")
        return True
    typer.echo(f"retraining: {decision.reason}; training pipeline, training profile "
               f"{params.training_profile}, data {params.data_uri}")
    if kfp_host:
        from roadvision.pipelines.submit import submit

        run_id = submit(params, host=kfp_host, run_name="roadvision-retrain-on-drift")
        typer.echo(f"retraining: submitted run {run_id} to {kfp_host}")
        return True
    from roadvision.pipelines.local import run_local

    outcome = run_local(params, echo=False)
    typer.echo(f"retraining: {outcome.summary()}")
    return outcome.succeeded
