"""Pseudo-labelling: confident predictions on unlabelled images become low-weight training rows.

One round (Lee 2013, "Pseudo-Label"; Xie et al. 2020, "Noisy Student", for the rounds):

1. predict the pool with the teacher (one bundle, or several: their calibrated probabilities
   averaged) through the one inference path, ``roadvision.runtime.inference``;
2. keep the confident predictions: roadwork ``p >= t`` (label 1) or ``p <= 1 - t`` (label 0);
   lanes tiles whose mean max-class probability over the pixels painted as a marking is
   ``>= t`` (the argmax mask is the label; a tile with no marking pixel: over all pixels).
   Background is most of a tile and nearly certain, so a mean over every pixel would pass
   almost any tile (0.98 for the least sure of a bench pool) and select nothing;
3. balance classes: the majority class (lanes: a tile's dominant predicted class) is capped at
   ``balance_ratio`` x the minority count, keeping its most confident rows;
4. write labelled train + val plus the kept rows as one data-contract data set: pseudo rows are
   ``source = "pseudo"``, ``split = "train"``, with ``pseudo_round``, ``pseudo_confidence`` and
   ``weight = pseudo_weight`` (labelled rows keep their GPS weight, mean 1);
5. fine-tune from the previous round's bundle on it and score the frozen test split.

Rounds repeat with a rising threshold (default 0.9 then 0.95); round ``k`` re-labels the whole
pool with round ``k - 1``'s model. The lower loss weight is applied through the training
sampler, which draws rows with probability proportional to ``weight``: in expectation that is
the gradient of a loss weighted by ``weight`` (importance sampling), with no change to the loss.

The frozen test split is the labelled data set's test split, read only to score (never to
choose anything); a pool's own labels (synthetic pools have them) are only compared with the
pseudo labels to report their accuracy. Lanes pixels below the threshold are not set to an
ignore id: ``models.preprocess.prepare_sample`` refuses mask ids >= the class count, so whole
tiles are kept or dropped.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from roadvision.errors import UserError
from roadvision.training.config import TrainConfig
from roadvision.training.pseudo_pool import PoolItem

__all__ = ["PseudoLabelConfig", "rising_thresholds", "RoundReport", "PoolPrediction",
           "predict_pool", "select_confident", "write_round_dataset", "frozen_test_figures",
           "fine_tune", "pseudo_label_rounds"]

PSEUDO_SOURCE = "pseudo"
#: Called after each round's training with (bundle_dir, round_data_dir): e.g. calibration on the
#: round data set's val split (labelled rows only), which lives a floor above this module.
AfterTrain = Callable[[Path, Path], Any]


def rising_thresholds(rounds: int, start: float = 0.9, stop: float = 0.95) -> list[float]:
    """``rounds`` thresholds rising evenly from ``start`` to ``stop`` (one round: ``start``)."""
    if rounds <= 1:
        return [start]
    return [round(start + (stop - start) * k / (rounds - 1), 4) for k in range(rounds)]


@dataclass
class PseudoLabelConfig:
    """How pseudo-labelling runs. ``train`` is the fine-tuning run of every round."""

    rounds: int = 2
    # round k uses thresholds[k] (the last repeats); None = rising_thresholds(rounds)
    thresholds: list[float] | None = None
    balance_ratio: float = 1.0  # majority class capped at minority count x this
    pseudo_weight: float = 0.3  # sampling weight of a pseudo row (labelled rows: their own)
    min_kept: int = 1  # fewer kept rows than this: the round trains nothing and the run stops
    tta: str = "none"  # TTA mode of the teacher's predictions
    batch_size: int = 16  # prediction batch
    train: TrainConfig = field(default_factory=lambda: TrainConfig.for_profile(
        "tiny", "roadwork", epochs=1))

    def __post_init__(self) -> None:
        if isinstance(self.train, dict):
            self.train = TrainConfig.from_dict(self.train)
        if not 1 <= int(self.rounds) <= 10:
            raise UserError(f"rounds must be in [1, 10], got {self.rounds}")
        self.thresholds = [float(t) for t in (self.thresholds if self.thresholds is not None
                                               else rising_thresholds(self.rounds))]
        if not self.thresholds or any(not 0.5 < t < 1.0 for t in self.thresholds):
            raise UserError(f"thresholds must lie in (0.5, 1), got {self.thresholds}")
        if self.balance_ratio < 1.0 or not math.isfinite(self.balance_ratio):
            raise UserError(f"balance_ratio must be >= 1, got {self.balance_ratio}")
        if not 0.0 < self.pseudo_weight <= 1.0:
            raise UserError(f"pseudo_weight must be in (0, 1], got {self.pseudo_weight}")
        if self.min_kept < 1:
            raise UserError(f"min_kept must be >= 1, got {self.min_kept}")

    def threshold(self, round_index: int) -> float:
        """The confidence threshold of round ``round_index`` (0-based)."""
        return self.thresholds[min(round_index, len(self.thresholds) - 1)]

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "train": self.train.to_dict()}


@dataclass
class PoolPrediction:
    """The teacher's answer on one pool image: label (roadwork 0/1) or argmax mask (lanes),
    its confidence, and its class group for balancing (roadwork: the label; lanes: the
    dominant predicted class). ``correct``: agreement with the pool's truth, when it has one."""

    index: int
    confidence: float
    group: int
    label: int | None = None
    mask: np.ndarray | None = None
    correct: float | None = None  # roadwork 0/1; lanes pixel accuracy


