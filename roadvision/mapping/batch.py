"""Batch prediction over files: images -> a predictions table; orthophotos -> vectors.

One plain-Python entry (:func:`predict_files`) behind ``roadvision predict`` and the
batch-prediction pipeline component. Inputs are files or folders (searched recursively for the
suffixes below; symbolic links are skipped, so nothing outside the folders named is read).

- Images (JPEG/PNG/WebP, either task): ``predictions.parquet`` and ``predictions.csv``, one row
  per image (roadwork ``probability``/``label``; lanes ``class_shares`` as JSON and the class
  mask as ``masks/<name>.png``). An image that does not decode gets its reason in ``error``
  and no prediction; the others go on.
- GeoTIFFs (lanes): ``<name>.geojson`` (WGS84), ``<name>.gpkg`` (the raster's CRS) and
  ``<name>.classes.tif`` (class ids at the model's GSD). A raster that cannot be mapped (no
  CRS, unreadable, ...) stops the batch with its reason.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from roadvision.errors import UserError
from roadvision.geo.areas import AREA_FIELDS
from roadvision.geo.features import FEATURE_FIELDS
from roadvision.geo.writers import write_geojson, write_gpkg
from roadvision.progress import track

from .orthophoto import MappingConfig, map_raster

__all__ = ["RASTER_SUFFIXES", "IMAGE_SUFFIXES", "PROVENANCE_FIELDS", "BatchConfig", "Predictor",
           "load_predictor", "collect_inputs", "predict_files"]

RASTER_SUFFIXES = (".tif", ".tiff")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
#: Attributes every feature carries after :data:`roadvision.geo.features.FEATURE_FIELDS`.
PROVENANCE_FIELDS = ("model", "model_version", "imagery_id", "imagery_date")
#: What a crosswalk or an arrow (12 classes) carries besides the line attributes.
AREA_ONLY_FIELDS = tuple(f for f in AREA_FIELDS if f not in FEATURE_FIELDS)


def collect_inputs(inputs: list[str | Path], exclude: str | Path | None = None
                   ) -> tuple[list[Path], list[Path]]:
    """(rasters, images) named by ``inputs``, in order; folders searched recursively, leaving
    out what lies under ``exclude`` (the output folder: a rerun never maps its own output)."""
    skip = Path(exclude).resolve() if exclude is not None else None
    rasters: list[Path] = []
    images: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_symlink():
            raise UserError(f"{path}: a symbolic link; name the file itself")
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and not p.is_symlink()
                           and p.suffix.lower() in RASTER_SUFFIXES + IMAGE_SUFFIXES
                           and not (skip and p.resolve().is_relative_to(skip)))
            if not found:
                raise UserError(f"{path}: no images or GeoTIFFs in this folder "
                                f"({', '.join(IMAGE_SUFFIXES + RASTER_SUFFIXES)})")
        elif path.is_file():
            if path.suffix.lower() not in RASTER_SUFFIXES + IMAGE_SUFFIXES:
                raise UserError(f"{path}: not an image or GeoTIFF (suffixes: "
                                f"{', '.join(IMAGE_SUFFIXES + RASTER_SUFFIXES)})")
            found = [path]
        else:
            raise UserError(f"{path}: no such file or folder")
        for p in found:
            (rasters if p.suffix.lower() in RASTER_SUFFIXES else images).append(p)
    return rasters, images


def _unique_names(paths: list[Path]) -> list[str]:
    names, seen = [], {}
    for p in paths:
        stem = p.stem
        seen[stem] = seen.get(stem, 0) + 1
        names.append(stem if seen[stem] == 1 else f"{stem}-{seen[stem]}")
    return names


@dataclass(frozen=True)
class Predictor:
    """A loaded model with what its outputs are labelled with."""

    model: Any
    provenance: dict[str, Any]  # model (name), model_version (weights hash)
    gsd: float  # metres per pixel it runs at
    gsd_assumed: bool  # the bundle records no GSD and none was given


def load_predictor(bundle_dir: str | Path, name: str | None = None,
                   gsd: float | None = None, device: str = "auto") -> Predictor:
    """Load a bundle folder (or MLflow model folder) for batch prediction. ``name``: the
    registered model's name (default: the bundle's preset); ``gsd``: overrides the bundle's."""
    from roadvision.geo.gsd import model_gsd
    from roadvision.models.bundle import bundle_version, locate_bundle
    from roadvision.runtime.device import resolve_device
    from roadvision.runtime.inference import load_for_inference

    bundle = locate_bundle(bundle_dir)
    model = load_for_inference(bundle, device=resolve_device(device))
    run_gsd, assumed = model_gsd(model.bundle_config, gsd)
    label = name or model.bundle_config.get("preset") or bundle.name
    return Predictor(model, {"model": label, "model_version": bundle_version(bundle)}, run_gsd,
                     assumed and model.cfg.task == "lanes")


