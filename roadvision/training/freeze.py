"""Freeze the encoder, then unfreeze it gradually (issue 13: keep pretrained features).

A pretrained encoder fine-tuned from the first step on synthetic data rewrites its ImageNet
features to fit the generator's look. Freezing it for ``freeze_encoder_epochs`` lets the
decoder or head learn on stable features first; then the encoder's stages are released from the
deepest (most task-specific) to the first over ``unfreeze_epochs`` epochs. A frozen stage also
keeps its BatchNorm statistics (eval mode), so it is truly unchanged. The state is a pure
function of the epoch, so resumed runs freeze exactly what the uninterrupted run froze.
"""

from __future__ import annotations

import math

import torch

__all__ = ["encoder_stages", "frozen_stage_count", "apply_freeze", "release_encoder"]


def encoder_stages(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The encoder's parameter-holding children, input side first (deepest last)."""
    encoder = getattr(model, "encoder", None)
    if encoder is None:
        raise ValueError(f"{type(model).__name__} has no .encoder to freeze")
    stages: list[torch.nn.Module] = []

    def walk(module: torch.nn.Module) -> None:
        children = [c for c in module.children() if any(True for _ in c.parameters())]
        # Descend through wrappers (a timm model inside our encoder) to the real stage list.
        if len(children) == 1:
            walk(children[0])
        elif children:
            for child in children:  # a Sequential of blocks (timm's ``blocks``) is the stages
                if isinstance(child, torch.nn.Sequential) and len(child) > 1:
                    stages.extend(c for c in child if any(True for _ in c.parameters()))
                else:
                    stages.append(child)
        else:
            stages.append(module)

    walk(encoder)
    return stages


def frozen_stage_count(epoch: int, stages: int, freeze_epochs: int, unfreeze_epochs: int
                       ) -> int:
    """How many stages (counted from the input) stay frozen in 0-based ``epoch``."""
    if epoch < freeze_epochs:
        return stages
    if unfreeze_epochs <= 0:
        return 0
    step = epoch - freeze_epochs + 1  # 1 .. unfreeze_epochs: release a share per epoch
    if step >= unfreeze_epochs + 1:
        return 0
    return stages - math.ceil(stages * step / (unfreeze_epochs + 1))


def apply_freeze(model: torch.nn.Module, epoch: int, freeze_epochs: int,
                 unfreeze_epochs: int) -> int:
    """Set ``requires_grad`` and train/eval mode of the encoder's stages for ``epoch``; call it
    after ``model.train()``. Returns the number of frozen stages (0 = all trainable)."""
    if freeze_epochs <= 0:
        return 0
    stages = encoder_stages(model)
    frozen = frozen_stage_count(epoch, len(stages), freeze_epochs, unfreeze_epochs)
    for i, stage in enumerate(stages):
        trainable = i >= frozen
        for p in stage.parameters():
            p.requires_grad_(trainable)
        if not trainable:
            stage.eval()
    return frozen


def release_encoder(model: torch.nn.Module) -> None:
    """Every encoder weight trainable again: the optimiser must hold them all from the start
    (``apply_freeze`` then gates them per epoch), also when the model object was frozen by an
    earlier call."""
    for p in model.encoder.parameters():
        p.requires_grad_(True)
