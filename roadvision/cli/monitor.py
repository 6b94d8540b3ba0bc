"""``roadvision monitor``: drift of served traffic against the training reference.

* ``monitor reference --bundle B --data D``: store the reference (a sample of the training
  data through the bundle's encoder) in the bundle folder;
* ``monitor drift --reference BUNDLE_OR_DATA --logged URI``: compare the payload log with it;
  writes an HTML report, JSON, and Prometheus figures (textfile or Pushgateway) when asked.
  Exit code 0 either way, or 3 on drift with ``--fail-on-drift`` (for a CronJob or a script).
"""

from __future__ import annotations

from pathlib import Path

import typer

from roadvision.errors import UserError

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
) -> None:
    """Compare logged traffic with the training reference."""
    from roadvision.monitoring.check import CheckOptions, resolve_reference, run_check

    if not 0 < alpha < 1:
        raise UserError(f"--alpha {alpha}: expected a number between 0 and 1")
    if permutations < 19:
        raise UserError(f"--permutations {permutations}: at least 19 (p can go below 0.05)")
    ref_path = reference if Path(reference, "manifest.parquet").is_file() \
        else _local_bundle(reference)
    ref, bundle_path = resolve_reference(ref_path, _local_bundle(bundle) if bundle else None,
                                         rows=reference_rows)
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
    if fail_on_drift and result.drifted:
        raise typer.Exit(DRIFT_EXIT)
