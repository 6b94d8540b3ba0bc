"""LitServe: API server and inference worker in separate processes; decode and preprocess per
request in the worker, then a batched forward (at most 8, waiting at most 2 ms); KServe v1 JSON
in and out at ``/predict``.

    PEER_BUNDLE=... python -m benchmarks.peers.litserve_app PORT
"""

from __future__ import annotations

import litserve as ls

from benchmarks.peers import _common


class Roadwork(ls.LitAPI):
    def setup(self, device: str) -> None:
        self.model = _common.load_model()

    def decode_request(self, request: dict) -> dict:
        return _common.decode(self.model, _common.v1_image(request))

    def batch(self, inputs: list[dict]) -> list[dict]:
        return inputs  # roadvision's predict collates the samples itself

    def predict(self, samples: list[dict]) -> list[float]:
        return _common.forward(self.model, samples)

    def unbatch(self, output: list[float]) -> list[float]:
        return output

    def encode_response(self, probability: float) -> dict:
        return _common.v1_answer(probability)


if __name__ == "__main__":
    api = Roadwork(max_batch_size=_common.MAX_BATCH, batch_timeout=_common.BATCH_WAIT_S)
    server = ls.LitServer(api, accelerator="cpu", devices=1, workers_per_device=1)
    # No client.py written into the working directory (the repository).
    server.run(host="127.0.0.1", port=_common.port(), num_api_servers=1, log_level="warning",
               generate_client_file=False)
