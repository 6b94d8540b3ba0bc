"""roadvision.geo: skeleton tracing, dash joining, feature attributes, vector metrics, writers,
and the generator's georeferenced tiles with their ground truth (no torch)."""

from __future__ import annotations

import numpy as np
import pyogrio
import pytest
from affine import Affine
from pyogrio.raw import read as ogr_read
from shapely import LineString, from_wkb
from shapely.geometry import box

from roadvision.data.synth import sample_rng
from roadvision.data.synth.geotiff import city_named, tile_truth, write_tiles
from roadvision.data.synth.lanes import render_lanes
from roadvision.errors import UserError
from roadvision.geo.features import FEATURE_FIELDS, build_features, clip_features, trace_block
from roadvision.geo.lines import JoinRule, join_pieces
from roadvision.geo.metrics import line_confusion, polyline_scores
from roadvision.geo.raster import open_info
from roadvision.geo.skeleton import skeleton_paths
from roadvision.geo.writers import write_geojson, write_gpkg

CLASSES = ["background", "white_solid", "white_dashed", "yellow_solid"]
GSD = 0.1
T = Affine(GSD, 0, 500_000.0, 0, -GSD, 5_800_000.0)  # UTM-like metres


def test_skeleton_of_a_thick_line_is_one_centre_path():
    mask = np.zeros((40, 120), bool)
    mask[18:21, 10:110] = True  # 3 px wide, 100 px long
    paths = skeleton_paths(mask)
    assert len(paths) == 1
    rows, cols = paths[0][:, 0], paths[0][:, 1]
    assert np.all(np.abs(rows - 19) <= 1) and cols.max() - cols.min() >= 95


def test_skeleton_of_a_cross_has_four_arms():
    mask = np.zeros((61, 61), bool)
    mask[29:32, 5:56] = True
    mask[5:56, 29:32] = True
    lengths = sorted(len(p) for p in skeleton_paths(mask))
    assert sum(1 for n in lengths if n > 15) == 4


def _dashes(y: float, x0: float, n: int, dash: float, gap: float) -> list[LineString]:
    return [LineString([(x0 + k * (dash + gap), y), (x0 + k * (dash + gap) + dash, y)])
            for k in range(n)]


def test_dashes_of_one_line_join_but_parallel_lines_do_not():
    left = _dashes(0.0, 0.0, 5, 3.0, 9.0)
    right = _dashes(3.5, 0.0, 5, 3.0, 9.0)  # the next lane separator, 3.5 m away
    chains = join_pieces(left + right, JoinRule(max_gap=13.0))
    assert sorted(len(c.pieces) for c in chains) == [5, 5]
    for c in chains:
        ys = {round(y, 6) for _, y in c.geometry.coords}
        assert len(ys) == 1  # each chain stays on its own line
        assert c.geometry.length == pytest.approx(4 * 12 + 3)
        assert c.paint_ratio == pytest.approx(15 / 51)


def test_a_crossing_line_does_not_join_and_reversed_pieces_are_oriented():
    a = LineString([(0, 0), (10, 0)])
    b = LineString([(20, 0), (12, 0)])  # reversed, 2 m gap: joins
    c = LineString([(11, 1), (11, 10)])  # perpendicular, near the gap: never joins
    chains = join_pieces([a, b, c], JoinRule(max_gap=3.0))
    joined = next(ch for ch in chains if len(ch.pieces) == 2)
    assert list(joined.geometry.coords)[0] == (0, 0) and list(joined.geometry.coords)[-1] == (20, 0)
    assert any(ch.pieces == [2] for ch in chains)


