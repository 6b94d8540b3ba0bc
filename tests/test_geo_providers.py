"""The imagery provider chain: local catalogues first, then tiles from our own tile server.

The tile server (a thread on 127.0.0.1) renders Web Mercator PNG tiles from a GeoTIFF on
request, computing each tile's bounds from the tile formulas itself (not with the code under
test). The GeoTIFF is a gradient (red = column / 2, green = row / 2), so a pixel's value says
where it came from: a georeference off by 0.4 m shows as a colour off by 2. Its path prefix
picks a failure: ``/missing`` 404, ``/html`` an HTML page, ``/slow`` a timeout, ``/flaky`` 503
while the handler's ``down`` event is set; any other prefix (``/dated/2019-06-01``) is kept in
the hits it records and served.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import numpy as np
import pytest
import rasterio
from affine import Affine
from PIL import Image
from pyproj import Transformer
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT

from roadvision.data.synth.geotiff import write_tiles
from roadvision.geo.catalogue import index_folder, write_catalogue
from roadvision.geo.crs import WGS84, utm_crs
from roadvision.geo.providers import ImageryChain, NoImageryError, load_config
from roadvision.geo.raster import write_rgb
from tests._cli import one_line_error, run_main

LAT, LON = 51.52, -0.10  # London, north-east of the generator's tiles
SIZE, GSD = 512, 0.1  # the gradient GeoTIFF: 51.2 m square


def _gradient(path):
    crs = utm_crs(LAT, LON)
    x, y = Transformer.from_crs(WGS84, crs, always_xy=True).transform(LON, LAT)
    transform = Affine(GSD, 0, round(x), 0, -GSD, round(y))
    cols, rows = np.meshgrid(np.arange(SIZE), np.arange(SIZE))
    image = np.stack([cols // 2, rows // 2, np.full_like(cols, 128)], -1).astype(np.uint8)
    write_rgb(path, image, transform, crs, {"imagery_id": "gradient"})
    return transform, crs


def _tile_bounds_3857(z, x, y):
    """Tile (z, x, y) bounds in EPSG:3857 from its corners' longitude / latitude."""
    n = 2 ** z
    to = Transformer.from_crs(WGS84, "EPSG:3857", always_xy=True)
    lon0, lon1 = x / n * 360 - 180, (x + 1) / n * 360 - 180
    lat0 = math.degrees(math.atan(math.sinh(math.pi * (1 - 2 * y / n))))
    lat1 = math.degrees(math.atan(math.sinh(math.pi * (1 - 2 * (y + 1) / n))))
    (left, top), (right, bottom) = to.transform(lon0, lat0), to.transform(lon1, lat1)
    return left, bottom, right, top


