"""ROADWork COCO instances JSON -> a roadwork data set (image-level labels).

``SRC`` is the JSON file, or a folder holding exactly one ``*.json``. Image ``file_name``s are
resolved beside the JSON, then under ``images/`` beside it.

Label rule: an image with at least one annotation of a *work-zone* category is positive (1),
otherwise negative (0). Work-zone categories are matched by normalised name (lower case,
spaces and dashes as ``_``): cones, drums, barriers, barricades, tubular markers, vertical
panels, fences, arrow boards, message boards, work-zone signs, workers, work vehicles and
equipment (the ROADWork object taxonomy). Pass ``positive_categories`` to override. Annotations
of other categories (e.g. ``car``) do not make an image positive; they are counted in the report.

Optional per-image fields kept as metadata: ``city``/``city_name``, ``gps`` or ``lat``/``lon``,
``weather``, ``daytime``, ``scene`` and ``scene_description``.
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from roadvision.data.confine import PathRefused, check_confined, confined_relpath, read_confined
from roadvision.data.contract import ContractError, classes_for, parse_gps
from roadvision.data.importers import register_importer
from roadvision.data.importers._common import DatasetWriter, ImportReport, require_source
from roadvision.errors import UserError

#: Normalised names of work-zone object categories (ROADWork's taxonomy plus short aliases).
WORKZONE_CATEGORIES = frozenset({
    "cone", "cones", "traffic_cone", "drum", "drums", "barrier", "barriers", "barricade",
    "jersey_barrier", "tubular_marker", "vertical_panel", "fence", "arrow_board",
    "ttc_message_board", "message_board", "sign", "work_zone_sign", "roadwork_sign",
    "temporary_traffic_control_sign", "ttc_sign", "worker", "workers", "police_officer",
    "work_vehicle", "work_equipment", "other_roadwork_objects", "roadwork",
})


def _norm(name: Any) -> str:
    return re.sub(r"[\s\-/]+", "_", str(name).strip().lower())


@register_importer("roadwork-coco")
def import_roadwork_coco(src: str | Path, out: str | Path, *,
                         positive_categories: list[str] | None = None,
                         max_pixels: int | None = None, overwrite: bool = False) -> ImportReport:
    """Import a COCO JSON (see the module docstring for the label rule).

    Image files are read through ``data.confine`` beside the JSON: an absolute or climbing
    ``file_name`` or a symbolic link is quarantined as ``outside_root`` and never read.
    """
    path = require_source(src, kind="file or folder")
    source = path
    if path.is_dir():
        candidates = sorted(path.glob("*.json")) or sorted(path.glob("annotations/*.json"))
        if len(candidates) != 1:
            raise UserError(f"{path}: expected exactly one COCO .json file, found "
                            f"{len(candidates)}; pass the file itself")
        try:
            check_confined(path, candidates[0].relative_to(path).as_posix())
        except PathRefused as exc:
            raise UserError(f"{path}: {exc}") from None
        path = candidates[0]
    try:
        coco = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(coco, dict) or not isinstance(coco.get("images"), list):
        raise UserError(f"{path}: not a COCO file (no 'images' list)")
    positive = ({_norm(c) for c in positive_categories} if positive_categories
                else WORKZONE_CATEGORIES)
    categories = {c.get("id"): _norm(c.get("name", "")) for c in coco.get("categories", [])}
    objects: dict[Any, Counter] = defaultdict(Counter)
    other = Counter()
    for ann in coco.get("annotations", []):
        name = categories.get(ann.get("category_id"), f"category_{ann.get('category_id')}")
        if name in positive:
            objects[ann.get("image_id")][name] += 1
        else:
            other[name] += 1

    inputs = {"source": str(source.resolve()), "positive_categories": sorted(positive)}
    with DatasetWriter(out, task="roadwork", classes=classes_for("roadwork"),
                       source="roadwork-coco", inputs=inputs, overwrite=overwrite,
                       **({"max_pixels": max_pixels} if max_pixels else {})) as writer:
        base = path.parent
        for entry in coco["images"]:
            _import_image(writer, entry, base, objects)
        return writer.finish("roadwork-coco", extra={"roadwork_coco": {
            "annotation_file": path.name,
            "label_rule": "1 if the image has any work-zone object annotation, else 0",
            "positive_objects": dict(sorted(sum(objects.values(), Counter()).items())),
            "ignored_categories": dict(sorted(other.items())),
        }})


def _import_image(writer: DatasetWriter, entry: dict[str, Any], base: Path,
                  objects: dict[Any, Counter]) -> None:
    image_id = entry.get("id")
    name = entry.get("file_name")
    sample_id = str(Path(str(name)).stem if name else image_id)
    if not name:
        writer.reject(sample_id, "missing_file", "image entry has no file_name")
        return
    try:
        rel = confined_relpath(name)
        image = read_confined(base, rel)
        if image is None:
            image = read_confined(base, f"images/{rel}")
    except PathRefused as exc:
        writer.reject_path(sample_id, exc, file=str(name))
        return
    if image is None:
        writer.reject(sample_id, "missing_file", f"file {rel} not found beside the JSON",
                      file=rel)
        return
    try:
        gps = parse_gps(entry["gps"]) if "gps" in entry else (
            parse_gps([entry["lat"], entry["lon"]]) if "lat" in entry and "lon" in entry else None)
    except ContractError as exc:
        writer.reject(sample_id, "bad_gps", str(exc), file=rel, data=image)
        return
    text = entry.get("scene_description")
    city = entry.get("city", entry.get("city_name"))
    meta = {"lat": gps[0] if gps else None, "lon": gps[1] if gps else None,
            "city": str(city) if city else None, "text": str(text) if text else None,
            **{f: writer.tag(f, entry.get(f), sample_id) for f in ("weather", "daytime", "scene")}}
    label = 1 if objects.get(image_id) else 0
    writer.add(id=sample_id, image=image, file=rel, label=label, meta=meta)