def test_features_carry_measured_attributes():
    classes = np.zeros((100, 400), np.uint8)
    classes[49:51, 10:390] = 1  # a 2 px (20 cm) white solid line, 38 m
    for k in range(6):  # white dashed: 3 m dashes, 6 m gaps
        classes[79:81, 10 + 90 * k:40 + 90 * k] = 2
    conf = np.full(classes.shape, 0.8, np.float32)
    feats = build_features(trace_block(classes, conf, T, GSD, 4), CLASSES)
    solid = [f for f in feats if f["class"] == "white_solid"]
    dashed = [f for f in feats if f["class"] == "white_dashed"]
    assert len(solid) == 1 and len(dashed) == 1
    assert solid[0]["length_m"] == pytest.approx(38.0, abs=0.5)
    assert solid[0]["width_m"] == pytest.approx(0.2, abs=0.06)
    assert solid[0]["confidence"] == pytest.approx(0.8)
    assert solid[0]["dash_count"] == 1 and solid[0]["wear"] < 0.05
    assert dashed[0]["dash_count"] == 5 or dashed[0]["dash_count"] == 6
    assert dashed[0]["paint_ratio"] == pytest.approx(1 / 3, abs=0.05)
    assert dashed[0]["wear"] < 0.15  # as painted for a 1:2 dashed line
    assert {f["id"] for f in feats} == {1, 2}
    assert set(FEATURE_FIELDS) <= set(feats[0])


def test_worn_solid_line_scores_wear():
    classes = np.zeros((60, 400), np.uint8)
    for k in range(8):  # a solid line with half of its paint gone, in 2.5 m pieces
        classes[29:31, 10 + 50 * k:35 + 50 * k] = 1
    feats = build_features(trace_block(classes, np.ones(classes.shape, np.float32), T, GSD, 4),
                           CLASSES)
    assert len(feats) == 1 and feats[0]["wear"] == pytest.approx(0.5, abs=0.08)


def test_clip_cuts_lines_at_the_area_edge():
    f = {"id": 1, "class": "white_solid", "geometry": LineString([(0, 0), (10, 0)]),
         "length_m": 10.0}
    out = clip_features([f], box(-1, -1, 4, 1))
    assert out[0]["length_m"] == pytest.approx(4.0) and f["length_m"] == 10.0
    assert clip_features([f], box(20, 20, 30, 30)) == []


def _truth_tile(index: int):
    rng = sample_rng(3, "lanes", index)
    sample = render_lanes(rng, city_named("berlin", rng), 384, 384, gsd_m=GSD)
    return sample, tile_truth(sample.meta, 384, 384, T, GSD)


def test_vector_metrics_are_exact_on_the_generators_truth():
    sample, truth = _truth_tile(6)
    assert truth, "tile 6 has a road"
    lines = [(f["class"], f["geometry"]) for f in truth]
    same = polyline_scores(lines, lines, CLASSES[1:])
    present = [c for c in CLASSES[1:] if same[c]["true_length_m"] > 0]
    assert present
    for c in present:
        for tol in ("0.5m", "1m"):
            assert same[c][tol]["f1"] == pytest.approx(1.0)
    # every line moved 2 m sideways: nothing lies within 1 m any more
    shifted = [(c, g.offset_curve(2.0)) for c, g in lines]
    moved = polyline_scores(shifted, lines, CLASSES[1:])
    for c in present:
        assert moved[c]["1m"]["f1"] < 0.2, moved[c]
    # half the truth predicted: recall about 1/2, precision 1
    half = polyline_scores(lines[::2], lines, CLASSES[1:])
    c = present[0]
    assert half[c]["1m"]["precision"] == pytest.approx(1.0)
    assert half[c]["1m"]["recall"] < 1.0


def test_metrics_on_missing_and_spurious_classes():
    line = LineString([(0, 0), (10, 0)])
    scores = polyline_scores([("white_solid", line)], [("yellow_solid", line)], CLASSES[1:])
    assert scores["white_solid"]["1m"]["f1"] == 0.0  # predicted where there is none
    assert scores["yellow_solid"]["1m"]["f1"] == 0.0  # missed
    assert scores["white_dashed"]["1m"]["f1"] is None  # nothing to measure


