"""``roadvision train | calibrate | evaluate | analyze | distill``: the ML core on the command line.

Each command works over a data set folder (the data contract) and a model bundle folder
(``config.json`` + ``weights.safetensors``). Training and distillation start from a training
profile of ``roadvision.training.PROFILES`` (``tiny`` for tests, ``bench`` for the benchmarks,
``demo``, ``full`` for GPU nodes) and train a model preset (``roadvision.models``, e.g.
``roadwork_small``); options and ``--set KEY=VALUE`` override the profile's fields. A run
folder that holds a checkpoint resumes from it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import typer

from roadvision.cli._options import make_console, parse_sets
from roadvision.components.run_params import TRAINING_PROFILES, TTA_MODES
from roadvision.errors import UserError

console = make_console()

# Choices: a bad value fails at parsing, naming the valid ones.
TrainingProfile = Literal[TRAINING_PROFILES]
Tta = Literal[TTA_MODES]
Split = Literal["train", "val", "test"]
Protocol = Literal["natix"]

_PROFILE_HELP = "training profile (epochs, batch, lr...)"
_TTA_HELP = "test-time augmentation: none, flip (2 views) or full (8 views)"
_SET_HELP = ("TrainConfig field KEY=VALUE (repeatable; VALUE is JSON where it parses), e.g. "
             "--set augment=heavy --set 'model_overrides={\"view_size\": 128}'")


def register(root: typer.Typer) -> None:
    """Add the ML commands to the root app (called by ``roadvision.cli``)."""
    root.command("train")(train)
    root.command("calibrate")(calibrate)
    root.command("evaluate")(evaluate)
    root.command("analyze")(analyze)
    root.command("distill")(distill)
    root.command("pseudo-label")(pseudo_label)


def _dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise UserError(f"{what} {path} is not a directory")
    return path


def _report_folder(out: Path, command: str, overwrite: bool, bundle_dir: Path, data_dir: Path,
                   **options: Any) -> Any:
    """The ``OutputFolder`` a report is written into (aside, then swapped in whole)."""
    from roadvision.data.output import OutputFolder

    inputs = {"bundle": str(bundle_dir.resolve()), "data": str(data_dir.resolve()), **options}
    return OutputFolder(out, command=command, inputs=inputs, overwrite=overwrite)


def _bundle(path: Path) -> Path:
    if not (_dir(path, "bundle") / "config.json").is_file():
        raise UserError(f"{path} is not a model bundle (no config.json); a training run writes "
                        f"its bundle to RUN_DIR/bundle")
    return path


def _bundle_for(bundle_dir: Path, data_dir: Path) -> tuple[Path, Path]:
    """The bundle and the data set, checked to be of the same task: a roadwork model on lanes
    data would otherwise fail deep in the reader ("roadwork rows without a label")."""
    from roadvision.data.contract import read_info
    from roadvision.models.bundle import bundle_task

    model_task = bundle_task(_bundle(bundle_dir))
    data_task = read_info(_dir(data_dir, "data set")).task
    if model_task != data_task:
        raise UserError(f"bundle {bundle_dir} is a {model_task} model but the data set "
                        f"{data_dir} is {data_task}: use a {model_task} data set or a "
                        f"{data_task} bundle")
    return bundle_dir, data_dir


_OVERWRITE_HELP = ("replace a non-empty folder that is not this command's earlier output "
                   "(without it such a folder is refused and left untouched)")


def _is_run_dir(path: Path) -> bool:
    """A training run's folder: what ``train``/``distill`` write first and resume from."""
    from roadvision.training.checkpoint import CHECKPOINT_DIR

    return (path / "train_config.json").is_file() or (path / CHECKPOINT_DIR).is_dir()


def _run_in(run_dir: Path, overwrite: bool, fit: Any) -> Any:
    """Run ``fit(folder)`` for a run folder: resume an earlier run in place; refuse a foreign
    non-empty folder; with ``overwrite`` train aside and swap in only when training is done,
    so a killed run leaves the old folder whole."""
    from dataclasses import replace

    from roadvision.data.output import OutputFolder, is_empty

    if run_dir.exists() and not run_dir.is_dir():
        raise UserError(f"run folder {run_dir} exists and is not a folder")
    if not overwrite:
        if not is_empty(run_dir) and not _is_run_dir(run_dir):
            raise UserError(f"run folder {run_dir}: not empty and holds no earlier run (no "
                            "train_config.json or checkpoint/); pass --overwrite to replace "
                            "it, or choose another folder")
        return fit(run_dir)
    with OutputFolder(run_dir, command="train", inputs={}, overwrite=True,
                      option="RUN_DIR") as tmp:
        result = fit(tmp)
    return replace(result, bundle_dir=run_dir / Path(result.bundle_dir).name)