class _Tiles(BaseHTTPRequestHandler):
    source = ""
    hits: list[str] = []
    down = threading.Event()  # /flaky answers 503 while set

    def log_message(self, *args):  # quiet
        pass

    def _send(self, code, body=b"", kind="image/png"):
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        with contextlib.suppress(BrokenPipeError):  # the client gave up (the timeout test)
            self.wfile.write(body)

    def do_GET(self):
        url = urlparse(self.path)
        self.hits.append(url.path)
        parts = url.path.strip("/").split("/")
        if parts[0] == "html":
            return self._send(200, b"<html>rate limited</html>", "text/html")
        if parts[0] == "missing":
            return self._send(404, b"no such tile", "text/plain")
        if parts[0] == "slow":
            time.sleep(1.5)
        if parts[0] == "flaky" and self.down.is_set():
            return self._send(503, b"overloaded", "text/plain")
        if parts[0] == "wmts":  # KVP: ...&TILEMATRIX=EPSG:3857:19&TILEROW=..&TILECOL=..
            q = {k.upper(): v[0] for k, v in parse_qs(url.query).items()}
            z, y, x = int(q["TILEMATRIX"].rsplit(":", 1)[1]), int(q["TILEROW"]), int(q["TILECOL"])
        else:
            z, x, y = (int(v) for v in (parts[-3], parts[-2], parts[-1].split(".")[0]))
        left, bottom, right, top = _tile_bounds_3857(z, x, y)
        t = Affine((right - left) / 256, 0, left, 0, -(top - bottom) / 256, top)
        with rasterio.open(self.source) as src, WarpedVRT(
                src, crs="EPSG:3857", transform=t, width=256, height=256, add_alpha=True,
                resampling=Resampling.bilinear) as vrt:
            data = vrt.read()
        if not data[3].any():
            return self._send(404, b"outside", "text/plain")
        buf = io.BytesIO()
        Image.fromarray(data[:3].transpose(1, 2, 0)).save(buf, "PNG")
        self._send(200, buf.getvalue())


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A local catalogue of two generated tiles, a gradient GeoTIFF served as tiles, a URL."""
    root = tmp_path_factory.mktemp("providers")
    tiles = write_tiles(root / "local", 2, seed=3, size=(64, 64), gsd=0.1, city="london")
    write_catalogue(root / "local" / "catalogue.json", index_folder(root / "local"))
    transform, crs = _gradient(root / "gradient.tif")
    handler = type("Handler", (_Tiles,), {"source": str(root / "gradient.tif"), "hits": [],
                                          "down": threading.Event()})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield {"root": root, "tiles": tiles, "transform": transform, "crs": crs, "handler": handler,
           "url": f"http://127.0.0.1:{server.server_address[1]}"}
    server.shutdown()


def _config(world, *providers, name="providers.json"):
    path = world["root"] / name
    path.write_text(json.dumps({"providers": [
        {"name": "local", "kind": "catalogue", "catalogue": "local/catalogue.json"},
        *providers]}))
    return path


def _xyz(world, name="ours", prefix="", **extra):
    return {"name": name, "kind": "xyz", "url": world["url"] + prefix + "/{z}/{x}/{y}.png",
            "attribution": f"(c) {name} tiles", "min_zoom": 10, "max_zoom": 20,
            "enabled": True, **extra}


def _gradient_bbox(margin=0.35):
    """A WGS84 bbox well inside the gradient raster (51.2 m; about 0.00072 deg lon)."""
    crs = utm_crs(LAT, LON)
    x, y = Transformer.from_crs(WGS84, crs, always_xy=True).transform(LON, LAT)
    back = Transformer.from_crs(crs, WGS84, always_xy=True)
    side = SIZE * GSD
    lon0, lat0 = back.transform(round(x) + side * margin, round(y) - side * (1 - margin))
    lon1, lat1 = back.transform(round(x) + side * (1 - margin), round(y) - side * margin)
    return lon0, lat0, lon1, lat1


def _local_bbox(world):
    left, bottom, right, top = world["tiles"][0].bounds
    back = Transformer.from_crs(f"EPSG:{world['tiles'][0].epsg}", WGS84, always_xy=True)
    lon0, lat0 = back.transform(left + 1, bottom + 1)
    lon1, lat1 = back.transform(right - 1, top - 1)
    return lon0, lat0, lon1, lat1


def test_local_catalogue_first_then_tiles_georeferenced_in_web_mercator(world):
    chain = ImageryChain.from_config(_config(world, _xyz(world)))
    local = chain.read(_local_bbox(world), 0.1)
    assert [s.provider for s in local.sources] == ["local"]
    assert local.crs.to_epsg() == world["tiles"][0].epsg and local.covered.all()
    with rasterio.open(world["tiles"][0].image) as ds:  # same grid as the source: same pixels
        r, c = ds.index(*(local.transform @ (10.5, 10.5)))
        assert np.abs(ds.read()[:, r, c].astype(int) - local.pixels[10, 10]).max() <= 2

    bbox = _gradient_bbox()
    image = chain.read(bbox, 0.2)  # not in the catalogue: the tile provider answers
    (source,) = image.sources
    assert (source.provider, source.kind, source.imagery_id) == ("ours", "xyz", "ours/z19")
    assert source.properties() == {"imagery_id": "ours/z19", "imagery_source": "(c) ours tiles",
                                   "imagery_date": None}
    assert image.crs.to_epsg() == 3857 and image.covered.all()
    # pixel size in Web Mercator is the ground GSD / cos(lat); the grid spans the bbox
    assert image.transform.a == pytest.approx(0.2 / math.cos(math.radians(LAT)), rel=2e-3)
    to = Transformer.from_crs(WGS84, "EPSG:3857", always_xy=True)
    (x0, y0), (x1, y1) = to.transform(bbox[0], bbox[1]), to.transform(bbox[2], bbox[3])
    left, bottom, right, top = image.bounds
    assert abs(left - x0) < 0.5 and abs(top - y1) < 0.5
    assert x1 <= right < x1 + 1 and y0 - 1 < bottom <= y0
    # a few pixels: their ground position, in the gradient's own pixels, gives their colour
    to_utm = Transformer.from_crs("EPSG:3857", world["crs"], always_xy=True)
    h, w = image.pixels.shape[:2]
    for row, col in ((2, 3), (h // 2, w // 3), (h - 3, w - 4)):
        gx, gy = to_utm.transform(*(image.transform @ (col + 0.5, row + 0.5)))
        src_col, src_row = ~world["transform"] @ (gx, gy)
        expected = np.array([src_col / 2, src_row / 2, 128])
        assert np.abs(image.pixels[row, col] - expected).max() <= 2.0, (row, col)
    # asked in UTM, the same tiles come back on a metric grid at exactly the GSD
    utm = chain.read(bbox, 0.2, crs=world["crs"])
    assert utm.crs == world["crs"] and utm.transform.a == pytest.approx(0.2, rel=1e-3)
    col, row = ~world["transform"] @ (utm.transform @ (5.5, 5.5))
    assert np.abs(utm.pixels[5, 5] - np.array([col / 2, row / 2, 128])).max() <= 2.0


def test_wmts_kvp_template_and_a_finer_gsd_picks_a_finer_zoom(world):
    wmts = {"name": "wmts", "kind": "wmts", "enabled": True, "max_zoom": 20,
            "matrix_prefix": "EPSG:3857:",
            "url": world["url"] + "/wmts?SERVICE=WMTS&REQUEST=GetTile&LAYER=ortho"
                   "&TILEMATRIXSET=EPSG:3857&TILEMATRIX={TileMatrix}&TILEROW={TileRow}"
                   "&TILECOL={TileCol}&FORMAT=image/png"}
    chain = ImageryChain.from_config(_config(world, wmts, name="wmts.json"))
    image = chain.read(_gradient_bbox(0.4), 0.1)
    assert image.sources[0].imagery_id == "wmts/z20"  # 0.097 m/px at 51.5 N
    assert image.covered.all() and image.pixels[..., 2].min() >= 126


def test_failing_providers_are_skipped_with_their_reasons(world, monkeypatch):
    broken = [_xyz(world, "gone", "/missing"), _xyz(world, "captive", "/html"),
              _xyz(world, "slow", "/slow", timeout_s=0.3),
              _xyz(world, "keyed", "", url=world["url"] + "/{z}/{x}/{y}.png?key={api_key}",
                   api_key_env="RV_TEST_TILE_KEY"),
              _xyz(world, "off", enabled=False), _xyz(world, "good")]
    monkeypatch.delenv("RV_TEST_TILE_KEY", raising=False)
    chain = ImageryChain.from_config(_config(world, *broken, name="broken.json"))
    image = chain.read(_gradient_bbox(), 0.2)
    assert image.sources[0].provider == "good"
    with pytest.raises(NoImageryError) as err:
        ImageryChain.from_config(_config(world, *broken[:4], name="b4.json")).read(
            _gradient_bbox(), 0.2)
    reasons = dict(err.value.tried)
    assert list(reasons) == ["local (catalogue)", "gone (xyz)", "captive (xyz)", "slow (xyz)",
                             "keyed (xyz)"]
    assert "no indexed raster meets the area" in reasons["local (catalogue)"]
    assert "HTTP 404" in reasons["gone (xyz)"]
    assert "'text/html' is not an image" in reasons["captive (xyz)"]
    assert "timed out" in reasons["slow (xyz)"]
    assert "$RV_TEST_TILE_KEY is not set" in reasons["keyed (xyz)"]
    # the key is used but never shown
    monkeypatch.setenv("RV_TEST_TILE_KEY", "s3cr3t")
    world["handler"].hits.clear()
    chain = ImageryChain.from_config(_config(world, broken[3], name="keyed.json"))
    assert chain.read(_gradient_bbox(), 0.2).sources[0].provider == "keyed"
    assert all("s3cr3t" not in json.dumps(r) for r in chain.describe())
    # outside the tile server's raster: 404s, and the error names the area and each provider
    with pytest.raises(NoImageryError, match=r"no imagery covers the area \[10\.0, 50\.0") as e:
        chain.read((10.0, 50.0, 10.0002, 50.0002), 0.2)
    assert "keyed (xyz): tile 19/" in str(e.value) and "key=***" in str(e.value)
    assert "s3cr3t" not in str(e.value)


def test_find_lists_what_covers_and_bad_configs_are_one_line_errors(world, capsys):
    chain = ImageryChain.from_config(_config(world, _xyz(world, bounds=[-1, 51, 1, 52])))
    found = chain.find(_local_bbox(world))
    assert [(s.provider, s.kind) for s in found] == [("local", "catalogue"), ("ours", "xyz")]
    assert found[0].imagery_id.startswith("synth-london") and found[0].date == "2026-06-01"
    assert [s.provider for s in chain.find(_gradient_bbox())] == ["ours"]
    with pytest.raises(NoImageryError, match="outside its bounds"):
        chain.find((10.0, 50.0, 10.1, 50.1))
    bad = world["root"] / "bad.yaml"
    for text, message in (
            ("providers: [{name: x, kind: tms, url: 'http://h/{z}'}]", "kind 'tms' is not one"),
            ("providers: [{name: x, kind: xyz, url: 'http://h/{z}/{x}.png'}]", "lacks {y}"),
            ("providers: [{name: x, kind: xyz, url: 'http://h/{z}/{x}/{y}?k={api_key}'}]",
             "api_key_env"),
            ("providers: [{name: x, kind: xyz, url: 'http://h/{z}/{x}/{y}', max_zoom: 40}]",
             "max_zoom must be an integer in [0, 24]"),
            ("providers: [{name: x, kind: catalogue, catalog: a.json}]", "unknown keys"),
            ("providers: [{name: [", "not valid yaml"),
            ("providers: [{name: x, kind: xyz, url: 'http://h/{z}/{x}/{y}', date: '2024-13-01'}]",
             "date '2024-13-01' is not a date (YYYY-MM-DD)"),
            ("providers: [{name: x, kind: xyz, url: 'http://h/{z}/{x}/{y}', date: 'May 2024'}]",
             "date 'May 2024' is not a date"),
            ("providers: [{name: x, kind: xyz, url: 'http://h/{date}/{z}/{x}/{y}'}]",
             "the URL template has {date}: set default_date"),
            ("providers: [{name: x, kind: xyz, url: 'http://h/{z}/{x}/{y}', "
             "default_date: 2024-05-01}]", "default_date is for a URL template with {date}"),
            ("providers: [{name: x, kind: catalogue, catalogue: a.json, date: 2024-05-01}]",
             "date is for tile providers"),
            ("providers: [{name: x, kind: xyz, url: 'http://h/{z}/{x}/{y}', "
             "failure_threshold: 0}]", "failure_threshold must be an integer in [1, 1000], got 0"),
            ("providers: [{name: x, kind: xyz, url: 'http://h/{z}/{x}/{y}', cooldown_s: -5}]",
             "cooldown_s must be a number of seconds in (0, 86400], got -5")):
        bad.write_text(text)
        code, _, err = run_main(capsys, "imagery", "providers", "--providers", bad)
        assert message in one_line_error(code, err), text
    # YAML reads an unquoted date as a date: taken as the same "YYYY-MM-DD"
    bad.write_text("providers: [{name: x, kind: wmts, url: 'http://h/{date}/{TileMatrix}/"
                   "{TileRow}/{TileCol}', default_date: 2023-07-01}, {name: y, kind: xyz, url: "
                   "'http://h/{z}/{x}/{y}', date: 2024-05-01, failure_threshold: 5}]")
    (x, y) = load_config(bad)
    assert (x.default_date, x.date, y.date, y.failure_threshold, y.cooldown_s) == (
        "2023-07-01", None, "2024-05-01", 5, 60.0)


def test_providers_cli_table_and_json(world, capsys, monkeypatch):
    path = _config(world, _xyz(world, api_key_env="RV_TEST_TILE_KEY", enabled=False))
    monkeypatch.setenv("ROADVISION_IMAGERY_PROVIDERS", str(path))
    monkeypatch.setenv("COLUMNS", "240")  # one table row per line
    code, out, err = run_main(capsys, "imagery", "providers")
    assert code == 0, err
    assert "local" in out and "2 rasters" in out and "z10-20" in out and "$RV_TEST_TILE_KEY" in out
    assert out.index("local") < out.index("ours")
    ours = next(line for line in out.splitlines() if "ours" in line)
    assert "undated" in ours and "closed" in ours  # the layer's date and its breaker state
    code, out, err = run_main(capsys, "imagery", "providers", "--json")
    rows = json.loads(out)
    assert [(r["name"], r["kind"], r["enabled"]) for r in rows] == [
        ("local", "catalogue", True), ("ours", "xyz", False)]
    monkeypatch.delenv("ROADVISION_IMAGERY_PROVIDERS")
    code, out, _ = run_main(capsys, "imagery", "providers")
    assert code == 0 and "no imagery providers configured" in out


def test_s3_catalogue_on_the_moto_server(world, s3_endpoint, capsys):
    import boto3

    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    s3.create_bucket(Bucket="imagery")
    for tile in world["tiles"]:
        s3.upload_file(str(tile.image), "imagery", f"ortho/2026/{tile.image.name}")
    s3.put_object(Bucket="imagery", Key="ortho/readme.txt", Body=b"not a raster")
    out = world["root"] / "s3-catalogue.json"
    code, stdout, err = run_main(capsys, "imagery", "index", "s3://imagery/ortho", "--out", out)
    assert code == 0, err
    assert "2 rasters indexed, 0 skipped" in stdout
    doc = json.loads(out.read_text())
    assert doc["root"] == "s3://imagery/ortho"
    assert [f["properties"]["href"] for f in doc["features"]] == [
        f"2026/{t.image.name}" for t in world["tiles"]]
    s3.upload_file(str(out), "imagery", "catalogue.json")
    cfg = world["root"] / "s3.json"
    cfg.write_text(json.dumps({"providers": [{"name": "bucket", "kind": "catalogue",
                                              "catalogue": "s3://imagery/catalogue.json"}]}))
    bbox = _local_bbox(world)
    image = ImageryChain.from_config(cfg).read(bbox, 0.1)
    assert image.sources[0].href == f"s3://imagery/ortho/2026/{world['tiles'][0].image.name}"
    local = ImageryChain.from_config(None, catalogues=[world["root"] / "local" /
                                                       "catalogue.json"]).read(bbox, 0.1)
    assert local.sources[0].provider == "catalogue-1"
    assert np.array_equal(image.pixels, local.pixels) and image.transform == local.transform
    code, _, err = run_main(capsys, "imagery", "index", "s3://no-such-bucket/x", "--out",
                            world["root"] / "x.json")
    assert "bucket does not exist" in one_line_error(code, err)


def test_date_keeps_imagery_acquired_on_or_before_it(world):
    chain = ImageryChain.from_config(_config(world))
    assert chain.find(_local_bbox(world), date="2026-06-01")[0].date == "2026-06-01"
    with pytest.raises(NoImageryError, match="no raster acquired on or before 2026-05-31"):
        chain.read(_local_bbox(world), 0.1, date="2026-05-31")


def _reasons(err) -> dict[str, str]:
    return dict(err.value.tried)


def test_a_dated_request_keeps_only_tile_layers_acquired_on_or_before_it(world):
    """Undated tiles are skipped by a dated request (a user asking for 2019 never gets today's
    tiles unawares); a layer's ``date:`` is kept on or before the date asked, skipped after."""
    chain = ImageryChain.from_config(_config(
        world, _xyz(world, "today"), _xyz(world, "later", date="2025-03-01"),
        _xyz(world, "vintage", date="2024-05-01"), name="dated.json"))
    bbox = _gradient_bbox()
    undated = chain.plan(bbox, 0.2)  # no date: every provider matches, in chain order
    assert [(s.provider, s.date) for s in undated.tiles] == [
        ("today", None), ("later", "2025-03-01"), ("vintage", "2024-05-01")]

    plan = chain.plan(bbox, 0.2, date="2024-12-31")
    assert [s.provider for s in plan.tiles] == ["vintage"]
    tried = dict(plan.tried)
    assert tried["today (xyz)"] == ("its tiles carry no acquisition date (set `date:` in its "
                                    "config); a dated request skips it")
    assert tried["later (xyz)"] == "its imagery is dated 2025-03-01, after 2024-12-31"
    image = chain.read(bbox, 0.2, date="2024-12-31")
    (source,) = image.sources
    assert source.provider == "vintage" and image.covered.all()
    assert source.properties()["imagery_date"] == "2024-05-01"  # the layer's, not None
    assert chain.plan(bbox, 0.2, date="2024-05-01").tiles[0].provider == "vintage"  # on it
    with pytest.raises(NoImageryError) as err:
        chain.read(bbox, 0.2, date="2024-04-30")
    reasons = _reasons(err)
    assert list(reasons) == ["local (catalogue)", "today (xyz)", "later (xyz)", "vintage (xyz)"]
    assert reasons["vintage (xyz)"] == "its imagery is dated 2024-05-01, after 2024-04-30"
    assert "no acquisition date" in reasons["today (xyz)"]
    assert reasons["local (catalogue)"] == "no indexed raster meets the area"


