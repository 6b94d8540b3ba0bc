"""Side environments for the peer servers: one venv per peer, never the project's ``.venv``.

    python -m benchmarks.peers.envs [NAME ...]     # create or refresh them (all by default)

Each venv lives in ``${XDG_CACHE_HOME:-~/.cache}/roadvision-bench/peers/<name>/venv`` and gets,
in one pip resolve: torch (the CPU wheel pip's find-links already hold), the same torchvision
and timm as the project, roadvision itself (editable, no extras, so the peers run this
checkout's decode/preprocess/forward), the few serving deps its model code imports, and the
peer framework. A marker file records what was asked for; a venv whose marker matches is reused.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

#: what roadvision's model code needs without any extra (the same pins as constraints.txt).
COMMON = ["torch==2.13.0", "torchvision==0.28.0", "timm==1.0.31", "safetensors",
          "opencv-python-headless", "pillow", "numpy"]

#: peer name -> (pip requirements, the distribution whose version the results name).
PEERS: dict[str, tuple[list[str], str]] = {
    "fastapi": (["fastapi", "uvicorn"], "fastapi"),
    "ray": (["ray[serve]"], "ray"),
    "litserve": (["litserve"], "litserve"),
    "bentoml": (["bentoml"], "bentoml"),
    "pytriton": (["nvidia-pytriton==0.7.0"], "nvidia-pytriton"),
}


def env_root() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "roadvision-bench" / "peers"


def python_of(name: str) -> Path:
    return env_root() / name / "venv" / "bin" / "python"


def _marker(name: str) -> Path:
    return env_root() / name / "installed.json"


def _wanted(name: str) -> list[str]:
    return [*COMMON, *PEERS[name][0]]


def installed_version(name: str) -> str | None:
    """The peer framework's version in its venv, or None when the venv is not ready."""
    marker = _marker(name)
    if not marker.exists():
        return None
    data = json.loads(marker.read_text())
    return data["version"] if data.get("requirements") == _wanted(name) else None


def ensure(name: str, log=print) -> Path:
    """The venv's python for ``name``, creating or completing the venv first when needed."""
    if installed_version(name) is not None and python_of(name).exists():
        return python_of(name)
    venv = python_of(name).parents[1]
    venv.parent.mkdir(parents=True, exist_ok=True)
    log(f"[peers] creating {venv} ...")
    if not python_of(name).exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(python_of(name)), "-m", "pip", "install", "--quiet"]
    # The project's editable install next to the pins, in one resolve, so pip cannot swap
    # torch for another build to satisfy a peer.
    subprocess.run([*pip, *_wanted(name), "-e", str(REPO)], check=True)
    dist = PEERS[name][1]
    version = subprocess.run(
        [str(python_of(name)), "-c",
         f"import importlib.metadata as m; print(m.version({dist!r}))"],
        check=True, capture_output=True, text=True).stdout.strip()
    _marker(name).write_text(json.dumps({"requirements": _wanted(name), "version": version}))
    log(f"[peers] {name}: {dist} {version}")
    return python_of(name)


def main(argv: list[str]) -> int:
    names = argv or list(PEERS)
    unknown = sorted(set(names) - set(PEERS))
    if unknown:
        print(f"unknown peer(s) {unknown}; choose from {sorted(PEERS)}", file=sys.stderr)
        return 2
    failed = []
    for name in names:
        try:
            ensure(name)
        except subprocess.CalledProcessError as error:
            print(f"[peers] {name}: install failed ({error})", file=sys.stderr)
            failed.append(name)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
