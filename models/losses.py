"""Losses for both tasks behind one factory: ``create_loss(task, **weights)``.

Every loss is a callable ``(outputs, batch) -> (loss, parts)`` where ``parts`` maps each term's
name to its (unweighted) float value for logging.

- lanes: ``DiceFocalLoss``: class-weighted focal cross-entropy + soft Dice over the classes
  present in the batch. Compound Dice+Focal losses are among the most robust for thin,
  imbalanced structures (Ma et al., "Loss odyssey", MedIA 2021). Optionally (``cldice > 0``)
  + soft clDice (Shit et al., "clDice", CVPR 2021): Dice between each mask and the other's soft
  skeleton, so a line broken by a gap costs more than one trimmed at its edge by as many
  pixels; Dice and focal see the two as equal.
- roadwork: ``RoadworkLoss``: binary focal loss with label smoothing on the main logit
  + multi-view consistency (KL from the mean view probability to each view's probability)
  + multiple-instance view loss (the most confident view must agree with the image label)
  + auxiliary weather cross-entropy, masked where weather is NULL.

Pure tensor math lives in the ``*_loss`` functions; the classes hold weights and wire batch keys.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from roadvision.data.contract import VOCABULARIES
from roadvision.errors import UserError

__all__ = [
    "create_loss",
    "DiceFocalLoss",
    "RoadworkLoss",
    "focal_loss",
    "binary_focal_loss",
    "soft_dice_loss",
    "soft_skeleton",
    "soft_cldice_loss",
    "bernoulli_kl",
    "default_lane_class_weights",
]

_EPS = 1e-6


def default_lane_class_weights(num_classes: int) -> list[float]:
    """[0.1, 5, 5, 3] for 4 classes; for 12, background 0.1, solid lines 3, the rarer 9 at 5."""
    if num_classes == 4:
        return [0.1, 5.0, 5.0, 3.0]
    return [0.1] + [3.0 if i in (1, 3) else 5.0 for i in range(1, num_classes)]


# --- functional -----------------------------------------------------------------------------

def focal_loss(logits: torch.Tensor, target: torch.Tensor, class_weights: torch.Tensor | None,
               gamma: float = 2.0, ignore_index: int = -100) -> torch.Tensor:
    """Multi-class focal loss: weighted mean of ``w_t (1 - p_t)^gamma (-log p_t)`` over pixels.

    logits [B, C, ...], target long [B, ...]; the mean divides by the summed weights, as
    ``F.cross_entropy`` does, so weights shift emphasis without changing the loss scale.
    """
    logp = F.log_softmax(logits.float(), dim=1)
    valid = target != ignore_index
    safe = torch.where(valid, target, 0)
    logp_t = logp.gather(1, safe.unsqueeze(1)).squeeze(1)
    p_t = logp_t.exp()
    w = class_weights[safe] if class_weights is not None else torch.ones_like(p_t)
    w = w * valid
    loss = w * (1 - p_t).pow(gamma) * (-logp_t)
    return loss.sum() / w.sum().clamp_min(_EPS)


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor,
                   class_weights: torch.Tensor | None, ignore_index: int = -100) -> torch.Tensor:
    """1 - soft Dice per class (over the whole batch), averaged over classes present in the
    target, weighted by ``class_weights``. Absent classes are skipped (as smp does): their Dice
    is undefined and would reward predicting nothing."""
    num_classes = logits.shape[1]
    probs = logits.float().softmax(dim=1)
    valid = (target != ignore_index).unsqueeze(1)
    onehot = F.one_hot(torch.where(valid.squeeze(1), target, 0), num_classes)
    onehot = onehot.movedim(-1, 1).float() * valid
    probs = probs * valid
    dims = [0] + list(range(2, logits.ndim))
    inter = (probs * onehot).sum(dims)
    card = probs.sum(dims) + onehot.sum(dims)
    dice = (2 * inter + _EPS) / (card + _EPS)
    present = (onehot.sum(dims) > 0).float()
    w = class_weights if class_weights is not None else torch.ones_like(dice)
    w = w * present
    return ((1 - dice) * w).sum() / w.sum().clamp_min(_EPS)


def _soft_erode(x: torch.Tensor) -> torch.Tensor:
    """Min-pooling with a 3x3 cross (the paper's 2D erosion): x [B, C, H, W]."""
    vertical = -F.max_pool2d(-x, (3, 1), 1, (1, 0))
    horizontal = -F.max_pool2d(-x, (1, 3), 1, (0, 1))
    return torch.minimum(vertical, horizontal)


def _soft_dilate(x: torch.Tensor) -> torch.Tensor:
    return F.max_pool2d(x, 3, 1, 1)


def soft_skeleton(x: torch.Tensor, iterations: int = 3) -> torch.Tensor:
    """Soft morphological skeleton of soft masks x [B, C, H, W] in [0, 1] (Shit et al. 2021,
    Alg. 1): what each erosion step removes that an opening does not restore. ``iterations``
    bounds the half-width it thins (lane markings are 1-3 px wide here, so 3 is enough).
    The result lies inside x (0 <= skel <= x), so a mask covers its own skeleton exactly."""
    skel = F.relu(x - _soft_dilate(_soft_erode(x)))
    for _ in range(iterations):
        x = _soft_erode(x)
        delta = F.relu(x - _soft_dilate(_soft_erode(x)))
        skel = skel + F.relu(delta - skel * delta)
    return skel


def soft_cldice_loss(logits: torch.Tensor, target: torch.Tensor,
                     class_weights: torch.Tensor | None, iterations: int = 3,
                     ignore_index: int = -100) -> torch.Tensor:
    """1 - soft clDice per lane class (background, class 0, has no centre line and is skipped),
    averaged over the lane classes present in the target, weighted like the Dice term.

    Topology precision: the share of the predicted skeleton inside the true mask (false
    branches and specks lower it); topology sensitivity: the share of the true skeleton the
    prediction covers (gaps lower it). Ignored pixels count as neither mask nor prediction.
    logits [B, C, H, W], target long [B, H, W].
    """
    num_classes = logits.shape[1]
    valid = (target != ignore_index).unsqueeze(1)
    probs = logits.float().softmax(dim=1) * valid
    onehot = F.one_hot(torch.where(valid.squeeze(1), target, 0), num_classes)
    onehot = onehot.movedim(-1, 1).float() * valid
    probs, onehot = probs[:, 1:], onehot[:, 1:]
    skel_pred = soft_skeleton(probs, iterations)
    skel_true = soft_skeleton(onehot, iterations)
    dims = (0, 2, 3)
    precision = ((skel_pred * onehot).sum(dims) + _EPS) / (skel_pred.sum(dims) + _EPS)
    sensitivity = ((skel_true * probs).sum(dims) + _EPS) / (skel_true.sum(dims) + _EPS)
    cldice = 2 * precision * sensitivity / (precision + sensitivity)
    present = (onehot.sum(dims) > 0).float()
    w = class_weights[1:] if class_weights is not None else torch.ones_like(cldice)
    w = w * present
    return ((1 - cldice) * w).sum() / w.sum().clamp_min(_EPS)


def binary_focal_loss(logits: torch.Tensor, target: torch.Tensor, gamma: float = 2.0,
                      label_smoothing: float = 0.0) -> torch.Tensor:
    """Mean binary focal loss on logits [B] with 0/1 targets smoothed towards 0.5."""
    t = target.float() * (1 - label_smoothing) + 0.5 * label_smoothing
    logits = logits.float()
    bce = F.binary_cross_entropy_with_logits(logits, t, reduction="none")
    p = torch.sigmoid(logits)
    p_t = p * t + (1 - p) * (1 - t)
    return ((1 - p_t).pow(gamma) * bce).mean()


def bernoulli_kl(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Element-wise KL(Bern(p) || Bern(q)), numerically safe at 0 and 1."""
    p = p.clamp(_EPS, 1 - _EPS)
    q = q.clamp(_EPS, 1 - _EPS)
    return p * (p.log() - q.log()) + (1 - p) * ((1 - p).log() - (1 - q).log())


def _item(value: torch.Tensor) -> float:
    return float(value.detach())


# --- losses ---------------------------------------------------------------------------------

class DiceFocalLoss(nn.Module):
    """Lanes: ``focal * FocalCE + dice * SoftDice (+ cldice * SoftClDice)`` with class weights.

    ``cldice`` 0 (the default) leaves the clDice term out entirely (not even computed);
    ``cldice_iters`` is its soft skeleton's thinning depth.
    """

    def __init__(self, class_weights: Sequence[float] | None = None, num_classes: int = 4,
                 dice: float = 1.0, focal: float = 1.0, gamma: float = 2.0,
                 ignore_index: int = -100, cldice: float = 0.0, cldice_iters: int = 3):
        super().__init__()
        weights = list(class_weights) if class_weights is not None else \
            default_lane_class_weights(num_classes)
        if len(weights) != num_classes:
            raise UserError(f"{len(weights)} class weights for {num_classes} classes")
        self.register_buffer("class_weights", torch.tensor(weights, dtype=torch.float32))
        self.dice_weight, self.focal_weight = dice, focal
        self.gamma, self.ignore_index = gamma, ignore_index
        if cldice < 0 or int(cldice_iters) < 1:
            raise UserError(f"cldice weight must be >= 0 and cldice_iters >= 1, got {cldice}, "
                            f"{cldice_iters}")
        self.cldice_weight, self.cldice_iters = float(cldice), int(cldice_iters)

    def forward(self, outputs: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]
                ) -> tuple[torch.Tensor, dict[str, float]]:
        logits, target = outputs["logits"], batch["mask"].long()
        if logits.shape[1] != self.class_weights.numel():
            raise UserError(f"model has {logits.shape[1]} classes, loss "
                            f"{self.class_weights.numel()}")
        w = self.class_weights.to(logits.device)
        focal = focal_loss(logits, target, w, self.gamma, self.ignore_index)
        dice = soft_dice_loss(logits, target, w, self.ignore_index)
        loss = self.focal_weight * focal + self.dice_weight * dice
        parts = {"focal": _item(focal), "dice": _item(dice)}
        if self.cldice_weight > 0:
            cldice = soft_cldice_loss(logits, target, w, self.cldice_iters, self.ignore_index)
            loss = loss + self.cldice_weight * cldice
            parts["cldice"] = _item(cldice)
        return loss, {**parts, "loss": _item(loss)}


class RoadworkLoss(nn.Module):
    """Roadwork: focal (+ smoothing) + consistency + view (MIL) + masked weather CE."""

    def __init__(self, focal: float = 1.0, consistency: float = 0.1, view: float = 0.25,
                 weather: float = 0.1, gamma: float = 2.0, label_smoothing: float = 0.05):
        super().__init__()
        self.focal_weight, self.consistency_weight = focal, consistency
        self.view_weight, self.weather_weight = view, weather
        self.gamma, self.label_smoothing = gamma, label_smoothing
        self.weather_null = len(VOCABULARIES["weather"])

    def forward(self, outputs: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]
                ) -> tuple[torch.Tensor, dict[str, float]]:
        logits = outputs["logits"]
        label = batch["label"].float().to(logits.device)
        zero = logits.sum() * 0.0  # keeps the graph when a term has nothing to count
        focal = binary_focal_loss(logits, label, self.gamma, self.label_smoothing)

        consistency, view = zero, zero
        view_logits = outputs.get("view_logits")
        if view_logits is not None and view_logits.numel():
            vmask = outputs.get("view_mask")
            vmask = torch.ones_like(view_logits, dtype=torch.bool) if vmask is None else vmask
            vm = vmask.float()
            p_views = torch.sigmoid(view_logits.float())
            p_mean = (p_views * vm).sum(1) / vm.sum(1).clamp_min(1.0)
            kl = bernoulli_kl(p_mean.detach()[:, None], p_views) * vm
            consistency = kl.sum() / vm.sum().clamp_min(1.0)
            # Multiple-instance view loss: an image shows roadwork iff some view does.
            best = view_logits.float().masked_fill(~vmask, float("-inf")).amax(dim=1)
            view = binary_focal_loss(best, label, self.gamma, self.label_smoothing)

        weather = zero
        weather_logits = outputs.get("weather_logits")
        if weather_logits is not None:
            weather = weather_logits.sum() * 0.0  # all NULL: 0, and the head still sees a grad
        if weather_logits is not None and "weather" in batch:
            target = batch["weather"].long().to(weather_logits.device)
            known = target != self.weather_null
            if bool(known.any()):
                weather = F.cross_entropy(weather_logits[known].float(), target[known])

        loss = (self.focal_weight * focal + self.consistency_weight * consistency
                + self.view_weight * view + self.weather_weight * weather)
        parts = {name: _item(value) for name, value in (
            ("focal", focal), ("consistency", consistency), ("view", view),
            ("weather", weather), ("loss", loss))}
        return loss, parts


def create_loss(task: str, **weights: Any) -> nn.Module:
    """The loss of ``task`` ("lanes" or "roadwork"); ``None`` values keep the defaults.

    lanes: class_weights, num_classes, dice, focal, gamma, ignore_index, cldice, cldice_iters.
    roadwork: focal, consistency, view, weather, gamma, label_smoothing.
    """
    weights = {k: v for k, v in weights.items() if v is not None}
    factories = {"lanes": DiceFocalLoss, "roadwork": RoadworkLoss}
    if task not in factories:
        raise UserError(f"unknown task {task!r}; expected one of {sorted(factories)}")
    try:
        return factories[task](**weights)
    except TypeError as exc:
        raise UserError(f"create_loss({task!r}): {exc}") from exc
