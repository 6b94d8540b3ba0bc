"""Ray Serve: a local Ray cluster, its HTTP proxy, one replica whose ``@serve.batch`` method
decodes, preprocesses and forwards up to 8 requests together (waiting at most 2 ms); KServe v1
JSON in and out at ``/predict`` (a GET there answers once the replica is up).

    PEER_BUNDLE=... python -m benchmarks.peers.ray_app PORT
"""

from __future__ import annotations

import os
import time

import ray
from ray import serve
from starlette.requests import Request

from benchmarks.peers import _common

#: no per-request log lines, as roadvision runs with --enable_latency_logging false.
QUIET_LOGS = {"enable_access_log": False, "log_level": "WARNING"}


@serve.deployment(num_replicas=1, max_ongoing_requests=64, ray_actor_options={"num_cpus": 1},
                  logging_config=QUIET_LOGS)
class Roadwork:
    def __init__(self) -> None:
        self.model = _common.load_model()

    @serve.batch(max_batch_size=_common.MAX_BATCH, batch_wait_timeout_s=_common.BATCH_WAIT_S)
    async def infer(self, jpegs: list[bytes]) -> list[float]:
        return _common.infer(self.model, jpegs)

    async def __call__(self, request: Request) -> dict:
        if request.method == "GET":
            return {"ready": True}
        return _common.v1_answer(await self.infer(_common.v1_image(await request.json())))


if __name__ == "__main__":
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": _common.port()},
                logging_config=QUIET_LOGS)
    serve.run(Roadwork.bind(), route_prefix="/predict")
    while True:  # serve.run returns once deployed; the driver keeps the cluster alive
        time.sleep(3600)
