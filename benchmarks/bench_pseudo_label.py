"""Pseudo-labelling benchmark (issue 15 item 3): gain per round on a shifted domain.

    python -m benchmarks.bench_pseudo_label --quick     # tiny images and models: the wiring
    python -m benchmarks.bench_pseudo_label --task roadwork --holdout camera --rounds 2

A teacher trains on every scene family but the held-out one (``bench_cross_domain``'s
``split_holdout``). The held-out family's rows are cut in two: half become the unlabelled pool
(its labels are only compared with the pseudo labels, never used), half its labelled test (the
shifted domain). Each round pseudo-labels the pool, fine-tunes on labelled train + pseudo rows
and reports the frozen in-family test and the shifted test before and after. Scores are on
synthetic data and labelled so.
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

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.bench_cross_domain import make_data, split_holdout  # noqa: E402
from roadvision.training import TrainConfig, train  # noqa: E402

TASKS = ("lanes", "roadwork")
# --quick: random-init tiny models on tiny images; they are never 90 % sure, so the thresholds
# are low: this checks the wiring and the report, not the gain.
QUICK = {"n": 150, "size": "tiny", "profile": "tiny", "epochs": 3, "max_steps": 5,
         "thresholds": [0.52, 0.55]}
# The full run: bench-size images and the bench profile's ImageNet Lite0 presets (the sizes of
# bench_cross_domain's full run, whose teachers reach MCC ~0.5-0.8 in-family).
FULL = {"n": 1000, "size": "bench", "profile": "bench", "epochs": 8, "max_steps": None,
        "thresholds": [0.9, 0.95]}


def split_pool(held: Path, out: Path, seed: int) -> tuple[Path, Path]:
    """The held-out family's rows: ``out/pool`` (unlabelled pool; labels kept only to report
    pseudo-label accuracy) and ``out/shifted`` (its labelled test split)."""
    from roadvision.data.contract import read_info, read_manifest, write_dataset
    from roadvision.data.fileops import carry_files

    df, info = read_manifest(held), read_info(held)
    draw = np.random.default_rng(seed).random(len(df)) < 0.5
    folders = []
    for name, rows in (("pool", df[draw]), ("shifted", df[~draw])):
        folder = out / name
        if not (folder / "manifest.parquet").is_file():
            rows = rows.reset_index(drop=True).assign(split="test")
            carry_files(held, folder, rows)
            write_dataset(folder, rows, info)
        folders.append(folder)
    return folders[0], folders[1]


def _config(task: str, plan: dict[str, Any], args: argparse.Namespace) -> TrainConfig:
    kw: dict[str, Any] = {"epochs": args.epochs or plan["epochs"], "seed": args.seed,
                          "patience": 0}
    if plan["profile"] == "bench":
        kw["model_overrides"] = {"view_size": 160} if task == "roadwork" else {}
        kw["crop_size"] = 128 if task == "lanes" else None
    if args.max_steps or plan["max_steps"]:
        kw["max_steps_per_epoch"] = args.max_steps or plan["max_steps"]
    return TrainConfig.for_profile(plan["profile"], task, **kw)


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    from roadvision.evaluation import calibrate
    from roadvision.training.pseudo_label import PseudoLabelConfig, pseudo_label_rounds
    from roadvision.training.pseudo_pool import pool_from_dataset

    plan = QUICK if args.quick else FULL
    rows = []
    for task in args.task:
        raw = make_data(task, args.work, args.n or plan["n"], plan["size"], args.seed)
        inside, held = split_holdout(raw, args.holdout, args.work / f"{raw.name}_without_"
                                     f"{args.holdout}", args.seed)
        pool_dir, shifted = split_pool(held, held.parent / "held_split", args.seed)
        cfg = _config(task, plan, args)
        t0 = time.perf_counter()
        teacher = train(inside, args.work / "runs" / f"{task}_teacher", cfg)
        calibrate(teacher.bundle_dir, inside, split="val")
        teacher_s = time.perf_counter() - t0
        config = PseudoLabelConfig(rounds=args.rounds,
                                   thresholds=args.thresholds or plan["thresholds"],
                                   pseudo_weight=args.pseudo_weight, train=cfg)
        t0 = time.perf_counter()
        reports = pseudo_label_rounds(
            teacher.bundle_dir, inside, pool_from_dataset(pool_dir), config,
            args.work / "runs" / f"{task}_pseudo", shifted_data=shifted, overwrite=True,
            after_train=lambda bundle, data: calibrate(bundle, data, split="val"))
        seconds = time.perf_counter() - t0
        for r in reports:
            rows.append({"task": task, "holdout": args.holdout, "round": r.round,
                         "threshold": r.threshold, "pool": r.pool_size, "kept": r.kept,
                         "classes": r.class_counts, "pseudo_accuracy": r.pseudo_accuracy,
                         "trained": r.trained, "in_before": r.test_before["headline"],
                         "in_after": r.test_after["headline"],
                         "shifted_before": r.shifted_before["headline"],
                         "shifted_after": r.shifted_after["headline"],
                         "teacher_s": round(teacher_s, 1), "rounds_s": round(seconds, 1),
                         "synthetic": True})
    return rows


def print_table(rows: list[dict[str, Any]]) -> None:
    print("\npseudo-labelling (synthetic data): per round, frozen in-family test and the "
          "held-out family's test (headline: roadwork MCC@0.5, lanes mIoU without background)")
    print(f"{'task':9} {'held out':9} {'round':>5} {'thr':>5} {'kept':>5} {'pl acc':>6} "
          f"{'in before':>9} {'in after':>8} {'shift before':>12} {'shift after':>11} "
          f"{'gain':>6}  classes")
    for r in rows:
        acc = "-" if r["pseudo_accuracy"] is None else f"{r['pseudo_accuracy']:.3f}"
        gain = r["shifted_after"] - r["shifted_before"]
        print(f"{r['task']:9} {r['holdout']:9} {r['round']:5d} {r['threshold']:5.3f} "
              f"{r['kept']:5d} {acc:>6} {r['in_before']:9.3f} {r['in_after']:8.3f} "
              f"{r['shifted_before']:12.3f} {r['shifted_after']:11.3f} {gain:+6.3f}  "
              f"{r['classes'] or 'none'}{'' if r['trained'] else ' (not trained)'}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_pseudo_label",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="tiny images and models, short rounds (about 2 min): the wiring")
    parser.add_argument("--task", nargs="+", choices=TASKS, default=["roadwork"])
    parser.add_argument("--holdout", default="camera", help="the shifted scene family")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--thresholds", type=float, nargs="+", default=None,
                        help="per-round thresholds (default: 0.9 0.95; --quick 0.52 0.55)")
    parser.add_argument("--pseudo-weight", type=float, default=0.3)
    parser.add_argument("--n", type=int, default=None, help="samples over all families")
    parser.add_argument("--epochs", type=int, default=None, help="teacher and per-round epochs")
    parser.add_argument("--max-steps", type=int, default=None, help="cap batches per epoch")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--work", type=Path, default=None, help="keep data and runs here")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        args.work = (args.work or Path(tmp)).resolve()
        args.work.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        rows = run(args)
        print_table(rows)
        print(f"(pseudo_label took {time.perf_counter() - t0:.0f} s)")
        if args.json:
            args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
