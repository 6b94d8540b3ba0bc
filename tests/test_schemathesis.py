"""Generated cases from the served OpenAPI document (schemathesis), both models: no 5xx.

A real ModelServer (roadwork and lanes tiny bundles, a real redis-server for the cache and the
rate limiter) publishes ``/openapi.json``; schemathesis generates requests for every operation
in it, valid by the schema (positive) and invalid (negative), and each inference case is sent
to both models. The run is bounded (``CASES_PER_OPERATION`` per operation and mode, a fixed
seed), and every answer must be below 500. The model repository's load/unload routes are in the
document too; the server keeps model control off (its default), so they answer 403 instead of
unloading the models under test.
"""

from __future__ import annotations

import time
from collections import Counter

import pytest
import requests
import schemathesis
from _serving import ServingServer, make_bundle
from conftest import RedisServer, free_port
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

pytestmark = pytest.mark.slow

MODELS = ("roadwork", "lanes")
CASES_PER_OPERATION = 10
SEED = 20261201


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("schemathesis")
    redis = RedisServer(port=free_port(), workdir=root)
    redis.start()
    bundles = {name: make_bundle(f"{name}_tiny", root / name, seed=0) for name in MODELS}
    served = ServingServer(
        args=[arg for name, path in bundles.items() for arg in ("--model", f"{name}={path}")]
        + ["--redis", redis.url, "--rate_limit_per_min", "100000"],
        log_path=root / "server.log",
    )
    served.start(ready_models=MODELS)
    yield served
    served.stop()
    redis.stop()


def run_operation(operation, mode, base_url: str, session: requests.Session,
                  seen: Counter, server_errors: list) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=CASES_PER_OPERATION, deadline=None, database=None, derandomize=True,
              phases=[Phase.explicit, Phase.generate],
              suppress_health_check=list(HealthCheck))
    def check(case):
        targets = MODELS if "model_name" in (case.path_parameters or {}) else (None,)
        for model in targets:
            if model is not None:
                case.path_parameters["model_name"] = model
            response = case.call(base_url=base_url, session=session, timeout=60)
            seen[response.status_code // 100 * 100] += 1
            if response.status_code >= 500:
                server_errors.append(f"{case.method} {case.formatted_path} "
                                     f"-> {response.status_code}: {response.text[:200]}")

    try:
        check()
    except Unsatisfiable:  # no invalid input exists for this operation
        if mode != GenerationMode.NEGATIVE:
            raise


def test_generated_cases_get_no_server_error(server):
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    seen: Counter = Counter()
    server_errors: list[str] = []
    operations = 0
    with requests.Session() as session:
        for result in schema.get_all_operations():
            operation = result.ok()
            operations += 1
            # Invalid cases need something to break: a body or a query. (Path parameters are
            # free strings; a search for invalid ones finds none and only costs time.)
            modes = [GenerationMode.POSITIVE]
            if len(operation.body) or len(operation.query):
                modes.append(GenerationMode.NEGATIVE)
            for mode in modes:
                before = sum(seen.values())
                started = time.perf_counter()
                run_operation(operation, mode, server.url, session, seen, server_errors)
                print(f"  {operation.label} {mode.value}: {sum(seen.values()) - before} cases "
                      f"in {time.perf_counter() - started:.1f} s")
    total = sum(seen.values())
    print(f"\nschemathesis: {operations} operations, {total} cases, by status class "
          f"{dict(sorted(seen.items()))}, 5xx: {len(server_errors)}")
    assert operations >= 10 and total >= operations * 2
    assert not server_errors, "\n".join(server_errors[:20])
    assert "Traceback" not in server.log_text()
