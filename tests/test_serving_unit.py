"""Serving, unit level: the predictor's methods called directly, and the pieces it is built from
(request validation, v2 decoding, cache keys, micro-batcher, circuit breaker, API keys).

No server process here; tests/test_serving_http.py & co. run the real one.
"""

from __future__ import annotations

import asyncio
import base64
import json
import threading
from pathlib import Path

import numpy as np
import pytest
from _pipeline import _empty_mlflow_db, mlflow_store  # noqa: F401 (fixtures)
from _serving import b64, encode, image_array, jpeg, make_bundle, v1_body
from fastapi import Request  # the annotation FastAPI reads on a wrapped endpoint below
from kserve.protocol.infer_type import InferInput, InferRequest, InferResponse

from roadvision.errors import UserError
from roadvision.serving.auth import Authenticator, RateLimiter, parse_api_keys
from roadvision.serving.batching import MicroBatcher
from roadvision.serving.cache import PredictionCache, cache_key
from roadvision.serving.config import ServingConfig
from roadvision.serving.errors import (
    BadRequest,
    NotReady,
    PayloadTooLarge,
    Unauthorized,
    Unprocessable,
    UnsupportedMediaType,
)
from roadvision.serving.predictor import RoadvisionModel
from roadvision.serving.redis_client import RedisUnavailable, ResilientRedis
from roadvision.serving.v2codec import decode_request
from roadvision.serving.validation import check_metadata, parse_v1, parse_v2

# --- validation -------------------------------------------------------------------------------


def test_v1_parsing_canonicalises_metadata_and_tta():
    body = v1_body(b"\xff\xd8\xffabc", {"weather": "Sunny", "gps": [40.4, -79.9],
                                         "scene": None}, "FLIP")
    (inst,) = parse_v1(body, max_tta="full", max_instances=4)
    assert inst.image == b"\xff\xd8\xffabc"
    assert inst.metadata == {"lat": 40.4, "lon": -79.9, "weather": "clear"}
    assert inst.tta == "flip"


@pytest.mark.parametrize(("metadata", "field"), [
    ({"lat": 95.0, "lon": 0.0}, "lat"),
    ({"lat": 10.0, "lon": -181}, "lon"),
    ({"lat": 10.0}, "lon"),
    ({"weather": "sunnyish"}, "weather"),
    ({"wether": "clear"}, "wether"),
    ({"daytime": 3}, "daytime"),
    ({"lat": "north", "lon": 1}, "lat"),
])
def test_bad_metadata_is_422_naming_the_field(metadata, field):
    with pytest.raises(Unprocessable) as info:
        parse_v1(v1_body(b"x", metadata), max_tta="full", max_instances=4)
    assert info.value.status == 422
    assert info.value.code == "invalid_metadata"
    assert field in info.value.message


def test_tta_limits():
    with pytest.raises(Unprocessable, match="exceeds this server's limit") as info:
        parse_v1(v1_body(b"x", tta="full"), max_tta="flip", max_instances=4)
    assert info.value.code == "tta_not_allowed"
    with pytest.raises(Unprocessable, match="unknown TTA mode"):
        parse_v1(v1_body(b"x", tta="sideways"), max_tta="full", max_instances=4)


@pytest.mark.parametrize(("body", "code"), [
    ({"instances": [{"image_b64": "not base64!!"}]}, "invalid_base64"),
    ({"instances": []}, "invalid_request"),
    ({"images": []}, "invalid_request"),
    ({"instances": [{"image": "abc"}]}, "invalid_request"),
    ([1, 2], "invalid_request"),
])
def test_malformed_v1_is_400(body, code):
    with pytest.raises(BadRequest) as info:
        # base64 is decoded when the bytes are first needed (a cache hit never needs them)
        [instance.image for instance in parse_v1(body, max_tta="full", max_instances=4)]
    assert info.value.status == 400 and info.value.code == code


