"""The Helm chart (helm/roadvision): lint, values schema, validateConfig, rendered objects.

Rendered with helm-python-sdk (Helm's Go SDK, no CLI, no cluster). Each check also has a test
that feeds it a deliberately broken value and watches it fail.
"""

from __future__ import annotations

import copy
import json

import helm_python
import jsonschema
import kubernetes_validate
import pytest
import yaml
from _deploy import (
    CHART,
    MANIFESTS,
    container_problems,
    containers,
    find,
    lint_chart,
    render_chart,
    render_notes,
    undocumented_keys,
    validate_object,
    values_file,
    writable_paths,
)

VALUE_SETS = {
    "default": None,
    "dev": values_file("dev"),
    "prod": values_file("prod"),
}


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict]]:
    return {name: render_chart(values) for name, values in VALUE_SETS.items()}


# -- lint and schema -------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(VALUE_SETS))
def test_chart_lints_clean_in_strict_mode(name):
    report = lint_chart(VALUE_SETS[name])
    assert report["errors"] == []
    serious = [m for m in report["messages"] if m["severity"] >= 2]  # warnings fail strict lint
    assert serious == []


def test_lint_fails_on_a_broken_value():
    report = lint_chart({"predictor": {"minReplicas": "two"}})
    text = json.dumps(report)
    assert report["errors"] or any(m["severity"] >= 3 for m in report["messages"])
    assert "minReplicas" in text


@pytest.mark.parametrize("values, fragment", [
    ({"predictor": {"minReplicas": "two"}}, "minReplicas"),
    ({"predictor": {"replicas": 3}}, "replicas"),                      # unknown key
    ({"image": {"tag": "latest"}}, "tag"),
    ({"predictor": {"scaleMetric": "gpu"}}, "scaleMetric"),
    ({"predictor": {"config": {"maxTta": "all"}}}, "maxTta"),
    ({"predictor": {"resources": {"limits": {"memory": None}}}}, "memory"),  # null deletes
    ({"metrics": {"prometheusRule": {"errorRatio": 5}}}, "errorRatio"),
    ({"containerSecurityContext": {"runAsNonRoot": False}}, "runAsNonRoot"),
    # the storage initializer cannot fetch these: `roadvision model uri` gives the s3:// path
    ({"model": {"storageUri": "models:/roadwork@champion"}}, "storageUri"),
    ({"model": {"storageUri": "mlflow-artifacts:/1/models/m-1/artifacts"}}, "storageUri"),
])
def test_values_schema_rejects_bad_values(values, fragment):
    with helm_python.Chart.load(str(CHART)) as chart:
        chart.validate_schema(None)  # the defaults pass
    # Rendering is what `helm install` does: coalesce the values, then check values.schema.json.
    with pytest.raises(helm_python.HelmError, match=fragment) as caught:
        render_chart(values)
    assert "schema" in str(caught.value)


@pytest.mark.parametrize("values, message", [
    ({"predictor": {"minReplicas": 5, "maxReplicas": 2}}, "must not exceed"),
    ({"predictor": {"scaleMetric": "concurrency"}}, "needs Knative"),
    ({"predictor": {"minReplicas": 0}}, "scale to zero"),
    ({"predictor": {"scaleTarget": 150}}, "utilisation percentage"),
    ({"model": {"uri": "", "storageUri": ""}}, "set model.uri"),
    ({"mlflow": {"trackingUri": ""}}, "mlflow.trackingUri"),
    ({"redis": {"externalUrl": "redis://cache:6379/0"}}, "pick one"),
    ({"serviceAccount": {"create": False}}, "serviceAccount.name"),
    ({"s3": {"createSecret": True}}, "needs s3.accessKeyId and s3.secretAccessKey"),
    ({"s3": {"createSecret": True, "secretName": "", "accessKeyId": "a",
             "secretAccessKey": "b"}}, "needs s3.secretName"),
    ({"s3": {"accessKeyId": "a", "secretAccessKey": "b"}}, "s3.createSecret is false"),
])
def test_validate_config_fails_with_a_readable_message(values, message):
    with pytest.raises(helm_python.HelmError, match=message):
        render_chart(values)


def test_every_values_key_has_a_doc_comment():
    """KubeRay style: a `# --` description above every key of a block mapping."""
    assert undocumented_keys((CHART / "values.yaml").read_text()) == []


