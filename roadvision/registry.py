"""The MLflow model registry, as roadvision uses it: bundles in, aliases and audit tags out.

A registered model version is a model bundle (``config.json`` + ``weights.safetensors``) logged as
an MLflow ``pyfunc`` model (so that MLflow's UI, ``mlflow models predict`` and signature checks
work) with the bundle itself kept verbatim under ``artifacts/bundle``. Serving and the gate never
go through pyfunc: they download the bundle and load it with ``roadvision.models.bundle``, which
never unpickles code.

Aliases replace MLflow's old stages: ``challenger`` is the latest registered candidate,
``champion`` the model in production. Every alias change leaves audit tags (who, when, why) on the
version and one audit entry on the registered model (``roadvision.audit.<seq>``), and champion
changes extend ``roadvision.champion_history`` so that ``rollback`` can find the previous
champion.

Where the store lives (default, no server needed): ``MLFLOW_TRACKING_URI`` when set, else a SQLite
file ``mlflow.db`` with artifacts under ``mlartifacts/`` in the roadvision home
(``ROADVISION_HOME``, default ``~/.cache/roadvision``: see :func:`roadvision_home`). A remote
tracking server and an S3 artifact store (``MLFLOW_S3_ENDPOINT_URL`` + AWS credentials) work
through MLflow's own env vars.

Alias changes (promote, rollback, challenger) are serialised by a lock on the registered model
(``roadvision.registry_lock``) and each leaves one audit entry, its own registered-model tag.
"""

from __future__ import annotations

import datetime as _dt
import getpass
import json
import math
import os
import re
import shutil
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from roadvision.errors import UserError

__all__ = [
    "CHAMPION",
    "CHALLENGER",
    "VersionInfo",
    "roadvision_home",
    "tracking_uri",
    "configure",
    "check_tracking",
    "ensure_experiment",
    "parse_model_uri",
    "flatten_metrics",
    "register_bundle",
    "set_alias",
    "get_version",
    "find_version",
    "list_models",
    "list_versions",
    "champion",
    "promote",
    "rollback",
    "audit_log",
    "parse_version",
    "artifact_location",
    "tag_version",
    "download_bundle",
]

CHAMPION = "champion"
CHALLENGER = "challenger"
BUNDLE_ARTIFACT = "bundle"  # the bundle's folder name inside the pyfunc model's artifacts/
# Stores written before per-entry audit tags keep their JSON list here; it is read, never written.
AUDIT_LOG_TAG = "roadvision.audit_log"
CHAMPION_HISTORY_TAG = "roadvision.champion_history"  # registered-model tag: "1,3,4"
_TAG_VALUE_LIMIT = 5000  # MLflow's limit on a tag value (characters)

# Requirements written into the logged model. Explicit, because inferring them is slow and torch's
# "+cpu" local version label would point a GPU host at the wrong wheel (see RESEARCH.md).
PIP_REQUIREMENTS = [
    "roadvision",
    "torch==2.13.0",
    "timm==1.0.31",
    "safetensors",
    "pillow",
    "numpy",
    "pandas",
    "mlflow==3.17.2",
]


# --------------------------------------------------------------------------- store location
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


def tracking_uri(uri: str | None = None) -> str:
    """The tracking URI in effect: an explicit one, ``MLFLOW_TRACKING_URI``, or local SQLite."""
    if uri:
        return uri
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    return f"sqlite:///{roadvision_home() / 'mlflow.db'}"


def _artifact_root(uri: str) -> str | None:
    """Where new experiments keep artifacts; None lets a tracking server decide."""
    if os.environ.get("ROADVISION_MLFLOW_ARTIFACTS"):
        return os.environ["ROADVISION_MLFLOW_ARTIFACTS"]
    if uri.startswith("sqlite:///"):
        # Beside the database file, so that a temporary store keeps its artifacts with it
        # (MLflow's own default would be ./mlruns in whatever the working directory is).
        db_path = Path(uri[len("sqlite:///"):])
        return (db_path.parent / "mlartifacts").absolute().as_uri()
    return None


