"""Importers: real-world data set formats -> the roadvision data contract.

Each format is one module that registers a function ``(src, out, **options) -> ImportReport``
under its ``--format`` name. Bad samples are quarantined (``quarantine.json`` in the output),
never fatal, unless nothing at all is usable.

=================  ======================================================================
format             source
=================  ======================================================================
``mmseg``          MMSegmentation folder: ``img_dir/{train,val,test}``, ``ann_dir/...``
``natix``          NATIX StreetVision / ROADWork parquet (a file or a folder of them)
``roadwork-coco``  ROADWork COCO instances JSON with the images beside it
``ael``            per-image polyline JSON (aerial lanes), rasterised at ``line_width``
``folder``         a plain folder of images plus ``labels.csv``/``labels.parquet``
=================  ======================================================================
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

from roadvision.data.importers._common import ImportReport
from roadvision.errors import UserError

__all__ = ["FORMATS", "ImportReport", "import_dataset", "register_importer"]

#: ``--format`` name -> importer function. Filled by @register_importer at import time.
Importer = Callable[..., ImportReport]
FORMATS: dict[str, Importer] = {}


def register_importer(name: str) -> Callable[[Importer], Importer]:
    """Decorator: register ``fn`` as the importer for ``--format name``."""

    def decorator(fn: Importer) -> Importer:
        if name in FORMATS:
            raise ValueError(f"importer {name!r} registered twice")
        FORMATS[name] = fn
        return fn
    return decorator


def import_dataset(fmt: str, src: str | Path, out: str | Path, **opts: Any) -> ImportReport:
    """Import ``src`` in format ``fmt`` into the data set folder ``out``.

    Options a format does not take are dropped (the CLI passes every format's options with
    their defaults); the importer's own signature documents what it accepts.
    """
    key = str(fmt).strip().lower().replace("_", "-")
    if key not in FORMATS:
        raise UserError(f"unknown --format {fmt!r}; valid formats: {', '.join(sorted(FORMATS))}")
    fn = FORMATS[key]
    accepted = inspect.signature(fn).parameters
    kwargs = {k: v for k, v in opts.items() if k in accepted}
    return fn(src, out, **kwargs)


# Register the formats (imported last: each module uses register_importer).
from roadvision.data.importers import ael, folder, mmseg, natix, roadwork_coco  # noqa: E402, F401
