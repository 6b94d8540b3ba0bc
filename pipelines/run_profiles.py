"""Run profiles: named parameter sets for a whole training pipeline run.

``roadvision pipeline run --local --run-profile NAME`` starts from one; ``--set key=value``
and the shortcut options win. A run profile picks a training profile (epochs, batch, lr:
``roadvision.training.PROFILES``), a data set (the generator's named image size in its
``synth://`` URI) and the ensemble and gate settings. The names are the project's scale
tiers: ``tiny`` is what tests run (seconds per step), ``demo`` is ``make demo`` (a few
minutes on 2 CPU cores), ``full`` is the GPU default (``RunParams()``).
"""

from __future__ import annotations

from typing import Any

from roadvision.components.run_params import RunParams
from roadvision.errors import UserError

__all__ = ["RUN_PROFILES", "from_run_profile"]

#: ``{task}`` is replaced by the task.
RUN_PROFILES: dict[str, dict[str, Any]] = {
    "tiny": {"data_uri": "synth://{task}?n=40&size=tiny&seed=0", "training_profile": "tiny",
             "epochs": 1, "members": 2, "batch_size": 8, "max_steps_per_epoch": 2,
             "absolute_floor": -1.0, "min_slice_size": 1000},
    "demo": {"data_uri": "synth://{task}?n=600&size=demo&seed=0", "training_profile": "demo",
             "epochs": 6, "members": 2, "batch_size": 16, "max_steps_per_epoch": 0,
             "absolute_floor": 0.0, "min_slice_size": 20},
    "full": {"data_uri": "synth://{task}?n=2000&size=default&seed=0"},
}


def from_run_profile(run_profile: str, task: str = "roadwork", **overrides: Any) -> RunParams:
    """``RunParams`` for a named run profile; ``overrides`` (None values dropped) win."""
    if run_profile not in RUN_PROFILES:
        raise UserError(f"run profile: {run_profile!r} is not one of {list(RUN_PROFILES)}")
    values = {k: v.format(task=task) if isinstance(v, str) else v
              for k, v in RUN_PROFILES[run_profile].items()}
    values.update({k: v for k, v in overrides.items() if v is not None})
    return RunParams(task=task).replace(**values)
