"""Pseudo-labelling (issue 15 item 3): confident, class-balanced, low-weight pseudo rows, rounds
that fine-tune and report on the frozen test split, and clear answers for empty rounds.

The teacher is an untrained tiny bundle whose calibration (temperature, bias) is set so that the
pool's probabilities spread evenly around 0.5: the selection logic then sees both classes at
known confidences, without spending seconds on training a teacher first.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _cli import one_line_error, run_main

from roadvision.data.contract import read_info, read_manifest, write_dataset
from roadvision.errors import UserError
from roadvision.training import TrainConfig
from roadvision.training.pseudo_label import (
    PoolPrediction,
    PseudoLabelConfig,
    predict_pool,
    pseudo_label_rounds,
    rising_thresholds,
    select_confident,
)
from roadvision.training.pseudo_pool import pool_from_bytes, pool_from_folder, pool_from_frame


def _split(folder: Path) -> Path:
    df, info = read_manifest(folder), read_info(folder)
    df["split"] = np.array(["train", "train", "train", "val", "test"])[np.arange(len(df)) % 5]
    write_dataset(folder, df, info)
    return folder


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Labelled tiny synthetic roadwork data (split), an unlabelled synthetic pool (its labels
    only reported) and a teacher calibrated to split the pool evenly."""
    from roadvision.data.synth import generate
    from roadvision.models import create_model
    from roadvision.models.bundle import load_bundle, save_bundle, update_bundle_config

    root = tmp_path_factory.mktemp("pseudo")
    generate("roadwork", 20, 0, root / "labelled", size="tiny")
    generate("roadwork", 12, 1, root / "pool", size="tiny")
    labelled = _split(root / "labelled")
    bundle = save_bundle(create_model("roadwork_tiny", view_mode="single"), root / "teacher")
    pool = pool_from_folder(root / "pool")
    preds, _ = predict_pool([load_bundle(bundle)], pool)
    p = np.array([pr.confidence if pr.label else 1 - pr.confidence for pr in preds])
    logits = np.log(p / (1 - p))
    temperature = float(max(logits.std(), 1e-6)) / 2.0
    update_bundle_config(bundle, temperature=temperature,
                         logit_bias=-float(np.median(logits)) / temperature)
    return {"root": root, "labelled": labelled, "bundle": Path(bundle), "pool": pool}


def _train_cfg() -> TrainConfig:
    return TrainConfig.for_profile("tiny", "roadwork", epochs=1, max_steps_per_epoch=1,
                                   batch_size=4, device="cpu")


def test_selection_keeps_confident_rows_and_caps_the_majority_class():
    preds = [PoolPrediction(i, conf, group, label=group) for i, (conf, group) in enumerate([
        (0.99, 1), (0.97, 1), (0.95, 1), (0.91, 1), (0.60, 1),  # 4 confident positives
        (0.93, 0), (0.92, 0), (0.70, 0)])]  # 2 confident negatives
    kept, confident = select_confident(preds, 0.9, 1.0, groups=(0, 1))
    assert confident == 6
    # positives capped at 2 (the minority count x 1.0), their most confident two kept
    assert [p.index for p in kept] == [0, 1, 5, 6]
    kept, _ = select_confident(preds, 0.9, 1.5, groups=(0, 1))
    assert sorted(p.index for p in kept if p.group == 1) == [0, 1, 2]  # ceil(2 x 1.5)
    # no confident negative: nothing is kept, rather than a pool of positives only
    kept, confident = select_confident(preds[:5], 0.9, 1.0, groups=(0, 1))
    assert (kept, confident) == ([], 4)
    # lanes: the groups that occur count (a tile's dominant class)
    tiles = [PoolPrediction(i, 0.95, g) for i, g in enumerate([1, 1, 1, 3])]
    kept, _ = select_confident(tiles, 0.9, 2.0, groups=())
    assert [p.group for p in kept] == [1, 1, 3]


