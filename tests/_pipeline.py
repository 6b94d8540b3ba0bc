"""Fixtures shared by the pipeline/registry/gate/model-CLI tests: a throwaway MLflow store."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def _empty_mlflow_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty, migrated SQLite store, made once: creating one costs seconds of migrations,
    copying it costs nothing, so every test still gets its own store."""
    from mlflow.tracking import MlflowClient

    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def mlflow_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, _empty_mlflow_db: Path) -> str:
    """A fresh SQLite MLflow store (artifacts beside it) for this test only."""
    import mlflow

    db = tmp_path / "mlflow" / "mlflow.db"
    db.parent.mkdir(parents=True)
    shutil.copyfile(_empty_mlflow_db, db)
    uri = f"sqlite:///{db}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("ROADVISION_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    mlflow.set_tracking_uri(uri)
    yield uri
    while mlflow.active_run() is not None:
        mlflow.end_run()


def tiny_bundle(out: Path, task: str = "roadwork") -> Path:
    """A real (untrained) tiny model bundle."""
    from roadvision.models import create_model
    from roadvision.models.bundle import save_bundle

    return Path(save_bundle(create_model(f"{task}_tiny"), out))


def roadwork_dataset(out: Path, n: int = 40, size: int = 48, seed: int = 0) -> Path:
    """A tiny roadwork data set in the contract (an orange block = roadwork), learnable in a
    few steps, with real sha256s, GPS spread over three "cities" and some NULL metadata."""
    import numpy as np
    import pandas as pd
    from PIL import Image

    from roadvision.data.contract import DatasetInfo, classes_for, file_sha256, write_dataset

    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    centres = {"alpha": (40.44, -79.99), "beta": (41.88, -87.63), "gamma": (47.61, -122.33)}
    rows = []
    for i in range(n):
        label = i % 2
        image = np.full((size, size, 3), 90, np.uint8) + rng.integers(0, 30, (size, size, 3),
                                                                      dtype=np.uint8)
        if label:
            y, x = rng.integers(4, size - 20, 2)
            image[y:y + 16, x:x + 16] = (250, 120, 20)
        name = f"img_{i:03d}.png"
        Image.fromarray(image).save(out / name)
        city = list(centres)[i % 3]
        lat, lon = centres[city]
        rows.append({"id": f"s{i}", "image": name, "mask": None, "label": label,
                     "lat": lat + rng.uniform(-0.05, 0.05), "lon": lon + rng.uniform(-0.05, 0.05),
                     "city": city, "weather": ("clear", "rainy", None)[i % 3],
                     "daytime": ("day", None)[i % 2], "scene": "urban", "text": None,
                     "width": size, "height": size, "sha256": file_sha256(out / name),
                     "source": "test"})
    info = DatasetInfo(task="roadwork", classes=classes_for("roadwork"), synthetic=True,
                       source="tests/_pipeline.py")
    write_dataset(out, pd.DataFrame(rows), info)
    return out
