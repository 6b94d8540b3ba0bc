"""``roadvision predict --model URI INPUT... --out DIR``: batch prediction for both tasks.

Images give a predictions table (parquet + CSV); GeoTIFF orthophotos (lanes) give GeoJSON,
GeoPackage and a class GeoTIFF per raster (``roadvision.mapping.batch``). ``--out`` is written
aside and swapped in whole, and a folder holding anything else is refused unless
``--overwrite`` (``roadvision.data.output``).
"""

from __future__ import annotations

from pathlib import Path

import typer

__all__ = ["register", "predict"]


def register(root: typer.Typer) -> None:
    """Add the ``predict`` command to the root app (called by ``roadvision.cli``)."""
    root.command("predict")(predict)


def predict(
    inputs: list[Path] = typer.Argument(..., metavar="INPUT",
                                        help="image or GeoTIFF files, or folders of them"),
    model: str = typer.Option(..., "--model", help="bundle folder, MLflow model folder or "
                              "models:/NAME@alias"),
    out: Path = typer.Option(..., "--out", help="output folder"),
    gsd: float | None = typer.Option(None, "--gsd", help="metres per pixel to run the model at "
                                     "(default: the bundle's training GSD)"),
    bbox: str | None = typer.Option(None, "--bbox", help="map only this WGS84 area: "
                                    "min_lon,min_lat,max_lon,max_lat"),
    tta: str = typer.Option("none", help="none, flip or full"),
    block: int = typer.Option(1024, help="orthophoto block side in pixels (memory bound)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace what --out holds"),
) -> None:
    """Predict images (table) and orthophotos (lane-marking vectors) with one model."""
    from roadvision.data.output import OutputFolder
    from roadvision.errors import UserError
    from roadvision.geo.crs import parse_bbox
    from roadvision.mapping import MappingConfig
    from roadvision.mapping.batch import BatchConfig, collect_inputs, load_predictor, predict_files

    if tta not in ("none", "flip", "full"):
        raise UserError(f"--tta {tta!r} is not one of none, flip, full")
    if block < 128:
        raise UserError(f"--block {block}: at least 128 pixels")
    area = parse_bbox(bbox) if bbox else None
    collect_inputs(inputs, out)  # bad inputs fail before the model loads or --out is touched
    name = None
    bundle_dir: str | Path = model
    if model.startswith("models:/"):
        from roadvision.registry import download_bundle

        bundle_dir = download_bundle(model)
        name = model.removeprefix("models:/").split("@")[0].split("/")[0]
    predictor = load_predictor(bundle_dir, name, gsd)
    if predictor.gsd_assumed:
        typer.secho(f"warning: the bundle records no training ground sample distance; "
                    f"assuming {predictor.gsd} m/px (pass --gsd to set it)", err=True,
                    fg=typer.colors.YELLOW)
    provenance = predictor.provenance
    cfg = BatchConfig(MappingConfig(gsd=predictor.gsd, block=block, tta=tta, area=area),
                      gsd_assumed=predictor.gsd_assumed, tta=tta)
    inputs_key = {"inputs": [str(p) for p in inputs], "model": provenance,
                  "gsd": predictor.gsd, "bbox": area, "tta": tta, "block": block}
    with OutputFolder(out, command="predict", inputs=inputs_key, overwrite=overwrite) as tmp:
        summary = predict_files(predictor.model, list(inputs), tmp, cfg, provenance, out)
    for r in summary["rasters"]:
        typer.echo(f"{r['input']}: {r['features']} features {r['per_class']}, "
                   f"{r['area_km2']:.4f} km^2 in {r['seconds']:.1f} s -> {out}/{r['name']}"
                   ".geojson, .gpkg, .classes.tif")
    if "images" in summary:
        s = summary["images"]
        typer.echo(f"{s['images']} images ({s['failed']} failed) -> {out}/predictions.parquet, "
                   "predictions.csv")
