"""Hyper-parameter sweeps: the search space, a real 3-trial Optuna study of tiny trainings in a
real MLflow store (nested runs, pruning, selection on validation, the test split scored once at
the end), the CLI's bad input, and the sweep pipeline's ParallelFor/Collected structure."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest
import yaml
from _cli import one_line_error, run_main
from _pipeline import _empty_mlflow_db, mlflow_store  # noqa: F401 (fixtures)
from _training import make_roadwork

from roadvision.errors import UserError
from roadvision.training import TrainConfig
from roadvision.training.sweep import (
    SearchSpace,
    SweepSettings,
    plan_trials,
    run_sweep,
    select_best,
)

TRIALS = 3


def _base() -> TrainConfig:
    return TrainConfig.for_profile("tiny", "roadwork", max_steps_per_epoch=2, device="cpu")


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory, _empty_mlflow_db: Path):  # noqa: F811
    """One real sweep: 3 tiny trials, pruning after the first completed trial, the test split
    scored through the real evaluation (calls recorded)."""
    import shutil

    import mlflow

    from roadvision.evaluation import evaluate

    root = tmp_path_factory.mktemp("sweep")
    data = make_roadwork(root / "data", n=32, size=32)
    shutil.copyfile(_empty_mlflow_db, root / "mlflow.db")  # a real store, migrated once
    uri = f"sqlite:///{root / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    experiment_id = mlflow.create_experiment("sweeps", artifact_location=str(root / "artifacts"))
    out = root / "out"
    calls: list[dict] = []

    def score_test(bundle: Path) -> dict:
        # what existed when the test split was read: every trial must already be over
        calls.append({"bundle": bundle, "histories": len(list(out.glob("trial-*/history.json")))})
        metrics = evaluate(bundle, data, split="test")
        calls[-1]["headline"] = metrics["headline"]
        return metrics

    settings = SweepSettings(trials=TRIALS, seed=0, startup_trials=2, prune_startup_trials=1)
    result = run_sweep(data, out, _base(), SearchSpace(), settings, score_test=score_test,
                       experiment_id=experiment_id)
    mlflow.set_tracking_uri(None)
    return {"result": result, "uri": uri, "calls": calls, "data": data, "out": out,
            "experiment_id": experiment_id}


def _history(run_dir: str) -> list[dict]:
    return json.loads((Path(run_dir) / "history.json").read_text())


def test_each_trial_is_a_nested_run_under_one_parent(swept):
    from mlflow import MlflowClient

    result = swept["result"]
    client = MlflowClient(tracking_uri=swept["uri"])
    runs = client.search_runs([swept["experiment_id"]])
    parents = [r for r in runs if r.data.tags.get("roadvision.kind") == "sweep"]
    trials = [r for r in runs if r.data.tags.get("roadvision.kind") == "sweep-trial"]
    assert len(parents) == 1 and len(trials) == TRIALS
    assert parents[0].info.run_id == result.parent_run_id
    assert {r.data.tags["mlflow.parentRunId"] for r in trials} == {result.parent_run_id}
    by_id = {r.info.run_id: r for r in trials}
    for record in result.trials:
        run = by_id[record.run_id]
        assert run.data.tags["optuna.state"] == record.state
        assert float(run.data.params["lr"]) == pytest.approx(record.params["lr"])
        # the loop's per-epoch metrics landed in the trial's own run
        steps = client.get_metric_history(record.run_id, "val_headline")
        assert len(steps) == record.epochs_run == len(_history(record.run_dir))


def test_a_trial_below_the_median_is_pruned_and_recorded(swept):
    result = swept["result"]
    pruned = [t for t in result.trials if t.state == "pruned"]
    assert pruned, [(t.number, t.state) for t in result.trials]
    assert result.counts()["pruned"] == len(pruned)
    for trial in pruned:
        # fewer epochs than asked, and its figure was below the median of the trials that had
        # completed before it, at the same epoch (MedianPruner's rule)
        assert trial.epochs_run < _base().epochs and trial.val is None
        epoch = trial.epochs_run
        figure = _history(trial.run_dir)[epoch - 1]["val_headline"]
        earlier = [_history(t.run_dir)[epoch - 1]["val_headline"] for t in result.trials
                   if t.state == "complete" and t.number < trial.number]
        assert earlier and figure < statistics.median(earlier)
        assert not (Path(trial.run_dir) / "checkpoint").exists()


def test_selection_reads_validation_and_test_is_scored_once_at_the_end(swept):
    result, calls = swept["result"], swept["calls"]
    complete = [t for t in result.trials if t.state == "complete"]
    assert result.best.val == max(t.val for t in complete)
    assert result.best.number == min(t.number for t in complete if t.val == result.best.val)
    assert result.trials[0].default and result.default is result.trials[0]
    # the test split: read after the last trial ended, once per scored bundle, for the winner
    # and (when it lost) the default, and for nothing else
    expected = {Path(result.best.run_dir) / "bundle"}
    if result.default.number != result.best.number:
        expected.add(Path(result.default.run_dir) / "bundle")
    assert sorted(map(str, (c["bundle"] for c in calls))) == sorted(map(str, expected))
    assert all(c["histories"] == TRIALS for c in calls)
    assert result.test["best"]["headline"] == calls[0]["headline"]
    from mlflow import MlflowClient

    parent = MlflowClient(tracking_uri=swept["uri"]).get_run(result.parent_run_id)
    assert parent.data.metrics["best.test_headline"] == pytest.approx(calls[0]["headline"])
    assert parent.data.metrics["best.val"] == pytest.approx(result.best.val)
    assert parent.data.tags["sweep.best_trial"] == str(result.best.number)
    summary = json.loads((swept["out"] / "sweep.json").read_text())
    assert summary["best"]["number"] == result.best.number


def test_a_used_folder_is_refused(swept):
    with pytest.raises(UserError, match="not empty"):
        run_sweep(swept["data"], swept["out"], _base(), settings=SweepSettings(trials=1))


def test_select_best_ignores_pruned_and_failed_trials():
    records = [{"number": 0, "state": "complete", "val": 0.7},
               {"number": 1, "state": "pruned", "val": 0.99},
               {"number": 2, "state": "fail", "val": None},
               {"number": 3, "state": "complete", "val": 0.8},
               {"number": 4, "state": "complete", "val": 0.8}]
    assert select_best(records)["number"] == 3
    with pytest.raises(UserError, match="no trial completed"):
        select_best(records[1:3])


def test_search_space_validation_and_the_default_trial():
    import optuna

    base = _base().replace(appearance=["blur"])
    space = SearchSpace.from_json('{"lr": [1e-4, 1e-2], "epochs": [1, 3], '
                                  '"appearance": ["colour", "blur"], "batch_size": [4, 8]}')
    # the enqueued default reproduces the profile exactly
    changes = space.suggest(optuna.trial.FixedTrial(space.default_params(base)))
    assert base.replace(**changes) == base
    for text, match in (('{"lr": [1]}', "lr"), ('{"lr": [0.1, 0.01]}', "lr"),
                        ('{"augment": ["wild"]}', "augment"), ('{"wd": 1}', "unknown"),
                        ('{"appearance": ["x"]}', "appearance"), ("[1]", "JSON object"),
                        ("{", "not JSON"), ('{"epochs": [0, 2]}', "epochs")):
        with pytest.raises(UserError, match=match):
            SearchSpace.from_json(text)
    with pytest.raises(UserError, match="trials"):
        SweepSettings(trials=0)
    with pytest.raises(UserError, match="augment: the profile's 'light'"):
        plan_trials(SearchSpace(augment=("heavy",)), _base(), SweepSettings(trials=1))
    assert plan_trials(SearchSpace(augment=("heavy",)), _base(),
                       SweepSettings(trials=1, include_default=False))[0]["overrides"][
        "augment"] == "heavy"


def test_plan_trials_is_seeded_and_starts_with_the_default():
    base = _base()
    plan = plan_trials(SearchSpace(), base, SweepSettings(trials=4, seed=3))
    assert [p["number"] for p in plan] == [0, 1, 2, 3]
    assert plan[0]["default"] and plan[0]["overrides"]["lr"] == base.lr
    assert plan == plan_trials(SearchSpace(), base, SweepSettings(trials=4, seed=3))
    other = plan_trials(SearchSpace(), base, SweepSettings(trials=4, seed=4))
    assert [p["overrides"] for p in other[1:]] != [p["overrides"] for p in plan[1:]]
    lows, highs = SearchSpace().lr
    assert all(lows <= p["overrides"]["lr"] <= highs for p in plan[1:])


def test_pipeline_steps_plan_apply_and_select(swept, tmp_path, mlflow_store):  # noqa: F811
    from roadvision.components.sweep import SweepParams, run_sweep_plan, run_sweep_select
    from roadvision.components.train import train_config

    plan = run_sweep_plan(task="roadwork", training_profile="tiny", model_preset="", epochs=2,
                          batch_size=8, max_steps_per_epoch=2, seed=5, trials=3, search_space="")
    cfgs = [train_config(task="roadwork", training_profile="tiny", model_preset="", epochs=2,
                         batch_size=8, max_steps_per_epoch=2, seed=5000 + p["number"],
                         overrides=p["overrides"]) for p in plan]
    assert len({c.seed for c in cfgs}) == 1  # one seed: trials differ by hyper-parameters
    assert [c.lr for c in cfgs] == [json.loads(p["overrides"])["lr"] for p in plan]
    with pytest.raises(UserError, match="overrides"):
        train_config(task="roadwork", training_profile="tiny", model_preset="", epochs=1,
                     batch_size=8, max_steps_per_epoch=2, seed=0, overrides="[1]")
    # selection over the real trials' bundles, by their recorded validation headline
    done = [t for t in swept["result"].trials if t.state == "complete"]
    picked = run_sweep_select([(str(Path(t.run_dir) / "bundle"), {"member": str(t.number)})
                               for t in done], tmp_path / "best")
    assert picked["best"]["number"] == swept["result"].best.number
    assert picked["best"]["val"] == pytest.approx(swept["result"].best.val)
    assert (tmp_path / "best" / "config.json").is_file()
    for bad, match in (({"trials": 0}, "trials"), ({"search_space": "{"}, "not JSON"),
                       ({"task": "cars"}, "task")):
        with pytest.raises(UserError, match=match):
            SweepParams(**bad).validate(check_data=False, check_mlflow=False)


def test_cli_bad_input_is_one_line(swept, capsys, tmp_path):
    data = swept["data"]
    cases = (
        (["--data", data, "--task", "lanes", "--out", tmp_path / "a"], "holds roadwork"),
        (["--data", tmp_path / "none", "--task", "roadwork", "--out", tmp_path / "a"],
         "not a directory"),
        (["--data", data, "--task", "roadwork", "--out", swept["out"]], "not empty"),
        (["--data", data, "--task", "roadwork", "--out", tmp_path / "a", "--space", "@nofile"],
         "no such file"),
        (["--data", data, "--task", "roadwork", "--out", tmp_path / "a", "--set", "lr=-1"],
         "lr must be > 0"),
    )
    for args, message in cases:
        code, _, err = run_main(capsys, "sweep", *args)
        assert message in one_line_error(code, err)
    assert not (tmp_path / "a").exists()


def _spec(path: Path) -> dict:
    return next(yaml.safe_load_all(path.read_text()))


def test_sweep_pipeline_fans_trials_out_and_collects_them(tmp_path):
    from roadvision.pipelines.compile import SWEEP_OUT, compile_sweep, normalise

    path = compile_sweep(tmp_path / "sweep.yaml")
    spec = _spec(path)
    assert spec["pipelineInfo"]["name"] == "roadvision-sweep"
    from roadvision.components.sweep import SweepParams

    inputs = spec["root"]["inputDefinitions"]["parameters"]
    assert set(inputs) == SweepParams.names()  # the pipeline's parameters are SweepParams'
    assert inputs["trials"]["defaultValue"] == SweepParams().trials
    tasks = spec["root"]["dag"]["tasks"]
    loop_name = next(k for k in tasks if k.startswith("for-loop"))
    loop = tasks[loop_name]
    # ParallelFor over the plan step's list output
    items = loop["parameterIterator"]["items"]["inputParameter"]
    assert items == "pipelinechannel--sweep-plan-Output"
    body = spec["components"][loop["componentRef"]["name"]]["dag"]["tasks"]
    train_inputs = body["train"]["inputs"]["parameters"]
    assert 'parseJson(string_value)["overrides"]' in train_inputs["overrides"][
        "parameterExpressionSelector"]
    assert 'parseJson(string_value)["number"]' in train_inputs["member"][
        "parameterExpressionSelector"]
    # Collected: the selection step takes the loop's models as one artifact list
    models = tasks["sweep-select"]["inputs"]["artifacts"]["models"]["taskOutputArtifact"]
    assert models["producerTask"] == loop_name
    assert spec["components"]["comp-sweep-select"]["inputDefinitions"]["artifacts"]["models"][
        "isArtifactList"] is True
    # the winner, and only the winner, goes on to test, register and the gate
    evaluate = tasks["evaluate"]["inputs"]["artifacts"]["model"]["taskOutputArtifact"]
    assert evaluate == {"outputArtifactKey": "best", "producerTask": "sweep-select"}
    assert tasks["register"]["inputs"]["artifacts"]["model"]["taskOutputArtifact"][
        "producerTask"] == "sweep-select"
    assert {"gate", "condition-2"} <= set(tasks)
    assert normalise(path.read_text()) == normalise(SWEEP_OUT.read_text()), (
        "pipelines/sweep_pipeline.yaml is stale: run `python -m roadvision.pipelines.compile`")