def test_line_confusion_says_what_a_true_line_was_called():
    yellow = LineString([(0, 0), (10, 0)])
    white = LineString([(0, 5), (8, 5)])
    pred = [("white_dashed", LineString([(0, 0.2), (6, 0.2)])),  # yellow called white dashed
            ("yellow_solid", LineString([(6, 0.1), (10, 0.1)])),
            ("white_solid", LineString([(0, 5), (8, 5)]))]
    rows = line_confusion(pred, [("yellow_solid", yellow), ("white_solid", white)],
                          CLASSES[1:])
    assert set(rows) == {"yellow_solid", "white_solid", "none"}  # no true dashed: no row
    assert rows["yellow_solid"]["white_dashed"] == pytest.approx(6.0)
    assert rows["yellow_solid"]["yellow_solid"] == pytest.approx(4.0)
    assert rows["yellow_solid"]["missed"] == pytest.approx(0.0)
    assert rows["white_solid"] == pytest.approx(
        {"white_solid": 8.0, "white_dashed": 0.0, "yellow_solid": 0.0, "missed": 0.0})
    assert rows["none"] == pytest.approx(
        {"white_solid": 0.0, "white_dashed": 0.0, "yellow_solid": 0.0})
    alone = line_confusion([], [("yellow_solid", yellow)], CLASSES[1:])
    assert alone["yellow_solid"]["missed"] == pytest.approx(10.0)
    stray = line_confusion([("white_dashed", LineString([(0, 20), (3, 20)]))],
                           [("yellow_solid", yellow)], CLASSES[1:])
    assert stray["none"]["white_dashed"] == pytest.approx(3.0)  # near no true line at all


def test_truth_follows_the_mask_the_renderer_labels():
    sample, truth = _truth_tile(6)
    mask = sample.meta["mask4"]
    pieces = trace_block(mask, np.ones(mask.shape, np.float32), T, GSD, 4)
    feats = build_features(pieces, CLASSES)
    scores = polyline_scores([(f["class"], f["painted"]) for f in feats],
                             [(f["class"], f["geometry"]) for f in truth], CLASSES[1:])
    # the mask is the truth minus occluded and worn paint: precision is high
    for c in CLASSES[1:]:
        if scores[c]["pred_length_m"] > 5:
            assert scores[c]["1m"]["precision"] > 0.9, (c, scores[c])


def test_generated_tiles_are_georeferenced_near_the_city(tmp_path):
    tiles = write_tiles(tmp_path / "g", 2, seed=1, size=(64, 48), gsd=0.08, city="oslo")
    info = open_info(tiles[1].image)
    assert info.crs.to_epsg() == 32632 and info.gsd == pytest.approx(0.08)
    assert (info.width, info.height) == (64, 48)
    left, bottom, right, top = info.bounds
    assert right - left == pytest.approx(64 * 0.08)
    from pyproj import Transformer

    lon, lat = Transformer.from_crs(32632, 4326, always_xy=True).transform(left, top)
    assert abs(lat - 59.91) < 0.01 and abs(lon - 10.75) < 0.01
    meta = pyogrio.read_info(str(tiles[1].truth))
    assert meta["crs"] == "EPSG:32632"
    with pytest.raises(UserError, match="not empty"):
        write_tiles(tmp_path / "g", 3, seed=1, size=(64, 48), gsd=0.08, city="oslo")


def test_writers_round_trip(tmp_path):
    feats = [{"id": 1, "class": "white_solid", "length_m": 10.0, "width_m": 0.12,
              "confidence": 0.9, "wear": 0.1, "dash_count": 1, "paint_ratio": 0.9,
              "geometry": LineString([(500_000, 5_800_000), (500_010, 5_800_000)])}]
    fields = list(FEATURE_FIELDS)
    write_geojson(tmp_path / "a.geojson", feats, "EPSG:32633", fields)
    write_gpkg(tmp_path / "a.gpkg", feats, "EPSG:32633", fields)
    _, _, geoms, cols = ogr_read(str(tmp_path / "a.geojson"))
    lon, lat = from_wkb(geoms[0]).coords[0]
    assert 14.9 < lon < 15.1 and 52.3 < lat < 52.4  # UTM 33N near 15 E
    meta, _, geoms, cols = ogr_read(str(tmp_path / "a.gpkg"))
    assert meta["crs"] == "EPSG:32633"
    assert from_wkb(geoms[0]).length == pytest.approx(10.0)
    assert list(meta["fields"]) == fields


