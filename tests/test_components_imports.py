"""Pipeline steps depend only downwards: no module under components/ imports the pipeline.

The pipeline (``roadvision.pipelines``) is built from the steps; a step that imported it back
would tie every step's container to the pipeline definition and make the floors circular.
Lazy imports inside functions count too (component bodies import lazily), so the scan walks
every node of each module's syntax tree, not only the top-level statements.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

COMPONENTS = Path(__file__).resolve().parents[1] / "components"
FORBIDDEN = "roadvision.pipelines"


def _imported_modules(source: str) -> list[tuple[int, str]]:
    """``(line, module)`` for every ``import x`` / ``from x import y`` in ``source``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.append((node.lineno, node.module))
            # `from roadvision import pipelines` names the package in the imported names
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def _pipeline_imports(source: str) -> list[tuple[int, str]]:
    return [(line, module) for line, module in _imported_modules(source)
            if module == FORBIDDEN or module.startswith(FORBIDDEN + ".")]


def test_no_component_imports_the_pipeline():
    modules = sorted(COMPONENTS.glob("*.py"))
    assert len(modules) >= 13  # the scan sees the steps
    offenders = [f"{path.name}:{line}: {module}" for path in modules
                 for line, module in _pipeline_imports(path.read_text())]
    assert not offenders, "components import roadvision.pipelines:\n" + "\n".join(offenders)


@pytest.mark.parametrize("source", [
    "from roadvision.pipelines.run_profiles import RUN_PROFILES\n",
    "def body():\n    import roadvision.pipelines.training\n",
    "from roadvision import pipelines\n",
])
def test_the_scan_catches_each_form_of_import(source):
    assert _pipeline_imports(source)


def test_the_scan_ignores_lookalikes():
    assert not _pipeline_imports("import roadvision.pipelines_extra\nfrom . import pipelines\n")
