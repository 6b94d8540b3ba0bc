"""``roadvision predict`` end to end: generated GeoTIFF -> lane-marking vectors, images -> a
predictions table, and the bad inputs (no CRS, unreadable, foreign --out, area not covered).

The bundles are random-init tiny presets (``lanes_tiny``, ``roadwork_tiny``): what is checked
is the path (georeference, resampling to the bundle's GSD, attributes, files), not accuracy,
which ``benchmarks/bench_geo.py`` measures.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import rasterio
import torch
from PIL import Image
from pyogrio.raw import read as ogr_read
from pyproj import Transformer
from shapely import box, from_wkb

from roadvision.data.synth.geotiff import ACQUIRED, write_tiles
from roadvision.models import create_model
from roadvision.models.bundle import save_bundle, update_bundle_config
from tests._cli import one_line_error, run_main

ATTRIBUTES = ("id", "class", "length_m", "width_m", "confidence", "wear", "dash_count",
              "paint_ratio", "model", "model_version", "imagery_id", "imagery_date")


@pytest.fixture(scope="module")
def geo(tmp_path_factory):
    root = tmp_path_factory.mktemp("geo")
    tiles = write_tiles(root / "tiles", 2, seed=1, size=(256, 256), gsd=0.08, city="berlin")
    torch.manual_seed(0)  # the random init
    lanes = save_bundle(create_model("lanes_tiny"), root / "lanes")
    update_bundle_config(lanes, extra={"gsd_m": 0.1})  # trained at 10 cm/px
    bare = save_bundle(create_model("lanes_tiny"), root / "bare")  # records no GSD
    return {"root": root, "tiles": tiles, "lanes": lanes, "bare": bare}


def test_geotiff_to_geojson_and_geopackage(geo, tmp_path, capsys):
    tile = geo["tiles"][1]
    out = tmp_path / "out"
    code, stdout, err = run_main(capsys, "predict", "--model", geo["lanes"], tile.image,
                                 "--out", out)
    assert code == 0, err
    assert "warning" not in err  # the bundle records its GSD
    name = tile.image.stem
    for suffix in (".geojson", ".gpkg", ".classes.tif"):
        assert (out / f"{name}{suffix}").is_file()

    # class raster: the tile resampled to the bundle's 10 cm, same CRS and origin
    with rasterio.open(tile.image) as src, rasterio.open(out / f"{name}.classes.tif") as cls:
        assert cls.crs == src.crs
        assert cls.res == pytest.approx((0.1, 0.1))
        assert (cls.width, cls.height) == (205, 205)  # ceil(256 * 0.08 / 0.1)
        assert cls.transform.c == pytest.approx(src.transform.c)
        ids = cls.read(1)
        assert ids.max() < 4
        left, bottom, right, top = src.bounds
        epsg = src.crs.to_epsg()

    doc = json.loads((out / f"{name}.geojson").read_text())
    assert doc["roadvision"]["gsd_m"] == 0.1 and doc["roadvision"]["gsd_assumed"] is False
    meta, _, geoms, columns = ogr_read(str(out / f"{name}.geojson"))
    assert len(geoms) > 0, "the random model paints something"
    assert tuple(meta["fields"]) == ATTRIBUTES
    props = dict(zip(meta["fields"], columns, strict=True))
    to_wgs = Transformer.from_crs(epsg, 4326, always_xy=True)
    lon0, lat0, lon1, lat1 = to_wgs.transform_bounds(left, bottom, right, top)
    frame = box(lon0, lat0, lon1, lat1).buffer(1e-6)
    for g in geoms:
        assert frame.contains(from_wkb(g))
    assert set(props["class"]) <= {"white_solid", "white_dashed", "yellow_solid"}
    assert np.all(props["length_m"] > 0) and np.all(props["width_m"] > 0)
    assert np.all((props["confidence"] > 0) & (props["confidence"] <= 1))
    assert np.all((props["wear"] >= 0) & (props["wear"] <= 1))
    assert np.all(props["dash_count"] >= 1)
    assert np.all((props["paint_ratio"] > 0) & (props["paint_ratio"] <= 1))
    assert set(props["model"]) == {"lanes_tiny"} and len(set(props["model_version"])) == 1
    assert set(props["imagery_id"]) == {"synth-berlin-s1-0001"}
    assert {str(d) for d in props["imagery_date"]} == {ACQUIRED}  # read back as a date

    # the GeoPackage: same features, in the raster's CRS (metres), inside its bounds
    gmeta, _, ggeoms, gcols = ogr_read(str(out / f"{name}.gpkg"))
    assert gmeta["crs"] == f"EPSG:{epsg}" and len(ggeoms) == len(geoms)
    lengths = dict(zip(gmeta["fields"], gcols, strict=True))["length_m"]
    for g, length in zip(ggeoms, lengths, strict=True):
        line = from_wkb(g)
        assert box(left, bottom, right, top).buffer(1e-6).contains(line)
        assert line.length == pytest.approx(length, abs=1e-3)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rasters"][0]["features"] == len(geoms)


def test_bbox_clips_and_a_bundle_without_gsd_is_named(geo, tmp_path, capsys):
    tile = geo["tiles"][1]
    left, bottom, right, top = tile.bounds
    to_wgs = Transformer.from_crs(tile.epsg, 4326, always_xy=True)
    lon0, lat0, lon1, lat1 = to_wgs.transform_bounds(left, bottom, (left + right) / 2,
                                                     (bottom + top) / 2)
    out = tmp_path / "clip"
    code, _, err = run_main(capsys, "predict", "--model", geo["bare"], tile.image, "--out",
                            out, "--bbox", f"{lon0},{lat0},{lon1},{lat1}")
    assert code == 0, err
    assert "assuming 0.1 m/px" in err  # stated, not silent
    meta, _, geoms, _ = ogr_read(str(out / f"{tile.image.stem}.geojson"))
    area = box(lon0, lat0, lon1, lat1).buffer(1e-6)
    assert all(area.contains(from_wkb(g)) for g in geoms)
    doc = json.loads((out / f"{tile.image.stem}.geojson").read_text())
    assert doc["roadvision"]["gsd_assumed"] is True

    code, _, err = run_main(capsys, "predict", "--model", geo["lanes"], tile.image, "--out",
                            tmp_path / "far", "--bbox", "10.0,50.0,10.001,50.001")
    assert "does not cover the area" in one_line_error(code, err)
    assert not (tmp_path / "far").exists()


def test_images_give_a_predictions_table(geo, tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(
            images / f"im{i}.png")
    (images / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    road = save_bundle(create_model("roadwork_tiny"), tmp_path / "road")
    code, _, err = run_main(capsys, "predict", "--model", road, images, "--out", tmp_path / "r")
    assert code == 0, err
    table = pd.read_parquet(tmp_path / "r" / "predictions.parquet")
    assert len(table) == 3 and table["error"].notna().sum() == 1
    ok = table[table["error"].isna()]
    assert ok["probability"].between(0, 1).all() and set(ok["label"]) <= {0, 1}
    assert (tmp_path / "r" / "predictions.csv").is_file()

    code, _, err = run_main(capsys, "predict", "--model", geo["lanes"], images / "im0.png",
                            "--out", tmp_path / "l")
    assert code == 0, err
    row = pd.read_parquet(tmp_path / "l" / "predictions.parquet").iloc[0]
    mask = np.array(Image.open(tmp_path / "l" / row["mask"]))
    assert mask.shape == (48, 64) and abs(sum(json.loads(row["class_shares"]).values()) - 1) < 1e-6


def test_bad_inputs_give_one_line(geo, tmp_path, capsys):
    tile = geo["tiles"][0]
    with rasterio.open(tile.image) as src:
        data, profile = src.read(), src.profile
    profile.pop("crs")
    no_crs = tmp_path / "nocrs.tif"
    with rasterio.open(no_crs, "w", **profile) as dst:
        dst.write(data)
    code, _, err = run_main(capsys, "predict", "--model", geo["lanes"], no_crs, "--out",
                            tmp_path / "o1")
    assert "has no CRS" in one_line_error(code, err)

    garbage = tmp_path / "garbage.tif"
    garbage.write_bytes(b"II*\x00 this is no tiff")
    code, _, err = run_main(capsys, "predict", "--model", geo["lanes"], garbage, "--out",
                            tmp_path / "o2")
    assert "not a readable raster" in one_line_error(code, err)
    assert not (tmp_path / "o2").exists()

    code, _, err = run_main(capsys, "predict", "--model", geo["lanes"], tmp_path / "nope.tif",
                            "--out", tmp_path / "o3")
    assert "no such file" in one_line_error(code, err)

    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("mine")
    code, _, err = run_main(capsys, "predict", "--model", geo["lanes"], tile.image, "--out",
                            taken)
    line = one_line_error(code, err)
    assert "not empty" in line and "--overwrite" in line
    assert (taken / "notes.txt").read_text() == "mine" and len(list(taken.iterdir())) == 1

    road = save_bundle(create_model("roadwork_tiny"), tmp_path / "road")
    code, _, err = run_main(capsys, "predict", "--model", road, tile.image, "--out",
                            tmp_path / "o4")
    assert "lanes model" in one_line_error(code, err)


def test_evaluate_reports_vector_metrics_for_lanes(geo, tmp_path):
    from roadvision.evaluation.evaluate import evaluate
    from tests._training import make_lanes

    data = make_lanes(tmp_path / "data", n=5, size=64)
    result = evaluate(geo["lanes"], data, split=None)
    vm = result["vector_metrics"]
    assert vm["gsd_m"] == 0.1 and vm["truth"] == "mask centre lines"
    assert set(vm["per_class"]) == {"white_solid", "white_dashed", "yellow_solid"}
    for scores in vm["per_class"].values():
        assert scores["true_length_m"] > 0  # every make_lanes tile holds all three classes
        assert scores["1m"]["f1"] is not None and 0 <= scores["1m"]["f1"] <= 1


def test_batch_prediction_component_over_a_folder(geo, tmp_path):
    from roadvision.components.predict import predict, run_predict

    out = tmp_path / "p"
    summary = run_predict(geo["lanes"], geo["root"] / "tiles", out)
    assert [r["name"] for r in summary["rasters"]] == [t.image.stem for t in geo["tiles"]]
    assert summary["gsd_m"] == 0.1 and not summary["gsd_assumed"]
    for tile in geo["tiles"]:
        assert (out / f"{tile.image.stem}.geojson").is_file()
    # the KFP face: typed inputs and outputs as the pipeline wires them
    spec = predict.component_spec
    assert {"model", "images", "tta", "gsd"} <= set(spec.inputs)
    assert {"predictions", "result"} <= set(spec.outputs)


def test_a_rerun_into_a_folder_inside_the_input_never_reads_its_own_output(geo, tmp_path,
                                                                          capsys):
    import shutil

    folder = tmp_path / "survey"
    folder.mkdir()
    shutil.copy(geo["tiles"][1].image, folder / "a.tif")
    for _ in range(2):  # the second run is a retry: same inputs, its own output replaced
        code, _, err = run_main(capsys, "predict", "--model", geo["lanes"], folder, "--out",
                                folder / "out")
        assert code == 0, err
    summary = json.loads((folder / "out" / "summary.json").read_text())
    assert [r["name"] for r in summary["rasters"]] == ["a"]  # not out/a.classes.tif


def test_lanes_data_sets_carry_the_gsd_their_models_are_mapped_at(tmp_path):
    from roadvision.data.synth import generate
    from roadvision.geo.gsd import model_gsd
    from roadvision.training.train import dataset_extra

    generate("lanes", 3, 0, tmp_path / "lanes", size=(32, 32))
    generate("roadwork", 2, 0, tmp_path / "roadwork", size=(32, 32))
    extra = dataset_extra(tmp_path / "lanes")
    assert extra["gsd_m"] == pytest.approx(0.10)
    assert model_gsd({"extra": extra}) == (pytest.approx(0.10), False)  # not assumed
    assert "gsd_m" not in dataset_extra(tmp_path / "roadwork")
