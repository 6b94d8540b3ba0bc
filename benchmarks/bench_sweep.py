"""Sweep benchmark (issue 15): an Optuna sweep against the default training profile, at equal
total budget, on the same data.

    python -m benchmarks.bench_sweep --quick                  # tiny data, 3 trials: the wiring
    python -m benchmarks.bench_sweep --task roadwork --trials 6   # bench profile (a GPU node)

Budget: the sweep trains ``trials`` runs of the profile's length (its first trial is the
profile's own configuration); the default side trains the profile ``trials`` times with
different seeds and keeps the best on validation. Both sides select on validation only; each
side's choice is scored once on the test split. Validation figure: the loop's threshold-free
headline (roadwork AUROC, lanes soft IoU without background); test: the evaluation headline
(roadwork MCC at 0.5, lanes mIoU without background). Scores are on synthetic data.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ROADVISION_QUIET", "1")

from roadvision.training import TrainConfig, train  # noqa: E402

QUICK = {"n": 60, "size": "tiny", "profile": "tiny", "trials": 3, "max_steps": 2}
FULL = {"n": 1000, "size": "bench", "profile": "bench", "trials": 6, "max_steps": None}


def make_data(task: str, work: Path, n: int, size: str, seed: int = 0) -> Path:
    from roadvision.data.split import split_dataset
    from roadvision.data.synth import generate

    raw, split = work / f"{task}_raw", work / f"{task}_split"
    if not (split / "manifest.parquet").is_file():
        if not (raw / "manifest.parquet").is_file():
            generate(task, n, seed, raw, size=size)
        split_dataset(raw, split, seed=seed)
    return split


def default_side(data: Path, base: TrainConfig, runs: int, work: Path) -> dict[str, Any]:
    """The profile ``runs`` times (seeds 0..runs-1); the best on validation."""
    from roadvision.evaluation import evaluate

    results = []
    for seed in range(runs):
        result = train(data, work / f"default-seed{seed}", base.replace(seed=seed))
        results.append((float(result.best_metric), seed, result.bundle_dir))
    val, seed, bundle = max(results, key=lambda r: (r[0], -r[1]))
    test = evaluate(bundle, data, split="test")
    return {"val": val, "test": test["headline"], "seed": seed,
            "vals": [round(r[0], 4) for r in results]}


def sweep_side(data: Path, base: TrainConfig, trials: int, work: Path) -> dict[str, Any]:
    import mlflow

    from roadvision.evaluation import evaluate
    from roadvision.training.sweep import SearchSpace, SweepSettings, run_sweep

    mlflow.set_tracking_uri(f"sqlite:///{work / 'mlflow.db'}")
    experiment = mlflow.create_experiment("bench-sweep",
                                          artifact_location=str(work / "artifacts"))
    result = run_sweep(data, work / "sweep", base, SearchSpace(),
                       SweepSettings(trials=trials, seed=0),
                       score_test=lambda b: evaluate(b, data, split="test"),
                       experiment_id=experiment)
    return {"val": result.best.val, "test": result.test["best"]["headline"],
            "trial": result.best.number, "params": result.best.params,
            "default_val": result.default.val if result.default else None,
            "default_test": result.test.get("default", {}).get("headline"),
            "counts": result.counts()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny data, 3 trials (wiring)")
    parser.add_argument("--task", choices=("roadwork", "lanes"), default="roadwork")
    parser.add_argument("--trials", type=int, help="trials (= default-profile seeds)")
    parser.add_argument("--n", type=int, help="generated samples")
    parser.add_argument("--epochs", type=int, help="epochs per training (profile's if unset)")
    parser.add_argument("--work", type=Path, help="work folder (default: a temporary one)")
    args = parser.parse_args()
    plan = dict(QUICK if args.quick else FULL)
    trials = args.trials or plan["trials"]
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        data = make_data(args.task, work, args.n or plan["n"], plan["size"])
        base = TrainConfig.for_profile(plan["profile"], args.task, epochs=args.epochs,
                                       max_steps_per_epoch=plan["max_steps"])
        t0 = time.perf_counter()
        default = default_side(data, base, trials, work / "default")
        t1 = time.perf_counter()
        sweep = sweep_side(data, base, trials, work)
        t2 = time.perf_counter()
    print(f"sweep benchmark (synthetic data), task {args.task}, training profile "
          f"{plan['profile']}, {trials} trainings a side")
    print(f"{'side':<32} {'val':>7} {'test':>7} {'seconds':>8}")
    print(f"{'default, best of ' + str(trials) + ' seeds':<32} {default['val']:>7.4f} "
          f"{default['test']:>7.4f} {t1 - t0:>8.0f}")
    if sweep["default_val"] is not None:
        test = sweep["default_test"] if sweep["default_test"] is not None else sweep["test"]
        print(f"{'default (the sweep trial 0)':<32} {sweep['default_val']:>7.4f} "
              f"{test:>7.4f} {'':>8}")
    print(f"{'sweep winner (trial ' + str(sweep['trial']) + ')':<32} {sweep['val']:>7.4f} "
          f"{sweep['test']:>7.4f} {t2 - t1:>8.0f}")
    print(f"sweep trials: {sweep['counts']}; winner: {json.dumps(sweep['params'], default=str)}")
    print(f"default seeds' val: {default['vals']}")


if __name__ == "__main__":
    main()