def test_base64_is_keyed_as_sent_and_decoded_only_when_asked(monkeypatch):
    import roadvision.serving.validation as validation

    raw = jpeg(3)
    text = f"data:image/jpeg;base64,{b64(raw)}  "
    (instance,) = parse_v1({"instances": [{"image_b64": text}]}, max_tta="full",
                           max_instances=4)
    decoded = []
    real = validation.base64.b64decode
    monkeypatch.setattr(validation.base64, "b64decode",
                        lambda *a, **k: decoded.append(1) or real(*a, **k))
    assert instance.key_source == ("base64", b64(raw).encode())
    assert decoded == []
    assert instance.image == raw and instance.image == raw
    assert decoded == [1]
    with pytest.raises(BadRequest, match="non-ASCII"):
        parse_v1({"instances": [{"image_b64": "é"}]}, max_tta="full", max_instances=4)


def test_too_many_instances_is_refused():
    body = {"instances": [{"image_b64": b64(b"x")}] * 5}
    with pytest.raises(Unprocessable, match="at most 4"):
        parse_v1(body, max_tta="full", max_instances=4)


def test_v2_parsing_accepts_raw_bytes_and_base64():
    raw = jpeg(1)
    inputs = {"image": ("BYTES", [raw, b64(raw)]),
              "metadata": ("BYTES", [b'{"daytime": "Light"}', ""])}
    first, second = parse_v2(inputs, {"tta": "flip"}, max_tta="full", max_instances=4)
    assert first.image == second.image == raw
    assert first.metadata == {"daytime": "day"} and second.metadata == {}
    assert first.tta == second.tta == "flip"
    with pytest.raises(BadRequest, match="expected BYTES"):
        parse_v2({"image": ("FP32", [1.0])}, None, max_tta="full", max_instances=4)


def test_metadata_none_and_empty_are_equal():
    assert check_metadata(None) == check_metadata({}) == check_metadata({"text": "  "}) == {}


# --- v2 binary decoding -----------------------------------------------------------------------


def _triton_body(images: list[bytes], metadata: list[str] | None = None, **params):
    """Encode a request with tritonclient's own encoder (an independent implementation)."""
    import tritonclient.http as httpclient
    from tritonclient.http._utils import _get_inference_request

    image = httpclient.InferInput("image", [len(images)], "BYTES")
    image.set_data_from_numpy(np.array(images, dtype=object), binary_data=True)
    inputs = [image]
    if metadata is not None:
        meta = httpclient.InferInput("metadata", [len(metadata)], "BYTES")
        meta.set_data_from_numpy(np.array(metadata, dtype=object), binary_data=True)
        inputs.append(meta)
    body, json_size = _get_inference_request(inputs, "", None, 0, False, False, 0, None,
                                             params or None)
    return body, {"inference-header-content-length": str(json_size)}


def test_v2_binary_bytes_survive_decoding():
    """KServe 0.21's decoder fails on non-UTF-8 BYTES; ours keeps them as bytes."""
    images = [jpeg(3), b"\x00\xff\xfe binary \x80"]
    body, headers = _triton_body(images, ['{"lat": 1.0, "lon": 2.0}', "{}"], tta="flip")
    request = decode_request(body, headers, "roadwork")
    assert isinstance(request, InferRequest)
    by_name = {i.name: i for i in request.inputs}
    assert by_name["image"].data == images
    assert by_name["metadata"].data == [b'{"lat": 1.0, "lon": 2.0}', b"{}"]
    assert request.parameters["tta"] == "flip"


@pytest.mark.parametrize("mutate", ["cut_tensor", "bad_header", "extra_bytes", "bad_json"])
def test_v2_framing_errors_are_400(mutate):
    body, headers = _triton_body([jpeg(3)])
    size = int(headers["inference-header-content-length"])
    if mutate == "cut_tensor":
        body = body[:-10]
    elif mutate == "bad_header":
        headers["inference-header-content-length"] = str(len(body) + 5)
    elif mutate == "extra_bytes":
        body += b"trailing"
    else:
        body = b"{" + body[1:size - 1] + b"," + body[size:]
    with pytest.raises(BadRequest) as info:
        decode_request(body, headers, "roadwork")
    assert info.value.status == 400


# --- cache keys -------------------------------------------------------------------------------


