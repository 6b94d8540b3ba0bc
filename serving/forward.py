"""``Forward``: ``[(sample, tta)] -> [JSON-ready result]``, one TTA mode per call.

The one place serving runs the model: in a forward worker process (``forward_worker``) or, with
``--forward_workers 0``, in the batcher's thread. The mask PNG encoding happens here too, so it
stays off the event loop.
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np

from roadvision.data.images import encode_png
from roadvision.runtime.inference import predict


class Forward:
    """The model's forward plus rendering of each answer (see ``__call__``)."""

    def __init__(self, net: Any) -> None:
        self.net = net

    def __call__(self, items: list[tuple[dict, str]]) -> list[dict]:
        """One result per ``(sample, tta)`` item; every item must share the first's TTA."""
        tta = items[0][1]
        outputs = predict(self.net, [sample for sample, _ in items], tta=tta)
        return [self._render(out) for out in outputs]

    def _render(self, out: dict) -> dict:
        if self.net.cfg.task == "roadwork":
            return {"probability": round(float(out["probability"]), 6),
                    "label": int(out["label"])}
        mask = np.asarray(out["mask"], dtype=np.uint8)
        return {
            "mask_png_b64": base64.b64encode(encode_png(mask)).decode("ascii"),
            "class_shares": {str(k): round(float(v), 6) for k, v in out["class_shares"].items()},
            "height": int(mask.shape[0]),
            "width": int(mask.shape[1]),
        }
