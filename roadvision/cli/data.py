"""``roadvision data ...``: make, import, check and prepare data sets in the data contract."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from roadvision.errors import UserError

app = typer.Typer(help="Make, import, validate and prepare data sets.", no_args_is_help=True)
console = Console()


@app.command("synth")
def synth(
    task: str = typer.Option(..., help="lanes or roadwork"),
    n: int = typer.Option(..., "--n", min=1, help="number of samples"),
    seed: int = typer.Option(0, help="random seed; the same seed gives the same data set"),
    out: Path = typer.Option(..., help="output folder"),
    preset: str = typer.Option("default", help="generator preset (see --help of each task)"),
    size: str | None = typer.Option(None, help="image size WxH, e.g. 512x512 (up to 4032x3024)"),
    num_classes: int = typer.Option(4, help="lanes only: 4 or 12 classes"),
) -> None:
    """Generate a procedural data set (aerial lanes or street-level roadwork)."""
    from roadvision.data.synth import generate

    info = generate(task=task, n=n, seed=seed, out=out, preset=preset,
                    size=_parse_size(size), num_classes=num_classes)
    console.print(f"[green]wrote[/] {info.num_samples} {info.task} samples to {out} "
                  f"(content hash {info.content_hash[:12]})")


@app.command("import")
def import_(
    fmt: str = typer.Option(..., "--format", help="mmseg, natix, roadwork-coco or ael"),
    src: Path = typer.Argument(..., help="source folder or file"),
    out: Path = typer.Option(..., help="output folder"),
    line_width: float = typer.Option(2.0, help="ael only: rasterised line width in pixels"),
    reduce_zero_label: bool = typer.Option(False, help="mmseg only: annotation 0 is 'ignore'"),
) -> None:
    """Import a data set in a real-world format into the data contract."""
    from roadvision.data.importers import import_dataset

    report = import_dataset(fmt, src, out, line_width=line_width,
                            reduce_zero_label=reduce_zero_label)
    console.print(report.summary())


@app.command("validate")
def validate(dataset: Path = typer.Argument(..., help="data set folder")) -> None:
    """Check a data set against the contract; lists every problem by row and column."""
    from roadvision.data.validate import validate_dataset

    report = validate_dataset(dataset)
    if report.ok:
        console.print(f"[green]ok[/] {dataset}: {report.num_rows} rows, no problems")
        return
    for problem in report.problems:
        console.print(f"[red]{problem}[/]")
    raise UserError(f"{dataset}: {len(report.problems)} problem(s) found (listed above)")


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
) -> None:
    """Copy a data set in, decoding and checking every file; bad files are quarantined."""
    from roadvision.data.ingest import ingest as run_ingest

    report = run_ingest(src, out, endpoint_url=endpoint_url, max_pixels=max_pixels)
    console.print(report.summary())


@app.command("split")
def split(
    dataset: Path = typer.Argument(..., help="data set folder"),
    out: Path = typer.Option(..., help="output folder"),
    holdout_cities: list[str] = typer.Option([], help="cities kept out of train/val (test only)"),
    val_fraction: float = typer.Option(0.15, min=0.0, max=0.9),
    test_fraction: float = typer.Option(0.15, min=0.0, max=0.9),
    min_distance_m: float = typer.Option(100.0, min=0.0, help="train-to-val/test gap in metres"),
    seed: int = typer.Option(0),
) -> None:
    """Add a ``split`` column: geo-aware, optionally holding out whole cities."""
    from roadvision.data.split import split_dataset

    info = split_dataset(dataset, out, holdout_cities=holdout_cities, val_fraction=val_fraction,
                         test_fraction=test_fraction, min_distance_m=min_distance_m, seed=seed)
    console.print(f"[green]wrote[/] {out}: {info.extra.get('split_counts')}")


@app.command("weights")
def weights(
    dataset: Path = typer.Argument(..., help="data set folder"),
    targets: str = typer.Option(..., help="deployment regions: a file or 'lat,lon;lat,lon'"),
    out: Path = typer.Option(..., help="output folder"),
) -> None:
    """Add a ``weight`` column favouring the target deployment regions (never the test set)."""
    from roadvision.data.weights import gps_weights, parse_targets

    info = gps_weights(dataset, out, targets=parse_targets(targets))
    console.print(f"[green]wrote[/] {out}: {info.extra.get('weights')}")


def _parse_size(size: str | None) -> tuple[int, int] | None:
    if size is None:
        return None
    try:
        width, height = (int(v) for v in size.lower().split("x"))
    except ValueError as exc:
        raise UserError(f"--size {size!r}: expected WxH, e.g. 512x512") from exc
    if not (16 <= width <= 4032 and 16 <= height <= 4032):
        raise UserError(f"--size {size!r}: each side must be between 16 and 4032 pixels")
    return width, height