def test_cache_key_covers_every_input():
    base = cache_key("v1", "roadwork", "none", b"img", {"weather": "clear"})
    assert base == cache_key("v1", "roadwork", "none", b"img", {"weather": "clear"})
    others = [
        cache_key("v2", "roadwork", "none", b"img", {"weather": "clear"}),
        cache_key("v1", "lanes", "none", b"img", {"weather": "clear"}),
        cache_key("v1", "roadwork", "flip", b"img", {"weather": "clear"}),
        cache_key("v1", "roadwork", "none", b"img2", {"weather": "clear"}),
        cache_key("v1", "roadwork", "none", b"img", {"weather": "rainy"}),
        cache_key("v1", "roadwork", "none", b"img", None),
        cache_key("v1", "roadwork", "none", b"img", {"weather": "clear"}, "base64"),
    ]
    assert len({base, *others}) == 8
    # metadata is canonical: key order and alias spelling do not matter
    a = check_metadata({"weather": "Sunny", "lat": 1, "lon": 2})
    b = check_metadata({"lon": 2.0, "lat": 1.0, "weather": "clear"})
    assert cache_key("v", "t", "none", b"i", a) == cache_key("v", "t", "none", b"i", b)


def test_cache_without_redis_misses_and_counts_nothing():
    cache = PredictionCache(None, "m")
    found, ok = asyncio.run(cache.get_many(["a", "b"]))
    assert found == [None, None] and ok
    assert cache.store([("a", {"x": 1})]) is None  # nothing to wait for


# --- circuit breaker --------------------------------------------------------------------------


def test_dead_redis_opens_the_circuit():
    from _serving import free_port

    redis = ResilientRedis(f"redis://127.0.0.1:{free_port()}/0", op_timeout_s=0.05,
                           backoff_initial_s=30)

    async def twice():
        for _ in range(2):
            with pytest.raises(RedisUnavailable):
                await redis.call(lambda r: r.get("k"))

    asyncio.run(twice())
    assert redis.failures == 1  # the second call never touched the network
    assert redis.circuit_open


def test_cache_and_limiter_degrade_when_redis_is_down():
    from _serving import free_port

    redis = ResilientRedis(f"redis://127.0.0.1:{free_port()}/0", op_timeout_s=0.05)
    cache = PredictionCache(redis, "m")
    limiter = RateLimiter(redis, limit_per_min=1)

    async def run():
        found, ok = await cache.get_many(["k"])
        assert found == [None] and not ok
        for _ in range(3):  # fails open: never RateLimited while Redis is unavailable
            await limiter.check("key", "m")

    asyncio.run(run())


# --- API keys ---------------------------------------------------------------------------------


def test_api_keys_hash_and_compare():
    keys = parse_api_keys("# comment\nalice:0123456789abcdef0123\nbob:fedcba9876543210fedc:5\n"
                          "anonymous-key-1234567\n")
    assert [k.key_id for k in keys][:2] == ["alice", "bob"]
    assert keys[2].key_id.startswith("key-")
    assert all(len(k.digest) == 32 for k in keys)  # digests only, secrets are not kept
    auth = Authenticator(keys)
    assert auth.key_id({"authorization": "Bearer 0123456789abcdef0123"}) == "alice"
    assert auth.key_id({"x-api-key": "fedcba9876543210fedc"}) == "bob"
    assert auth.limit_for("bob") == 5 and auth.limit_for("alice") is None
    for headers in ({}, {"x-api-key": "0123456789abcdef0124"}, {"authorization": "Bearer "}):
        with pytest.raises(Unauthorized):
            auth.key_id(headers)
    assert Authenticator(None).key_id({}, "10.0.0.1") == "ip:10.0.0.1"


@pytest.mark.parametrize("text", ["", "a:short", "a:0123456789abcdef:x", "a:k1k1k1k1k1k1k1k1\n"
                                  "a:k2k2k2k2k2k2k2k2"])
def test_bad_key_files_are_user_errors(text):
    with pytest.raises(UserError):
        parse_api_keys(text)


# --- micro-batcher ----------------------------------------------------------------------------


