"""The wheel must ship what the editable install sees, and the CLI must start."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _declared() -> tuple[list[str], dict[str, str]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    return config["packages"], config["package-dir"]


def _folder_of(package: str, package_dir: dict[str, str]) -> Path:
    parts = package.split(".")
    for cut in range(len(parts), 0, -1):
        prefix = ".".join(parts[:cut])
        if prefix in package_dir:
            return ROOT / package_dir[prefix] / Path(*parts[cut:])
    raise AssertionError(f"{package} is not under any package-dir mapping")


def test_every_package_folder_is_declared() -> None:
    packages, package_dir = _declared()
    on_disk = set()
    for prefix, folder in package_dir.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(ROOT / folder)
            on_disk.add(".".join([prefix, *relative.parts]))
    missing = sorted(on_disk - set(packages))
    assert not missing, f"add these to [tool.setuptools] packages in pyproject.toml: {missing}"


def test_every_declared_package_exists() -> None:
    packages, package_dir = _declared()
    absent = [p for p in packages if not (_folder_of(p, package_dir) / "__init__.py").is_file()]
    assert not absent, f"declared but missing on disk: {absent}"


def test_cli_help_runs() -> None:
    result = subprocess.run([sys.executable, "-m", "roadvision.cli", "--help"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "data" in result.stdout
