"""Registered models and versions: look them up, list them, tag them."""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from roadvision.errors import UserError

from .client import RegistryClient, is_not_found
from .lock import is_lock_name
from .names import CHAMPION, parse_model_uri

__all__ = ["VersionInfo", "version_info", "get_version", "find_version", "champion",
           "require_version", "list_models", "list_versions", "tag_version", "tag_value",
           "aliases_of", "TAG_VALUE_LIMIT"]

TAG_VALUE_LIMIT = 5000  # MLflow's limit on a tag value (characters)


@dataclass
class VersionInfo:
    """One registered model version, as the CLI and serving need it."""

    name: str
    version: str
    aliases: list[str] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)
    run_id: str | None = None
    source: str = ""
    created_at: str = ""  # ISO 8601, UTC
    description: str = ""

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"

    def metrics(self) -> dict[str, float]:
        """The metric tags (``metric.*``: the headline, see ``publish.TAGGED_METRICS``) as
        numbers; every other metric is on the run that logged the model (``run_id``)."""
        out = {}
        for key, value in self.tags.items():
            if key.startswith("metric."):
                try:
                    out[key[len("metric."):]] = float(value)
                except ValueError:
                    continue
        return out

    def __str__(self) -> str:  # so that f"{info}" reads as the version, as a cache key needs
        return self.version


def version_info(mv: Any) -> VersionInfo:
    """An MLflow ``ModelVersion`` as a :class:`VersionInfo`."""
    created = ""
    if getattr(mv, "creation_timestamp", None):
        created = _dt.datetime.fromtimestamp(mv.creation_timestamp / 1000, _dt.UTC).isoformat(
            timespec="seconds")
    return VersionInfo(name=mv.name, version=str(mv.version), aliases=list(mv.aliases or []),
                       tags=dict(mv.tags or {}), run_id=mv.run_id, source=mv.source or "",
                       created_at=created, description=mv.description or "")


def aliases_of(rm: Any) -> dict[str, str]:
    """A registered model's aliases as ``{alias: version}`` (MLflow hands out a dict or a list,
    depending on the backend)."""
    raw = rm.aliases or {}
    if isinstance(raw, dict):
        return {str(k): str(v) for k, v in raw.items()}
    return {a.alias: str(a.version) for a in raw}


def get_version(client: RegistryClient, model_uri: str) -> VersionInfo:
    """Resolve a model URI (alias, version or latest) to its version; UserError when missing."""
    from mlflow.exceptions import MlflowException

    name, alias, version = parse_model_uri(model_uri)
    try:
        if alias:
            return version_info(client.mlflow.get_model_version_by_alias(name, alias))
        if version:
            return version_info(client.mlflow.get_model_version(name, version))
        versions = client.search_versions(name)
    except MlflowException as exc:
        if is_not_found(exc):
            what = f"alias @{alias}" if alias else f"version {version}" if version else "model"
            raise UserError(f"{model_uri}: no such {what} in the MLflow registry "
                            f"{client.uri}") from None
        raise
    if not versions:
        raise UserError(f"{model_uri}: no registered model named {name!r}")
    return version_info(max(versions, key=lambda mv: int(mv.version)))


def find_version(client: RegistryClient, model_uri: str) -> VersionInfo | None:
    """Like :func:`get_version` but None when the model or alias does not exist."""
    try:
        return get_version(client, model_uri)
    except UserError:
        return None


def champion(client: RegistryClient, model_name: str) -> VersionInfo | None:
    """The current ``@champion`` of ``model_name``, or None (no model, or never promoted)."""
    return find_version(client, f"models:/{model_name}@{CHAMPION}")


def require_version(client: RegistryClient, model_name: str, version: str) -> VersionInfo:
    """Version ``version`` of ``model_name``; a UserError when there is none."""
    from mlflow.exceptions import MlflowException

    try:
        return version_info(client.mlflow.get_model_version(model_name, version))
    except MlflowException as exc:
        if is_not_found(exc):
            raise UserError(f"{model_name}: no version {version} in the registry") from None
        raise


def list_models(client: RegistryClient) -> list[dict[str, Any]]:
    """Registered models with their aliases and latest version, newest first."""
    models = []
    for rm in client.mlflow.search_registered_models(max_results=1000):
        if is_lock_name(rm.name):  # an alias change in progress, not a model
            continue
        versions = client.search_versions(rm.name)
        latest = max((int(v.version) for v in versions), default=0)
        models.append({"name": rm.name, "latest_version": str(latest) if latest else "",
                       "aliases": aliases_of(rm), "num_versions": len(versions),
                       "updated_ms": rm.last_updated_timestamp or 0})
    return sorted(models, key=lambda m: -m["updated_ms"])


def list_versions(client: RegistryClient, model_name: str) -> list[VersionInfo]:
    """All versions of a registered model, newest first."""
    versions = client.search_versions(model_name)
    if not versions:
        raise UserError(f"no registered model named {model_name!r} in {client.uri}")
    return sorted((version_info(v) for v in versions), key=lambda v: -int(v.version))


def tag_value(value: Any) -> str:
    """``value`` as an MLflow tag value: text as it is, anything else as JSON, cut to fit."""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text[:TAG_VALUE_LIMIT]


def tag_version(client: RegistryClient, model_name: str, version: str,
                tags: Mapping[str, Any]) -> None:
    """Set model-version tags (the gate's decision and reason, for example)."""
    for key, value in tags.items():
        client.mlflow.set_model_version_tag(model_name, str(version), key, tag_value(value))