def test_a_date_template_is_asked_for_the_date_requested(world):
    archive = _xyz(world, "archive", "/dated/{date}", default_date="2023-07-01")
    chain = ImageryChain.from_config(_config(world, archive, _xyz(world, "today"),
                                             name="archive.json"))
    hits = world["handler"].hits
    hits.clear()
    image = chain.read(_gradient_bbox(), 0.2, date="2019-06-01")
    (source,) = image.sources
    assert (source.provider, source.date) == ("archive", "2019-06-01")
    assert image.covered.all() and image.pixels[..., 2].min() >= 126
    assert hits and all(h.startswith("/dated/2019-06-01/19/") for h in hits)  # what it saw
    hits.clear()
    undated = chain.read(_gradient_bbox(), 0.2)  # no date asked: its default_date
    assert undated.sources[0].date == "2023-07-01"
    assert hits and all(h.startswith("/dated/2023-07-01/19/") for h in hits)
    rows = {r["name"]: r for r in chain.describe()}
    assert rows["archive"]["date"] == "{date} (default 2023-07-01)"
    assert rows["today"]["date"] == "undated"
    assert rows["local"]["date"] == "2026-06-01"  # its rasters' acquisition dates
    assert rows["today"]["circuit"] == "closed" and rows["local"]["circuit"] == "-"


