"""``synth://`` data URIs: a procedural data set named by its generator arguments.

``synth://roadwork?n=48&size=tiny&seed=0`` asks the ingest step to generate the data set
first (demos and CI need no data on disk). Errors name ``data_uri``, the pipeline parameter
such URIs arrive in.
"""

from __future__ import annotations

import re
import urllib.parse
from typing import Any

from roadvision.data.contract import TASKS
from roadvision.data.synth.sizes import SIZES
from roadvision.errors import UserError

__all__ = ["parse_synth_uri"]

_OPTIONS = ("n", "size", "seed", "num_classes", "family")


def parse_synth_uri(uri: str) -> tuple[str, dict[str, Any]]:
    """``synth://roadwork?n=48&size=tiny&seed=0`` -> ``("roadwork", {n, size, seed})``: the
    task and the keyword arguments of ``roadvision.data.synth.generate``.

    ``size`` is a name in ``SIZES`` or ``WxH``; ``n`` must lie in [8, 1000000]; ``family`` is a
    scene family, a comma list or ``all`` (``synth://lanes?family=classic,camera``).
    """
    parsed = urllib.parse.urlparse(uri)
    task = parsed.netloc or parsed.path.strip("/")
    if task not in TASKS:
        raise UserError(f"data_uri: {uri!r}: synth:// needs a task ({' or '.join(TASKS)}), "
                        "e.g. synth://roadwork?n=200")
    query = dict(urllib.parse.parse_qsl(parsed.query))
    unknown = sorted(set(query) - set(_OPTIONS))
    if unknown:
        raise UserError(f"data_uri: unknown synth:// option(s) {unknown} "
                        f"({', '.join(_OPTIONS)})")
    opts: dict[str, Any] = {"n": 200, "size": "default", "seed": 0}
    for key in ("n", "seed", "num_classes"):
        if key in query:
            try:
                opts[key] = int(query[key])
            except ValueError:
                raise UserError(f"data_uri: synth:// option {key}={query[key]!r} is not an "
                                "integer") from None
    if "size" in query:
        opts["size"] = _size(query["size"])
    if "family" in query:
        from roadvision.data.synth.families import parse_families

        try:
            opts["family"] = ",".join(parse_families(query["family"]))
        except UserError as exc:
            raise UserError(f"data_uri: synth:// {exc}") from None
    if not 8 <= opts["n"] <= 1_000_000:
        raise UserError(f"data_uri: synth:// n={opts['n']} is out of range [8, 1000000]")
    return task, opts


def _size(text: str) -> str | tuple[int, int]:
    if text in SIZES:
        return text
    match = re.fullmatch(r"(\d+)x(\d+)", text)
    if not match:
        raise UserError(f"data_uri: synth:// size={text!r} is neither WxH nor a named size "
                        f"({', '.join(SIZES)})")
    return int(match[1]), int(match[2])
