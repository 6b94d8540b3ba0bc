"""ML benchmarks: lanes, roadwork, ablation, student, throughput, pretrained.

    python -m benchmarks.bench_ml throughput          # cheap: our loop vs a bare loop
    python -m benchmarks.bench_ml lanes               # per-class IoU, mIoU w/o background
    python -m benchmarks.bench_ml roadwork            # MCC in-dist / held-out / NATIX, ECE
    python -m benchmarks.bench_ml ablation            # roadwork parts vs the seeds' claims
    python -m benchmarks.bench_ml student             # distilled student: speed-up, metric kept
    python -m benchmarks.bench_ml student --unlabelled 2000  # ... plus an unlabelled pool
    python -m benchmarks.bench_ml pretrained          # imagenet-lite0 vs random init

All run on synthetic ``bench``-size images (``roadvision.data.synth.generate``) split with one
held-out city (test only), on CPU unless CUDA is present. Scores on synthetic data are labelled
synthetic and never compared with published real-data numbers. Each prints its figures;
``--work DIR`` keeps the data and runs (default: a temporary folder).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ROADVISION_QUIET", "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from roadvision.evaluation import calibrate, evaluate  # noqa: E402
from roadvision.metrics import mcc  # noqa: E402
from roadvision.training import TrainConfig, distill, train  # noqa: E402
from roadvision.training.loop import TrainResult  # noqa: E402

# What the seed documents (seeds/004*) claim each roadwork part is worth, in MCC.
CLAIMS = {
    "view_pruning": "-0.5% MCC, 44% speed-up",
    "gated_attention": "+2% MCC",
    "gated_fusion": "+3-4% MCC",
    "metadata": "+2-3% MCC",
    "consistency_loss": "+1-2% MCC (complete loss)",
    "tta": "+1-2% MCC",
}
ABLATIONS: dict[str, dict[str, Any]] = {
    "view_pruning": {"model_overrides": {"view_pruning": False}},
    "gated_attention": {"model_overrides": {"gated_attention": False}},
    "gated_fusion": {"model_overrides": {"gated_fusion": False}},
    "metadata": {"model_overrides": {"use_metadata": False}},
    "consistency_loss": {"loss_weights": {"consistency": 0.0}},
}
ABLATION_EPOCHS = 6  # 6 trainings, 2 at a time, in < 40 min on 2 CPU cores
# The student sees one 128 px view where each teacher sees one 160 px view: ~1.6x fewer encoder
# FLOPs per model (112 px kept only 69 % of the ensemble's MCC after 5 epochs). num_views=1
# because 320 px images would give a 128 px model 5 views (it was then 2x slower, not faster).
STUDENT_OVERRIDES = {"view_size": 128, "num_views": 1}
STUDENT_EPOCHS = 10


def _data(task: str, work: Path, n: int, seed: int = 0) -> tuple[Path, list[str]]:
    """Generate (cached) the bench data set and split it with the last city held out."""
    from roadvision.data.contract import read_manifest
    from roadvision.data.split import split_dataset
    from roadvision.data.synth import generate

    raw, split = work / f"{task}_raw", work / f"{task}_split"
    if not (split / "manifest.parquet").is_file():
        if not (raw / "manifest.parquet").is_file():
            generate(task, n, seed, raw, size="bench")
        cities = sorted(read_manifest(raw)["city"].dropna().unique())
        split_dataset(raw, split, holdout_cities=cities[-1:], seed=seed)
    extra = json.loads((split / "dataset.json").read_text()).get("extra", {})
    # split_dataset records its settings under extra["split"]
    holdout = extra.get("split", {}).get("holdout_cities") or extra.get("holdout_cities") or []
    return split, list(holdout)


# Per-task values on top of the ``bench`` profile (both fit the 40 min budget on 2 CPU cores).
TASK_DEFAULTS: dict[str, dict[str, Any]] = {
    # lanes val (52 tiles) is noisy: patience 4 stopped a 30-epoch run at epoch 11 of 30
    "lanes": {"n": 600, "epochs": 30, "lr": 1e-3, "patience": 8},
    "roadwork": {"n": 1600, "epochs": 10, "lr": 1e-3},
}


def _n(task: str, args: argparse.Namespace) -> int:
    return args.n or TASK_DEFAULTS[task]["n"]


def _cfg(task: str, args: argparse.Namespace, **kw: Any) -> TrainConfig:
    """The ``bench`` profile with ``TASK_DEFAULTS``; command-line knobs (None = keep) then
    ``kw`` win. ``--model-overrides`` / ``--encoder-weights`` merge into the profile's."""
    defaults = {k: v for k, v in TASK_DEFAULTS[task].items() if k != "n"}
    knobs = {"epochs": args.epochs, "seed": args.seed, "preset": args.preset, "lr": args.lr,
             "crop_size": args.crop_size, "patience": args.patience,
             "batch_size": args.train_batch_size, "max_steps_per_epoch": args.max_steps}
    given = {k: v for k, v in knobs.items() if v is not None}
    cfg = TrainConfig.for_profile("bench", task, **{**defaults, **given})
    overrides = json.loads(args.model_overrides) if args.model_overrides else {}
    if args.encoder_weights:
        overrides["encoder_weights"] = args.encoder_weights
    cfg = cfg.replace(model_overrides={**cfg.model_overrides, **overrides})
    return cfg.replace(**kw) if kw else cfg