def test_config_checks_and_rising_thresholds():
    assert rising_thresholds(2) == [0.9, 0.95] and rising_thresholds(1) == [0.9]
    assert rising_thresholds(3) == [0.9, 0.925, 0.95]
    assert PseudoLabelConfig(rounds=3).thresholds == [0.9, 0.925, 0.95]
    assert PseudoLabelConfig(thresholds=[0.8]).threshold(4) == 0.8  # the last one repeats
    for bad in ({"thresholds": [0.5]}, {"thresholds": [1.0]}, {"rounds": 0},
                {"pseudo_weight": 0.0}, {"balance_ratio": 0.5}):
        with pytest.raises(UserError):
            PseudoLabelConfig(**bad)


def test_a_round_writes_weighted_pseudo_rows_fine_tunes_and_reports(world, tmp_path):
    from roadvision.models.bundle import load_bundle
    from roadvision.training.train import build_datasets

    teacher = load_bundle(world["bundle"])
    preds, _ = predict_pool([teacher], world["pool"])
    best = {g: max(p.confidence for p in preds if p.group == g) for g in (0, 1)}
    threshold = min(best.values())  # both classes have a confident row at this threshold
    confident = {g: sum(p.confidence >= threshold and p.group == g for p in preds)
                 for g in (0, 1)}
    config = PseudoLabelConfig(rounds=1, thresholds=[threshold], pseudo_weight=0.3,
                               train=_train_cfg())
    (report,) = pseudo_label_rounds(world["bundle"], world["labelled"], world["pool"], config,
                                    tmp_path / "out")

    minority = min(confident.values())
    assert report.confident == sum(confident.values())
    assert report.kept == 2 * minority
    assert report.class_counts == {"no_roadwork": minority, "roadwork": minority}
    assert report.trained and (Path(report.bundle) / "config.json").is_file()
    assert report.pool_size == 12 and report.unreadable == 0
    assert 0.0 <= report.pseudo_accuracy <= 1.0  # the synthetic pool's labels, reported only
    n_test = int((read_manifest(world["labelled"])["split"] == "test").sum())
    for figures in (report.test_before, report.test_after):
        assert figures["n"] == n_test and -1.0 <= figures["headline"] <= 1.0
    # the round's data set: labelled train + val, then the pseudo rows at the lower weight
    data = read_manifest(report.data_dir)
    pseudo = data[data["source"] == "pseudo"]
    labelled = read_manifest(world["labelled"])
    assert len(pseudo) == report.kept
    assert len(data) - len(pseudo) == int(labelled["split"].isin(["train", "val"]).sum())
    assert "test" not in set(data["split"])  # the frozen test stays in the labelled set
    assert set(pseudo["split"]) == {"train"} and set(pseudo["pseudo_round"]) == {1}
    assert (pseudo["weight"] == 0.3).all()
    assert (data.loc[data["source"] != "pseudo", "weight"] == 1.0).all()
    assert (pseudo["pseudo_confidence"] >= threshold - 1e-6).all()
    assert sorted(pseudo["label"].tolist()) == [0] * minority + [1] * minority
    # training draws rows by that weight (the sampler's weights are the column)
    train_ds, _ = build_datasets(report.data_dir, teacher.cfg, _train_cfg())
    weights = train_ds.weights()
    is_pseudo = (train_ds.rows["source"] == "pseudo").to_numpy()
    assert np.allclose(weights[is_pseudo], 0.3) and np.allclose(weights[~is_pseudo], 1.0)
    saved = json.loads((tmp_path / "out" / "pseudo_label.json").read_text())
    assert saved["rounds"][0]["kept"] == report.kept and "test_gain" in saved["rounds"][0]
    # an existing output is refused, never overwritten silently
    with pytest.raises(UserError, match="not empty"):
        pseudo_label_rounds(world["bundle"], world["labelled"], world["pool"], config,
                            tmp_path / "out")