def test_mask_vector_metrics_for_evaluate():
    from roadvision.evaluation.vector_metrics import mask_vector_metrics

    truth = np.zeros((128, 128), np.uint8)
    truth[60:62, 4:124] = 1
    truth[4:124, 30:32] = 3
    shifted = np.roll(truth, 20, axis=(0, 1))  # 2 m at 10 cm/px
    same = mask_vector_metrics([(truth, truth)], CLASSES, {"extra": {"gsd_m": 0.1}})
    assert same["gsd_m"] == 0.1 and same["gsd_assumed"] is False
    for c in ("white_solid", "yellow_solid"):
        assert same["per_class"][c]["0.5m"]["f1"] == pytest.approx(1.0)
    moved = mask_vector_metrics([(truth, shifted), (truth, truth)], CLASSES, {})
    assert moved["gsd_assumed"] is True
    # half the tiles right, half 2 m off: length-weighted over both tiles
    assert moved["per_class"]["white_solid"]["1m"]["f1"] == pytest.approx(0.5, abs=0.05)
    assert moved["per_class"]["white_dashed"]["1m"]["f1"] is None


def test_blocks_cover_the_grid_once_with_context():
    from roadvision.geo.raster import plan_blocks

    blocks = plan_blocks(300, 500, block=128, margin=16)
    seen = np.zeros((300, 500), int)
    for b in blocks:
        r0, c0, r1, c1 = b.core
        assert b.row >= 0 and b.col >= 0 and b.row + b.height <= 300 and b.col + b.width <= 500
        assert r1 - r0 <= 128 and c1 - c0 <= 128 and b.height <= 128 + 32
        row, col = b.core_origin
        seen[row:row + r1 - r0, col:col + c1 - c0] += 1
    assert (seen == 1).all()
    inner = [b for b in blocks if b.core[0] == 16 and b.core[1] == 16]
    assert inner, "blocks away from the edge carry their margin"
    area = plan_blocks(300, 500, block=128, margin=16, area=(100, 200, 150, 260))
    assert len(area) == 1 and area[0].core_origin == (100, 200)


def test_windows_are_read_resampled_to_the_target_gsd(tmp_path):
    import rasterio

    from roadvision.geo.raster import output_grid, plan_blocks, read_block

    tiles = write_tiles(tmp_path / "g", 1, seed=2, size=(200, 120), gsd=0.05, city="tokyo")
    info = open_info(tiles[0].image)
    height, width, transform = output_grid(info, 0.1)
    assert (height, width) == (60, 100) and transform.a == pytest.approx(0.1)
    assert (transform.c, transform.f) == (info.transform.c, info.transform.f)
    with rasterio.open(tiles[0].image) as ds:
        full = ds.read().transpose(1, 2, 0).astype(float)
        parts = [(b, read_block(ds, info, 0.1, b)) for b in plan_blocks(height, width, 32, 4)]
    for b, img in parts:
        assert img.shape == (b.height, b.width, 3) and img.dtype == np.uint8
    b, img = parts[0]
    # a 2x2 mean of the source is what bilinear down-sampling by 2 gives, to rounding
    src = full[: 2 * b.height, : 2 * b.width].reshape(b.height, 2, b.width, 2, 3).mean((1, 3))
    assert np.abs(img.astype(float) - src).mean() < 4.0


def test_rasters_the_pipeline_cannot_use_are_refused(tmp_path):
    import rasterio

    path = tmp_path / "geographic.tif"
    with rasterio.open(path, "w", driver="GTiff", width=8, height=8, count=3, dtype="uint8",
                       crs="EPSG:4326", transform=Affine(1e-6, 0, 13.4, 0, -1e-6, 52.5)) as ds:
        ds.write(np.zeros((3, 8, 8), np.uint8))
    with pytest.raises(UserError, match="not projected"):
        open_info(path)
    grey = tmp_path / "grey.tif"
    with rasterio.open(grey, "w", driver="GTiff", width=8, height=8, count=1, dtype="uint8",
                       crs="EPSG:32633", transform=T) as ds:
        ds.write(np.zeros((1, 8, 8), np.uint8))
    with pytest.raises(UserError, match="needs 3"):
        open_info(grey)