def _run(data: Path, args: argparse.Namespace, name: str, cfg: TrainConfig) -> TrainResult:
    """``train`` into a folder named by the config's hash: a changed config never resumes an
    older run's checkpoint, an unchanged one reuses it (``--work`` kept between calls)."""
    return _train_worker(data, args.work, name, cfg.to_dict(), torch.get_num_threads())


def _train_worker(data: Path, work: Path, name: str, cfg_dict: dict, threads: int
                  ) -> TrainResult:
    torch.set_num_threads(threads)
    cfg = TrainConfig.from_dict(cfg_dict)
    return train(data, work / f"{name}_{_tag(cfg)}", cfg)


def _tag(cfg: TrainConfig) -> str:
    import hashlib

    return hashlib.sha256(cfg.to_json().encode()).hexdigest()[:8]


def _run_many(data: Path, args: argparse.Namespace, runs: dict[str, TrainConfig]
              ) -> dict[str, TrainResult]:
    """Train several configs, ``--jobs`` at a time, each in its own process with ``--threads``
    threads: on 2 cores two 1-thread runs finish in about the time of one (see throughput)."""
    return _in_processes(args.jobs, {name: (_train_worker, (data, args.work, name,
                                                            cfg.to_dict(), args.threads))
                                     for name, cfg in runs.items()})


def _in_processes(jobs: int, calls: dict[str, tuple[Any, tuple]]) -> dict[str, Any]:
    """``{name: fn(*fn_args)}`` for ``calls = {name: (fn, fn_args)}``, ``jobs`` at a time in
    spawned processes (no fork of a process holding torch threads); in this process when
    there is one job or one call."""
    from concurrent.futures import ProcessPoolExecutor

    if jobs <= 1 or len(calls) == 1:
        return {name: fn(*fn_args) for name, (fn, fn_args) in calls.items()}
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(min(jobs, len(calls)), mp_context=spawn) as pool:
        futures = {name: pool.submit(fn, *fn_args) for name, (fn, fn_args) in calls.items()}
        return {name: future.result() for name, future in futures.items()}


def _distill_worker(teachers: list[Path], data: Path, out_dir: Path, cfg_dict: dict,
                    threads: int) -> tuple[TrainResult, float]:
    """One distillation arm and its wall seconds (in its own process under ``--jobs``)."""
    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    result = distill(teachers, data, out_dir, TrainConfig.from_dict(cfg_dict))
    return result, time.perf_counter() - t0


def _paired_bootstrap(a: pd.DataFrame, b: pd.DataFrame, repeats: int = 2000,
                      seed: int = 0) -> tuple[float, float]:
    """95 % interval of MCC(a) - MCC(b) over test images resampled jointly (same ids)."""
    joined = a.merge(b, on="id", suffixes=("_a", "_b"))
    label = joined["label_a"].to_numpy().astype(int)
    pa, pb = joined["pred_a"].to_numpy().astype(int), joined["pred_b"].to_numpy().astype(int)
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(repeats):
        idx = rng.integers(0, len(label), len(label))
        diffs.append(mcc(label[idx], pa[idx]) - mcc(label[idx], pb[idx]))
    lo, hi = np.percentile(diffs, [2.5, 97.5])
    return float(lo), float(hi)


