"""Model bundle: one directory that training writes and evaluation, distillation and serving read.

Layout::

    bundle/
      config.json           {"format": "roadvision-bundle", "format_version": 1,
                             "model_class": "RoadworkClassifier", "preset": "roadwork_small",
                             "model_config": {...ModelConfig, calibration included...},
                             "roadvision_version": "0.1.0", "extra": {...}}
      weights.safetensors   the state dict

A registered model version is an MLflow model holding the bundle verbatim under
``artifacts/bundle`` (``BUNDLE_ARTIFACT``); :func:`locate_bundle` finds the bundle in either
layout and :func:`bundle_task` reads which task it serves, for the registry and serving alike.

A roadwork bundle stores its view configuration (``model_config.view_mode``: "single" or
"multi", decided at training time from the training images), and every reader applies it
through ``prepare_sample``: a single-view bundle runs one view on a 640x480 input too. A bundle
written before the field existed (or with "auto") keeps the multiview cut it always had, and
``load_bundle`` says so in one warning; ``update_bundle_config(path, view_mode="single")`` pins
a bundle that was trained on one view (its view embedding keeps the global view's position).

The model is rebuilt as ``model_class(ModelConfig.from_dict(model_config))`` where
``model_class`` is looked up in a registry of our own classes (as smp's hub mixin dispatches on
``_model_class``). Weights are safetensors, so loading reads tensors and never unpickles code.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save_file
from torch import nn

import roadvision
from roadvision.errors import UserError

from ._registry import model_class
from .config import ModelConfig

__all__ = [
    "save_bundle",
    "load_bundle",
    "bundle_version",
    "read_bundle_config",
    "update_bundle_config",
    "locate_bundle",
    "bundle_task",
    "ViewConfigWarning",
    "BUNDLE_ARTIFACT",
    "CONFIG_FILE",
    "WEIGHTS_FILE",
]

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.safetensors"
FORMAT = "roadvision-bundle"
FORMAT_VERSION = 1
#: The bundle's folder name inside an MLflow model's ``artifacts/`` (the registry logs it there,
#: the pyfunc face loads it from there, KServe's storage initializer downloads it as it is).
BUNDLE_ARTIFACT = "bundle"


class ViewConfigWarning(UserWarning):
    """A roadwork bundle that does not say how it cuts images into views."""


def _warn_unpinned_views(path: str | Path, cfg: ModelConfig) -> None:
    if cfg.task != "roadwork" or cfg.view_mode != "auto":
        return
    warnings.warn(
        f"{path}: the bundle does not store its view configuration (made before it was "
        f"recorded); it keeps the multiview cut: {cfg.num_views} views of {cfg.view_size} px "
        f"for images over {2 * cfg.view_size} px, one view below. If it was trained on one "
        "view, pin it: update_bundle_config(path, view_mode='single')",
        ViewConfigWarning, stacklevel=3)


def _read_file(root: Path, name: str) -> bytes | None:
    """A bundle file's bytes, never through a symbolic link out of (or within) the bundle
    folder (``roadvision.data.confine``); None when it does not exist."""
    from roadvision.data.confine import PathRefused, read_confined

    try:
        return read_confined(root, name)
    except PathRefused as exc:
        raise UserError(f"{root}: {exc}") from None


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """Write atomically, so a reader never sees half a config."""
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def save_bundle(model: nn.Module, out_dir: str | Path, extra: dict[str, Any] | None = None) -> Path:
    """Write ``model`` (which must carry ``.cfg``) as a bundle directory; returns its path.

    ``extra`` is free-form JSON metadata (training data hash, metrics, parent bundles...).
    """
    cfg = getattr(model, "cfg", None)
    if not isinstance(cfg, ModelConfig):
        raise UserError("save_bundle: the model has no ModelConfig in .cfg")
    model_class(type(model).__name__)  # only classes load_bundle can rebuild
    if getattr(model, "batchnorm_folded", None) is not None:
        raise UserError("save_bundle: this model was loaded for inference (BatchNorm folded "
                        "into its convolutions): its weights no longer fit the model class; "
                        "save the model that load_bundle returns")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    # written aside and renamed: a run killed mid-save keeps the previous best bundle readable
    tmp_weights = out / (WEIGHTS_FILE + ".tmp")
    save_file(state, str(tmp_weights), metadata={"format": "pt"})
    config = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model_class": type(model).__name__,
        "preset": cfg.preset,
        "task": cfg.task,
        "model_config": cfg.to_dict(),
        "roadvision_version": roadvision.__version__,
        "extra": extra or {},
    }
    try:
        json.dumps(config)
    except TypeError as exc:
        raise UserError(f"save_bundle: extra metadata is not JSON-serialisable ({exc})") from exc
    os.replace(tmp_weights, out / WEIGHTS_FILE)
    _write_json(out / CONFIG_FILE, config)
    return out


def read_bundle_config(path: str | Path) -> dict[str, Any]:
    """The parsed ``config.json`` of a bundle, checked for format and required keys."""
    root = Path(path)
    if not root.is_dir():
        raise UserError(f"{path}: not a bundle directory")
    cfg_path = root / CONFIG_FILE
    data = _read_file(root, CONFIG_FILE)
    if data is None:
        raise UserError(f"{path}: no {CONFIG_FILE} (is this a roadvision bundle?)")
    try:
        config = json.loads(data)
    except json.JSONDecodeError as exc:
        raise UserError(f"{cfg_path}: not valid JSON ({exc.msg} at line {exc.lineno})") from exc
    except UnicodeDecodeError as exc:
        raise UserError(f"{cfg_path}: not valid JSON ({exc})") from exc
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise UserError(f"{cfg_path}: not a {FORMAT} config")
    if int(config.get("format_version", 0)) > FORMAT_VERSION:
        raise UserError(f"{cfg_path}: format_version {config['format_version']} is newer than "
                        f"this roadvision reads ({FORMAT_VERSION})")
    for key in ("model_class", "model_config"):
        if key not in config:
            raise UserError(f"{cfg_path}: missing key {key!r}")
    return config


def locate_bundle(path: str | os.PathLike) -> Path:
    """The bundle folder in ``path``: ``path`` itself, or the bundle inside an MLflow model
    folder (``artifacts/bundle/``, as the registry logs it and KServe's storage initializer
    downloads it into ``/mnt/models``; also a bare ``bundle/``). A UserError when none is there.
    """
    root = Path(path)
    if not root.is_dir():
        raise UserError(f"{path}: no such directory (expected a model bundle or an MLflow "
                        "model folder)")
    for candidate in (root, root / BUNDLE_ARTIFACT, root / "artifacts" / BUNDLE_ARTIFACT):
        if (candidate / CONFIG_FILE).is_file():
            return candidate
    raise UserError(f"{path}: no {CONFIG_FILE} in it (nor in {BUNDLE_ARTIFACT}/ or "
                    f"artifacts/{BUNDLE_ARTIFACT}/); is this a model bundle?")


def bundle_task(path: str | os.PathLike) -> str:
    """The task (``roadwork``/``lanes``) of the bundle in ``path`` (a bundle or an MLflow model
    folder, see :func:`locate_bundle`): the one its model is built for, read from the config
    as :func:`load_bundle` reads it, without the weights. A UserError for a broken config."""
    config = read_bundle_config(locate_bundle(path))
    if not isinstance(config["model_config"], dict):
        raise UserError(f"{path}: model_config in {CONFIG_FILE} is not an object")
    return ModelConfig.from_dict(config["model_config"]).task


def update_bundle_config(path: str | Path, extra: dict[str, Any] | None = None,
                         **changes: Any) -> dict[str, Any]:
    """Change ModelConfig fields (e.g. ``temperature=1.7, logit_bias=-0.2``) and merge ``extra``
    into a bundle's config.json without touching the weights; returns the new config."""
    config = read_bundle_config(path)
    config["model_config"] = ModelConfig.from_dict(config["model_config"]).replace(
        **changes).to_dict()
    if extra:
        config["extra"] = {**config.get("extra", {}), **extra}
    _write_json(Path(path) / CONFIG_FILE, config)
    return config


