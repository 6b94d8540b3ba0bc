"""evaluate(): output keys and slices, the NATIX protocol, and a metric that cannot flatter."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from _training import make_lanes, make_roadwork

from roadvision.errors import UserError
from roadvision.evaluation import calibrate, evaluate
from roadvision.evaluation.natix import (
    NATIX_SIZE,
    jpeg_roundtrip,
    natix_hook,
    natix_level,
    natix_pipeline,
)
from roadvision.training import TrainConfig, train


@pytest.fixture(scope="module")
def rw_bundle(tmp_path_factory) -> tuple[Path, Path]:
    from roadvision.models import create_model
    from roadvision.models.bundle import save_bundle

    root = tmp_path_factory.mktemp("ev")
    data = make_roadwork(root / "data", n=24, size=32)
    torch.manual_seed(0)
    save_bundle(create_model("roadwork_tiny"), root / "bundle")
    return root / "bundle", data


def test_roadwork_evaluate_keys_slices_and_files(rw_bundle, tmp_path):
    bundle, data = rw_bundle
    res = evaluate(bundle, data, split="test", out_dir=tmp_path)
    n_test = int((pd.read_parquet(data / "manifest.parquet")["split"] == "test").sum())
    assert res["n"] == n_test == 4 and res["split"] == "test"
    assert res["headline"] == res["metrics"]["mcc"]
    assert {"mcc", "accuracy", "precision", "recall", "f1", "auroc", "ece",
            "confusion_matrix"} <= set(res["metrics"])
    assert set(res["slices"]) >= {"weather", "daytime", "scene", "city", "confidence"}
    assert sum(v["n"] for v in res["slices"]["city"].values()) == n_test
    assert "null" in res["slices"]["weather"]  # NULL metadata is its own slice
    assert res["calibration"]["threshold"] == 0.5
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["headline"] == res["headline"]
    preds = pd.read_parquet(tmp_path / "predictions.parquet")
    assert len(preds) == n_test
    assert {"id", "image", "prob", "pred", "label", "confidence", "city", "weather"} <= set(preds)
    assert ((preds["prob"] >= 0.5).astype(int) == preds["pred"]).all()


def test_evaluate_reads_only_the_requested_split(rw_bundle, tmp_path):
    bundle, data = rw_bundle
    # copy the data set and break every file outside the val split: val evaluation still works
    import shutil

    copy = tmp_path / "data"
    shutil.copytree(data, copy)
    df = pd.read_parquet(copy / "manifest.parquet")
    for name in df.loc[df["split"] != "val", "image"]:
        (copy / name).write_bytes(b"broken")
    res = evaluate(bundle, copy, split="val")
    assert res["n"] == int((df["split"] == "val").sum())
    with pytest.raises(UserError, match="tta"):
        evaluate(bundle, copy, split="val", tta="bogus")


def test_flip_tta_runs(rw_bundle):
    bundle, data = rw_bundle
    res = evaluate(bundle, data, split="val", tta="flip")
    assert res["tta"] == "flip" and -1.0 <= res["headline"] <= 1.0


def test_natix_protocol_inputs_are_224_jpeg_without_metadata(rw_bundle):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (300, 400, 3), dtype=np.uint8)
    hook = natix_hook(seed=0)
    outs = [hook(img, i) for i in range(4)]
    assert all(o.shape == (NATIX_SIZE, NATIX_SIZE, 3) and o.dtype == np.uint8 for o in outs)
    # the last step is a JPEG round trip: re-encoding the level-0 image changes pixels
    q0 = next(q for q in range(50) if natix_level(q, seed=0) == 0)  # levels are drawn
    plain = natix_pipeline(0)(image=img)["image"]
    assert not np.array_equal(hook(img, q0), plain)
    assert np.abs(hook(img, q0).astype(int) - jpeg_roundtrip(plain).astype(int)).max() == 0
    assert hook(img, 5).tobytes() == hook(img, 5).tobytes()  # reproducible per index

    bundle, data = rw_bundle
    from roadvision.models.bundle import load_bundle
    from roadvision.runtime.dataset import ManifestDataset
    from roadvision.runtime.readers import load_rows

    model = load_bundle(bundle)
    ds = ManifestDataset(data, load_rows(data, ["test"]), model.cfg, image_hook=hook,
                         with_metadata=False)
    sample = ds[0]
    assert not bool(sample["gps_mask"])  # no metadata reaches the model
    res = evaluate(bundle, data, split="test", protocol="natix")
    assert res["protocol"] == "natix"
    assert set(res["slices"]["natix_level"]) <= {"0", "1", "2", "3"}
    with pytest.raises(UserError, match="protocol"):
        evaluate(bundle, data, split="test", protocol="imagenet")


def test_lanes_evaluate(tmp_path):
    from roadvision.models import create_model
    from roadvision.models.bundle import save_bundle

    data = make_lanes(tmp_path / "data", n=10, size=64)
    save_bundle(create_model("lanes_tiny"), tmp_path / "bundle")
    res = evaluate(tmp_path / "bundle", data, split="val", out_dir=tmp_path / "ev")
    assert res["headline_name"] == "miou_no_bg"
    assert set(res["metrics"]["per_class_iou"]) == {"background", "white_solid", "white_dashed",
                                                    "yellow_solid"}
    assert res["metrics"]["miou"] is not None
    assert set(res["slices"]) == {"weather", "daytime", "scene", "city"}
    preds = pd.read_parquet(tmp_path / "ev" / "predictions.parquet")
    assert {"iou", "lane_pixels_true", "lane_pixels_pred"} <= set(preds)


@pytest.mark.slow
def test_shuffled_labels_score_mcc_near_zero_while_real_labels_are_learnt(tmp_path):
    """The metric cannot flatter: labels carrying no signal give |MCC| ~ 0 on 128 test images,
    while the same recipe on learnable data scores high (so the check can fail). Val holds 48
    images: enough for calibration to fit (smaller sets keep temperature 1 and warn)."""
    splits = ["train"] * 64 + ["val"] * 48 + ["test"] * 128
    noise = make_roadwork(tmp_path / "noise", n=240, size=32, noise=True, splits=splits)
    cfg = TrainConfig.for_profile("tiny", "roadwork", epochs=3, max_steps_per_epoch=6,
                                  augment="none")
    # the production recipe: train, fit calibration on val (it may overfit val), test once
    bundle = train(noise, tmp_path / "run_noise", cfg.replace(epochs=1)).bundle_dir
    calibrate(bundle, noise, split="val")
    res = evaluate(bundle, noise, split="test")
    assert res["n"] == 128
    assert abs(res["headline"]) < 0.25

    real = make_roadwork(tmp_path / "real", n=240, size=32, splits=splits)
    bundle = train(real, tmp_path / "run_real", cfg).bundle_dir
    calibrate(bundle, real, split="val")
    assert evaluate(bundle, real, split="test")["headline"] > 0.5


def test_segmentation_slices_carry_polyline_f1_summed_per_slice():
    """Two images in two cities: a perfect prediction and an empty one. Each city's slice
    scores its own image (F1 1 and 0), the split sums both (recall 1/2), from one tracing."""
    from roadvision.evaluation.slices import segmentation_slices
    from roadvision.evaluation.vector_metrics import image_vector_lengths
    from roadvision.metrics import seg_confusion

    classes = ["background", "white_solid", "white_dashed", "yellow_solid"]
    truth = np.zeros((64, 64), np.uint8)
    truth[30:32, 4:60] = 1  # a 5.6 m white solid line at 0.1 m/px
    pairs = [(truth, truth.copy()), (truth, np.zeros_like(truth))]
    vectors = image_vector_lengths(pairs, classes, {"extra": {"gsd_m": 0.1}})
    df = pd.DataFrame({"city": ["berlin", "paris"]})
    cms = np.stack([seg_confusion(t, p, 4) for t, p in pairs])
    slices = segmentation_slices(df, cms, classes, fields=["city"], vectors=vectors)
    berlin, paris = slices["city"]["berlin"], slices["city"]["paris"]
    assert berlin["polyline_f1"]["white_solid"] == {"0.5m": 1.0, "1m": 1.0}
    assert paris["polyline_f1"]["white_solid"]["1m"] == 0.0
    assert berlin["polyline_f1_1m"] == 1.0 and paris["polyline_f1_1m"] == 0.0
    assert berlin["polyline_f1"]["white_dashed"]["1m"] is None  # no such line on either side
    assert berlin["per_class_iou"]["white_solid"] == 1.0  # IoU still beside it
    total = vectors.summary()["per_class"]["white_solid"]
    assert total["1m"]["recall"] == pytest.approx(0.5) and total["1m"]["precision"] == 1.0
    one = vectors.per_image[0]["white_solid"]["true"]
    assert 5.0 < one < 6.0 and total["true_length_m"] == pytest.approx(2 * one, abs=1e-3)
    # without vectors the entry is as before
    assert "polyline_f1" not in segmentation_slices(df, cms, classes, ["city"])["city"]["paris"]


def test_lanes_evaluate_slices_gain_polyline_f1_and_keys_stay(tmp_path):
    from roadvision.models import create_model
    from roadvision.models.bundle import save_bundle

    data = make_lanes(tmp_path / "data", n=6, size=64)
    save_bundle(create_model("lanes_tiny"), tmp_path / "bundle")
    res = evaluate(tmp_path / "bundle", data, split=None)
    assert {"headline", "metrics", "slices", "vector_metrics", "n"} <= set(res)
    assert set(res["vector_metrics"]) == {"truth", "gsd_m", "gsd_assumed", "per_class",
                                          "confusion_0.5m"}
    # where the true lines went agrees with the recall it is a breakdown of
    confusion = res["vector_metrics"]["confusion_0.5m"]
    assert set(confusion) - {"none"}, "the generated tiles hold true lines"
    for true, row in confusion.items():
        if true == "none":
            continue
        scores = res["vector_metrics"]["per_class"][true]
        found = (scores["0.5m"]["recall"] or 0.0) * scores["true_length_m"]
        assert row[true] == pytest.approx(found, abs=0.01)
        assert 0.0 <= row["missed"] <= scores["true_length_m"] + 0.01
    for entries in res["slices"].values():
        for entry in entries.values():
            assert {"n", "miou_no_bg", "per_class_iou", "polyline_f1", "polyline_f1_1m"} <= set(
                entry)
            assert set(entry["polyline_f1"]) == {"white_solid", "white_dashed", "yellow_solid"}
    # a slice holding every image scores what the whole split scores
    everyone = {k for k, v in res["slices"]["scene"].items() if v["n"] == res["n"]}
    for key in everyone:
        whole = res["vector_metrics"]["per_class"]
        assert res["slices"]["scene"][key]["polyline_f1"]["white_solid"]["1m"] == \
            whole["white_solid"]["1m"]["f1"]
