"""Hyper-parameter sweeps: an Optuna study whose trials are ordinary training runs.

Each trial is :func:`roadvision.training.train` with a ``TrainConfig`` drawn from a
:class:`SearchSpace` on top of a training profile. The trial reports its validation headline
(roadwork AUROC, lanes soft IoU without background: the figure the loop selects epochs by) after
every epoch, and Optuna's ``MedianPruner`` stops a trial whose figure falls below the median of
the earlier trials at the same epoch. Trials are sampled by a seeded ``TPESampler``; the first
trial is the profile's own configuration (``include_default``), so the sweep is measured against
the default on the same data and budget, and its winner can never be worse on validation.

Selection reads the validation figure only. The test split is scored once, at the end, for the
winner and for the default trial, through ``score_test`` (injected by the caller: evaluation is a
package beside this one and training never imports it), and reported beside each other.

MLflow: one parent run for the sweep (the search space, the winner's parameters, both test
figures) and one nested run per trial (its parameters, per-epoch metrics from the loop, its state
``complete``/``pruned``/``fail``), in whatever store and experiment the caller configured.
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from roadvision.data.augment import LEVELS, check_appearance
from roadvision.errors import UserError, refuse_unknown_keys
from roadvision.training.config import TrainConfig, parse_json_object

__all__ = ["SearchSpace", "SweepSettings", "TrialRecord", "SweepResult", "run_sweep",
           "plan_trials", "select_best", "TRIAL_KIND", "SWEEP_KIND"]

SWEEP_KIND = "sweep"  # roadvision.kind tag of the parent run
TRIAL_KIND = "sweep-trial"  # ... and of each trial's run
KIND_TAG = "roadvision.kind"
STATE_TAG = "optuna.state"

#: What scores a bundle on the test split: returns a metrics dict with ``headline``.
ScoreTest = Callable[[Path], dict[str, Any]]


@dataclass
class SearchSpace:
    """The ranges a trial draws from. An empty choice tuple (or None) keeps the profile's value.

    The learning-rate schedule has one shape (linear warmup, then cosine:
    ``roadvision.training.schedule``), so "schedule choice" is its warmup length and the share
    of the peak the cosine decays to.
    """

    lr: tuple[float, float] = (1e-4, 1e-2)  # peak learning rate, log-uniform
    weight_decay: tuple[float, float] = (1e-4, 0.2)  # AdamW decoupled decay, log-uniform
    warmup_epochs: tuple[float, float] | None = (0.0, 1.0)  # linear warmup length, uniform
    min_lr_ratio: tuple[float, ...] = (0.01, 0.1)  # cosine floor, a choice
    epochs: tuple[int, int] | None = None  # most epochs, an integer range; None = the profile's
    augment: tuple[str, ...] = ("light", "medium", "heavy")  # augmentation strength
    appearance: tuple[str, ...] = ()  # strong appearance groups, each switched on or off
    batch_size: tuple[int, ...] = ()  # images per step, a choice

    def __post_init__(self) -> None:
        for name in ("lr", "weight_decay"):
            low, high = _pair(self, name)
            if not 0 < low <= high:
                raise UserError(f"search space {name}: expected 0 < low <= high, got "
                                f"{low}, {high}")
        if self.warmup_epochs is not None:
            low, high = _pair(self, "warmup_epochs")
            if not 0 <= low <= high:
                raise UserError(f"search space warmup_epochs: expected 0 <= low <= high, got "
                                f"{low}, {high}")
        if self.epochs is not None:
            low, high = _pair(self, "epochs")
            if not (float(low).is_integer() and float(high).is_integer() and 1 <= low <= high):
                raise UserError(f"search space epochs: expected whole 1 <= low <= high, got "
                                f"{low}, {high}")
            self.epochs = (int(low), int(high))
        self.min_lr_ratio = tuple(float(v) for v in self.min_lr_ratio)
        if any(not 0 <= v <= 1 for v in self.min_lr_ratio):
            raise UserError(f"search space min_lr_ratio: values in [0, 1], got "
                            f"{list(self.min_lr_ratio)}")
        self.augment = tuple(self.augment)
        bad = [a for a in self.augment if a not in LEVELS]
        if bad:
            raise UserError(f"search space augment: {bad} not in {LEVELS}")
        self.appearance = check_appearance(list(self.appearance))
        self.batch_size = tuple(int(b) for b in self.batch_size)
        if any(b < 1 for b in self.batch_size):
            raise UserError(f"search space batch_size: values >= 1, got {list(self.batch_size)}")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SearchSpace:
        """From JSON-like data (lists for tuples); unknown keys are refused, naming the valid."""
        refuse_unknown_keys(data, [f.name for f in fields(cls)], "search space")
        try:
            return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})
        except (TypeError, ValueError) as exc:
            raise UserError(f"search space: {exc}") from None

    @classmethod
    def from_json(cls, text: str) -> SearchSpace:
        """``""`` = the default space; else a JSON object of :class:`SearchSpace` fields."""
        return cls.from_dict(parse_json_object(text, "search space", "ranges"))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def suggest(self, trial: Any) -> dict[str, Any]:
        """The ``TrainConfig`` changes of one Optuna trial (define-by-run)."""
        out: dict[str, Any] = {
            "lr": trial.suggest_float("lr", *self.lr, log=True),
            "weight_decay": trial.suggest_float("weight_decay", *self.weight_decay, log=True)}
        if self.warmup_epochs is not None:
            out["warmup_epochs"] = trial.suggest_float("warmup_epochs", *self.warmup_epochs)
        if self.min_lr_ratio:
            out["min_lr_ratio"] = trial.suggest_categorical("min_lr_ratio",
                                                            list(self.min_lr_ratio))
        if self.epochs is not None:
            out["epochs"] = trial.suggest_int("epochs", *self.epochs)
        if self.augment:
            out["augment"] = trial.suggest_categorical("augment", list(self.augment))
        if self.appearance:
            out["appearance"] = [g for g in self.appearance
                                 if trial.suggest_categorical(f"appearance_{g}", [False, True])]
        if self.batch_size:
            out["batch_size"] = trial.suggest_categorical("batch_size", list(self.batch_size))
        return out

    def default_params(self, base: TrainConfig) -> dict[str, Any]:
        """The Optuna parameters that reproduce ``base``, to enqueue it as the first trial.

        A profile value outside a range is still enqueued as it is (Optuna warns): the default
        trial must be the profile itself, not its nearest point in the space. A value missing
        from a choice cannot be (Optuna refuses it): a UserError says so.
        """
        for name in ("min_lr_ratio", "augment", "batch_size"):
            choices = getattr(self, name)
            if choices and getattr(base, name) not in choices:
                raise UserError(f"search space {name}: the profile's {getattr(base, name)!r} "
                                f"is not among the choices {list(choices)}; add it, or run "
                                "without the default trial")
        params: dict[str, Any] = {"lr": base.lr, "weight_decay": base.weight_decay}
        if self.warmup_epochs is not None:
            params["warmup_epochs"] = base.warmup_epochs
        if self.min_lr_ratio:
            params["min_lr_ratio"] = base.min_lr_ratio
        if self.epochs is not None:
            params["epochs"] = base.epochs
        if self.augment:
            params["augment"] = base.augment
        for group in self.appearance:
            params[f"appearance_{group}"] = group in base.appearance
        if self.batch_size:
            params["batch_size"] = base.batch_size
        return params


def _pair(space: SearchSpace, name: str) -> tuple[float, float]:
    value = getattr(space, name)
    try:
        low, high = value
        return float(low), float(high)
    except (TypeError, ValueError):
        raise UserError(f"search space {name}: expected [low, high], got {value!r}") from None


@dataclass
class SweepSettings:
    """How the study runs (not what it searches)."""

    trials: int = 8
    timeout: float | None = None  # seconds; no new trial starts after it (the running one ends)
    seed: int = 0  # the sampler's seed (each trial trains with the profile's seed)
    include_default: bool = True  # the profile's own configuration as the first trial
    startup_trials: int = 4  # random trials before TPE models the good region
    prune_startup_trials: int = 2  # completed trials before pruning starts
    prune_warmup_epochs: int = 0  # epochs a trial always gets before it may be pruned
    name: str = "sweep"  # the parent MLflow run's name

    def __post_init__(self) -> None:
        if int(self.trials) < 1:
            raise UserError(f"trials must be >= 1, got {self.trials}")
        if self.timeout is not None and not self.timeout > 0:
            raise UserError(f"timeout must be > 0 seconds, got {self.timeout}")
        for name in ("startup_trials", "prune_startup_trials", "prune_warmup_epochs"):
            if int(getattr(self, name)) < 0:
                raise UserError(f"{name} must be >= 0, got {getattr(self, name)}")


@dataclass
class TrialRecord:
    """One trial as the sweep saw it; ``val`` is its best validation headline."""

    number: int
    state: str  # complete / pruned / fail
    params: dict[str, Any]
    val: float | None = None
    epochs_run: int = 0
    run_dir: str = ""
    run_id: str = ""
    default: bool = False


@dataclass
class SweepResult:
    trials: list[TrialRecord]
    best: TrialRecord
    default: TrialRecord | None
    test: dict[str, dict[str, Any]] = field(default_factory=dict)  # "best"/"default" -> metrics
    parent_run_id: str = ""
    out_dir: str = ""

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for t in self.trials:
            out[t.state] = out.get(t.state, 0) + 1
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"trials": [asdict(t) for t in self.trials], "best": asdict(self.best),
                "default": asdict(self.default) if self.default else None, "test": self.test,
                "parent_run_id": self.parent_run_id, "counts": self.counts()}


def select_best(records: list[dict[str, Any]]) -> dict[str, Any]:
    """The record with the highest finite ``val`` among complete ones (ties: the earlier).

    Validation only: nothing else in a record is read, so the test split cannot steer it.
    """
    done = [r for r in records if r.get("state", "complete") == "complete"
            and isinstance(r.get("val"), int | float) and math.isfinite(r["val"])]
    if not done:
        raise UserError("no trial completed with a finite validation figure: nothing to select")
    return max(done, key=lambda r: (r["val"], -int(r.get("number", 0))))


def _study(space: SearchSpace, base: TrainConfig, settings: SweepSettings) -> Any:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(seed=int(settings.seed),
                                         n_startup_trials=int(settings.startup_trials))
    pruner = optuna.pruners.MedianPruner(n_startup_trials=int(settings.prune_startup_trials),
                                         n_warmup_steps=int(settings.prune_warmup_epochs))
    study = optuna.create_study(direction="maximize", sampler=sampler, pruner=pruner,
                                study_name=settings.name)
    if settings.include_default:
        study.enqueue_trial(space.default_params(base), user_attrs={"default": True},
                            skip_if_exists=True)
    return study


def plan_trials(space: SearchSpace, base: TrainConfig, settings: SweepSettings
                ) -> list[dict[str, Any]]:
    """``settings.trials`` parameter sets asked of the sampler at once (the pipeline's plan:
    its trials run in parallel, so none has a result to learn from, and TPE samples them as
    its random start-up trials do). Each: ``{"number", "default", "overrides"}``."""
    study = _study(space, base, settings)
    plan = []
    for _ in range(int(settings.trials)):
        trial = study.ask()
        plan.append({"number": trial.number, "default": bool(trial.user_attrs.get("default")),
                     "overrides": space.suggest(trial)})
    return plan


def _mlflow_params(values: dict[str, Any]) -> dict[str, str]:
    return {k: v if isinstance(v, str) else json.dumps(v, default=str)[:6000]
            for k, v in values.items()}


@contextlib.contextmanager
def _run(name: str, kind: str, experiment_id: str | None, tags: dict[str, str]) -> Iterator[Any]:
    import mlflow

    parent = mlflow.active_run()  # a nested run lives in its parent's experiment
    with mlflow.start_run(run_name=name, nested=parent is not None,
                          experiment_id=parent.info.experiment_id if parent else experiment_id,
                          tags={KIND_TAG: kind, **tags}) as run:
        yield run


def run_sweep(data_dir: str | Path, out_dir: str | Path, base: TrainConfig,
              space: SearchSpace | None = None, settings: SweepSettings | None = None, *,
              score_test: ScoreTest | None = None,
              experiment_id: str | None = None) -> SweepResult:
    """Run the study; write ``out_dir/trial-NNN/`` (each trial's run folder: bundle, history)
    and ``out_dir/sweep.json``. ``out_dir`` must be empty or absent (no trial is overwritten).

    The MLflow store is the caller's (``mlflow.set_tracking_uri``); an active run becomes the
    parent's parent. ``score_test(bundle_dir)`` scores the test split, once per scored bundle.
    """
    import mlflow
    import optuna

    from roadvision.training.train import train

    space = space or SearchSpace()
    settings = settings or SweepSettings()
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"sweep folder {out} exists and is not empty: choose a new folder")
    if not Path(data_dir).is_dir():
        raise UserError(f"data set {data_dir} is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    study = _study(space, base, settings)
    records: list[TrialRecord] = []

    def objective(trial: optuna.Trial) -> float:
        overrides = space.suggest(trial)
        cfg = base.replace(**overrides)
        record = TrialRecord(trial.number, "fail", overrides,
                             run_dir=str(out / f"trial-{trial.number:03d}"),
                             default=bool(trial.user_attrs.get("default")))
        records.append(record)

        def report(epoch: dict[str, Any]) -> None:
            record.epochs_run = int(epoch["epoch"])
            trial.report(float(epoch["val_headline"]), step=int(epoch["epoch"]))
            if trial.should_prune():
                raise optuna.TrialPruned(f"val {epoch['val_headline']:.4f} at epoch "
                                         f"{epoch['epoch']} is below the median")

        with _run(f"trial-{trial.number}", TRIAL_KIND, None,
                  {"optuna.trial": str(trial.number), "sweep.default": str(record.default)}
                  ) as run:
            record.run_id = run.info.run_id
            mlflow.log_params(_mlflow_params({**overrides, "trial": trial.number}))
            try:
                result = train(data_dir, record.run_dir, cfg, on_epoch=report)
            except optuna.TrialPruned:
                record.state = "pruned"
                mlflow.set_tag(STATE_TAG, record.state)
                raise
            except FloatingPointError:  # a diverging learning rate: a failed trial, not a bug
                mlflow.set_tag(STATE_TAG, "fail")
                raise
            finally:
                # checkpoints are only for resuming a killed trial; the bundles stay
                shutil.rmtree(Path(record.run_dir) / "checkpoint", ignore_errors=True)
            record.state, record.val = "complete", float(result.best_metric)
            mlflow.set_tag(STATE_TAG, record.state)
            mlflow.log_metric("val_best", record.val)
        return record.val

    with _run(settings.name, SWEEP_KIND, experiment_id, {}) as parent:
        mlflow.log_params(_mlflow_params({
            "trials": settings.trials, "sampler_seed": settings.seed, "training_profile_preset":
            base.preset, "search_space": space.to_dict(), "base_config": base.to_dict()}))
        study.optimize(objective, n_trials=int(settings.trials), timeout=settings.timeout,
                       catch=(FloatingPointError,))
        best_raw = select_best([asdict(r) for r in records])
        best = next(r for r in records if r.number == best_raw["number"])
        default = next((r for r in records if r.default), None)
        sweep = SweepResult(records, best, default, parent_run_id=parent.info.run_id,
                            out_dir=str(out))
        _log_outcome(sweep, score_test)
    (out / "sweep.json").write_text(json.dumps(sweep.to_dict(), indent=2, default=str) + "\n")
    return sweep


def _log_outcome(sweep: SweepResult, score_test: ScoreTest | None) -> None:
    """The winner (and the default) on the parent run; each scored on test exactly once."""
    import mlflow

    best, default = sweep.best, sweep.default
    mlflow.set_tags({"sweep.best_trial": str(best.number),
                     "sweep.best_run_id": best.run_id, **{
                         f"sweep.trials_{k}": str(v) for k, v in sweep.counts().items()}})
    mlflow.log_params(_mlflow_params({f"best.{k}": v for k, v in best.params.items()}))
    mlflow.log_metric("best.val", float(best.val))
    if default is not None and default.val is not None:
        mlflow.log_metric("default.val", float(default.val))
    if score_test is None:
        return
    scored = {"best": best}
    if default is not None and default.state == "complete" and default.number != best.number:
        scored["default"] = default
    for label, trial in scored.items():
        metrics = score_test(Path(trial.run_dir) / "bundle")
        sweep.test[label] = metrics
        headline = metrics.get("headline")
        if isinstance(headline, int | float) and math.isfinite(headline):
            mlflow.log_metric(f"{label}.test_headline", float(headline))
    if "default" not in scored and default is not None and default.number == best.number:
        sweep.test["default"] = sweep.test["best"]  # the default won: one bundle, one score
