"""The Redis cache, against a real ModelServer and a real redis-server that tests stop and restart.

What "same body" means here: a hit's JSON equals the miss's JSON exactly except for each
prediction's ``cached`` flag (false on the miss, true on the hit); status codes are equal.
During a Redis outage what this replica cached is still a hit (its in-process copy), and a new
image's body is the uncached one, the same at every repeat.
"""

from __future__ import annotations

import shutil
import time

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from _serving import ServingServer, jpeg, make_bundle, metric_value, v1_body, without_cached
from conftest import RedisServer, free_port

from roadvision.models import bundle_version


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("serving_cache")
    redis = RedisServer(port=free_port(), workdir=root)
    redis.start()
    served = root / "served_roadwork"
    make_bundle("roadwork_tiny", served, seed=0)
    candidate = make_bundle("roadwork_tiny", root / "candidate", seed=1)
    lanes = make_bundle("lanes_tiny", root / "lanes", seed=0)
    server = ServingServer(
        args=["--model", f"roadwork={served}", "--model", f"lanes={lanes}",
              "--redis", redis.url, "--allow_model_control"],
        log_path=root / "server.log",
        env={"ROADVISION_REDIS_TIMEOUT_S": "0.05"},
    )
    server.start(ready_models=("roadwork", "lanes"))
    yield {"url": server.url, "redis": redis, "served": served, "candidate": candidate,
           "server": server}
    server.stop()
    redis.stop()


def _post(url: str, model: str, body: dict) -> httpx.Response:
    r = httpx.post(f"{url}/v1/models/{model}:predict", json=body, timeout=30)
    assert r.status_code == 200, r.text
    return r


@pytest.mark.parametrize(("model", "body"), [
    ("roadwork", v1_body(jpeg(20), {"weather": "cloudy", "lat": 1.5, "lon": 2.5}, "flip")),
    ("lanes", v1_body(jpeg(21, 128, 96), tta="full")),
])
def test_hit_returns_the_miss_body(env, model, body):
    miss = _post(env["url"], model, body)
    hit = _post(env["url"], model, body)
    assert miss.headers["x-roadvision-cache"] == "miss"
    assert hit.headers["x-roadvision-cache"] == "hit"
    assert [p["cached"] for p in miss.json()["predictions"]] == [False]
    assert [p["cached"] for p in hit.json()["predictions"]] == [True]
    assert without_cached(hit.json()) == without_cached(miss.json())


def test_cache_key_follows_inputs(env):
    url = env["url"]
    _post(url, "roadwork", v1_body(jpeg(22), {"weather": "Sunny", "daytime": "Light"}))
    # the same metadata spelled differently is the same input: a hit
    same = _post(url, "roadwork", v1_body(jpeg(22), {"daytime": "day", "weather": "clear"}))
    assert same.headers["x-roadvision-cache"] == "hit"
    # another TTA mode, other metadata or other bytes: misses
    for body in (v1_body(jpeg(22), {"weather": "clear", "daytime": "day"}, "flip"),
                 v1_body(jpeg(22), {"weather": "rainy", "daytime": "day"}),
                 v1_body(jpeg(23), {"weather": "clear", "daytime": "day"})):
        assert _post(url, "roadwork", body).headers["x-roadvision-cache"] == "miss"


def test_v2_hit_equals_miss(env):
    client = triton.InferenceServerClient(env["url"].removeprefix("http://"))
    image = triton.InferInput("image", [2], "BYTES")
    image.set_data_from_numpy(np.array([jpeg(24), jpeg(25)], dtype=object), binary_data=True)
    first = client.infer("roadwork", [image])
    second = client.infer("roadwork", [image])
    assert first.as_numpy("cached").tolist() == [False, False]
    assert second.as_numpy("cached").tolist() == [True, True]
    np.testing.assert_array_equal(first.as_numpy("probability"), second.as_numpy("probability"))
    np.testing.assert_array_equal(first.as_numpy("label"), second.as_numpy("label"))
    # base64 is keyed as sent (a hit never decodes it): the image cached as v2 binary bytes is
    # a miss as v1 base64 text, with the same answer, and a hit on the next v1 request
    for cached in (False, True):
        v1 = _post(env["url"], "roadwork", v1_body(jpeg(25)))
        assert v1.json()["predictions"][0]["cached"] is cached
        assert v1.json()["predictions"][0]["probability"] == pytest.approx(
            float(first.as_numpy("probability")[1]), abs=1e-6)


