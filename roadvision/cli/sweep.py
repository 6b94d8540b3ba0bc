"""``roadvision sweep``: an Optuna hyper-parameter sweep over a training profile.

Every trial is a ``roadvision train`` run in ``OUT/trial-NNN/`` and a nested MLflow run under
one parent sweep run; trials are pruned on the validation figure, the winner is chosen on
validation only, and the test split is scored once at the end, for the winner and for the
profile's own configuration (the sweep's first trial), side by side.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import typer

from roadvision.cli._options import TRACKING_URI_HELP, make_console
from roadvision.components.run_params import TASKS, TRAINING_PROFILES
from roadvision.errors import UserError

console = make_console()
Task = Literal[TASKS]
TrainingProfile = Literal[TRAINING_PROFILES]

_SPACE_HELP = ("search space as JSON, or @FILE holding it: keys lr, weight_decay, warmup_epochs, "
               "epochs ([low, high]), min_lr_ratio, augment, appearance, batch_size (choices), "
               "e.g. '{\"lr\": [1e-4, 3e-3], \"appearance\": [\"colour\", \"blur\"]}'; "
               "missing keys keep their defaults")


def register(root: typer.Typer) -> None:
    """Add ``sweep`` to the root app (called by ``roadvision.cli``)."""
    root.command("sweep")(sweep)


def read_space(text: str | None):
    """The ``--space`` option: inline JSON or ``@FILE``."""
    from roadvision.training.sweep import SearchSpace

    if not text:
        return SearchSpace()
    if text.startswith("@"):
        path = Path(text[1:])
        if not path.is_file():
            raise UserError(f"--space {text}: no such file")
        text = path.read_text()
    return SearchSpace.from_json(text)


def sweep(
    data: Path = typer.Option(..., help="data set folder with a train/val(/test) split"),
    task: Task = typer.Option(..., help="the data set's task"),
    out: Path = typer.Option(..., help="new (or empty) folder: one run folder per trial"),
    trials: int = typer.Option(8, min=1, help="trials to run (the first is the profile's own "
                                              "configuration)"),
    training_profile: TrainingProfile = typer.Option(
        "bench", "--profile", help="training profile the trials start from"),
    timeout: float | None = typer.Option(None, help="seconds after which no new trial starts"),
    space: str | None = typer.Option(None, help=_SPACE_HELP),
    seed: int = typer.Option(0, help="sampler seed"),
    sets: list[str] = typer.Option([], "--set", help="TrainConfig field KEY=VALUE applied to "
                                                     "every trial (repeatable), e.g. --set "
                                                     "max_steps_per_epoch=20"),
    include_default: bool = typer.Option(True, "--include-default/--no-default",
                                         help="run the profile's own configuration first"),
    score_test: bool = typer.Option(True, "--test/--no-test",
                                    help="score the winner and the default on test at the end"),
    experiment: str = typer.Option("roadvision-sweeps", help="MLflow experiment"),
    tracking_uri: str | None = typer.Option(None, help=TRACKING_URI_HELP),
) -> None:
    """Search learning rate, weight decay, schedule, epochs, augmentation and batch size."""
    from roadvision import registry
    from roadvision.cli.ml import _parse_sets
    from roadvision.data.contract import read_info
    from roadvision.training import TrainConfig
    from roadvision.training.sweep import SweepSettings, run_sweep

    if not data.is_dir():
        raise UserError(f"--data {data} is not a directory")
    found = read_info(data).task
    if found != task:
        raise UserError(f"--task {task} but {data} holds {found} data")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"--out {out} exists and is not empty: choose a new folder")
    search = read_space(space)
    try:
        base = TrainConfig.for_profile(training_profile, task).replace(**_parse_sets(sets))
    except (TypeError, ValueError) as exc:
        raise UserError(f"--set: {exc}") from None
    settings = SweepSettings(trials=trials, timeout=timeout, seed=seed,
                             include_default=include_default,
                             name=f"sweep-{task}-{training_profile}")
    registry.configure(tracking_uri)
    experiment_id = registry.ensure_experiment(experiment)

    def test_figure(bundle: Path) -> dict:
        from roadvision.evaluation import evaluate

        return evaluate(bundle, data, split="test")

    console.print(f"sweep: {trials} trials of training profile {training_profile} on {data} "
                  f"into {out} (MLflow experiment {experiment})")
    result = run_sweep(data, out, base, search, settings,
                       score_test=test_figure if score_test else None,
                       experiment_id=experiment_id)
    _report(result)


def _report(result) -> None:
    counts = ", ".join(f"{n} {state}" for state, n in sorted(result.counts().items()))
    console.print(f"trials: {counts}; parent MLflow run {result.parent_run_id}")
    for t in result.trials:
        val = f"{t.val:.4f}" if t.val is not None else "-"
        mark = " (default)" if t.default else ""
        console.print(f"  trial {t.number:>3} {t.state:<8} val {val:<7} epochs {t.epochs_run}"
                      f"{mark}  {json.dumps(t.params, default=str)}")
    rows = [("best", result.best)] + ([("default", result.default)] if result.default else [])
    for label, t in rows:
        test = result.test.get(label, {}).get("headline")
        test_text = f"{test:.4f}" if isinstance(test, int | float) else "not scored"
        val = f"{t.val:.4f}" if t.val is not None else "-"
        console.print(f"{label:<8} trial {t.number}: val {val}, test headline {test_text}")
    console.print(f"winner's bundle: {Path(result.best.run_dir) / 'bundle'}")
    console.print(f"summary: {Path(result.out_dir) / 'sweep.json'}")
