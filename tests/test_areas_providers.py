"""``POST /v1/areas:analyze`` over the provider chain: local catalogue first, then tiles.

A real ModelServer on loopback (tiny random-init lanes bundle at 10 cm/px, a real
redis-server) started with ``--imagery-catalogue`` and ``--imagery-providers``. One generated
orthophoto (20 m square, 8 cm/px) is the ground truth of both providers: its western half,
cropped, is the local catalogue's only raster; the whole of it is served as XYZ PNG tiles by
the tile server the provider tests run (``tests/test_geo_providers.py``: a thread on
127.0.0.1 rendering each tile from the GeoTIFF with its own tile formulas), which counts the
requests it gets. So an area in the east half can only come from tiles, one in the west half
only from the catalogue, and one across the middle from both. The same server is a second tile
provider, ``vintage``, whose config dates its layer 2020-01-01: what a dated request reads.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import ThreadingHTTPServer

import httpx
import pytest
import rasterio
import torch
from _serving import ServingServer
from conftest import RedisServer, free_port
from pyproj import Transformer

import tests.test_geo_providers as provider_tests  # its tile server, not its tests
from roadvision.data.synth.geotiff import ACQUIRED, write_tiles
from roadvision.geo.catalogue import index_folder, write_catalogue
from roadvision.geo.providers import ImagerySource
from roadvision.geo.raster import write_rgb
from roadvision.models import create_model
from roadvision.models.bundle import save_bundle, update_bundle_config
from tests._cli import one_line_error

PATH = "/v1/areas:analyze"
GSD = 0.08  # the orthophoto's; the model maps at 0.1
SIDE = 256  # px: 20.48 m
ATTRIBUTION = "(c) test tiles"
VINTAGE = "2020-01-01"  # the acquisition date the config gives the "vintage" tile layer
COOLDOWN_S = 5  # "ours": its circuit stays open this long after 3 consecutive failures


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("areas-chain")
    (ortho,) = write_tiles(root / "gen", 1, seed=1, size=(SIDE, SIDE), gsd=GSD, city="berlin")
    with rasterio.open(ortho.image) as ds:
        pixels, transform, crs = ds.read().transpose(1, 2, 0), ds.transform, ds.crs
        tags = ds.tags()
    (root / "local").mkdir()
    write_rgb(root / "local" / "west.tif", pixels[:, :SIDE // 2].copy(), transform, crs,
              {"imagery_id": "west-half", "acquired": tags.get("acquired", ACQUIRED)})
    catalogue = write_catalogue(root / "local" / "catalogue.json", index_folder(root / "local"))

    handler = type("Handler", (provider_tests._Tiles,), {"source": str(ortho.image),
                                                          "hits": []})
    tiles = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    tiles.daemon_threads = True
    threading.Thread(target=tiles.serve_forever, daemon=True).start()
    providers = root / "providers.json"
    template = f"http://127.0.0.1:{tiles.server_address[1]}/{{z}}/{{x}}/{{y}}.png"
    providers.write_text(json.dumps({"providers": [
        {"name": "off", "kind": "xyz", "url": "http://127.0.0.1:9/{z}/{x}/{y}.png"},
        {"name": "ours", "kind": "xyz", "enabled": True, "attribution": ATTRIBUTION,
         "url": template, "min_zoom": 10, "max_zoom": 21, "timeout_s": 5,
         "cooldown_s": COOLDOWN_S},
        {"name": "vintage", "kind": "xyz", "enabled": True, "date": VINTAGE,
         "url": template, "min_zoom": 10, "max_zoom": 21, "timeout_s": 5}]}))

    torch.manual_seed(0)
    bundle = save_bundle(create_model("lanes_tiny"), root / "lanes")
    update_bundle_config(bundle, extra={"gsd_m": 0.1})
    redis = RedisServer(port=free_port(), workdir=root)
    redis.start()
    server = ServingServer(
        args=["--model", f"lanes={bundle}", "--redis", redis.url,
              "--imagery-catalogue", str(catalogue), "--imagery-providers", str(providers),
              "--areas-rate-limit", "off", "--forward_workers", "0"],
        log_path=root / "server.log")
    server.start(ready_models=("lanes",))
    left, bottom, right, top = ortho.bounds
    to_wgs = Transformer.from_crs(ortho.epsg, 4326, always_xy=True)
    middle = left + SIDE // 2 * GSD

    def bbox(x0, y0, x1, y1):  # metres from the orthophoto's top-left corner -> WGS84
        return list(to_wgs.transform_bounds(left + x0, top - y1, left + x1, top - y0))

    world = {"url": server.url, "server": server, "tiles": tiles, "hits": handler.hits,
             "bbox": bbox, "mid": middle - left, "epsg": ortho.epsg, "catalogue": catalogue}
    yield world
    server.stop()
    redis.stop()
    world["tiles"].shutdown()  # the one now serving (the down test starts a new one)
    world["tiles"].server_close()


def post(env, body) -> httpx.Response:
    return httpx.post(env["url"] + PATH, json=body, timeout=120)


def figure(env, name, provider="ours") -> float:
    """A provider's sample of ``name`` on the server's /metrics (0 before its first)."""
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(env["url"] + "/metrics", timeout=30).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels.get("provider") == provider:
                return sample.value
    return 0.0


FAILURES = "roadvision_imagery_provider_failures_total"
OPEN = "roadvision_imagery_provider_circuit_open"


def test_an_area_outside_the_catalogue_is_mapped_from_tiles_then_cached(env):
    east = env["bbox"](env["mid"] + 2, 3, env["mid"] + 9, 15)
    env["hits"].clear()
    first = post(env, {"bbox": east})
    assert first.status_code == 200, first.text
    assert first.headers["x-roadvision-cache"] == "miss"
    assert first.headers["x-roadvision-imagery"] == "ours/z20"  # 0.091 m/px at 52.5 N
    fetched = len(env["hits"])
    assert 0 < fetched <= 4 and all(h.startswith("/20/") for h in env["hits"])
    facts = first.json()["roadvision"]
    (used,) = facts["imagery"]
    assert used == {"id": "ours/z20", "date": None, "gsd_m": pytest.approx(0.0909, abs=1e-3),
                    "provider": "ours", "kind": "xyz", "source": ATTRIBUTION}
    assert facts["coverage"] == 1.0
    # mapped on a metric grid (the area's UTM zone), not in Web Mercator's stretched metres
    assert facts["crs_source"] == f"EPSG:{env['epsg']}"
    features = first.json()["features"]
    assert features, "the random model paints something on the tiles"
    for f in features:
        assert f["properties"]["imagery_id"] == "ours/z20"
        assert f["properties"]["imagery_date"] is None  # tiles carry no date
        assert f["properties"]["length_m"] > 0

    second = post(env, {"bbox": east})
    assert second.status_code == 200 and second.headers["x-roadvision-cache"] == "hit"
    assert second.json()["roadvision"]["cached"] is True
    assert second.json()["features"] == features
    assert len(env["hits"]) == fetched  # the cache key needs no tile: a hit fetches none


def test_an_area_the_catalogue_covers_never_touches_the_tile_server(env):
    west = env["bbox"](2, 3, env["mid"] - 2, 15)
    env["hits"].clear()
    response = post(env, {"bbox": west})
    assert response.status_code == 200, response.text
    assert response.headers["x-roadvision-imagery"] == "west-half"
    (used,) = response.json()["roadvision"]["imagery"]
    assert (used["id"], used["provider"], used["kind"]) == ("west-half", "catalogue-1",
                                                             "catalogue")
    assert used["date"] == ACQUIRED
    assert {f["properties"]["imagery_id"] for f in response.json()["features"]} <= {
        "west-half"}
    assert env["hits"] == []


def test_tiles_fill_what_the_catalogue_leaves(env):
    across = env["bbox"](env["mid"] - 4, 3, env["mid"] + 4, 12)
    env["hits"].clear()
    response = post(env, {"bbox": across})
    assert response.status_code == 200, response.text
    ids = [i["id"] for i in response.json()["roadvision"]["imagery"]]
    assert ids == ["west-half", "ours/z20"]  # the local raster preferred, tiles for the rest
    assert response.json()["roadvision"]["coverage"] == 1.0
    assert env["hits"]  # fetched for the east part only
    assert {f["properties"]["imagery_id"] for f in response.json()["features"]} <= set(ids)


def test_a_failing_tile_provider_gives_way_to_the_next(env, tmp_path):
    """The route's fetch step (``area_imagery.opened_imagery``) over a chain whose first tile
    provider answers 404: skipped with its reason, the next one's tiles are read."""
    from roadvision.mapping.area import AreaImagery
    from roadvision.serving.area_imagery import build_chain, opened_imagery

    base = f"http://127.0.0.1:{env['tiles'].server_address[1]}"
    chain_file = tmp_path / "chain.json"
    chain_file.write_text(json.dumps({"providers": [
        {"name": name, "kind": "xyz", "enabled": True, "url": base + prefix + "/{z}/{x}/{y}.png",
         "max_zoom": 21} for name, prefix in (("gone", "/missing"), ("ours", ""))]}))
    chain = build_chain([str(env["catalogue"])], str(chain_file))
    plan = chain.plan(env["bbox"](env["mid"] - 4, 3, env["mid"] + 4, 12), 0.1)
    assert [s.provider for s in plan.sources()] == ["catalogue-1", "gone"]  # as planned
    with opened_imagery(chain, plan) as opened:
        assert [s.provider for s in opened.used] == ["catalogue-1", "ours"]
        ((name, why),) = opened.skipped
        assert name == "gone (xyz)" and "HTTP 404" in why
        tiles = opened.rasters[-1]
        assert isinstance(tiles, AreaImagery) and tiles.path.startswith("/vsimem/")
        with rasterio.open(tiles.path) as ds:  # stitched, in Web Mercator, with pixels
            assert ds.crs.to_epsg() == 3857 and ds.read().any()
    with pytest.raises(rasterio.RasterioIOError):  # freed when the answer is done
        rasterio.open(tiles.path)