def _parse_sets(sets: list[str] | None) -> dict[str, Any]:
    from dataclasses import fields

    from roadvision.training import TrainConfig

    values: dict[str, Any] = {}
    for key, text in parse_sets(sets, (f.name for f in fields(TrainConfig)),
                                "training option").items():
        try:
            values[key] = json.loads(text)
        except json.JSONDecodeError:
            values[key] = text  # plain strings need no JSON quotes: --set augment=heavy
    return values


def _config(data_dir: Path, training_profile: str, sets: list[str] | None, **options: Any):
    """The run's ``TrainConfig``: the training profile, then the options given, then --set."""
    from roadvision.data.contract import read_info
    from roadvision.training import TrainConfig

    task = read_info(_dir(data_dir, "data set")).task
    cfg = TrainConfig.for_profile(training_profile, task, **options)
    changes = _parse_sets(sets)
    if changes.get("model_overrides"):
        changes["model_overrides"] = {**cfg.model_overrides, **changes["model_overrides"]}
    try:
        return cfg.replace(**changes) if changes else cfg
    except (TypeError, ValueError) as exc:  # e.g. --set epochs=many
        raise UserError(f"--set: {exc}") from None


def _report_run(result: Any, calibrate_after: bool, data_dir: Path, cfg: Any) -> None:
    from roadvision.evaluation import calibrate as calibrate_bundle

    stop = "stopped early" if result.stopped_early else "ran all epochs"
    console.print(f"[green]trained[/] {len(result.history)} epochs ({stop}); best val metric "
                  f"{result.best_metric:.4f} at epoch {result.best_epoch}")
    if calibrate_after:
        _print_calibration(calibrate_bundle(result.bundle_dir, data_dir, split="val",
                                            objective=cfg.lane_bias_objective))
    console.print(f"bundle: {result.bundle_dir}")


def _print_calibration(report: dict[str, Any]) -> None:
    if report.get("warning"):  # too little data (temperature 1 kept) or a degenerate fit
        console.print(f"[yellow]warning:[/] {report['warning']}")
    if "temperature" in report and "logit_bias" in report:
        console.print(f"calibrated on {report['split']} (n={report['n']}): temperature "
                      f"{report['temperature']:.3f}, logit bias {report['logit_bias']:.3f}; "
                      f"ECE {report['ece_before']:.4f} -> {report['ece_after']:.4f}, "
                      f"MCC@0.5 {report['mcc_before']:.4f} -> {report['mcc_after']:.4f}")
    elif "lane_iou_before" in report:  # lanes: a temperature and per-class decision biases
        from roadvision.evaluation.calibration import BIAS_MIN_GAIN

        bias = report.get("class_bias") or []
        shown = (", ".join(f"{b:+.2f}" for b in bias[1:]) if any(bias) else
                 f"none (no bias gained {BIAS_MIN_GAIN} IoU: plain argmax kept)")
        ious = " / ".join(f"{a:.3f}->{b:.3f}" if a is not None and b is not None else "-"
                          for a, b in zip(report["lane_iou_before"], report["lane_iou_after"],
                                          strict=False))
        lines = ""
        if report.get("bias_objective") == "lines":
            lines = "; line F1 (skeleton, 0.5 m) " + " / ".join(
                f"{a:.3f}->{b:.3f}" if a is not None and b is not None else "-"
                for a, b in zip(report["line_f1_before"], report["line_f1_after"], strict=False))
        console.print(f"calibrated on {report['split']} (n={report['n']}, {report['n_pixels']} "
                      f"pixels): temperature {report['temperature']:.3f}; lane class biases "
                      f"({report.get('bias_objective', 'iou')}) {shown}; lane IoU on those "
                      f"pixels {ious}{lines}")
    else:
        summary = {k: v for k, v in report.items() if isinstance(v, int | float | str)}
        console.print(f"calibrated: {summary}")


