"""The generator's named image sizes: ``generate(size=NAME)`` and ``synth://TASK?size=NAME``."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["NamedSize", "SIZES"]


@dataclass(frozen=True)
class NamedSize:
    """Image size per task (width, height), named after what uses it."""

    lanes: tuple[int, int]
    roadwork: tuple[int, int]
    description: str


#: Named image sizes (``generate(size=NAME)``, ``synth://TASK?size=NAME``). The names are the
#: project's scale tiers: the ``tiny`` run and training profiles train on ``tiny`` images,
#: ``demo`` on ``demo`` images, the ``bench`` training profile on ``bench`` images.
SIZES: dict[str, NamedSize] = {
    "tiny": NamedSize((64, 64), (96, 96), "very small images for fast tests"),
    "demo": NamedSize((128, 128), (160, 120), "small images: the demo pipeline trains on CPU"),
    "bench": NamedSize((256, 256), (320, 240), "benchmark size"),
    "default": NamedSize((512, 512), (640, 480), "realistic sizes"),
}

