"""Error analysis: failures listed with metadata, an HTML report with every section."""

from __future__ import annotations

import re

import pandas as pd
import torch
from _training import make_lanes, make_roadwork

from roadvision.evaluation import error_analysis
from roadvision.evaluation.error_analysis import model_label, retitle

SECTIONS = ('id="summary"', 'id="slices"', 'id="confusion"', 'id="gallery"', 'id="failures"')


def test_roadwork_report(tmp_path):
    from roadvision.models import create_model
    from roadvision.models.bundle import save_bundle

    data = make_roadwork(tmp_path / "data", n=30, size=32)
    torch.manual_seed(0)
    save_bundle(create_model("roadwork_tiny"), tmp_path / "bundle")
    path = error_analysis(tmp_path / "bundle", data, tmp_path / "ea", split="test")
    text = path.read_text()
    assert path.name == "error_analysis.html"  # a browser opens it as a page
    assert all(s in text for s in SECTIONS) and 'id="reliability"' in text
    # read by people: titled for the model (not the folder), the summary a table with counts
    # as integers and 3 decimals, undefined numbers as n/a, synthetic data said so
    assert "<title>Error analysis: roadwork_tiny bundle " in text and "bundle</h1>" not in text
    summary = text.split('id="summary-table"')[1].split("</table>")[0]
    assert re.search(r"<th>images</th><td>\d+</td>", summary)
    assert re.search(r"<th>mcc</th><td>-?\d\.\d{3}</td>", summary)
    assert "<NA>" not in text and "NULL" not in text and not re.search(r">[1-9]\d+\.000<", text)
    assert 'id="synthetic"' in text and "Synthetic data" in text
    page = retitle(text, model_label("roadwork", 3))
    assert "<title>Error analysis: roadwork v3</title>" in page
    assert '<h1 id="title">Error analysis: roadwork v3</h1>' in page
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
    legend = gallery.split('id="legend"')[1].split("</p>")[0]  # what the overlay colours mean
    assert legend.count('class="swatch"') == 3 and "yellow_solid" in legend


def test_undefined_slice_metrics_are_labelled_not_invisible():
    import matplotlib

    from roadvision.evaluation.error_analysis import _slice_plots

    matplotlib.use("Agg", force=True)
    result = {"task": "roadwork", "slices": {"weather": {
        "clear": {"n": 24, "mcc": 0.6}, "foggy": {"n": 3, "mcc": None}}}}
    [img] = _slice_plots(result)
    assert 'alt="mcc by weather; n/a: foggy"' in img