def test_batcher_coalesces_concurrent_requests_and_keeps_order():
    release = threading.Event()
    calls: list[list[int]] = []

    def forward(items):
        calls.append(list(items))
        release.wait(5)
        return [i * 10 for i in items]

    batcher = MicroBatcher(forward, max_batch_size=4, max_wait_ms=0)

    async def run():
        first = asyncio.ensure_future(batcher.submit(0))
        while not calls:  # the first forward is running (and held)
            await asyncio.sleep(0.001)
        rest = [asyncio.ensure_future(batcher.submit(i)) for i in range(1, 10)]
        await asyncio.sleep(0.01)
        release.set()
        return await asyncio.gather(first, *rest)

    results = asyncio.run(run())
    assert results == [i * 10 for i in range(10)]
    assert calls[0] == [0]
    assert [len(c) for c in calls[1:]] == [4, 4, 1]  # queued during the forward -> full batches
    batcher.close()


def test_batcher_groups_by_key_and_propagates_errors():
    calls = []

    def forward(items):
        calls.append([i for i, _ in items])
        if any(tta == "bad" for _, tta in items):
            raise RuntimeError("boom")
        return [i for i, _ in items]

    batcher = MicroBatcher(forward, max_batch_size=8, max_wait_ms=20,
                           group_key=lambda item: item[1])

    async def run():
        jobs = [batcher.submit((i, "flip" if i % 2 else "none")) for i in range(4)]
        results = await asyncio.gather(*jobs)
        with pytest.raises(RuntimeError, match="boom"):
            await batcher.submit((9, "bad"))
        return results

    assert asyncio.run(run()) == [0, 1, 2, 3]
    assert sorted(map(sorted, calls[:2])) == [[0, 2], [1, 3]]  # one forward per TTA mode
    batcher.close()


def test_adaptive_wait_waits_only_for_announced_items():
    calls = []

    def forward(items):
        calls.append(list(items))
        return items

    batcher = MicroBatcher(forward, max_batch_size=8, max_wait_ms=600_000)

    async def run():
        # a lone announced request is dispatched at once, not after the (huge) max wait
        batcher.expect(1)
        assert await asyncio.wait_for(batcher.submit("alone", expected=True), 30) == "alone"
        # two announced items: the first waits for the second, and they share a forward
        batcher.expect(2)
        first = asyncio.ensure_future(batcher.submit("a", expected=True))
        await asyncio.sleep(0.05)
        assert not first.done()
        second = await asyncio.wait_for(batcher.submit("b", expected=True), 30)
        return await first, second

    assert asyncio.run(run()) == ("a", "b")
    assert calls == [["alone"], ["a", "b"]]
    batcher.close()


# --- the predictor ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bundles(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bundles")
    return {"roadwork": make_bundle("roadwork_tiny", root / "roadwork", 0),
            "lanes": make_bundle("lanes_tiny", root / "lanes", 0)}


def _run(model: RoadvisionModel, payload):
    async def go():
        headers: dict[str, str] = {}
        job = await model.preprocess(payload, {})
        job = await model.predict(job, {}, headers)
        return await model.postprocess(job, {}, headers), headers

    return asyncio.run(go())


def test_load_sets_ready_only_after_warm_up(bundles, tmp_path):
    model = RoadvisionModel("roadwork", str(bundles["roadwork"]))
    assert not model.ready
    with pytest.raises(NotReady):
        asyncio.run(model.preprocess(v1_body(jpeg(0)), {}))
    assert model.load() is True and model.ready
    assert len(model.loaded.version) == 12

    broken = RoadvisionModel("x", str(tmp_path))  # a directory without a bundle
    with pytest.raises(UserError, match="config.json"):
        broken.load()
    assert not broken.ready


def test_v1_roadwork_round_trip(bundles):
    model = RoadvisionModel("roadwork", str(bundles["roadwork"]))
    model.load()
    body, headers = _run(model, v1_body(jpeg(0), {"weather": "rainy"}, "flip"))
    (pred,) = body["predictions"]
    assert set(pred) == {"probability", "label", "model_version", "tta", "cached"}
    assert 0.0 <= pred["probability"] <= 1.0
    assert pred["label"] == int(pred["probability"] >= model.loaded.cfg.threshold)
    assert pred["tta"] == "flip" and pred["cached"] is False
    assert headers["x-roadvision-model-version"] == pred["model_version"]
    # the same instance again gives the same answer (no cache here: recomputed)
    again, _ = _run(model, v1_body(jpeg(0), {"weather": "Rain"}, "flip"))
    assert again == body