def test_killing_redis_changes_no_status_or_body(env):
    url, redis = env["url"], env["redis"]
    bodies = [v1_body(jpeg(30), {"scene": "urban"}), v1_body(jpeg(31, 64, 64), tta="flip")]
    misses = [_post(url, "roadwork", b).json() for b in bodies]
    hits = [_post(url, "roadwork", b) for b in bodies]
    assert all(h.headers["x-roadvision-cache"] == "hit" for h in hits)
    fresh = [v1_body(jpeg(33), {"scene": "urban"}), v1_body(jpeg(34, 64, 64), tta="flip")]
    errors_before = metric_value(httpx.get(f"{url}/metrics").text,
                                 "roadvision_cache_errors_total", model="roadwork")
    local_before = metric_value(httpx.get(f"{url}/metrics").text,
                                "roadvision_cache_local_hits_total", model="roadwork")

    redis.stop()
    answers: dict[int, dict] = {}
    try:
        for _ in range(3):
            # what this replica cached is still answered, from its in-process copy
            for body, hit in zip(bodies, hits, strict=True):
                r = httpx.post(f"{url}/v1/models/roadwork:predict", json=body, timeout=30)
                assert r.status_code == 200
                assert r.json() == hit.json()
                assert r.headers["x-roadvision-cache"] == "hit"
            # new images are computed, uncached, and answered the same every time
            for i, body in enumerate(fresh):
                r = httpx.post(f"{url}/v1/models/roadwork:predict", json=body, timeout=30)
                assert r.status_code == 200
                assert r.headers["x-roadvision-cache"] == "error"
                assert [p["cached"] for p in r.json()["predictions"]] == [False]
                assert r.json() == answers.setdefault(i, r.json())
        # v2 and the other model are just as unaffected
        r = httpx.post(f"{url}/v1/models/lanes:predict", json=v1_body(jpeg(32)), timeout=30)
        assert r.status_code == 200 and r.json()["predictions"][0]["cached"] is False
        text = httpx.get(f"{url}/metrics").text
        assert metric_value(text, "roadvision_cache_errors_total", model="roadwork") \
            >= errors_before + 6
        assert metric_value(text, "roadvision_cache_local_hits_total", model="roadwork") \
            >= local_before + 6
    finally:
        redis.start()
    assert without_cached(misses[0]) == without_cached(hits[0].json())

    # Reconnection with backoff: within a few backoff periods the cache works again.
    state = None
    for _ in range(300):
        r = _post(url, "roadwork", fresh[0])
        state = r.headers["x-roadvision-cache"]
        if state != "error":
            break
        time.sleep(0.1)
    assert state in ("miss", "hit"), "the cache never came back after Redis restarted"
    assert r.json()["predictions"][0]["probability"] == \
        answers[0]["predictions"][0]["probability"]
    assert _post(url, "roadwork", fresh[0]).headers["x-roadvision-cache"] == "hit"


def test_new_model_version_misses_the_cache(env):
    url, served, candidate = env["url"], env["served"], env["candidate"]
    body = v1_body(jpeg(40), {"weather": "foggy"})
    old = _post(url, "roadwork", body).json()["predictions"][0]
    assert _post(url, "roadwork", body).json()["predictions"][0]["cached"] is True

    # promote: the candidate bundle replaces the served one, and the server reloads it
    for name in ("config.json", "weights.safetensors"):
        shutil.copy(candidate / name, served / name)
    r = httpx.post(f"{url}/v2/repository/models/roadwork/load", timeout=60)
    assert r.status_code == 200, r.text

    new = _post(url, "roadwork", body)
    prediction = new.json()["predictions"][0]
    assert prediction["cached"] is False and new.headers["x-roadvision-cache"] == "miss"
    assert prediction["model_version"] == bundle_version(candidate) != old["model_version"]
    again = _post(url, "roadwork", body).json()["predictions"][0]
    assert again["cached"] is True and again["model_version"] == prediction["model_version"]
    text = httpx.get(f"{url}/metrics").text
    assert metric_value(text, "roadvision_model_info", model="roadwork",
                        version=prediction["model_version"]) == 1
    assert metric_value(text, "roadvision_model_info", model="roadwork",
                        version=old["model_version"]) == 0