def _split_mcc(preds: pd.DataFrame, holdout: list[str]) -> tuple[float, float, int, int]:
    held = preds["city"].astype(str).str.lower().isin([h.lower() for h in holdout]).to_numpy()
    ind = preds[~held]
    out = preds[held]
    return (mcc(ind["label"], ind["pred"]), mcc(out["label"], out["pred"]), len(ind), len(out))


def bench_lanes(args: argparse.Namespace) -> dict:
    data, holdout = _data("lanes", args.work, _n("lanes", args))
    cfg = _cfg("lanes", args)
    res = _run(data, args, "lanes_run", cfg)
    ev = evaluate(res.bundle_dir, data, split="test", out_dir=res.bundle_dir.parent / "eval")
    ev_tta = evaluate(res.bundle_dir, data, split="test", tta="flip")
    print(f"lanes ({len(holdout)} held-out city: {holdout}), test n={ev['n']}, {cfg.preset}, "
          f"{len(res.history)} epochs (best {res.best_epoch}, val mIoU w/o bg "
          f"{res.best_metric:.4f}), crop {cfg.crop_size}, lr {cfg.lr}")
    for name, iou in ev["metrics"]["per_class_iou"].items():
        print(f"  IoU {name:14s} {iou if iou is None else round(iou, 4)}")
    print(f"  mIoU without background {ev['metrics']['miou_no_bg']:.4f} (with: "
          f"{ev['metrics']['miou']:.4f}); flip TTA: {ev_tta['headline']:.4f}")
    by_city = {k: round(v["miou_no_bg"] or 0, 3) for k, v in ev["slices"]["city"].items()}
    print(f"  slices by city: {by_city}")
    return {"per_class_iou": ev["metrics"]["per_class_iou"], "miou_no_bg": ev["headline"],
            "miou_no_bg_flip_tta": ev_tta["headline"], "epochs_run": len(res.history)}


def bench_roadwork(args: argparse.Namespace) -> dict:
    data, holdout = _data("roadwork", args.work, _n("roadwork", args))
    cfg = _cfg("roadwork", args)
    res = _run(data, args, "roadwork_run", cfg)
    print(f"roadwork {cfg.preset}: {len(res.history)} epochs (best {res.best_epoch}, val MCC "
          f"{res.best_metric:.4f})")
    before = evaluate(res.bundle_dir, data, split="test",
                      out_dir=res.bundle_dir.parent / "eval_raw")
    cal = calibrate(res.bundle_dir, data, split="val")
    after = evaluate(res.bundle_dir, data, split="test", out_dir=res.bundle_dir.parent / "eval")
    natix = evaluate(res.bundle_dir, data, split="test", protocol="natix")
    preds = pd.read_parquet(res.bundle_dir.parent / "eval" / "predictions.parquet")
    m_in, m_out, n_in, n_out = _split_mcc(preds, holdout)
    print(f"roadwork, test n={after['n']} (held-out city {holdout})")
    print(f"  MCC@0.5 in-distribution {m_in:.4f} (n={n_in}), held-out cities {m_out:.4f} "
          f"(n={n_out}), all {after['headline']:.4f}, NATIX protocol {natix['headline']:.4f}")
    levels = {k: round(v["mcc"], 3) for k, v in natix["slices"]["natix_level"].items()}
    print(f"  NATIX by level: {levels}")
    print(f"  ECE test before calibration {before['metrics']['ece']:.4f} -> after "
          f"{after['metrics']['ece']:.4f}; val MCC {cal['mcc_before']:.4f} -> "
          f"{cal['mcc_after']:.4f}"
          f" (T={cal['temperature']:.3f}, bias={cal['logit_bias']:.3f})")
    return {"mcc_in_distribution": m_in, "mcc_heldout": m_out, "mcc_all": after["headline"],
            "mcc_natix": natix["headline"], "ece_before": before["metrics"]["ece"],
            "ece_after": after["metrics"]["ece"]}


