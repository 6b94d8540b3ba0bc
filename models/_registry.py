"""Model registry, timm-style: ``@register_model`` model presets looked up by their function name.

A model preset (architecture and size, always named after its task: ``roadwork_small``,
``roadwork_student``) is a small function returning a built model; the decorator stores it in a
dict keyed by its own ``__name__`` so that ``grep "def roadwork_small"`` finds every model.
Model *classes* that a bundle may name are registered separately (``register_model_class``):
``load_bundle`` dispatches on that dict only, so a bundle can never make us import or run
arbitrary code.
"""

from __future__ import annotations

import fnmatch
import warnings
from collections.abc import Callable

from torch import nn

from roadvision.errors import UserError

__all__ = [
    "register_model",
    "register_model_class",
    "list_models",
    "is_model",
    "model_entrypoint",
    "model_class",
]

_model_entrypoints: dict[str, Callable[..., nn.Module]] = {}
_model_to_module: dict[str, str] = {}
_model_classes: dict[str, type[nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Register a preset function under its own name."""
    name = fn.__name__
    if name in _model_entrypoints:
        warnings.warn(f"model preset {name!r} registered twice; the later one wins", stacklevel=2)
    _model_entrypoints[name] = fn
    _model_to_module[name] = fn.__module__.split(".")[-1]
    return fn


def register_model_class(cls: type[nn.Module]) -> type[nn.Module]:
    """Register a model class that bundles may name in ``config.json``."""
    _model_classes[cls.__name__] = cls
    return cls


def list_models(filter: str = "", module: str = "") -> list[str]:
    """Sorted preset names, optionally matching a glob ``filter`` or from one ``module``."""
    names = sorted(_model_entrypoints)
    if filter:
        names = [n for n in names if fnmatch.fnmatch(n, filter)]
    if module:
        names = [n for n in names if _model_to_module[n] == module]
    return names


def is_model(name: str) -> bool:
    return name in _model_entrypoints


def model_entrypoint(name: str) -> Callable[..., nn.Module]:
    if name not in _model_entrypoints:
        raise UserError(f"unknown model {name!r}; valid models: {', '.join(list_models())}")
    return _model_entrypoints[name]


def model_class(name: str) -> type[nn.Module]:
    if name not in _model_classes:
        raise UserError(
            f"unknown model class {name!r}; known classes: {', '.join(sorted(_model_classes))}"
        )
    return _model_classes[name]
