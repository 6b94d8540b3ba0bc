"""Bounded cost per request, against a real ModelServer (both tasks, tiny bundles).

Findings this covers (each failed on the first version): lanes images of 32x32 or smaller gave
a 500; a 3 KB 4900x4900 1-bit PNG under max_pixels kept the lanes model busy for minutes; a
9 MB v2 JSON of 3 million empty lists blocked the event loop for seconds; a v2 JSON tensor's
``shape`` was not checked against its data; requests had no deadline; the model repository's
load/unload routes were open with auth off, and the server bound every interface.
"""

from __future__ import annotations

import asyncio
import base64
import io
import socket

import httpx
import numpy as np
import pytest
from _serving import (
    ServingServer,
    b64,
    encode,
    held_file,
    image_array,
    jpeg,
    make_bundle,
    metric_value,
)
from PIL import Image

MAX_WINDOWS = 64
DEADLINE_S = 4


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("request_bounds")
    lanes = make_bundle("lanes_tiny", root / "lanes", seed=0)  # input_size 64
    roadwork = make_bundle("roadwork_tiny", root / "roadwork", seed=0)  # 5 views of 32 px
    hold = root / "hold"
    server = ServingServer(
        args=["--model", f"lanes={lanes}", "--model", f"roadwork={roadwork}",
              "--max_windows", str(MAX_WINDOWS), "--request_timeout_s", str(DEADLINE_S),
              "--hold_file", str(hold)],
        log_path=root / "server.log",
    )
    server.start(ready_models=("lanes", "roadwork"))
    yield {"url": server.url, "hold": hold, "server": server}
    if hold.exists():
        hold.unlink()
    server.stop()


def v1(url: str, model: str, image: bytes, tta: str = "none", n: int = 1) -> httpx.Response:
    body = {"instances": [{"image_b64": b64(image), "tta": tta}] * n}
    return httpx.post(f"{url}/v1/models/{model}:predict", json=body, timeout=60)


def error_code(r: httpx.Response) -> str:
    body = r.json()
    assert set(body) == {"error", "code"}, body
    return body["code"]


