"""One MLflow store's registry, through an explicit ``MlflowClient``.

``RegistryClient(uri)`` builds ONE ``MlflowClient(tracking_uri=uri, registry_uri=uri)`` for the
store and every registry function takes it: two stores can be used from one process, and no call
changes MLflow's process-wide URI (only :mod:`roadvision.registry.fluent` does, for the fluent
API). The module functions of :mod:`roadvision.registry` build one per call for the store in
effect (:func:`roadvision.registry.store.tracking_uri`), as the CLI and the pipeline steps want.
"""

from __future__ import annotations

from typing import Any

from .store import prepare_store

__all__ = ["RegistryClient", "is_not_found", "quote"]


class RegistryClient:
    """The registry of one MLflow store.

    Args:
        uri: tracking (and registry) URI; None = ``MLFLOW_TRACKING_URI`` or the local SQLite
            store in the roadvision home. A SQLite store's folder is created on demand.
    """

    def __init__(self, uri: str | None = None) -> None:
        from mlflow import MlflowClient

        self.uri = prepare_store(uri)
        #: The explicit MLflow client every call of this store goes through.
        self.mlflow = MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)

    def __repr__(self) -> str:
        return f"RegistryClient({self.uri!r})"

    def registered_tags(self, model_name: str) -> dict[str, str]:
        """The registered model's own tags (audit entries, champion history)."""
        return dict(self.mlflow.get_registered_model(model_name).tags or {})

    def search_versions(self, model_name: str) -> list[Any]:
        """Every version of ``model_name`` (MLflow ``ModelVersion`` objects, any order)."""
        return list(self.mlflow.search_model_versions(f"name = '{quote(model_name)}'"))


def is_not_found(exc: Exception) -> bool:
    """True for MLflow's "no such model / version / alias" errors (codes differ per backend)."""
    return getattr(exc, "error_code", "") in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND") or \
        "not found" in str(exc).lower() or "does not exist" in str(exc).lower()


def quote(value: str) -> str:
    """``value`` inside a single-quoted MLflow search filter."""
    return value.replace("'", "\\'")
