"""``roadvision imagery``: a footprint catalogue over a folder of GeoTIFFs, found by area."""

from __future__ import annotations

import json

import numpy as np
import rasterio
from affine import Affine

from roadvision.data.synth.geotiff import ACQUIRED, write_tiles
from roadvision.geo.catalogue import find_imagery, index_folder
from tests._cli import one_line_error, run_main


def _folder(tmp_path):
    tiles = write_tiles(tmp_path / "imagery", 2, seed=4, size=(64, 64), gsd=0.1, city="london")
    with rasterio.open(tmp_path / "imagery" / "nocrs.tif", "w", driver="GTiff", width=8,
                       height=8, count=3, dtype="uint8", transform=Affine(1, 0, 0, 0, -1, 0)) as d:
        d.write(np.zeros((3, 8, 8), np.uint8))
    (tmp_path / "imagery" / "broken.tif").write_bytes(b"not a tiff")
    return tiles


def test_index_and_find_by_area(tmp_path):
    tiles = _folder(tmp_path)
    doc = index_folder(tmp_path / "imagery")
    assert [f["properties"]["href"] for f in doc["features"]] == [t.image.name for t in tiles]
    assert {s["href"] for s in doc["skipped"]} == {"nocrs.tif", "broken.tif"}
    assert all("CRS" in s["reason"] or "readable" in s["reason"] for s in doc["skipped"])
    first = doc["features"][0]
    assert first["properties"]["datetime"] == ACQUIRED and first["properties"]["epsg"] == 32630
    lon0, lat0, lon1, lat1 = first["bbox"]
    assert abs(lat0 - 51.51) < 0.01 and abs(lon0 + 0.13) < 0.01
    # a bbox inside the first tile finds it alone; one spanning both finds both
    inside = (lon0 + 1e-5, lat0 + 1e-5, lon1 - 1e-5, lat1 - 1e-5)
    assert [f["id"] for f in find_imagery(doc, inside)] == [first["id"]]
    span = (min(f["bbox"][0] for f in doc["features"]), lat0, max(f["bbox"][2] for f in
                                                                  doc["features"]), lat1)
    assert len(find_imagery(doc, span)) == 2
    assert find_imagery(doc, (10.0, 50.0, 10.01, 50.01)) == []


def test_imagery_cli(tmp_path, capsys):
    _folder(tmp_path)
    out = tmp_path / "catalogue.json"
    code, stdout, err = run_main(capsys, "imagery", "index", tmp_path / "imagery", "--out", out)
    assert code == 0, err
    assert "2 rasters indexed, 2 skipped" in stdout
    doc = json.loads(out.read_text())
    lon0, lat0, lon1, lat1 = doc["features"][1]["bbox"]
    code, stdout, err = run_main(capsys, "imagery", "find", out, "--bbox",
                                 f"{lon0},{lat0},{lon1},{lat1}")
    assert code == 0 and doc["features"][1]["properties"]["href"] in stdout
    code, _, err = run_main(capsys, "imagery", "find", out, "--bbox", "5,50,4,51")
    assert "min must be below max" in one_line_error(code, err)
    code, _, err = run_main(capsys, "imagery", "find", out, "--bbox", "5,95,6,96")
    assert "latitude" in one_line_error(code, err)
    notes = tmp_path / "notes.json"
    notes.write_text("{}")
    code, _, err = run_main(capsys, "imagery", "index", tmp_path / "imagery", "--out", notes)
    assert "not an imagery catalogue" in one_line_error(code, err)
    assert notes.read_text() == "{}"


def test_imagery_synth_writes_tiles_once(tmp_path, capsys):
    code, stdout, err = run_main(capsys, "imagery", "synth", tmp_path / "t", "--n", "2",
                                 "--size", "32", "--city", "tokyo")
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "t").glob("*.tif")) == ["tile-s0-0000.tif",
                                                                      "tile-s0-0001.tif"]
    code, _, err = run_main(capsys, "imagery", "synth", tmp_path / "t", "--n", "3",
                            "--size", "32")
    assert "not empty" in one_line_error(code, err)
    code, _, err = run_main(capsys, "imagery", "synth", tmp_path / "u", "--city", "atlantis")
    assert "unknown city 'atlantis'" in one_line_error(code, err)


def test_raster_uri_resolves_beside_the_catalogue_and_refuses_escaping_hrefs(tmp_path):
    import pytest

    from roadvision.errors import UserError
    from roadvision.geo.catalogue import raster_uri, write_catalogue

    tiles = _folder(tmp_path)
    doc = index_folder(tmp_path / "imagery")
    assert doc["root"] == str((tmp_path / "imagery").resolve())
    cat = write_catalogue(tmp_path / "imagery" / "catalogue.json", doc)
    assert raster_uri(doc, doc["features"][0], cat) == str(tiles[0].image)
    moved = tmp_path / "elsewhere.json"  # a catalogue kept elsewhere reads through its root
    assert raster_uri(doc, doc["features"][0], moved) == str(tiles[0].image.resolve())
    for href in ("../secret.tif", "/etc/passwd", "a/../../b.tif"):
        entry = {"id": "x", "properties": {"href": href}}
        with pytest.raises(UserError, match="leaves the catalogue's folder"):
            raster_uri(doc, entry, cat)
    assert raster_uri({"root": "s3://b/p"}, {"properties": {"href": "a/t.tif"}}) == \
        "s3://b/p/a/t.tif"