def one_bit_png(side: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("1", (side, side), 0).save(buffer, "PNG", optimize=True)
    return buffer.getvalue()


# --- small inputs are padded ------------------------------------------------------------------

@pytest.mark.parametrize(("width", "height"), [(32, 32), (16, 16), (1, 1), (40, 8)])
def test_lanes_images_smaller_than_the_model_input_are_padded(env, width, height):
    r = v1(env["url"], "lanes", encode(image_array(width, width, height), "PNG"), tta="none")
    assert r.status_code == 200, r.text
    (pred,) = r.json()["predictions"]
    mask = np.asarray(Image.open(io.BytesIO(base64.b64decode(pred["mask_png_b64"]))))
    assert mask.shape == (height, width)  # the padding is cropped off again
    assert sum(pred["class_shares"].values()) == pytest.approx(1.0, abs=1e-4)


# --- the compute budget ------------------------------------------------------------------------

def test_a_tiny_png_announcing_4900x4900_pixels_is_over_the_budget(env):
    png = one_bit_png(4900)
    assert len(png) < 10_000  # under max_pixels and tiny on the wire
    r = v1(env["url"], "lanes", png)
    assert r.status_code == 413, r.text
    assert error_code(r) == "over_compute_budget"
    message = r.json()["error"]
    assert "4900x4900" in message and "64x64 model windows" in message and "64 per" in message


def test_tta_copies_and_instances_count_against_the_budget(env):
    url = env["url"]
    image = encode(image_array(3, 200, 150), "PNG")  # lanes: 4x3 = 12 windows with no TTA
    assert v1(url, "lanes", image, tta="none").status_code == 200
    r = v1(url, "lanes", image, tta="full")  # 6 copies, the 1.25 one larger still
    assert r.status_code == 413 and error_code(r) == "over_compute_budget"
    assert "TTA 'full'" in r.json()["error"]
    # roadwork: a 224 px image gives 5 views; x 6 copies = 30 per instance
    assert v1(url, "roadwork", jpeg(1, 224, 224), tta="full", n=2).status_code == 200
    r = v1(url, "roadwork", jpeg(1, 224, 224), tta="full", n=3)
    assert r.status_code == 413 and error_code(r) == "over_compute_budget"
    assert "90" in r.json()["error"]


# --- JSON bodies ------------------------------------------------------------------------------

def test_a_json_body_of_millions_of_empty_lists_is_refused_unparsed(env):
    body = (b'{"inputs":[{"name":"image","shape":[1],"datatype":"BYTES","data":['
            + b",".join([b"[]"] * 3_000_000) + b"]}]}")
    assert len(body) > 8_000_000
    r = httpx.post(f"{env['url']}/v2/models/lanes/infer", content=body,
                   headers={"Content-Type": "application/json"}, timeout=60)
    assert r.status_code == 413 and error_code(r) == "json_too_complex", r.text


@pytest.mark.parametrize(("shape", "data", "status", "code"), [
    ([2], [b64(jpeg(1))], 400, "invalid_v2_request"),  # announces 2, sends 1
    ([1], [b64(jpeg(1)), b64(jpeg(2))], 400, "invalid_v2_request"),
    ([1], [[[]]], 400, "invalid_v2_request"),
    ([1_000_000], [b64(jpeg(1))], 422, "too_many_instances"),
])
def test_v2_json_shape_is_checked_against_the_data(env, shape, data, status, code):
    body = {"inputs": [{"name": "image", "shape": shape, "datatype": "BYTES", "data": data}]}
    r = httpx.post(f"{env['url']}/v2/models/roadwork/infer", json=body, timeout=60)
    assert r.status_code == status and error_code(r) == code, r.text
    if status == 400:
        assert "shape" in r.json()["error"]


def test_v2_nested_data_matching_its_shape_is_accepted(env):
    body = {"inputs": [{"name": "image", "shape": [2, 1], "datatype": "BYTES",
                        "data": [[b64(jpeg(1))], [b64(jpeg(2))]]}]}
    r = httpx.post(f"{env['url']}/v2/models/roadwork/infer", json=body, timeout=60)
    assert r.status_code == 200, r.text


# --- health while a hostile request runs, and the deadline --------------------------------------

def _tta_passes(url: str, mode: str) -> float:
    return metric_value(httpx.get(f"{url}/metrics").text, "roadvision_tta_passes_total",
                        model="lanes", mode=mode)


def test_health_answers_while_a_costly_request_runs_and_the_deadline_drops_queued_work(env):
    """A lanes request at the budget's edge is held inside the model forward (the test
    server's hold file). Health answers while it is still running; past the deadline it and a
    request queued behind it get 504, and the queued one's forward never runs."""
    url, hold = env["url"], env["hold"]
    costly = encode(image_array(5, 300, 300), "PNG")  # 7x7 = 49 windows of 64 px
    queued = encode(image_array(6, 64, 64), "PNG")
    none_before, flip_before = _tta_passes(url, "none"), _tta_passes(url, "flip")

    async def scenario():
        hold.touch()
        async with httpx.AsyncClient(base_url=url, timeout=60) as client, \
                httpx.AsyncClient(base_url=url, timeout=10) as probe:
            first = asyncio.create_task(client.post("/v1/models/lanes:predict", json={
                "instances": [{"image_b64": b64(costly), "tta": "none"}]}))
            for _ in range(400):  # until its forward is held
                if held_file(hold).exists():
                    break
                assert not first.done(), (await first).text
                await asyncio.sleep(0.05)
            else:
                pytest.fail("the costly request never reached the model forward")
            second = asyncio.create_task(client.post("/v1/models/lanes:predict", json={
                "instances": [{"image_b64": b64(queued), "tta": "flip"}]}))
            live = await probe.get("/v2/health/live")
            first_done_at_health = first.done()
            try:
                responses = await asyncio.gather(first, second)
            finally:
                hold.unlink()
        return live, first_done_at_health, responses

    live, first_done, (first, second) = asyncio.run(scenario())
    assert live.status_code == 200 and not first_done  # answered while the costly one ran
    for r in (first, second):
        assert r.status_code == 504 and error_code(r) == "deadline_exceeded", r.text
        assert f"{DEADLINE_S} s" in r.json()["error"]
    # The held forward finishes (a forward cannot be interrupted); the queued one is dropped.
    for _ in range(400):
        if _tta_passes(url, "none") > none_before:
            break
        asyncio.run(asyncio.sleep(0.05))
    after = v1(url, "lanes", encode(image_array(7, 64, 64), "PNG"), tta="none")
    assert after.status_code == 200  # the batcher moved past the dropped item
    assert _tta_passes(url, "none") == none_before + 2  # the held one and this one
    assert _tta_passes(url, "flip") == flip_before  # the queued request never ran


# --- control routes and binding ---------------------------------------------------------------

@pytest.mark.parametrize("action", ["load", "unload"])
def test_model_control_routes_are_off_by_default(env, action):
    r = httpx.post(f"{env['url']}/v2/repository/models/lanes/{action}", timeout=30)
    assert r.status_code == 403 and error_code(r) == "model_control_disabled"
    assert "--allow-model-control" in r.json()["error"]
    assert httpx.get(f"{env['url']}/v2/models/lanes/ready").status_code == 200  # still served


def test_the_server_binds_loopback_only_by_default(env):
    port = env["server"].port
    with socket.create_connection(("127.0.0.1", port), timeout=5):
        pass
    with socket.socket() as sock:  # another loopback address: answered only on 0.0.0.0
        sock.settimeout(5)
        assert sock.connect_ex(("127.0.0.2", port)) != 0