def _latency(bundle: Path, data: Path, repeats: int = 3) -> float:
    """Seconds per image of plain inference over the test split (best of ``repeats``)."""
    from roadvision.models.bundle import load_bundle
    from roadvision.runtime.dataset import ManifestDataset
    from roadvision.runtime.inference import predict_dataset
    from roadvision.runtime.readers import load_rows

    model = load_bundle(bundle)
    ds = ManifestDataset(data, load_rows(data, ["test"]), model.cfg)
    samples = [ds[i] for i in range(min(64, len(ds)))]

    class _Fixed:  # pre-loaded samples: time the model, not the JPEG decoder
        def __len__(self):
            return len(samples)

        def __getitem__(self, i):
            return dict(samples[i])

    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        list(predict_dataset(model, _Fixed(), batch_size=16))
        best = min(best, time.perf_counter() - t0)
    return best / len(samples)


def _calibrated_predictions(run: TrainResult, data: Path, tta: str = "none"
                            ) -> tuple[float, pd.DataFrame]:
    """Calibrate on val, evaluate on test: (MCC@0.5, per-image predictions)."""
    if tta == "none":
        calibrate(run.bundle_dir, data, split="val")
    out = run.bundle_dir.parent / f"eval_tta_{tta}"
    ev = evaluate(run.bundle_dir, data, split="test", tta=tta, out_dir=out)
    return ev["headline"], pd.read_parquet(out / "predictions.parquet")


def bench_ablation(args: argparse.Namespace) -> dict:
    """Train the full model and one model without each part (``--jobs`` at a time); gain =
    MCC with - MCC without, with a paired bootstrap 95 % interval over the test images."""
    data, _ = _data("roadwork", args.work, _n("roadwork", args))
    base = _cfg("roadwork", args, epochs=args.epochs or ABLATION_EPOCHS)
    runs = {"abl_full": base}
    for name, change in ABLATIONS.items():
        runs[f"abl_no_{name}"] = base.replace(
            model_overrides={**base.model_overrides, **change.get("model_overrides", {})},
            loss_weights={**base.loss_weights, **change.get("loss_weights", {})})
    t0 = time.perf_counter()
    results = _run_many(data, args, runs)
    train_s = time.perf_counter() - t0
    full, full_preds = _calibrated_predictions(results["abl_full"], data)
    t_full = _latency(results["abl_full"].bundle_dir, data)
    rows = {"(full model)": (full, 0.0, (0.0, 0.0), "")}
    for name in ABLATIONS:
        run = results[f"abl_no_{name}"]
        score, preds = _calibrated_predictions(run, data)
        note = f"best epoch {run.best_epoch}"
        if name == "view_pruning":
            slower = _latency(run.bundle_dir, data) / t_full - 1
            note += f"; latency without pruning {slower:+.0%}"
        rows[name] = (score, full - score, _paired_bootstrap(full_preds, preds), note)
    tta_score, tta_preds = _calibrated_predictions(results["abl_full"], data, tta="full")
    rows["tta"] = (tta_score, tta_score - full, _paired_bootstrap(tta_preds, full_preds),
                   "MCC of the full model WITH full TTA; gain = TTA - none")
    print(f"roadwork ablation: {base.preset} {base.model_overrides}, {base.epochs} epochs, "
          f"n={_n('roadwork', args)}, {len(runs)} trainings in {train_s:.0f} s "
          f"({args.jobs} at a time); test MCC@0.5 after calibration on val; gain = with - "
          f"without, [paired bootstrap 95 % interval]")
    if _views_per_image(data, results["abl_full"].bundle_dir) == 1:
        print("  NOTE: these images give the model ONE view (longer side <= 2 x view_size), so "
              "view pruning, gated fusion and the consistency loss have nothing to act on: "
              "their rows differ from the full model only by initialisation and random "
              "draws, i.e. they show the run-to-run noise")
    print(f"  {'part':18s} {'MCC w/o part':>12s} {'measured gain':>14s} {'95 % interval':>18s}"
          f"  claimed gain (seeds)")
    for name, (score, gain, (lo, hi), note) in rows.items():
        print(f"  {name:18s} {score:12.4f} {gain:+14.4f} [{lo:+.3f}, {hi:+.3f}]"
              f"  {CLAIMS.get(name, '')}  ({note})")
    return {k: {"mcc": v[0], "gain": v[1], "ci95": v[2]} for k, v in rows.items()}


def _views_per_image(data: Path, bundle: Path) -> int:
    """Views the bundle's model cuts from the data set's largest image (1 = global view only)."""
    from roadvision.data.contract import read_manifest
    from roadvision.data.multiview import view_count
    from roadvision.models.bundle import read_bundle_config

    manifest = read_manifest(data)
    model_cfg = read_bundle_config(bundle)["model_config"]
    return view_count(int(manifest["width"].max()), int(manifest["height"].max()),
                      model_cfg["view_size"], model_cfg["num_views"])


