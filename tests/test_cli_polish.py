"""What a new user trips on in the first hour (issue 16): ``--version``, options where users
put them, one home from every directory (``roadvision info``), validated ``pipeline params``,
plain task-mismatch messages, help that fits the terminal and covers every option, and the
lanes evaluation's KFP ``ClassificationMetrics``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
import typer
from _pipeline import _empty_mlflow_db, mlflow_store, tiny_bundle  # noqa: F401 (fixtures)

from roadvision.cli import app
from tests._cli import one_line_error, run_main
from tests._training import make_lanes, make_roadwork


def _cli(cwd: Path, *args: str, env: dict[str, str] | None = None,
         drop: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """The real ``roadvision`` command in a fresh interpreter, from ``cwd``, without a
    terminal (stdout and stderr are pipes)."""
    full = {k: v for k, v in os.environ.items()
            if k not in ("MLFLOW_TRACKING_URI", "COLUMNS", *drop)}
    return subprocess.run([sys.executable, "-m", "roadvision.cli", *args], cwd=cwd,
                          env={**full, **(env or {})}, capture_output=True, text=True,
                          timeout=300)


@pytest.fixture
def no_store_env(monkeypatch, tmp_path):
    """No MLFLOW_TRACKING_URI, an empty ROADVISION_HOME; what the CLI sets is undone after."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "")
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    home = tmp_path / "home"
    monkeypatch.setenv("ROADVISION_HOME", str(home))
    return home


def test_version_long_and_short(capsys):
    expected = f"roadvision {metadata.version('roadvision')}"
    for flag in ("--version", "-V"):
        code, out, err = run_main(capsys, flag)
        assert code == 0, err
        assert out == expected


# --- options where users put them ----------------------------------------------------------

def test_tracking_uri_before_and_after_the_subcommand(no_store_env, tmp_path, capsys,
                                                      monkeypatch):
    uri = f"sqlite:///{tmp_path / 'other' / 'mlflow.db'}"
    for args in (("--tracking-uri", uri, "model", "list"),
                 ("model", "--tracking-uri", uri, "list"),
                 ("model", "list", "--tracking-uri", uri)):
        monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
        code, out, err = run_main(capsys, *args)
        assert code == 0, (args, err)
        # the store named, not the home's (neither exists: nothing is created to find out)
        assert out == f"no registered models: no store at {uri} yet", args
    assert not (tmp_path / "other").exists() and not no_store_env.exists()


def test_every_group_option_is_accepted_after_the_subcommand_too():
    """An option of a group (``model --tracking-uri``) must also work where users type it,
    after the command (``model list --tracking-uri``)."""
    root = typer.main.get_command(app)
    for group_name, group in root.commands.items():
        group_options = {opt for p in getattr(group, "params", []) if p.name != "help"
                         for opt in p.opts} if hasattr(group, "commands") else set()
        for name, command in getattr(group, "commands", {}).items():
            options = {opt for p in command.params for opt in p.opts}
            missing = group_options - options
            assert not missing, f"roadvision {group_name} {name} lacks {sorted(missing)}"
    # the root's --tracking-uri also reaches every command that opens a store
    for path in (("model", "list"), ("model", "show"), ("serve",), ("pipeline", "run")):
        command = root
        for part in path:
            command = command.commands[part]
        assert "--tracking-uri" in {o for p in command.params for o in p.opts}, path


def test_usage_errors_are_one_line(capsys):
    code, _, err = run_main(capsys, "model", "list", "--bogus")
    line = one_line_error(code, err)
    assert line.startswith("error: No such option: --bogus") and "model list --help" in line


# --- one home --------------------------------------------------------------------------------

def test_model_list_from_another_folder_creates_nothing(tmp_path, capsys, monkeypatch):
    home, cwd = tmp_path / "home", tmp_path / "elsewhere"
    cwd.mkdir()
    done = _cli(cwd, "model", "list", env={"ROADVISION_HOME": str(home)})
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"no registered models: no store at sqlite:///{home / 'mlflow.db'} yet\n"
    assert list(cwd.iterdir()) == []  # no ./.roadvision/mlflow.db, no mlruns/
    assert not home.exists()  # a read-only command does not create an empty store either
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("ROADVISION_HOME", str(home))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "")
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    code, _, err = run_main(capsys, "model", "show", "roadwork@champion")
    assert one_line_error(code, err).startswith(f"error: no MLflow store at {home / 'mlflow.db'} "
                                                "yet")
    assert list(cwd.iterdir()) == [] and not home.exists()