@dataclass
class RoundReport:
    """What one round did and what it changed on the frozen test split (and a shifted set)."""

    round: int
    threshold: float
    pool_size: int
    unreadable: int
    confident: int  # passed the threshold, before balancing
    kept: int
    class_counts: dict[str, int]  # kept rows per class group
    pseudo_accuracy: float | None  # kept rows vs the pool's truth (reported, never used)
    trained: bool
    bundle: str  # the model after this round (the previous one when nothing was trained)
    test_before: dict[str, Any]
    test_after: dict[str, Any]
    shifted_before: dict[str, Any] | None = None
    shifted_after: dict[str, Any] | None = None
    data_dir: str = ""
    note: str = ""

    @property
    def test_gain(self) -> float:
        return float(self.test_after["headline"]) - float(self.test_before["headline"])

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "test_gain": self.test_gain}


# --------------------------------------------------------------------------- prediction
def _clean_metadata(meta: dict[str, Any] | None) -> dict[str, Any] | None:
    """Request metadata the model's encoder accepts: unknown tags and bad GPS become NULL (a
    logged request may carry anything; refusing it would drop the image for its metadata)."""
    from roadvision.data.contract import ContractError, normalize_tag, parse_gps

    if not meta:
        return None
    out: dict[str, Any] = {}
    for name in ("weather", "daytime", "scene"):
        try:
            out[name] = normalize_tag(name, meta.get(name))
        except ContractError:
            out[name] = None
    text = meta.get("text")
    out["text"] = text if isinstance(text, str) else None
    try:
        gps = parse_gps((meta["lat"], meta["lon"])) if meta.get("lat") is not None and \
            meta.get("lon") is not None else None
    except (ContractError, TypeError, ValueError):
        gps = None
    out["lat"], out["lon"] = gps if gps else (None, None)
    return out


def _probabilities(models: Sequence[Any], images: Sequence[np.ndarray],
                   metas: Sequence[dict[str, Any] | None], tta: str, batch_size: int) -> list:
    """Mean calibrated probability of the models per image (each model prepares its own
    input: members may differ in views and sizes)."""
    from roadvision.models.preprocess import prepare_sample
    from roadvision.runtime.inference import predict_proba

    total: list | None = None
    for m in models:
        samples = [prepare_sample(m.cfg, image, meta) for image, meta in zip(images, metas,
                                                                            strict=True)]
        probs = [p.float() for p in predict_proba(m, samples, tta, batch_size)]
        total = probs if total is None else [a + b for a, b in zip(total, probs, strict=True)]
    return [p / len(models) for p in total or []]


def _answer(task: str, index: int, p: Any, truth: Any) -> PoolPrediction:
    if task == "roadwork":
        prob = float(p)
        label = int(prob >= 0.5)
        pred = PoolPrediction(index, max(prob, 1.0 - prob), label, label=label)
        if truth is not None:
            pred.correct = float(label == int(truth))
        return pred
    top, mask = p.max(dim=0)
    mask = mask.numpy().astype(np.uint8)
    counts = np.bincount(mask.ravel(), minlength=p.shape[0])
    group = int(np.argmax(counts[1:]) + 1) if counts[1:].any() else 0
    top, painted = top.numpy(), mask > 0
    confidence = float(top[painted].mean()) if painted.any() else float(top.mean())
    pred = PoolPrediction(index, confidence, group, mask=mask)
    if truth is not None and np.shape(truth) == mask.shape:
        pred.correct = float((np.asarray(truth) == mask).mean())
    return pred


