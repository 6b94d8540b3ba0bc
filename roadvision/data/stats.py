"""Summary statistics of a data set: the numbers to look at before training on it.

Class balance (positive share for roadwork; per-class pixel shares and the lane pixel share for
lanes, read from the masks), NULL rate per metadata field, cities and image sizes. The result is a
flat, ordered dict of scalars and short strings, so the CLI prints it as a table and tests and
pipeline steps read single keys (``stats["null_rate.weather"]``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from roadvision.data.confine import read_confined
from roadvision.data.contract import ContractError, read_info, read_manifest
from roadvision.data.fileops import safe_relpath
from roadvision.data.images import ImageError, decode_mask
from roadvision.errors import UserError

__all__ = ["dataset_stats", "NULL_FIELDS"]

#: Metadata fields whose NULL rate is reported ("gps" = lat/lon missing).
NULL_FIELDS = ("weather", "daytime", "scene", "text", "gps")


def dataset_stats(dataset_dir: str | Path, max_masks: int | None = None) -> dict[str, Any]:
    """Statistics of the data set in ``dataset_dir`` (see the module docstring for the keys).

    ``max_masks`` limits how many lane masks are read (the first ones, in manifest order);
    None reads all of them.
    """
    root = Path(dataset_dir)
    if not root.is_dir():
        raise UserError(f"{root}: no such data set folder")
    info = read_info(root)
    df = read_manifest(root)
    out: dict[str, Any] = {"samples": len(df), "task": info.task, "synthetic": info.synthetic,
                           "source": info.source or "-"}
    if "split" in df.columns and df["split"].notna().any():
        out["splits"] = _counts(df["split"])
    if info.task == "roadwork":
        labels = df["label"].dropna()
        out["positive_share"] = float(labels.mean()) if len(labels) else float("nan")
        out["positives"] = int(labels.sum())
    else:
        out.update(_pixel_shares(root, df, info.classes, max_masks))
    for name in NULL_FIELDS:
        column = df["lat"].isna() | df["lon"].isna() if name == "gps" else df[name].isna()
        out[f"null_rate.{name}"] = float(column.mean()) if len(df) else float("nan")
    out["cities"] = int(df["city"].nunique(dropna=True))
    out["city_counts"] = _counts(df["city"])
    out["image_size"] = _size_range(df)
    return out


def _counts(column: pd.Series) -> str:
    """"berlin:25 london:30 ..." (sorted by name; NULL shown as '<null>')."""
    counts = column.fillna("<null>").astype(str).value_counts().sort_index()
    return " ".join(f"{name}:{int(n)}" for name, n in counts.items()) or "-"


def _size_range(df: pd.DataFrame) -> str:
    w, h = df["width"].dropna(), df["height"].dropna()
    if not len(w) or not len(h):
        return "-"
    low, high = f"{int(w.min())}x{int(h.min())}", f"{int(w.max())}x{int(h.max())}"
    return low if low == high else f"{low}..{high}"


def _pixel_shares(root: Path, df: pd.DataFrame, classes: list[str],
                  max_masks: int | None) -> dict[str, Any]:
    """Per-class pixel shares over all masks, and the lane (non-background) share."""
    counts = np.zeros(len(classes), np.int64)
    read = 0
    for value in df["mask"].dropna():
        if max_masks is not None and read >= max_masks:
            break
        try:
            data = read_confined(root, safe_relpath(str(value)))
            if data is None:
                raise FileNotFoundError("file does not exist")
            mask = decode_mask(data, len(classes))
        except (OSError, ValueError, ImageError) as exc:
            raise ContractError(f"{root}: mask {value}: {exc} "
                                "(run `roadvision data validate` for a full report)") from None
        counts += np.bincount(mask.ravel(), minlength=len(classes))[: len(classes)]
        read += 1
    total = int(counts.sum())
    out: dict[str, Any] = {"masks_read": read}
    out["lane_pixel_share"] = float(counts[1:].sum() / total) if total else float("nan")
    out["background_to_lane"] = (float(counts[0] / counts[1:].sum()) if counts[1:].sum()
                                 else float("inf"))
    for k, name in enumerate(classes):
        out[f"pixel_share.{name}"] = float(counts[k] / total) if total else float("nan")
    return out
