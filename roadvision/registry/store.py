"""Where the MLflow store is, and whether it can be reached.

Default (no server needed): ``MLFLOW_TRACKING_URI`` when set, else a SQLite file ``mlflow.db``
with artifacts under ``mlartifacts/`` in the roadvision home (``ROADVISION_HOME``, default
``~/.cache/roadvision``: see :func:`roadvision_home`). A remote tracking server and an S3
artifact store (``MLFLOW_S3_ENDPOINT_URL`` + AWS credentials) work through MLflow's own env vars.
Nothing here touches MLflow's process-wide state (that is :mod:`roadvision.registry.fluent`).
"""

from __future__ import annotations

import os
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from roadvision.errors import UserError

__all__ = ["roadvision_home", "pipeline_runs_root", "models_cache", "tracking_uri", "artifact_root",
           "missing_local_store", "prepare_store", "check_tracking"]


def roadvision_home() -> Path:
    """The local state folder: ``ROADVISION_HOME``, else a per-user cache folder.

    The default is ``$XDG_CACHE_HOME/roadvision``, else ``~/.cache/roadvision``, never the
    working directory: the same registry is found from any directory, and a container whose
    working directory sits on a read-only root still has a writable home (the chart sets
    ``ROADVISION_HOME`` to an emptyDir). With no usable home folder at all (a random uid with no
    passwd entry), a per-user folder in the temporary directory.
    """
    if os.environ.get("ROADVISION_HOME"):
        return Path(os.environ["ROADVISION_HOME"]).expanduser().absolute()
    cache = os.environ.get("XDG_CACHE_HOME", "")
    if cache and Path(cache).is_absolute():  # the XDG spec says to ignore a relative value
        return Path(cache) / "roadvision"
    try:
        home = Path.home()
    except (RuntimeError, KeyError):
        home = None
    if home is None or not home.is_absolute() or str(home) in ("", "/"):
        uid = os.getuid() if hasattr(os, "getuid") else "user"
        return Path(tempfile.gettempdir()) / f"roadvision-{uid}"
    return home / ".cache" / "roadvision"


def pipeline_runs_root() -> Path:
    """Where ``roadvision pipeline run --local`` keeps its runs (one folder each)."""
    return roadvision_home() / "pipeline_runs"


def models_cache() -> Path:
    """Where registered models are downloaded to (serving, the gate)."""
    return roadvision_home() / "models"


def tracking_uri(uri: str | None = None) -> str:
    """The tracking URI in effect: an explicit one, ``MLFLOW_TRACKING_URI``, or local SQLite."""
    if uri:
        return uri
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    return f"sqlite:///{roadvision_home() / 'mlflow.db'}"


def _sqlite_folder(uri: str) -> Path | None:
    return Path(uri[len("sqlite:///"):]).parent if uri.startswith("sqlite:///") else None


def missing_local_store(uri: str | None = None) -> Path | None:
    """The SQLite file of ``uri`` (or the store in effect) when it does not exist yet, else None.

    Commands that only read the registry check this first: opening a missing SQLite store
    creates it (seconds of schema migrations) only to find it empty.
    """
    resolved = tracking_uri(uri)
    if not resolved.startswith("sqlite:///"):
        return None
    path = Path(resolved[len("sqlite:///"):])
    return None if path.exists() else path


def artifact_root(uri: str) -> str | None:
    """Where new experiments keep artifacts; None lets a tracking server decide."""
    if os.environ.get("ROADVISION_MLFLOW_ARTIFACTS"):
        return os.environ["ROADVISION_MLFLOW_ARTIFACTS"]
    folder = _sqlite_folder(uri)
    if folder is not None:
        # Beside the database file, so that a temporary store keeps its artifacts with it
        # (MLflow's own default would be ./mlruns in whatever the working directory is).
        return (folder / "mlartifacts").absolute().as_uri()
    return None


def prepare_store(uri: str | None = None) -> str:
    """The resolved URI of ``uri`` (or the default store), its SQLite folder created on demand
    so that a fresh checkout works with no setup."""
    # Progress bars would fill pipeline logs with carriage-return noise.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    resolved = tracking_uri(uri)
    folder = _sqlite_folder(resolved)
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
    return resolved


def check_tracking(uri: str | None = None, *, timeout: float = 5.0,
                   parameter: str = "mlflow_tracking_uri") -> str:
    """Fail fast, naming ``parameter``, when the tracking store cannot be reached.

    HTTP servers are probed on ``/health`` (a short timeout, no MLflow retries: MLflow's own
    client retries for minutes before it gives up); SQLite needs a folder that can be created.
    """
    resolved = tracking_uri(uri)
    scheme = urllib.parse.urlparse(resolved).scheme
    if scheme in ("http", "https"):
        url = resolved.rstrip("/") + "/health"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310
                if response.status >= 500:
                    raise UserError(f"{parameter}: MLflow at {resolved} answers HTTP "
                                    f"{response.status}")
        except urllib.error.HTTPError as exc:
            if exc.code >= 500:
                raise UserError(f"{parameter}: MLflow at {resolved} answers HTTP {exc.code}") \
                    from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise UserError(f"{parameter}: the MLflow tracking server {resolved} is unreachable "
                            f"({reason}); start it or set MLFLOW_TRACKING_URI") from None
        # /health is exempt from MLflow's Host check: one real registry call finds a 403.
        from .probe import probe_registry

        probe_registry(resolved, timeout=timeout, parameter=parameter)
    elif scheme == "sqlite":
        folder = Path(resolved[len("sqlite:///"):]).parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"{parameter}: cannot create the MLflow store folder {folder}: "
                            f"{exc.strerror}") from None
        if not os.access(folder, os.W_OK):
            raise UserError(f"{parameter}: the MLflow store folder {folder} is not writable")
    elif scheme in ("", "file"):
        pass  # a file store: MLflow creates it
    elif scheme not in ("databricks", "postgresql", "mysql", "mssql"):
        raise UserError(f"{parameter}: unsupported MLflow tracking URI {resolved!r} "
                        "(use http(s)://, sqlite:/// or a folder)")
    return resolved