def test_cache_key_names_the_tile_provider_template_and_zoom():
    from roadvision.serving.area_request import parse_area_request
    from roadvision.serving.areas import area_cache_key

    asked = parse_area_request(b'{"bbox": [13.4, 52.5, 13.4001, 52.5001]}', 4.0)
    tile = ImagerySource("ours", "xyz", "ours/z20", "", None, 0.09, "http://t/{z}/{x}/{y}.png",
                         "z20", 20)
    keys = {area_cache_key(asked, [s], "1", 0.1, None) for s in (
        tile, ImagerySource(**{**tile.__dict__, "zoom": 19}),
        ImagerySource(**{**tile.__dict__, "href": "http://t/v2/{z}/{x}/{y}.png"}),
        ImagerySource(**{**tile.__dict__, "provider": "theirs"}))}
    keys.add(area_cache_key(asked, [ImagerySource(**{**tile.__dict__, "date": "2024-05-01"})],
                            "1", 0.1, None))
    assert len(keys) == 5  # zoom, template, provider and the layer's date each change it
    assert area_cache_key(asked, [tile], "1", 0.1, None) == area_cache_key(
        asked, [ImagerySource(**tile.__dict__)], "1", 0.1, None)


def test_bad_providers_file_stops_the_start_in_one_line(capsys, tmp_path):
    from roadvision.serving.__main__ import main

    bad = tmp_path / "chain.yaml"
    bad.write_text("providers: [{name: x, kind: xyz, url: 'http://h/{z}/{x}.png'}]")
    for path, words in ((tmp_path / "missing.yaml", "cannot read the provider config"),
                        (bad, "lacks {y}")):
        with pytest.raises(SystemExit) as info:
            main(["--model", "/nonexistent", "--imagery-providers", str(path)])
        line = one_line_error(info.value.code, capsys.readouterr().err)
        assert info.value.code == 2 and words in line, line


