"""Check a data set folder against the contract and name the row and column of every problem.

The validator never stops at the first problem: a person fixing a data set wants the full list
(``row 12, column 'lat': 95.0 out of range -90..90``). It checks, in order: the folder,
``dataset.json``, the manifest's columns and dtypes, every row's values, and (with
``check_files``) every file: present, sha256, decodable, size, mask class ids.
"""

from __future__ import annotations

import hashlib
import io
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from roadvision.data import contract
from roadvision.data.confine import PathRefused, read_confined
from roadvision.data.contract import COLUMNS, INFO, MANIFEST, OPTIONAL_COLUMNS, VOCABULARIES
from roadvision.data.fileops import safe_relpath
from roadvision.data.images import DEFAULT_MAX_PIXELS, ImageError, decode_image, decode_mask
from roadvision.errors import UserError

__all__ = ["Problem", "ValidationReport", "validate_dataset", "SPLITS"]

SPLITS = ("train", "val", "test")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass
class Problem:
    """One contract violation; ``row`` is the 0-based manifest row, None for whole-file issues."""

    row: int | None
    column: str | None
    message: str
    id: str | None = None

    def __str__(self) -> str:
        where = []
        if self.row is not None:
            where.append(f"row {self.row}" + (f" (id {self.id!r})" if self.id else ""))
        if self.column is not None:
            where.append(f"column {self.column!r}")
        return (", ".join(where) + ": " if where else "") + self.message


@dataclass
class ValidationReport:
    ok: bool
    num_rows: int
    problems: list[Problem] = field(default_factory=list)

    def summary(self) -> str:
        if self.ok:
            return f"ok: {self.num_rows} rows, no problems"
        return f"{len(self.problems)} problem(s) in {self.num_rows} rows; first: {self.problems[0]}"


class _Collector:
    """Gathers problems, stopping at ``limit`` so a systematic fault cannot flood memory."""

    def __init__(self, limit: int) -> None:
        self.problems: list[Problem] = []
        self.limit = limit
        self.dropped = 0

    def add(self, row: int | None, column: str | None, message: str, id: Any = None) -> None:
        if len(self.problems) >= self.limit:
            self.dropped += 1
            return
        self.problems.append(Problem(row, column, message, None if _missing(id) else str(id)))

    def finish(self) -> list[Problem]:
        if self.dropped:
            self.problems.append(Problem(None, None, f"... and {self.dropped} more problem(s)"))
        return self.problems