def test_no_confident_prediction_is_an_empty_round_not_a_crash(world, tmp_path, capsys):
    config = PseudoLabelConfig(rounds=2, thresholds=[0.99999], train=_train_cfg())
    reports = pseudo_label_rounds(world["bundle"], world["labelled"], world["pool"], config,
                                  tmp_path / "out")
    assert len(reports) == 1  # the run stops: a higher threshold cannot keep more
    (report,) = reports
    assert not report.trained and report.kept == 0 and report.bundle == str(world["bundle"])
    assert "nothing trained" in report.note and "most confident" in report.note
    assert report.test_after == report.test_before
    # the CLI says so in one line
    code, _, err = run_main(capsys, "pseudo-label", "--model", world["bundle"], "--data",
                            world["labelled"], "--pool", world["root"] / "pool", "--out",
                            tmp_path / "cli", "--threshold", "0.99999", "--training-profile",
                            "tiny", "--set", "device=cpu")
    assert "nothing trained" in one_line_error(code, err)


def test_unreadable_images_are_counted_and_skipped(world):
    from roadvision.models.bundle import load_bundle

    good = world["pool"][0].image
    preds, unreadable = predict_pool([load_bundle(world["bundle"])],
                                     pool_from_bytes([b"not an image", good, b""]))
    assert unreadable == 2 and [p.index for p in preds] == [1]


def test_payload_log_rows_become_a_pool_once_per_image(world):
    good = world["pool"][0].image
    frame = pd.DataFrame({"image": [good, good, None], "image_sha256": ["a", "a", "b"],
                          "metadata": ['{"weather": "Foggy", "gps": [40.4, -79.9]}', None,
                                       None]})
    (item,) = pool_from_frame(frame)
    assert item.id == "a" and item.metadata == {"weather": "Foggy", "lat": 40.4, "lon": -79.9}
    with pytest.raises(UserError, match="no image bytes"):
        pool_from_frame(frame.assign(image=None))


def test_lanes_tiles_get_masks_confidences_and_dominant_classes(tmp_path):
    from roadvision.data.synth import generate
    from roadvision.models import create_model

    generate("lanes", 2, 0, tmp_path / "tiles", size="tiny")
    pool = pool_from_folder(tmp_path / "tiles")
    model = create_model("lanes_tiny")
    preds, _ = predict_pool([model], pool)
    assert len(preds) == 2
    for p, item in zip(preds, pool, strict=True):
        assert p.mask.shape == np.shape(item.truth) and p.mask.dtype == np.uint8
        assert 0.25 <= p.confidence <= 1.0 and 0 <= p.group < 4
        assert 0.0 <= p.correct <= 1.0  # pixel agreement with the tile's true mask


def test_a_lanes_tile_is_as_confident_as_its_painted_pixels():
    import torch

    from roadvision.training.pseudo_label import _answer

    # 4 classes, 10x10: background certain everywhere except a 1x5 stripe painted as class 2
    # at 0.6, so the mean over all pixels is ~0.98 but the marking itself is unsure
    p = torch.zeros(4, 10, 10)
    p[0] = 0.99
    p[1] = 0.01
    p[:, 4, 2:7] = torch.tensor([0.3, 0.05, 0.6, 0.05]).view(4, 1)
    pred = _answer("lanes", 0, p, None)
    assert pred.group == 2 and int((pred.mask == 2).sum()) == 5
    assert pred.confidence == pytest.approx(0.6)
    assert float(p.max(dim=0).values.mean()) > 0.97  # what an all-pixel mean would say
    empty = torch.zeros(4, 10, 10)
    empty[0] = 0.9
    empty[3] = 0.1
    blank = _answer("lanes", 1, empty, None)  # nothing painted: the whole tile's mean
    assert blank.group == 0 and blank.confidence == pytest.approx(0.9)


def test_only_blank_lanes_tiles_are_not_a_pseudo_label_set():
    from roadvision.training.pseudo_label import PoolPrediction, select_confident

    blank = [PoolPrediction(i, 0.99, 0) for i in range(5)]
    kept, confident = select_confident(blank, 0.9, 2.0, ())
    assert kept == [] and confident == 5
    marked = [*blank, PoolPrediction(9, 0.95, 2)]
    kept, _ = select_confident(marked, 0.9, 2.0, ())
    assert sorted(p.index for p in kept) == [0, 1, 9]  # blank capped at 2 x the 1 marked tile
