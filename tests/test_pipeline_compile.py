"""The compiled pipeline: committed YAML up to date, Kubernetes settings present, params sane."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from roadvision.components.run_params import TRAINING_PROFILES, RunParams
from roadvision.errors import UserError
from roadvision.pipelines.cluster import ClusterSettings
from roadvision.pipelines.compile import DEFAULT_OUT, compile_pipeline, normalise
from roadvision.pipelines.run_profiles import RUN_PROFILES, from_run_profile


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    """Compile once with non-default settings, to see that every one reaches the YAML."""
    settings = ClusterSettings(
        image="registry.example/roadvision-train:9.9", accelerator_type="nvidia.com/gpu",
        accelerator_limit=2, gpu_node_selector={"pool": "a100"},
        gpu_toleration={"key": "gpu", "operator": "Equal", "value": "yes",
                        "effect": "NoSchedule"}, s3_secret="my-s3", mlflow_secret="my-mlflow",
        io_retries=4)
    path = compile_pipeline(tmp_path_factory.mktemp("compiled") / "p.yaml", settings)
    spec, platform = yaml.safe_load_all(path.read_text())
    return spec, platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


def _executor(spec, task_name, dag=None):
    dag = dag or spec["root"]["dag"]
    component = dag["tasks"][task_name]["componentRef"]["name"]
    return spec["components"][component]["executorLabel"]


def test_committed_yaml_is_up_to_date(tmp_path):
    fresh = compile_pipeline(tmp_path / "fresh.yaml")  # default ClusterSettings, as committed
    assert DEFAULT_OUT.is_file(), "run `roadvision pipeline compile` and commit the YAML"
    assert normalise(fresh.read_text()) == normalise(DEFAULT_OUT.read_text()), (
        "pipelines/training_pipeline.yaml is stale: run `python -m roadvision.pipelines.compile`")


def test_dag_shape(compiled):
    spec, _ = compiled
    root = spec["root"]["dag"]["tasks"]
    assert {"check-params", "ingest", "validate", "split", "gps-weighting", "for-loop-1", "distill",
            "evaluate-2", "error-analysis", "register", "gate", "condition-5"} <= set(root)
    loop = spec["components"]["comp-for-loop-1"]["dag"]["tasks"]
    assert set(loop) == {"train", "evaluate"}
    assert root["for-loop-1"]["parameterIterator"]["items"]["inputParameter"].endswith(
        "check-params-Output")
    condition = root["condition-5"]["triggerPolicy"]["condition"]
    assert "gate" in condition and "true" in condition.lower()
    assert set(spec["components"]["comp-condition-5"]["dag"]["tasks"]) == {"promote"}
    # distill gets the members' models as one collected list
    distill_in = root["distill"]["inputs"]["artifacts"]["teachers"]
    assert distill_in["taskOutputArtifact"]["producerTask"] == "for-loop-1"


def test_pseudo_label_branch_is_off_by_default_and_feeds_what_is_registered(compiled):
    """If(pool != ""): pseudo_label on the student (a GPU step); Else: keep_student. Both
    return a model URI; the importer makes the OneOf of the two the model that is evaluated,
    analysed and registered."""
    spec, k8s = compiled
    root = spec["root"]["dag"]["tasks"]
    assert spec["root"]["inputDefinitions"]["parameters"]["pseudo_label_pool"].get(
        "defaultValue", "") == ""
    branches = spec["components"]["comp-condition-branches-2"]["dag"]
    if_branch, else_branch = (root["condition-branches-2"], branches["tasks"]["condition-3"],
                              branches["tasks"]["condition-4"])[1:]
    assert "pseudo_label_pool" in if_branch["triggerPolicy"]["condition"]
    assert "!=" in if_branch["triggerPolicy"]["condition"]
    assert "!(" in else_branch["triggerPolicy"]["condition"]  # Else = not the If's condition
    assert set(spec["components"]["comp-condition-3"]["dag"]["tasks"]) == {"pseudo-label"}
    assert set(spec["components"]["comp-condition-4"]["dag"]["tasks"]) == {"keep-student"}
    oneof = branches["outputs"]["parameters"]
    (selectors,) = [o["valueFromOneof"]["parameterSelectors"] for o in oneof.values()]
    assert [s["producerSubtask"] for s in selectors] == ["condition-3", "condition-4"]
    # the importer takes the OneOf's URI; evaluate, error analysis and register its model
    importer = root["importer"]["inputs"]["parameters"]["uri"]["taskOutputParameter"]
    assert importer["producerTask"] == "condition-branches-2"
    for name in ("evaluate-2", "error-analysis", "register"):
        model = root[name]["inputs"]["artifacts"]["model"]["taskOutputArtifact"]
        assert model == {"producerTask": "importer", "outputArtifactKey": "artifact"}, name
    # the branch's training runs on the GPU pool, the pass-through does not
    label = _executor(spec, "pseudo-label", spec["components"]["comp-condition-3"]["dag"])
    assert spec["deploymentSpec"]["executors"][label]["container"]["resources"][
        "accelerator"]["resourceCount"] == "2"
    assert k8s[label]["nodeSelector"]["labels"] == {"pool": "a100"}
    keep = _executor(spec, "keep-student", spec["components"]["comp-condition-4"]["dag"])
    assert "nodeSelector" not in k8s[keep]


def test_every_step_has_a_result_output(compiled):
    """Each step writes its result JSON into an output named ``result`` (pipelines/local.py
    and anyone reading the artifact store find what a step did there)."""
    spec, _ = compiled
    steps = {name: c for name, c in spec["components"].items() if "executorLabel" in c}
    # 14 steps with evaluate compiled twice (members and student), plus KFP's importer
    assert len(steps) == 16 and "comp-importer" in steps
    for name, component in steps.items():
        if name == "comp-importer":
            continue
        result = component["outputDefinitions"]["artifacts"].get("result")
        assert result and result["artifactType"]["schemaTitle"] == "system.Artifact", name


def test_gpu_steps_carry_accelerator_node_selector_and_toleration(compiled):
    spec, k8s = compiled
    executors = spec["deploymentSpec"]["executors"]
    loop = spec["components"]["comp-for-loop-1"]["dag"]
    for label in (_executor(spec, "train", loop), _executor(spec, "distill")):
        resources = executors[label]["container"]["resources"]
        assert resources["accelerator"]["resourceType"] == "nvidia.com/gpu"
        assert resources["accelerator"]["resourceCount"] == "2"
        assert resources["memoryLimit"] > 0 and resources["cpuLimit"] > 0
        assert k8s[label]["nodeSelector"]["labels"] == {"pool": "a100"}
        assert k8s[label]["tolerations"] == [{"key": "gpu", "operator": "Equal", "value": "yes",
                                              "effect": "NoSchedule"}]
    # CPU steps stay off the GPU pool
    ingest = _executor(spec, "ingest")
    assert "accelerator" not in executors[ingest]["container"].get("resources", {})
    assert "nodeSelector" not in k8s[ingest]


def test_every_step_gets_secrets_as_env_and_our_image(compiled):
    spec, k8s = compiled
    for label, executor in spec["deploymentSpec"]["executors"].items():
        if "importer" in executor:  # KFP's importer runs in the driver: no pod of ours
            continue
        container = executor["container"]
        assert container["image"] == "registry.example/roadvision-train:9.9"
        assert "pip install" not in " ".join(container["command"] + container.get("args", []))
        secrets = {s["secretName"]: s for s in k8s[label]["secretAsEnv"]}
        assert {m["envVar"] for m in secrets["my-s3"]["keyToEnv"]} == {
            "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
        assert {m["envVar"] for m in secrets["my-mlflow"]["keyToEnv"]} == {
            "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"}
        assert secrets["my-mlflow"]["optional"] is True
        # the run id reaches each step from the pod label, not as an input (cache keys)
        assert k8s[label]["fieldPathAsEnv"] == [
            {"fieldPath": "metadata.labels['pipeline/runid']", "name": "KFP_RUN_ID"}]


def test_no_step_takes_a_per_run_input(compiled):
    """A per-run value (run id, timestamp) as an input would change every cache key."""
    spec, _ = compiled
    text = yaml.safe_dump(spec["root"])
    assert "pipeline_job_uuid" not in text and "pipeline_job_name" not in text


def test_io_steps_retry_with_backoff_and_registry_steps_never_cache(compiled):
    spec, _ = compiled
    root = spec["root"]["dag"]["tasks"]
    promote = spec["components"]["comp-condition-5"]["dag"]["tasks"]["promote"]
    for task in (root["ingest"], root["register"], root["gate"], promote):
        policy = task["retryPolicy"]
        assert policy["maxRetryCount"] == 4
        assert policy["backoffDuration"] == "30s" and policy["backoffFactor"] == 2.0
    assert "retryPolicy" not in root["distill"]  # a GPU job is not retried blindly
    for task in (root["check-params"], root["register"], root["gate"], promote):
        assert task["cachingOptions"] == {}  # enableCache absent = off
    for name in ("ingest", "split", "distill", "evaluate-2"):
        assert root[name]["cachingOptions"] == {"enableCache": True}
    assert root["gate"]["taskInfo"]["name"] == "Gate"
    assert root["gps-weighting"]["taskInfo"]["name"] == "Weight by GPS"


def test_every_pipeline_parameter_is_described_for_the_kfp_ui(compiled):
    """KFP reads the descriptions from the pipeline function's ``Args:`` docstring."""
    spec, _ = compiled
    declared = spec["root"]["inputDefinitions"]["parameters"]
    undescribed = sorted(name for name, p in declared.items()
                         if len(p.get("description", "").split()) < 4)
    assert not undescribed, f"no description in the KFP UI for {undescribed}"
    assert "roadwork" in declared["task"]["description"]
    assert "synth://" in declared["data_uri"]["description"]