# --quick: a smoke run of the whole student benchmark in under 3 min on 2 CPU cores. Its
# figures (random-ish 2-epoch models on 64 px views) show the wiring, not the method.
QUICK = {"n": 160, "epochs": 2, "max_steps": 4, "student_epochs": 2, "unlabelled": 48,
         "model_overrides": '{"view_size": 64, "num_views": 1}'}  # 1 view, as the students
QUICK_STUDENT_VIEW = 48
POOL_SEED = 1_000_003  # the labelled bench data uses seed 0: the pool must not repeat it


def bench_student(args: argparse.Namespace) -> dict:
    """Ensemble of ``--members`` bench models (member 0 is the ``roadwork`` benchmark's run,
    reused from ``--work``) distilled into ``--student-preset`` with ``STUDENT_OVERRIDES``, on
    the labelled train split alone and, with ``--unlabelled N``, plus N unlabelled generated
    images of every scene family (soft targets only)."""
    data, _ = _data("roadwork", args.work, _n("roadwork", args))
    cfg = _cfg("roadwork", args)
    # members differ in seed, augmentation strength, learning rate and stochastic depth
    members = {}
    for k in range(args.members):
        change = {} if k == 0 else {
            "seed": args.seed + k, "augment": ("heavy", "light")[k % 2],
            "lr": cfg.lr * (0.7, 1.4)[k % 2],
            "model_overrides": {**cfg.model_overrides, "drop_path_rate": 0.1}}
        members["roadwork_run" if k == 0 else f"teacher_{k}"] = cfg.replace(**change)
    teachers = [r.bundle_dir for r in _run_many(data, args, members).values()]
    teacher_scores = []
    for t in teachers:
        calibrate(t, data, split="val")
        teacher_scores.append(evaluate(t, data, split="test")["headline"])
    ens = _ensemble_mcc(teachers, data)
    overrides = {**STUDENT_OVERRIDES, **({"view_size": QUICK_STUDENT_VIEW} if args.quick else {})}
    # --student-seed varies the student alone (its init, batches and augmentation) over the
    # same members: a second student seed costs one distillation, not the ensemble's hour
    student_seed = args.seed if args.student_seed is None else args.student_seed
    student_cfg = cfg.replace(preset=args.student_preset, model_overrides=overrides,
                              epochs=args.student_epochs, distill_targets=args.distill_targets,
                              seed=student_seed)
    arms = {"labelled only": student_cfg}
    if args.unlabelled:
        pool = (f"synth://roadwork?n={args.unlabelled}&size=bench&seed={POOL_SEED}"
                "&family=all")
        arms[f"+ pool of {args.unlabelled}"] = student_cfg.replace(distill_unlabelled=pool)
    # the teachers' run folders are named by their configs' hashes: a student of other teachers
    # must not resume this one's checkpoint
    by = hashlib.sha256("|".join(t.parent.name for t in teachers).encode()).hexdigest()[:8]
    # the arms are independent: under --jobs they distil side by side, one process each
    calls = {name: (_distill_worker, (teachers, data,
                                      args.work / f"student_{_tag(arm_cfg)}_{by}",
                                      arm_cfg.to_dict(), args.threads))
             for name, arm_cfg in arms.items()}
    done = _in_processes(args.jobs, calls)
    students = {}
    for name, (st, seconds) in done.items():
        calibrate(st.bundle_dir, data, split="val")
        score = evaluate(st.bundle_dir, data, split="test")["headline"]
        per_epoch = statistics.median(h["train_seconds"] for h in st.history)
        students[name] = {"bundle": st.bundle_dir, "mcc": score, "seconds": seconds,
                          "train_seconds_per_epoch": per_epoch, "epochs": len(st.history)}
    speed = _images_per_second([*teachers, *(s["bundle"] for s in students.values())], data)
    ens_ips = 1.0 / sum(1.0 / speed[str(t)] for t in teachers)  # every member runs per image
    smoke = " [--quick: smoke run]" if args.quick else ""
    print(f"student: ensemble of {len(teachers)} x {cfg.preset} {cfg.model_overrides} -> "
          f"{args.student_preset} {overrides}, seed {student_seed} ({student_cfg.epochs} epochs "
          f"of distillation, teacher targets {args.distill_targets}){smoke}")
    print(f"  members MCC {[round(s, 4) for s in teacher_scores]}, ensemble MCC {ens:.4f} "
          f"({ens_ips:.1f} images/s)")
    figures: dict[str, Any] = {"member_mcc": teacher_scores, "ensemble_mcc": ens,
                               "ensemble_images_per_s": ens_ips, "students": {}}
    for name, s in students.items():
        ips = speed[str(s["bundle"])]
        kept = s["mcc"] / ens if ens > 0 else float("nan")  # a share of nothing means nothing
        print(f"  student, {name:18s} MCC {s['mcc']:.4f} (kept {kept:.1%}), {ips:.1f} images/s "
              f"({ips / ens_ips:.2f}x the ensemble); distillation {s['seconds']:.0f} s, "
              f"{s['train_seconds_per_epoch']:.1f} s per epoch")
        figures["students"][name] = {"mcc": s["mcc"], "kept": kept, "images_per_s": ips,
                                     "speedup": ips / ens_ips, "seconds": s["seconds"],
                                     "train_seconds_per_epoch": s["train_seconds_per_epoch"]}
    first = figures["students"]["labelled only"]  # the earlier figures' names
    figures.update(student_mcc=first["mcc"], kept=first["kept"], speedup=first["speedup"])
    return figures


