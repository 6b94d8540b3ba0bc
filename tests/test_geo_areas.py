"""The 12-class taxonomy as vectors: crosswalks as polygons, arrows as points, other markings
as polygons, beside the lines; kept whole at an area's edge; one GeoPackage layer per geometry
kind; and a 12-class model trained, then mapped, end to end (synthetic data)."""

from __future__ import annotations

import json

import numpy as np
import pyogrio
import pytest
import torch
from affine import Affine
from pyogrio.raw import read as ogr_read
from shapely import from_wkb
from shapely.geometry import box

from roadvision.data.contract import LANE_CLASSES_12
from roadvision.data.synth.geotiff import city_named, write_tiles
from roadvision.data.synth.lanes import render_lanes
from roadvision.geo.areas import AREA_FIELDS, build_area_features, trace_areas
from roadvision.geo.features import (
    FEATURE_FIELDS,
    build_features,
    clip_features,
    number_features,
    trace_block,
)
from roadvision.geo.writers import write_geojson, write_gpkg
from tests._cli import run_main

CLASSES = list(LANE_CLASSES_12)
XWALK, ARROW, WS = CLASSES.index("crosswalk"), CLASSES.index("arrow"), CLASSES.index("white_solid")
GSD = 0.1
T = Affine(GSD, 0, 500_000.0, 0, -GSD, 5_800_000.0)


def _scene() -> np.ndarray:
    """A 6-stripe zebra (stripes 0.5 m wide, 0.5 m apart, 3 m long), a vertical arrow (shaft and
    head) and a long white line, on a 200 x 120 px (20 x 12 m) tile."""
    ids = np.zeros((120, 200), np.uint8)
    for k in range(6):
        ids[20:50, 20 + 10 * k:25 + 10 * k] = XWALK
    ids[70:100, 140:142] = ARROW  # shaft, 3 m
    for r in range(8):  # head: a triangle on top of the shaft
        ids[62 + r, 141 - r:142 + r] = ARROW
    ids[110:112, 5:195] = WS
    return ids


def _features(ids: np.ndarray, cut: int | None = None) -> list[dict]:
    """Lines + areas of ``ids``, traced as one block or as two blocks cut at column ``cut``."""
    conf = np.full(ids.shape, 0.9, np.float32)
    blocks = [(0, ids.shape[1])] if cut is None else [(0, cut), (cut, ids.shape[1])]
    pieces, patches = [], []
    for c0, c1 in blocks:
        t = T @ Affine.translation(c0, 0)
        pieces += trace_block(ids[:, c0:c1], conf[:, c0:c1], t, GSD, len(CLASSES),
                              skip={XWALK, ARROW, CLASSES.index("other_marking")})
        patches += trace_areas(ids[:, c0:c1], conf[:, c0:c1], t, GSD, CLASSES)
    return number_features(build_features(pieces, CLASSES) + build_area_features(patches, CLASSES))


@pytest.mark.parametrize("cut", [None, 43], ids=["one block", "zebra cut by a block seam"])
def test_crosswalk_arrow_and_line_each_become_their_own_kind_of_feature(cut):
    feats = _features(_scene(), cut)
    by_class = {}
    for f in feats:
        by_class.setdefault(f["class"], []).append(f)
    assert sorted(by_class) == ["arrow", "crosswalk", "white_solid"]  # no zebra "lines"
    (zebra,) = by_class["crosswalk"]
    assert zebra["geometry"].geom_type == "Polygon"
    assert zebra["stripe_count"] == 6
    assert zebra["area_m2"] == pytest.approx(6 * 0.5 * 3.0, rel=0.02)
    # the outline spans the stripes and their gaps: 5.5 m x 3 m, half of it painted (new paint)
    assert zebra["geometry"].area == pytest.approx(5.5 * 3.0, rel=0.05)
    assert zebra["wear"] == pytest.approx(0.0, abs=0.1)
    (arrow,) = by_class["arrow"]
    assert arrow["geometry"].geom_type == "Point"
    assert arrow["orientation_deg"] in (pytest.approx(0.0, abs=8), pytest.approx(180.0, abs=8))
    x, y = T * (141, 80)
    assert arrow["geometry"].distance(box(x - 1, y - 2, x + 1, y + 2)) == 0
    (line,) = by_class["white_solid"]
    assert line["length_m"] == pytest.approx(19.0, abs=0.5)
    assert [f["id"] for f in feats] == list(range(1, len(feats) + 1))
    assert {"area_m2", "confidence", "wear", "stripe_count"} <= set(zebra) <= {
        "geometry", *AREA_FIELDS}


def test_a_worn_crossing_says_so():
    ids = _scene()
    ids[20:50, 20:80][np.random.default_rng(0).random((30, 60)) < 0.5] = 0  # half the paint gone
    (zebra,) = [f for f in _features(ids) if f["class"] == "crosswalk"]
    assert 0.3 < zebra["wear"] < 0.8