def test_v1_lanes_mask_and_shares(bundles):
    from PIL import Image

    model = RoadvisionModel("lanes", str(bundles["lanes"]))
    model.load()
    body, _ = _run(model, v1_body(jpeg(1, width=80, height=48)))
    (pred,) = body["predictions"]
    mask = np.asarray(Image.open(__import__("io").BytesIO(base64.b64decode(pred["mask_png_b64"]))))
    assert mask.shape == (48, 80) and (pred["height"], pred["width"]) == (48, 80)
    assert mask.max() < len(model.loaded.classes)
    counts = np.bincount(mask.ravel(), minlength=len(model.loaded.classes)) / mask.size
    shares = [pred["class_shares"][c] for c in model.loaded.classes]
    np.testing.assert_allclose(shares, counts, atol=1e-5)


def test_v2_response_is_an_infer_response(bundles):
    model = RoadvisionModel("roadwork", str(bundles["roadwork"]))
    model.load()
    request = InferRequest("roadwork", [InferInput("image", [2], "BYTES",
                                                   data=[jpeg(0), jpeg(1)])],
                           parameters={"tta": "none"})
    response, _ = _run(model, request)
    assert isinstance(response, InferResponse)
    assert response.model_version == model.loaded.version
    outputs = {o.name: o for o in response.outputs}
    assert outputs["probability"].shape == [2] and outputs["cached"].datatype == "BOOL"
    # v1 and v2 agree on the same image
    v1, _ = _run(model, v1_body(jpeg(1)))
    assert float(outputs["probability"].data[1]) == pytest.approx(
        v1["predictions"][0]["probability"], abs=1e-6)


def test_inference_requests_skip_fastapis_router_and_other_methods_still_reach_it(
        bundles, monkeypatch):
    """The dispatch answers POSTs to the inference routes before FastAPI's router: the
    endpoint FastAPI registered is not called, the answer is the same, and a GET still meets
    FastAPI (405)."""
    from fastapi import FastAPI
    from fastapi.testclient import TestClient
    from kserve.model_repository import ModelRepository
    from kserve.protocol.dataplane import DataPlane

    from roadvision.serving.server import Guard, InferenceRoutes, ServerHooks

    model = RoadvisionModel("roadwork", str(bundles["roadwork"]))
    model.load()
    repository = ModelRepository()
    repository.update(model)
    endpoint_calls = []
    original = InferenceRoutes.v1_predict

    async def counted(self, model_name: str, request: Request):
        endpoint_calls.append(model_name)
        return await original(self, model_name, request)

    monkeypatch.setattr(InferenceRoutes, "v1_predict", counted)
    answers = {}
    for dispatch in (False, True):
        endpoint_calls.clear()
        hooks = ServerHooks(Guard(ServingConfig(), Authenticator(None), RateLimiter(None, 0)))
        app = FastAPI()
        if dispatch:  # KServe's order: middlewares, then routes, then handlers
            hooks.add_middlewares(app)
        hooks.add_routes(app, DataPlane(model_registry=repository))
        hooks.add_exception_handlers(app)
        client = TestClient(app)
        response = client.post("/v1/models/roadwork:predict", content=json.dumps(
            v1_body(jpeg(4))), headers={"content-type": "application/json"})
        assert response.status_code == 200, response.text
        answers[dispatch] = response.json()["predictions"]
        assert endpoint_calls == ([] if dispatch else ["roadwork"])
        assert client.get("/v1/models/roadwork:predict").status_code == 405
        missing = client.post("/v1/models/nobody:predict", json=v1_body(jpeg(4)))
        assert (missing.status_code, missing.json()["code"]) == (404, "model_not_found")
    assert answers[True] == answers[False]
    model.stop()


