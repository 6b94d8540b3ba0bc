"""Pseudo-labelling benchmark (issue 15 item 3): gain per round on a shifted domain.

    python -m benchmarks.bench_pseudo_label --quick     # tiny images and models: the wiring
    python -m benchmarks.bench_pseudo_label --task roadwork --holdout camera --rounds 2
    python -m benchmarks.bench_pseudo_label --teacher RUN/bundle --data DATA --count-only
    python -m benchmarks.bench_pseudo_label --teacher RUN/bundle --data DATA --epochs 3

A teacher trains on every scene family but the held-out one (``bench_cross_domain``'s
``split_holdout``), or ``--teacher`` reuses one trained that way (``bench_cross_domain``'s
baseline bundle) with ``--data``, the data set it was split from: it is split again with the
same ``--holdout`` and ``--seed``, and the teacher's recorded training-data hash must match
the in-family part, so the pool really is the family the teacher never saw. The held-out
family's rows are cut in two: half become the unlabelled pool (its labels are only compared
with the pseudo labels, never used), half its labelled test (the shifted domain). Each round
pseudo-labels the pool, fine-tunes on labelled train + pseudo rows and reports the frozen
in-family test and the shifted test before and after. Scores are on synthetic data and
labelled so.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ROADVISION_QUIET", "1")

import numpy as np  # noqa: E402

from benchmarks._runner import add_common_arguments, bench_parser, run_and_report  # noqa: E402
from benchmarks.bench_cross_domain import make_data, split_holdout  # noqa: E402
from roadvision.data.contract import ContractError  # noqa: E402
from roadvision.errors import UserError  # noqa: E402
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


def teacher_data(teacher: Path, data: Path, holdout: str, work: Path, seed: int
                 ) -> tuple[str, Path, Path]:
    """(task, in-family data, held-out family) for a trained ``teacher`` and ``data``.

    ``data`` is the all-families data set the teacher's training data was split from (split
    again here with ``holdout`` and ``seed``), or that split's folder (``in/`` and ``held/``).
    Refused, with one line, when the task differs, when the held-out rows are not ``holdout``,
    or when the teacher's recorded training-data hash is not the in-family part's: then the
    "shifted" family may be one the teacher trained on, and a gain on it would mean nothing.
    """
    from roadvision.data.contract import read_info, read_manifest
    from roadvision.models.bundle import bundle_task, read_bundle_config

    task = bundle_task(teacher)
    if (data / "in" / "manifest.parquet").is_file() and (data / "held").is_dir():
        inside, held = data / "in", data / "held"
    elif (data / "manifest.parquet").is_file():
        info = read_info(data)
        if info.task != task:  # before splitting: a wrong pair writes nothing
            raise SystemExit(f"teacher {teacher} is a {task} model; data {data} is {info.task}")
        inside, held = split_holdout(data, holdout, work / f"{data.name}_without_{holdout}", seed)
    else:
        raise SystemExit(f"data {data}: neither a data set (manifest.parquet) nor a held-out "
                         "split (in/ and held/)")
    info = read_info(inside)
    if info.task != task:
        raise SystemExit(f"teacher {teacher} is a {task} model; data {data} is {info.task}")
    families = set(read_manifest(held)["family"].dropna())
    if families != {holdout} or info.extra.get("holdout_family", holdout) != holdout:
        raise SystemExit(f"data {data}: its held-out rows are {sorted(families)}, not "
                         f"--holdout {holdout!r}")
    trained_on = (read_bundle_config(teacher).get("extra", {}).get("dataset") or {}).get(
        "content_hash", "")
    if not trained_on:
        print(f"note: teacher {teacher} records no training-data hash; the split is not checked")
    elif trained_on != info.content_hash:
        raise SystemExit(f"teacher {teacher} was trained on data {trained_on[:12]}, not on the "
                         f"in-family split of {data} ({info.content_hash[:12]}, --holdout "
                         f"{holdout} --seed {seed}): its held-out family would not be held out")
    return task, inside, held


def _teacher_config(teacher: Path, task: str, plan: dict[str, Any],
                    args: argparse.Namespace) -> TrainConfig:
    """Each round's fine-tuning: the teacher's own training config (preset, crop, profile)
    with this run's epochs (default 3) and step cap; ``--lr`` overrides its learning rate."""
    from roadvision.models.bundle import read_bundle_config

    recorded = read_bundle_config(teacher).get("extra", {}).get("train_config")
    if not recorded:
        cfg = _config(task, plan, args)
    else:
        cfg = TrainConfig.from_dict(recorded).replace(
            epochs=args.epochs or 3, seed=args.seed, patience=0,
            max_steps_per_epoch=args.max_steps or None)
    return cfg.replace(lr=args.lr) if args.lr else cfg


