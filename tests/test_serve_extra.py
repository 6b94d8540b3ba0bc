"""The serving image's install, in miniature: a clean venv with only the ``serve`` extra.

What the serving image holds, checked inside ``make test`` without an image build:

- a non-editable wheel of the project, built from a copy of the package folders and installed
  with ``pip install -c constraints.txt 'WHEEL[serve]'`` into a fresh venv (nothing for training
  or the pipeline: no kfp, albumentations, scikit-learn, SQLAlchemy);
- ``python -m roadvision.serving`` from that venv, started in an empty working directory that it
  may not write to, with a ``HOME`` that cannot be written (it lies under a regular file, which
  stops root too), loads a bundle folder and answers a v1 request over HTTP on 127.0.0.1.

It failed before the ``serve`` extra declared OpenCV (``roadvision.models.preprocess`` ->
``roadvision.data.multiview`` -> ``cv2``: ``ModuleNotFoundError: No module named 'cv2'``).

The venv's dependencies are cached in a per-user folder outside the checkout (``_cache_root``),
keyed by a hash of pyproject.toml, constraints.txt and the Python version (a cold install takes
a few minutes; a warm run rebuilds and reinstalls only the roadvision wheel). Installs come from
the machine's configured package indexes, as ``make venv`` does.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import httpx
import pytest
from _serving import free_port, jpeg, make_bundle, v1_body

ROOT = Path(__file__).resolve().parents[1]
# scipy is not here: the areas route (serving/areas.py) maps orthophotos with roadvision.geo,
# which labels components with scipy.ndimage and skeletonises with scikit-image.
TRAIN_ONLY = ("kfp", "albumentations", "sklearn", "sqlalchemy", "matplotlib", "optuna")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]


def _clean_env(**extra: str) -> dict[str, str]:
    """This environment minus anything that points into the project venv."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
    env["PATH"] = "/usr/local/bin:/usr/bin:/bin"
    env.update(extra)
    return env


def _run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    assert result.returncode == 0, f"{cmd[:4]} failed:\n{result.stdout[-2000:]}\n" \
                                   f"{result.stderr[-4000:]}"
    return result


def _build_wheel(out: Path) -> Path:
    """A wheel from a copy of exactly the folders pyproject.toml maps into the package."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    src = out / "src"
    src.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    for folder in sorted(set(config["tool"]["setuptools"]["package-dir"].values())):
        shutil.copytree(ROOT / folder, src / folder,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    # setuptools' PEP 517 hook, called directly: the project venv has setuptools, and nothing
    # is fetched for the build.
    code = ("import sys; from setuptools import build_meta; "
            "print(build_meta.build_wheel(sys.argv[1]))")
    result = _run([sys.executable, "-c", code, str(out)], cwd=src, env=_clean_env(), timeout=300)
    return out / result.stdout.strip().splitlines()[-1]


def _cache_root() -> Path:
    """A per-user cache outside the checkout, so that a fresh clone (CI) on the same machine
    reuses the side venv; ``ROADVISION_TEST_CACHE`` moves it."""
    base = os.environ.get("ROADVISION_TEST_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "roadvision-tests")
    root = Path(base) / "serve-extra-venv"
    root.mkdir(parents=True, exist_ok=True)
    return root


@pytest.fixture(scope="module")
def serve_venv(tmp_path_factory) -> Path:
    """The side venv (python path), dependencies cached, roadvision freshly reinstalled."""
    key = hashlib.sha256(b"".join((ROOT / n).read_bytes() for n in
                                  ("pyproject.toml", "constraints.txt")) +
                         sys.version.encode()).hexdigest()[:16]
    root = _cache_root()
    venv = root / key
    python = venv / "bin" / "python"
    stamp = venv / ".serve-deps-installed"
    wheel = _build_wheel(tmp_path_factory.mktemp("wheel"))
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    if not stamp.is_file():
        for old in root.iterdir():  # venvs of older pyproject/constraints versions
            shutil.rmtree(old, ignore_errors=True)
        _run([sys.executable, "-m", "venv", str(venv)], env=_clean_env(), timeout=300)
        _run([*pip, "-c", str(ROOT / "constraints.txt"), f"{wheel}[serve]"], env=_clean_env(),
             timeout=1200)
        stamp.write_text(f"{wheel.name}\n")
    else:
        _run([*pip, "--no-deps", "--force-reinstall", str(wheel)], env=_clean_env(),
             timeout=300)
    return python


def test_the_serve_venv_holds_serving_only(serve_venv, tmp_path):
    code = ("import importlib.util as u, json, roadvision; print(json.dumps("
            f"[[m for m in {TRAIN_ONLY!r} if u.find_spec(m)], roadvision.__file__]))")
    result = _run([str(serve_venv), "-c", code], cwd=tmp_path, env=_clean_env(), timeout=120)
    import json

    present, location = json.loads(result.stdout)
    assert present == [], f"the serve extra pulls in training/pipeline packages: {present}"
    # the installed wheel, never the source tree's roadvision/ folder
    assert Path(location).is_relative_to(serve_venv.parent.parent / "lib"), location


def test_serving_from_the_wheel_loads_a_bundle_and_answers(serve_venv, tmp_path):
    bundle = make_bundle("roadwork_tiny", tmp_path / "bundle", 0)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("HOME lies under this file: nothing can be created there\n")
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    scratch = tmp_path / "scratch"  # the emptyDir the chart mounts at /tmp
    scratch.mkdir()
    workdir.chmod(stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP)
    port = free_port()
    log_path = tmp_path / "server.log"
    env = _clean_env(HOME=str(blocker / "home"), TMPDIR=str(scratch), HF_HUB_OFFLINE="1",
                     OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", PATH=f"{serve_venv.parent}:"
                     "/usr/local/bin:/usr/bin:/bin")
    for name in ("XDG_CACHE_HOME", "ROADVISION_HOME", "MLFLOW_TRACKING_URI"):
        env.pop(name, None)
    with open(log_path, "wb") as log:
        server = subprocess.Popen(
            [str(serve_venv), "-m", "roadvision.serving", "--model", str(bundle),
             "--model_name", "roadwork", "--http_port", str(port)],
            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=workdir)
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 240
            while True:
                assert server.poll() is None, log_path.read_text()[-4000:]
                try:
                    if httpx.get(f"{url}/v2/health/ready", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, log_path.read_text()[-4000:]
                time.sleep(0.3)
            r = httpx.post(f"{url}/v1/models/roadwork:predict", json=v1_body(jpeg(3, 224, 224)),
                           timeout=60)
            assert r.status_code == 200, r.text
            body = r.json()
            (pred,) = body["predictions"]
            assert 0.0 <= pred["probability"] <= 1.0 and pred["label"] in (0, 1)
            assert body["model"]["source"] == str(bundle)
            assert body["model"]["registry_version"] is None
        finally:
            server.terminate()
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(timeout=10)
    workdir.chmod(stat.S_IRWXU)
    assert list(workdir.iterdir()) == [], "the server wrote into its working directory"
    assert "Traceback" not in log_path.read_text(errors="replace")
