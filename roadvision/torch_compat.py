"""The one place that makes ``import torchvision`` work on CPU-only torch.

On CPU machines we install the CPU build of torch 2.13.0, but the only torchvision 0.28.0 wheel
is a CUDA build whose C++ ops library does not load against it. ``torchvision/_meta_registrations``
then fails at import time with ``operator torchvision::nms does not exist`` (then ``qnms``), as it
registers fake kernels for those two ops unconditionally. timm imports torchvision, so every model
import would fail.

``ensure_torchvision()`` declares the two missing schemas (only the schemas: calling the ops
still fails, and nothing in roadvision uses them) before torchvision is imported. When the
real ops library is loaded (GPU images, or a future CPU wheel) the op already exists and this is a
no-op. Call it before any import that pulls in torchvision; ``roadvision.models`` does.
"""

from __future__ import annotations

import torch

# The ops torchvision registers fake kernels for at import time, with their real schemas.
_SCHEMAS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}
_library: torch.library.Library | None = None  # kept alive: dropping it removes the definition


def _defined(op: str) -> bool:
    try:
        torch._C._dispatch_find_schema_or_throw(f"torchvision::{op}", "")
    except RuntimeError:
        return False
    return True


def ensure_torchvision() -> None:
    """Make ``import torchvision`` succeed on CPU-only torch; a no-op where its ops load."""
    global _library
    if _library is not None:
        return
    missing = [schema for op, schema in _SCHEMAS.items() if not _defined(op)]
    if not missing:
        return
    _library = torch.library.Library("torchvision", "FRAGMENT")
    for schema in missing:
        _library.define(schema)
