"""BentoML: one service worker, one thread for the sync API, adaptive batching (at most 8 per
batch; BentoML picks the wait itself); the body ``{"instances": [...]}`` is KServe v1 JSON and
the answer is the list of results, at ``/predict``.

    PEER_BUNDLE=... python -m benchmarks.peers.bentoml_app PORT
"""

from __future__ import annotations

import base64
import os
import sys
from pathlib import Path

import bentoml

from benchmarks.peers import _common


# No access log lines, as roadvision runs with --enable_latency_logging false.
@bentoml.service(workers=1, threads=1, traffic={"timeout": 120},
                 logging={"access": {"enabled": False}})
class Roadwork:
    def __init__(self) -> None:
        self.model = _common.load_model()

    @bentoml.api(batchable=True, max_batch_size=_common.MAX_BATCH, max_latency_ms=10_000)
    def predict(self, instances: list[dict]) -> list[dict]:
        jpegs = [base64.b64decode(instance["image_b64"]) for instance in instances]
        return [{"probability": p} for p in _common.infer(self.model, jpegs)]


if __name__ == "__main__":
    # `bentoml serve` owns the process tree (a supervisor and the worker); exec it so the
    # benchmark's pid is the supervisor.
    bentoml_cli = Path(sys.executable).with_name("bentoml")
    os.execv(str(bentoml_cli), [str(bentoml_cli), "serve", f"{__spec__.name}:Roadwork",
                                "--host", "127.0.0.1", "--port", str(_common.port())])
