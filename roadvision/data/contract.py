"""The data contract every pipeline step reads and writes.

A dataset is a folder (or an ``s3://`` prefix, see ``ingest``) holding ``manifest.parquet``, one
row per sample, plus the image and mask files the rows point at (paths relative to the folder),
and a ``dataset.json`` that names the task, the classes and a content hash.

Because every step speaks this contract, a step can be run, tested and replaced alone.
"""

from __future__ import annotations

import ast
import hashlib
import io
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = [
    "COLUMNS",
    "TASKS",
    "LANE_CLASSES",
    "LANE_CLASSES_12",
    "ROADWORK_CLASSES",
    "VOCABULARIES",
    "DatasetInfo",
    "ContractError",
    "classes_for",
    "normalize_tag",
    "parse_gps",
    "empty_manifest",
    "read_manifest",
    "coerce_manifest",
    "check_gps",
    "read_info",
    "write_dataset",
    "content_hash",
    "file_sha256",
]

MANIFEST = "manifest.parquet"
INFO = "dataset.json"
SCHEMA_VERSION = 1

TASKS = ("lanes", "roadwork")

#: The default 4-class aerial lane taxonomy (class id = list index).
LANE_CLASSES = ("background", "white_solid", "white_dashed", "yellow_solid")

#: The optional 12-class taxonomy (SkyScapes-like; the first four ids match LANE_CLASSES).
LANE_CLASSES_12 = (
    "background",
    "white_solid",
    "white_dashed",
    "yellow_solid",
    "yellow_dashed",
    "double_white_solid",
    "double_yellow_solid",
    "white_solid_dashed",
    "crosswalk",
    "stop_line",
    "arrow",
    "other_marking",
)

ROADWORK_CLASSES = ("no_roadwork", "roadwork")

#: Known metadata vocabularies. Values are stored lower-case; ``None`` means NULL.
VOCABULARIES: dict[str, tuple[str, ...]] = {
    "weather": ("clear", "cloudy", "rainy", "foggy", "snowy"),
    "daytime": ("day", "night", "dusk"),
    "scene": ("urban", "highway", "residential", "rural", "industrial"),
}

#: Spellings met in real data sets (NATIX, ROADWork) mapped onto our vocabularies.
_ALIASES: dict[str, dict[str, str]] = {
    "weather": {"sunny": "clear", "overcast": "cloudy", "rain": "rainy", "fog": "foggy",
                "snow": "snowy", "haze": "foggy", "hazy": "foggy"},
    "daytime": {"light": "day", "daylight": "day", "dark": "night", "dawn": "dusk",
                "dawn/dusk": "dusk", "twilight": "dusk"},
    "scene": {"city": "urban", "downtown": "urban", "freeway": "highway", "suburban": "residential",
              "countryside": "rural", "work_site": "industrial"},
}

#: Column name -> pandas dtype. Later steps add ``split`` and ``weight``.
COLUMNS: dict[str, str] = {
    "id": "string",
    "image": "string",  # path relative to the dataset folder
    "mask": "string",  # lanes: single-channel PNG of class ids; NULL for roadwork
    "label": "Int64",  # roadwork: 0/1; NULL for lanes
    "lat": "Float64",
    "lon": "Float64",
    "city": "string",
    "weather": "string",
    "daytime": "string",
    "scene": "string",
    "text": "string",
    "width": "Int64",
    "height": "Int64",
    "sha256": "string",  # of the image file's bytes
    "source": "string",  # e.g. "synthetic", "mmseg", "natix"
}
#: ``family``: the synthetic scene family that made the row (``roadvision.data.synth.families``).
OPTIONAL_COLUMNS: dict[str, str] = {"split": "string", "weight": "Float64", "family": "string"}


class ContractError(ValueError):
    """A dataset does not follow the contract; the message names what and where."""


@dataclass
class DatasetInfo:
    """The content of ``dataset.json``."""

    task: str  # one of TASKS
    classes: list[str]  # class names, index = class id
    num_samples: int = 0
    content_hash: str = ""  # sha256 over the manifest rows (see content_hash())
    synthetic: bool = False  # synthetic scores are never compared with real-data numbers
    source: str = ""  # "synth:<size>" (the generator's image size) or the importer format
    schema_version: int = SCHEMA_VERSION
    extra: dict[str, Any] = field(default_factory=dict)  # step-specific facts (seed, splits...)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DatasetInfo:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        if "task" not in known or "classes" not in known:
            raise ContractError(f"{INFO}: missing required key(s) 'task'/'classes'")
        if known["task"] not in TASKS:
            raise ContractError(f"{INFO}: task {known['task']!r} is not one of {TASKS}")
        return cls(**known)


