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