def train(
    data_dir: Path = typer.Argument(..., help="data set folder with a train/val split"),
    run_dir: Path = typer.Argument(..., help="run folder: checkpoint, history, bundle/"),
    training_profile: TrainingProfile = typer.Option("full", help=_PROFILE_HELP),
    model_preset: str | None = typer.Option(
        None, help="model preset, e.g. roadwork_small (default: the training profile's)"),
    epochs: int | None = typer.Option(None, min=1, help="most epochs (early stopping may end "
                                                         "sooner; default: the profile's)"),
    batch_size: int | None = typer.Option(None, min=1,
                                          help="images per step (default: the profile's)"),
    lr: float | None = typer.Option(None, help="peak learning rate (default: the profile's)"),
    seed: int | None = typer.Option(None, help="random seed (default: the profile's)"),
    device: str | None = typer.Option(None, help="auto, cpu or cuda[:N]"),
    sets: list[str] = typer.Option([], "--set", help=_SET_HELP),
    calibrate_after: bool = typer.Option(True, "--calibrate/--no-calibrate",
                                         help="fit temperature and bias on val afterwards"),
    overwrite: bool = typer.Option(False, "--overwrite", help=_OVERWRITE_HELP),
) -> None:
    """Train a model; the test split is never read. Re-running resumes from the checkpoint."""
    from roadvision.training import train as train_model

    cfg = _config(data_dir, training_profile, sets, preset=model_preset, epochs=epochs,
                  batch_size=batch_size, lr=lr, seed=seed, device=device)
    console.print(f"training {cfg.preset} on {data_dir} (training profile {training_profile}, "
                  f"{cfg.epochs} epochs max) into {run_dir}")
    result = _run_in(run_dir, overwrite, lambda folder: train_model(data_dir, folder, cfg))
    _report_run(result, calibrate_after, data_dir, cfg)


def distill(
    data_dir: Path = typer.Argument(..., help="data set folder with a train/val split"),
    run_dir: Path = typer.Argument(..., help="the student's run folder"),
    teacher: list[Path] = typer.Option(..., "--teacher",
                                       help="teacher bundle folder (repeat for an ensemble)"),
    model_preset: str | None = typer.Option(
        None, help="the student's model preset (default: roadwork_student for roadwork, the "
                   "training profile's for lanes)"),
    training_profile: TrainingProfile = typer.Option("full", help=_PROFILE_HELP),
    epochs: int | None = typer.Option(None, min=1, help="most epochs (default: the profile's)"),
    alpha: float | None = typer.Option(None, help="weight of the hard loss (0-1)"),
    temperature: float | None = typer.Option(None, help="softening temperature T"),
    sets: list[str] = typer.Option([], "--set", help=_SET_HELP),
    calibrate_after: bool = typer.Option(True, "--calibrate/--no-calibrate",
                                         help="fit temperature and bias on val afterwards"),
    overwrite: bool = typer.Option(False, "--overwrite", help=_OVERWRITE_HELP),
) -> None:
    """Distil an ensemble of teacher bundles into one smaller student."""
    from roadvision.data.contract import read_info
    from roadvision.training import distill as distill_model

    teachers = [_bundle(t) for t in teacher]
    if model_preset is None and read_info(_dir(data_dir, "data set")).task == "roadwork":
        model_preset = "roadwork_student"
    cfg = _config(data_dir, training_profile, sets, preset=model_preset, epochs=epochs,
                  distill_alpha=alpha, distill_temperature=temperature)
    console.print(f"distilling {len(teachers)} teacher(s) into {cfg.preset} in {run_dir}")
    result = _run_in(run_dir, overwrite,
                     lambda folder: distill_model(teachers, data_dir, folder, cfg))
    _report_run(result, calibrate_after, data_dir, cfg)


def calibrate(
    bundle_dir: Path = typer.Argument(..., help="model bundle folder"),
    data_dir: Path = typer.Argument(..., help="data set folder"),
    split: Literal["train", "val"] = typer.Option("val", help="split to fit on (never test)"),
    bias_objective: Literal["iou", "lines"] = typer.Option(
        "iou", help="lanes: class biases for the mask's IoU, or for the lines' F1 (a model "
        "whose output is traced to vectors: predict on GeoTIFFs, areas:analyze)"),
) -> None:
    """Fit a temperature and decision biases (roadwork: one logit bias; lanes: one per class)
    and store them in the bundle."""
    from roadvision.evaluation import calibrate as calibrate_bundle

    _print_calibration(calibrate_bundle(*_bundle_for(bundle_dir, data_dir), split=split,
                                        objective=bias_objective))


