"""Cross-domain benchmark (issue 13): train on all scene families but one, score the one left out.

    python -m benchmarks.bench_cross_domain --quick          # tiny images, 1 epoch: the wiring
    python -m benchmarks.bench_cross_domain --task lanes --holdout camera \\
        --variants baseline,appearance,balance,freeze,all      # the effect of each switch

For each task and each held-out family the generator's data (``family=all``) are split into
the other families' train/val/test and the held-out family's rows; one model per variant trains
on the first, and the table gives the in-family test score beside the held-out family's score
and their ratio (goal: >= 0.9). Lanes: mIoU without background; roadwork: MCC at 0.5 and AUROC.
A variant switches the shortcut-resistant training on or off: ``appearance`` (all strong
appearance groups) or one group alone (``colour``, ``style``, ``noise``, ``blur``, ``jpeg``),
``balance`` (family-interleaved batches), ``freeze`` (encoder frozen, then unfrozen stage by
stage), ``all`` (everything). Scores are on synthetic data and labelled so.
"""

from __future__ import annotations

import argparse
import hashlib
import multiprocessing
import os
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ROADVISION_QUIET", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks._runner import add_common_arguments, bench_parser, run_and_report  # noqa: E402
from roadvision.data.augment import APPEARANCE  # noqa: E402
from roadvision.training import TrainConfig, train  # noqa: E402

TASKS = ("lanes", "roadwork")


def variants(freeze: int, unfreeze: int) -> dict[str, dict[str, Any]]:
    """Variant name -> TrainConfig changes over the baseline."""
    out: dict[str, dict[str, Any]] = {"baseline": {}}
    out.update({g: {"appearance": [g]} for g in APPEARANCE})
    out["appearance"] = {"appearance": list(APPEARANCE)}
    out["balance"] = {"balance_families": True}
    out["freeze"] = {"freeze_encoder_epochs": freeze, "unfreeze_epochs": unfreeze}
    out["all"] = {**out["appearance"], **out["balance"], **out["freeze"]}
    return out


# --quick: tiny random-init models on tiny images, one short epoch: checks the wiring only.
QUICK = {"n": 60, "size": "tiny", "profile": "tiny", "epochs": 1, "holdout": ["camera"],
         "variants": ["baseline", "all"]}
# The full run: bench-size images and the bench profile's ImageNet Lite0 presets; sized from
# bench_ml's timings (about 0.13 s per lanes and 0.08 s per roadwork training image on one
# core) to stay under 40 min on 2 cores with two trainings at a time.
FULL = {"n": {"lanes": 600, "roadwork": 1000}, "size": "bench", "profile": "bench",
        "epochs": {"lanes": 12, "roadwork": 8}, "holdout": ["camera"],
        "variants": ["baseline", "all"]}


def make_data(task: str, work: Path, n: int, size: str, seed: int) -> Path:
    """The generator's data over every family (cached in ``work``)."""
    from roadvision.data.synth import generate

    raw = work / f"{task}_all_{size}_{n}_s{seed}"
    if not (raw / "manifest.parquet").is_file():
        generate(task, n, seed, raw, size=size, family="all")
    return raw


def split_holdout(raw: Path, family: str, out: Path, seed: int) -> tuple[Path, Path]:
    """``out/in``: the other families as train/val/test (70/15/15); ``out/held``: the held-out
    family's rows as its test split. Images are hard links (no copy, no symlink)."""
    from roadvision.data.contract import read_info, read_manifest, write_dataset

    df = read_manifest(raw)
    info = read_info(raw)
    if family not in set(df["family"].dropna()):
        raise SystemExit(f"family {family!r} is not in {raw}")
    rng = np.random.default_rng(seed)
    inside = df[df["family"] != family].reset_index(drop=True)
    draw = rng.random(len(inside))
    inside["split"] = np.where(draw < 0.7, "train", np.where(draw < 0.85, "val", "test"))
    held = df[df["family"] == family].reset_index(drop=True)
    held["split"] = "test"
    folders = []
    for name, rows in (("in", inside), ("held", held)):
        folder = out / name
        if not (folder / "manifest.parquet").is_file():
            for column in ("image", "mask"):
                for rel in rows[column].dropna():
                    dst = folder / rel
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    if not dst.exists():
                        os.link(raw / rel, dst)
            info.extra = {**info.extra, "holdout_family": family}
            write_dataset(folder, rows, info)
        folders.append(folder)
    return folders[0], folders[1]


def _scores(bundle: Path, data: Path, task: str) -> dict[str, float]:
    from roadvision.evaluation import evaluate

    ev = evaluate(bundle, data, split="test")
    if task == "lanes":
        return {"miou_no_bg": float(ev["headline"])}
    return {"mcc": float(ev["metrics"]["mcc"]), "auroc": float(ev["metrics"]["auroc"])}