def predict_pool(models: Sequence[Any], items: Sequence[PoolItem], *, tta: str = "none",
                 batch_size: int = 16) -> tuple[list[PoolPrediction], int]:
    """The ensemble's prediction on every readable pool image; returns (predictions, number
    of images that could not be decoded, which are skipped). Images are decoded a batch at a
    time, so a large pool never sits in memory as pixels."""
    from roadvision.data.images import ImageError, decode_image

    if not models:
        raise UserError("pseudo-labelling needs at least one teacher bundle")
    task = models[0].cfg.task
    out, unreadable = [], 0
    for start in range(0, len(items), batch_size):
        chunk, images = [], []
        for index in range(start, min(start + batch_size, len(items))):
            try:
                images.append(decode_image(items[index].image))
                chunk.append(index)
            except ImageError:
                unreadable += 1
        metas = [_clean_metadata(items[i].metadata) if task == "roadwork" else None
                 for i in chunk]
        for index, p in zip(chunk, _probabilities(models, images, metas, tta, batch_size),
                            strict=True):
            out.append(_answer(task, index, p, items[index].truth))
    return out, unreadable


# --------------------------------------------------------------------------- selection
def select_confident(preds: Sequence[PoolPrediction], threshold: float, balance_ratio: float,
                     groups: Sequence[int]) -> tuple[list[PoolPrediction], int]:
    """The confident predictions (``confidence >= threshold``; for roadwork that is ``p >= t``
    or ``p <= 1 - t``), class-balanced: each group keeps at most ``ceil(minority x ratio)`` of
    its most confident rows. ``groups``: every class group that counts (roadwork: 0 and 1, so a
    pool with no confident positive keeps nothing; lanes: the groups that occur, and a set of
    only blank tiles, group 0, keeps nothing: it would teach the student to paint nothing).
    Returns (kept, number confident before balancing)."""
    confident = [p for p in preds if p.confidence >= threshold]
    by_group: dict[int, list[PoolPrediction]] = {g: [] for g in groups}
    for p in confident:
        by_group.setdefault(p.group, []).append(p)
    present = {g: rows for g, rows in by_group.items() if rows or g in groups}
    if not present or (not groups and set(present) == {0}):
        return [], len(confident)
    cap = math.ceil(min(len(rows) for rows in present.values()) * balance_ratio)
    kept = []
    for rows in present.values():
        kept.extend(sorted(rows, key=lambda p: (-p.confidence, p.index))[:cap])
    return sorted(kept, key=lambda p: p.index), len(confident)


# --------------------------------------------------------------------------- the data set
def _pseudo_rows(items: Sequence[PoolItem], kept: Sequence[PoolPrediction], round_no: int,
                 out: Path, task: str, weight: float) -> list[dict[str, Any]]:
    from roadvision.data.fileops import safe_name
    from roadvision.data.images import encode_png, extension_for, sniff_format

    rows = []
    folder = f"pseudo/r{round_no}"
    (out / folder).mkdir(parents=True, exist_ok=True)
    for p in kept:
        item = items[p.index]
        digest = hashlib.sha256(item.image).hexdigest()
        name = f"{p.index:06d}-{safe_name(item.id, 40)}"
        image_rel = f"{folder}/{name}{extension_for(sniff_format(item.image) or 'png')}"
        (out / image_rel).write_bytes(item.image)
        mask_rel = None
        if task == "lanes":
            mask_rel = f"{folder}/{name}.mask.png"
            (out / mask_rel).write_bytes(encode_png(p.mask))
        meta = _clean_metadata(item.metadata) or {}
        rows.append({"id": f"pseudo-r{round_no}-{p.index:06d}", "image": image_rel,
                     "mask": mask_rel, "label": p.label if task == "roadwork" else None,
                     "lat": meta.get("lat"), "lon": meta.get("lon"), "city": None,
                     "weather": meta.get("weather"), "daytime": meta.get("daytime"),
                     "scene": meta.get("scene"), "text": meta.get("text"),
                     "sha256": digest, "source": PSEUDO_SOURCE, "split": "train",
                     "weight": weight, "pseudo_round": round_no,
                     "pseudo_confidence": round(p.confidence, 6)})
    return rows