def confidence_summary(preds: list[Any], thresholds: list[float], balance_ratio: float,
                       groups: tuple[int, ...]) -> dict[str, Any]:
    """Quantiles of the teacher's pool confidences (roadwork ``max(p, 1 - p)``; lanes a tile's
    mean max-class probability) and, per threshold, how many pass it and how many the class
    balancing keeps: the numbers to choose thresholds from."""
    from roadvision.training.pseudo_label import select_confident

    conf = np.array([p.confidence for p in preds], dtype=np.float64)
    quantiles = {f"q{int(q * 100):02d}": float(np.quantile(conf, q)) if len(conf) else None
                 for q in (0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0)}
    per = {}
    for t in thresholds:
        kept, confident = select_confident(preds, t, balance_ratio, groups)
        per[f"{t:g}"] = {"confident": confident, "kept": len(kept),
                         "kept_groups": {int(g): int(c) for g, c in zip(
                             *np.unique([p.group for p in kept], return_counts=True),
                             strict=True)}}
    return {"n": len(preds), "quantiles": quantiles, "thresholds": per}


def pseudo_mask_miou(report: Any, pool: list[Any], classes: list[str]) -> float | None:
    """Lanes: mIoU without background of a round's kept pseudo masks against the pool's hidden
    masks (the library's pixel accuracy is mostly background pixels, so it says little)."""
    from roadvision.data.contract import read_manifest
    from roadvision.metrics import seg_confusion, segmentation_metrics
    from roadvision.runtime.readers import read_mask

    if not report.data_dir:
        return None
    df = read_manifest(report.data_dir)
    rows = df[df["source"] == "pseudo"]
    n = len(classes)
    cm = np.zeros((n, n), np.int64)
    for row in rows.itertuples():
        truth = pool[int(str(row.id).rsplit("-", 1)[1])].truth  # id: pseudo-rK-<pool index>
        cm += seg_confusion(np.asarray(truth), read_mask(report.data_dir, row.mask), n)
    return float(segmentation_metrics(cm, classes)["miou_no_bg"] or 0.0) if len(rows) else None


