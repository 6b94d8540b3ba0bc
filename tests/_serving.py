"""Serving test helpers: tiny bundles, test images, and a real ModelServer subprocess.

Run as a script, this file is the server itself (``python tests/_serving.py ARGS``): the real
``roadvision.serving`` entry point, with one test-only addition - ``--hold_file PATH`` makes the
model forward (its runner, in the server process) wait while that file exists (``PATH.held``
exists while one waits), so a test can keep requests in flight for as long as it needs (to
check that health answers meanwhile) without relying on timing.
"""

from __future__ import annotations

import asyncio
import base64
import io
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np

HERE = Path(__file__).resolve().parent


# --- inputs -----------------------------------------------------------------------------------

def image_array(seed: int, width: int = 96, height: int = 64) -> np.ndarray:
    """A deterministic RGB image with some structure (stripes + noise)."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, size=(height, width, 3), dtype=np.uint8)
    base[:, ::7] = 255  # a few bright "lane" columns
    return base


def encode(array: np.ndarray, fmt: str = "JPEG") -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, fmt)
    return buffer.getvalue()


def jpeg(seed: int, width: int = 96, height: int = 64) -> bytes:
    return encode(image_array(seed, width, height), "JPEG")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def v1_body(image: bytes, metadata: dict | None = None, tta: str | None = None) -> dict:
    instance: dict = {"image_b64": b64(image)}
    if metadata is not None:
        instance["metadata"] = metadata
    if tta is not None:
        instance["tta"] = tta
    return {"instances": [instance]}


def without_cached(body: dict) -> dict:
    """A v1 response body with the per-response ``cached`` flags removed."""
    return {"predictions": [{k: v for k, v in p.items() if k != "cached"}
                            for p in body["predictions"]]}


# --- bundles ----------------------------------------------------------------------------------

def make_bundle(preset: str, out: Path, seed: int) -> Path:
    """Save a randomly initialised ``preset`` model (weights depend on ``seed``)."""
    import torch

    from roadvision.models import create_model, save_bundle

    torch.manual_seed(seed)
    return Path(save_bundle(create_model(preset), out))


# --- the server -------------------------------------------------------------------------------

def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class ServingServer:
    """A ``roadvision.serving`` process on a loopback port, started by :meth:`start`."""

    args: list[str]
    log_path: Path
    port: int = field(default_factory=free_port)
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 120.0, ready_models: tuple[str, ...] = ()) -> None:
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1",
               "OMP_NUM_THREADS": "1", **self.env}
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, str(HERE / "_serving.py"), "--http_port", str(self.port),
             *self.args],
            stdout=self._log, stderr=subprocess.STDOUT, env=env,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n"
                                   + self.log_path.read_text()[-3000:])
            try:
                ok = httpx.get(f"{self.url}/v2/health/ready", timeout=1).status_code == 200
                ok = ok and all(
                    httpx.get(f"{self.url}/v2/models/{m}/ready", timeout=1).status_code == 200
                    for m in ready_models)
                if ok:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise TimeoutError(f"server not ready after {timeout}s:\n"
                           + self.log_path.read_text()[-3000:])

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None
        if getattr(self, "_log", None):
            self._log.close()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


def metric_value(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels`` (Prometheus text)."""
    from prometheus_client.parser import text_string_to_metric_families

    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


# --- the test-only server entry point ---------------------------------------------------------

def held_file(hold_file: Path) -> Path:
    """Exists while a forward waits on ``hold_file``."""
    return hold_file.with_name(hold_file.name + ".held")


def _gated_main(argv: list[str]) -> None:
    from roadvision.serving.__main__ import main
    from roadvision.serving.predictor import RoadvisionModel

    hold_file = None
    if "--hold_file" in argv:
        index = argv.index("--hold_file")
        hold_file = Path(argv[index + 1])
        del argv[index:index + 2]

    class GatedModel(RoadvisionModel):
        """The real predictor; its forward waits while ``hold_file`` exists (the wait holds
        the forward's slot, as a long forward would, without blocking the event loop)."""

        def load(self) -> bool:
            ready = super().load()
            runner = self.loaded.batcher.runner
            run = runner.run

            async def gated(items):
                if hold_file is not None and hold_file.exists():
                    held_file(hold_file).touch()  # tells the test a forward is being held
                    while hold_file.exists():
                        await asyncio.sleep(0.01)
                    held_file(hold_file).unlink(missing_ok=True)
                return await run(items)

            runner.run = gated
            return ready

    main(argv, model_cls=GatedModel)


if __name__ == "__main__":
    _gated_main(sys.argv[1:])