def _tasks(spec, dag):
    """(task id, display name) of every task in ``dag`` and in the loops and conditions in it."""
    for task_id, task in dag["tasks"].items():
        yield task_id, task["taskInfo"]["name"]
        inner = spec["components"][task["componentRef"]["name"]].get("dag")
        if inner:
            yield from _tasks(spec, inner)


def test_display_names_read_as_words_in_the_kfp_ui(compiled):
    """Every step, loop and condition shows a capitalised phrase, never a component id such
    as 'evaluate-2' or 'for-loop-1'."""
    spec, _ = compiled
    names = dict(_tasks(spec, spec["root"]["dag"]))
    assert len(names) >= 14
    for task_id, name in names.items():
        assert name[0].isupper() and "-" not in name and "_" not in name, (task_id, name)
    assert names["for-loop-1"] == "Ensemble members" and names["condition-5"] == "Gate passed"
    assert names["evaluate"] == "Evaluate member" and names["evaluate-2"] == "Evaluate student"


def test_pipeline_parameters_match_runparams_defaults(compiled):
    spec, _ = compiled
    declared = spec["root"]["inputDefinitions"]["parameters"]
    defaults = RunParams().to_dict()
    assert set(declared) == set(defaults)
    for name, value in defaults.items():
        got = declared[name].get("defaultValue", "")
        assert got == value or (isinstance(value, float) and float(got) == value), name


