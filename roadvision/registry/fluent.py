"""MLflow's process-wide store: the one place roadvision sets it, and what needs it.

Every registry read and alias change goes through an explicit ``MlflowClient``
(:mod:`roadvision.registry.client`) and leaves the process-wide URI alone. MLflow's fluent API
has no client to pass: ``mlflow.start_run`` (a pipeline step's run), ``mlflow.log_metrics``,
``mlflow.pyfunc.log_model`` and ``mlflow.register_model`` all read the global tracking and
registry URIs. So the steps that start runs (``components._base.step_run``) :func:`configure`
it for the process, and :func:`roadvision.registry.publish.register_bundle`, which logs a model
through the fluent API, points it at its client's store for that one call (:func:`fluent_store`)
and puts it back. ``mlflow.set_tracking_uri`` also sets ``MLFLOW_TRACKING_URI`` in the
environment (for subprocesses), which is the store the registry's module functions use: putting
it back keeps one client's publishing from moving every later call to its store.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from roadvision.errors import UserError

from .store import artifact_root, prepare_store

__all__ = ["configure", "ensure_experiment", "fluent_store"]

_URI_VARIABLES = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")


def configure(uri: str | None = None) -> str:
    """Point MLflow's fluent API (tracking and registry) at ``uri`` (or the default store) for
    this process and return the resolved URI; the SQLite folder is created on demand."""
    import mlflow

    resolved = prepare_store(uri)
    mlflow.set_tracking_uri(resolved)
    mlflow.set_registry_uri(resolved)
    return resolved


@contextmanager
def fluent_store(uri: str) -> Iterator[str]:
    """MLflow's fluent API on store ``uri`` for the ``with`` block, then back as it was (the
    URIs and their environment variables). An active run must belong to that store: the model
    is logged into it."""
    import mlflow

    before = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    environment = {name: os.environ.get(name) for name in _URI_VARIABLES}
    run = mlflow.active_run()
    if run is not None and before[0] != uri:
        raise UserError(f"the active MLflow run {run.info.run_id} is in {before[0]}, not in the "
                        f"registry's store {uri}: end the run or use the run's store")
    try:
        yield configure(uri)
    finally:
        _put_back(*before, environment)


def _put_back(tracking: str, registry: str, environment: dict[str, str | None]) -> None:
    """The fluent URIs as they resolved before: unset, so they follow the environment again,
    and set only where that resolves differently (they had been set to something else)."""
    import mlflow

    mlflow.set_tracking_uri(None)
    mlflow.set_registry_uri(None)
    _set_environment(environment)
    if mlflow.get_tracking_uri() != tracking:
        mlflow.set_tracking_uri(tracking)
    if mlflow.get_registry_uri() != registry:
        mlflow.set_registry_uri(registry)
    _set_environment(environment)  # set_tracking_uri and set_registry_uri write it too


def _set_environment(environment: dict[str, str | None]) -> None:
    for name, value in environment.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def ensure_experiment(name: str) -> str:
    """The id of experiment ``name`` in the fluent API's store, created (with the local
    artifact root) when missing: runs started with ``mlflow.start_run`` go there."""
    import mlflow

    experiment = mlflow.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    root = artifact_root(mlflow.get_tracking_uri())
    return mlflow.create_experiment(name, artifact_location=root)
