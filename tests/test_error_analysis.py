"""Error analysis: failures listed with metadata, an HTML report with every section."""

from __future__ import annotations

import pandas as pd
import torch
from _training import make_lanes, make_roadwork

from roadvision.evaluation import error_analysis

SECTIONS = ('id="summary"', 'id="slices"', 'id="confusion"', 'id="gallery"', 'id="failures"')


def test_roadwork_report(tmp_path):
    from roadvision.models import create_model
    from roadvision.models.bundle import save_bundle

    data = make_roadwork(tmp_path / "data", n=30, size=32)
    torch.manual_seed(0)
    save_bundle(create_model("roadwork_tiny"), tmp_path / "bundle")
    path = error_analysis(tmp_path / "bundle", data, tmp_path / "ea", split="test")
    text = path.read_text()
    assert all(s in text for s in SECTIONS) and 'id="reliability"' in text
    assert text.count("data:image/png;base64,") >= 6  # 4 slice bars, reliability, confusion
    preds = pd.read_parquet(tmp_path / "ea" / "predictions.parquet")
    fails = pd.read_csv(tmp_path / "ea" / "failures.csv")
    assert len(fails) == int((preds["pred"] != preds["label"]).sum())
    if len(fails):
        assert {"image_path", "confidence", "city", "weather", "daytime", "scene"} <= set(fails)
        assert fails["confidence"].is_monotonic_decreasing  # most confident mistakes first


def test_lanes_report_has_overlays(tmp_path):
    from roadvision.models import create_model
    from roadvision.models.bundle import save_bundle

    data = make_lanes(tmp_path / "data", n=10, size=64)
    save_bundle(create_model("lanes_tiny"), tmp_path / "bundle")  # untrained: every tile fails
    path = error_analysis(tmp_path / "bundle", data, tmp_path / "ea", split="test",
                          max_gallery=2)
    text = path.read_text()
    assert all(s in text for s in SECTIONS) and 'id="per-class"' in text
    fails = pd.read_csv(tmp_path / "ea" / "failures.csv")
    assert len(fails) >= 1
    gallery = text.split('id="gallery"')[1].split("</section>")[0]
    assert gallery.count("<img") == min(2, len(fails))
