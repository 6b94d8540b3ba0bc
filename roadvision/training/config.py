"""``TrainConfig``: every knob of one training (or distillation) run, as one flat dataclass.

Saved next to the run's outputs (``out_dir/train_config.json``) and into the bundle's extra
metadata, so a model always says how it was trained. Profiles (``tiny`` for tests, ``bench``
for the benchmarks, ``full`` for GPU nodes) are starting points: ``TrainConfig.for_profile``
fills the values a profile fixes and lets keyword arguments win.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from roadvision.data.augment import LEVELS, check_appearance
from roadvision.errors import UserError, refuse_unknown_keys
from roadvision.metrics import LANE_BIAS_OBJECTIVES

__all__ = ["TrainConfig", "PROFILES", "LANE_LOSSES", "parse_json_object"]

#: Lanes loss choices: Dice + focal, or Dice + focal + soft clDice (models.losses), whose
#: weight is ``cldice_weight``. Both are recorded in the bundle's train_config.
LANE_LOSSES = ("dice_focal", "dice_focal_cldice")


@dataclass
class TrainConfig:
    """Hyper-parameters of a run. Defaults suit a small GPU run of a ``*_small`` preset."""

    # --- what to train
    task: str | None = None  # "lanes"/"roadwork"; None = read from the dataset's dataset.json
    preset: str | None = None  # model preset (roadvision.models); None = "<task>_small"
    model_overrides: dict[str, Any] = field(default_factory=dict)  # ModelConfig fields (ablations)

    # --- optimisation
    epochs: int = 20
    batch_size: int = 16
    lr: float = 1e-3  # peak learning rate (AdamW)
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0  # linear warmup length in epochs ...
    warmup_steps: int | None = None  # ... or in optimiser steps (wins when set)
    min_lr_ratio: float = 0.01  # cosine decays to this share of the peak
    accumulation: int = 1  # gradient accumulation: batches per optimiser step
    clip: float | None = 1.0  # max gradient norm; None = no clipping
    loss_weights: dict[str, float] = field(default_factory=dict)  # passed to create_loss
    lane_loss: str = "dice_focal"  # lanes: one of LANE_LOSSES
    cldice_weight: float = 0.5  # weight of the clDice term when lane_loss includes it

    # --- distillation (roadvision.training.distill)
    distill_alpha: float = 0.5  # loss = alpha * hard + (1 - alpha) * T^2 * KL(teacher || student)
    distill_temperature: float = 2.0  # softening temperature T for both distributions
    # unlabelled pool (synth://TASK?n=N&size=S&seed=S or a folder): soft targets only
    distill_unlabelled: str = ""
    # teacher targets: "cache" (once per image, un-augmented, on disk), "online" (every step,
    # on the student's augmented input); "auto" = cache for roadwork, online for lanes
    distill_targets: str = "auto"

    # --- selection
    patience: int = 5  # epochs without val improvement before stopping; 0 = never stop early
    min_delta: float = 0.0  # improvement smaller than this does not count
    # validate and ship an exponential moving average of the weights (training.ema) with this
    # decay per optimiser step, e.g. 0.99 = about the last 100 steps; 0 = the raw weights
    ema_decay: float = 0.0
    # calibration in the pipeline's train step: k >= 2 fits it on k-fold out-of-fold
    # predictions over train+val (k more models of best_epoch epochs); 0 = on val
    calibration_folds: int = 0
    # lanes: what the calibration's class biases are fitted for, "iou" (the mask) or "lines"
    # (the lines' F1: a model whose output is traced to vectors; roadvision.evaluation)
    lane_bias_objective: str = "iou"

    # --- data
    seed: int = 0
    use_weights: bool = True  # sample by the manifest's ``weight`` column when present
    crop_size: int | None = None  # lanes training crop; None = the model's input_size
    lane_crop_p: float = 0.8  # share of lane crops centred on a lane pixel
    augment: str = "medium"  # none/light/medium/heavy
    appearance: list[str] = field(default_factory=list)  # strong groups (augment.APPEARANCE)
    balance_families: bool = False  # mixed-domain batches: interleave the manifest's families
    freeze_encoder_epochs: int = 0  # encoder frozen for the first N epochs (0 = never frozen)
    unfreeze_epochs: int = 0  # ... then released stage by stage over N epochs (0 = at once)
    num_workers: int = 0  # DataLoader worker processes (0 = load in the training process)
    prefetch_factor: int = 2  # batches each worker prepares ahead (workers > 0 only)
    eval_batch_size: int | None = None  # None = batch_size

    # --- runtime
    device: str = "auto"  # "auto" = cuda when available, else cpu
    compile: bool = False  # torch.compile the training forward
    deterministic: bool = True  # torch.use_deterministic_algorithms (warn-only on CUDA)
    max_steps_per_epoch: int | None = None  # cap batches per epoch (tiny runs, smoke tests)
    stop_after_epochs: int | None = None  # end this call after N epochs (preemption, tests)

    def __post_init__(self) -> None:
        if self.task is not None and self.task not in ("lanes", "roadwork"):
            raise UserError(f"task {self.task!r} is not 'lanes' or 'roadwork'")
        if self.augment not in LEVELS:
            raise UserError(f"augment {self.augment!r} is not one of {LEVELS}")
        for name in ("epochs", "batch_size", "accumulation"):
            if int(getattr(self, name)) < 1:
                raise UserError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise UserError(f"lr must be > 0, got {self.lr}")
        if not 0.0 <= self.distill_alpha <= 1.0:
            raise UserError(f"distill_alpha must be in [0, 1], got {self.distill_alpha}")
        if self.distill_temperature <= 0:
            raise UserError(f"distill_temperature must be > 0, got {self.distill_temperature}")
        if self.distill_targets not in ("auto", "cache", "online"):
            raise UserError(f"distill_targets {self.distill_targets!r} is not auto, cache or "
                            "online")
        if not 0.0 <= self.ema_decay < 1.0:
            raise UserError(f"ema_decay must be in [0, 1) (0 = off), got {self.ema_decay}")
        if self.calibration_folds < 0 or self.calibration_folds == 1:
            raise UserError(f"calibration_folds must be 0 (val) or >= 2, got "
                            f"{self.calibration_folds}")
        if self.lane_bias_objective not in LANE_BIAS_OBJECTIVES:
            raise UserError(f"lane_bias_objective {self.lane_bias_objective!r} is not one of "
                            f"{LANE_BIAS_OBJECTIVES}")
        if self.lane_loss not in LANE_LOSSES:
            raise UserError(f"lane_loss {self.lane_loss!r} is not one of {LANE_LOSSES}")
        if self.cldice_weight < 0:
            raise UserError(f"cldice_weight must be >= 0, got {self.cldice_weight}")
        if self.patience < 0:
            raise UserError(f"patience must be >= 0, got {self.patience}")
        self.appearance = list(check_appearance(self.appearance))
        for name in ("freeze_encoder_epochs", "unfreeze_epochs", "num_workers"):
            if int(getattr(self, name)) < 0:
                raise UserError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.prefetch_factor < 1:
            raise UserError(f"prefetch_factor must be >= 1, got {self.prefetch_factor}")
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise UserError(f"device {self.device!r} is not auto, cpu or cuda[:N]")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def loss_options(self, task: str) -> dict[str, Any]:
        """Keyword arguments for ``create_loss(task, ...)``: ``loss_weights`` plus what
        ``lane_loss`` adds (an explicit ``loss_weights["cldice"]`` wins)."""
        options = dict(self.loss_weights)
        if task == "lanes" and self.lane_loss == "dice_focal_cldice":
            options.setdefault("cldice", self.cldice_weight)
        return options

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        refuse_unknown_keys(data, [f.name for f in fields(cls)], "train config")
        return cls(**data)

    def replace(self, **changes: Any) -> TrainConfig:
        return TrainConfig.from_dict({**self.to_dict(), **changes})

    @classmethod
    def for_profile(cls, profile: str, task: str, **overrides: Any) -> TrainConfig:
        """A config from a named profile; ``overrides`` (None values dropped) win."""
        if profile not in PROFILES:
            raise UserError(
                f"unknown training profile {profile!r}; expected one of {list(PROFILES)}")
        base = dict(PROFILES[profile])
        base["preset"] = base["preset"].format(task=task)
        base.update({k: v for k, v in overrides.items() if v is not None})
        return cls(task=task, **base)


def parse_json_object(text: str, what: str, holds: str) -> dict[str, Any]:
    """The JSON object in a user's ``text`` (a pipeline parameter, a CLI option); blank = {}.

    ``what`` starts each error message; ``holds`` says what the object should hold ("TrainConfig
    fields"). Shared by a trial's ``overrides`` and the sweep's search space, so both refuse bad
    text alike.
    """
    if not text.strip():
        return {}
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{what}: not JSON ({exc.msg} at {exc.pos})") from None
    if not isinstance(data, dict):
        raise UserError(f"{what}: expected a JSON object of {holds}")
    return data


def auto_workers() -> int:
    """DataLoader workers for a GPU node: the CPUs this process may use, less one for the
    training loop, capped at 8 (decoding + augmenting 32 images/step needs no more)."""
    from roadvision.runtime.cores import usable_cores

    return max(0, min(8, usable_cores() - 1))


#: Training profiles. ``{task}`` in a preset name is replaced by the task.
PROFILES: dict[str, dict[str, Any]] = {
    # seconds on one CPU core: tests and smoke runs
    "tiny": {"preset": "{task}_tiny", "epochs": 2, "batch_size": 8, "lr": 3e-3,
             "warmup_epochs": 0.0, "max_steps_per_epoch": 4, "augment": "light", "patience": 0},
    # the benchmark (benchmarks/bench_ml.py): under 40 min per command on 2 CPU cores. The
    # ImageNet Lite0 presets, because random-init tiny models do not learn the bench data. Lanes
    # train on 128 px crops of the 256 px tiles (4x cheaper steps; more epochs beat larger
    # crops). Roadwork sees the 320x240 image as one 160 px global view: cutting it into the
    # global view + a 3x3 grid of 64 px views (same pixels per tile, same cost) stayed at val
    # AUROC ~0.5 for 4 epochs where the single 160 px view reached 0.87 (RESULTS.md).
    "bench": {"preset": "{task}_small", "crop_size": 128, "model_overrides": {"view_size": 160},
              "epochs": 16, "batch_size": 16, "lr": 1e-3, "warmup_epochs": 1.0,
              "augment": "medium", "patience": 4},
    # ``make demo``: a few minutes on 2 CPU cores, and a model that learns. The ImageNet
    # EfficientNet-Lite0 encoder on ONE 128 px view of the 160x120 demo image: the random-init
    # 32 px tiny model cannot see a cone (a few pixels) and stays at MCC ~0.
    "demo": {"preset": "{task}_small", "model_overrides": {"view_size": 128, "input_size": 128},
             "epochs": 6, "batch_size": 16, "lr": 1e-3, "warmup_epochs": 0.5,
             "augment": "light", "patience": 0},
    # GPU nodes in the pipeline: decoding and augmenting run in DataLoader workers (one per
    # spare CPU), batches are pinned and prefetched, so the GPU does not wait on the CPU.
    "full": {"preset": "{task}_small", "epochs": 40, "batch_size": 32, "lr": 1e-3,
             "warmup_epochs": 2.0, "augment": "medium", "patience": 8,
             "num_workers": auto_workers(), "prefetch_factor": 4},
}
