"""Thin-lines benchmark (issue 13 item 6): clDice, per-class thresholds, short-piece removal.

    python -m benchmarks.bench_thin_lines --quick     # tiny images and models: the wiring
    python -m benchmarks.bench_thin_lines             # bench images, ImageNet Lite0, 12 epochs
    python -m benchmarks.bench_thin_lines --bundle RUN/bundle --inside IN --held HELD
                                                      # decisions only, on a trained bundle

Lanes only. The generator's data over every scene family are split as in
``bench_cross_domain`` (the held-out family's rows apart; the others 70/15/15 train/val/test).
Two trainings: ``baseline`` (Dice + focal) and ``cldice`` (Dice + focal + soft clDice,
``lane_loss="dice_focal_cldice"``). Each trained bundle is then scored with four decision
settings, all applied by the runtime's one inference path (``lane_mask``):

- ``argmax``: as trained;
- ``thresholds``: per-class biases fitted on the in-family val split (``calibrate``);
- ``min_segment``: pieces shorter than ``--min-segment-m`` metres removed;
- ``both``: thresholds, then min_segment.

The table gives per-class IoU and mIoU without background on the in-family test split and on
the held-out family. Scores are on synthetic data and labelled so.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import time
import warnings
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ROADVISION_QUIET", "1")

import torch  # noqa: E402

from benchmarks._runner import add_common_arguments, bench_parser, run_and_report  # noqa: E402
from benchmarks.bench_cross_domain import make_data, split_holdout  # noqa: E402
from roadvision.training import TrainConfig  # noqa: E402

TRAININGS: dict[str, dict[str, Any]] = {
    "baseline": {"lane_loss": "dice_focal"},
    "cldice": {"lane_loss": "dice_focal_cldice"},
}
DECISIONS = ("argmax", "thresholds", "min_segment", "both")

# --quick: tiny random-init models, a few steps; enough images that the in-family val split
# has the 40 images calibration needs (fewer and the thresholds are skipped with a warning).
QUICK = {"n": 400, "size": "tiny", "profile": "tiny", "epochs": 1, "max_steps": 4}
# The full run: bench_cross_domain's lanes plan (bench images, ImageNet Lite0, 128 px crops).
FULL = {"n": 600, "size": "bench", "profile": "bench", "epochs": 12, "max_steps": None}


def config(args: argparse.Namespace, changes: dict[str, Any]) -> TrainConfig:
    plan = QUICK if args.quick else FULL
    kw: dict[str, Any] = {"epochs": args.epochs or plan["epochs"], "seed": args.seed,
                          "patience": 0, "cldice_weight": args.cldice_weight,
                          "max_steps_per_epoch": args.max_steps or plan["max_steps"]}
    if plan["profile"] == "bench":
        kw["crop_size"] = 128
    return TrainConfig.for_profile(plan["profile"], "lanes", **kw).replace(**changes)


def decide(bundle: Path, out: Path, decision: str, inside: Path, min_segment_m: float
           ) -> dict[str, Any]:
    """A copy of ``bundle`` at ``out`` with ``decision``'s settings; what was fitted."""
    from roadvision.evaluation.calibration import calibrate
    from roadvision.models.bundle import update_bundle_config

    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(bundle, out)
    fitted: dict[str, Any] = {}
    if decision in ("thresholds", "both"):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            report = calibrate(out, inside, split="val")
        fitted["class_bias"] = report["class_bias"]
        fitted["warning"] = report.get("warning") or next(
            (str(w.message) for w in caught), None)
    if decision in ("min_segment", "both"):
        update_bundle_config(out, min_segment_m=min_segment_m)
        fitted["min_segment_m"] = min_segment_m
    return fitted


def scores(bundle: Path, data: Path) -> dict[str, float]:
    from roadvision.evaluation import evaluate

    m = evaluate(bundle, data, split="test")["metrics"]
    out = {"miou_no_bg": float(m["miou_no_bg"] or 0.0)}
    out.update({k: float(v) for k, v in list(m["per_class_iou"].items())[1:]
                if v is not None})
    return out


def score_decisions(name: str, bundle: Path, work: Path, inside: Path, held: Path,
                    min_segment_m: float, train_s: float = 0.0) -> list[dict[str, Any]]:
    """One row per decision setting, each on its own copy of ``bundle`` under ``work``."""
    rows = []
    for decision in DECISIONS:
        copy = work / f"bundle_{decision}"
        fitted = decide(bundle, copy, decision, inside, min_segment_m)
        rows.append({"training": name, "decision": decision, "fitted": fitted,
                     "in": scores(copy, inside), "held": scores(copy, held),
                     "train_s": train_s})
    return rows