def configure(uri: str | None = None) -> str:
    """Point MLflow (tracking and registry) at ``uri`` (or the default store) and return it.

    The SQLite folder is created on demand, so that a fresh checkout works with no setup.
    """
    import mlflow

    # Progress bars would fill pipeline logs with carriage-return noise.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    resolved = tracking_uri(uri)
    if resolved.startswith("sqlite:///"):
        Path(resolved[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(resolved)
    mlflow.set_registry_uri(resolved)
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
        from roadvision.tracking_probe import probe_registry

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


def ensure_experiment(name: str) -> str:
    """The experiment's id, created (with the local artifact root) when missing."""
    import mlflow

    experiment = mlflow.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    root = _artifact_root(mlflow.get_tracking_uri())
    return mlflow.create_experiment(name, artifact_location=root)


def _client():
    from mlflow import MlflowClient

    configure()
    return MlflowClient()


# --------------------------------------------------------------------------- model URIs
_URI_RE = re.compile(r"^(?:models:/)?(?P<name>[^@/]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+))?$")


def parse_model_uri(model_uri: str) -> tuple[str, str | None, str | None]:
    """``models:/NAME@ALIAS`` | ``models:/NAME/VERSION`` | ``NAME[@ALIAS|/VERSION]`` ->
    ``(name, alias, version)``; a bare name means its latest version."""
    match = _URI_RE.match(model_uri.strip())
    if not match:
        raise UserError(f"bad model URI {model_uri!r}: expected models:/NAME@ALIAS, "
                        "models:/NAME/VERSION or NAME[@ALIAS|/VERSION]")
    return match["name"], match["alias"], match["version"]


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
        """The metric tags (``metric.*``) as numbers."""
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


def _info(mv) -> VersionInfo:
    created = ""
    if getattr(mv, "creation_timestamp", None):
        created = _dt.datetime.fromtimestamp(mv.creation_timestamp / 1000, _dt.UTC).isoformat(
            timespec="seconds")
    return VersionInfo(name=mv.name, version=str(mv.version), aliases=list(mv.aliases or []),
                       tags=dict(mv.tags or {}), run_id=mv.run_id, source=mv.source or "",
                       created_at=created, description=mv.description or "")


def _not_found(exc: Exception) -> bool:
    return getattr(exc, "error_code", "") in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND") or \
        "not found" in str(exc).lower() or "does not exist" in str(exc).lower()


def get_version(model_uri: str) -> VersionInfo:
    """Resolve a model URI (alias, version or latest) to its version; UserError when missing."""
    from mlflow.exceptions import MlflowException

    name, alias, version = parse_model_uri(model_uri)
    client = _client()
    try:
        if alias:
            return _info(client.get_model_version_by_alias(name, alias))
        if version:
            return _info(client.get_model_version(name, version))
        versions = client.search_model_versions(f"name = '{_quote(name)}'")
    except MlflowException as exc:
        if _not_found(exc):
            what = f"alias @{alias}" if alias else f"version {version}" if version else "model"
            raise UserError(f"{model_uri}: no such {what} in the MLflow registry "
                            f"{tracking_uri()}") from None
        raise
    if not versions:
        raise UserError(f"{model_uri}: no registered model named {name!r}")
    return _info(max(versions, key=lambda mv: int(mv.version)))


def find_version(model_uri: str) -> VersionInfo | None:
    """Like :func:`get_version` but None when the model or alias does not exist."""
    try:
        return get_version(model_uri)
    except UserError:
        return None


def champion(model_name: str) -> VersionInfo | None:
    """The current ``@champion`` of ``model_name``, or None (no model, or never promoted)."""
    return find_version(f"models:/{model_name}@{CHAMPION}")


def _quote(value: str) -> str:
    return value.replace("'", "\\'")


def list_models() -> list[dict[str, Any]]:
    """Registered models with their aliases and latest version, newest first."""
    from roadvision.registry_lock import is_lock_name

    client = _client()
    models = []
    for rm in client.search_registered_models(max_results=1000):
        if is_lock_name(rm.name):  # an alias change in progress, not a model
            continue
        versions = client.search_model_versions(f"name = '{_quote(rm.name)}'")
        latest = max((int(v.version) for v in versions), default=0)
        aliases = dict(rm.aliases or {}) if isinstance(rm.aliases, dict) else {
            a.alias: a.version for a in (rm.aliases or [])}
        models.append({"name": rm.name, "latest_version": str(latest) if latest else "",
                       "aliases": aliases, "num_versions": len(versions),
                       "updated_ms": rm.last_updated_timestamp or 0})
    return sorted(models, key=lambda m: -m["updated_ms"])


def list_versions(model_name: str) -> list[VersionInfo]:
    """All versions of a registered model, newest first."""
    versions = _client().search_model_versions(f"name = '{_quote(model_name)}'")
    if not versions:
        raise UserError(f"no registered model named {model_name!r} in {tracking_uri()}")
    return sorted((_info(v) for v in versions), key=lambda v: -int(v.version))


# --------------------------------------------------------------------------- registering
def flatten_metrics(metrics: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """Nested metric dicts -> ``{"headline": .., "slices.weather.clear.mcc": ..}``.

    Non-numeric leaves (lists such as confusion matrices, strings) and NaN/inf are left out:
    MLflow metrics and tags want finite numbers.
    """
    flat: dict[str, float] = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_metrics(value, prefix=f"{name}."))
        elif isinstance(value, bool):
            continue
        elif isinstance(value, (int, float)) and math.isfinite(float(value)):
            flat[name] = float(value)
    return flat


def _metric_name(name: str) -> str:
    # MLflow accepts alphanumerics, _ - . space / : only; slice values such as "dawn/dusk" fit.
    return re.sub(r"[^\w\-. /:]", "_", name)


def _bundle_task(bundle_dir: Path) -> str | None:
    """The task named in the bundle's config.json (searched, not assumed at one key)."""
    try:
        config = json.loads((bundle_dir / "config.json").read_text())
    except (OSError, ValueError):
        return None

    def find(node):
        if isinstance(node, dict):
            if node.get("task") in ("lanes", "roadwork"):
                return node["task"]
            for child in node.values():
                found = find(child)
                if found:
                    return found
        return None

    return find(config)


def _signature_and_example(task: str | None):
    """The pyfunc's input schema (an encoded image + optional metadata) and a tiny example."""
    import io

    import numpy as np
    import pandas as pd
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema
    from PIL import Image

    inputs = Schema([
        ColSpec("binary", "image"),
        ColSpec("double", "lat", required=False), ColSpec("double", "lon", required=False),
        ColSpec("string", "weather", required=False), ColSpec("string", "daytime", required=False),
        ColSpec("string", "scene", required=False), ColSpec("string", "text", required=False),
    ])
    if task == "lanes":
        outputs = Schema([ColSpec("string", "class_shares"), ColSpec("string", "mask_png")])
    else:
        outputs = Schema([ColSpec("double", "probability"), ColSpec("long", "label")])
    buf = io.BytesIO()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf, format="PNG")
    example = pd.DataFrame({"image": [buf.getvalue()]})
    return ModelSignature(inputs=inputs, outputs=outputs), example


def _pyfunc_source() -> str:
    """The models-from-code file MLflow copies into the logged model.

    A file, not a pickled object: loading the logged model runs this small, reviewable module
    instead of unpickling a class (the same reason the bundle itself is safetensors + JSON).
    """
    return str(Path(__file__).with_name("pyfunc_model.py"))


def register_bundle(bundle_dir: str | os.PathLike, model_name: str, tags: Mapping[str, Any],
                    metrics: Mapping[str, Any] | None = None, *,
                    alias: str | None = CHALLENGER, experiment: str = "roadvision",
                    extra_artifacts: Mapping[str, str | os.PathLike] | None = None,
                    validate_example: bool = True) -> str:
    """Log ``bundle_dir`` as a pyfunc model, register it under ``model_name``, return the version.

    Logs into the active MLflow run when there is one (a pipeline step's nested run), else into a
    new run of ``experiment``. ``tags`` become model-version tags (data set hash, code version,
    pipeline run id...), ``metrics`` (nested dicts are flattened) become run metrics and
    ``metric.*`` version tags so that ``model show`` and the gate read them without the run.
    ``extra_artifacts`` (name -> file or folder) are logged beside the model (reports, plots).
    The new version gets ``alias`` (``challenger``) unless it is None.
    """
    import mlflow

    bundle = Path(bundle_dir)
    if not (bundle / "config.json").is_file():
        raise UserError(f"bundle_dir: {bundle} is not a model bundle (no config.json)")
    if not model_name or not re.fullmatch(r"[A-Za-z0-9][\w.\-]*", model_name):
        raise UserError(f"model_name: {model_name!r} is not a valid registered model name "
                        "(letters, digits, '.', '_', '-')")
    configure()
    task = _bundle_task(bundle) or tags.get("task")
    flat = {_metric_name(k): v for k, v in flatten_metrics(metrics or {}).items()}

    started = None
    if mlflow.active_run() is None:
        mlflow.set_experiment(experiment_id=ensure_experiment(experiment))
        started = mlflow.start_run(run_name=f"register-{model_name}")
    try:
        run = mlflow.active_run()
        if flat:
            mlflow.log_metrics(flat)
        for name, path in (extra_artifacts or {}).items():
            path = Path(path)
            if path.is_dir():
                mlflow.log_artifacts(str(path), artifact_path=name)
            elif path.is_file():
                mlflow.log_artifact(str(path), artifact_path=name)
        signature, example = _signature_and_example(task)
        with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
            # MLflow's advice (type hints on predict, an example) does not apply: the signature
            # is explicit and the example is skipped only where a caller asks for it.
            warnings.simplefilter("ignore", UserWarning)
            # A clean copy: only the bundle's own files, whatever else sits in its folder.
            staged = Path(tmp) / BUNDLE_ARTIFACT
            shutil.copytree(bundle, staged)
            model_info = mlflow.pyfunc.log_model(
                name="model",
                python_model=_pyfunc_source(),
                artifacts={BUNDLE_ARTIFACT: str(staged)},
                signature=signature,
                input_example=example if validate_example else None,
                pip_requirements=PIP_REQUIREMENTS,
                metadata={"roadvision_task": task or ""},
            )
        version_tags = {str(k): _tag_value(v) for k, v in tags.items() if v is not None}
        version_tags.update({f"metric.{k}": f"{v:.6g}" for k, v in flat.items()})
        if task:
            version_tags.setdefault("task", task)
        mv = mlflow.register_model(model_info.model_uri, model_name, tags=version_tags)
        client = _client()
        client.update_model_version(model_name, mv.version,
                                    description=f"registered from run {run.info.run_id}")
        if alias:
            set_alias(model_name, alias, mv.version, reason="registered by the pipeline")
        return str(mv.version)
    finally:
        if started is not None:
            mlflow.end_run()


def _tag_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text[:_TAG_VALUE_LIMIT]


def tag_version(model_name: str, version: str, tags: Mapping[str, Any]) -> None:
    """Set model-version tags (the gate's decision and reason, for example)."""
    client = _client()
    for key, value in tags.items():
        client.set_model_version_tag(model_name, str(version), key, _tag_value(value))


# --------------------------------------------------------------------------- aliases + audit
# Every alias move runs under the registered model's lock (roadvision.registry_lock): read the
# current alias and audit, write the alias, the version tags and ONE new audit tag, re-read and
# verify, release. So the alias always equals its last audit entry, and no append overwrites
# another: each audit entry is its own registered-model tag ``roadvision.audit.<seq>`` with a
# sequence number taken under the lock (no clocks involved in the order).
AUDIT_ENTRY_PREFIX = "roadvision.audit."


def _who() -> str:
    if os.environ.get("ROADVISION_USER"):
        return os.environ["ROADVISION_USER"]
    try:
        return getpass.getuser()
    except Exception:  # no user name in some containers (random uid)
        return f"uid-{os.getuid()}" if hasattr(os, "getuid") else "unknown"


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def _registered_tags(client, model_name: str) -> dict[str, str]:
    return dict(client.get_registered_model(model_name).tags or {})


def _aliases(rm) -> dict[str, str]:
    raw = rm.aliases or {}
    if isinstance(raw, dict):
        return {str(k): str(v) for k, v in raw.items()}
    return {a.alias: str(a.version) for a in raw}


def _audit_entries(tags: Mapping[str, str]) -> list[dict[str, Any]]:
    """The audit in order: the legacy JSON list first (stores written before per-entry tags),
    then one entry per ``roadvision.audit.<seq>`` tag by sequence number."""
    try:
        legacy = json.loads(tags.get(AUDIT_LOG_TAG, "[]"))
    except ValueError:
        legacy = []
    numbered = []
    for key, value in tags.items():
        if key.startswith(AUDIT_ENTRY_PREFIX) and key[len(AUDIT_ENTRY_PREFIX):].isdigit():
            try:
                entry = json.loads(value)
            except ValueError:
                entry = {"action": "unreadable", "raw": value[:200]}
            numbered.append((int(key[len(AUDIT_ENTRY_PREFIX):]), entry))
    return [e for e in legacy if isinstance(e, dict)] + [e for _, e in sorted(numbered)]


def _next_seq(tags: Mapping[str, str]) -> int:
    seqs = [int(k[len(AUDIT_ENTRY_PREFIX):]) for k in tags
            if k.startswith(AUDIT_ENTRY_PREFIX) and k[len(AUDIT_ENTRY_PREFIX):].isdigit()]
    return max(seqs, default=0) + 1


def _audit_key(seq: int) -> str:
    return f"{AUDIT_ENTRY_PREFIX}{seq:06d}"


def _append_audit(client, model_name: str, entry: dict[str, Any],
                  tags: Mapping[str, str] | None = None) -> int:
    """Write ``entry`` as a new audit tag (call under the lock); returns its sequence number."""
    tags = _registered_tags(client, model_name) if tags is None else tags
    seq = _next_seq(tags)
    entry = {"seq": seq, **entry}
    text = json.dumps(entry)
    if len(text) > _TAG_VALUE_LIMIT:  # long reasons are cut, the entry itself is always kept
        over = len(text) - _TAG_VALUE_LIMIT + 20
        entry["reason"] = str(entry.get("reason", ""))[:-over] + " [cut]"
        text = json.dumps(entry)[:_TAG_VALUE_LIMIT]
    client.set_registered_model_tag(model_name, _audit_key(seq), text)
    return seq


def audit_log(model_name: str) -> list[dict[str, Any]]:
    """The alias changes recorded on ``model_name`` (oldest first), every one of them."""
    return _audit_entries(_registered_tags(_client(), model_name))


def _last_audit(entries: list[dict[str, Any]], alias: str) -> dict[str, Any] | None:
    return next((e for e in reversed(entries) if e.get("alias") == alias), None)


def parse_version(version: str | int) -> str:
    """``"3"``, ``3`` or ``"v3"`` -> ``"3"``; a UserError for anything else."""
    text = str(version).strip()
    if text[:1] in ("v", "V"):
        text = text[1:]
    if not text.isdigit() or int(text) < 1:
        raise UserError(f"version: {str(version)!r} is not a version number (a positive "
                        "integer such as 3)")
    return str(int(text))


def _require_version(client, model_name: str, version: str) -> VersionInfo:
    from mlflow.exceptions import MlflowException

    try:
        return _info(client.get_model_version(model_name, version))
    except MlflowException as exc:
        if _not_found(exc):
            raise UserError(f"{model_name}: no version {version} in the registry") from None
        raise


def _move_alias(client, lock, model_name: str, alias: str, version: str, reason: str, *,
                action: str, by: str | None, extra: Mapping[str, Any] | None = None
                ) -> tuple[str | None, int]:
    """Point ``alias`` at ``version`` and audit it; call under ``lock``. Returns
    ``(previous version, audit seq)``."""
    rm = client.get_registered_model(model_name)
    tags = dict(rm.tags or {})
    previous = _aliases(rm).get(alias)
    last = _last_audit(_audit_entries(tags), alias)
    if last is not None and last.get("version") != previous or last is None and previous:
        # The alias moved without an audit entry (an interrupted call, or a change made in
        # MLflow's UI): say so in the audit before this change, so the log stays true.
        _append_audit(client, model_name, {
            "action": "observed", "alias": alias, "version": previous,
            "previous": last.get("version") if last else None, "by": "unknown", "at": _now(),
            "reason": "alias found here with no audit entry (an interrupted or outside change)"},
            tags)
        tags = _registered_tags(client, model_name)
    who, when = by or _who(), _now()
    lock.verify()
    client.set_registered_model_alias(model_name, alias, version)
    seq = _append_audit(client, model_name, {
        "action": action, "alias": alias, "version": version, "previous": previous, "by": who,
        "at": when, "reason": reason, **(extra or {})}, tags)
    prefix = f"roadvision.{alias}"
    tag_version(model_name, version, {f"{prefix}.by": who, f"{prefix}.at": when,
                                      f"{prefix}.reason": reason or "(no reason given)",
                                      f"{prefix}.previous": previous or ""})
    if previous is not None and previous != version:
        tag_version(model_name, previous, {f"{prefix}.replaced_by": version,
                                           f"{prefix}.replaced_at": when})
    return previous, seq


def _verify(client, lock, model_name: str, alias: str, version: str, seq: int) -> None:
    """Re-read: the alias is ``version`` and the newest audit entry is ours; else fail loudly."""
    lock.verify()
    rm = client.get_registered_model(model_name)
    now = _aliases(rm).get(alias)
    tags = dict(rm.tags or {})
    if now != version or _next_seq(tags) != seq + 1:
        raise UserError(f"{model_name}: @{alias} is v{now} after setting it to v{version} (a "
                        "writer outside roadvision's lock?); see `roadvision model audit "
                        f"{model_name}` and re-run")


def _push_history(client, model_name: str, version: str) -> None:
    history = [v for v in _registered_tags(client, model_name).get(CHAMPION_HISTORY_TAG, "")
               .split(",") if v]
    if not history or history[-1] != version:
        history.append(version)
    client.set_registered_model_tag(model_name, CHAMPION_HISTORY_TAG, ",".join(history[-200:]))


def _locked(client, model_name: str, purpose: str):
    from roadvision.registry_lock import registry_lock

    return registry_lock(client, model_name, purpose)


def set_alias(model_name: str, alias: str, version: str | int, reason: str = "", *,
              action: str = "set_alias", by: str | None = None) -> VersionInfo:
    """Point ``alias`` at ``version``, leaving who/when/why on the version and the audit log."""
    client = _client()
    version = parse_version(version)
    _require_version(client, model_name, version)
    with _locked(client, model_name, f"{action} @{alias} -> v{version}") as lock:
        _, seq = _move_alias(client, lock, model_name, alias, version, reason, action=action,
                             by=by)
        if alias == CHAMPION:
            _push_history(client, model_name, version)
        _verify(client, lock, model_name, alias, version, seq)
    return get_version(f"models:/{model_name}/{version}")


def promote(model_name: str, version: str | int, reason: str = "", *,
            by: str | None = None, force: bool = False) -> VersionInfo:
    """Make ``version`` the ``champion`` (manual promotion or the pipeline's promote step).

    A version the gate refused (``gate.decision = refuse`` on the version) is promoted only with
    ``force``; the audit entry then records that it was forced and the gate's reason.
    """
    client = _client()
    version = parse_version(version)
    _require_version(client, model_name, version)
    with _locked(client, model_name, f"promote v{version}") as lock:
        info = _require_version(client, model_name, version)  # the gate may have tagged it since
        extra: dict[str, Any] = {}
        if info.tags.get("gate.decision") == "refuse":
            gate_reason = info.tags.get("gate.reason", "(no reason recorded)")
            if not force:
                raise UserError(f"{model_name} v{version}: the gate refused this version "
                                f"({gate_reason}); promote it anyway with --force and a "
                                "--reason")
            extra = {"forced": True, "gate_reason": gate_reason[:1000]}
            reason = f"forced over the gate's refusal: {reason or '(no reason given)'}"
        _, seq = _move_alias(client, lock, model_name, CHAMPION, version,
                             reason or "promoted", action="promote", by=by, extra=extra)
        _push_history(client, model_name, version)
        _verify(client, lock, model_name, CHAMPION, version, seq)
    return get_version(f"models:/{model_name}/{version}")


def rollback(model_name: str, reason: str = "", *, by: str | None = None) -> VersionInfo:
    """Point ``champion`` back at the champion before the current one.

    The history is the ordered list of versions that have been champion; rollback drops the
    current one from it, so that a second rollback goes one further back. Read and written
    under the lock, so two rollbacks at once go back two steps, never one step twice.
    """
    client = _client()
    with _locked(client, model_name, "rollback") as lock:
        current = _aliases(client.get_registered_model(model_name)).get(CHAMPION)
        if current is None:
            raise UserError(f"{model_name}: has no @champion to roll back from")
        history = [v for v in _registered_tags(client, model_name).get(CHAMPION_HISTORY_TAG, "")
                   .split(",") if v]
        while history and history[-1] == current:
            history.pop()
        if not history:
            raise UserError(f"{model_name}: no previous champion to roll back to "
                            f"(v{current} is the first)")
        target = history[-1]
        _, seq = _move_alias(client, lock, model_name, CHAMPION, target,
                             f"rollback from v{current}" + (f": {reason}" if reason else ""),
                             action="rollback", by=by)
        client.set_registered_model_tag(model_name, CHAMPION_HISTORY_TAG, ",".join(history))
        tag_version(model_name, current, {"roadvision.rolled_back.by": by or _who(),
                                          "roadvision.rolled_back.at": _now(),
                                          "roadvision.rolled_back.reason": reason or ""})
        _verify(client, lock, model_name, CHAMPION, target, seq)
    return get_version(f"models:/{model_name}/{target}")


# --------------------------------------------------------------------------- storage location
# Schemes KServe's storage initializer downloads from (it rejects models:/ and mlflow-artifacts:).
_CLUSTER_SCHEMES = ("s3", "gs", "hdfs", "webhdfs", "pvc", "https", "oci", "hf")


def _proxied_path(uri: str) -> str:
    """``mlflow-artifacts:/1/models/m-x/artifacts`` (or ``mlflow-artifacts://host/1/...``) ->
    ``1/models/m-x/artifacts``: the path under the server's ``--artifacts-destination``."""
    parsed = urllib.parse.urlparse(uri)
    return parsed.path.lstrip("/")


def artifact_location(model_uri: str, artifacts_destination: str | None = None) -> str:
    """The registered version's model folder as KServe's storage initializer takes it
    (``s3://...``); a UserError that says why when a cluster cannot reach it.

    A tracking server run with ``--serve-artifacts`` hands out ``mlflow-artifacts:`` URIs and
    keeps its ``--artifacts-destination`` to itself (MLflow publishes no internal addresses), so
    the underlying path is known only when the caller names that destination
    (``artifacts_destination`` or ``ROADVISION_ARTIFACTS_DESTINATION``). The folder holds the
    MLflow model with the bundle under ``artifacts/bundle``, which the predictor loads as it is.
    """
    info = get_version(model_uri)
    location = _client().get_model_version_download_uri(info.name, info.version)
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


# --------------------------------------------------------------------------- download
def download_bundle(model_uri: str, dst: str | os.PathLike | None = None) -> Path:
    """The local bundle directory of ``model_uri``.

    ``models:/NAME@ALIAS`` or ``models:/NAME/VERSION`` are resolved and downloaded (once: a
    complete copy under ``dst`` or the local cache is reused); a local bundle folder is returned
    as it is, so that every caller can take either.
    """
    import mlflow

    local = Path(model_uri)
    if not model_uri.startswith("models:/") and (local / "config.json").is_file():
        return local
    if not model_uri.startswith("models:/"):
        raise UserError(f"{model_uri}: neither a bundle folder (config.json) nor a models:/ URI")
    info = get_version(model_uri)
    target = Path(dst) if dst else roadvision_home() / "models" / info.name / info.version
    if (target / "config.json").is_file():
        return target
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(mlflow.artifacts.download_artifacts(
            artifact_uri=f"models:/{info.name}/{info.version}", dst_path=tmp))
        found = next((p for p in (path / "artifacts" / BUNDLE_ARTIFACT,
                                  path / BUNDLE_ARTIFACT, path) if (p / "config.json").is_file()),
                     None)
        if found is None:
            raise UserError(f"{model_uri} (version {info.version}) holds no model bundle")
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(found, target)
    return target
