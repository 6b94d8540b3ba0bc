"""NATIX StreetVision / ROADWork parquet -> a roadwork data set.

Accepted columns (both the NATIX copy, Hugging Face ``natix-network-org/roadwork``, and the
public ROADWork copy, CMU arXiv 2406.07661 / github.com/anuragxel/roadwork-dataset):

==============================  ==========================================================
``image``                       JPEG/PNG bytes, or HF ``datasets``' ``{"bytes": ..., "path": ...}``
``id``                          string or integer (missing: ``<file stem>-<row>``)
``label``                       0/1 (anything else is quarantined as ``bad_label``)
``gps``                         ``"[40.44, -79.99]"``, a pair, or NULL (also ``lat``/``lon``)
``city_name``                   -> ``city``
``scene_description``           -> ``text``
``scene_level_tags.weather``    list-string ``"['Cloudy']"``/``"[]"`` or plain ``"Cloudy"``
``scene_level_tags.daytime``    -> ``daytime`` (``"Light"`` -> ``day``)
``scene_level_tags.scene_environment``  -> ``scene``
``width``/``height``            checked against the decoded image (the decoded size wins)
==============================  ==========================================================

The tags may also come as one struct column ``scene_level_tags``. ``travel_alteration`` has no
place in the contract and is dropped. Tag values map onto the contract through
``importers._tags`` (``"['Partly Cloudy']"`` -> ``cloudy``, ``"Suburban"`` -> ``residential``,
``"Dark"`` -> ``night``; a list of weathers keeps the most visibility-reducing one). A value with
no mapping is listed with its count in the report (``extra.unmapped_tags`` in ``dataset.json``)
and leaves the field NULL with a warning, never a lost row; a GPS value
that cannot be parsed or is out of range quarantines the row (``bad_gps``), because a wrong
location would break the geo-aware split.

The parquet is streamed in batches, so a multi-gigabyte file never sits in memory at once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from roadvision.data.confine import PathRefused, check_confined, confined_relpath, read_confined
from roadvision.data.contract import ContractError, classes_for, parse_gps
from roadvision.data.importers import register_importer
from roadvision.data.importers._common import DatasetWriter, ImportReport, require_source
from roadvision.errors import UserError

_TAGS = {"weather": "weather", "daytime": "daytime", "scene_environment": "scene"}
_BATCH_ROWS = 64


@register_importer("natix")
def import_natix(src: str | Path, out: str | Path, *, max_pixels: int | None = None,
                 overwrite: bool = False) -> ImportReport:
    """Import one parquet file or every ``*.parquet`` under a folder (sorted by path).

    An ``image.path`` is read relative to its parquet file, inside the folder the user named
    (for a file: its folder) through ``data.confine``: absolute paths, ``..`` and symbolic links
    are quarantined as ``outside_root`` and never read; so are linked parquet files.
    """
    path = require_source(src, kind="file or folder")
    root = path if path.is_dir() else path.parent
    files = [path] if path.is_file() else sorted(path.rglob("*.parquet"))
    if not files:
        raise UserError(f"{path}: no .parquet files")
    with DatasetWriter(out, task="roadwork", classes=classes_for("roadwork"), source="natix",
                       inputs={"source": str(path.resolve())}, overwrite=overwrite,
                       **({"max_pixels": max_pixels} if max_pixels else {})) as writer:
        for file in files:
            rel_dir = file.parent.relative_to(root)
            if file != path:
                try:
                    check_confined(root, file.relative_to(root).as_posix())
                except PathRefused as exc:
                    writer.reject_path(file.stem, exc)
                    continue
            _import_file(writer, file, root, rel_dir)
        return writer.finish("natix", extra={"natix": {"files": [f.name for f in files]}})


def _import_file(writer: DatasetWriter, file: Path, root: Path, rel_dir: Path) -> None:
    try:
        parquet = pq.ParquetFile(file)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types
        raise UserError(f"{file}: not a readable parquet file ({exc})") from exc
    names = set(parquet.schema_arrow.names)
    if "image" not in names:
        raise UserError(f"{file}: no 'image' column (columns: {sorted(names)})")
    index = 0
    for batch in parquet.iter_batches(batch_size=_BATCH_ROWS):
        for record in batch.to_pylist():
            _import_row(writer, record, file, index, root, rel_dir)
            index += 1


def _import_row(writer: DatasetWriter, record: dict[str, Any], file: Path, index: int,
                root: Path, rel_dir: Path) -> None:
    raw_id = record.get("id")
    sample_id = f"{file.stem}-{index}" if raw_id is None or str(raw_id) == "" else str(raw_id)
    where = f"{file.name}[{index}]"
    try:
        image = _image_bytes(record.get("image"), root, rel_dir)
    except PathRefused as exc:
        writer.reject(sample_id, exc.reason, f"image.path {exc}", file=where)
        return
    if image is None:
        writer.reject(sample_id, "missing_file", "row has no image bytes", file=where)
        return
    try:
        gps = _gps(record)
    except ContractError as exc:
        writer.reject(sample_id, "bad_gps", str(exc), file=where, data=image)
        return
    tags = _tags(record)
    meta = {
        "lat": gps[0] if gps else None,
        "lon": gps[1] if gps else None,
        "city": _text(record.get("city_name", record.get("city"))),
        "text": _text(record.get("scene_description", record.get("text"))),
        **{ours: writer.tag(ours, tags.get(theirs), sample_id) for theirs, ours in _TAGS.items()},
    }
    if writer.add(id=sample_id, image=image, file=where, label=record.get("label"), meta=meta):
        row = writer.rows[-1]
        for name in ("width", "height"):
            claimed = record.get(name)
            if claimed is not None and str(claimed) != str(row[name]):
                writer.warn(f"{name} differs from the decoded image (decoded size kept)",
                            f"id {sample_id}: {name} {claimed} vs {row[name]}")


def _image_bytes(value: Any, root: Path, rel_dir: Path) -> bytes | None:
    """Raw bytes from ``bytes`` or an HF-style ``{"bytes": ..., "path": ...}`` struct; a path
    is relative to the parquet file's folder ``root/rel_dir`` and confined to ``root``."""
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    if isinstance(value, dict):
        if value.get("bytes"):
            return bytes(value["bytes"])
        if value.get("path"):
            rel = (rel_dir / confined_relpath(value["path"])).as_posix()
            return read_confined(root, rel)
    return None


def _gps(record: dict[str, Any]) -> tuple[float, float] | None:
    if "gps" in record:
        return parse_gps(record["gps"])
    lat = record.get("lat", record.get("latitude"))
    lon = record.get("lon", record.get("longitude"))
    if lat is None and lon is None:
        return None
    return parse_gps([lat, lon])


def _tags(record: dict[str, Any]) -> dict[str, Any]:
    """Tags from flat ``scene_level_tags.x`` columns or a ``scene_level_tags`` struct."""
    nested = record.get("scene_level_tags")
    tags = dict(nested) if isinstance(nested, dict) else {}
    for key in _TAGS:
        flat = f"scene_level_tags.{key}"
        if flat in record:
            tags[key] = record[flat]
    return tags


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None