def bundle_version(path: str | Path) -> str:
    """First 12 hex digits of the sha256 of the bundle's weights file."""
    from roadvision.data.confine import PathRefused, open_confined

    try:
        fd = open_confined(Path(path), WEIGHTS_FILE)
    except PathRefused as exc:
        raise UserError(f"{path}: {exc}") from None
    if fd is None:
        raise UserError(f"{path}: no {WEIGHTS_FILE}")
    os.set_blocking(fd, True)
    digest = hashlib.sha256()
    with os.fdopen(fd, "rb") as handle:  # streamed: weights can be hundreds of MB
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()[:12]


def load_bundle(path: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild a bundle's model in eval mode on ``device``. Its memory format and autocast
    are the device's precision policy's (``roadvision.runtime.precision``), applied where
    it runs. A model that will only answer (evaluation, serving) is better loaded with
    ``roadvision.runtime.inference.load_for_inference``: this, with its BatchNorms folded
    into the convolutions; training and fine-tuning need this plain load."""
    config = read_bundle_config(path)
    cls = model_class(config["model_class"])
    cfg = ModelConfig.from_dict(config["model_config"])
    _warn_unpinned_views(path, cfg)
    model = cls(cfg, load_pretrained=False)
    weights = Path(path) / WEIGHTS_FILE
    data = _read_file(Path(path), WEIGHTS_FILE)
    if data is None:
        raise UserError(f"{path}: no {WEIGHTS_FILE}")
    try:
        state = load_safetensors(data)
    except (SafetensorError, OSError) as exc:
        raise UserError(f"{weights}: unreadable safetensors file ({exc})") from exc
    own_pos = getattr(model, "view_pos", None)
    if cfg.view_mode == "single" and own_pos is not None and "view_pos" in state:
        # pinned to one view after training with more positions: the global view's is first
        state["view_pos"] = state["view_pos"][:, :own_pos.shape[1]]
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches
        raise UserError(f"{path}: weights do not fit {config['model_class']} ({exc})") from exc
    if result.missing_keys or result.unexpected_keys:
        raise UserError(
            f"{path}: weights do not fit {config['model_class']} "
            f"(missing {result.missing_keys[:3]}, unexpected {result.unexpected_keys[:3]})"
        )
    model.to(torch.device(device))
    model.eval()
    model.bundle_config = config  # for serving: preset, extra metadata
    return model
