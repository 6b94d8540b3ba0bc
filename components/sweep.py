"""The sweep pipeline's own steps: plan the trials, select the winner on validation.

* ``sweep_plan`` asks the Optuna sampler (``roadvision.training.sweep.plan_trials``) for the
  run's parameter sets, one per trial, as the list the pipeline's ``ParallelFor`` fans out over.
  Every trial trains with the same seed, so trials differ by their hyper-parameters only.
* ``sweep_select`` reads each trained trial's best validation headline from its bundle (the
  figure training selected its epoch by, written by the training loop), picks the best
  (``select_best``: validation only; the test split is scored after, by the pipeline's
  ``evaluate`` step, for the winner alone) and hands the winner on as one ``Model``.

``SweepParams`` are the sweep pipeline's parameters (pipelines/sweep.py mirrors them): the
training run's parameters that a sweep uses, plus ``trials`` and ``search_space``.
"""

# No `from __future__ import annotations`: KFP reads the component signature's real types.
import json
import shutil
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from kfp.dsl import Artifact, Input, Model, Output

from roadvision.components._base import component

__all__ = ["SweepParams", "fixed_run_params", "run_sweep_plan", "run_sweep_select",
           "sweep_plan", "sweep_select", "trial_record"]


@dataclass
class SweepParams:
    """One sweep pipeline run. Defaults = a GPU sweep of 8 trials of the ``full`` profile."""

    task: str = "roadwork"
    data_uri: str = "synth://roadwork?n=2000&size=default&seed=0"
    target_regions: str = ""
    holdout_cities: str = ""
    min_distance_m: float = 100.0
    training_profile: str = "full"
    model_preset: str = ""
    epochs: int = 40
    batch_size: int = 32
    max_steps_per_epoch: int = 0
    tta: str = "none"
    min_delta: float = 0.01
    slice_tolerance: float = 0.05
    absolute_floor: float = 0.2
    min_slice_size: int = 20
    model_name: str = ""
    experiment: str = "roadvision"
    mlflow_tracking_uri: str = ""
    s3_endpoint_url: str = ""
    seed: int = 0
    trials: int = 8  # parameter sets, trained in parallel; the first is the profile's own
    search_space: str = ""  # JSON of roadvision.training.sweep.SearchSpace fields; "" = default

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def run_params(self) -> dict[str, Any]:
        """The training run's parameters (``RunParams`` fields) these stand for."""
        values = {k: v for k, v in self.to_dict().items() if k not in ("trials", "search_space")}
        return {**values, **fixed_run_params()}

    def validate(self, *, check_data: bool = True, check_mlflow: bool = True) -> "SweepParams":
        """``RunParams``' rules for the shared fields, then the trials and the search space."""
        from roadvision.components.run_params import RunParams
        from roadvision.errors import UserError
        from roadvision.training.sweep import SearchSpace

        RunParams(**self.run_params()).validate(check_data=check_data, check_mlflow=check_mlflow)
        trials = self.trials
        if isinstance(trials, bool) or not isinstance(trials, int | float) \
                or not float(trials).is_integer() or not 1 <= trials <= 256:
            raise UserError(f"trials: {trials!r} is not a whole number in [1, 256]")
        SearchSpace.from_json(self.search_space)
        return self

    @classmethod
    def names(cls) -> frozenset:
        return frozenset(f.name for f in fields(cls))


def fixed_run_params() -> dict[str, Any]:
    """The training run's parameters a sweep has no use for (ensemble, distillation, ...), at
    values that switch them off: one member, the defaults of the rest (off by default)."""
    from roadvision.components.run_params import RunParams

    unused = {k: v for k, v in RunParams().to_dict().items() if k not in SweepParams.names()}
    return {**unused, "members": 1}


def run_sweep_plan(*, task: str, training_profile: str, model_preset: str, epochs: int,
                   batch_size: int, max_steps_per_epoch: int, seed: int, trials: int,
                   search_space: str) -> list[dict[str, Any]]:
    """``[{"number", "default", "overrides"}]``: ``overrides`` is the JSON object of TrainConfig
    fields the trial's train step applies (``components/train.py``), its seed included."""
    from roadvision.training import TrainConfig
    from roadvision.training.sweep import SearchSpace, SweepSettings, plan_trials

    base = TrainConfig.for_profile(
        training_profile, task, preset=model_preset or None, epochs=int(epochs),
        batch_size=int(batch_size), max_steps_per_epoch=int(max_steps_per_epoch) or None,
        seed=int(seed))
    settings = SweepSettings(trials=int(trials), seed=int(seed))
    plan = plan_trials(SearchSpace.from_json(search_space), base, settings)
    # the member seed the train step would derive (seed*1000 + member) is pinned: one seed for all
    return [{"number": p["number"], "default": p["default"],
             "overrides": json.dumps({**p["overrides"], "seed": int(seed) * 1000})}
            for p in plan]


