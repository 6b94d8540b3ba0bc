"""What every peer app shares: the model, and roadvision's own decode, preprocess and forward.

Each peer server only adds its framework's request handling around ``infer`` (or ``decode`` +
``forward`` where the framework batches between the two), so the frameworks differ in how they
carry a request to the forward and back, never in the work done on it. Each app is started as
``python -m benchmarks.peers.<name>_app PORT`` with the bundle path in ``PEER_BUNDLE`` (the
environment reaches the worker processes a framework starts; its command line may not).
"""

from __future__ import annotations

import base64
import os
import sys

import torch
from torch import nn

from roadvision.data.images import decode_image
from roadvision.models.preprocess import prepare_sample
from roadvision.runtime.inference import load_for_inference, predict

#: torch threads in every server, as in bench_serving.py.
THREADS = 1

#: micro-batching given to each framework that has it (roadvision's own defaults in
#: bench_peers.py are the same): at most 8 requests, waiting at most 2 ms for more.
MAX_BATCH = 8
BATCH_WAIT_S = 0.002


def port() -> int:
    """The HTTP port: the app's first command-line argument."""
    return int(sys.argv[1])


def load_model() -> nn.Module:
    """The bundle named by ``PEER_BUNDLE`` as roadvision serves it (``load_for_inference``:
    eval mode, BatchNorm folded), with one torch thread."""
    torch.set_num_threads(THREADS)
    return load_for_inference(os.environ["PEER_BUNDLE"])


def decode(model: nn.Module, jpeg: bytes) -> dict[str, torch.Tensor]:
    """JPEG bytes -> a prepared sample, exactly as roadvision's predictor does (no metadata)."""
    return prepare_sample(model.cfg, decode_image(jpeg), None)


def forward(model: nn.Module, samples: list[dict[str, torch.Tensor]]) -> list[float]:
    """One batched forward through roadvision's ``predict``: a probability per sample."""
    return [result["probability"] for result in predict(model, samples)]


def infer(model: nn.Module, jpegs: list[bytes]) -> list[float]:
    return forward(model, [decode(model, jpeg) for jpeg in jpegs])


def v1_image(body: dict) -> bytes:
    """The JPEG of a one-instance KServe v1 body ``{"instances": [{"image_b64": ...}]}``."""
    return base64.b64decode(body["instances"][0]["image_b64"])


def v1_answer(probability: float) -> dict:
    return {"predictions": [{"probability": probability}]}
