"""A registered version's files: where a cluster finds them, and a local copy of its bundle."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.parse
from pathlib import Path

from roadvision.errors import UserError

from .client import RegistryClient
from .store import roadvision_home
from .versions import get_version

__all__ = ["artifact_location", "download_bundle", "local_bundle"]

# Schemes KServe's storage initializer downloads from (it rejects models:/ and mlflow-artifacts:).
_CLUSTER_SCHEMES = ("s3", "gs", "hdfs", "webhdfs", "pvc", "https", "oci", "hf")


def _proxied_path(uri: str) -> str:
    """``mlflow-artifacts:/1/models/m-x/artifacts`` (or ``mlflow-artifacts://host/1/...``) ->
    ``1/models/m-x/artifacts``: the path under the server's ``--artifacts-destination``."""
    return urllib.parse.urlparse(uri).path.lstrip("/")


def artifact_location(client: RegistryClient, model_uri: str,
                      artifacts_destination: str | None = None) -> str:
    """The registered version's model folder as KServe's storage initializer takes it
    (``s3://...``); a UserError that says why when a cluster cannot reach it.

    A tracking server run with ``--serve-artifacts`` hands out ``mlflow-artifacts:`` URIs and
    keeps its ``--artifacts-destination`` to itself (MLflow publishes no internal addresses), so
    the underlying path is known only when the caller names that destination
    (``artifacts_destination`` or ``ROADVISION_ARTIFACTS_DESTINATION``). The folder holds the
    MLflow model with the bundle under ``artifacts/bundle``, which the predictor loads as it is.
    """
    info = get_version(client, model_uri)
    location = client.mlflow.get_model_version_download_uri(info.name, info.version)
    scheme = urllib.parse.urlparse(location).scheme
    label = f"{model_uri} (v{info.version})"
    if scheme == "mlflow-artifacts":
        destination = artifacts_destination or os.environ.get("ROADVISION_ARTIFACTS_DESTINATION")
        path = _proxied_path(location)
        if not destination:
            raise UserError(f"{label} is behind the tracking server's artifact proxy "
                            f"({location}); its s3:// path is the server's "
                            f"--artifacts-destination + /{path}: pass --artifacts-destination "
                            "s3://BUCKET/PREFIX as the server runs, or deploy models:/ directly")
        if urllib.parse.urlparse(destination).scheme not in _CLUSTER_SCHEMES:
            raise UserError(f"--artifacts-destination: {destination!r} is not a URI a cluster "
                            "can read (expected s3://BUCKET[/PREFIX])")
        return f"{destination.rstrip('/')}/{path}"
    if scheme in _CLUSTER_SCHEMES:
        return location
    if scheme in ("", "file"):
        local = urllib.parse.unquote(urllib.parse.urlparse(location).path) if scheme else location
        raise UserError(f"{label} is in a local file store ({local}): not reachable from a "
                        "cluster; register it through a tracking server with an S3 artifact "
                        "store")
    raise UserError(f"{label} is stored at {location}, which KServe's storage initializer does "
                    "not read (it takes s3://, gs://, https://, pvc://)")


def local_bundle(model_uri: str) -> Path | None:
    """``model_uri`` as a local bundle folder; None for a ``models:/`` URI (to download), a
    UserError for anything else."""
    if model_uri.startswith("models:/"):
        return None
    from roadvision.models.bundle import CONFIG_FILE

    local = Path(model_uri)
    if not (local / CONFIG_FILE).is_file():
        raise UserError(f"{model_uri}: neither a bundle folder ({CONFIG_FILE}) nor a models:/ "
                        "URI")
    return local


def _cache_folder(client: RegistryClient, name: str, version: str) -> Path:
    """Where a version's bundle is kept locally: per store, since two stores may both hold a
    version 1 of the same name."""
    store = hashlib.sha256(client.uri.encode()).hexdigest()[:12]
    return roadvision_home() / "models" / store / name / version


def download_bundle(client: RegistryClient, model_uri: str,
                    dst: str | os.PathLike | None = None) -> Path:
    """The local bundle directory of ``model_uri``.

    ``models:/NAME@ALIAS`` or ``models:/NAME/VERSION`` are resolved and downloaded (once: a
    complete copy under ``dst`` or the local cache is reused); a local bundle folder is returned
    as it is, so that every caller can take either.
    """
    import mlflow

    from roadvision.models.bundle import CONFIG_FILE, locate_bundle

    local = local_bundle(model_uri)
    if local is not None:
        return local
    info = get_version(client, model_uri)
    target = Path(dst) if dst else _cache_folder(client, info.name, info.version)
    if (target / CONFIG_FILE).is_file():
        return target
    with tempfile.TemporaryDirectory() as tmp:
        # The version's own location, resolved by this client: MLflow resolves a models:/ URI
        # through the process-wide registry URI whatever registry_uri it is given (3.17).
        location = client.mlflow.get_model_version_download_uri(info.name, info.version)
        path = Path(mlflow.artifacts.download_artifacts(
            artifact_uri=location, dst_path=tmp, tracking_uri=client.uri))
        try:
            found = locate_bundle(path)
        except UserError:
            raise UserError(f"{model_uri} (version {info.version}) holds no model bundle") \
                from None
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(found, target)
    return target