def control_rounds(teacher: Path, inside: Path, shifted: Path, cfg: TrainConfig, out: Path,
                   after_train: Any, rounds: int) -> list[dict[str, Any]]:
    """The trained rounds' fine-tuning with no pseudo row (same epochs, seeds and labelled
    rows, each round from the previous one): what the extra training alone does to both test
    sets, to read each round's gain against."""
    from roadvision.training.pseudo_label import (
        fine_tune,
        frozen_test_figures,
        write_round_dataset,
    )

    out_rows, current = [], teacher
    for round_no in range(1, rounds + 1):
        here = out / f"round-{round_no}"
        shutil.rmtree(here, ignore_errors=True)
        data = write_round_dataset(inside, [], [], round_no, here / "data", 1.0)
        result = fine_tune(current, data, here / "train", cfg.replace(seed=cfg.seed + round_no))
        after_train(Path(result.bundle_dir), data)
        current = Path(result.bundle_dir)
        out_rows.append({"round": round_no,
                         "in_after": frozen_test_figures(current, inside)["headline"],
                         "shifted_after": frozen_test_figures(current, shifted)["headline"]})
    return out_rows


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
    from roadvision.training.pseudo_label import (
        PseudoLabelConfig,
        predict_pool,
        pseudo_label_rounds,
    )
    from roadvision.training.pseudo_pool import pool_from_dataset

    plan = QUICK if args.quick else FULL
    rows = []
    for task in args.task:
        t0 = time.perf_counter()
        if args.teacher:
            task, inside, held = teacher_data(args.teacher, args.data, args.holdout, args.work,
                                              args.seed)
            pool_dir, shifted = split_pool(held, args.work / f"{task}_held_split", args.seed)
            cfg = _teacher_config(args.teacher, task, plan, args)
            # a copy: calibration writes into the bundle, and the teacher is not ours to change
            teacher_dir = args.work / "runs" / f"{task}_teacher" / "bundle"
            shutil.rmtree(teacher_dir, ignore_errors=True)
            shutil.copytree(args.teacher, teacher_dir)
        else:
            raw = make_data(task, args.work, args.n or plan["n"], plan["size"], args.seed)
            inside, held = split_holdout(raw, args.holdout, args.work / f"{raw.name}_without_"
                                         f"{args.holdout}", args.seed)
            pool_dir, shifted = split_pool(held, held.parent / "held_split", args.seed)
            cfg = _config(task, plan, args)
            teacher_dir = train(inside, args.work / "runs" / f"{task}_teacher", cfg).bundle_dir
        calibrate(teacher_dir, inside, split="val")
        teacher_s = time.perf_counter() - t0
        config = PseudoLabelConfig(rounds=args.rounds,
                                   thresholds=args.thresholds or plan["thresholds"],
                                   pseudo_weight=args.pseudo_weight, train=cfg)
        pool = pool_from_dataset(pool_dir)
        if args.count_only:
            from roadvision.models.bundle import load_bundle

            preds, _ = predict_pool([load_bundle(teacher_dir)], pool)
            groups = (0, 1) if task == "roadwork" else ()
            rows.append({"task": task, "holdout": args.holdout, "count_only": True,
                         **confidence_summary(preds, config.thresholds, config.balance_ratio,
                                              groups)})
            continue
        t0 = time.perf_counter()
        reports = pseudo_label_rounds(
            teacher_dir, inside, pool, config,
            args.work / "runs" / f"{task}_pseudo", shifted_data=shifted, overwrite=True,
            after_train=lambda bundle, data: calibrate(bundle, data, split="val"))
        seconds = time.perf_counter() - t0
        control = control_rounds(teacher_dir, inside, shifted, cfg,
                                 args.work / "runs" / f"{task}_control",
                                 lambda bundle, data: calibrate(bundle, data, split="val"),
                                 sum(r.trained for r in reports)) if args.control else []
        classes = list(json.loads((Path(teacher_dir) / "config.json").read_text())
                       ["model_config"].get("classes") or [])
        for r in reports:
            rows.append({"task": task, "holdout": args.holdout, "round": r.round,
                         "threshold": r.threshold, "pool": r.pool_size,
                         "confident": r.confident, "kept": r.kept,
                         "classes": r.class_counts, "pseudo_accuracy": r.pseudo_accuracy,
                         "pseudo_miou_no_bg": pseudo_mask_miou(r, pool, classes)
                         if task == "lanes" else None,
                         "trained": r.trained, "note": r.note,
                         "in_before": r.test_before["headline"],
                         "in_after": r.test_after["headline"],
                         "shifted_before": r.shifted_before["headline"],
                         "shifted_after": r.shifted_after["headline"],
                         "test": {"before": r.test_before, "after": r.test_after},
                         "shifted": {"before": r.shifted_before, "after": r.shifted_after},
                         "control": next((c for c in control if c["round"] == r.round),
                                         None),
                         "teacher_s": round(teacher_s, 1), "rounds_s": round(seconds, 1),
                         "synthetic": True})
    return rows


def print_counts(rows: list[dict[str, Any]]) -> None:
    print("\npool confidences of the teacher (synthetic data): quantiles, then per threshold "
          "confident / kept after class balancing")
    for r in rows:
        q = " ".join(f"{k}={v:.3f}" for k, v in r["quantiles"].items() if v is not None)
        t = ", ".join(f"{k}: {v['confident']}/{v['kept']}" for k, v in r["thresholds"].items())
        print(f"{r['task']:9} {r['holdout']:9} n={r['n']}  {q}  |  {t}")