def _job(task: str, inside: str, held: str, run_dir: str, cfg_dict: dict, threads: int
         ) -> dict[str, Any]:
    torch.set_num_threads(threads)
    cfg = TrainConfig.from_dict(cfg_dict)
    t0 = time.perf_counter()
    res = train(inside, run_dir, cfg)
    seconds = time.perf_counter() - t0
    return {"in": _scores(res.bundle_dir, Path(inside), task),
            "held": _scores(res.bundle_dir, Path(held), task), "train_s": round(seconds, 1)}


def _config(task: str, args: argparse.Namespace, changes: dict[str, Any]) -> TrainConfig:
    plan = QUICK if args.quick else FULL
    epochs = args.epochs or (plan["epochs"] if isinstance(plan["epochs"], int)
                             else plan["epochs"][task])
    kw: dict[str, Any] = {"epochs": epochs, "seed": args.seed, "patience": 0}
    if plan["profile"] == "bench":
        kw["model_overrides"] = {"view_size": 160} if task == "roadwork" else {}
        kw["crop_size"] = 128 if task == "lanes" else None
    if args.max_steps:
        kw["max_steps_per_epoch"] = args.max_steps
    return TrainConfig.for_profile(plan["profile"], task, **kw).replace(**changes)


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    from concurrent.futures import ProcessPoolExecutor

    plan = QUICK if args.quick else FULL
    table = variants(args.freeze_epochs, args.unfreeze_epochs)
    names = args.variants or plan["variants"]
    unknown = [v for v in names if v not in table]
    if unknown:
        raise SystemExit(f"unknown variant(s) {unknown}; choose from {sorted(table)}")
    jobs = []
    for task in args.task:
        n = args.n or (plan["n"] if isinstance(plan["n"], int) else plan["n"][task])
        raw = make_data(task, args.work, n, plan["size"], args.seed)
        for family in args.holdout or plan["holdout"]:
            inside, held = split_holdout(raw, family, args.work / f"{raw.name}_without_{family}",
                                         args.seed)
            for name in names:
                cfg = _config(task, args, table[name])
                tag = hashlib.sha256(cfg.to_json().encode()).hexdigest()[:8]
                run_dir = args.work / "runs" / f"{task}_{family}_{name}_{tag}"
                jobs.append(({"task": task, "holdout": family, "variant": name},
                             (task, str(inside), str(held), str(run_dir), cfg.to_dict(),
                              args.threads)))
    rows = []
    if args.jobs <= 1:
        for key, job in jobs:
            rows.append({**key, **_job(*job)})
    else:
        spawn = multiprocessing.get_context("spawn")  # no fork of a process holding torch
        with ProcessPoolExecutor(args.jobs, mp_context=spawn) as pool:
            futures = [(key, pool.submit(_job, *job)) for key, job in jobs]
            rows = [{**key, **f.result()} for key, f in futures]
    return rows


def print_table(rows: list[dict[str, Any]]) -> None:
    print("\ncross-domain (synthetic data): in-family test vs the held-out family")
    print(f"{'task':9} {'held out':11} {'variant':11} {'metric':11} {'in-family':>9} "
          f"{'held-out':>9} {'ratio':>6} {'train s':>8}")
    for r in rows:
        for metric, value in r["in"].items():
            held = r["held"][metric]
            ratio = held / value if value > 0 else float("nan")
            print(f"{r['task']:9} {r['holdout']:11} {r['variant']:11} {metric:11} "
                  f"{value:9.3f} {held:9.3f} {ratio:6.2f} {r['train_s']:8.0f}")


def main(argv: list[str] | None = None) -> None:
    parser = bench_parser("bench_cross_domain", __doc__)
    parser.add_argument("--quick", action="store_true",
                        help="tiny images and models, 1 epoch (a few minutes): the wiring")
    parser.add_argument("--task", nargs="+", choices=TASKS, default=list(TASKS))
    parser.add_argument("--holdout", nargs="+", default=None,
                        help="families to hold out, one run each (default: camera)")
    parser.add_argument("--variants", type=lambda s: s.split(","), default=None,
                        help="comma list: baseline, colour, style, noise, blur, jpeg, "
                             "appearance, balance, freeze, all (default: baseline,all)")
    parser.add_argument("--freeze-epochs", type=int, default=1)
    parser.add_argument("--unfreeze-epochs", type=int, default=2)
    add_common_arguments(parser, samples_help="samples per task (all families)")
    run_and_report("cross_domain", parser.parse_args(argv), run, print_table)

if __name__ == "__main__":
    main()