@pytest.mark.parametrize(("data", "error", "code"), [
    (encode(image_array(0), "GIF"), UnsupportedMediaType, "unsupported_format"),
    (encode(image_array(0), "BMP"), UnsupportedMediaType, "unsupported_format"),
    (jpeg(0)[:200], Unprocessable, "invalid_image"),
    (encode(np.zeros((1200, 1000, 3), np.uint8), "PNG"), PayloadTooLarge, "too_many_pixels"),
])
def test_bad_images_are_refused_in_preprocess(bundles, data, error, code):
    model = RoadvisionModel("roadwork", str(bundles["roadwork"]),
                            ServingConfig(max_pixels=1_000_000))
    model.load()
    with pytest.raises(error) as info:
        asyncio.run(model.preprocess(v1_body(data), {}))
    assert info.value.code == code
    assert "instances[0].image_b64" in info.value.message


def test_reload_swaps_version(bundles, tmp_path):
    import shutil

    served = tmp_path / "served"
    shutil.copytree(bundles["roadwork"], served)
    model = RoadvisionModel("roadwork", str(served))
    model.load()
    first = model.loaded.version
    make_bundle("roadwork_tiny", tmp_path / "next", seed=7)
    for name in ("config.json", "weights.safetensors"):
        shutil.copy(tmp_path / "next" / name, served / name)
    model.load()
    assert model.loaded.version != first and model.ready
    body, _ = _run(model, v1_body(jpeg(0)))
    assert body["predictions"][0]["model_version"] == model.loaded.version


def test_audit_line_has_no_content(capsys):
    from roadvision.serving import audit

    stream = __import__("io").StringIO()
    audit.log.handlers.clear()
    audit.configure(stream)
    audit.emit(audit.AuditRecord(request_id="r1", key_id="alice", model="roadwork",
                                 protocol="v1", version="abc", status=200, latency_ms=1.23456,
                                 cache="hit", instances=1, tta="none"))
    line = json.loads(stream.getvalue())
    assert line["key_id"] == "alice" and line["status"] == 200 and line["latency_ms"] == 1.235
    assert set(line) == {"ts", "event", "request_id", "key_id", "model", "protocol", "version",
                         "status", "code", "latency_ms", "cache", "instances", "tta", "method",
                         "route"}
    audit.log.handlers.clear()


def test_config_from_env_and_errors():
    config = ServingConfig.from_env({"ROADVISION_MAX_TTA": "flip", "ROADVISION_MAX_BATCH_SIZE": "4",
                                     "REDIS_URL": "redis://x:1/0"}, max_batch_size=2)
    assert (config.max_tta, config.max_batch_size, config.redis_url) == ("flip", 2, "redis://x:1/0")
    with pytest.raises(UserError, match="ROADVISION_MAX_PIXELS"):
        ServingConfig.from_env({"ROADVISION_MAX_PIXELS": "lots"})
    with pytest.raises(UserError, match="max TTA"):
        ServingConfig(max_tta="everything")


def test_metrics_module_declares_every_contract_name():
    from prometheus_client import REGISTRY, generate_latest

    from roadvision.serving import metrics

    text = generate_latest(REGISTRY).decode()
    for name in metrics.METRIC_NAMES:
        assert f"# TYPE {name.removesuffix('_total')}" in text, name



def test_load_from_mlflow_alias_and_reload_after_promotion(mlflow_store, tmp_path):  # noqa: F811
    """``models:/NAME@champion``: load downloads the aliased version; after the alias moves,
    load() again serves the new version (what /v2/repository/models/NAME/load does)."""
    from roadvision import registry
    from roadvision.models import bundle_version

    first = make_bundle("roadwork_tiny", tmp_path / "first", seed=0)
    second = make_bundle("roadwork_tiny", tmp_path / "second", seed=1)
    v1 = registry.register_bundle(first, "rv-serving-test", {"source": "test"},
                                  validate_example=False)
    registry.set_alias("rv-serving-test", "champion", v1)
    model = RoadvisionModel("roadwork", "models:/rv-serving-test@champion")
    assert model.load() and model.loaded.version == bundle_version(first)

    v2 = registry.register_bundle(second, "rv-serving-test", {"source": "test"},
                                  validate_example=False)
    registry.set_alias("rv-serving-test", "champion", v2)
    model.load()
    assert model.loaded.version == bundle_version(second) != bundle_version(first)
    body, _ = _run(model, v1_body(jpeg(0)))
    assert body["predictions"][0]["model_version"] == bundle_version(second)