def _images_per_second(bundles: list[Path], data: Path, rounds: int = 3, n: int = 48
                       ) -> dict[str, float]:
    """Plain-inference images/s of each bundle on the same pre-loaded test images (batch 16),
    measured side by side: every round times every model once, in turn, so load from other
    work on the machine falls on all of them alike; the best round counts."""
    from roadvision.models.bundle import load_bundle
    from roadvision.runtime.dataset import ManifestDataset
    from roadvision.runtime.inference import predict_dataset
    from roadvision.runtime.readers import load_rows

    rows = load_rows(data, ["test"])
    models, inputs = {}, {}
    for b in bundles:
        model = load_bundle(b)
        ds = ManifestDataset(data, rows, model.cfg)
        models[str(b)], inputs[str(b)] = model, [ds[i] for i in range(min(n, len(ds)))]

    class _Fixed:  # pre-loaded samples: time the model, not the JPEG decoder
        def __init__(self, samples: list[dict]) -> None:
            self.samples = samples

        def __len__(self) -> int:
            return len(self.samples)

        def __getitem__(self, i: int) -> dict:
            return dict(self.samples[i])

    best = {k: float("inf") for k in models}
    for _ in range(rounds):
        for k, model in models.items():
            t0 = time.perf_counter()
            list(predict_dataset(model, _Fixed(inputs[k]), batch_size=16))
            best[k] = min(best[k], time.perf_counter() - t0)
    return {k: len(inputs[k]) / best[k] for k in models}


def _ensemble_mcc(bundles: list[Path], data: Path) -> float:
    from roadvision.models.bundle import load_bundle
    from roadvision.runtime.dataset import ManifestDataset
    from roadvision.runtime.inference import predict_dataset
    from roadvision.runtime.readers import load_rows

    rows = load_rows(data, ["test"])
    probs = []
    for b in bundles:
        model = load_bundle(b)
        ds = ManifestDataset(data, rows, model.cfg)
        probs.append([r["prob"] for r in predict_dataset(model, ds, batch_size=16)])
    p = np.mean(probs, axis=0)
    return mcc(rows["label"].to_numpy().astype(int), (p >= 0.5).astype(int))


def bench_pretrained(args: argparse.Namespace) -> dict:
    task = args.task
    data, _ = _data(task, args.work, _n(task, args))
    out = {}
    for weights in ("random", "imagenet-lite0"):
        # imagenet-lite0 is the *_small presets' default: no override, so that a `lanes` /
        # `roadwork` run with the same flags (same config hash) is reused from --work
        cfg = _cfg(task, args, preset=f"{task}_small")
        if weights != "imagenet-lite0":
            cfg = cfg.replace(model_overrides={**cfg.model_overrides, "encoder_weights": weights})
        run = _run(data, args, f"{task}_run", cfg)
        if task == "roadwork":
            calibrate(run.bundle_dir, data, split="val")
        out[weights] = evaluate(run.bundle_dir, data, split="test")["headline"]
        out[f"{weights}_epochs"] = len(run.history)
    print(f"pretrained ({task}_small, {cfg.epochs} epochs max, crop {cfg.crop_size}): random "
          f"init {out['random']:.4f}, "
          f"imagenet-lite0 {out['imagenet-lite0']:.4f}, gain "
          f"{out['imagenet-lite0'] - out['random']:+.4f}")
    return out


