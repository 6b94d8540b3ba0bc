"""Serving over HTTP: a real ModelServer process (both tasks) and a real redis-server.

Covers v1 and v2 for both tasks (v2 also from tritonclient, an independent Open Inference
Protocol client, with the binary tensor extension), health under load, OpenAPI and /metrics.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import re

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from _serving import (
    ServingServer,
    b64,
    encode,
    image_array,
    jpeg,
    make_bundle,
    metric_value,
    v1_body,
)
from conftest import RedisServer, free_port
from PIL import Image
from tritonclient.utils import InferenceServerException


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("serving_http")
    redis = RedisServer(port=free_port(), workdir=root)
    redis.start()
    bundles = {"roadwork": make_bundle("roadwork_tiny", root / "roadwork", 0),
               "lanes": make_bundle("lanes_tiny", root / "lanes", 0)}
    hold = root / "hold"
    server = ServingServer(
        args=["--model", f"roadwork={bundles['roadwork']}", "--model", f"lanes={bundles['lanes']}",
              "--redis", redis.url, "--max_batch_size", "8", "--max_batch_wait_ms", "2",
              "--hold_file", str(hold)],
        log_path=root / "server.log",
    )
    server.start(ready_models=("roadwork", "lanes"))
    yield server, bundles, hold
    server.stop()
    redis.stop()


@pytest.fixture(scope="module")
def url(served) -> str:
    return served[0].url


def _triton_inputs(images: list[bytes], metadata: list[dict] | None = None):
    image = triton.InferInput("image", [len(images)], "BYTES")
    image.set_data_from_numpy(np.array(images, dtype=object), binary_data=True)
    inputs = [image]
    if metadata is not None:
        meta = triton.InferInput("metadata", [len(metadata)], "BYTES")
        meta.set_data_from_numpy(np.array([json.dumps(m) for m in metadata], dtype=object),
                                 binary_data=True)
        inputs.append(meta)
    return inputs


def test_v1_roadwork(url, served):
    from roadvision.models import bundle_version

    r = httpx.post(f"{url}/v1/models/roadwork:predict",
                   json=v1_body(jpeg(10), {"lat": 40.44, "lon": -79.99, "scene": "Highway"},
                                "flip"))
    assert r.status_code == 200, r.text
    (pred,) = r.json()["predictions"]
    assert set(pred) == {"probability", "label", "model_version", "tta", "cached"}
    assert 0 <= pred["probability"] <= 1 and pred["label"] in (0, 1)
    assert pred["model_version"] == bundle_version(served[1]["roadwork"])
    assert pred["tta"] == "flip"
    assert r.headers["x-roadvision-model-version"] == pred["model_version"]


def test_v1_lanes_mask_is_a_png_of_class_ids(url):
    r = httpx.post(f"{url}/v1/models/lanes:predict", json=v1_body(jpeg(11, 120, 72)))
    assert r.status_code == 200, r.text
    (pred,) = r.json()["predictions"]
    mask = np.asarray(Image.open(io.BytesIO(base64.b64decode(pred["mask_png_b64"]))))
    assert mask.shape == (72, 120) and mask.dtype == np.uint8
    assert set(pred["class_shares"]) == {"background", "white_solid", "white_dashed",
                                         "yellow_solid"}
    assert sum(pred["class_shares"].values()) == pytest.approx(1.0, abs=1e-4)
    counts = np.bincount(mask.ravel(), minlength=4) / mask.size
    assert pred["class_shares"]["background"] == pytest.approx(counts[0], abs=1e-5)


def test_v2_json_with_base64_images(url):
    body = {"inputs": [{"name": "image", "shape": [2], "datatype": "BYTES",
                        "data": [b64(jpeg(12)), b64(jpeg(13))]}],
            "parameters": {"tta": "none"}}
    r = httpx.post(f"{url}/v2/models/roadwork/infer", json=body)
    assert r.status_code == 200, r.text
    outputs = {o["name"]: o for o in r.json()["outputs"]}
    assert outputs["probability"]["shape"] == [2] and len(outputs["probability"]["data"]) == 2
    assert outputs["cached"]["data"] == [False, False]
    # v1 gives the same probability for the same image
    v1 = httpx.post(f"{url}/v1/models/roadwork:predict", json=v1_body(jpeg(13))).json()
    assert v1["predictions"][0]["probability"] == pytest.approx(
        outputs["probability"]["data"][1], abs=1e-6)


@pytest.mark.parametrize("binary_output", [True, False])
def test_v2_tritonclient_binary_roadwork(url, binary_output):
    client = triton.InferenceServerClient(url.removeprefix("http://"))
    outputs = [triton.InferRequestedOutput(name, binary_data=binary_output)
               for name in ("probability", "label", "cached")]
    result = client.infer("roadwork", _triton_inputs([jpeg(14), jpeg(15)],
                                                     [{"weather": "rainy"}, {}]),
                          outputs=outputs, parameters={"tta": "flip"})
    prob, label = result.as_numpy("probability"), result.as_numpy("label")
    assert prob.shape == (2,) and ((prob >= 0) & (prob <= 1)).all()
    assert (label == (prob >= 0.5)).all()
    response = result.get_response()
    assert response["model_name"] == "roadwork" and len(response["model_version"]) == 12
    assert response["parameters"]["tta"] == "flip"


def test_v2_tritonclient_binary_lanes(url):
    client = triton.InferenceServerClient(url.removeprefix("http://"))
    result = client.infer("lanes", _triton_inputs([encode(image_array(16, 64, 48), "PNG")]))
    shares = result.as_numpy("class_shares")
    assert shares.shape == (1, 4) and shares.sum() == pytest.approx(1.0, abs=1e-4)
    png = base64.b64decode(result.as_numpy("mask_png_b64")[0])
    assert np.asarray(Image.open(io.BytesIO(png))).shape == (48, 64)
    assert result.get_response()["parameters"]["classes"].split(",")[0] == "background"


def test_v2_bad_image_is_4xx_not_500(url):
    client = triton.InferenceServerClient(url.removeprefix("http://"))
    with pytest.raises(InferenceServerException) as info:
        client.infer("roadwork", _triton_inputs([b"GIF89a" + bytes(range(256)) * 4]))
    assert info.value.status() == "415"
    with pytest.raises(InferenceServerException) as info:
        client.infer("roadwork", _triton_inputs([jpeg(17)[:150]]))
    assert info.value.status() == "422"


def test_unknown_model_is_404(url):
    for path in ("/v1/models/nope:predict", "/v2/models/nope/infer"):
        r = httpx.post(url + path, json=v1_body(jpeg(0)))
        assert r.status_code == 404
        assert r.json() == {"error": "model 'nope' is not served; served: ['lanes', 'roadwork']",
                            "code": "model_not_found"}


def test_model_readiness_endpoints(url):
    assert httpx.get(f"{url}/v1/models/roadwork").json() == {"name": "roadwork", "ready": True}
    assert httpx.get(f"{url}/v2/models/lanes/ready").status_code == 200
    meta = httpx.get(f"{url}/v2/models/roadwork").json()
    assert [i["name"] for i in meta["inputs"]] == ["image", "metadata"]
    assert [o["name"] for o in meta["outputs"]] == ["probability", "label", "cached"]


def test_health_answers_while_32_requests_are_in_flight(url, served):
    """The forward runs off the event loop: with 32 requests held inside the model forward
    (the test server's hold file), /metrics and the health routes still answer, and every
    request completes once released."""
    hold = served[2]

    async def scenario():
        hold.touch()
        limits = httpx.Limits(max_connections=64)
        async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client, \
                httpx.AsyncClient(base_url=url, timeout=10) as probe:
            tasks = [asyncio.create_task(client.post(
                "/v1/models/roadwork:predict", json=v1_body(jpeg(1000 + i))))
                for i in range(32)]
            try:
                for _ in range(600):  # until the server reports all 32 in flight
                    text = (await probe.get("/metrics")).text
                    if metric_value(text, "roadvision_inflight_requests", model="roadwork") >= 32:
                        break
                    await asyncio.sleep(0.05)
                else:
                    pytest.fail("the 32 requests never were in flight together")
                health = [await probe.get(p) for p in
                          ("/v2/health/live", "/v2/health/ready", "/v1/models/roadwork")]
                pending_after_health = sum(not t.done() for t in tasks)
            finally:
                hold.unlink()
            responses = await asyncio.gather(*tasks)
        return health, pending_after_health, responses

    health, pending, responses = asyncio.run(scenario())
    assert [r.status_code for r in health] == [200, 200, 200]
    assert pending == 32  # health answered while all 32 were still waiting for the model
    assert [r.status_code for r in responses] == [200] * 32
    # ... and they were micro-batched: requests that queued during the held forward were
    # coalesced, so some forward saw more than one instance.
    text = httpx.get(f"{url}/metrics").text
    singles = metric_value(text, "roadvision_batch_size_bucket", model="roadwork", le="1.0")
    total = metric_value(text, "roadvision_batch_size_count", model="roadwork")
    assert total > singles


def test_openapi_documents_our_routes(url):
    doc = httpx.get(f"{url}/openapi.json").json()
    v1 = doc["paths"]["/v1/models/{model_name}:predict"]["post"]
    schema = v1["requestBody"]["content"]["application/json"]["schema"]
    assert schema["properties"]["instances"]["items"]["required"] == ["image_b64"]
    assert {"400", "401", "413", "415", "422", "429", "503"} <= set(v1["responses"])
    v2 = doc["paths"]["/v2/models/{model_name}/infer"]["post"]
    assert "application/octet-stream" in v2["requestBody"]["content"]
    assert "roadvision" in doc["info"]["title"]


def _lines_with(served, needle: str, timeout: float = 5.0) -> list[str]:
    """The server log's lines that hold ``needle`` (waiting a little: the log is a pipe)."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        lines = [line for line in served[0].log_text().splitlines() if needle in line]
        if lines or time.monotonic() > deadline:
            return lines
        time.sleep(0.05)


def test_one_structured_log_line_per_request_with_the_audit_fields(url, served):
    from roadvision.models import bundle_version

    body = v1_body(jpeg(77))
    for attempt in ("log-miss", "log-hit"):
        r = httpx.post(f"{url}/v1/models/roadwork:predict", json=body,
                       headers={"x-request-id": attempt})
        assert r.status_code == 200 and r.headers["x-request-id"] == attempt
    miss, hit = (_lines_with(served, f'"{rid}"') for rid in ("log-miss", "log-hit"))
    assert len(miss) == 1 and len(hit) == 1, (miss, hit)
    line = json.loads(hit[0])
    assert line["event"] == "inference" and line["route"] == "/v1/models/roadwork:predict"
    assert (line["method"], line["status"], line["model"]) == ("POST", 200, "roadwork")
    assert line["version"] == bundle_version(served[1]["roadwork"])
    assert json.loads(miss[0])["cache"] == "miss" and line["cache"] == "hit"
    assert line["key_id"] == "ip:127.0.0.1" and line["latency_ms"] > 0
    assert line["request_id"] == "log-hit" and line["code"] == ""

    refused = httpx.post(f"{url}/v1/models/roadwork:predict", content=b"{not json",
                         headers={"x-request-id": "log-refused",
                                  "content-type": "application/json"})
    assert refused.status_code == 400
    (line,) = map(json.loads, _lines_with(served, '"log-refused"'))
    assert line["status"] == 400 and line["code"] == refused.json()["code"] != ""

    assert httpx.get(f"{url}/v2/health/ready",
                     headers={"x-request-id": "log-health"}).status_code == 200
    (line,) = map(json.loads, _lines_with(served, '"log-health"'))
    assert (line["event"], line["route"], line["status"]) == ("http", "/v2/health/ready", 200)
    assert line["latency_ms"] >= 0 and line["key_id"] == "ip:127.0.0.1"
    # nothing else per request: no uvicorn access line, no KServe timing lines, no warning
    text = served[0].log_text()
    for noise in ("uvicorn.access", "kserve.trace", "DeprecationWarning"):
        assert noise not in text, noise
    # our own INFO lines reach the log (KServe configures only its loggers): the startup
    # summary, and the loop, uvloop (--event-loop auto) where KServe's start() runs asyncio's
    assert "roadvision.serving INFO serving ['roadwork'" in text
    assert "event loop: uvloop.Loop (--event-loop auto)" in text


def test_docs_is_a_swagger_ui_served_without_a_network(url):
    page = httpx.get(f"{url}/docs")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    html = page.text
    assert "SwaggerUIBundle" in html and "/openapi.json" in html
    # every script and stylesheet is this server's: a closed network still shows the docs
    sources = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert sources and all(s.startswith("/docs/assets/") for s in sources), sources
    for source in sources:
        asset = httpx.get(f"{url}{source}")
        assert asset.status_code == 200 and len(asset.content) > 100, source
    assert "javascript" in httpx.get(f"{url}/docs/assets/swagger-ui-bundle.js"
                                     ).headers["content-type"]
    for outside in ("/docs/assets/index.j2", "/docs/assets/..%2F__init__.py"):
        assert httpx.get(f"{url}{outside}").status_code == 404, outside
    assert "/docs" not in httpx.get(f"{url}/openapi.json").json()["paths"]


def test_metrics_name_every_contract_metric_after_traffic(url, served):
    from roadvision.models import bundle_version
    from roadvision.serving.metrics import METRIC_NAMES

    text = httpx.get(f"{url}/metrics").text
    for name in METRIC_NAMES:  # declared (HELP/TYPE), whether or not a sample exists yet
        assert f"# TYPE {name} " in text, name
    # samples produced by this module's traffic (cache errors: see test_serving_cache.py)
    for name in ("roadvision_request_latency_seconds_count", "roadvision_cache_hits_total",
                 "roadvision_cache_misses_total", "roadvision_batch_size_count",
                 "request_preprocess_seconds_count", "request_postprocess_seconds_count"):
        assert metric_value(text, name) > 0, name
    version = bundle_version(served[1]["lanes"])
    assert metric_value(text, "roadvision_model_info", model="lanes", version=version,
                        task="lanes") == 1
    assert metric_value(text, "roadvision_model_ready", model="roadwork") == 1
    assert metric_value(text, "roadvision_requests_total", model="roadwork", protocol="v2",
                        status="200") >= 3
    assert metric_value(text, "roadvision_tta_passes_total", model="roadwork", mode="flip") >= 3
    assert metric_value(text, "request_predict_seconds_count", model_name="lanes") >= 2
    assert metric_value(text, "roadvision_rejections_total", model="roadwork",
                        reason="unsupported_format") >= 1