def job(name: str, inside: str, held: str, run_dir: str, cfg_dict: dict, threads: int,
        min_segment_m: float) -> list[dict[str, Any]]:
    from roadvision.training import train

    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    res = train(inside, run_dir, TrainConfig.from_dict(cfg_dict))
    train_s = round(time.perf_counter() - t0, 1)
    return score_decisions(name, res.bundle_dir, Path(run_dir), Path(inside), Path(held),
                           min_segment_m, train_s)


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    from concurrent.futures import ProcessPoolExecutor

    if args.bundle is not None:  # a trained bundle: its decisions only (--inside, --held)
        if args.inside is None or args.held is None:
            raise SystemExit("--bundle needs --inside (with a val and a test split) and --held")
        return score_decisions("given", args.bundle.resolve(), args.work, args.inside.resolve(),
                               args.held.resolve(), args.min_segment_m)
    plan = QUICK if args.quick else FULL
    raw = make_data("lanes", args.work, args.n or plan["n"], plan["size"], args.seed)
    inside, held = split_holdout(raw, args.holdout, args.work / f"{raw.name}_without_"
                                 f"{args.holdout}", args.seed)
    jobs = []
    for name in args.trainings:
        cfg = config(args, TRAININGS[name])
        run_dir = args.work / "runs" / f"thin_{args.holdout}_{name}"
        jobs.append((name, str(inside), str(held), str(run_dir), cfg.to_dict(), args.threads,
                     args.min_segment_m))
    if args.jobs <= 1:
        return [row for j in jobs for row in job(*j)]
    spawn = multiprocessing.get_context("spawn")  # no fork of a process holding torch
    with ProcessPoolExecutor(args.jobs, mp_context=spawn) as pool:
        futures = [pool.submit(job, *j) for j in jobs]
        return [row for f in futures for row in f.result()]


def print_table(rows: list[dict[str, Any]], holdout: str) -> None:
    print(f"\nthin lines (synthetic data), lanes IoU: in-family test | held-out family "
          f"({holdout})")
    classes = [k for k in rows[0]["in"] if k != "miou_no_bg"] if rows else []
    head = " ".join(f"{c[:12]:>12}" for c in ["miou_no_bg", *classes])
    print(f"{'training':9} {'decision':12} {'set':5} {head}")
    for r in rows:
        for where in ("in", "held"):
            vals = " ".join(f"{r[where].get(c, float('nan')):12.3f}"
                            for c in ["miou_no_bg", *classes])
            print(f"{r['training']:9} {r['decision']:12} {where:5} {vals}")
    for r in rows:
        if r["fitted"].get("class_bias") is not None or r["fitted"].get("warning"):
            print(f"  {r['training']}/{r['decision']}: class_bias {r['fitted'].get('class_bias')}"
                  + (f" ({r['fitted']['warning']})" if r["fitted"].get("warning") else ""))


def main(argv: list[str] | None = None) -> None:
    parser = bench_parser("bench_thin_lines", __doc__)
    parser.add_argument("--quick", action="store_true",
                        help="tiny images and models, a few steps (about 3 min): the wiring")
    parser.add_argument("--holdout", default="camera", help="family held out (default camera)")
    parser.add_argument("--trainings", type=lambda s: s.split(","), default=list(TRAININGS),
                        help="comma list of: " + ", ".join(TRAININGS))
    parser.add_argument("--cldice-weight", type=float, default=0.5)
    parser.add_argument("--min-segment-m", type=float, default=1.5,
                        help="short-piece limit in metres for min_segment/both")
    add_common_arguments(parser, samples_help="lanes samples (all families)")
    parser.add_argument("--bundle", type=Path, default=None,
                        help="score this trained lanes bundle's decisions; no training")
    parser.add_argument("--inside", type=Path, default=None,
                        help="with --bundle: in-family data set (val fits, test scores)")
    parser.add_argument("--held", type=Path, default=None,
                        help="with --bundle: held-out family data set (its test split)")
    args = parser.parse_args(argv)
    unknown = [t for t in args.trainings if t not in TRAININGS]
    if unknown:
        raise SystemExit(f"unknown training(s) {unknown}; choose from {sorted(TRAININGS)}")
    where = args.holdout if args.bundle is None else str(args.held)
    run_and_report("thin_lines", args, run, lambda rows: print_table(rows, where))

if __name__ == "__main__":
    main()