def evaluate(
    bundle_dir: Path = typer.Argument(..., help="model bundle folder"),
    data_dir: Path = typer.Argument(..., help="data set folder"),
    split: Split = typer.Option("test", help="split to score"),
    tta: Tta = typer.Option("none", help=_TTA_HELP),
    protocol: Protocol | None = typer.Option(
        None, help="natix: the validator's queries (224 px JPEG, no metadata, 4 levels) and "
                   "reward (roadwork only)"),
    natix_queries: int | None = typer.Option(None, min=1, help="natix: queries in the stream "
                                             "(default: one per row)"),
    seed: int = typer.Option(0, help="natix: seed of the query stream and augmentations"),
    out: Path | None = typer.Option(None, help="write metrics.json and predictions.parquet"),
    as_json: bool = typer.Option(False, "--json", help="print the metrics as JSON"),
    overwrite: bool = typer.Option(False, "--overwrite", help=_OVERWRITE_HELP),
) -> None:
    """Score a bundle: roadwork MCC@0.5, accuracy, F1, AUROC, ECE; lanes per-class IoU, mIoU."""
    from roadvision.evaluation import evaluate as evaluate_bundle

    def run(folder: Path | None) -> dict[str, Any]:
        return evaluate_bundle(*_bundle_for(bundle_dir, data_dir), split=split,
                               tta=tta, protocol=protocol, out_dir=folder, seed=seed,
                               natix_queries=natix_queries)

    if out is None:
        result = run(None)
    else:
        with _report_folder(out, "evaluate", overwrite, bundle_dir, data_dir, split=split,
                            tta=tta, protocol=protocol) as tmp:
            result = run(tmp)
    if as_json:
        typer.echo(json.dumps(result["metrics"], indent=2, default=str))
        return
    headline = "MCC@0.5" if result["task"] == "roadwork" else "mIoU without background"
    console.print(f"{result['task']} on {split} (n={result['n']}, tta {tta}"
                  f"{', protocol ' + protocol if protocol else ''}): {headline} "
                  f"[bold]{result['headline']:.4f}[/]")
    if "natix" in result:
        nx = result["natix"]
        console.print(f"  NATIX validator (seed {seed}, {nx['queries']} queries"
                      f"{'' if nx['windows_full'] else ', fewer than 100: partial windows'}): "
                      f"reward {nx['reward']:.4f}, MCC@100 {nx['mcc_100']:.4f}, "
                      f"accuracy@10 {nx['accuracy_10']:.4f}, MCC@0.5 (np.round) "
                      f"{nx['mcc@0.5']:.4f}")
    for name, value in result["metrics"].items():
        if isinstance(value, int | float):
            console.print(f"  {name:24s} {value:.4f}")
        elif isinstance(value, dict) and all(isinstance(v, int | float | None)
                                             for v in value.values()):
            shown = {k: None if v is None else round(v, 4) for k, v in value.items()}
            console.print(f"  {name:24s} {shown}")
    if out is not None:
        console.print(f"wrote {out / 'metrics.json'} and {out / 'predictions.parquet'}")


def analyze(
    bundle_dir: Path = typer.Argument(..., help="model bundle folder"),
    data_dir: Path = typer.Argument(..., help="data set folder"),
    out: Path = typer.Option(..., help="report folder: error_analysis.html, failures.csv, metrics"),
    split: Split = typer.Option("test", help="split to analyse"),
    tta: Tta = typer.Option("none", help=_TTA_HELP),
    max_gallery: int = typer.Option(12, min=0, help="worst cases shown with overlays"),
    overwrite: bool = typer.Option(False, "--overwrite", help=_OVERWRITE_HELP),
) -> None:
    """Error analysis: every failure with its metadata, sliced metrics and an HTML report."""
    import pandas as pd

    from roadvision.evaluation.error_analysis import error_analysis

    with _report_folder(out, "analyze", overwrite, bundle_dir, data_dir, split=split, tta=tta,
                        max_gallery=max_gallery) as tmp:
        name = error_analysis(*_bundle_for(bundle_dir, data_dir), tmp,
                              split=split, tta=tta, max_gallery=max_gallery).name
    report = out / name
    failures = pd.read_csv(report.parent / "failures.csv")
    console.print(f"{len(failures)} failures listed in {report.parent / 'failures.csv'}")
    console.print(f"report: {report}")


def _teacher(uri: str) -> Path:
    """A bundle folder for a bundle, an MLflow model folder or ``models:/NAME@ALIAS``."""
    from roadvision.models.bundle import locate_bundle

    if uri.startswith("models:/"):
        from roadvision.registry import download_bundle

        return locate_bundle(download_bundle(uri))
    return locate_bundle(uri)


