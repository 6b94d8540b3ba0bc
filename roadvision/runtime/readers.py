"""Reading the data contract: manifest rows by split, and the files they name.

Rows are chosen by split *before* any file is opened (``load_rows``): a run asked for
train/val never touches a test image, which ``tests/test_training.py`` checks by corrupting the
test files. Every file is read through ``roadvision.data.confine``: never through a symbolic
link, never outside the data set's folder.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from roadvision.data.confine import PathRefused, read_confined
from roadvision.data.contract import ContractError, read_manifest
from roadvision.errors import UserError

__all__ = ["SPLITS", "load_rows", "row_metadata", "read_image", "read_mask"]

SPLITS = ("train", "val", "test")


def load_rows(data_dir: str | Path, splits: Sequence[str] | None) -> pd.DataFrame:
    """Manifest rows of ``splits`` (None = every row), with their original order kept."""
    df = read_manifest(data_dir)
    if splits is None:
        return df.reset_index(drop=True)
    bad = [s for s in splits if s not in SPLITS]
    if bad:
        raise UserError(f"unknown split(s) {bad}; expected some of {SPLITS}")
    if "split" not in df.columns:
        raise UserError(
            f"{data_dir}: the manifest has no 'split' column; run `roadvision data split` first"
        )
    rows = df[df["split"].isin(list(splits))].reset_index(drop=True)
    if rows.empty:
        raise UserError(f"{data_dir}: no rows in split(s) {list(splits)}")
    return rows


def _value(row: Any, name: str) -> Any:
    value = row.get(name, None)
    missing = value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value))
    return None if missing else value


def row_metadata(row: Any) -> dict[str, Any]:
    """The metadata dict ``prepare_sample`` takes (NULL = None)."""
    lat, lon = _value(row, "lat"), _value(row, "lon")
    return {
        "gps": (float(lat), float(lon)) if lat is not None and lon is not None else None,
        "weather": _value(row, "weather"),
        "daytime": _value(row, "daytime"),
        "scene": _value(row, "scene"),
        "text": _value(row, "text"),
    }


def _read_bytes(root: str | Path, rel: Any) -> bytes:
    """A data set file's bytes through ``data.confine``; a ContractError naming the file when
    it is refused or missing."""
    try:
        data = read_confined(root, rel)
    except PathRefused as exc:
        raise ContractError(f"{root}: {exc.reason}: {exc}") from None
    if data is None:
        raise ContractError(f"{root}: file {rel} does not exist")
    return data


def read_image(root: str | Path, rel: Any) -> np.ndarray:
    """The RGB pixels of the data set file ``root/rel`` (confined, see ``_read_bytes``)."""
    data = _read_bytes(root, rel)
    try:
        with Image.open(io.BytesIO(data)) as img:
            return np.asarray(img.convert("RGB"))
    except (OSError, ValueError) as exc:
        raise ContractError(f"{root}/{rel}: cannot read image ({exc})") from exc


def read_mask(root: str | Path, rel: Any) -> np.ndarray:
    """The class-id mask ``root/rel`` (confined, see ``_read_bytes``)."""
    data = _read_bytes(root, rel)
    try:
        with Image.open(io.BytesIO(data)) as img:
            return np.asarray(img)
    except (OSError, ValueError) as exc:
        raise ContractError(f"{root}/{rel}: cannot read mask ({exc})") from exc