def test_pipeline_compile_outside_a_checkout_plants_no_folder(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_main(capsys, "pipeline", "compile")
    assert one_line_error(code, err).startswith("error: --out: no pipelines/ folder here")
    assert list(tmp_path.iterdir()) == []


def test_info_prints_the_one_home_from_any_folder(no_store_env, tmp_path, capsys, monkeypatch):
    home, cwd = no_store_env, tmp_path / "elsewhere"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    code, out, err = run_main(capsys, "info", "--json")
    assert code == 0, err
    facts = json.loads(out)
    assert facts["version"] == metadata.version("roadvision")
    assert facts["home"] == str(home) and facts["home_source"] == "ROADVISION_HOME"
    assert facts["tracking_uri"] == f"sqlite:///{home / 'mlflow.db'}"
    assert facts["pipeline_runs"] == str(home / "pipeline_runs")
    assert facts["device"] in ("cpu", "cuda")
    assert facts["precision"] == ("fp32" if facts["device"] == "cpu"
                                  else "bfloat16 autocast, channels-last")
    assert facts["extras"]["pipeline"] is True  # kfp and mlflow are what this test env runs
    assert {"train", "pipeline", "serve"} <= set(facts["extras"])
    assert list(cwd.iterdir()) == [] and not home.exists()

    code, out, err = run_main(capsys, "--tracking-uri", "http://mlflow.example:5000", "info")
    assert code == 0, err
    assert f"home: {home} (ROADVISION_HOME;" in out
    assert "tracking store: http://mlflow.example:5000 (MLFLOW_TRACKING_URI)" in out


# --- pipeline params -------------------------------------------------------------------------

@pytest.mark.parametrize("args,expected", [
    (("--task", "cars"), "error: Invalid value for '--task': 'cars' is not one of 'lanes', "
                         "'roadwork'."),
    (("--run-profile", "huge"), "error: Invalid value for '--run-profile': 'huge' is not one "
                                "of 'tiny', 'demo', 'full'."),
    (("--set", "tta=big"), "error: tta: 'big' is not one of ('none', 'flip', 'full')"),
    (("--set", "epochs=0"), "error: epochs: 0 is out of range [1, 1000]"),
    (("--set", "training_profile=huge"), "error: training_profile: 'huge' is not one of"),
    (("--task", "lanes", "--set", "model_preset=roadwork_small"),
     "error: model_preset: 'roadwork_small' is not a lanes model preset"),
])
def test_pipeline_params_validates_every_parameter(capsys, args, expected):
    code, _, err = run_main(capsys, "pipeline", "params", *args)
    assert one_line_error(code, err).startswith(expected)


def test_pipeline_params_prints_a_valid_run(capsys):
    code, out, err = run_main(capsys, "pipeline", "params", "--task", "lanes", "--run-profile",
                              "tiny", "--set", "epochs=3")
    assert code == 0, err
    assert "task = 'lanes'" in out and "epochs = 3" in out and "synth://lanes" in out


@pytest.mark.parametrize("command", ["run", "submit"])
def test_pipeline_run_and_submit_refuse_an_unknown_task(capsys, command):
    code, _, err = run_main(capsys, "pipeline", command, "--task", "cars")
    assert "'cars' is not one of 'lanes', 'roadwork'" in one_line_error(code, err)


# --- task mismatch ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def both_tasks(tmp_path_factory):
    root = tmp_path_factory.mktemp("tasks")
    return {"roadwork": (tiny_bundle(root / "rw_bundle"), make_roadwork(root / "rw", n=8)),
            "lanes": (tiny_bundle(root / "ln_bundle", task="lanes"),
                      make_lanes(root / "ln", n=10, size=32))}


@pytest.mark.parametrize("model_task,data_task", [("roadwork", "lanes"), ("lanes", "roadwork")])
@pytest.mark.parametrize("command", ["evaluate", "analyze", "calibrate"])
def test_a_bundle_on_the_other_tasks_data_says_so(both_tasks, tmp_path, capsys, command,
                                                  model_task, data_task):
    bundle, data = both_tasks[model_task][0], both_tasks[data_task][1]
    extra = ("--out", str(tmp_path / "report")) if command == "analyze" else ()
    code, _, err = run_main(capsys, command, bundle, data, *extra)
    line = one_line_error(code, err)
    assert f"is a {model_task} model but the data set {data} is {data_task}" in line
    assert not (tmp_path / "report").exists()


# --- help ------------------------------------------------------------------------------------

#: Options of files another change owns; remove an entry once its option has help.
KNOWN_GAPS: set[tuple[str, ...]] = set()


def _commands(command, path=()):
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from _commands(sub, (*path, name))


def test_every_command_and_option_has_help():
    undocumented = set()
    for path, command in _commands(typer.main.get_command(app)):
        if not (command.help or "").strip():
            undocumented.add(path)
        for param in command.params:
            if param.name != "help" and not (getattr(param, "help", None) or "").strip():
                undocumented.add((*path, param.name))
    assert undocumented <= KNOWN_GAPS, sorted(undocumented - KNOWN_GAPS)


def test_help_is_not_cut_at_80_columns_without_a_terminal(tmp_path):
    done = _cli(tmp_path, "pipeline", "compile", "--help")
    assert done.returncode == 0, done.stderr
    assert "[default: pipelines/training_pipeline.yaml]" in done.stdout  # rich: "pipelines/tr…"
    assert max(len(line) for line in done.stdout.splitlines()) > 80


def test_help_honours_columns(tmp_path):
    wide = _cli(tmp_path, "serve", "--help", env={"COLUMNS": "200"})
    widths = [len(line) for line in wide.stdout.splitlines()]
    assert max(widths) == 200
    # one option's help on one line at 200 columns
    assert any("compute budget: model inputs per request (lanes windows, roadwork views, TTA "
               "copies included)" in line for line in wide.stdout.splitlines())


def test_help_width_rules():
    from roadvision.cli._options import NO_TERMINAL_WIDTH, help_width

    assert help_width({"COLUMNS": "150"}) == 150
    expected = NO_TERMINAL_WIDTH
    for fd in (2, 1, 0):
        try:
            expected = os.get_terminal_size(fd).columns
            break
        except OSError:
            continue
    assert help_width({}) == expected


# --- KFP UI: lanes evaluation ----------------------------------------------------------------

def test_lanes_evaluation_fills_metrics_and_a_class_confusion_matrix(both_tasks, tmp_path,
                                                                     mlflow_store):  # noqa: F811
    from kfp.dsl import ClassificationMetrics, Metrics

    from roadvision.components._base import publish_metrics
    from roadvision.components.evaluate import log_classification, run_evaluate

    bundle, data = both_tasks["lanes"]
    measured = run_evaluate(bundle, data, tmp_path / "metrics.json", name="evaluate-lanes",
                            tracking_uri=mlflow_store)
    curves = measured.pop("_curves")
    assert curves is None  # lanes has no ROC: the matrix must come from the metrics
    metrics = Metrics(name="metrics", uri=str(tmp_path / "m"))
    publish_metrics(metrics, {k: v for k, v in measured.items() if k != "slices"})
    assert any("miou" in key for key in metrics.metadata)
    classification = ClassificationMetrics(name="classification", uri=str(tmp_path / "c"))
    log_classification(classification, measured, curves)
    matrix = classification.metadata["confusionMatrix"]
    names = [c["displayName"] for c in matrix["annotationSpecs"]]
    assert names == list(measured["metrics"]["per_class_iou"]) and len(names) >= 2
    rows = [row["row"] for row in matrix["rows"]]
    assert len(rows) == len(names) and all(len(r) == len(names) for r in rows)
    assert sum(map(sum, rows)) == measured["metrics"]["pixels"] > 0