def test_circuit_opens_after_consecutive_503s_and_a_trial_closes_it(world):
    """A real loopback server answering 503: after ``failure_threshold`` failed fetches the
    chain stops asking it (its hit count stops growing); after ``cooldown_s`` (an injected
    clock, no sleep) one trial fetch is let through: failing, it re-opens; once the server is
    fixed, it closes."""
    now = [1000.0]
    flaky = _xyz(world, "flaky", "/flaky", failure_threshold=3, cooldown_s=30)
    chain = ImageryChain.from_config(_config(world, flaky, name="flaky.json"),
                                     clock=lambda: now[0])
    handler, bbox = world["handler"], _gradient_bbox()
    handler.hits.clear()
    handler.down.set()
    try:
        counts = []
        for _ in range(3):
            with pytest.raises(NoImageryError) as err:
                chain.read(bbox, 0.2)
            assert "HTTP 503 Service Unavailable" in _reasons(err)["flaky (xyz)"]
            counts.append(len(handler.hits))
        assert counts[0] > 0 and counts[0] < counts[1] < counts[2]  # each read asked it
        circuit = chain.circuits()["flaky"]
        assert (circuit.state, circuit.failures, circuit.last_error) == (
            "open", 3, "HTTP 503 Service Unavailable")

        now[0] += 19  # open: skipped at once, the server is not asked
        with pytest.raises(NoImageryError) as err:
            chain.read(bbox, 0.2)
        assert _reasons(err)["flaky (xyz)"] == (
            "circuit open after 3 consecutive failures (last: HTTP 503 Service Unavailable); "
            "retried in 11 s")
        plan = chain.plan(bbox, 0.2)
        assert plan.tiles == () and [s.provider for s in plan.held] == ["flaky"]
        assert len(handler.hits) == counts[-1]
        row = {r["name"]: r for r in chain.describe()}["flaky"]
        assert row["circuit"].startswith("open after 3 consecutive failures (last: HTTP 503")

        now[0] += 11  # cooled down: half-open, one trial; the server still fails: re-opened
        assert chain.circuits()["flaky"].state == "half-open"
        with pytest.raises(NoImageryError):
            chain.read(bbox, 0.2)
        assert len(handler.hits) == counts[-1] + 1  # the trial asked exactly one tile
        assert chain.circuits()["flaky"].state == "open"
        assert chain.circuits()["flaky"].retry_in_s == pytest.approx(30)  # a full cooldown
        with pytest.raises(NoImageryError, match="circuit open after 4 consecutive"):
            chain.read(bbox, 0.2)
        assert len(handler.hits) == counts[-1] + 1

        handler.down.clear()  # the server is fixed
        now[0] += 30
        image = chain.read(bbox, 0.2)
        assert image.sources[0].provider == "flaky" and image.covered.all()
        circuit = chain.circuits()["flaky"]
        assert (circuit.state, circuit.failures, circuit.total_failures) == ("closed", 0, 4)
    finally:
        handler.down.clear()