def classes_for(task: str, num_classes: int = 4) -> list[str]:
    """Class names for a task; lanes takes 4 (default) or 12 classes."""
    if task == "roadwork":
        return list(ROADWORK_CLASSES)
    if task == "lanes":
        if num_classes == 4:
            return list(LANE_CLASSES)
        if num_classes == 12:
            return list(LANE_CLASSES_12)
        raise ContractError(f"lanes supports 4 or 12 classes, not {num_classes}")
    raise ContractError(f"unknown task {task!r}; expected one of {TASKS}")


_NULL_STRINGS = ("", "none", "null", "nan", "[]", "['']")


def _is_null(value: Any) -> bool:
    if value is None or value is pd.NA:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and value.strip().lower() in _NULL_STRINGS


def normalize_tag(field_name: str, value: Any) -> str | None:
    """Map a raw metadata value onto the vocabulary of ``field_name``, or None for NULL.

    Accepts plain strings ("Light"), NATIX list-strings ("['Cloudy']", "[]") and lists.
    Unknown values raise ContractError so that importers can quarantine them with a reason.
    """
    if isinstance(value, list | tuple):
        value = value[0] if value else None
    if _is_null(value):
        return None
    text = str(value).strip()
    if text.startswith("["):
        try:
            parsed = ast.literal_eval(text)
        except (ValueError, SyntaxError) as exc:
            raise ContractError(f"{field_name}: cannot parse list-string {text!r}") from exc
        if isinstance(parsed, list | tuple):
            parsed = list(parsed)
        return normalize_tag(field_name, parsed)
    key = text.lower().strip()
    vocab = VOCABULARIES[field_name]
    key = _ALIASES[field_name].get(key, key)
    if key not in vocab:
        raise ContractError(f"{field_name}: unknown value {text!r}; expected one of {vocab}")
    return key


def parse_gps(value: Any) -> tuple[float, float] | None:
    """Parse a GPS value ("[40.44, -79.99]", a pair, or NULL) into (lat, lon), checking ranges."""
    if isinstance(value, str):
        if _is_null(value):
            return None
        try:
            value = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError) as exc:
            raise ContractError(f"gps: cannot parse {value!r}; expected '[lat, lon]'") from exc
    if value is None:
        return None
    try:
        lat, lon = (float(v) for v in value)
    except (TypeError, ValueError) as exc:
        raise ContractError(f"gps: expected a [lat, lon] pair, got {value!r}") from exc
    if not (-90.0 <= lat <= 90.0) or not (-180.0 <= lon <= 180.0):
        raise ContractError(f"gps: ({lat}, {lon}) out of range (lat -90..90, lon -180..180)")
    return lat, lon


def empty_manifest() -> pd.DataFrame:
    """An empty manifest with every contract column and its dtype."""
    return pd.DataFrame({name: pd.Series(dtype=dtype) for name, dtype in COLUMNS.items()})


def _coerce(df: pd.DataFrame) -> pd.DataFrame:
    df = df.copy()
    for name, dtype in {**COLUMNS, **OPTIONAL_COLUMNS}.items():
        if name in df.columns:
            df[name] = df[name].astype(dtype)
        elif name in COLUMNS:
            df[name] = pd.Series([pd.NA] * len(df), dtype=dtype, index=df.index)
    ordered = list(COLUMNS) + [c for c in df.columns if c not in COLUMNS]
    return df[ordered].reset_index(drop=True)