@dataclass(frozen=True)
class BatchConfig:
    mapping: MappingConfig
    gsd_assumed: bool = False  # the bundle records no GSD: ``mapping.gsd`` is the default
    tta: str = "none"  # images
    batch_size: int = 16


def _predict_images(model: Any, images: list[Path], out: Path, cfg: BatchConfig,
                    provenance: dict[str, Any]) -> dict[str, Any]:
    from roadvision.data.images import ImageError, decode_image, encode_png
    from roadvision.models.preprocess import prepare_sample
    from roadvision.runtime.inference import predict

    lanes = model.cfg.task == "lanes"
    if lanes:
        (out / "masks").mkdir(exist_ok=True)
    rows = []
    for path, name in track(list(zip(images, _unique_names(images), strict=True)),
                            "predict images"):
        row: dict[str, Any] = {"input": str(path), "error": None, **provenance}
        try:
            image = decode_image(path.read_bytes())
        except (ImageError, OSError) as exc:
            rows.append({**row, "error": str(exc)})
            continue
        result = predict(model, [prepare_sample(model.cfg, image)], cfg.tta, batch_size=1)[0]
        if lanes:
            mask_rel = f"masks/{name}.png"
            (out / mask_rel).write_bytes(encode_png(result["mask"]))
            row.update(class_shares=json.dumps(result["class_shares"]), mask=mask_rel)
        else:
            row.update(probability=result["probability"], label=result["label"])
        rows.append(row)
    frame = pd.DataFrame(rows)
    frame.to_parquet(out / "predictions.parquet", index=False)
    frame.to_csv(out / "predictions.csv", index=False)
    return {"images": len(rows), "failed": int(frame["error"].notna().sum())}


def predict_files(model: Any, inputs: list[str | Path], out: Path, cfg: BatchConfig,
                  provenance: dict[str, Any], exclude: str | Path | None = None
                  ) -> dict[str, Any]:
    """Predict every input into the folder ``out`` (which the caller makes safe to write);
    ``exclude``: the user's output folder, never read as input."""
    rasters, images = collect_inputs(inputs, exclude)
    if rasters and model.cfg.task != "lanes":
        raise UserError(f"{rasters[0]}: GeoTIFFs are mapped by a lanes model; this one is "
                        f"{model.cfg.task!r}")
    summary: dict[str, Any] = {"model": provenance, "rasters": []}
    fields = [*FEATURE_FIELDS, *AREA_ONLY_FIELDS, *PROVENANCE_FIELDS]
    for path, name in zip(rasters, _unique_names(rasters), strict=True):
        result = map_raster(model, path, cfg.mapping, out / f"{name}.classes.tif", provenance)
        meta = {"roadvision": {**provenance, "gsd_m": cfg.mapping.gsd,
                               "gsd_assumed": cfg.gsd_assumed, "imagery": result.imagery,
                               "crs_source": result.info.crs.to_string()}}
        write_geojson(out / f"{name}.geojson", result.features, result.info.crs, fields, meta)
        write_gpkg(out / f"{name}.gpkg", result.features, result.info.crs, fields)
        counts = pd.Series([f["class"] for f in result.features], dtype=object).value_counts()
        summary["rasters"].append({
            "input": str(path), "name": name, "features": len(result.features),
            "per_class": {str(k): int(v) for k, v in counts.items()},
            "area_km2": round(result.area_km2, 6), "seconds": round(result.seconds, 3),
            "km2_per_min": round(result.area_km2 / max(result.seconds, 1e-9) * 60, 4),
        })
    if images:
        summary["images"] = _predict_images(model, images, out, cfg, provenance)
    summary["gsd_m"], summary["gsd_assumed"] = cfg.mapping.gsd, cfg.gsd_assumed
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=_plain) + "\n")
    return summary


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return str(value)
