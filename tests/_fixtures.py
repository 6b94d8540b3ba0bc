"""Tiny fixtures written in the real formats (contract folders, MMSeg, NATIX, COCO, AEL).

Everything is generated here, from numpy arrays, so the data tests depend on no generator or
download; images are a few dozen pixels wide so the whole data-io suite stays fast.
"""

from __future__ import annotations

import hashlib
import io
import json
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from roadvision.data.contract import DatasetInfo, classes_for, write_dataset


def rgb(height: int = 24, width: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def encode(array: np.ndarray, fmt: str = "JPEG", **kwargs: Any) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def jpeg(seed: int = 0, height: int = 24, width: int = 32) -> bytes:
    return encode(rgb(height, width, seed), "JPEG", quality=90)


def png(seed: int = 0, height: int = 24, width: int = 32) -> bytes:
    return encode(rgb(height, width, seed), "PNG")


def mask_png(mask: np.ndarray, mode: str = "L") -> bytes:
    """A single-channel PNG of class ids; ``mode="P"`` writes a palette PNG like MMSeg does."""
    mask = np.ascontiguousarray(mask, dtype=np.uint8)
    image = Image.frombytes(mode, (mask.shape[1], mask.shape[0]), mask.tobytes())
    if mode == "P":
        image.putpalette([v for i in range(256) for v in (i, 255 - i, (i * 7) % 256)])
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def lane_mask(height: int = 24, width: int = 32, row: int = 10, cls: int = 1) -> np.ndarray:
    mask = np.zeros((height, width), dtype=np.uint8)
    mask[row:row + 2, :] = cls
    return mask


def corrupt_jpeg(seed: int = 0) -> bytes:
    """A JPEG whose entropy-coded data is overwritten with zeros (header intact)."""
    data = bytearray(encode(rgb(64, 64, seed), "JPEG", quality=90))
    for i in range(400, len(data) - 100, 5):
        data[i] = 0
    return bytes(data)


def truncated_png(seed: int = 0) -> bytes:
    """A PNG cut in the middle of its pixel data."""
    data = encode(rgb(64, 64, seed), "PNG")
    return data[: len(data) // 2]


def png_header(width: int, height: int) -> bytes:
    """A syntactically valid PNG that claims width x height but holds no pixel data."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + body))
        return struct.pack(">I", len(body)) + kind + body + crc
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make_dataset(root: Path, task: str = "roadwork", n: int = 6, *,
                 rows: list[dict[str, Any]] | None = None, size: tuple[int, int] = (24, 32),
                 seed: int = 0) -> pd.DataFrame:
    """Write a valid contract data set of ``n`` tiny samples; ``rows`` override per-row fields
    (``image_bytes``/``mask_bytes`` override the files). Returns the manifest written."""
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    height, width = size
    records = []
    for i in range(n):
        override = dict(rows[i]) if rows and i < len(rows) else {}
        image = override.pop("image_bytes", None) or jpeg(seed * 1000 + i, height, width)
        rel = f"images/s{i:03d}.jpg"
        (root / rel).write_bytes(image)
        record: dict[str, Any] = {
            "id": f"s{i:03d}", "image": rel, "width": width, "height": height,
            "sha256": sha(image), "source": "test", "lat": 40.0 + i * 0.01, "lon": -80.0,
            "city": "pittsburgh", "weather": "clear" if i % 2 else None, "daytime": "day",
            "scene": None, "text": None,
        }
        if task == "roadwork":
            record["label"] = i % 2
        else:
            mask = override.pop("mask_bytes", None) or mask_png(
                lane_mask(height, width, row=2 + i % (height - 4), cls=1 + i % 3))
            mrel = f"masks/s{i:03d}.png"
            (root / "masks").mkdir(exist_ok=True)
            (root / mrel).write_bytes(mask)
            record["mask"] = mrel
        record.update(override)
        records.append(record)
    df = pd.DataFrame(records)
    write_dataset(root, df, DatasetInfo(task=task, classes=classes_for(task), source="test"))
    return df


def write_mmseg(root: Path, samples: dict[str, dict[str, np.ndarray | bytes | None]]) -> Path:
    """``samples``: ``"train/a"`` -> {"image": bytes, "mask": uint8 array or None}."""
    for key, sample in samples.items():
        split, stem = key.split("/")
        img_dir = root / "img_dir" / split
        ann_dir = root / "ann_dir" / split
        img_dir.mkdir(parents=True, exist_ok=True)
        ann_dir.mkdir(parents=True, exist_ok=True)
        (img_dir / f"{stem}.jpg").write_bytes(sample["image"])
        if sample.get("mask") is not None:
            (ann_dir / f"{stem}.png").write_bytes(mask_png(sample["mask"], mode="P"))
    return root


def write_natix(path: Path, records: list[dict[str, Any]], *, image_as_dict: bool = True,
                nested_tags: bool = False) -> Path:
    """A NATIX-schema parquet. Records use NATIX keys; tags as given (list-strings or plain)."""
    rows = []
    for record in records:
        row = dict(record)
        if image_as_dict:
            row["image"] = {"bytes": row["image"], "path": None}
        tags = {k: row.pop(f"scene_level_tags.{k}", None)
                for k in ("daytime", "scene_environment", "travel_alteration", "weather")}
        if nested_tags:
            row["scene_level_tags"] = tags
        else:
            row.update({f"scene_level_tags.{k}": v for k, v in tags.items()})
        rows.append(row)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def write_coco(root: Path, images: list[dict[str, Any]], annotations: list[tuple[int, str]],
               categories: tuple[str, ...] = ("Cone", "Drum", "Arrow Board", "Worker", "car")
               ) -> Path:
    """COCO JSON + image files. ``images``: {"id", "file_name", "bytes" (None: no file)}."""
    root.mkdir(parents=True, exist_ok=True)
    cats = [{"id": i + 1, "name": name} for i, name in enumerate(categories)]
    ids = {c["name"]: c["id"] for c in cats}
    entries = []
    for image in images:
        image = dict(image)
        data = image.pop("bytes", None)
        if data is not None:
            (root / image["file_name"]).write_bytes(data)
        entries.append({"width": 32, "height": 24, **image})
    anns = [{"id": k + 1, "image_id": image_id, "category_id": ids[name],
             "bbox": [1, 1, 5, 5], "area": 25, "iscrowd": 0}
            for k, (image_id, name) in enumerate(annotations)]
    path = root / "instances.json"
    path.write_text(json.dumps({"images": entries, "annotations": anns, "categories": cats}))
    return path


def write_ael(root: Path, name: str, image: bytes, lanes: list[dict[str, Any]],
              **extra: Any) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{name}.jpg").write_bytes(image)
    path = root / f"{name}.json"
    path.write_text(json.dumps({"image": f"{name}.jpg", "lanes": lanes, **extra}))
    return path