def test_an_area_s_edge_cuts_lines_but_keeps_crossings_and_arrows_whole():
    feats = _features(_scene())
    x0, y0 = T * (0, 0)
    # the area ends at 4 m from the left: through the zebra, the line, not the arrow
    area = box(x0, y0 - 12, x0 + 4.0, y0)
    kept = {f["class"]: f for f in clip_features(feats, area)}
    assert set(kept) == {"crosswalk", "white_solid"}
    assert kept["crosswalk"]["geometry"].area == pytest.approx(5.5 * 3.0, rel=0.05)  # whole
    assert kept["white_solid"]["length_m"] == pytest.approx(3.5, abs=0.3)  # cut


def test_geopackage_has_a_layer_per_geometry_kind_and_geojson_each_kind_s_attributes(tmp_path):
    feats = _features(_scene())
    fields = [*FEATURE_FIELDS, *(f for f in AREA_FIELDS if f not in FEATURE_FIELDS)]
    write_gpkg(tmp_path / "m.gpkg", feats, "EPSG:32633", fields)
    layers = {name: kind for name, kind in pyogrio.list_layers(tmp_path / "m.gpkg")}
    assert layers == {"lane_markings": "LineString", "lane_markings_areas": "Polygon",
                      "lane_markings_points": "Point"}
    meta, _, geoms, cols = ogr_read(str(tmp_path / "m.gpkg"), layer="lane_markings_areas")
    props = dict(zip(meta["fields"], cols, strict=True))
    assert "length_m" not in props and list(props["stripe_count"]) == [6]
    assert from_wkb(geoms[0]).area == pytest.approx(5.5 * 3.0, rel=0.05)
    meta, _, _, cols = ogr_read(str(tmp_path / "m.gpkg"), layer="lane_markings_points")
    props = dict(zip(meta["fields"], cols, strict=True))
    assert list(props["class"]) == ["arrow"] and "stripe_count" not in props
    assert 0 <= props["orientation_deg"][0] < 180

    write_geojson(tmp_path / "m.geojson", feats, "EPSG:32633", fields)
    doc = json.loads((tmp_path / "m.geojson").read_text())
    kinds = {f["properties"]["class"]: f for f in doc["features"]}
    assert kinds["arrow"]["geometry"]["type"] == "Point"
    assert "dash_count" in kinds["white_solid"]["properties"]
    assert "dash_count" not in kinds["crosswalk"]["properties"]
    assert kinds["crosswalk"]["properties"]["stripe_count"] == 6


def test_the_generator_s_junction_paint_maps_to_crossings_and_arrows():
    """The renderer's own 12-class mask (a model's ceiling) gives crossing polygons with their
    stripes counted and arrow points, never zebra stripes as lane lines."""
    found = {"crosswalk": 0, "arrow": 0}
    for seed in range(12):
        rng = np.random.default_rng(seed)
        sample = render_lanes(rng, city_named("berlin", rng), 384, 384, gsd_m=GSD)
        feats = _features(sample.mask)
        for f in feats:
            if f["class"] == "crosswalk":
                found["crosswalk"] += 1
                assert f["stripe_count"] >= 2 and f["geometry"].geom_type == "Polygon"
            elif f["class"] == "arrow":
                found["arrow"] += 1
                assert f["geometry"].geom_type == "Point"
            elif f["class"] == "other_marking":
                assert f["geometry"].geom_type in ("Polygon", "MultiPolygon")
            else:
                assert f["geometry"].geom_type in ("LineString", "MultiLineString")
        if all(found.values()):
            break
    assert all(found.values()), found


def test_a_12_class_model_trains_and_maps_a_geotiff(tmp_path, capsys):
    from roadvision.data.split import split_dataset
    from roadvision.data.synth import generate
    from roadvision.models.bundle import load_bundle
    from roadvision.training import TrainConfig, train

    generate("lanes", 16, 0, tmp_path / "raw", size="tiny", num_classes=12)
    data = tmp_path / "data"
    split_dataset(tmp_path / "raw", data, min_distance_m=0, val_fraction=0.25,
                  test_fraction=0.25)
    torch.manual_seed(0)
    cfg = TrainConfig.for_profile("tiny", "lanes", epochs=1, max_steps_per_epoch=2, patience=0)
    bundle_dir = train(data, tmp_path / "m", cfg).bundle_dir
    model = load_bundle(bundle_dir)
    assert list(model.cfg.classes) == CLASSES
    tiles = write_tiles(tmp_path / "tiles", 1, seed=3, size=(128, 128), gsd=0.1, city="berlin",
                        num_classes=12)
    code, _, err = run_main(capsys, "predict", "--model", bundle_dir, tiles[0].image,
                            "--out", tmp_path / "out")
    assert code == 0, err
    gpkg = tmp_path / "out" / f"{tiles[0].image.stem}.gpkg"
    for name, _ in pyogrio.list_layers(gpkg):
        meta, _, geoms, cols = ogr_read(str(gpkg), layer=name)
        props = dict(zip(meta["fields"], cols, strict=True))
        assert set(props.get("class", [])) <= set(CLASSES[1:])
        assert {"model", "model_version", "imagery_id"} <= set(props)
