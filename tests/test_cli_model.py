"""``roadvision model list|show|promote|rollback`` against a temporary MLflow store."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from _pipeline import _empty_mlflow_db, mlflow_store, tiny_bundle  # noqa: F401 (fixtures)
from typer.testing import CliRunner

from roadvision import registry
from roadvision.cli import app


@pytest.fixture
def two_versions(mlflow_store, tmp_path):  # noqa: F811
    bundle = tiny_bundle(tmp_path / "bundle")
    for headline in (0.3, 0.5):
        registry.register_bundle(bundle, "rv-cli", {"dataset.content_hash": "h"},
                                 {"headline": headline}, validate_example=False)
    return "rv-cli"


def invoke(*args: str):
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})
    return result


def test_list_show_promote_rollback_leave_audit_tags(two_versions, monkeypatch):
    monkeypatch.setenv("ROADVISION_USER", "dana")
    listed = invoke("model", "list")
    assert listed.exit_code == 0, listed.output
    assert "rv-cli" in listed.output

    promoted = invoke("model", "promote", "rv-cli", "1", "--reason", "baseline")
    assert promoted.exit_code == 0 and "v1 is now @champion" in promoted.output
    promoted = invoke("model", "promote", "rv-cli", "2", "--reason", "better on rain")
    assert "v2 is now @champion (was v1)" in promoted.output
    shown = invoke("model", "show", "rv-cli@champion")
    assert shown.exit_code == 0
    assert "version 2" in shown.output and "better on rain" in shown.output
    tags = registry.get_version("rv-cli/2").tags
    assert tags["roadvision.champion.by"] == "dana"
    assert tags["roadvision.champion.reason"] == "better on rain"
    assert tags["roadvision.champion.at"].endswith("+00:00")

    rolled = invoke("model", "rollback", "rv-cli", "--reason", "drift alarm")
    assert rolled.exit_code == 0 and "from v2 to v1" in rolled.output
    assert registry.champion("rv-cli").version == "1"
    assert registry.get_version("rv-cli/2").tags["roadvision.rolled_back.reason"] == "drift alarm"
    as_json = invoke("model", "show", "rv-cli/1", "--json")
    assert '"champion"' in as_json.output and '"version": "1"' in as_json.output


def test_errors_are_one_line_messages(two_versions, tmp_path):
    env = {**os.environ, "COLUMNS": "200"}
    for args, message in (
        (["model", "show", "rv-cli/9"], "error: rv-cli/9: no such version 9"),
        (["model", "promote", "rv-cli", "7"], "error: rv-cli: no version 7 in the registry"),
        (["model", "rollback", "rv-cli"], "error: rv-cli: has no @champion to roll back from"),
    ):
        proc = subprocess.run([sys.executable, "-m", "roadvision.cli", *args], env=env,
                              capture_output=True, text=True, timeout=120, cwd=tmp_path)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.strip().splitlines()[0].startswith(message), proc.stderr
        assert "Traceback" not in proc.stderr