def test_a_dated_request_reads_only_tiles_dated_on_or_before_it(env):
    east = env["bbox"](env["mid"] + 2, 3, env["mid"] + 9, 15)
    env["hits"].clear()
    response = post(env, {"bbox": east, "date": "2021-06-30"})
    assert response.status_code == 200, response.text
    (used,) = response.json()["roadvision"]["imagery"]
    assert (used["id"], used["provider"], used["date"]) == ("vintage/z20", "vintage", VINTAGE)
    features = response.json()["features"]
    assert features and {f["properties"]["imagery_date"] for f in features} == {VINTAGE}
    assert env["hits"]  # "ours" (undated) was skipped, "vintage" fetched

    env["hits"].clear()
    before = post(env, {"bbox": east, "date": "2019-12-31"})
    assert before.status_code == 404, before.text
    error = before.json()["error"]
    assert "(imagery acquired on or before 2019-12-31)" in error
    assert ("ours (xyz): its tiles carry no acquisition date (set `date:` in its config); a "
            "dated request skips it") in error
    assert f"vintage (xyz): its imagery is dated {VINTAGE}, after 2019-12-31" in error
    assert env["hits"] == []  # decided by the plan: no tile asked


def test_tile_server_down_is_a_404_or_422_naming_the_provider(env):
    earlier = env["bbox"](env["mid"] + 1, 2, env["mid"] + 6, 8)
    assert post(env, {"bbox": earlier}).status_code == 200  # mapped from tiles while up
    failures = figure(env, FAILURES)
    port = env["tiles"].server_address[1]
    env["tiles"].shutdown()
    env["tiles"].server_close()  # nothing listens on the port: connection refused
    try:
        east = env["bbox"](env["mid"] + 3, 4, env["mid"] + 8, 14)
        response = post(env, {"bbox": east})
        assert response.status_code == 404, response.text
        answer = response.json()
        assert answer["code"] == "no_imagery"
        assert "catalogue-1 (catalogue): no indexed raster meets the area" in answer["error"]
        assert "ours (xyz): tile 20/" in answer["error"] and "refused" in answer["error"]
        assert "off (xyz)" not in answer["error"]  # a disabled provider is not asked
        assert "Traceback" not in response.text

        across = env["bbox"](env["mid"] - 5, 3, env["mid"] + 3, 12)
        partial = post(env, {"bbox": across})
        assert partial.status_code == 422, partial.text
        assert partial.json()["code"] == "area_not_covered"
        assert "ours (xyz)" in partial.json()["error"]
        allowed = post(env, {"bbox": across, "allow_partial": True})
        assert allowed.status_code == 200, allowed.text
        assert [i["id"] for i in allowed.json()["roadvision"]["imagery"]] == ["west-half"]
        assert 0.4 < allowed.json()["roadvision"]["coverage"] < 0.8

        # three failed fetches in a row: the circuit is open, counted and exported
        assert figure(env, FAILURES) == failures + 3
        assert figure(env, OPEN) == 1
        # what was mapped from the tiles before still answers: its key needs no tile (the
        # plan holds "ours" back for its open circuit, the cache still has its answer)
        assert post(env, {"bbox": earlier}).headers["x-roadvision-cache"] == "hit"
        assert "imagery provider ours (xyz) skipped" in env["server"].log_text()
        # a new area: "ours" is skipped at once, without a connection attempt (not counted)
        fresh = env["bbox"](env["mid"] + 2, 9, env["mid"] + 8, 16)
        skipped = post(env, {"bbox": fresh})
        assert skipped.status_code == 404, skipped.text
        assert ("ours (xyz): circuit open after 3 consecutive failures (last: "
                in skipped.json()["error"]) and "retried in" in skipped.json()["error"]
        assert figure(env, FAILURES) == failures + 3
    finally:  # back on the same port for the other tests (whatever their order)
        handler = env["tiles"].RequestHandlerClass
        env["tiles"] = ThreadingHTTPServer(("127.0.0.1", port), handler)
        env["tiles"].daemon_threads = True
        threading.Thread(target=env["tiles"].serve_forever, daemon=True).start()
    # after the cooldown one request is the trial; the server is back: the circuit closes
    deadline = time.monotonic() + COOLDOWN_S + 30
    while (answer := post(env, {"bbox": fresh})).status_code == 404 and \
            time.monotonic() < deadline:
        time.sleep(0.25)
    assert answer.status_code == 200, answer.text
    assert [i["id"] for i in answer.json()["roadvision"]["imagery"]] == ["ours/z20"]
    assert figure(env, OPEN) == 0 and figure(env, FAILURES) == failures + 3