def test_cli_serve_maps_options_onto_the_entry_point(monkeypatch):
    from typer.testing import CliRunner

    import roadvision.serving.__main__ as entry
    from roadvision.cli import app

    seen = {}
    monkeypatch.setattr(entry, "main", lambda argv: seen.setdefault("argv", argv))
    result = CliRunner().invoke(app, ["serve", "--model", "/b1", "--model", "/b2",
                                      "--model-name", "roadwork", "--port", "9000",
                                      "--redis", "redis://x:1/0", "--max-tta", "flip"])
    assert result.exit_code == 0, result.output
    assert seen["argv"] == ["--http_port", "9000", "--host", "127.0.0.1",
                            "--model", "roadwork=/b1", "--model", "/b2",
                            "--redis", "redis://x:1/0", "--max_tta", "flip"]


def test_entry_point_model_specs():
    from roadvision.serving.__main__ import build_parser, model_specs

    args = build_parser().parse_args(["--model", "/mnt/models", "--model_name", "roadwork",
                                      "--model", "lanes=models:/lanes@champion"])
    assert model_specs(args, env={}) == [("roadwork", "/mnt/models"),
                                         ("lanes", "models:/lanes@champion")]
    assert args.enable_grpc is False
    args = build_parser().parse_args([])
    assert model_specs(args, env={"ROADVISION_MODEL_URI": "/m",
                                  "ROADVISION_MODEL_NAME": "rw"}) == [("rw", "/m")]
    with pytest.raises(UserError, match="no model given"):
        model_specs(args, env={})
    args = build_parser().parse_args(["--model", "a=/x", "--model", "a=/y"])
    with pytest.raises(UserError, match="unique"):
        model_specs(args, env={})


def test_local_cache_evicts_least_recent_by_bytes_and_expires():
    from roadvision.serving.cache import LocalCache

    local = LocalCache(max_bytes=10)
    local.put("a", b"1234")
    local.put("b", b"5678")
    assert local.get("a") == b"1234"  # now b is the least recently used
    local.put("c", b"90ab")  # 12 bytes > 10: b goes
    assert local.get("b") is None
    assert local.get("a") == b"1234" and local.get("c") == b"90ab"
    assert local.size == 8 and len(local) == 2
    local.put("huge", b"x" * 11)  # larger than the whole budget: never stored
    assert local.get("huge") is None and local.size == 8
    local.put("a", b"12")  # replacing an entry accounts its new size
    assert local.size == 6
    now = [100.0]
    expiring = LocalCache(max_bytes=100, ttl_s=0.05, clock=lambda: now[0])
    expiring.put("k", b"v")
    now[0] += 0.04
    assert expiring.get("k") == b"v"
    now[0] += 0.02  # 0.06 s after the store
    assert expiring.get("k") is None and expiring.size == 0


def _count_redis_calls(redis) -> list:
    """Every Redis round trip ``redis`` makes from now on, recorded (it still makes them)."""
    calls = []
    real_call = redis.call

    async def counting_call(fn):
        calls.append(fn)
        return await real_call(fn)

    redis.call = counting_call
    return calls


def test_writes_of_one_loop_turn_share_one_pipeline(redis_server):
    from roadvision.serving.cache import PredictionCache
    from roadvision.serving.redis_client import ResilientRedis

    async def run():
        redis = ResilientRedis(redis_server.url)
        cache = PredictionCache(redis, "m", ttl_s=60, local_bytes=1 << 20)
        pipelines = _count_redis_calls(redis)
        writes = [cache.store([(f"k{i}", {"p": i})]) for i in range(5)]
        assert all(w is writes[0] for w in writes)  # one write for the loop turn
        assert await writes[0] is True
        assert len(pipelines) == 1  # five requests, one round trip
        pipelines.clear()
        found, ok = await cache.get_many([f"k{i}" for i in range(5)])
        assert ok and [f["p"] for f in found] == list(range(5))
        assert pipelines == []  # all answered from the in-process copy
        fresh = PredictionCache(redis, "m", ttl_s=60)  # another replica: Redis has them
        found, ok = await fresh.get_many(["k3", "nope"])
        assert ok and found[0] == {"p": 3} and found[1] is None
        await redis.close()

    asyncio.run(run())


