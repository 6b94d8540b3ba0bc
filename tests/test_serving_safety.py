"""Safety: API keys, per-key rate limits in Redis, body/pixel/format/schema limits, error shape.

A real ModelServer with keys, small limits and a model whose bundle does not exist yet
(it answers 503 until it is loaded), plus a real redis-server.
"""

from __future__ import annotations

import socket
import struct
import zlib

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
from tritonclient.utils import InferenceServerException

MAIN_KEY = "main-secret-0123456789abcdef"
TINY_KEY = "tiny-secret-0123456789abcdef"
TINY_LIMIT = 3
MAX_BODY = 300_000
MAX_PIXELS = 1_000_000
AUTH = {"Authorization": f"Bearer {MAIN_KEY}"}


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("serving_safety")
    redis = RedisServer(port=free_port(), workdir=root)
    redis.start()
    keys = root / "keys.txt"
    keys.write_text(f"# id:key[:limit per minute]\nmain:{MAIN_KEY}\ntiny:{TINY_KEY}:{TINY_LIMIT}\n")
    roadwork = make_bundle("roadwork_tiny", root / "roadwork", seed=0)
    pending = root / "pending"  # no bundle there yet
    server = ServingServer(
        args=["--model", f"roadwork={roadwork}", "--model", f"pending={pending}",
              "--redis", redis.url, "--api_keys_file", str(keys),
              "--rate_limit_per_min", "1000", "--max_body_bytes", str(MAX_BODY),
              "--max_pixels", str(MAX_PIXELS), "--max_tta", "flip", "--allow_model_control"],
        log_path=root / "server.log",
    )
    server.start(ready_models=("roadwork",))
    yield {"url": server.url, "redis": redis, "pending": pending, "server": server,
           "port": server.port}
    server.stop()
    redis.stop()


def post(env, body=None, *, model="roadwork", headers=AUTH, content=None, protocol="v1"):
    path = f"/v1/models/{model}:predict" if protocol == "v1" else f"/v2/models/{model}/infer"
    return httpx.post(env["url"] + path, json=body if content is None else None,
                      content=content, headers=headers, timeout=30)


def assert_error(r: httpx.Response, status: int, code: str, *words: str) -> dict:
    """Status, the exact error shape, the code, the words the message must name; no internals."""
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error", "code"} and body["code"] == code, body
    for word in words:
        assert word in body["error"], (word, body)
    for leak in ("Traceback", 'File "', "site-packages", "torch", "Error :"):
        assert leak not in r.text
    return body


