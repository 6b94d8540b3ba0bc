"""The drift reference: features of a sample of the training data, stored beside the bundle.

``roadvision monitor reference --bundle B --data D`` draws ``n`` rows of the data set (its train
split when it has one), runs them through the bundle's encoder and model, and writes
``B/drift_reference.npz`` (embeddings, image statistics, scores, class shares) with its facts in
``B/drift_reference.json`` (bundle version, data set content hash, rows, seed). Beside the bundle
because the reference belongs to one model: another model's encoder embeds differently. The
bundle version hashes the weights only, so adding the reference does not change it; a bundle
registered without one can still be compared against a data folder (``--data``).

:func:`logged_features` turns logged payload rows into the same feature dict.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from roadvision.errors import UserError

__all__ = ["REFERENCE_FILE", "REFERENCE_INFO", "build_reference", "save_reference",
           "load_reference", "find_reference", "logged_features", "image_features"]

REFERENCE_FILE = "drift_reference.npz"
REFERENCE_INFO = "drift_reference.json"
_METADATA_FIELDS = ("lat", "lon", "weather", "daytime", "scene")  # no text: see the note below


@dataclass
class Reference:
    """Features (see ``drift.compare``) and where they came from."""

    features: dict[str, Any]
    info: dict[str, Any]


def image_features(model: Any, images: list[np.ndarray],
                   metadata: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The feature dict of ``images`` through ``model`` (embeddings, statistics, predictions)."""
    from .features import embed_and_predict, image_stats

    embeddings, predictions = embed_and_predict(model, images, metadata)
    features: dict[str, Any] = {"embeddings": embeddings, "stats": image_stats(images)}
    features.update(_prediction_arrays(model.cfg.task, predictions))
    return features


def _prediction_arrays(task: str, predictions: list[dict[str, Any]]) -> dict[str, Any]:
    if task == "roadwork":
        return {"probability": np.array([p["probability"] for p in predictions], np.float64),
                "label": np.array([p["label"] for p in predictions], np.float64),
                "class_shares": {}}
    names = list(predictions[0]["class_shares"]) if predictions else []
    return {"probability": None, "label": None,
            "class_shares": {n: np.array([p["class_shares"][n] for p in predictions])
                             for n in names}}


def build_reference(bundle: str | Path, data: str | Path, *, n: int = 200,
                    seed: int = 0) -> Reference:
    """Features of ``n`` rows of the data set ``data`` (train split if any) through ``bundle``.

    Metadata goes in as the request would send it; the caption text is left out (served
    requests rarely carry one, and it needs the text encoder).
    """
    from roadvision.data.confine import read_confined
    from roadvision.data.contract import read_info, read_manifest
    from roadvision.data.images import decode_image
    from roadvision.models.bundle import bundle_version, locate_bundle
    from roadvision.runtime.inference import load_for_inference

    path = locate_bundle(Path(bundle))
    df = read_manifest(data)
    if "split" in df.columns and (df["split"] == "train").any():
        df = df[df["split"] == "train"]
    if n < 2:
        raise UserError(f"a reference needs at least 2 rows, got n={n}")
    df = df.sample(n=min(n, len(df)), random_state=seed).sort_index()
    model = load_for_inference(path)
    if model.cfg.task != read_info(data).task:
        raise UserError(f"{data} is a {read_info(data).task} data set; the bundle serves "
                        f"{model.cfg.task}")
    images, metadata = [], []
    for _, row in df.iterrows():
        raw = read_confined(Path(data), row["image"])
        if raw is None:
            raise UserError(f"{data}: {row['image']} is missing (ingest the data set first)")
        images.append(decode_image(raw))
        metadata.append({k: _plain(row.get(k)) for k in _METADATA_FIELDS})
    features = image_features(model, images, metadata)
    info = {"bundle_version": bundle_version(path), "task": model.cfg.task, "rows": len(df),
            "seed": seed, "data": Path(data).name,
            "data_content_hash": read_info(data).content_hash}
    return Reference(features, info)


def _plain(value: Any) -> Any:
    return None if value is None or (isinstance(value, float) and np.isnan(value)) or \
        value is pd.NA else (value.item() if hasattr(value, "item") else value)


def save_reference(reference: Reference, out_dir: str | Path) -> Path:
    """Write the reference into ``out_dir`` (normally the bundle); returns the .npz path."""
    out = Path(out_dir)
    arrays = {k: v for k, v in reference.features.items()
              if isinstance(v, np.ndarray)}
    for name, values in (reference.features.get("class_shares") or {}).items():
        arrays[f"share__{name}"] = values
    np.savez_compressed(out / REFERENCE_FILE, **arrays)
    (out / REFERENCE_INFO).write_text(json.dumps(reference.info, indent=2, sort_keys=True) + "\n")
    return out / REFERENCE_FILE


def find_reference(bundle: str | Path) -> Path | None:
    """The reference stored in a bundle (or an MLflow model holding one), None if none."""
    from roadvision.models.bundle import locate_bundle

    path = locate_bundle(Path(bundle))
    return path / REFERENCE_FILE if (path / REFERENCE_FILE).is_file() else None


def load_reference(path: str | Path) -> Reference:
    """Read a reference written by :func:`save_reference`."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        info = json.loads((path.parent / REFERENCE_INFO).read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: not a readable drift reference ({exc})") from None
    features: dict[str, Any] = {"probability": None, "label": None, "class_shares": {}}
    for key, values in arrays.items():
        if key.startswith("share__"):
            features["class_shares"][key.removeprefix("share__")] = values
        else:
            features[key] = values
    return Reference(features, info)


def logged_features(model: Any, rows: pd.DataFrame) -> dict[str, Any]:
    """The feature dict of logged payload rows: embeddings and statistics of the logged images
    (when images were logged) through ``model``, and the scores the server answered."""
    from roadvision.data.images import ImageError, decode_image

    features: dict[str, Any] = {"embeddings": None, "stats": None, "probability": None,
                                "label": None, "class_shares": {}}
    if "image" in rows.columns:
        logged = rows[rows["image"].notna()]
        images = []
        for raw in logged["image"]:
            try:
                images.append(decode_image(bytes(raw)))
            except ImageError:
                continue  # the server answered it with a 4xx; it is not traffic the model saw
        if len(images) >= 2:
            from .features import embed_and_predict, image_stats

            features["embeddings"], _ = embed_and_predict(model, images,
                                                               with_predictions=False)
            features["stats"] = image_stats(images)
    if "probability" in rows.columns and rows["probability"].notna().any():
        scored = rows[rows["probability"].notna()]
        features["probability"] = scored["probability"].to_numpy(np.float64)
        features["label"] = scored["label"].to_numpy(np.float64)
    if "class_shares" in rows.columns and rows["class_shares"].notna().any():
        shares = [json.loads(s) for s in rows["class_shares"].dropna()]
        features["class_shares"] = {n: np.array([s.get(n, 0.0) for s in shares])
                                    for n in shares[0]}
    return features