def print_table(rows: list[dict[str, Any]]) -> None:
    if rows and rows[0].get("count_only"):
        print_counts(rows)
        return
    print("\npseudo-labelling (synthetic data): per round, frozen in-family test and the "
          "held-out family's test (headline: roadwork MCC@0.5, lanes mIoU without background)")
    print(f"{'task':9} {'held out':9} {'round':>5} {'thr':>5} {'kept':>5} {'pl acc':>6} "
          f"{'pl miou':>7} "
          f"{'in before':>9} {'in after':>8} {'shift before':>12} {'shift after':>11} "
          f"{'gain':>6}  classes")
    for r in rows:
        acc = "-" if r["pseudo_accuracy"] is None else f"{r['pseudo_accuracy']:.3f}"
        miou = "-" if r.get("pseudo_miou_no_bg") is None else f"{r['pseudo_miou_no_bg']:.3f}"
        gain = r["shifted_after"] - r["shifted_before"]
        print(f"{r['task']:9} {r['holdout']:9} {r['round']:5d} {r['threshold']:5.3f} "
              f"{r['kept']:5d} {acc:>6} {miou:>7} {r['in_before']:9.3f} {r['in_after']:8.3f} "
              f"{r['shifted_before']:12.3f} {r['shifted_after']:11.3f} {gain:+6.3f}  "
              f"{r['classes'] or 'none'}{'' if r['trained'] else ' (not trained)'}")
        if r.get("note"):
            print(f"  {r['note']}")
    for r in rows:
        if r.get("control"):
            c = r["control"]
            print(f"{r['task']:9} control round {r['round']} (the same fine-tuning without pseudo "
                  f"rows, from the previous control round): in {c['in_after']:.3f}, shifted "
                  f"{c['shifted_after']:.3f}")


def _check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    from roadvision.models.bundle import bundle_task

    if (args.teacher is None) != (args.data is None):
        parser.error("--teacher and --data go together")
    if args.teacher is None:
        args.task = args.task or ["roadwork"]
        if args.count_only or args.lr or args.control:
            parser.error("--count-only, --control and --lr need --teacher")
        return
    if args.quick:
        parser.error("--quick trains its own tiny teacher; drop it with --teacher")
    try:
        task = bundle_task(args.teacher)
    except UserError as exc:
        parser.error(f"--teacher: {exc}")
    if args.task and args.task != [task]:
        parser.error(f"--task {' '.join(args.task)}: the teacher {args.teacher} is a {task} model")
    args.task = [task]
    args.teacher, args.data = args.teacher.resolve(), args.data.resolve()


def main(argv: list[str] | None = None) -> None:
    parser = bench_parser("bench_pseudo_label", __doc__)
    parser.add_argument("--quick", action="store_true",
                        help="tiny images and models, short rounds (about 2 min): the wiring")
    parser.add_argument("--task", nargs="+", choices=TASKS, default=None,
                        help="default: roadwork (with --teacher: the teacher's task)")
    parser.add_argument("--teacher", type=Path, default=None,
                        help="a trained teacher bundle to reuse (bench_cross_domain's baseline "
                             "for --holdout); needs --data")
    parser.add_argument("--data", type=Path, default=None,
                        help="with --teacher: the all-families data set it was split from, or "
                             "the split folder (in/, held/)")
    parser.add_argument("--count-only", action="store_true",
                        help="only the teacher's pool confidences and the rows each threshold "
                             "keeps (no training)")
    parser.add_argument("--control", action="store_true",
                        help="also fine-tune the trained rounds without pseudo rows (same epochs, "
                             "seeds)")
    parser.add_argument("--lr", type=float, default=None,
                        help="fine-tuning learning rate (with --teacher default: the teacher's)")
    parser.add_argument("--holdout", default="camera", help="the shifted scene family")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--thresholds", type=float, nargs="+", default=None,
                        help="per-round thresholds (default: 0.9 0.95; --quick 0.52 0.55)")
    parser.add_argument("--pseudo-weight", type=float, default=0.3)
    add_common_arguments(parser, samples_help="samples over all families",
                         epochs_help="teacher and per-round epochs (with --teacher: per round, "
                                     "default 3)",
                         jobs=False, threads_default=2, threads_help="torch threads")
    args = parser.parse_args(argv)
    _check_args(parser, args)
    try:
        run_and_report("pseudo_label", args, run, print_table)
    except (UserError, ContractError) as exc:  # a bad bundle or data set: one line
        raise SystemExit(str(exc)) from None


if __name__ == "__main__":
    main()
