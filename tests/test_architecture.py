"""The floors of ARCHITECTURE.md, enforced with import-linter's contracts in pyproject.toml.

import-linter finds modules by walking the root package's folder, but four of roadvision's
sub-packages live in top-level folders (models/ is ``roadvision.models``, ...). So each test
copies the sources into the import tree they install as, and lints that copy; the mutation
tests then add one forbidden import to the copy and check that a contract catches it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")

pytestmark = pytest.mark.skipif(not LINT_IMPORTS.exists(),
                                reason="import-linter is in the dev extra (make test installs it)")


def _import_tree(dst: Path) -> Path:
    """``dst/roadvision/...``: the sources laid out as the installed package."""
    package_dir = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-dir"]
    # Parents first, so a sub-package's folder lands inside its already copied parent.
    for package, folder in sorted(package_dir.items(), key=lambda item: item[0].count(".")):
        shutil.copytree(ROOT / folder, dst / Path(*package.split(".")), dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return dst


def _lint(tree: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run([str(LINT_IMPORTS), "--no-cache", str(ROOT / "pyproject.toml")],
                          cwd=tree, env=env, capture_output=True, text=True, timeout=300)


def _add_import(tree: Path, module: str, imported: str) -> None:
    path = tree / Path(*module.split("."))
    path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    assert path.is_file(), path
    path.write_text(path.read_text() + f"\nimport {imported}  # added by the test\n")


def test_the_floors_hold(tmp_path: Path) -> None:
    result = _lint(_import_tree(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(("module", "imported", "contract_says"), [
    ("roadvision.evaluation.evaluate", "roadvision.training",
     "roadvision.evaluation is not allowed to import roadvision.training"),
    ("roadvision.training.loop", "roadvision.evaluation",
     "roadvision.training is not allowed to import roadvision.evaluation"),
    ("roadvision.components.ingest", "roadvision.pipelines",
     "roadvision.components is not allowed to import roadvision.pipelines"),
    ("roadvision.models.bundle", "roadvision.serving",
     "roadvision.models is not allowed to import roadvision.serving"),
    ("roadvision.data.contract", "kserve", "roadvision.data is not allowed to import kserve"),
])
def test_a_forbidden_import_breaks_a_contract(tmp_path: Path, module: str, imported: str,
                                              contract_says: str) -> None:
    tree = _import_tree(tmp_path)
    _add_import(tree, module, imported)
    result = _lint(tree)
    assert result.returncode != 0
    assert contract_says in " ".join(result.stdout.split()), result.stdout