@pytest.mark.parametrize("changes,parameter", [
    ({"epochs": 0}, "epochs"), ({"members": 99}, "members"), ({"task": "cats"}, "task"),
    ({"slice_tolerance": -1.0}, "slice_tolerance"), ({"min_delta": 5.0}, "min_delta"),
    ({"tta": "huge"}, "tta"), ({"target_regions": "91,0"}, "target_regions"),
    ({"data_uri": "/definitely/not/here"}, "data_uri"),
    ({"data_uri": "synth://lanes?n=40"}, "data_uri"), ({"data_uri": "ftp://x"}, "data_uri"),
    ({"model_preset": "lanes_tiny"}, "model_preset"), ({"model_name": "bad name"}, "model_name"),
])
def test_bad_parameters_fail_early_naming_the_parameter(changes, parameter):
    with pytest.raises(UserError, match=f"^{parameter}: "):
        RunParams().replace(**changes).validate(check_mlflow=False)


def test_unreachable_mlflow_fails_early_naming_the_parameter():
    from conftest import free_port

    params = from_run_profile("tiny", mlflow_tracking_uri=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(UserError, match="^mlflow_tracking_uri: .*unreachable"):
        params.validate()


def test_run_profiles_are_valid():
    for name in RUN_PROFILES:
        for task in ("roadwork", "lanes"):
            from_run_profile(name, task=task).validate(check_mlflow=False)
    assert {f.name for f in dataclasses.fields(RunParams)} >= set(RUN_PROFILES["tiny"])
    with pytest.raises(UserError, match="^run profile: 'huge' is not one of"):
        from_run_profile("huge")


def test_training_profile_names_match_the_training_package():
    """RunParams validates training profiles without importing torch: the names must agree."""
    from roadvision.training import PROFILES

    assert set(TRAINING_PROFILES) == set(PROFILES)


def test_submit_to_unreachable_host_is_one_clear_error():
    from conftest import free_port

    from roadvision.pipelines.submit import submit

    host = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(UserError, match=r"^--host http://127\.0\.0\.1:\d+: Kubeflow Pipelines is "
                                        "unreachable"):
        submit(from_run_profile("tiny"), host=host)
    with pytest.raises(UserError, match="^--host 'kfp.local': expected an http"):
        submit(from_run_profile("tiny"), host="kfp.local")