def test_doc_comment_check_catches_an_undocumented_key():
    text = "# -- documented\na: 1\n# plain comment, no helm-docs marker\nb:\n  # -- ok\n  c: 2\n"
    assert undocumented_keys(text) == ["b"]


def test_schema_and_values_describe_the_same_keys():
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    schema = json.loads((CHART / "values.schema.json").read_text())
    stale = []

    def walk(v, s, path):
        props = s.get("properties")
        if not isinstance(v, dict) or props is None or s.get("additionalProperties") is not False:
            return
        for key in props:
            if key != "global" and key not in v:
                stale.append(".".join([*path, key]))
        for key, sub in v.items():
            assert key in props, f"values key {'.'.join([*path, key])} missing from the schema"
            walk(sub, props[key], [*path, key])

    walk(values, schema, [])
    assert stale == []


# -- rendered objects ----------------------------------------------------------------------

@pytest.mark.parametrize("name", list(VALUE_SETS))
def test_every_rendered_object_passes_its_schema(rendered, name):
    objects = rendered[name]
    assert find(objects, "InferenceService")
    for obj in objects:
        validate_object(obj)


@pytest.mark.parametrize("kind, mutate, error", [
    ("Deployment", lambda o: o["spec"].__setitem__("replicas", "one"),
     kubernetes_validate.ValidationError),
    ("Service", lambda o: o["spec"].__setitem__("clusterIp", "None"),  # misspelt field
     kubernetes_validate.ValidationError),
    ("NetworkPolicy", lambda o: o["spec"]["ingress"][0]["ports"][0].__setitem__("protocol", 6),
     kubernetes_validate.ValidationError),
    ("InferenceService", lambda o: o["spec"]["predictor"].__setitem__("maxReplicas", "10"),
     jsonschema.ValidationError),
    ("InferenceService", lambda o: o["spec"]["predictor"]["containers"][0].__setitem__(
        "readinessProbe", {"httpGet": {"path": "/v2/health/ready", "port": 8080}, "period": 5}),
     jsonschema.ValidationError),
    ("ServiceMonitor", lambda o: o["spec"]["endpoints"][0].__setitem__("scheme", "tcp"),
     jsonschema.ValidationError),
    ("PrometheusRule", lambda o: o["spec"]["groups"][0]["rules"][0].__setitem__("for", "10 min"),
     jsonschema.ValidationError),
])
def test_schema_validation_rejects_a_broken_field(rendered, kind, mutate, error):
    obj = copy.deepcopy(next(o for o in rendered["prod"] if o["kind"] == kind))
    validate_object(obj)
    mutate(obj)
    with pytest.raises(error):
        validate_object(obj)