def test_no_tile_there_is_no_failure_and_the_trial_is_one_at_a_time(world):
    """A 404 (the provider answering that it has no such tile) never opens the circuit; while
    a half-open trial is in flight, other requests skip the provider."""
    from roadvision.geo.breaker import Breaker

    gone = _xyz(world, "gone", "/missing", failure_threshold=1)
    chain = ImageryChain.from_config(_config(world, gone, name="gone.json"))
    for _ in range(3):
        with pytest.raises(NoImageryError, match="HTTP 404"):
            chain.read(_gradient_bbox(), 0.2)
    assert chain.circuits()["gone"].state == "closed"
    assert chain.circuits()["gone"].total_failures == 0

    now = [0.0]
    breaker = Breaker(2, 10.0, lambda: now[0])
    breaker.failed("HTTP 502 Bad Gateway")
    assert breaker.acquire() is None  # one failure of two: still closed
    breaker.failed("timed out")
    assert breaker.acquire().startswith("circuit open after 2 consecutive failures (last: "
                                        "timed out); retried in 10 s")
    now[0] = 10.0
    assert breaker.acquire() is None  # the trial
    assert "a trial fetch is in flight" in breaker.acquire()  # a second one is refused
    assert "a trial fetch is in flight" in breaker.refusal()
    breaker.release()  # the trial said nothing (a 404): the next may try
    assert breaker.acquire() is None
    breaker.succeeded()
    assert breaker.snapshot().state == "closed" and breaker.acquire() is None
