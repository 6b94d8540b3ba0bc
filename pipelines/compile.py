"""Compile the pipelines to YAML: ``python -m roadvision.pipelines.compile [OUT]``.

The committed ``pipelines/training_pipeline.yaml`` (and ``sweep_pipeline.yaml``, the sweep
variant) are this output with the default ``ClusterSettings``; ``tests/test_pipeline_compile.py``
(``tests/test_sweep.py``) fails when one is stale. Without OUT both are rewritten. ``roadvision
pipeline compile`` is the same with options for the image and the GPU settings.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

__all__ = ["DEFAULT_OUT", "SWEEP_OUT", "compile_pipeline", "compile_sweep", "normalise"]

#: The committed compiled pipeline (installed as package data beside this module).
DEFAULT_OUT = Path(__file__).with_name("training_pipeline.yaml")
#: The committed compiled sweep pipeline (``pipelines/sweep.py``).
SWEEP_OUT = Path(__file__).with_name("sweep_pipeline.yaml")

# Lines that change with the SDK build and not with the pipeline (the golden-file test and the
# staleness check ignore them, as KFP's own compiler tests do).
_VOLATILE = re.compile(r"^\s*sdkVersion: .*$", re.MULTILINE)


def compile_pipeline(out: str | Path = DEFAULT_OUT, settings=None) -> Path:
    """Compile with ``settings`` (default: ``ClusterSettings`` defaults) to ``out``."""
    from roadvision.pipelines.cluster import ClusterSettings
    from roadvision.pipelines.local import compile_to

    return compile_to(out, settings or ClusterSettings())


def compile_sweep(out: str | Path = SWEEP_OUT, settings=None) -> Path:
    """Compile the sweep pipeline with ``settings`` (default: ``ClusterSettings`` defaults)."""
    from kfp import compiler

    from roadvision.pipelines.cluster import ClusterSettings
    from roadvision.pipelines.sweep import build_sweep_pipeline

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(build_sweep_pipeline(settings or ClusterSettings()), str(out))
    return out


def normalise(text: str) -> str:
    """A compiled pipeline's text without the volatile fields."""
    return _VOLATILE.sub("", text)


if __name__ == "__main__":
    if len(sys.argv) > 1:
        print(f"wrote {compile_pipeline(sys.argv[1])}")
    else:
        print(f"wrote {compile_pipeline(DEFAULT_OUT)}")
        print(f"wrote {compile_sweep(SWEEP_OUT)}")
