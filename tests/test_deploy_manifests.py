"""Plain manifests (kustomize), the KFP recurring-run example, Dockerfiles and yamllint.

kustomize is not installed here: tests/_deploy.py builds the overlays with a small
implementation of the features they use, and where kubectl is installed a test checks that
`kubectl kustomize` builds exactly the same objects.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import re

import jsonschema
import pytest
import yaml
from _deploy import (
    MANIFESTS,
    ROOT,
    KustomizeError,
    container_problems,
    containers,
    dockerfile_problems,
    find,
    kubectl_kustomize,
    kustomize_build,
    render_chart,
    sdk_model_schema,
    validate_object,
    writable_paths,
)
from yamllint import linter
from yamllint.config import YamlLintConfig

OVERLAYS = ["dev", "prod"]


def _key(obj):
    return obj["kind"], obj["metadata"]["name"]


@pytest.fixture(scope="module")
def built() -> dict[str, list[dict]]:
    builds = {name: kustomize_build(MANIFESTS / "overlays" / name) for name in OVERLAYS}
    builds["base"] = kustomize_build(MANIFESTS / "base")
    return builds


# -- kustomize ----------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["base", *OVERLAYS])
def test_every_built_object_passes_its_schema(built, name):
    kinds = {o["kind"] for o in built[name]}
    assert kinds == {"ServiceAccount", "InferenceService", "Deployment", "Service",
                     "ServiceMonitor", "PrometheusRule", "NetworkPolicy", "ConfigMap"}
    for obj in built[name]:
        validate_object(obj)


@pytest.mark.parametrize("name", OVERLAYS)
def test_minimal_kustomize_builds_what_kubectl_kustomize_builds(built, name):
    reference = kubectl_kustomize(MANIFESTS / "overlays" / name)
    if reference is None:
        pytest.skip("kubectl is not installed; the minimal build is the only one")
    assert sorted(built[name], key=_key) == sorted(reference, key=_key)


def test_overlays_set_their_namespace(built):
    assert {o["metadata"].get("namespace") for o in built["dev"]} == {"roadvision-dev"}
    assert {o["metadata"].get("namespace") for o in built["prod"]} == {"roadvision"}


def test_prod_overlay_requests_gpus_and_autoscales_2_to_10(built):
    predictor = find(built["prod"], "InferenceService")["spec"]["predictor"]
    assert (predictor["minReplicas"], predictor["maxReplicas"]) == (2, 10)
    assert predictor["scaleMetric"] == "cpu" and predictor["scaleTarget"] == 60
    resources = predictor["containers"][0]["resources"]
    assert resources["limits"]["nvidia.com/gpu"] == resources["requests"]["nvidia.com/gpu"] == "1"
    assert predictor["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert predictor["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert find(built["prod"], "ServiceMonitor")["metadata"]["labels"]["release"]


def test_dev_overlay_is_cpu_only_and_small(built):
    predictor = find(built["dev"], "InferenceService")["spec"]["predictor"]
    assert predictor["minReplicas"] == predictor["maxReplicas"] == 1
    assert "nvidia.com/gpu" not in json.dumps(predictor)
    env = {e["name"]: e.get("value") for e in predictor["containers"][0]["env"]}
    assert env["ROADVISION_MODEL_URI"] == "models:/roadwork@challenger"
    assert env["ROADVISION_MAX_BATCH_SIZE"] == "4"


@pytest.mark.parametrize("name", ["base", *OVERLAYS])
def test_s3_annotations_are_left_to_the_secret(built, name):
    """KServe reads serving.kserve.io/s3-* from the listed Secret, never from here."""
    account = find(built[name], "ServiceAccount")
    assert account["secrets"] == [{"name": "roadvision-s3"}]
    assert not [k for k in account["metadata"].get("annotations", {})
                if k.startswith("serving.kserve.io/")]


@pytest.mark.parametrize("name", ["base", *OVERLAYS])
def test_the_predictor_writes_only_to_its_emptydir_and_binds_the_pod_ip(built, name):
    (pod, container), = containers(find(built[name], "InferenceService"))
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert any(env["ROADVISION_HOME"].startswith(p.rstrip("/") + "/")
               for p in writable_paths(pod, container))
    assert "--host=0.0.0.0" in container["args"]


@pytest.mark.parametrize("name", ["base", *OVERLAYS])
def test_every_container_runs_as_non_root_with_limits(built, name):
    workloads = [o for o in built[name] if containers(o)]
    assert len(workloads) == 2
    for obj in workloads:
        assert container_problems(obj) == []


def test_kustomize_build_fails_on_a_stale_patch(tmp_path):
    """The overlays guard index-based paths with `test` ops; a moved env var breaks the build."""
    base = tmp_path / "base"
    base.mkdir()
    (base / "cm.yaml").write_text(yaml.safe_dump(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"},
         "data": {"a": "1"}}))
    (base / "kustomization.yaml").write_text("resources: [cm.yaml]\n")
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    patch = {"target": {"version": "v1", "kind": "ConfigMap", "name": "x"},
             "patch": "- {op: test, path: /data/a, value: '2'}\n"
                      "- {op: replace, path: /data/a, value: '3'}\n"}
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump(
        {"resources": ["../base"], "patches": [patch]}))
    with pytest.raises(KustomizeError, match="test failed"):
        kustomize_build(overlay)
    patch["patch"] = patch["patch"].replace("'2'", "'1'")
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump(
        {"resources": ["../base"], "patches": [patch]}))
    assert kustomize_build(overlay)[0]["data"] == {"a": "3"}


def test_kustomize_build_refuses_features_it_does_not_implement(tmp_path):
    (tmp_path / "kustomization.yaml").write_text("resources: []\ncommonLabels: {a: b}\n")
    with pytest.raises(KustomizeError, match="commonLabels"):
        kustomize_build(tmp_path)


def _normalise(obj):
    obj = copy.deepcopy(obj)
    obj["metadata"].pop("namespace", None)
    labels = obj["metadata"].get("labels", {})
    for key in ("helm.sh/chart", "app.kubernetes.io/managed-by", "app.kubernetes.io/version"):
        labels.pop(key, None)
    if obj["kind"] == "ConfigMap":
        obj["data"] = {k: json.loads(v) for k, v in obj["data"].items()}
    return obj


def test_base_manifests_match_the_chart_with_every_feature_on(built):
    """The kustomize base and the chart describe the same objects: a change to one is made to
    the other, or this test fails."""
    chart = render_chart({
        "image": {"tag": "0.1.0"},
        "metrics": {"serviceMonitor": {"enabled": True}, "prometheusRule": {"enabled": True},
                    "dashboard": {"enabled": True}},
        "networkPolicy": {"enabled": True}})
    ours = {_key(o): _normalise(o) for o in built["base"]}
    theirs = {_key(o): _normalise(o) for o in chart}
    assert ours.keys() == theirs.keys()
    for key in ours:
        assert ours[key] == theirs[key], f"{key} differs between manifests/base and the chart"


# -- KFP recurring run -------------------------------------------------------------------

def _recurring_run_schema():
    import kfp_server_api.models

    schema = sdk_model_schema(kfp_server_api.models, "V2beta1RecurringRun")
    schema["required"] = ["display_name", "trigger", "mode"]
    return schema


def test_kfp_recurring_run_example_matches_the_kfp_api_model():
    body = yaml.safe_load((MANIFESTS / "kfp" / "recurring-run.yaml").read_text())
    schema = _recurring_run_schema()
    jsonschema.Draft202012Validator(schema).validate(body)
    cron = body["trigger"]["cron_schedule"]["cron"].split()
    assert len(cron) == 6, "KFP cron expressions carry a seconds field"
    assert body["max_concurrency"] == "1" and body["mode"] == "ENABLE"

    from roadvision.components.run_params import RunParams

    params = {f.name for f in dataclasses.fields(RunParams)}
    assert set(body["runtime_config"]["parameters"]) <= params
    assert body["runtime_config"]["parameters"]["model_name"] == "roadwork"  # what serving loads

    broken = copy.deepcopy(body)
    broken["trigger"]["cron_schedule"]["crontab"] = broken["trigger"]["cron_schedule"].pop("cron")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(schema).validate(broken)
    broken = copy.deepcopy(body)
    broken["mode"] = "ON"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(schema).validate(broken)


# -- Dockerfiles ----------------------------------------------------------------------------

def test_dockerfiles_pin_their_base_run_non_root_and_start_the_right_program():
    train = (ROOT / "Dockerfile.train").read_text()
    serve = (ROOT / "Dockerfile.serve").read_text()
    assert dockerfile_problems(train) == []
    assert dockerfile_problems(serve, entrypoint="python -m roadvision.serving") == []
    assert re.search(r'pip install -c constraints.txt "\.\[train,pipeline\]"', train)
    assert re.search(r'pip install -c constraints.txt "\.\[serve\]"', serve)
    assert "torch==2.13.0" in serve and "2.13.0" in train.split("FROM")[0]
    assert "EXPOSE 8080" in serve


@pytest.mark.parametrize("text, problem", [
    ("FROM python:latest\nUSER 10001\n", "not pinned"),
    ("FROM python\nUSER 10001\n", "not pinned"),
    ("ARG B=python:slim\nFROM ${B}\nUSER 10001\n", "not pinned"),
    ("FROM python:3.11.11-slim\n", "no USER"),
    ("FROM python:3.11.11-slim\nUSER 10001\nUSER root\n", "is root"),
    ('FROM python:3.11.11-slim\nUSER 1\nENTRYPOINT ["python", "-m", "kserve"]\n', "ENTRYPOINT"),
])
def test_dockerfile_check_catches_a_broken_dockerfile(text, problem):
    problems = dockerfile_problems(text, entrypoint="python -m roadvision.serving")
    assert any(problem in p for p in problems), problems


def test_dockerignore_keeps_local_state_out_of_the_build_context():
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".git", ".venv", ".roadvision", "mlruns", "tests"} <= ignored


# -- yamllint ---------------------------------------------------------------------------

def _yamllint_problems(paths):
    config = YamlLintConfig(file=str(ROOT / ".yamllint"))
    problems = []
    for path in paths:
        if config.is_file_ignored(str(path.relative_to(ROOT))):
            continue
        problems += [f"{path}:{p.line}: {p.message}" for p in
                     linter.run(path.read_text(), config, str(path))
                     if p.level in ("error", "warning")]  # `yamllint -s` fails on both
    return problems


def test_manifests_and_values_pass_yamllint_strict():
    paths = sorted(MANIFESTS.rglob("*.yaml")) + [ROOT / "helm/roadvision/values.yaml",
                                                  *sorted((ROOT / "helm/roadvision/ci").glob("*"))]
    assert len(paths) > 10
    assert _yamllint_problems(paths) == []


def test_yamllint_catches_broken_yaml():
    config = YamlLintConfig(file=str(ROOT / ".yamllint"))
    problems = [p.rule for p in linter.run("key: 1\nkey: 2\n", config)]
    assert "document-start" in problems and "key-duplicates" in problems
