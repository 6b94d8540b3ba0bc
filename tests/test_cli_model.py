"""``roadvision model list|show|promote|rollback|audit|uri`` against a temporary MLflow store."""

from __future__ import annotations

import os
import shutil
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
    note = registry.alias_note(tags, "champion")
    assert note["by"] == "dana" and note["reason"] == "better on rain"
    assert note["at"].endswith("+00:00")

    rolled = invoke("model", "rollback", "rv-cli", "--reason", "drift alarm")
    assert rolled.exit_code == 0 and "from v2 to v1" in rolled.output
    assert registry.champion("rv-cli").version == "1"
    assert registry.get_version("rv-cli/2").tags["roadvision.rolled_back"].endswith(": drift alarm")
    as_json = invoke("model", "show", "rv-cli/1", "--json")
    assert '"champion"' in as_json.output and '"version": "1"' in as_json.output


def test_errors_are_one_line_messages(two_versions, tmp_path):
    registry.tag_version("rv-cli", "2", {"gate.decision": "refuse",
                                         "gate.reason": "headline mcc 0.30 vs champion 0.50"})
    env = {**os.environ, "COLUMNS": "200"}
    cases = (
        (["model", "show", "rv-cli/9"], "error: rv-cli/9: no such version 9"),
        (["model", "promote", "rv-cli", "7"], "error: rv-cli: no version 7 in the registry"),
        (["model", "promote", "rv-cli", "abc"],  # was a traceback
         "error: version: 'abc' is not a version number"),
        (["model", "promote", "rv-cli", "2"],  # was promoted without a word
         "error: rv-cli v2: the gate refused this version (headline mcc 0.30"),
        (["model", "promote", "rv-cli", "2", "--force"], "error: --force: say why with --reason"),
        (["model", "rollback", "rv-cli"], "error: rv-cli: has no @champion to roll back from"),
        (["model", "uri", "rv-cli@challenger"],
         "error: rv-cli@challenger (v2) is in a local file store"),
    )
    # all at once: each is a fresh interpreter importing MLflow
    procs = [subprocess.Popen([sys.executable, "-m", "roadvision.cli", *args], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              cwd=tmp_path) for args, _ in cases]
    for proc, (args, message) in zip(procs, cases, strict=True):
        _, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 2, (args, stderr)
        lines = stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(message), (args, stderr)
    assert registry.champion("rv-cli") is None  # nothing was changed by any of them


def test_force_promotes_a_refused_version_and_the_audit_shows_why(two_versions, monkeypatch):
    monkeypatch.setenv("ROADVISION_USER", "ops")
    registry.tag_version("rv-cli", "2", {"gate.decision": "refuse",
                                         "gate.reason": "slice city=beta dropped 0.2"})
    assert invoke("model", "promote", "rv-cli", "v1").exit_code == 0
    forced = invoke("model", "promote", "rv-cli", "2", "--force", "--reason", "beta is unused")
    assert forced.exit_code == 0, forced.output
    assert "v2 is now @champion (was v1) (forced over the gate's refusal)" in forced.output
    audit = invoke("model", "audit", "rv-cli")
    assert audit.exit_code == 0, audit.output
    text = " ".join(audit.output.split())
    assert text.count("@champion") == 2 and text.count("@challenger") == 2
    assert "[gate refused: slice city=beta dropped 0.2]" in text  # shown, not eaten as markup
    entries = registry.audit_log("rv-cli")
    assert entries[-1]["reason"] == "forced over the gate's refusal: beta is unused"
    assert entries[-1]["by"] == "ops" and "city=beta" in entries[-1]["gate_reason"]
    assert [e["action"] for e in entries] == ["set_alias", "set_alias", "promote", "promote"]
    assert entries[-1]["forced"] is True


def test_the_default_store_is_found_from_any_directory(_empty_mlflow_db, tmp_path):  # noqa: F811
    # Before: ROADVISION_HOME defaulted to ./.roadvision, so `model list` in another folder made
    # a new empty store there and listed nothing.
    from mlflow import MlflowClient

    home = tmp_path / "cache" / "roadvision"
    home.mkdir(parents=True)
    shutil.copyfile(_empty_mlflow_db, home / "mlflow.db")
    uri = f"sqlite:///{home / 'mlflow.db'}"
    MlflowClient(tracking_uri=uri, registry_uri=uri).create_registered_model("rv-home")
    elsewhere = tmp_path / "some" / "other" / "folder"
    elsewhere.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items()
           if k not in ("MLFLOW_TRACKING_URI", "ROADVISION_HOME")}
    env.update({"XDG_CACHE_HOME": str(tmp_path / "cache"), "COLUMNS": "200"})
    proc = subprocess.run([sys.executable, "-m", "roadvision.cli", "model", "list"], env=env,
                          capture_output=True, text=True, timeout=300, cwd=elsewhere)
    assert proc.returncode == 0, proc.stderr
    assert "rv-home" in proc.stdout
    assert list(elsewhere.iterdir()) == []  # nothing written where the command ran
