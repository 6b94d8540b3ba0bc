"""Aerial lane polylines (AEL-style) -> a lanes data set, rasterised at an explicit width.

AEL (AerialLaneNet) publishes lane markings as polylines, not masks; any mask depends on the
chosen line width, so ``line_width`` (pixels) is an explicit parameter and is recorded in
``dataset.json``. AEL's exact file layout is not available here, so this importer accepts the
following documented shape, one JSON file per image (``SRC/**/*.json``)::

    {
      "image": "tile_0001.jpg",            # relative to the JSON file
      "lanes": [
        {"class": "white_dashed", "points": [[x, y], [x, y], ...]},
        ...
      ],
      "id": "tile_0001",                   # optional (default: JSON file stem)
      "lat": 48.13, "lon": 11.58,          # optional
      "city": "munich"                     # optional
    }

Points are pixel coordinates (x right, y down, floats allowed; the centre of pixel column c,
row r is (c, r)). Classes are the contract's lane classes (``LANE_CLASSES``, or
``LANE_CLASSES_12`` with ``num_classes=12``); a few common spellings (``solid_white``,
``dashed``...) are accepted. Lines are drawn in file order (later lanes win where they cross),
without antialiasing (a mask holds class ids, not blends); see :func:`rasterise` for the exact
width rule. An unknown class or malformed points quarantine that image (``bad_annotation``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from roadvision.data.confine import PathRefused, confined_relpath, read_confined
from roadvision.data.contract import ContractError, classes_for, parse_gps
from roadvision.data.images import DEFAULT_MAX_PIXELS, ImageError, probe_image
from roadvision.data.importers import register_importer
from roadvision.data.importers._common import DatasetWriter, ImportReport, require_source
from roadvision.errors import UserError

_ALIASES = {"solid_white": "white_solid", "dashed_white": "white_dashed", "dashed": "white_dashed",
            "solid": "white_solid", "solid_yellow": "yellow_solid",
            "dashed_yellow": "yellow_dashed"}
_PIECE_PX = 64  # long segments are drawn in pieces of this length


@register_importer("ael")
def import_ael(src: str | Path, out: str | Path, *, line_width: float = 2.0,
               num_classes: int = 4, max_pixels: int | None = None,
               overwrite: bool = False) -> ImportReport:
    """Import per-image polyline JSON files (see the module docstring).

    JSON and image files are read through ``data.confine``: symbolic links and paths that
    are absolute or climb out are quarantined as ``outside_root`` and never read.
    """
    if not (0.5 <= float(line_width) <= 64):
        raise UserError(f"--line-width {line_width}: must be between 0.5 and 64 pixels")
    root = require_source(src)
    files = sorted(root.rglob("*.json"))
    if not files:
        raise UserError(f"{root}: no polyline .json files")
    classes = classes_for("lanes", num_classes)
    inputs = {"source": str(root.resolve()), "line_width": float(line_width),
              "num_classes": num_classes}
    with DatasetWriter(out, task="lanes", classes=classes, source="ael", inputs=inputs,
                       overwrite=overwrite,
                       **({"max_pixels": max_pixels} if max_pixels else {})) as writer:
        for file in files:
            _import_file(writer, file, root, classes, float(line_width),
                         max_pixels or DEFAULT_MAX_PIXELS)
        return writer.finish("ael", extra={"ael": {
            "line_width_px": float(line_width), "antialias": False, "num_classes": num_classes,
            "rule": "pixel centre within line_width/2 of the polyline; pixel (c, r) centre at "
                    "(c, r)",
        }})


def _import_file(writer: DatasetWriter, file: Path, root: Path, classes: list[str],
                 line_width: float, max_pixels: int) -> None:
    rel_json = file.relative_to(root).as_posix()
    try:
        text = read_confined(root, rel_json)
    except PathRefused as exc:
        writer.reject_path(file.stem, exc)
        return
    try:
        doc = json.loads(text or b"")
        if not isinstance(doc, dict) or "image" not in doc:
            raise ValueError("expected an object with 'image' and 'lanes'")
    except (ValueError, UnicodeDecodeError) as exc:
        writer.reject(file.stem, "bad_annotation", f"{rel_json}: {exc}", file=rel_json)
        return
    sample_id = str(doc.get("id") or file.relative_to(root).with_suffix("").as_posix())
    try:
        image_rel = (file.parent.relative_to(root) / confined_relpath(doc["image"])).as_posix()
        image = read_confined(root, image_rel)
    except PathRefused as exc:
        writer.reject_path(sample_id, exc, file=rel_json)
        return
    if image is None:
        writer.reject(sample_id, "missing_file", f"image {doc['image']} not found",
                      file=rel_json)
        return
    try:
        _, width, height = probe_image(image, max_pixels=max_pixels)
    except ImageError as exc:
        writer.reject(sample_id, exc.reason, str(exc), file=image_rel, data=image)
        return
    try:
        mask = rasterise(doc.get("lanes", []), (height, width), classes, line_width)
    except ValueError as exc:
        writer.reject(sample_id, "bad_annotation", f"{rel_json}: {exc}", file=rel_json)
        return
    try:
        has_gps = doc.get("lat") is not None or doc.get("lon") is not None
        gps = parse_gps([doc.get("lat"), doc.get("lon")]) if has_gps else None
    except ContractError as exc:
        writer.reject(sample_id, "bad_gps", f"{rel_json}: {exc}", file=rel_json)
        return
    meta = {"lat": gps[0] if gps else None, "lon": gps[1] if gps else None,
            "city": str(doc["city"]) if doc.get("city") else None}
    writer.add(id=sample_id, image=image, file=image_rel, mask=mask, meta=meta)


def rasterise(lanes: list[dict[str, Any]], shape: tuple[int, int], classes: list[str],
              line_width: float) -> np.ndarray:
    """Draw polylines into an (H, W) uint8 mask of class ids; ValueError on bad input.

    A pixel belongs to a line when its centre lies within ``line_width / 2`` of the polyline
    (pixel (col c, row r) has its centre at (c, r)). Averaged over positions, a line therefore
    covers exactly ``line_width`` pixels across; odd widths on integer coordinates and even
    widths on half-integer ones are exact. (OpenCV's ``thickness`` is not: 2 draws 3 px and
    3 draws 5 px, which would skew IoU on 1-3 px markings.)
    """
    if not isinstance(lanes, list):
        raise ValueError("'lanes' must be a list")
    mask = np.zeros(shape, dtype=np.uint8)
    for i, lane in enumerate(lanes):
        if not isinstance(lane, dict):
            raise ValueError(f"lanes[{i}] must be an object with 'class' and 'points'")
        name = str(lane.get("class", "")).strip().lower()
        name = _ALIASES.get(name, name)
        if name not in classes or name == "background":
            raise ValueError(f"lanes[{i}]: unknown class {lane.get('class')!r}; expected one "
                             f"of {classes[1:]}")
        try:
            points = np.asarray(lane.get("points"), dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"lanes[{i}]: points must be [[x, y], ...]") from exc
        if points.ndim != 2 or points.shape[1] != 2 or len(points) < 2:
            raise ValueError(f"lanes[{i}]: need at least two [x, y] points")
        if not np.isfinite(points).all():
            raise ValueError(f"lanes[{i}]: points must be finite numbers")
        value = classes.index(name)
        for start, end in zip(points[:-1], points[1:], strict=True):
            _draw_segment(mask, start, end, line_width / 2.0, value)
    return mask


def _draw_segment(mask: np.ndarray, a: np.ndarray, b: np.ndarray, radius: float,
                  value: int) -> None:
    """Set pixels whose centre is within ``radius`` of segment a-b (a capsule)."""
    length = float(np.hypot(*(b - a)))
    pieces = max(1, int(np.ceil(length / _PIECE_PX)))  # short pieces keep each bbox small
    for k in range(pieces):
        p = a + (b - a) * (k / pieces)
        q = a + (b - a) * ((k + 1) / pieces)
        x0 = max(int(np.floor(min(p[0], q[0]) - radius)), 0)
        x1 = min(int(np.ceil(max(p[0], q[0]) + radius)), mask.shape[1] - 1)
        y0 = max(int(np.floor(min(p[1], q[1]) - radius)), 0)
        y1 = min(int(np.ceil(max(p[1], q[1]) + radius)), mask.shape[0] - 1)
        if x0 > x1 or y0 > y1:
            continue  # entirely outside the image
        ys, xs = np.mgrid[y0:y1 + 1, x0:x1 + 1].astype(np.float64)
        d = q - p
        denom = float(d @ d)
        t = np.zeros_like(xs) if denom == 0 else np.clip(
            ((xs - p[0]) * d[0] + (ys - p[1]) * d[1]) / denom, 0.0, 1.0)
        dist2 = (xs - p[0] - t * d[0]) ** 2 + (ys - p[1] - t * d[1]) ** 2
        inside = dist2 <= radius * radius + 1e-9
        mask[y0:y1 + 1, x0:x1 + 1][inside] = value
