"""``POST /v1/areas:analyze`` end to end: a real ModelServer on loopback with a tiny lanes
bundle, a real redis-server, and two imagery catalogues over generated COGs.

The imagery: three generated tiles (8 cm/px, mapped at the bundle's 10 cm/px). Tile 1 is moved
into a second catalogue's folder and georeferenced edge to edge with tile 0, so a bbox can span
two COGs from two catalogues; tile 2 lies 20 m below tile 0 (the generator's gap between
flights), so a bbox reaching into that gap is covered only in part. The bundle is a random-init
``lanes_tiny``: what is checked is the path (lookup, mosaic, clip, attributes, cache, limits),
not accuracy.
"""

from __future__ import annotations

import json
import shutil
import time

import httpx
import pytest
import rasterio
import torch
from _serving import ServingServer
from affine import Affine
from conftest import RedisServer, free_port
from pyogrio.raw import read as ogr_read
from pyproj import Transformer
from shapely import box, from_wkb
from shapely.geometry import mapping, shape

from roadvision.data.synth.geotiff import ACQUIRED, write_tiles
from roadvision.errors import UserError
from roadvision.geo.catalogue import index_folder, write_catalogue
from roadvision.models import create_model
from roadvision.models.bundle import save_bundle, update_bundle_config
from roadvision.serving.auth import parse_rate
from tests._cli import one_line_error

ATTRIBUTES = ["id", "class", "length_m", "width_m", "confidence", "wear", "dash_count",
              "paint_ratio", "model", "model_version", "imagery_id", "imagery_date"]
KEYS = {"main": "main-secret-0123456789abcdef", "bad": "bad-secret-0123456789abcdef",
        "burst": "burst-secret-0123456789abcdef"}
LIMIT = 25  # the areas profile in this test: 25 per hour per key
MAX_KM2 = 0.01
PATH = "/v1/areas:analyze"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("areas")
    gsd = 0.08
    tiles = write_tiles(root / "a", 3, seed=1, size=(128, 128), gsd=gsd, city="berlin")
    (root / "b").mkdir()
    moved = root / "b" / tiles[1].image.name
    shutil.move(tiles[1].image, moved)
    left0, _, right0, top0 = tiles[0].bounds
    with rasterio.open(moved, "r+") as ds:  # edge to edge with tile 0, east of it
        ds.transform = Affine(gsd, 0, right0, 0, -gsd, top0)
    catalogues = []
    for name in ("a", "b"):  # each beside its rasters: hrefs are relative to its folder
        catalogues.append(write_catalogue(root / name / "catalogue.json",
                                          index_folder(root / name)))
    torch.manual_seed(0)
    bundle = save_bundle(create_model("lanes_tiny"), root / "lanes")
    update_bundle_config(bundle, extra={"gsd_m": 0.1})
    redis = RedisServer(port=free_port(), workdir=root)
    redis.start()
    keys = root / "keys.txt"
    keys.write_text("".join(f"{name}:{key}\n" for name, key in KEYS.items()))
    server = ServingServer(
        args=["--model", f"lanes={bundle}", "--redis", redis.url, "--api_keys_file", str(keys),
              "--imagery-catalogue", str(catalogues[0]), "--imagery-catalogue",
              str(catalogues[1]), "--areas-rate-limit", f"{LIMIT}/h", "--max-area-km2",
              str(MAX_KM2),
              # the forward in this process: no worker process to start (the test's budget);
              # the route then maps with the very network the predict route runs
              "--forward_workers", "0"],
        log_path=root / "server.log")
    server.start(ready_models=("lanes",))
    to_wgs = Transformer.from_crs(tiles[0].epsg, 4326, always_xy=True)
    span = box(left0 + 2, top0 - 9, right0 + 6, top0 - 2)  # metres: tile 0 into tile 1
    yield {"url": server.url, "server": server, "tiles": tiles, "root": root,
           "epsg": tiles[0].epsg, "span": to_wgs.transform_bounds(*span.bounds),
           "to_wgs": to_wgs}
    server.stop()
    redis.stop()


def post(env, body, key="main", **kwargs) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"content-type": "application/json"}
    if key is not None:
        headers["x-api-key"] = KEYS[key]
    return httpx.post(env["url"] + PATH, content=content, headers=headers, timeout=120,
                      **kwargs)