def pseudo_label(
    model: list[str] = typer.Option(..., "--model", help="teacher: bundle folder, MLflow model "
                                    "folder or models:/NAME@ALIAS (repeat for an ensemble)"),
    data: Path = typer.Option(..., "--data", help="labelled data set with a train/val/test "
                              "split; its test split is the frozen test"),
    pool: str = typer.Option(..., "--pool", help="unlabelled images: a folder of images, a "
                             "data set folder, a payload log (folder or s3:// prefix) or "
                             "synth://TASK?n=N"),
    out: Path = typer.Option(..., "--out", help="output folder: round-K/{data,train}, "
                             "pseudo_label.json"),
    rounds: int = typer.Option(2, min=1, max=10, help="pseudo-labelling rounds"),
    threshold: list[float] = typer.Option([], "--threshold", help="confidence threshold of "
                                          "each round (repeat; default 0.9 rising to 0.95)"),
    pseudo_weight: float = typer.Option(0.3, help="sampling weight of a pseudo-labelled row"),
    balance_ratio: float = typer.Option(1.0, help="majority class capped at minority x this"),
    shifted: Path | None = typer.Option(None, help="data set whose test split is also scored "
                                        "each round (a shifted domain)"),
    training_profile: TrainingProfile = typer.Option("full", help=_PROFILE_HELP),
    epochs: int | None = typer.Option(None, min=1, help="fine-tuning epochs per round "
                                      "(default: the profile's)"),
    sets: list[str] = typer.Option([], "--set", help=_SET_HELP),
    endpoint_url: str | None = typer.Option(None, help="S3-compatible endpoint for an s3:// "
                                            "payload log"),
    overwrite: bool = typer.Option(False, "--overwrite", help="write into a non-empty OUT "
                                   "(its round-K folders are replaced; without it a non-empty "
                                   "OUT is refused and left untouched)"),
) -> None:
    """Fine-tune on confident, class-balanced pseudo labels of an unlabelled pool, N rounds."""
    import tempfile

    from roadvision.components.pseudo_label import load_pool
    from roadvision.evaluation import calibrate as calibrate_bundle
    from roadvision.training.pseudo_label import PseudoLabelConfig, pseudo_label_rounds

    teachers = [_teacher(m) for m in model]
    for teacher in teachers:
        _bundle_for(teacher, data)  # same task as the data, or one clear line
    cfg = _config(data, training_profile, sets, epochs=epochs)
    task = str(cfg.task)
    config = PseudoLabelConfig(rounds=rounds, thresholds=list(threshold) or None,
                               pseudo_weight=pseudo_weight, balance_ratio=balance_ratio,
                               train=cfg)
    with tempfile.TemporaryDirectory() as work:
        items = load_pool(pool, task=task, work_dir=work, endpoint_url=endpoint_url or "")
        console.print(f"pseudo-labelling {len(items)} pool images with {len(teachers)} "
                      f"teacher(s), {rounds} round(s) at thresholds {config.thresholds}")
        reports = pseudo_label_rounds(
            teachers, data, items, config, out, shifted_data=shifted, overwrite=overwrite,
            after_train=lambda bundle, round_data: calibrate_bundle(bundle, round_data,
                                                                    split="val"))
    for r in reports:
        counts = ", ".join(f"{k} {v}" for k, v in sorted(r.class_counts.items())) or "none"
        accuracy = "" if r.pseudo_accuracy is None else \
            f", pseudo-label accuracy {r.pseudo_accuracy:.3f} (pool labels, not used)"
        line = (f"round {r.round} (threshold {r.threshold:g}): kept {r.kept} of "
                f"{r.confident} confident ({counts}){accuracy}; frozen test "
                f"{r.test_before['headline']:.4f} -> {r.test_after['headline']:.4f}")
        if r.shifted_after is not None:
            line += (f"; shifted {r.shifted_before['headline']:.4f} -> "
                     f"{r.shifted_after['headline']:.4f}")
        console.print(line)
    if not any(r.trained for r in reports):
        raise UserError(reports[-1].note + "; lower --threshold or use a stronger teacher")
    if reports[-1].note:
        console.print(f"[yellow]stopped:[/] {reports[-1].note}")
    console.print(f"bundle: {next(r.bundle for r in reversed(reports) if r.trained)}")
    console.print(f"report: {out / 'pseudo_label.json'}")