def test_a_local_hit_does_not_extend_the_local_expiry(redis_server):
    from roadvision.serving.cache import PredictionCache
    from roadvision.serving.redis_client import ResilientRedis

    async def run():
        redis = ResilientRedis(redis_server.url)
        cache = PredictionCache(redis, "m", ttl_s=60, local_bytes=1 << 20)
        now = [100.0]
        cache.local.clock = lambda: now[0]
        cache.local.ttl_s = 0.3  # the local copy expires well before Redis's entry
        assert await cache.store([("k", {"p": 1})])
        asked = _count_redis_calls(redis)
        now[0] += 0.2
        found, _ = await cache.get_many(["k"])
        assert found == [{"p": 1}] and asked == []  # a local hit
        now[0] += 0.15  # 0.35 s after the store: the local copy is gone
        found, _ = await cache.get_many(["k"])
        assert found == [{"p": 1}] and len(asked) == 1  # answered by Redis, copied again
        found, _ = await cache.get_many(["k"])
        assert len(asked) == 1
        await redis.close()

    asyncio.run(run())


def test_an_answer_does_not_wait_for_redis_to_take_its_copy(bundles, redis_server):
    """Write-behind: a miss's answer is complete while its Redis write is still held up, the
    replica's own copy already answers a repeat, and Redis has the entry once the write lands."""
    from roadvision.serving.cache import PredictionCache

    async def run():
        redis = ResilientRedis(redis_server.url)
        model = RoadvisionModel("roadwork", str(bundles["roadwork"]),
                                ServingConfig(local_cache_bytes=1 << 20), redis=redis)
        model.load()
        gate = asyncio.Event()
        writes_started = []
        real_call = redis.call

        async def held_writes(fn):
            if getattr(fn, "__name__", "") == "_write":  # the cache's pipeline of SETs
                writes_started.append(fn)
                await gate.wait()
            return await real_call(fn)

        redis.call = held_writes
        body = v1_body(jpeg(31))
        # (a predict that waited for the held write would never return: bounded, so it fails)
        job = await asyncio.wait_for(model.predict(await model.preprocess(body, {}), {}, {}), 30)
        answer = await model.postprocess(job, {}, {})
        assert answer["predictions"][0]["cached"] is False
        writer = model.cache._writer
        assert writer is not None and not writer.done()  # the write is still on its way
        for _ in range(100):  # let the writer reach Redis (it starts on the loop's next turn)
            if writes_started:
                break
            await asyncio.sleep(0)
        assert writes_started and not writer.done()
        repeat = await model.preprocess(body, {})
        assert repeat.cache_state == "hit"  # from this replica's in-process copy
        other_replica = PredictionCache(redis, "roadwork", ttl_s=60)
        redis.call = real_call
        assert (await other_replica.get_many([job.items[0].key]))[0] == [None]
        gate.set()
        await writer
        found, ok = await other_replica.get_many([job.items[0].key])
        assert ok and found[0]["probability"] == answer["predictions"][0]["probability"]
        model.stop()
        await redis.close()

    asyncio.run(run())


def test_the_dispatch_matches_exactly_the_routes_the_router_registers():
    """The fast dispatch's patterns are made from the router's templates: a model name is one
    path segment, and anything around it must be the template's own text."""
    from roadvision.serving.server import INFERENCE_ROUTES, V1_PATH, V2_PATH

    templates = {"v1": V1_PATH, "v2": V2_PATH}
    assert [protocol for protocol, _ in INFERENCE_ROUTES] == ["v1", "v2"]
    for protocol, pattern in INFERENCE_ROUTES:
        template = templates[protocol]
        assert pattern.match(template.format(model_name="lanes-small.v2"))[1] == "lanes-small.v2"
        assert pattern.match(template.format(model_name="a/b")) is None
        assert pattern.match(template.format(model_name="m") + "/") is None
        assert pattern.match("/x" + template.format(model_name="m")) is None
    assert INFERENCE_ROUTES[0][1].match("/v1/models/m/infer") is None  # v2's suffix on v1
