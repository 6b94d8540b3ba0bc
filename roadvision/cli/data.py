"""``roadvision data ...``: make, import, check and prepare data sets in the data contract."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from roadvision.cli._options import make_console
from roadvision.errors import UserError

app = typer.Typer(help="Make, import, validate and prepare data sets.", no_args_is_help=True)
console = make_console()

_OVERWRITE_HELP = ("replace a non-empty --out that is not this command's earlier output for the "
                   "same inputs (without it such a folder is refused and left untouched)")


@app.command("synth")
def synth(
    task: str = typer.Option(..., help="lanes or roadwork"),
    n: int = typer.Option(..., "--n", min=1, help="number of samples"),
    seed: int = typer.Option(0, help="random seed; the same seed gives the same data set"),
    out: Path = typer.Option(..., help="output folder"),
    size: str = typer.Option("default", help="image size: tiny, demo, bench, default (the "
                             "generator's named sizes) or WxH, e.g. 512x512 (up to 4032x3024)"),
    num_classes: int = typer.Option(4, help="lanes only: 4 or 12 classes"),
    overwrite: bool = typer.Option(False, "--overwrite", help=_OVERWRITE_HELP),
    family: str = typer.Option("classic", help="scene family: classic, geometry, procedural, "
                               "camera, degraded, a comma list, or all (rows spread evenly; "
                               "the manifest's family column says which made each row)"),
) -> None:
    """Generate a procedural data set (aerial lanes or street-level roadwork)."""
    from roadvision.data.synth import generate

    info = generate(task=task, n=n, seed=seed, out=out, size=_parse_size(size),
                    num_classes=num_classes, overwrite=overwrite, family=family)
    console.print(f"[green]wrote[/] {info.num_samples} {info.task} samples to {out} "
                  f"(content hash {info.content_hash[:12]})")


@app.command("import")
def import_(
    fmt: str = typer.Option(..., "--format",
                            help="mmseg, natix, roadwork-coco, ael or folder"),
    src: Path = typer.Argument(..., help="source folder or file"),
    out: Path = typer.Option(..., help="output folder"),
    line_width: float = typer.Option(2.0, help="ael only: rasterised line width in pixels"),
    reduce_zero_label: bool = typer.Option(False, help="mmseg only: annotation 0 is 'ignore'"),
    num_classes: int = typer.Option(4, help="mmseg/ael/folder only: 4 or 12 lane classes"),
    labels: str | None = typer.Option(
        None, help="folder only: the label table (CSV or parquet) relative to SRC; default "
                   "labels.csv or labels.parquet"),
    task: str | None = typer.Option(
        None, help="folder only: lanes or roadwork (default: lanes when the table has a "
                   "'mask' column)"),
    overwrite: bool = typer.Option(False, "--overwrite", help=_OVERWRITE_HELP),
) -> None:
    """Import a data set in a real-world format into the data contract.

    Bad samples are quarantined (OUT/quarantine.json), not fatal.
    """
    from roadvision.data.importers import import_dataset

    report = import_dataset(fmt, src, out, line_width=line_width,
                            reduce_zero_label=reduce_zero_label, num_classes=num_classes,
                            labels=labels, task=task, overwrite=overwrite)
    console.print(report.summary(), markup=False, highlight=False)


@app.command("validate")
def validate(dataset: Path = typer.Argument(..., help="data set folder")) -> None:
    """Check a data set against the contract; lists every problem by row and column."""
    from roadvision.data.validate import validate_dataset

    report = validate_dataset(dataset)
    if report.ok:
        console.print(f"[green]ok[/] {dataset}: {report.num_rows} rows, no problems")
        return
    for problem in report.problems:
        # markup off: messages quote data such as "['Cloudy']", which rich would eat
        console.print(str(problem), style="red", markup=False, highlight=False)
    if len(report.problems) == 1:
        raise UserError(f"{dataset}: {report.problems[0]}")
    raise UserError(f"{dataset}: {len(report.problems)} problem(s) found (listed above); "
                    f"first: {report.problems[0]}")


@app.command("stats")
def stats(dataset: Path = typer.Argument(..., help="data set folder")) -> None:
    """Class balance, lane pixel share, NULL rates and cities of a data set."""
    from roadvision.data.stats import dataset_stats

    table = Table(title=f"{dataset}")
    table.add_column("statistic")
    table.add_column("value", justify="right")
    for key, value in dataset_stats(dataset).items():
        table.add_row(key, f"{value:.4g}" if isinstance(value, float) else str(value))
    console.print(table)


@app.command("ingest")
def ingest(
    src: str = typer.Argument(..., help="a data set folder or s3://bucket/prefix"),
    out: Path = typer.Option(..., help="output folder"),
    endpoint_url: str | None = typer.Option(None, envvar="AWS_ENDPOINT_URL",
                                            help="S3 endpoint (MinIO etc.)"),
    max_pixels: int = typer.Option(4032 * 3024 * 2, help="refuse larger images"),
    overwrite: bool = typer.Option(False, "--overwrite", help=_OVERWRITE_HELP),
) -> None:
    """Copy a data set in, decoding and checking every file; bad files are quarantined."""
    from roadvision.data.ingest import ingest as run_ingest

    report = run_ingest(src, out, endpoint_url=endpoint_url, max_pixels=max_pixels,
                        overwrite=overwrite)
    console.print(report.summary(), markup=False, highlight=False)


@app.command("split")
def split(
    dataset: Path = typer.Argument(..., help="data set folder"),
    out: Path = typer.Option(..., help="output folder"),
    holdout_cities: list[str] = typer.Option(
        [], help="cities kept out of train/val (test only); repeat or comma-separate"),
    val_fraction: float = typer.Option(0.10, min=0.0, max=0.9,
                                       help="share of the rows (after held-out cities) for val"),
    test_fraction: float = typer.Option(0.20, min=0.0, max=0.9,
                                        help="share of the rows (after held-out cities) for test"),
    min_distance_m: float = typer.Option(100.0, min=0.0, help="train-to-val/test gap in metres"),
    seed: int = typer.Option(0, help="random seed of the split (same seed, same split)"),
    overwrite: bool = typer.Option(False, "--overwrite", help=_OVERWRITE_HELP),
) -> None:
    """Add a ``split`` column: geo-aware, optionally holding out whole cities."""
    from roadvision.data.split import split_dataset

    info = split_dataset(dataset, out, holdout_cities=holdout_cities, val_fraction=val_fraction,
                         test_fraction=test_fraction, min_distance_m=min_distance_m, seed=seed,
                         overwrite=overwrite)
    console.print(f"[green]wrote[/] {out}: {info.extra.get('split_counts')}")
    for warning in info.extra.get("split", {}).get("warnings", []):
        console.print(f"[yellow]warning:[/] {warning}", highlight=False)


@app.command("weights")
def weights(
    dataset: Path = typer.Argument(..., help="data set folder"),
    targets: str = typer.Option(..., help="deployment regions: a file or 'lat,lon;lat,lon'"),
    out: Path = typer.Option(..., help="output folder"),
    null_weight: float = typer.Option(1.0, min=0.0, help="weight of rows without GPS"),
    overwrite: bool = typer.Option(False, "--overwrite", help=_OVERWRITE_HELP),
) -> None:
    """Add a ``weight`` column favouring the target deployment regions (never the test set)."""
    from roadvision.data.weights import gps_weights, parse_targets

    info = gps_weights(dataset, out, targets=parse_targets(targets), null_weight=null_weight,
                       overwrite=overwrite)
    summary = info.extra.get("weights", {})
    console.print(f"[green]wrote[/] {out}: weighted {summary.get('scope')}; "
                  f"{summary.get('share_simulated_epoch', 0):.0%} of a weighted epoch within "
                  f"{summary.get('share_within_km', 100):g} km of a target centre")
    for warning in summary.get("warnings", []):
        console.print(f"[yellow]warning:[/] {warning}", highlight=False)


def _parse_size(size: str) -> str | tuple[int, int]:
    """``--size``: a named size (``generate`` checks the name) or ``WxH``."""
    if not any(c.isdigit() for c in size):
        return size
    try:
        width, height = (int(v) for v in size.lower().split("x"))
    except ValueError as exc:
        raise UserError(f"--size {size!r}: expected a named size or WxH, e.g. 512x512") from exc
    if not (16 <= width <= 4032 and 16 <= height <= 4032):
        raise UserError(f"--size {size!r}: each side must be between 16 and 4032 pixels")
    return width, height
