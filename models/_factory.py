"""``create_model``: the one entry point that turns a preset name into a model."""

from __future__ import annotations

from typing import Any

from torch import nn

from ._registry import model_entrypoint

__all__ = ["create_model"]


def create_model(name: str, **overrides: Any) -> nn.Module:
    """Create a registered model preset.

    Args:
        name: preset name (see ``list_models()``), e.g. ``"roadwork_small"``.
        **overrides: ``ModelConfig`` fields that replace the preset's values. ``None`` values are
            dropped, so an unset CLI flag or config entry never overrides a preset default.
            ``num_classes=12`` is accepted for lanes as a shortcut for the 12-class taxonomy.

    Example:
        >>> model = create_model("roadwork_tiny", use_metadata=False)
        >>> model.cfg.use_metadata
        False
    """
    entrypoint = model_entrypoint(name)  # fails early, listing valid names
    overrides = {k: v for k, v in overrides.items() if v is not None}
    return entrypoint(**overrides)