def test_prod_release_requests_gpus_and_autoscales_between_the_configured_bounds(rendered):
    prod = values_file("prod")
    predictor = find(rendered["prod"], "InferenceService")["spec"]["predictor"]
    assert (predictor["minReplicas"], predictor["maxReplicas"]) == (
        prod["predictor"]["minReplicas"], prod["predictor"]["maxReplicas"]) == (2, 10)
    assert predictor["scaleMetric"] == "cpu" and predictor["scaleTarget"] == 60
    container = predictor["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert container["resources"]["requests"]["nvidia.com/gpu"] == "1"
    assert predictor["nodeSelector"]["nvidia.com/gpu.present"] == "true"
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in (
        predictor["tolerations"])
    annotations = find(rendered["prod"], "InferenceService")["metadata"]["annotations"]
    assert annotations["serving.kserve.io/deploymentMode"] == "Standard"


def test_default_and_dev_releases_request_no_gpu(rendered):
    for name in ("default", "dev"):
        predictor = find(rendered[name], "InferenceService")["spec"]["predictor"]
        assert "nvidia.com/gpu" not in json.dumps(predictor)
    dev = find(rendered["dev"], "InferenceService")["spec"]["predictor"]
    assert dev["minReplicas"] == dev["maxReplicas"] == 1


@pytest.mark.parametrize("name", list(VALUE_SETS))
def test_every_container_runs_as_non_root_with_resource_limits(rendered, name):
    workloads = [o for o in rendered[name] if containers(o)]
    assert {o["kind"] for o in workloads} == {"InferenceService", "Deployment"}
    for obj in workloads:
        assert container_problems(obj) == []


@pytest.mark.parametrize("mutate, problem", [
    (lambda p, c: p["securityContext"].pop("runAsNonRoot") and c["securityContext"].pop(
        "runAsNonRoot"), "runAsNonRoot"),
    (lambda p, c: c["resources"]["limits"].pop("memory"), "no memory limit"),
    (lambda p, c: c.__setitem__("image", "redis:latest"), "not pinned"),
    (lambda p, c: c["securityContext"].__setitem__("runAsUser", 0), "uid 0"),
])
def test_container_policy_check_catches_a_violation(rendered, mutate, problem):
    obj = copy.deepcopy(find(rendered["prod"], "InferenceService"))
    pod, container = containers(obj)[0]
    mutate(pod, container)
    assert any(problem in p for p in container_problems(obj))


def test_probes_hit_kserve_health_endpoints_on_8080(rendered):
    container = find(rendered["default"], "InferenceService")["spec"]["predictor"]["containers"][0]
    assert container["name"] == "kserve-container"
    assert container["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": 8080}
    assert container["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": 8080}
    assert container["startupProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert container["ports"][0]["containerPort"] == 8080
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["ROADVISION_MODEL_URI"] == "models:/roadwork@champion"
    assert env["REDIS_URL"] == "redis://roadvision-redis:6379/0"
    assert env["ROADVISION_MODEL_NAME"] == "roadwork"


def test_optional_monitoring_and_policies_default_off(rendered):
    kinds = {o["kind"] for o in rendered["default"]}
    assert kinds == {"InferenceService", "ServiceAccount", "Deployment", "Service"}
    prod_kinds = {o["kind"] for o in rendered["prod"]}
    assert {"ServiceMonitor", "PrometheusRule", "NetworkPolicy", "ConfigMap"} <= prod_kinds


def _predictor_env(objects) -> dict[str, str | None]:
    container = find(objects, "InferenceService")["spec"]["predictor"]["containers"][0]
    return {e["name"]: e.get("value") for e in container["env"]}


def test_storage_uri_replaces_the_registry_uri():
    objects = render_chart({"model": {"storageUri": "s3://models/roadwork/3"}})
    env = _predictor_env(objects)
    assert env["STORAGE_URI"] == "s3://models/roadwork/3"
    assert env["ROADVISION_MODEL_URI"] == "/mnt/models"


# What `roadvision model uri roadwork@champion --artifacts-destination s3://mlflow` prints for a
# version logged through the tracking server's artifact proxy: the MLflow model folder.
ALIAS_S3_URI = "s3://mlflow/1/models/m-0123456789abcdef/artifacts"


@pytest.mark.parametrize("values, expected", [
    # the predictor resolves the alias itself (MLflow client, artifact proxy or S3)
    ({}, {"ROADVISION_MODEL_URI": "models:/roadwork@champion",
          "MLFLOW_TRACKING_URI": "http://mlflow.mlflow.svc.cluster.local:5000"}),
    # KServe's storage initializer downloads the alias's s3:// folder into /mnt/models
    ({"model": {"storageUri": ALIAS_S3_URI}},
     {"STORAGE_URI": ALIAS_S3_URI, "ROADVISION_MODEL_URI": "/mnt/models"}),
])
def test_a_registry_alias_deploys_either_way(values, expected):
    objects = render_chart(values)
    for obj in objects:
        validate_object(obj)
    env = _predictor_env(objects)
    assert {k: env.get(k) for k in expected} == expected
    assert ("STORAGE_URI" in env) == ("STORAGE_URI" in expected)
    account = find(objects, "ServiceAccount")
    assert account["secrets"] == [{"name": "roadvision-s3"}]  # the storage initializer's keys


def test_s3_endpoint_annotations_are_on_the_secret_not_the_service_account():
    """KServe's credential builder reads serving.kserve.io/s3-* from the Secrets a
    ServiceAccount lists; on the ServiceAccount they would be ignored and the storage
    initializer would go to AWS instead of the in-cluster object store."""
    default = render_chart(None)
    account = find(default, "ServiceAccount")
    assert not [k for k in account["metadata"].get("annotations", {})
                if k.startswith("serving.kserve.io/s3-")]
    assert not [o for o in default if o["kind"] == "Secret"]  # an existing Secret by default

    objects = render_chart({"s3": {"createSecret": True, "accessKeyId": "AKIA-test",
                                   "secretAccessKey": "s3cr3t"}})
    secret = find(objects, "Secret", "roadvision-s3")
    validate_object(secret)
    assert secret["metadata"]["annotations"] == {
        "serving.kserve.io/s3-endpoint": "minio.minio.svc.cluster.local:9000",
        "serving.kserve.io/s3-usehttps": "0", "serving.kserve.io/s3-region": "us-east-1"}
    assert secret["stringData"] == {"AWS_ACCESS_KEY_ID": "AKIA-test",
                                    "AWS_SECRET_ACCESS_KEY": "s3cr3t"}
    assert find(objects, "ServiceAccount")["secrets"] == [{"name": "roadvision-s3"}]


def test_without_a_secret_the_s3_settings_stay_on_the_service_account_for_irsa():
    objects = render_chart({"s3": {"secretName": ""}, "serviceAccount": {"annotations": {
        "eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/rv"}}})
    account = find(objects, "ServiceAccount")
    assert "secrets" not in account
    assert account["metadata"]["annotations"]["serving.kserve.io/s3-endpoint"] == (
        "minio.minio.svc.cluster.local:9000")
    assert account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]


@pytest.mark.parametrize("name", list(VALUE_SETS))
def test_roadvision_home_is_on_an_emptydir_under_a_read_only_root(rendered, name):
    """models:/ downloads land in ROADVISION_HOME; with it unset they went to the working
    directory, on the read-only root (OSError: [Errno 30] Read-only file system)."""
    (pod, container), = containers(find(rendered[name], "InferenceService"))
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    env = {e["name"]: e.get("value") for e in container["env"]}
    home = env["ROADVISION_HOME"]
    assert any(home == p or home.startswith(p.rstrip("/") + "/")
               for p in writable_paths(pod, container)), home
    for var in ("HOME", "XDG_CACHE_HOME"):
        assert any(env[var].startswith(p) for p in writable_paths(pod, container))


def test_the_server_binds_every_address_in_the_pod(rendered):
    """The server binds 127.0.0.1 by default; kubelet probes and the Service use the pod IP."""
    container = find(rendered["default"], "InferenceService")["spec"]["predictor"][
        "containers"][0]
    assert "--host=0.0.0.0" in container["args"]
    from roadvision.serving.__main__ import build_parser

    args = build_parser().parse_args(container["args"])
    assert args.host == "0.0.0.0" and args.http_port == 8080


def test_external_redis_replaces_the_in_cluster_one():
    objects = render_chart({"redis": {"enabled": False, "externalUrl": "rediss://cache:6380/1"},
                            "networkPolicy": {"enabled": True}})
    assert not [o for o in objects if o["kind"] == "Deployment"]
    assert [o["metadata"]["name"] for o in objects if o["kind"] == "NetworkPolicy"] == [
        "roadvision-predictor"]
    env = {e["name"]: e.get("value") for e in
           find(objects, "InferenceService")["spec"]["predictor"]["containers"][0]["env"]}
    assert env["REDIS_URL"] == "rediss://cache:6380/1"


def test_network_policies_let_only_the_predictor_reach_redis(rendered):
    objects = rendered["prod"]
    redis_np = find(objects, "NetworkPolicy", "roadvision-redis")
    predictor_labels = find(objects, "InferenceService")["spec"]["predictor"]["labels"]
    (rule,) = redis_np["spec"]["ingress"]
    assert rule["from"] == [{"podSelector": {"matchLabels": predictor_labels}}]
    assert redis_np["spec"]["egress"] == []
    redis_pods = find(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert redis_np["spec"]["podSelector"]["matchLabels"].items() <= redis_pods.items()
    predictor_np = find(objects, "NetworkPolicy", "roadvision-predictor")
    assert predictor_np["spec"]["podSelector"]["matchLabels"] == predictor_labels
    assert {"podSelector": {"matchLabels": redis_pods}} in predictor_np["spec"]["egress"][0]["to"]


def test_metrics_service_selects_the_predictor_pods_and_the_monitor_selects_it(rendered):
    objects = rendered["prod"]
    service = find(objects, "Service", "roadvision-metrics")
    predictor_labels = find(objects, "InferenceService")["spec"]["predictor"]["labels"]
    assert service["spec"]["selector"].items() <= predictor_labels.items()
    monitor = find(objects, "ServiceMonitor")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= (
        service["metadata"]["labels"].items())
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"]
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def test_dashboard_configmap_carries_the_chart_dashboard(rendered):
    cm = find(rendered["prod"], "ConfigMap")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    shipped = (CHART / "dashboards" / "roadvision.json").read_text()
    assert json.loads(cm["data"]["roadvision.json"]) == json.loads(shipped)
    assert shipped == (MANIFESTS / "base" / "dashboards" / "roadvision.json").read_text(), (
        "manifests/base/dashboards/roadvision.json must be a copy of the chart's dashboard")


def test_notes_tell_how_to_check_and_roll_out():
    notes = render_notes(values_file("prod"))
    assert "kubectl -n serving get inferenceservice roadvision" in notes
    assert "rollout restart deployment/roadvision-predictor" in notes
    assert "2-10 replicas" in notes and "nvidia.com/gpu" in notes


def test_every_roadvision_env_var_is_one_the_server_reads(rendered):
    """A misspelt variable would be ignored silently by the server: catch it here."""
    from roadvision.serving.config import ENV_VARS

    known = set(ENV_VARS.values()) | {"ROADVISION_MODEL_URI", "ROADVISION_MODEL_NAME",
                                      "ROADVISION_HOME"}  # read by roadvision.registry
    for name in VALUE_SETS:
        container = find(rendered[name], "InferenceService")["spec"]["predictor"]["containers"][0]
        ours = {e["name"] for e in container["env"]
                if e["name"].startswith("ROADVISION_") or e["name"] == "REDIS_URL"}
        assert ours - known == set()
        assert {"ROADVISION_MODEL_URI", "REDIS_URL", "ROADVISION_MAX_BATCH_SIZE"} <= ours


def test_chart_readme_documents_every_value():
    readme = (CHART / "README.md").read_text()
    keys = []

    def walk(node, path):
        for key, value in node.value:
            if isinstance(value, yaml.MappingNode) and not value.flow_style:
                walk(value, [*path, key.value])
            else:
                keys.append(".".join([*path, key.value]))

    walk(yaml.compose((CHART / "values.yaml").read_text()), [])
    assert "predictor.gpu.count" in keys and "redis.maxMemory" in keys
    assert [k for k in keys if f"| `{k}` |" not in readme] == []


# -- canary (issue 15) ------------------------------------------------------------------------
def test_no_canary_by_default(rendered):
    for name in VALUE_SETS:
        predictor = find(rendered[name], "InferenceService")["spec"]["predictor"]
        assert "canaryTrafficPercent" not in predictor
        assert not [k for k in _predictor_env(rendered[name]) if "CANARY" in k]


def test_knative_canary_sets_canary_traffic_percent():
    objects = render_chart({"canary": {"percent": 10},
                            "predictor": {"deploymentMode": "Knative"}})
    for obj in objects:
        validate_object(obj)
    predictor = find(objects, "InferenceService")["spec"]["predictor"]
    assert predictor["canaryTrafficPercent"] == 10
    assert "ROADVISION_CANARY_PERCENT" not in _predictor_env(objects)  # KServe splits, not us


def test_standard_canary_has_the_predictor_split_or_shadow():
    objects = render_chart({"canary": {"percent": 20}})
    env = _predictor_env(objects)
    assert env["ROADVISION_CANARY_PERCENT"] == "20"
    assert env["ROADVISION_CANARY_SHADOW"] == "false"
    assert "canaryTrafficPercent" not in find(objects, "InferenceService")["spec"]["predictor"]
    shadow = _predictor_env(render_chart({"canary": {"shadow": True,
                                                     "challengerUri": "models:/rw/7"}}))
    assert shadow["ROADVISION_CANARY_SHADOW"] == "true"
    assert shadow["ROADVISION_CHALLENGER_URI"] == "models:/rw/7"
    assert "ROADVISION_CANARY_PERCENT" not in shadow  # every request mirrored


@pytest.mark.parametrize("values, message", [
    ({"canary": {"shadow": True}, "predictor": {"deploymentMode": "Knative"}},
     "canary.shadow needs predictor.deploymentMode Standard"),
    ({"canary": {"percent": 5}, "model": {"storageUri": "s3://models/rw/3"}},
     "canary.challengerUri is required with model.storageUri"),
    ({"canary": {"percent": 150}}, "maximum"),
])
def test_canary_values_that_cannot_work_fail_the_render(values, message):
    with pytest.raises(Exception, match=message):
        render_chart(values)