def file_sha256(path: str | Path, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def content_hash(df: pd.DataFrame, info: DatasetInfo) -> str:
    """sha256 over task, classes and every manifest cell, in row order.

    Image bytes enter through the ``sha256`` column, so two datasets with equal hashes hold
    the same pixels, labels and metadata.
    """
    digest = hashlib.sha256()
    digest.update(json.dumps([info.task, list(info.classes)]).encode())
    columns = sorted(df.columns)
    digest.update(json.dumps(columns).encode())
    for row in df[columns].itertuples(index=False):
        cells = [_canonical(v) for v in row]
        digest.update(json.dumps(cells, default=str).encode())
    return digest.hexdigest()


def _canonical(value: Any) -> Any:
    if _is_missing(value):
        return None
    return round(value, 9) if isinstance(value, float) else value


def _is_missing(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def write_dataset(out_dir: str | Path, df: pd.DataFrame, info: DatasetInfo) -> DatasetInfo:
    """Write ``manifest.parquet`` and ``dataset.json``; returns the info with hash and count set."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    df = _coerce(df)
    info.num_samples = len(df)
    info.content_hash = content_hash(df, info)
    df.to_parquet(out / MANIFEST, index=False)
    (out / INFO).write_text(info.to_json())
    return info


def _read_file(dataset_dir: str | Path, name: str) -> bytes | None:
    """A data set's own file, never through a symbolic link (see ``data.confine``)."""
    from roadvision.data.confine import PathRefused, read_confined

    try:
        return read_confined(dataset_dir, name)
    except PathRefused as exc:
        raise ContractError(f"{dataset_dir}: {exc}") from None


def read_info(dataset_dir: str | Path) -> DatasetInfo:
    path = Path(dataset_dir) / INFO
    data = _read_file(dataset_dir, INFO)
    if data is None:
        raise ContractError(f"{dataset_dir}: no {INFO} (is this a roadvision dataset folder?)")
    try:
        return DatasetInfo.from_dict(json.loads(data))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ContractError(f"{path}: not valid JSON ({exc})") from exc


def read_manifest(dataset_dir: str | Path) -> pd.DataFrame:
    path = Path(dataset_dir) / MANIFEST
    data = _read_file(dataset_dir, MANIFEST)
    if data is None:
        raise ContractError(f"{dataset_dir}: no {MANIFEST}")
    try:
        df = pd.read_parquet(io.BytesIO(data))
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise ContractError(f"{path}: unreadable parquet ({exc})") from exc
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise ContractError(f"{path}: missing column(s) {missing}")
    return coerce_manifest(df, path)


def coerce_manifest(df: pd.DataFrame, where: str | Path) -> pd.DataFrame:
    """``df`` in the contract's dtypes; a ContractError naming the first row and column that
    cannot be converted (e.g. a string ``label``), instead of a pandas traceback."""
    try:
        return _coerce(df)
    except (TypeError, ValueError) as exc:
        for name, dtype in {**COLUMNS, **OPTIONAL_COLUMNS}.items():
            if name not in df.columns:
                continue
            for row, value in enumerate(df[name].tolist()):
                try:
                    pd.Series([value]).astype(dtype)
                except (TypeError, ValueError):
                    rid = df["id"].iloc[row] if "id" in df.columns else None
                    ident = f" (id {rid!r})" if not _is_missing(rid) else ""
                    raise ContractError(
                        f"{where}: row {row}{ident}, column {name!r}: {value!r} is not a valid "
                        f"{dtype}; `roadvision data validate` lists every problem") from None
        raise ContractError(f"{where}: a column has the wrong type ({exc}); "
                            "`roadvision data validate` lists every problem") from None


def check_gps(df: pd.DataFrame, where: str | Path) -> None:
    """ContractError naming the first row whose lat/lon is not finite and in range, or set
    without the other: geo steps (split, weights) cannot place such a row."""
    for row, (lat, lon) in enumerate(zip(df["lat"].tolist(), df["lon"].tolist(), strict=True)):
        if _is_missing(lat) and _is_missing(lon):
            continue
        rid = df["id"].iloc[row]
        ident = f" (id {rid!r})" if not _is_missing(rid) else ""
        for name, value, limit in (("lat", lat, 90.0), ("lon", lon, 180.0)):
            if _is_missing(value):
                problem = "NULL while the other coordinate is set (both or neither)"
            elif not math.isfinite(float(value)) or abs(float(value)) > limit:
                problem = f"{float(value)} is not a finite number in -{limit:g}..{limit:g}"
            else:
                continue
            raise ContractError(f"{where}: row {row}{ident}, column {name!r}: {problem}; "
                                "`roadvision data validate` lists every problem")