def bench_throughput(args: argparse.Namespace) -> dict:
    """Training steps/s of ``fit`` vs a bare PyTorch loop: same model, same batch size, one run.

    Both run forward + loss + backward + clip + AdamW step on ``--steps`` batches. Ours also
    reads and prepares its samples (PNG decode, lane crop, no augmentation) and steps the
    scheduler; the bare loop reuses one pre-built batch. Validation is excluded from our time.
    One untimed warm-up run of each goes first (oneDNN builds its kernels on the first step of
    a shape, which the first timed loop would otherwise pay alone), then ours and bare
    alternate, and ratios are paired per repetition.

    Threads: with torch's default of one intra-op thread per core, every operator waits at an
    OpenMP barrier for all its threads; on a 2-core machine that other processes also load, one
    thread is often descheduled and single steps take 0.05-3.5 s instead of 0.06 s (measured),
    so the old ratio (0.40) was noise from whichever loop got preempted. ``--threads 1`` (the
    default of this script) removes that; both loops always run with the same setting.
    """
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from _training import make_lanes, make_roadwork

    from roadvision.models import create_model
    from roadvision.models.losses import create_loss
    from roadvision.models.preprocess import collate
    from roadvision.runtime.readers import load_rows
    from roadvision.training.datasets import TrainingDataset

    task, bs, steps = args.task, args.batch_size, args.steps
    n = bs * steps
    if task == "roadwork":
        splits = ["train"] * n + ["val"] * bs
        data = make_roadwork(args.work / "tp_data", n=n + bs, size=args.size, splits=splits)
    else:  # make_lanes puts 60 % of the rows in train: make that at least ``steps`` batches
        data = make_lanes(args.work / "tp_data", n=-(-n * 5 // 3) + bs, size=args.size)
    preset = f"{task}_tiny"
    cfg = TrainConfig(task=task, preset=preset, epochs=1, batch_size=bs, augment="none",
                      use_weights=False, warmup_epochs=0.0, patience=0, deterministic=False,
                      max_steps_per_epoch=steps, crop_size=args.size)

    def run_ours(tag: str) -> dict:
        torch.manual_seed(0)
        return train(data, args.work / f"tp_run_{tag}", cfg).history[-1]

    def run_bare(with_data: bool = False) -> float:
        """Bare loop on one pre-built batch, or (``with_data``) fed by a plain DataLoader."""
        torch.manual_seed(0)
        model = create_model(preset)
        rows = load_rows(data, ["train"])
        ds = TrainingDataset(data, rows, model.cfg, augment="none", crop_size=args.size)
        batch = collate([ds[i] for i in range(bs)])
        loss_fn = create_loss(task)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        model.train()
        loader = torch.utils.data.DataLoader(ds, batch_size=bs, shuffle=True, collate_fn=collate)
        t0 = time.perf_counter()
        for _, fed in zip(range(steps), loader if with_data else [batch] * steps, strict=False):
            out = model(fed)
            loss, _ = loss_fn(out, fed)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
        return steps / (time.perf_counter() - t0)

    run_ours("warmup")
    run_bare()
    ours, ours_compute, bare, bare_data = [], [], [], []
    for rep in range(args.repeats):
        h = run_ours(str(rep))
        ours.append(h["train_steps"] / h["train_seconds"])
        ours_compute.append(h["train_steps"] / (h["train_seconds"] - h["data_seconds"]))
        bare.append(run_bare())
        bare_data.append(run_bare(with_data=True))
    # paired per repetition (ours then bare, back to back): the machine's load drifts
    ratio = statistics.median(o / b for o, b in zip(ours, bare, strict=True))
    ratio_c = statistics.median(o / b for o, b in zip(ours_compute, bare, strict=True))
    o, oc, b = statistics.median(ours), statistics.median(ours_compute), statistics.median(bare)
    print(f"throughput ({preset}, batch {bs}, {args.size}px, {steps} steps, median of "
          f"{args.repeats} after a warm-up, torch threads {torch.get_num_threads()}, "
          f"num_workers 0): bare {b:.2f} steps/s; ours {o:.2f} steps/s incl. data loading "
          f"(paired ratio {ratio:.3f}), {oc:.2f} steps/s excl. time waiting for data (paired "
          f"ratio {ratio_c:.3f})")
    pairs = [round(x / y, 3) for x, y in zip(ours, bare, strict=True)]
    print(f"  per repetition ours/bare: {pairs}")
    ratio_d = statistics.median(o / b for o, b in zip(ours, bare_data, strict=True))
    print(f"  bare loop fed by a plain DataLoader over the same dataset (same decoding and "
          f"crop): {statistics.median(bare_data):.2f} steps/s; ours / that: {ratio_d:.3f}")
    return {"bare_with_data_steps_per_s": statistics.median(bare_data),
            "ratio_vs_bare_with_data": ratio_d, "ours_steps_per_s": o,
            "ours_steps_per_s_excl_data": oc, "bare_steps_per_s": b,
            "ratio": ratio, "ratio_excl_data": ratio_c, "threads": torch.get_num_threads()}


COMMANDS = {"lanes": bench_lanes, "roadwork": bench_roadwork, "ablation": bench_ablation,
            "student": bench_student, "throughput": bench_throughput,
            "pretrained": bench_pretrained}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_ml", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=sorted(COMMANDS))
    parser.add_argument("--work", type=Path, default=None, help="keep data and runs here")
    parser.add_argument("--n", type=int, default=None,
                        help="bench data set size (default: TASK_DEFAULTS)")
    parser.add_argument("--epochs", type=int, default=None, help="default: the bench profile's")
    parser.add_argument("--preset", default=None, help="model preset (default: <task>_small)")
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--crop-size", type=int, default=None, help="lanes training crop")
    parser.add_argument("--patience", type=int, default=None)
    parser.add_argument("--train-batch-size", type=int, default=None)
    parser.add_argument("--max-steps", type=int, default=None, help="cap batches per epoch")
    parser.add_argument("--encoder-weights", default=None, help="random / imagenet-lite0 / file")
    parser.add_argument("--model-overrides", default=None,
                        help='ModelConfig fields as JSON, e.g. \'{"view_size": 64}\'')
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (1: see bench_throughput's docstring)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--task", choices=("lanes", "roadwork"), default="roadwork",
                        help="throughput / pretrained: which task")
    parser.add_argument("--members", type=int, default=2, help="student: ensemble size")
    parser.add_argument("--student-preset", default="roadwork_student")
    parser.add_argument("--student-seed", type=int, default=None,
                        help="student: its own seed (default --seed); the members keep theirs")
    parser.add_argument("--student-epochs", type=int, default=STUDENT_EPOCHS,
                        help="student: distillation epochs (each runs every teacher too)")
    parser.add_argument("--unlabelled", type=int, default=None,
                        help="student: also distil with N unlabelled generated images (all "
                             "scene families, soft targets only); 0 = labelled only")
    parser.add_argument("--distill-targets", choices=("auto", "cache", "online"),
                        default="auto", help="student: teacher targets cached or on the fly")
    parser.add_argument("--quick", action="store_true",
                        help="student: a < 3 min smoke run (QUICK; figures are not results)")
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1),
                        help="ablation / student: trainings at a time, one process each")
    parser.add_argument("--steps", type=int, default=30, help="throughput: steps per run")
    parser.add_argument("--batch-size", type=int, default=16, help="throughput: batch size")
    parser.add_argument("--size", type=int, default=64, help="throughput: image side")
    parser.add_argument("--repeats", type=int, default=3, help="throughput: repetitions")
    parser.add_argument("--json", type=Path, default=None, help="also write figures here")
    args = parser.parse_args(argv)
    if args.quick:  # QUICK fills what the command line left unset
        for key, value in QUICK.items():
            if getattr(args, key) in (None, STUDENT_EPOCHS):
                setattr(args, key, value)
    args.unlabelled = args.unlabelled or 0
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        args.work = (args.work or Path(tmp)).resolve()
        args.work.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        figures = COMMANDS[args.command](args)
        print(f"({args.command} took {time.perf_counter() - t0:.0f} s)")
        if args.json:
            args.json.write_text(json.dumps(figures, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