def trial_record(bundle_dir: str | Path, metadata: dict[str, Any]) -> dict[str, Any]:
    """What selection knows of one trained trial: its number, best validation headline, and
    the hyper-parameters it trained with (all from the bundle the train step wrote)."""
    from roadvision.models.bundle import read_bundle_config

    extra = read_bundle_config(bundle_dir).get("extra", {})
    val = (extra.get("val_metrics") or {}).get("headline")
    cfg = extra.get("train_config") or {}
    return {"number": int(float(metadata.get("member", -1))), "state": "complete",
            "val": float(val) if isinstance(val, int | float) else None,
            "best_epoch": extra.get("best_epoch"),
            "params": {k: cfg.get(k) for k in ("lr", "weight_decay", "warmup_epochs",
                                               "min_lr_ratio", "epochs", "augment",
                                               "appearance", "batch_size")}}


def run_sweep_select(models: list[tuple[str, dict[str, Any]]], out_dir: str | Path, *,
                     pipeline_run_id: str | None = None, experiment: str = "roadvision",
                     tracking_uri: str = "") -> dict[str, Any]:
    """Select the best trial on validation; copy its bundle to ``out_dir``; log the trials
    table and the winner to a ``sweep-select`` run beside the trials' own (nested) runs."""
    import mlflow

    from roadvision.components._base import log_pipeline_metrics, step_run
    from roadvision.training.sweep import select_best

    records = [(trial_record(path, meta), path) for path, meta in models]
    best = select_best([r for r, _ in records])
    best_path = next(path for r, path in records if r["number"] == best["number"])
    shutil.copytree(best_path, out_dir, dirs_exist_ok=True)
    with step_run("sweep-select", pipeline_run_id, experiment=experiment,
                  tracking_uri=tracking_uri, params={"trials": len(records)}):
        for r, _ in records:
            if r["val"] is not None:
                mlflow.log_metric(f"trial_{r['number']}.val", r["val"])
        mlflow.log_metric("best.val", best["val"])
        mlflow.set_tags({"sweep.best_trial": str(best["number"])})
        mlflow.log_dict({"trials": [r for r, _ in records], "best": best}, "sweep/trials.json")
        log_pipeline_metrics({"best.val": best["val"], "best.trial": best["number"]},
                             prefix="sweep.")
    default = next((r for r, _ in records if r["number"] == 0), None)
    return {"best": best, "default": default, "trials": [r for r, _ in records]}


@component
def sweep_plan(result: Output[Artifact], task: str, training_profile: str, model_preset: str,
               epochs: int, batch_size: int, max_steps_per_epoch: int, seed: int, trials: int,
               search_space: str) -> list:
    """Ask the Optuna sampler for the trials' parameter sets."""
    from roadvision.components._base import step_result
    from roadvision.components.sweep import run_sweep_plan

    with step_result(result, "sweep_plan") as out:
        out["plan"] = run_sweep_plan(
            task=task, training_profile=training_profile, model_preset=model_preset,
            epochs=epochs, batch_size=batch_size, max_steps_per_epoch=max_steps_per_epoch,
            seed=seed, trials=trials, search_space=search_space)
    return out["plan"]


@component
def sweep_select(models: Input[list[Model]], best: Output[Model], result: Output[Artifact],
                 experiment: str, mlflow_tracking_uri: str) -> float:
    """The trial with the best validation headline; returns that headline."""
    from roadvision.components._base import set_metadata, step_result
    from roadvision.components.sweep import run_sweep_select

    with step_result(result, "sweep_select", outputs={"best": best}) as out:
        out.update(run_sweep_select([(m.path, dict(m.metadata)) for m in models], best.path,
                                    experiment=experiment, tracking_uri=mlflow_tracking_uri))
    winner = next(m for m in models if int(float(m.metadata.get("member", -1)))
                  == out["best"]["number"])
    # no "member": the winner is one model, and its evaluation names itself plainly
    set_metadata(best, {**{k: v for k, v in winner.metadata.items() if k != "member"},
                        "sweep_trial": out["best"]["number"]})
    return float(out["best"]["val"])
