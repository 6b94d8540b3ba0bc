"""The MLflow model registry, as roadvision uses it: bundles in, aliases and audit tags out.

A registered model version is a model bundle logged as an MLflow ``pyfunc`` model with the
bundle itself kept verbatim under ``artifacts/bundle`` (:mod:`.publish`); serving and the gate
download the bundle (:mod:`.download`) and load it with ``roadvision.models.bundle``, which
never unpickles code. Aliases replace MLflow's old stages: ``challenger`` is the latest
registered candidate, ``champion`` the model in production. Every alias change runs under a
lock on the registered model (:mod:`.lock`) and leaves who/when/why tags on the version and one
audit entry on the registered model (:mod:`.aliases`, :mod:`.audit`).

Modules, one idea each:
    store      where the store is (``ROADVISION_HOME``, ``MLFLOW_TRACKING_URI``), its health
    probe      one real registry call against a tracking server (its Host check)
    client     ``RegistryClient``: ONE explicit ``MlflowClient`` per store
    fluent     the one place MLflow's process-wide URI is set (runs, ``log_model``)
    names      model URIs, version numbers, registered model names
    versions   lookups and version tags
    metrics    nested metric dicts -> flat MLflow metrics
    publish    the pyfunc signature, register a bundle
    audit      the audit log and champion history (registered-model tags)
    aliases    set_alias, promote, rollback under the lock
    lock       the lock itself
    download   a version's storage location, a local copy of its bundle

The functions below are the thin face the CLI, the pipeline steps and serving call: each works
on the store in effect (``MLFLOW_TRACKING_URI``, else the local SQLite store) through a fresh
:class:`RegistryClient`. Code that holds a store of its own calls the modules with its client::

    store = RegistryClient("sqlite:////tmp/other/mlflow.db")
    versions.get_version(store, "models:/roadwork@champion")
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from . import aliases, audit, download, publish, versions
from .aliases import alias_note
from .audit import AUDIT_LOG_TAG, CHAMPION_HISTORY_TAG
from .client import RegistryClient
from .fluent import configure, ensure_experiment
from .metrics import flatten_metrics
from .names import CHALLENGER, CHAMPION, parse_model_uri, parse_version, resolve_model_name
from .store import check_tracking, roadvision_home, tracking_uri
from .versions import VersionInfo

__all__ = [
    "CHAMPION",
    "CHALLENGER",
    "AUDIT_LOG_TAG",
    "CHAMPION_HISTORY_TAG",
    "RegistryClient",
    "VersionInfo",
    "roadvision_home",
    "tracking_uri",
    "configure",
    "check_tracking",
    "ensure_experiment",
    "parse_model_uri",
    "parse_version",
    "resolve_model_name",
    "flatten_metrics",
    "register_bundle",
    "tag_version",
    "set_alias",
    "get_version",
    "find_version",
    "champion",
    "list_models",
    "list_versions",
    "promote",
    "rollback",
    "audit_log",
    "alias_note",
    "champion_history",
    "artifact_location",
    "download_bundle",
]


def register_bundle(bundle_dir: str | os.PathLike, model_name: str, tags: Mapping[str, Any],
                    metrics: Mapping[str, Any] | None = None, *,
                    alias: str | None = CHALLENGER, experiment: str = "roadvision",
                    extra_artifacts: Mapping[str, str | os.PathLike] | None = None,
                    validate_example: bool = True) -> str:
    """Register ``bundle_dir`` as a new version of ``model_name``; see
    :func:`.publish.register_bundle`."""
    return publish.register_bundle(RegistryClient(), bundle_dir, model_name, tags, metrics,
                                   alias=alias, experiment=experiment,
                                   extra_artifacts=extra_artifacts,
                                   validate_example=validate_example)


def tag_version(model_name: str, version: str, tags: Mapping[str, Any]) -> None:
    """Set model-version tags (the gate's decision and reason, for example)."""
    versions.tag_version(RegistryClient(), model_name, version, tags)


def get_version(model_uri: str) -> VersionInfo:
    """Resolve a model URI (alias, version or latest) to its version; UserError when missing."""
    return versions.get_version(RegistryClient(), model_uri)


def find_version(model_uri: str) -> VersionInfo | None:
    """Like :func:`get_version` but None when the model or alias does not exist."""
    return versions.find_version(RegistryClient(), model_uri)


def champion(model_name: str) -> VersionInfo | None:
    """The current ``@champion`` of ``model_name``, or None (no model, or never promoted)."""
    return versions.champion(RegistryClient(), model_name)


def list_models() -> list[dict[str, Any]]:
    """Registered models with their aliases and latest version, newest first."""
    return versions.list_models(RegistryClient())


def list_versions(model_name: str) -> list[VersionInfo]:
    """All versions of a registered model, newest first."""
    return versions.list_versions(RegistryClient(), model_name)


def set_alias(model_name: str, alias: str, version: str | int, reason: str = "", *,
              action: str = "set_alias", by: str | None = None) -> VersionInfo:
    """Point ``alias`` at ``version``, leaving who/when/why on the version and the audit log."""
    return aliases.set_alias(RegistryClient(), model_name, alias, version, reason,
                             action=action, by=by)


def promote(model_name: str, version: str | int, reason: str = "", *,
            by: str | None = None, force: bool = False) -> VersionInfo:
    """Make ``version`` the ``champion``; see :func:`.aliases.promote` (gate refusals, force)."""
    return aliases.promote(RegistryClient(), model_name, version, reason, by=by, force=force)


def rollback(model_name: str, reason: str = "", *, by: str | None = None) -> VersionInfo:
    """Point ``champion`` back at the champion before the current one."""
    return aliases.rollback(RegistryClient(), model_name, reason, by=by)


def audit_log(model_name: str) -> list[dict[str, Any]]:
    """The alias changes recorded on ``model_name`` (oldest first), every one of them."""
    return audit.audit_log(RegistryClient(), model_name)


def champion_history(model_name: str) -> list[str]:
    """The versions that have been champion of ``model_name``, oldest first."""
    return audit.champion_history(RegistryClient(), model_name)


def artifact_location(model_uri: str, artifacts_destination: str | None = None) -> str:
    """The version's model folder as KServe's ``storageUri`` takes it; see
    :func:`.download.artifact_location`."""
    return download.artifact_location(RegistryClient(), model_uri, artifacts_destination)


def download_bundle(model_uri: str, dst: str | os.PathLike | None = None) -> Path:
    """The local bundle directory of ``model_uri`` (a ``models:/`` URI, downloaded once, or a
    bundle folder, returned as it is)."""
    local = download.local_bundle(model_uri)  # no store needed for a folder
    return local if local is not None else download.download_bundle(RegistryClient(), model_uri,
                                                                      dst)
