"""A plain folder of images plus a table of labels -> a roadwork or lanes data set.

Layout (the table is ``labels.csv`` or ``labels.parquet`` at the top, or the file ``labels``
names, relative to ``SRC``)::

    SRC/labels.csv              SRC/labels.csv
    SRC/img/0001.jpg            SRC/img/0001.jpg   SRC/masks/0001.png
    SRC/img/0002.png            ...

    roadwork:                              lanes (a mask column: single-channel PNG of ids):
    file,label,city,weather                file,mask,city
    img/0001.jpg,1,pittsburgh,Cloudy       img/0001.jpg,masks/0001.png,munich
    img/0002.png,no,,                      ...

Columns (names are case-insensitive):

=====================================  ===============================================
``file`` (or ``image``, ``file_name``,  image path relative to ``SRC`` (required)
``filename``, ``path``)
``label``                              roadwork: ``0``/``1``, ``yes``/``no``, ``true``/``false``
``mask``                               lanes: mask path relative to ``SRC``
``id``                                 sample id (default: the file path without extension)
``city``, ``text``                     free text
``weather``, ``daytime`` (or           mapped onto the contract vocabulary
``time_of_day``), ``scene``            (``importers._tags``); unmapped values are listed
``lat``/``lon`` or ``gps``             ``"[40.44, -79.99]"``; unparseable -> ``bad_gps``
``split``                              ``train``/``val``/``test`` (kept as given)
=====================================  ===============================================

The task is ``lanes`` when the table has a ``mask`` column, else ``roadwork`` (or ``task``
says). Other columns are ignored and named in the report. Every file is read through
``data.confine``: a path that is absolute, climbs out with ``..`` or runs through a symbolic
link is quarantined as ``outside_root`` and never read. A row whose image is missing,
unreadable or whose label is unknown is quarantined with its reason; images in the folder that
no row names are counted in the report.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import pandas as pd

from roadvision.data.confine import PathRefused, confined_relpath, read_confined
from roadvision.data.contract import TASKS, ContractError, classes_for, parse_gps
from roadvision.data.images import ImageError, decode_mask
from roadvision.data.importers import register_importer
from roadvision.data.importers._common import DatasetWriter, ImportReport, require_source
from roadvision.errors import UserError

_FILE_COLUMNS = ("file", "image", "file_name", "filename", "path")
_COLUMN_ALIASES = {"time_of_day": "daytime", "timeofday": "daytime", "latitude": "lat",
                   "longitude": "lon", "city_name": "city", "description": "text"}
_KNOWN = {"id", "label", "mask", "city", "text", "weather", "daytime", "scene", "lat", "lon",
          "gps", "split"}
_SPLITS = ("train", "val", "test")
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
_DEFAULT_TABLES = ("labels.csv", "labels.parquet")


@register_importer("folder")
def import_folder(src: str | Path, out: str | Path, *, labels: str | None = None,
                  task: str | None = None, num_classes: int = 4,
                  max_pixels: int | None = None, overwrite: bool = False) -> ImportReport:
    """Import a folder of images with a label table (see the module docstring)."""
    root = require_source(src)
    table_rel = _table_name(root, labels)
    table = _read_table(root, table_rel)
    file_col = _file_column(table, table_rel)
    task = task or ("lanes" if "mask" in table.columns else "roadwork")
    if task not in TASKS:
        raise UserError(f"--task {task!r}: expected one of {', '.join(TASKS)}")
    if task == "lanes" and "mask" not in table.columns:
        raise UserError(f"{table_rel}: task lanes needs a 'mask' column "
                        f"(columns: {', '.join(table.columns)})")
    if task == "roadwork" and "label" not in table.columns:
        raise UserError(f"{table_rel}: task roadwork needs a 'label' column "
                        f"(columns: {', '.join(table.columns)})")
    ignored = sorted(set(table.columns) - _KNOWN - {file_col})
    inputs = {"source": str(root.resolve()), "labels": table_rel, "task": task,
              "num_classes": num_classes}
    with DatasetWriter(out, task=task, classes=classes_for(task, num_classes), source="folder",
                       inputs=inputs, overwrite=overwrite,
                       **({"max_pixels": max_pixels} if max_pixels else {})) as writer:
        named: set[str] = set()
        for index, record in enumerate(table.to_dict("records")):
            _import_row(writer, root, record, file_col, index, table_rel, named)
        unlabelled = _count_unlabelled(root, named | {table_rel})
        if ignored:
            writer.warn("columns ignored (not in the data contract)", ", ".join(ignored))
        if unlabelled:
            writer.warn("images in the folder that no row names (not imported)",
                        f"{unlabelled} file(s)")
        return writer.finish("folder", extra={"folder": {
            "labels": table_rel, "rows": len(table), "ignored_columns": ignored,
            "unlabelled_images": unlabelled}})


def _table_name(root: Path, labels: str | None) -> str:
    if labels:
        try:
            return confined_relpath(labels)
        except PathRefused as exc:
            raise UserError(f"--labels {labels!r}: must be a path inside {root}") from exc
    found = [name for name in _DEFAULT_TABLES if (root / name).exists()]
    if len(found) != 1:
        have = "both " + " and ".join(found) if found else "neither"
        raise UserError(f"{root}: expected one label table, {' or '.join(_DEFAULT_TABLES)} "
                        f"(found {have}); name another with --labels FILE")
    return found[0]


def _read_table(root: Path, rel: str) -> pd.DataFrame:
    """The label table, read through data.confine, every cell a string or None."""
    try:
        data = read_confined(root, rel)
    except PathRefused as exc:
        raise UserError(f"{root}: label table {exc}") from exc
    if data is None:
        raise UserError(f"{root / rel}: no such label table")
    try:
        if rel.lower().endswith(".parquet"):
            table = pd.read_parquet(io.BytesIO(data))
        else:
            table = _read_csv(data)
    except Exception as exc:  # noqa: BLE001 - pandas and pyarrow raise many types
        raise UserError(f"{root / rel}: not a readable CSV or parquet table "
                        f"({' '.join(str(exc).split())})") from exc
    table.columns = [_COLUMN_ALIASES.get(c, c) for c in
                     (str(c).strip().lower() for c in table.columns)]
    if table.columns.duplicated().any():
        raise UserError(f"{rel}: duplicate columns {list(table.columns)}")
    if table.empty:
        raise UserError(f"{root / rel}: the label table has no rows")
    return table.astype(object).where(table.notna(), None)


def _read_csv(data: bytes, sep: str = ",") -> pd.DataFrame:
    """Every cell a string; a spreadsheet's UTF-8 BOM dropped, and a ``;`` or tab separated
    export (one column whose name holds the separator) read with its own separator."""
    table = pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False,
                        skipinitialspace=True, encoding="utf-8-sig", sep=sep)
    if sep == "," and len(table.columns) == 1:
        for other in (";", "\t"):
            if other in str(table.columns[0]):
                return _read_csv(data, other)
    return table


def _file_column(table: pd.DataFrame, rel: str) -> str:
    for name in _FILE_COLUMNS:
        if name in table.columns:
            return name
    raise UserError(f"{rel}: no image file column (one of {', '.join(_FILE_COLUMNS)}; "
                    f"columns: {', '.join(table.columns)})")


def _import_row(writer: DatasetWriter, root: Path, record: dict[str, Any], file_col: str,
                index: int, table_rel: str, named: set[str]) -> None:
    where = f"{table_rel} row {index + 2 if table_rel.endswith('.csv') else index}"
    raw_file = _text(record.get(file_col))
    if raw_file is None:
        writer.reject(_text(record.get("id")) or f"row-{index}", "missing_file",
                      f"{where}: no image file named", file=table_rel)
        return
    try:
        rel = confined_relpath(raw_file)
    except PathRefused as exc:
        writer.reject_path(_text(record.get("id")) or raw_file, exc)
        return
    named.add(rel)
    sample_id = _text(record.get("id")) or os.path.splitext(rel)[0]
    try:
        image = read_confined(root, rel)
    except PathRefused as exc:
        writer.reject_path(sample_id, exc)
        return
    if image is None:
        writer.reject(sample_id, "missing_file", f"{where}: no such image {rel}", file=rel)
        return
    try:
        lat, lon = _gps(record)
    except ContractError as exc:
        writer.reject(sample_id, "bad_gps", f"{where}: {exc}", file=rel, data=image)
        return
    split = _text(record.get("split"))
    if split is not None and split.lower() not in _SPLITS:
        writer.reject(sample_id, "bad_metadata",
                      f"{where}: split {split!r} is not one of {', '.join(_SPLITS)}", file=rel)
        return
    meta = {"lat": lat, "lon": lon, "city": _text(record.get("city")),
            "text": _text(record.get("text")),
            **{name: writer.tag(name, record.get(name), sample_id)
               for name in ("weather", "daytime", "scene")}}
    if split is not None:
        meta["split"] = split.lower()
    mask, mask_rel = None, None
    if writer.task == "lanes":
        mask, mask_rel = _mask(writer, root, record, sample_id, where, named)
        if mask is None:
            return
    writer.add(id=sample_id, image=image, file=rel, mask=mask, mask_file=mask_rel,
               label=record.get("label"), meta=meta)


def _mask(writer: DatasetWriter, root: Path, record: dict[str, Any], sample_id: str,
          where: str, named: set[str]) -> tuple[Any, str | None]:
    """The decoded mask of a lanes row, or (None, ...) after quarantining the row."""
    raw = _text(record.get("mask"))
    if raw is None:
        writer.reject(sample_id, "missing_mask", f"{where}: no mask file named")
        return None, None
    try:
        rel = confined_relpath(raw)
        named.add(rel)
        data = read_confined(root, rel)
    except PathRefused as exc:
        writer.reject_path(sample_id, exc)
        return None, None
    if data is None:
        writer.reject(sample_id, "missing_mask", f"{where}: no such mask {rel}", file=rel)
        return None, None
    try:
        # Room for any 8-bit id: the writer checks the ids against the classes.
        return decode_mask(data, 256), rel
    except ImageError as exc:
        writer.reject(sample_id, exc.reason, str(exc), file=rel, data=data)
        return None, None


def _gps(record: dict[str, Any]) -> tuple[float | None, float | None]:
    if _text(record.get("gps")) is not None:
        pair = parse_gps(record["gps"])
    elif _text(record.get("lat")) is None and _text(record.get("lon")) is None:
        pair = None
    else:
        pair = parse_gps([record.get("lat"), record.get("lon")])
    return pair if pair else (None, None)


def _count_unlabelled(root: Path, named: set[str]) -> int:
    """Image files under ``root`` that no row names (links are neither followed nor counted)."""
    count = 0
    for folder, dirs, files in os.walk(root):  # followlinks=False: a linked folder is skipped
        base = Path(folder).relative_to(root)
        for name in files:
            rel = (base / name).as_posix()
            if (name.lower().endswith(_IMAGE_SUFFIXES) and rel not in named
                    and not (Path(folder) / name).is_symlink()):
                count += 1
        dirs.sort()
    return count


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, float) and value != value:
        return None
    text = str(value).strip()
    return text or None
