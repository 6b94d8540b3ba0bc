"""tests/image/ runs only under ``make image-test``: it builds or needs the podman images and
starts PostgreSQL, moto, an MLflow server and the images as pods, which ``make test`` must not.

Without ``ROADVISION_IMAGE_TEST=1`` (set by the make target) nothing here is even collected, so
plain ``pytest`` from the repository root never imports it.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

if os.environ.get("ROADVISION_IMAGE_TEST") != "1":
    collect_ignore_glob = ["test_*.py"]

# pytest imports this file as the module ``conftest`` in place of tests/conftest.py, so the
# shared helpers (free ports, a real redis-server) are re-exported from there, loaded by path.
_spec = importlib.util.spec_from_file_location("rv_tests_conftest",
                                               Path(__file__).parents[1] / "conftest.py")
_shared = sys.modules["rv_tests_conftest"] = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_shared)
free_port, wait_for_port = _shared.free_port, _shared.wait_for_port
RedisServer = _shared.RedisServer

# Figures measured on the way (cold start, step time) for benchmarks/RESULTS.md `## deploy`:
# printed at the end of the run, never asserted.
FIGURES: list[str] = []


def pytest_terminal_summary(terminalreporter) -> None:
    for line in FIGURES:
        terminalreporter.write_line(f"[image-test figure] {line}")