def png_bomb(width: int = 50_000, height: int = 50_000) -> bytes:
    """A tiny PNG whose header announces width x height pixels (a decompression bomb)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 1024)) + chunk(b"IEND", b""))


# --- authentication ---------------------------------------------------------------------------

def test_api_key_is_required_and_checked(env):
    r = post(env, v1_body(jpeg(1)), headers={})
    assert_error(r, 401, "unauthorized", "missing API key")
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert_error(post(env, v1_body(jpeg(1)), headers={"X-API-Key": MAIN_KEY + "x"}),
                 401, "unauthorized", "invalid API key")
    assert_error(post(env, {"inputs": []}, headers={}, protocol="v2"), 401, "unauthorized")
    assert post(env, v1_body(jpeg(1))).status_code == 200
    assert post(env, v1_body(jpeg(1)), headers={"X-API-Key": MAIN_KEY}).status_code == 200


def test_probes_and_metrics_need_no_key_but_repository_does(env):
    url = env["url"]
    assert httpx.get(f"{url}/v2/health/ready").status_code == 200
    assert httpx.get(f"{url}/metrics").status_code == 200
    for path in ("/v2/repository/models/roadwork/load", "/v1/models/roadwork:explain",
                 "/v2/models/roadwork/versions/1/infer"):
        assert_error(httpx.post(url + path, json={}), 401, "unauthorized")


def test_rate_limit_then_fail_open_when_redis_is_down(env):
    headers = {"X-API-Key": TINY_KEY}
    statuses = []
    # The window is a calendar minute: 2 * limit + 1 requests always overflow some window.
    for i in range(2 * TINY_LIMIT + 1):
        r = post(env, v1_body(jpeg(100 + i)), headers=headers)
        statuses.append(r.status_code)
        if r.status_code == 429:
            break
    assert statuses[-1] == 429 and statuses.count(200) >= TINY_LIMIT, statuses
    assert_error(r, 429, "rate_limited", "rate limit of 3 requests per minute")
    assert 1 <= int(r.headers["retry-after"]) <= 60
    # the other key is not affected
    assert post(env, v1_body(jpeg(1))).status_code == 200

    env["redis"].stop()
    try:
        r = post(env, v1_body(jpeg(120)), headers=headers)
        assert r.status_code == 200  # fails open: a limiter outage is not an API outage
        text = httpx.get(f"{env['url']}/metrics").text
        assert metric_value(text, "roadvision_ratelimit_errors_total", model="roadwork") >= 1
    finally:
        env["redis"].start()


# --- size limits ------------------------------------------------------------------------------

def test_body_over_the_limit_is_refused_before_it_is_read(env):
    """Only the headers are sent (Content-Length: 100 MB, no body): the 413 comes anyway."""
    request = (f"POST /v1/models/roadwork:predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
               f"X-API-Key: {MAIN_KEY}\r\nContent-Type: application/json\r\n"
               f"Content-Length: 100000000\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", env["port"]), timeout=20) as sock:
        sock.sendall(request)
        reply = b""
        while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
            data = sock.recv(65536)
            if not data:
                break
            reply += data
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
    assert b'"code":"body_too_large"' in reply


def test_chunked_body_over_the_limit_is_cut_off(env):
    def chunks():
        yield b'{"instances": [{"image_b64": "'
        for _ in range(40):
            yield b"A" * 10_000

    r = post(env, content=chunks(), headers={**AUTH, "Content-Type": "application/json"})
    assert "content-length" not in r.request.headers
    assert_error(r, 413, "body_too_large", str(MAX_BODY))


def test_decompression_bomb_is_refused_from_the_header(env):
    bomb = png_bomb()
    assert len(bomb) < 2000
    assert_error(post(env, v1_body(bomb)), 413, "too_many_pixels", "pixels", "instances[0]")
    big = encode(np.zeros((1100, 1000, 3), np.uint8), "PNG")  # 1.1 MP > 1 MP limit
    assert_error(post(env, v1_body(big)), 413, "too_many_pixels", "1,100,000")


# --- formats, schema, parsing -----------------------------------------------------------------

@pytest.mark.parametrize(("data", "status", "code", "word"), [
    (encode(image_array(0), "GIF"), 415, "unsupported_format", "GIF"),
    (encode(image_array(0), "BMP"), 415, "unsupported_format", "BMP"),
    (b"hello, I am not an image", 415, "unsupported_format", "JPEG"),
    (jpeg(0)[:300], 422, "invalid_image", "image"),
])
def test_image_format_errors(env, data, status, code, word):
    assert_error(post(env, v1_body(data)), status, code, word, "instances[0].image_b64")


@pytest.mark.parametrize(("metadata", "words"), [
    ({"lat": 95.0, "lon": 10.0}, ("metadata.lat", "out of range")),
    ({"lat": 45.0, "lon": 200}, ("metadata.lon",)),
    ({"weather": "sunnyish"}, ("metadata.weather", "sunnyish", "clear")),
    ({"scene": "moon"}, ("metadata.scene",)),
    ({"wether": "clear"}, ("wether",)),
])
def test_metadata_schema_errors_name_the_field(env, metadata, words):
    assert_error(post(env, v1_body(jpeg(2), metadata)), 422, "invalid_metadata", *words)


def test_tta_beyond_the_server_limit(env):
    assert_error(post(env, v1_body(jpeg(3), tta="full")), 422, "tta_not_allowed", "flip")
    assert_error(post(env, v1_body(jpeg(3), tta="upside-down")), 422, "invalid_tta")
    assert post(env, v1_body(jpeg(3), tta="flip")).status_code == 200


@pytest.mark.parametrize(("content", "code"), [
    (b'{"instances": [', "malformed_json"),
    (b'{"instances": [{"image_b64": "%%%not-base64%%%"}]}', "invalid_base64"),
    (b'{"images": []}', "invalid_request"),
])
def test_malformed_requests_are_400(env, content, code):
    assert_error(post(env, content=content), 400, code)


def test_v2_errors(env):
    assert_error(post(env, content=b"{nope", protocol="v2"), 400, "malformed_json")
    body = {"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES",
                        "data": [b64(encode(image_array(0), "GIF"))]}]}
    assert_error(post(env, body, protocol="v2"), 415, "unsupported_format", "image[0]")
    client = triton.InferenceServerClient(env["url"].removeprefix("http://"))
    image = triton.InferInput("image", [1], "BYTES")
    image.set_data_from_numpy(np.array([png_bomb()], dtype=object), binary_data=True)
    with pytest.raises(InferenceServerException) as info:
        client.infer("roadwork", [image], headers=dict(AUTH))  # tritonclient adds to it
    assert info.value.status() == "413"
    meta = triton.InferInput("metadata", [1], "BYTES")
    meta.set_data_from_numpy(np.array(['{"lat": -91, "lon": 0}'], dtype=object))
    image.set_data_from_numpy(np.array([jpeg(4)], dtype=object), binary_data=True)
    with pytest.raises(InferenceServerException) as info:
        client.infer("roadwork", [image, meta], headers=dict(AUTH))  # tritonclient adds to it
    assert info.value.status() == "422" and "metadata[0].lat" in str(info.value)


def test_unknown_model_is_404(env):
    assert_error(post(env, v1_body(jpeg(5)), model="nope"), 404, "model_not_found", "nope")


def test_not_ready_is_503_until_loaded(env):
    assert_error(post(env, v1_body(jpeg(6)), model="pending"), 503, "model_not_ready", "pending")
    assert httpx.get(f"{env['url']}/v1/models/pending").status_code == 503
    make_bundle("roadwork_tiny", env["pending"], seed=3)
    r = httpx.post(f"{env['url']}/v2/repository/models/pending/load", headers=AUTH, timeout=60)
    assert r.status_code == 200, r.text
    assert post(env, v1_body(jpeg(6)), model="pending").status_code == 200


def test_rejections_are_counted_and_audited_without_content(env):
    text = httpx.get(f"{env['url']}/metrics").text
    for reason in ("unauthorized", "rate_limited", "body_too_large", "too_many_pixels",
                   "unsupported_format", "invalid_metadata", "invalid_tta", "malformed"):
        assert metric_value(text, "roadvision_rejections_total", reason=reason) >= 1, reason
    assert metric_value(text, "roadvision_requests_total", model="roadwork", protocol="v1",
                        status="401") >= 1
    log = env["server"].log_text()
    assert '"key_id":"main"' in log and '"key_id":"tiny"' in log
    assert '"status":429' in log and '"code":"too_many_pixels"' in log
    assert MAIN_KEY not in log and TINY_KEY not in log
    assert b64(jpeg(1))[:40] not in log  # no image content
