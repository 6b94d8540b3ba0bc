"""PyTriton: NVIDIA's tritonserver binary (HTTP front, dynamic batcher: at most 8, 2 ms queue
delay) hands batches to this Python process, which decodes, preprocesses and forwards them;
Open Inference Protocol v2 at ``/v2/models/roadwork/infer``, the JPEG as a BYTES tensor.

    PEER_BUNDLE=... python -m benchmarks.peers.pytriton_app PORT
"""

from __future__ import annotations

import os
import sysconfig

import numpy as np
from pytriton.decorators import batch
from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
from pytriton.triton import Triton, TritonConfig

from benchmarks.peers import _common

model = _common.load_model()


@batch
def infer(image: np.ndarray) -> dict[str, np.ndarray]:
    jpegs = [bytes(row[0]) for row in image]  # [B, 1] of JPEG bytes
    probabilities = _common.infer(model, jpegs)
    return {"probability": np.asarray(probabilities, dtype=np.float32).reshape(-1, 1)}


def _use_this_libpython() -> None:
    """Triton's Python-backend stub links ``libpython3.X.so``; the loader finds the system's
    first, whose patch release may not match this interpreter's standard library (Debian's
    3.11.2 lacks ``RLock._recursion_count`` that 3.11.7's multiprocessing calls). Put this
    interpreter's own library directory first for the tritonserver child."""
    libdir = sysconfig.get_config_var("LIBDIR")
    if libdir and sysconfig.get_config_var("Py_ENABLE_SHARED"):
        os.environ["LD_LIBRARY_PATH"] = os.pathsep.join(
            filter(None, [libdir, os.environ.get("LD_LIBRARY_PATH")]))


if __name__ == "__main__":
    _use_this_libpython()
    config = TritonConfig(http_address="127.0.0.1", http_port=_common.port(), allow_grpc=False,
                          allow_metrics=False)
    with Triton(config=config) as triton:
        triton.bind(
            model_name="roadwork", infer_func=infer,
            inputs=[Tensor(name="image", dtype=bytes, shape=(1,))],
            outputs=[Tensor(name="probability", dtype=np.float32, shape=(1,))],
            config=ModelConfig(max_batch_size=_common.MAX_BATCH, batcher=DynamicBatcher(
                max_queue_delay_microseconds=int(_common.BATCH_WAIT_S * 1e6))),
        )
        triton.serve()