def write_round_dataset(labelled: str | Path, items: Sequence[PoolItem],
                        kept: Sequence[PoolPrediction], round_no: int, out: str | Path,
                        pseudo_weight: float) -> Path:
    """Labelled train + val (files hard-linked) plus the kept pseudo rows, as one data set in
    ``out``. The labelled test split is left out: it stays frozen in the labelled data set."""
    from roadvision.data.contract import read_info, write_dataset
    from roadvision.data.fileops import carry_files
    from roadvision.runtime.readers import load_rows

    out = Path(out)
    info = read_info(labelled)
    base = load_rows(labelled, ["train", "val"])
    if "weight" not in base.columns:
        base["weight"] = 1.0
    base["weight"] = base["weight"].astype("Float64").fillna(1.0)
    carry_files(labelled, out, base)
    pseudo = pd.DataFrame(_pseudo_rows(items, kept, round_no, out, info.task, pseudo_weight))
    with warnings.catch_warnings():  # pandas' notice on all-NULL columns (mask for roadwork)
        warnings.simplefilter("ignore", FutureWarning)
        df = pd.concat([base.assign(pseudo_round=0, pseudo_confidence=np.nan), pseudo],
                       ignore_index=True)
    info.extra = {**info.extra, "pseudo_label": {
        "round": round_no, "rows": len(pseudo), "weight": pseudo_weight,
        "labelled": str(Path(labelled).name)}}
    write_dataset(out, df, info)
    return out


# --------------------------------------------------------------------------- scoring
def frozen_test_figures(bundle: str | Path, data_dir: str | Path, *, split: str = "test",
                 tta: str = "none", batch_size: int = 16, device: str = "auto") -> dict[str, Any]:
    """The bundle's figures on ``split`` of ``data_dir``: roadwork MCC at the bundle's threshold
    (the headline), accuracy, AUROC; lanes mIoU without background (the headline)."""
    from roadvision.metrics import classification_metrics, seg_confusion, segmentation_metrics
    from roadvision.models.bundle import load_bundle
    from roadvision.runtime.dataset import ManifestDataset
    from roadvision.runtime.device import resolve_device
    from roadvision.runtime.inference import predict_dataset
    from roadvision.runtime.readers import load_rows

    model = load_bundle(bundle, device=resolve_device(device))
    rows = load_rows(data_dir, [split])
    ds = ManifestDataset(data_dir, rows, model.cfg)
    res = list(predict_dataset(model, ds, batch_size=batch_size, mode=tta))
    if model.cfg.task == "roadwork":
        probs = np.array([r["prob"] for r in res])
        labels = np.array([r["label"] for r in res])
        m = classification_metrics(labels, probs, threshold=float(model.cfg.threshold))
        return {"headline": float(m["mcc"]), "mcc": float(m["mcc"]),
                "accuracy": float(m["accuracy"]), "auroc": m["auroc"], "n": len(res)}
    n = model.cfg.num_classes
    cm = np.zeros((n, n), np.int64)
    for r in res:
        cm += seg_confusion(r["mask"], r["pred"], n)
    m = segmentation_metrics(cm, model.cfg.classes)
    return {"headline": float(m["miou_no_bg"] or 0.0), "miou_no_bg": m["miou_no_bg"],
            "miou": m["miou"], "n": len(res)}


# --------------------------------------------------------------------------- training
def fine_tune(bundle: str | Path, data_dir: str | Path, out_dir: str | Path,
              cfg: TrainConfig) -> Any:
    """Train from ``bundle``'s weights (architecture, views and calibration kept) on
    ``data_dir``'s train split, selecting on its val split; the loop writes ``out_dir/bundle``."""
    from roadvision.models.bundle import load_bundle
    from roadvision.runtime.device import resolve_device
    from roadvision.training.loop import fit, seed_everything
    from roadvision.training.train import build_datasets, build_loss, dataset_extra

    device = resolve_device(cfg.device)
    seed_everything(cfg.seed, cfg.deterministic, device)
    model = load_bundle(bundle, device=device)
    model.train()
    train_ds, val_ds = build_datasets(data_dir, model.cfg, cfg)
    loss = build_loss(model, cfg)
    extra = {**dataset_extra(data_dir), "pseudo_label": {"from": Path(bundle).name}}
    return fit(model, train_ds, val_ds, cfg, out_dir, loss, bundle_extra=extra)


def _class_names(task: str, classes: Sequence[str], group: int) -> str:
    if task == "roadwork":
        return ("no_roadwork", "roadwork")[group]
    return classes[group] if group < len(classes) else str(group)


