"""Compile the training pipeline to YAML: ``python -m roadvision.pipelines.compile [OUT]``.

The committed ``pipelines/training_pipeline.yaml`` is this output with the default
``ClusterSettings``; ``tests/test_pipeline_compile.py`` fails when it is stale. ``roadvision
pipeline compile`` is the same with options for the image and the GPU settings.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

__all__ = ["DEFAULT_OUT", "compile_pipeline", "normalise"]

#: The committed compiled pipeline (installed as package data beside this module).
DEFAULT_OUT = Path(__file__).with_name("training_pipeline.yaml")

# Lines that change with the SDK build and not with the pipeline (the golden-file test and the
# staleness check ignore them, as KFP's own compiler tests do).
_VOLATILE = re.compile(r"^\s*sdkVersion: .*$", re.MULTILINE)


def compile_pipeline(out: str | Path = DEFAULT_OUT, settings=None) -> Path:
    """Compile with ``settings`` (default: ``ClusterSettings`` defaults) to ``out``."""
    from roadvision.pipelines.cluster import ClusterSettings
    from roadvision.pipelines.local import compile_to

    return compile_to(out, settings or ClusterSettings())


def normalise(text: str) -> str:
    """A compiled pipeline's text without the volatile fields."""
    return _VOLATILE.sub("", text)


if __name__ == "__main__":
    target = compile_pipeline(sys.argv[1] if len(sys.argv) > 1 else DEFAULT_OUT)
    print(f"wrote {target}")