def _missing(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def validate_dataset(dataset_dir: str | Path, check_files: bool = True, *,
                     max_pixels: int = DEFAULT_MAX_PIXELS, max_problems: int = 1000
                     ) -> ValidationReport:
    """Validate a data set folder; see the module docstring for what is checked.

    Raises:
        UserError: the path does not exist or is not a folder (nothing to report on).
    """
    root = Path(dataset_dir)
    if not root.exists():
        raise UserError(f"{root}: no such folder")
    if not root.is_dir():
        raise UserError(f"{root}: not a folder (a data set is a folder with {MANIFEST})")
    out = _Collector(max_problems)
    if not any(root.iterdir()):
        out.add(None, None, f"{root} is empty: expected {MANIFEST} and {INFO} "
                            "(make one with `roadvision data synth` or `roadvision data import`)")
        return ValidationReport(False, 0, out.finish())

    info = None
    try:
        info = contract.read_info(root)
        _check_info(info, out)
    except contract.ContractError as exc:
        out.add(None, None, str(exc))

    try:
        manifest = read_confined(root, MANIFEST)
    except PathRefused as exc:
        out.add(None, None, f"{exc.reason}: {exc}")
        return ValidationReport(False, 0, out.finish())
    if manifest is None:
        out.add(None, None, f"no {MANIFEST} in {root}")
        return ValidationReport(False, 0, out.finish())
    try:
        raw = pd.read_parquet(io.BytesIO(manifest))
    except Exception as exc:  # noqa: BLE001 - pyarrow raises many types for a damaged file
        out.add(None, None, f"{MANIFEST} is not readable parquet ({exc})")
        return ValidationReport(False, 0, out.finish())
    if len(raw) == 0:
        out.add(None, None, f"{MANIFEST} has no rows")
        return ValidationReport(False, 0, out.finish())

    df, coercible = _check_columns(raw, out)
    ids = df["id"] if "id" in df.columns else pd.Series([None] * len(df))
    _check_rows(df, info, ids, out)
    if check_files and "image" in df.columns:
        _check_files(root, df, info, ids, out, max_pixels)
    if info is not None and coercible:
        _check_hash(raw, info, out)
    problems = out.finish()
    return ValidationReport(not problems, len(df), problems)


def _check_info(info: contract.DatasetInfo, out: _Collector) -> None:
    if not info.classes:
        out.add(None, None, f"{INFO}: 'classes' is empty")
    if info.task == "roadwork" and list(info.classes) != list(contract.ROADWORK_CLASSES):
        out.add(None, None, f"{INFO}: roadwork classes must be {list(contract.ROADWORK_CLASSES)}, "
                            f"not {info.classes}")
    if info.task == "lanes" and list(info.classes) not in (list(contract.LANE_CLASSES),
                                                           list(contract.LANE_CLASSES_12)):
        out.add(None, None, f"{INFO}: lanes classes must be the 4- or 12-class taxonomy")


def _check_columns(raw: pd.DataFrame, out: _Collector) -> tuple[pd.DataFrame, bool]:
    """Coerce each column to its contract dtype, naming the rows that refuse to convert."""
    df = raw.copy()
    coercible = True
    for name in COLUMNS:
        if name not in df.columns:
            out.add(None, name, "required column is missing")
            coercible = False
    for name, dtype in {**COLUMNS, **OPTIONAL_COLUMNS}.items():
        if name not in df.columns:
            continue
        try:
            df[name] = df[name].astype(dtype)
        except (TypeError, ValueError):
            coercible = False
            if dtype in ("Int64", "Float64"):
                numbers = pd.to_numeric(df[name], errors="coerce")
                bad = numbers.isna() & df[name].notna()
                if dtype == "Int64":
                    bad |= numbers.notna() & (numbers % 1 != 0)
                for row in df.index[bad]:
                    out.add(int(row), name, f"{raw[name].iloc[row]!r} is not a valid {dtype}")
                if not bad.any():
                    out.add(None, name, f"cannot be read as {dtype}")
                numbers = numbers.where(~bad)
                df[name] = numbers.round() if dtype == "Int64" else numbers
                df[name] = df[name].astype(dtype)
            else:
                out.add(None, name, f"cannot be read as {dtype}")
                df[name] = df[name].map(lambda v: v if _missing(v) else str(v)).astype(dtype)
    for name in COLUMNS:
        if name not in df.columns:
            df[name] = pd.Series([pd.NA] * len(df), dtype=COLUMNS[name])
    return df, coercible


def _check_rows(df: pd.DataFrame, info: contract.DatasetInfo | None, ids: pd.Series,
                out: _Collector) -> None:
    seen: dict[str, int] = {}
    task = info.task if info is not None else None
    records = df.to_dict("records")  # plain dicts: much faster than df.iloc per row
    for row, r in enumerate(records):
        rid = ids.iloc[row]
        if _missing(r["id"]) or not str(r["id"]).strip():
            out.add(row, "id", "missing (every row needs a unique id)")
        elif str(r["id"]) in seen:
            out.add(row, "id", f"duplicate of row {seen[str(r['id'])]}", rid)
        else:
            seen[str(r["id"])] = row
        if _missing(r["image"]):
            out.add(row, "image", "missing (every row needs an image path)", rid)
        else:
            try:
                safe_relpath(r["image"])
            except ValueError as exc:
                out.add(row, "image", str(exc), rid)
        if task == "lanes" and _missing(r["mask"]):
            out.add(row, "mask", "missing (lanes rows need a mask)", rid)
        if not _missing(r["mask"]):
            try:
                safe_relpath(r["mask"])
            except ValueError as exc:
                out.add(row, "mask", str(exc), rid)
        label = r["label"]
        if task == "roadwork":
            if _missing(label):
                out.add(row, "label", "missing (roadwork rows need label 0 or 1)", rid)
            elif int(label) not in (0, 1):
                out.add(row, "label", f"{label} is not 0 or 1", rid)
        _check_gps(row, r, rid, out)
        for name, vocab in VOCABULARIES.items():
            value = r[name]
            if not _missing(value) and value not in vocab:
                out.add(row, name, f"{value!r} is not in the vocabulary {vocab} (or NULL)", rid)
        for name in ("width", "height"):
            value = r[name]
            if _missing(value):
                out.add(row, name, "missing", rid)
            elif int(value) <= 0:
                out.add(row, name, f"{value} must be positive", rid)
        sha = r["sha256"]
        if _missing(sha):
            out.add(row, "sha256", "missing", rid)
        elif not _SHA256.match(str(sha)):
            out.add(row, "sha256", f"{str(sha)[:20]!r} is not a lower-case hex sha256", rid)
        if "split" in df.columns and not _missing(r["split"]) and r["split"] not in SPLITS:
            out.add(row, "split", f"{r['split']!r} is not one of {SPLITS}", rid)
        if "weight" in df.columns and not _missing(r["weight"]):
            weight = float(r["weight"])
            if not math.isfinite(weight) or weight < 0:
                out.add(row, "weight", f"{weight} must be a finite number >= 0", rid)


def _check_gps(row: int, r: dict[str, Any], rid: Any, out: _Collector) -> None:
    lat, lon = r["lat"], r["lon"]
    if _missing(lat) != _missing(lon):
        column = "lat" if _missing(lat) else "lon"
        out.add(row, column, "NULL while the other coordinate is set (both or neither)", rid)
    if not _missing(lat) and not -90.0 <= float(lat) <= 90.0:
        out.add(row, "lat", f"{float(lat)} out of range -90..90", rid)
    if not _missing(lon) and not -180.0 <= float(lon) <= 180.0:
        out.add(row, "lon", f"{float(lon)} out of range -180..180", rid)


def _check_files(root: Path, df: pd.DataFrame, info: contract.DatasetInfo | None,
                 ids: pd.Series, out: _Collector, max_pixels: int) -> None:
    num_classes = len(info.classes) if info is not None and info.task == "lanes" else None
    for row, r in enumerate(df.to_dict("records")):
        rid = ids.iloc[row]
        image_shape = None
        if not _missing(r["image"]):
            data = _read(root, r["image"], row, "image", rid, out)
            if data is not None:
                sha = r["sha256"]
                actual = hashlib.sha256(data).hexdigest()
                if not _missing(sha) and actual != sha:
                    out.add(row, "sha256", f"file {r['image']} has sha256 {actual[:12]}..., "
                                           f"manifest says {str(sha)[:12]}...", rid)
                try:
                    image_shape = decode_image(data, max_pixels=max_pixels).shape[:2]
                except ImageError as exc:
                    out.add(row, "image", f"{r['image']}: {exc.reason}: {exc}", rid)
            if image_shape is not None:
                for name, actual_size in (("height", image_shape[0]), ("width", image_shape[1])):
                    if not _missing(r[name]) and int(r[name]) != actual_size:
                        out.add(row, name, f"{int(r[name])} but the image is {actual_size} px",
                                rid)
        if not _missing(r["mask"]) and num_classes is not None:
            data = _read(root, r["mask"], row, "mask", rid, out)
            if data is None:
                continue
            try:
                mask = decode_mask(data, num_classes, max_pixels=max_pixels)
            except ImageError as exc:
                out.add(row, "mask", f"{r['mask']}: {exc.reason}: {exc}", rid)
                continue
            if image_shape is not None and mask.shape != tuple(image_shape):
                out.add(row, "mask", f"{r['mask']} is {mask.shape[1]}x{mask.shape[0]} but the "
                                     f"image is {image_shape[1]}x{image_shape[0]}", rid)


def _read(root: Path, value: str, row: int, column: str, rid: Any,
          out: _Collector) -> bytes | None:
    try:
        rel = safe_relpath(value)
    except ValueError:
        return None  # already reported by _check_rows
    try:
        data = read_confined(root, rel)
    except PathRefused as exc:  # a link or a non-file: reported, never read
        out.add(row, column, f"{exc.reason}: {exc}", rid)
        return None
    if data is None:
        out.add(row, column, f"file {value} does not exist", rid)
    return data


def _check_hash(raw: pd.DataFrame, info: contract.DatasetInfo, out: _Collector) -> None:
    df = contract._coerce(raw)  # the same normalisation write_dataset hashed
    if info.num_samples != len(df):
        out.add(None, None, f"{INFO}: num_samples is {info.num_samples} but the manifest has "
                            f"{len(df)} rows")
    actual = contract.content_hash(df, info)
    if info.content_hash != actual:
        out.add(None, None, f"{INFO}: content_hash {info.content_hash[:12] or '(empty)'}... does "
                            f"not match the manifest ({actual[:12]}...): edited by hand? "
                            "Rewrite it with contract.write_dataset")