def test_a_bbox_spanning_two_cogs_gives_clipped_features_then_the_cache(env):
    start = time.perf_counter()
    first = post(env, {"bbox": list(env["span"])})
    uncached_s = time.perf_counter() - start
    assert first.status_code == 200, first.text
    assert first.headers["content-type"] == "application/geo+json"
    assert first.headers["x-roadvision-cache"] == "miss"
    doc = first.json()
    facts = doc["roadvision"]
    ids = {"synth-berlin-s1-0000", "synth-berlin-s1-0001"}
    assert {i["id"] for i in facts["imagery"]} == ids  # one mosaic from two catalogues
    assert set(first.headers["x-roadvision-imagery"].split(",")) == ids
    assert facts["cached"] is False and facts["coverage"] == 1.0
    assert facts["gsd_m"] == 0.1 and facts["crs_source"] == f"EPSG:{env['epsg']}"
    assert 0 < facts["area_km2"] < 2e-4  # about 16 m x 7 m
    assert facts["model"]["name"] == "lanes"
    assert facts["model_version"] == first.headers["x-roadvision-model-version"]

    features = doc["features"]
    assert features, "the random model paints something"
    area = box(*env["span"]).buffer(1e-7)
    for f in features:
        assert list(f["properties"]) == ATTRIBUTES
        line = shape(f["geometry"])
        assert line.geom_type in ("LineString", "MultiLineString") and line.length > 0
        assert area.contains(line)  # lines clipped at the bbox
        p = f["properties"]
        assert p["length_m"] > 0 and 0 < p["confidence"] <= 1 and 0 <= p["wear"] <= 1
        assert p["model"] == "lanes" and p["model_version"] == facts["model_version"]
        assert p["imagery_id"] in ids and p["imagery_date"] == ACQUIRED
    assert [f["id"] for f in features] == list(range(1, len(features) + 1))

    start = time.perf_counter()
    second = post(env, {"bbox": list(env["span"])})
    cached_s = time.perf_counter() - start
    assert second.status_code == 200 and second.headers["x-roadvision-cache"] == "hit"
    again = second.json()
    assert again["roadvision"]["cached"] is True
    assert again["features"] == features
    print(f"uncached {uncached_s * 1000:.0f} ms, cached {cached_s * 1000:.0f} ms")

    # the same rectangle sent as a polygon, vertices in another order: the same cache entry
    ring = list(reversed(mapping(box(*env["span"]))["coordinates"][0]))
    third = post(env, {"geometry": {"type": "Polygon", "coordinates": [ring]}})
    assert third.status_code == 200 and third.headers["x-roadvision-cache"] == "hit"