def _check_out(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise UserError(f"pseudo-label output {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise UserError(f"pseudo-label output {out} is not empty; choose another folder or "
                        "pass overwrite")


def pseudo_label_rounds(bundles: str | Path | Sequence[str | Path], labelled_data: str | Path,
                        pool: Sequence[PoolItem], config: PseudoLabelConfig,
                        out_dir: str | Path, *, shifted_data: str | Path | None = None,
                        after_train: AfterTrain | None = None,
                        overwrite: bool = False) -> list[RoundReport]:
    """Run ``config.rounds`` rounds of pseudo-labelling; one :class:`RoundReport` per round run.

    ``bundles``: the teacher (champion or student), or several (an ensemble whose averaged
    probabilities label round 1; round 1 fine-tunes the first bundle, later rounds their
    predecessor). ``labelled_data``: the labelled data set (train/val/test split); its test
    split is the frozen test. ``shifted_data``: optional data set whose test split is also
    scored each round (a shifted domain). A round whose kept rows fall under
    ``config.min_kept`` trains nothing, says why in ``note``, and ends the run.
    Writes ``out_dir/round-K/{data,train}`` and ``out_dir/pseudo_label.json``.
    """
    from roadvision.data.contract import read_info
    from roadvision.models.bundle import load_bundle
    from roadvision.runtime.device import resolve_device

    teachers = [Path(bundles)] if isinstance(bundles, str | Path) else [Path(b) for b in bundles]
    if not teachers:
        raise UserError("pseudo-labelling needs at least one teacher bundle")
    if not pool:
        raise UserError("the pseudo-label pool is empty")
    out = Path(out_dir)
    _check_out(out, overwrite)
    out.mkdir(parents=True, exist_ok=True)
    info = read_info(labelled_data)
    device = resolve_device(config.train.device)
    models = [load_bundle(b, device=device) for b in teachers]
    for path, model in zip(teachers, models, strict=True):
        if model.cfg.task != info.task:
            raise UserError(f"bundle {path} is a {model.cfg.task} model; the labelled data set "
                            f"{labelled_data} is {info.task}")
    task = info.task
    groups = (0, 1) if task == "roadwork" else ()
    scored: dict[str, dict[str, Any]] = {}

    def score(bundle: Path, data: str | Path | None) -> dict[str, Any] | None:
        if data is None:
            return None
        key = f"{bundle}|{data}"
        if key not in scored:
            scored[key] = frozen_test_figures(bundle, data, tta=config.tta,
                                              device=config.train.device)
        return scored[key]

    reports: list[RoundReport] = []
    current = teachers[0]
    for k in range(config.rounds):
        round_no, threshold = k + 1, config.threshold(k)
        preds, unreadable = predict_pool(models, pool, tta=config.tta,
                                         batch_size=config.batch_size)
        kept, confident = select_confident(preds, threshold, config.balance_ratio, groups)
        counts: dict[str, int] = {}
        for p in kept:
            name = _class_names(task, models[0].cfg.classes, p.group)
            counts[name] = counts.get(name, 0) + 1
        checked = [p.correct for p in kept if p.correct is not None]
        before = score(current, labelled_data)
        shifted_before = score(current, shifted_data)
        report = RoundReport(
            round=round_no, threshold=threshold, pool_size=len(pool), unreadable=unreadable,
            confident=confident, kept=len(kept), class_counts=counts,
            pseudo_accuracy=float(np.mean(checked)) if checked and len(checked) == len(kept)
            else None, trained=False, bundle=str(current), test_before=before,
            test_after=before, shifted_before=shifted_before, shifted_after=shifted_before)
        if len(kept) < config.min_kept:
            best = max((p.confidence for p in preds), default=float("nan"))
            report.note = (f"round {round_no}: {len(kept)} pseudo label(s) kept of "
                           f"{len(pool)} pool images at threshold {threshold:g} "
                           f"({confident} confident before class balancing; the most "
                           f"confident prediction is {best:.3f}); nothing trained")
            reports.append(report)
            break
        round_dir = out / f"round-{round_no}"
        if round_dir.exists():  # an earlier run's round (overwrite): never resume from it
            shutil.rmtree(round_dir)
        data_dir = write_round_dataset(labelled_data, pool, kept, round_no,
                                       round_dir / "data", config.pseudo_weight)
        cfg = config.train.replace(task=task, seed=config.train.seed + round_no)
        result = fine_tune(current, data_dir, round_dir / "train", cfg)
        if after_train is not None:
            after_train(Path(result.bundle_dir), data_dir)
        current = Path(result.bundle_dir)
        models = [load_bundle(current, device=device)]
        report.trained, report.bundle, report.data_dir = True, str(current), str(data_dir)
        report.test_after = score(current, labelled_data)
        report.shifted_after = score(current, shifted_data)
        reports.append(report)
        (round_dir / "report.json").write_text(json.dumps(report.to_dict(), indent=2,
                                                          default=str) + "\n")
    (out / "pseudo_label.json").write_text(json.dumps(
        {"config": config.to_dict(), "teachers": [str(t) for t in teachers],
         "rounds": [r.to_dict() for r in reports]}, indent=2, default=str) + "\n")
    return reports
