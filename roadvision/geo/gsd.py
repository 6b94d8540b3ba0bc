"""The ground sample distance a lanes model was trained at, read from its bundle.

A model trained on 10 cm tiles sees a 12 cm line as 1-2 px; fed 30 cm imagery unchanged it
sees lines a third as wide, and fed 3 cm imagery, three times as wide: both fail. So imagery is
resampled to the model's GSD before inference. The bundle records it as ``extra.gsd_m``
(metres per pixel). A bundle without it is read with :data:`DEFAULT_GSD`, the middle of the
generator's and DESIGN.md's 5-15 cm range, and the caller is told so (``assumed``).
"""

from __future__ import annotations

import math
from typing import Any

from roadvision.errors import UserError

__all__ = ["DEFAULT_GSD", "GSD_KEY", "model_gsd"]

#: Metres per pixel assumed for a bundle that records none (the 5-15 cm training range's middle).
DEFAULT_GSD = 0.10
#: The bundle's ``extra`` key holding the training GSD in metres per pixel.
GSD_KEY = "gsd_m"


def model_gsd(bundle_config: dict[str, Any], override: float | None = None
              ) -> tuple[float, bool]:
    """(metres per pixel, assumed?) for a bundle config; ``override`` (``--gsd``) wins."""
    if override is not None:
        return _check(override, "--gsd"), False
    value = (bundle_config.get("extra") or {}).get(GSD_KEY)
    if value is None:
        return DEFAULT_GSD, True
    return _check(value, f"bundle extra.{GSD_KEY}"), False


def _check(value: Any, where: str) -> float:
    try:
        gsd = float(value)
    except (TypeError, ValueError):
        raise UserError(f"{where}: ground sample distance {value!r} is not a number") from None
    if not math.isfinite(gsd) or not 0.01 <= gsd <= 1.0:
        raise UserError(f"{where}: ground sample distance {gsd} m/px is out of range "
                        "(0.01 .. 1.0)")
    return gsd