def test_geopackage_download_and_a_class_subset(env):
    response = post(env, {"bbox": list(env["span"]), "format": "gpkg"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/geopackage+sqlite3"
    assert "lane_markings.gpkg" in response.headers["content-disposition"]
    path = env["root"] / "download.gpkg"
    path.write_bytes(response.content)
    meta, _, geoms, columns = ogr_read(str(path))
    assert list(meta["fields"]) == ATTRIBUTES
    assert meta["crs"] == f"EPSG:{env['epsg']}"  # metres, as survey deliveries are
    as_json = post(env, {"bbox": list(env["span"])}).json()["features"]
    assert len(geoms) == len(as_json) > 0
    to_wgs = env["to_wgs"]
    area = box(*env["span"]).buffer(1e-6)
    for g in geoms:
        x0, y0, x1, y1 = from_wkb(g).bounds
        assert area.contains(box(*to_wgs.transform_bounds(x0, y0, x1, y1)))

    subset = post(env, {"bbox": list(env["span"]), "classes": ["white_solid"]})
    assert subset.status_code == 200, subset.text
    assert subset.headers["x-roadvision-cache"] == "miss"  # classes are part of the key
    assert subset.json()["roadvision"]["classes"] == ["white_solid"]
    assert {f["properties"]["class"] for f in subset.json()["features"]} <= {"white_solid"}


def test_bad_inputs_get_a_specific_status_and_message(env):
    lon0, lat0, lon1, lat1 = env["span"]
    left, bottom, right, top = env["tiles"][0].bounds
    gap = env["to_wgs"].transform_bounds(left + 2, bottom - 5, left + 8, bottom + 3)
    bowtie = [[lon0, lat0], [lon1, lat1], [lon1, lat0], [lon0, lat1], [lon0, lat0]]
    cases = [
        (b"{not json", 400, "bad_request", "not JSON"),
        ({"bbox": [13.0, 95.0, 13.1, 96.0]}, 422, "bbox_out_of_range", "latitude"),
        ({"bbox": [190.0, 52.0, 191.0, 52.1]}, 422, "bbox_out_of_range", "longitude"),
        ({"bbox": [lon1, lat0, lon0, lat1]}, 422, "bbox_inverted", "min_lon"),
        ({"bbox": [lon0, lat0, lon0, lat1]}, 422, "bbox_degenerate", "zero area"),
        ({"bbox": [lon0, lat0, lon1]}, 422, "invalid_bbox", "four numbers"),
        ({"geometry": {"type": "Polygon", "coordinates": [bowtie]}}, 422, "invalid_geometry",
         "Self-intersection"),
        ({"geometry": {"type": "Point", "coordinates": [lon0, lat0]}}, 422,
         "invalid_geometry", "Polygon or MultiPolygon"),
        ({"bbox": [lon0, lat0, lon1, lat1], "classes": ["purple_zigzag"]}, 422,
         "unknown_class", "'purple_zigzag'"),
        ({"bbox": [lon0, lat0, lon1, lat1], "format": "shp"}, 422, "invalid_format", "shp"),
        ({"bbox": [lon0, lat0, lon1, lat1], "date": "last week"}, 422, "invalid_date",
         "ISO date"),
        ({"bbox": [13.40, 52.50, 13.42, 52.52]}, 413, "area_too_large", f"{MAX_KM2:g} km^2"),
        # the whole globe: corner-to-corner geodesics would enclose nothing (no 0 km^2 here)
        ({"bbox": [-180, -90, 180, 90]}, 413, "area_too_large", "is 510065"),
        ({"bbox": [10.0, 50.0, 10.0005, 50.0005]}, 404, "no_imagery", "no imagery"),
        ({"bbox": [lon0, lat0, lon1, lat1], "date": "2020-01-01"}, 404, "no_imagery",
         "on or before 2020-01-01"),
        ({"bbox": list(gap)}, 422, "area_not_covered", "uncovered"),
        ({"bbox": [lon0, lat0, lon1, lat1], "model": "roadwork"}, 404, "model_not_found",
         "not a served lanes model"),
    ]
    for body, status, code, fragment in cases:
        response = post(env, body, key="bad")
        assert response.status_code == status, (body, response.text)
        answer = response.json()
        assert answer["code"] == code and fragment in answer["error"], (body, answer)
        assert "Traceback" not in response.text
    too_large = post(env, {"bbox": [13.40, 52.50, 13.42, 52.52]}, key="bad").json()["error"]
    assert "the area asked for is 3." in too_large  # the asked area beside the limit
    assert post(env, {"bbox": list(env["span"])}, key=None).status_code == 401

    partial = post(env, {"bbox": list(gap), "allow_partial": True}, key="bad")
    assert partial.status_code == 200, partial.text
    assert 0.3 < partial.json()["roadvision"]["coverage"] < 0.9


def test_the_areas_rate_limit_profile_answers_429_after_the_limit(env):
    for _ in range(LIMIT):  # cheap requests (422: no area given) still count
        assert post(env, {}, key="burst").status_code == 422
    refused = post(env, {}, key="burst")
    assert refused.status_code == 429
    assert 0 < int(refused.headers["retry-after"]) <= 3600
    assert f"{LIMIT} requests per hour (areas)" in refused.json()["error"]
    assert post(env, {}, key="main").status_code == 422  # per key: the others go on


def test_rate_profiles_parse():
    assert parse_rate("50/h") == (50, 3600)
    assert parse_rate("10/min") == (10, 60)
    assert parse_rate("off")[0] == 0
    with pytest.raises(UserError, match="COUNT/UNIT"):
        parse_rate("50 per fortnight")


@pytest.mark.parametrize(("argv", "words"), [
    (["--imagery-catalogue", "missing-catalogue.json"], ("missing-catalogue.json",
                                                        "not a readable imagery catalogue")),
    (["--areas-rate-limit", "50/fortnight"], ("--areas-rate-limit", "COUNT/UNIT")),
    (["--max-area-km2", "0"], ("max area", "> 0")),
])
def test_bad_areas_options_stop_the_start_in_one_line(capsys, argv, words):
    from roadvision.serving.__main__ import main

    with pytest.raises(SystemExit) as info:
        main(["--model", "/nonexistent", *argv])
    line = one_line_error(info.value.code, capsys.readouterr().err)
    assert info.value.code == 2
    for word in words:
        assert word in line, line


def test_without_a_catalogue_or_a_lanes_model_the_route_says_what_to_configure(env):
    """The route in an app of its own (our hooks on a bare FastAPI app over KServe's data
    plane with an empty model repository): 404 naming the flag to set."""
    from fastapi import FastAPI
    from fastapi.testclient import TestClient
    from kserve.model_repository import ModelRepository
    from kserve.protocol.dataplane import DataPlane

    from roadvision.serving.areas import AreasConfig
    from roadvision.serving.auth import Authenticator, RateLimiter
    from roadvision.serving.config import ServingConfig
    from roadvision.serving.server import Guard, ServerHooks

    catalogue = str(env["root"] / "a" / "catalogue.json")
    for areas, words in ((None, "--imagery-catalogue"),
                         (AreasConfig(catalogues=(catalogue,)), "needs a lanes model")):
        guard = Guard(ServingConfig(), Authenticator(None), RateLimiter(None, 0), areas=areas)
        app = FastAPI()
        hooks = ServerHooks(guard)
        hooks.add_routes(app, DataPlane(model_registry=ModelRepository()))
        hooks.add_exception_handlers(app)
        response = TestClient(app).post(PATH, json={"bbox": list(env["span"])})
        assert response.status_code == 404
        assert response.json()["code"] == "areas_not_configured"
        assert words in response.json()["error"]
