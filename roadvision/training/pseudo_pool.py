"""The unlabelled pool pseudo-labelling reads: images with optional metadata, nothing more.

A pool comes from a folder of image files, from a data-contract folder (a synthetic pool: its
labels ride along as ``truth``, used only to *report* pseudo-label accuracy, never to train),
or from a payload-log frame (``roadvision.monitoring.records.read_logged``: the reading is done
by the CLI and the pipeline step, a floor above; here the frame is plain pandas), or from a list
of image bytes. Every file is read through ``roadvision.data.confine``: no link is followed and
nothing outside the folder the user named is opened.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from roadvision.data.confine import PathRefused, read_confined
from roadvision.errors import UserError

__all__ = ["PoolItem", "pool_from_folder", "pool_from_dataset", "pool_from_frame",
           "pool_from_bytes", "IMAGE_SUFFIXES"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")
_META_KEYS = ("lat", "lon", "weather", "daytime", "scene", "text")


@dataclass
class PoolItem:
    """One unlabelled image: its id, encoded bytes, request metadata and, in a synthetic pool,
    the true label (roadwork) or mask (lanes). ``truth`` is only ever compared, never trained."""

    id: str
    image: bytes
    metadata: dict[str, Any] | None = None
    truth: Any = None


def pool_from_bytes(images: Sequence[bytes], ids: Sequence[str] | None = None) -> list[PoolItem]:
    """A pool from encoded images (ids ``img-000000`` ... unless given)."""
    ids = list(ids) if ids is not None else [f"img-{i:06d}" for i in range(len(images))]
    if len(ids) != len(images):
        raise UserError(f"{len(ids)} ids for {len(images)} pool images")
    return [PoolItem(str(i), bytes(b)) for i, b in zip(ids, images, strict=True)]


def pool_from_folder(folder: str | Path) -> list[PoolItem]:
    """Every image file under ``folder`` (sorted, links skipped); a data-contract folder (one
    holding ``manifest.parquet``) is read as a data set instead."""
    root = Path(folder)
    if not root.is_dir():
        raise UserError(f"pool {folder}: no such folder")
    if (root / "manifest.parquet").is_file():
        return pool_from_dataset(root)
    items = []
    for here, dirs, files in os.walk(root, followlinks=False):
        dirs.sort()
        for name in sorted(files):
            if not name.lower().endswith(IMAGE_SUFFIXES):
                continue
            rel = os.path.relpath(os.path.join(here, name), root)
            try:
                data = read_confined(root, rel)
            except PathRefused:
                continue  # a link or a special file: never read through it
            if data:
                items.append(PoolItem(Path(rel).with_suffix("").as_posix(), data))
    if not items:
        raise UserError(f"pool {folder}: no image files ({', '.join(IMAGE_SUFFIXES)})")
    return items


def pool_from_dataset(data_dir: str | Path, splits: Sequence[str] | None = None) -> list[PoolItem]:
    """The rows of a data-contract folder as a pool; labels/masks become ``truth``."""
    from roadvision.data.contract import read_info
    from roadvision.runtime.readers import load_rows, read_mask, row_metadata

    info = read_info(data_dir)
    rows = load_rows(data_dir, splits)
    items = []
    for row in rows.to_dict("records"):
        try:
            data = read_confined(data_dir, row["image"])
        except PathRefused:
            continue
        if not data:
            continue
        truth: Any = None
        if info.task == "roadwork" and not pd.isna(row.get("label")):
            truth = int(row["label"])
        elif info.task == "lanes" and isinstance(row.get("mask"), str):
            truth = read_mask(data_dir, row["mask"])
        meta = row_metadata(row)
        gps = meta.pop("gps")
        if gps is not None:
            meta["lat"], meta["lon"] = gps
        items.append(PoolItem(str(row["id"]), data, meta, truth))
    if not items:
        raise UserError(f"pool {data_dir}: no readable images in the manifest")
    return items


def pool_from_frame(df: pd.DataFrame) -> list[PoolItem]:
    """A pool from logged payload rows (``read_logged``'s frame): rows with image bytes, one
    per distinct image (``image_sha256``); the request metadata JSON comes along."""
    if "image" not in df.columns or df["image"].isna().all():
        raise UserError("the payload log holds no image bytes (only content references): "
                        "pseudo-labelling needs a server that logs images "
                        "(--payload_log_fields with image)")
    items, seen = [], set()
    for row in df.to_dict("records"):
        data = row.get("image")
        if not isinstance(data, bytes | bytearray) or not data:
            continue
        key = row.get("image_sha256") or f"{row.get('request_id')}-{row.get('instance')}"
        if key in seen:
            continue
        seen.add(key)
        items.append(PoolItem(str(key), bytes(data), _logged_metadata(row.get("metadata"))))
    return items


def _logged_metadata(text: Any) -> dict[str, Any] | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        meta = json.loads(text)
    except json.JSONDecodeError:
        return None
    if not isinstance(meta, dict):
        return None
    gps = meta.get("gps")
    if isinstance(gps, list | tuple) and len(gps) == 2:
        meta["lat"], meta["lon"] = gps
    return {k: meta.get(k) for k in _META_KEYS if meta.get(k) is not None}
