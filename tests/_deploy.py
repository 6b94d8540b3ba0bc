"""Offline deployment checks shared by the tests/test_deploy_*.py and test_prometheus.py files.

No cluster and no CLI binaries are needed:

- the Helm chart is linted and rendered by helm-python-sdk (Helm's Go SDK through ctypes);
- kustomize overlays are built by :func:`kustomize_build`, a small implementation of exactly
  the kustomize features ``manifests/`` uses (resources, namespace, configMapGenerator, JSON 6902
  patches). It raises on any other field, so an overlay cannot silently use a feature it does not
  apply; where ``kubectl`` is installed a test compares it with ``kubectl kustomize``;
- core objects are validated by kubernetes-validate (strict: unknown fields are errors);
- custom resources are validated against JSON schemas derived from sources named in
  :data:`CRD_SOURCES` (see docs/deploy.md "Offline checks").
"""

from __future__ import annotations

import copy
import functools
import json
import re
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml
from referencing import Registry, Resource

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "helm" / "roadvision"
MANIFESTS = ROOT / "manifests"
CRD_DIR = MANIFESTS / "crds"
KUBE_VERSION = "1.32.0"
RELEASE = "roadvision"
NAMESPACE = "serving"

CRD_SOURCES = {
    "InferenceService": "generated from the KServe 0.21 Python SDK models (kserve.models.V1beta1*: "
                        "openapi_types + attribute_map), core types from kubernetes-validate",
    "ServiceMonitor": "manifests/crds/monitoring.coreos.com_servicemonitors.yaml "
                      "(subset of prometheus-operator v0.84.1's CRD)",
    "PrometheusRule": "manifests/crds/monitoring.coreos.com_prometheusrules.yaml "
                      "(prometheus-operator v0.82.2's CRD, verbatim)",
}


# --------------------------------------------------------------------------------------------
# Helm
# --------------------------------------------------------------------------------------------

def values_file(name: str) -> dict[str, Any]:
    """A values file of the chart's ``ci/`` folder, e.g. ``"prod"`` -> ci/prod-values.yaml."""
    return yaml.safe_load((CHART / "ci" / f"{name}-values.yaml").read_text()) or {}


def render_chart(values: dict[str, Any] | None = None, *, chart: Path = CHART,
                 name: str = RELEASE, namespace: str = NAMESPACE) -> list[dict[str, Any]]:
    """Render the chart like ``helm template`` and return its objects (NOTES.txt excluded)."""
    import helm_python

    with helm_python.Chart.load(str(chart)) as loaded:
        rendered = loaded.render(values, name=name, namespace=namespace, is_install=True)
    objects = []
    for path, text in sorted(rendered.items()):
        if path.endswith("NOTES.txt"):
            continue
        objects.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return objects


def render_notes(values: dict[str, Any] | None = None) -> str:
    import helm_python

    with helm_python.Chart.load(str(CHART)) as loaded:
        rendered = loaded.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    return next(text for path, text in rendered.items() if path.endswith("NOTES.txt"))


def undocumented_keys(values_text: str) -> list[str]:
    """Keys of block mappings in a values file without a `# --` comment block right above."""
    lines = values_text.splitlines()
    missing: list[str] = []

    def walk(node: Any, path: list[str]) -> None:
        if not isinstance(node, yaml.MappingNode) or node.flow_style:
            return
        for key, value in node.value:
            block, i = [], key.start_mark.line - 1
            while i >= 0 and lines[i].strip().startswith("#"):
                block.append(lines[i].strip())
                i -= 1
            if not any(c.startswith("# --") for c in block):
                missing.append(".".join([*path, key.value]))
            walk(value, [*path, key.value])

    walk(yaml.compose(values_text), [])
    return missing


def lint_chart(values: dict[str, Any] | None = None, chart: Path = CHART) -> dict[str, Any]:
    import helm_python

    return helm_python.lint(str(chart), values, strict=True, kube_version=f"v{KUBE_VERSION}")


def find(objects: Iterable[dict], kind: str, name: str | None = None) -> dict[str, Any]:
    matches = [o for o in objects if o["kind"] == kind
               and (name is None or o["metadata"]["name"] == name)]
    assert len(matches) == 1, f"expected one {kind} {name or ''}, found {len(matches)}"
    return matches[0]


# --------------------------------------------------------------------------------------------
# A minimal kustomize
# --------------------------------------------------------------------------------------------

class KustomizeError(Exception):
    pass


_SUPPORTED_KEYS = {"apiVersion", "kind", "resources", "namespace", "patches", "configMapGenerator"}
# Kinds whose objects live outside namespaces: the namespace transformer leaves them alone.
_CLUSTER_SCOPED = {"Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding"}


def kustomize_build(directory: Path) -> list[dict[str, Any]]:
    """Build a kustomization directory (the subset of kustomize v5 that manifests/ uses)."""
    directory = Path(directory)
    spec = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unknown = set(spec) - _SUPPORTED_KEYS
    if unknown:
        raise KustomizeError(f"{directory}: unsupported kustomization fields {sorted(unknown)}")
    objects: list[dict[str, Any]] = []
    for entry in spec.get("resources", []):
        path = (directory / entry).resolve()
        if path.is_dir():
            objects.extend(kustomize_build(path))
        else:
            objects.extend(doc for doc in yaml.safe_load_all(path.read_text()) if doc)
    for gen in spec.get("configMapGenerator", []):
        objects.append(_config_map(directory, gen))
    for patch in spec.get("patches", []):
        _apply_patch(directory, objects, patch)
    if "namespace" in spec:
        for obj in objects:
            if obj["kind"] not in _CLUSTER_SCOPED:
                obj["metadata"]["namespace"] = spec["namespace"]
    return objects


def _config_map(directory: Path, gen: dict[str, Any]) -> dict[str, Any]:
    unknown = set(gen) - {"name", "files", "options"}
    options = gen.get("options", {})
    unknown |= set(options) - {"labels", "disableNameSuffixHash"}
    if unknown:
        raise KustomizeError(f"configMapGenerator: unsupported fields {sorted(unknown)}")
    if not options.get("disableNameSuffixHash"):
        raise KustomizeError("configMapGenerator: only disableNameSuffixHash: true is supported")
    data = {}
    for entry in gen.get("files", []):
        key, _, src = entry.partition("=") if "=" in entry else (Path(entry).name, "", entry)
        data[key] = (directory / src).read_text()
    meta: dict[str, Any] = {"name": gen["name"]}
    if options.get("labels"):
        meta["labels"] = dict(options["labels"])
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data}


def _matches(obj: dict[str, Any], target: dict[str, Any]) -> bool:
    group, _, version = obj["apiVersion"].rpartition("/")
    checks = {"group": group, "version": version, "kind": obj["kind"],
              "name": obj["metadata"]["name"]}
    unknown = set(target) - set(checks)
    if unknown:
        raise KustomizeError(f"patch target: unsupported selectors {sorted(unknown)}")
    return all(checks[k] == v for k, v in target.items())


def _apply_patch(directory: Path, objects: list[dict], patch: dict[str, Any]) -> None:
    if set(patch) - {"target", "patch", "path"} or "target" not in patch:
        raise KustomizeError(f"only JSON 6902 patches with a target are supported: {patch}")
    text = patch["patch"] if "patch" in patch else (directory / patch["path"]).read_text()
    ops = yaml.safe_load(text)
    if not isinstance(ops, list):
        raise KustomizeError("strategic-merge patches are not supported; use JSON 6902 ops")
    targets = [o for o in objects if _matches(o, patch["target"])]
    if not targets:
        raise KustomizeError(f"patch target {patch['target']} matches no resource")
    for obj in targets:
        json6902(obj, ops)


def _pointer(path: str) -> list[str]:
    if not path.startswith("/"):
        raise KustomizeError(f"JSON pointer must start with '/': {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def json6902(doc: dict[str, Any], ops: list[dict[str, Any]]) -> None:
    """Apply RFC 6902 ``add``/``replace``/``remove``/``test`` operations in place."""
    for op in ops:
        *parents, last = _pointer(op["path"])
        node: Any = doc
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        kind = op["op"]
        if isinstance(node, list):
            index = len(node) if last == "-" else int(last)
            if kind == "add":
                node.insert(index, copy.deepcopy(op["value"]))
            elif kind == "replace":
                node[index] = copy.deepcopy(op["value"])
            elif kind == "remove":
                del node[index]
            elif kind == "test":
                if node[index] != op["value"]:
                    raise KustomizeError(f"test failed at {op['path']}: {node[index]!r}")
            else:
                raise KustomizeError(f"unsupported op {kind!r}")
            continue
        if kind == "add":
            node[last] = copy.deepcopy(op["value"])
        elif kind == "replace":
            if last not in node:
                raise KustomizeError(f"replace: {op['path']} does not exist")
            node[last] = copy.deepcopy(op["value"])
        elif kind == "remove":
            del node[last]
        elif kind == "test":
            if node.get(last) != op["value"]:
                raise KustomizeError(f"test failed at {op['path']}: {node.get(last)!r}")
        else:
            raise KustomizeError(f"unsupported op {kind!r}")


def kubectl_kustomize(directory: Path) -> list[dict[str, Any]] | None:
    """``kubectl kustomize`` output, or None when kubectl is not installed."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        return None
    out = subprocess.run([kubectl, "kustomize", str(directory)], check=True,
                         capture_output=True, text=True, timeout=60).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


# --------------------------------------------------------------------------------------------
# Schema validation
# --------------------------------------------------------------------------------------------

def validate_core(obj: dict[str, Any]) -> None:
    """Strict Kubernetes schema validation; raises kubernetes_validate.ValidationError."""
    kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)


@functools.cache
def _k8s_definitions() -> dict[str, Any]:
    import importlib.resources

    # The newest bundled API: KServe 0.21's SDK references core types newer than KUBE_VERSION
    # (e.g. ContainerRestartRule); a field the cluster lacks is still caught by validate_core
    # on the Deployment KServe would create, not here.
    version = kubernetes_validate.latest_version()
    ref = importlib.resources.files("kubernetes_validate").joinpath(
        f"kubernetes-json-schema/v{version}-local-strict/_definitions.json")
    return json.loads(ref.read_text())


_K8S_ID = "https://kubernetes.io/api/_definitions.json"


def _k8s_ref(name: str) -> dict[str, str]:
    defs = _k8s_definitions()["$defs"]
    if name not in defs:
        raise KeyError(f"no Kubernetes definition {name}")
    return {"$ref": f"{_K8S_ID}#/$defs/{name}"}


def _validator(schema: dict[str, Any]) -> jsonschema.Draft202012Validator:
    registry = Resource.from_contents(_k8s_definitions()) @ Registry()
    return jsonschema.Draft202012Validator(schema, registry=registry)


# -- CRDs of the Prometheus operator ---------------------------------------------------------

def _strict(schema: dict[str, Any]) -> dict[str, Any]:
    """A CRD's structural schema as the API server applies it with strict field validation:
    unknown fields are errors (additionalProperties false) unless the schema preserves them."""
    schema = dict(schema)
    if "properties" in schema:
        schema["properties"] = {k: _strict(v) for k, v in schema["properties"].items()}
        if not schema.get("x-kubernetes-preserve-unknown-fields"):
            schema.setdefault("additionalProperties", False)
    if isinstance(schema.get("items"), dict):
        schema["items"] = _strict(schema["items"])
    if isinstance(schema.get("additionalProperties"), dict):
        schema["additionalProperties"] = _strict(schema["additionalProperties"])
    for key in ("anyOf", "allOf", "oneOf"):
        if key in schema:
            schema[key] = [_strict(s) for s in schema[key]]
    return schema


@functools.cache
def crd_schema(kind: str) -> dict[str, Any]:
    """The strict JSON schema of a vendored CRD (served version v1)."""
    for path in sorted(CRD_DIR.glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        if crd["spec"]["names"]["kind"] == kind:
            version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
            schema = _strict(version["schema"]["openAPIV3Schema"])
            schema["properties"]["metadata"] = _k8s_ref(
                "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta")
            group = crd["spec"]["group"]
            schema["properties"]["apiVersion"] = {"const": f"{group}/v1"}
            schema["properties"]["kind"] = {"const": kind}
            schema["required"] = sorted({"apiVersion", "kind", "metadata",
                                         *schema.get("required", [])})
            return schema
    raise KeyError(f"no vendored CRD for {kind} in {CRD_DIR}")


# -- InferenceService from the KServe SDK models -----------------------------------------------

# Facts the SDK's type strings do not carry, each from the SDK's own docstrings.
_KSERVE_ENUMS = {
    # V1beta1PredictorSpec.scale_metric: "possible values are concurrency, rps, cpu, memory".
    "scaleMetric": ["cpu", "memory", "concurrency", "rps"],
}
_K8S_TYPES = {
    "ResourceQuantity": "io.k8s.apimachinery.pkg.api.resource.Quantity",
    "V1beta1MetricQuantity": "io.k8s.apimachinery.pkg.api.resource.Quantity",
    "V1ObjectMeta": "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
    "V1Time": "io.k8s.apimachinery.pkg.apis.meta.v1.Time",
    "K8sIoApiAppsV1DeploymentStrategy": "io.k8s.api.apps.v1.DeploymentStrategy",
    "K8sIoApiAutoscalingV2HorizontalPodAutoscalerBehavior":
        "io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerBehavior",
}
_PRIMITIVES = {"str": {"type": "string"}, "int": {"type": "integer"}, "bool": {"type": "boolean"},
               "float": {"type": "number"}, "object": {}, "datetime": {"type": "string"}}


def sdk_model_schema(models_module: Any, root: str,
                     skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """A strict JSON schema for an OpenAPI-generated SDK model class (kserve, kfp_server_api).

    Those classes are generated from the project's OpenAPI spec (the same Go types the CRD is
    generated from): ``openapi_types`` gives each attribute's type, ``attribute_map`` its JSON
    name. Nested SDK classes become ``$defs``; ``V1*`` Kubernetes types resolve to the strict
    Kubernetes schemas bundled with kubernetes-validate. ``skip`` names attributes left out
    (e.g. read-only ``status``).
    """
    defs: dict[str, Any] = {}

    def type_schema(t: str) -> dict[str, Any]:
        t = t.strip()
        if t in _PRIMITIVES:
            return dict(_PRIMITIVES[t])
        if m := re.fullmatch(r"list\[(.+)\]", t):
            return {"type": "array", "items": type_schema(m.group(1))}
        if m := re.fullmatch(r"dict\(str, (.+)\)", t):
            return {"type": "object", "additionalProperties": type_schema(m.group(1))}
        if t in _K8S_TYPES:
            return _k8s_ref(_K8S_TYPES[t])
        cls = getattr(models_module, t, None)
        if cls is not None and hasattr(cls, "openapi_types"):
            if not cls.openapi_types and getattr(cls, "allowable_values", None):
                return {"enum": list(cls.allowable_values)}
            if t not in defs:
                defs[t] = {}  # placeholder against recursion
                defs[t] = class_schema(cls)
            return {"$ref": f"#/$defs/{t}"}
        if m := re.fullmatch(r"V1([A-Z]\w+)", t):
            for group in ("io.k8s.api.core.v1.", "io.k8s.apimachinery.pkg.apis.meta.v1."):
                if group + m.group(1) in _k8s_definitions()["$defs"]:
                    return _k8s_ref(group + m.group(1))
        raise KeyError(f"cannot resolve SDK type {t!r}")

    def class_schema(cls: Any) -> dict[str, Any]:
        props = {}
        for attr, t in cls.openapi_types.items():
            if attr in skip:
                continue
            json_name = cls.attribute_map[attr]
            props[json_name] = type_schema(t)
            if json_name in _KSERVE_ENUMS and props[json_name] == {"type": "string"}:
                props[json_name] = {"enum": _KSERVE_ENUMS[json_name]}
        return {"type": "object", "properties": props, "additionalProperties": False}

    schema = class_schema(getattr(models_module, root))
    schema["$defs"] = defs
    return schema


@functools.cache
def inference_service_schema() -> dict[str, Any]:
    import kserve.models

    schema = sdk_model_schema(kserve.models, "V1beta1InferenceService", skip=("status",))
    schema["properties"]["apiVersion"] = {"const": "serving.kserve.io/v1beta1"}
    schema["properties"]["kind"] = {"const": "InferenceService"}
    schema["required"] = ["apiVersion", "kind", "metadata", "spec"]
    spec = schema["$defs"]["V1beta1InferenceServiceSpec"]
    spec["required"] = ["predictor"]  # the CRD's only required spec field
    return schema


def validate_custom(obj: dict[str, Any]) -> None:
    """Validate a custom resource; raises jsonschema.ValidationError."""
    kind = obj.get("kind")
    schema = inference_service_schema() if kind == "InferenceService" else crd_schema(kind)
    _validator(schema).validate(obj)


CUSTOM_GROUPS = ("serving.kserve.io/", "monitoring.coreos.com/")


def validate_object(obj: dict[str, Any]) -> None:
    """Core kinds through kubernetes-validate, our custom resources through their CRD schema."""
    if obj["apiVersion"].startswith(CUSTOM_GROUPS):
        validate_custom(obj)
    else:
        validate_core(obj)


# --------------------------------------------------------------------------------------------
# Containers
# --------------------------------------------------------------------------------------------

def pod_specs(obj: dict[str, Any]) -> list[dict[str, Any]]:
    """Pod-level specs of a workload (Deployment template, InferenceService components)."""
    if obj["kind"] == "Deployment":
        return [obj["spec"]["template"]["spec"]]
    if obj["kind"] == "InferenceService":
        return [obj["spec"][c] for c in ("predictor", "transformer", "explainer")
                if c in obj["spec"]]
    return []


def containers(obj: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(pod spec, container) pairs of a workload, init containers included."""
    return [(pod, c) for pod in pod_specs(obj)
            for c in pod.get("initContainers", []) + pod.get("containers", [])]


def writable_paths(pod: dict[str, Any], container: dict[str, Any]) -> list[str]:
    """Mount paths of the container's emptyDir volumes (all a read-only root leaves)."""
    empty = {v["name"] for v in pod.get("volumes", []) if "emptyDir" in v}
    return [m["mountPath"] for m in container.get("volumeMounts", []) if m["name"] in empty]


# --------------------------------------------------------------------------------------------
# PromQL and /metrics
# --------------------------------------------------------------------------------------------

_PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and",
                 "or", "unless", "offset", "inf", "nan", "le"}


def promql_metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression reads (functions, labels and keywords removed)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)          # string literals
    text = re.sub(r"\{[^}]*\}", "", text)                     # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)                    # range selectors
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\$\{?\w+\}?", "", text)                   # Grafana variables
    names = set()
    for m in re.finditer(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\()?", text):
        word, call = m.group(1), m.group(2)
        if call or word.lower() in _PROMQL_WORDS:
            continue
        names.add(word)
    return names


def dashboard_exprs(dashboard: dict[str, Any]) -> list[str]:
    exprs = []
    for panel in dashboard["panels"]:
        exprs.extend(t["expr"] for t in panel.get("targets", []) if t.get("expr"))
    for var in dashboard.get("templating", {}).get("list", []):
        query = var.get("query")
        if isinstance(query, dict) and "label_values(" in query.get("query", ""):
            exprs.append(re.sub(r"label_values\((\w+).*", r"\1", query["query"]))
    return exprs


def alert_exprs(rule: dict[str, Any]) -> dict[str, str]:
    return {r.get("alert") or r["record"]: r["expr"]
            for group in rule["spec"]["groups"] for r in group["rules"]}


_SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count",
                                                             "_created"),
             "summary": ("_sum", "_count", "_created"), "gauge": ("",), "info": ("_info",),
             "untyped": ("",), "unknown": ("",)}


def exposed_series_names(metrics_text: str) -> set[str]:
    """Every series name a Prometheus scrape of this exposition can produce.

    Declared families count even without samples yet (a labelled counter shows its HELP/TYPE
    lines before its first increment), expanded with the suffixes of their type.
    """
    from prometheus_client.parser import text_string_to_metric_families

    names: set[str] = set()
    for family in text_string_to_metric_families(metrics_text):
        names.update(family.name + s for s in _SUFFIXES.get(family.type, ("",)))
        names.update(sample.name for sample in family.samples)
    return names


def prometheus_rule_file(rule: dict[str, Any]) -> str:
    """The Prometheus rule file the operator generates from a PrometheusRule (its spec)."""
    return yaml.safe_dump({"groups": rule["spec"]["groups"]}, sort_keys=False)


# --------------------------------------------------------------------------------------------
# Policy checks: non-root, resource limits, pinned images
# --------------------------------------------------------------------------------------------

def container_problems(obj: dict[str, Any]) -> list[str]:
    """What keeps a workload's containers from running non-root with requests and limits."""
    problems = []
    for pod, c in containers(obj):
        where = f"{obj['kind']}/{obj['metadata']['name']} container {c['name']}"
        pod_sc, sc = pod.get("securityContext", {}), c.get("securityContext", {})
        if not sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")):
            problems.append(f"{where}: runAsNonRoot is not true")
        if sc.get("runAsUser", pod_sc.get("runAsUser")) == 0:
            problems.append(f"{where}: runs as uid 0")
        if sc.get("allowPrivilegeEscalation", True):
            problems.append(f"{where}: allowPrivilegeEscalation is not false")
        resources = c.get("resources", {})
        for kind in ("requests", "limits"):
            for res in ("cpu", "memory"):
                if res not in resources.get(kind, {}):
                    problems.append(f"{where}: no {res} {kind[:-1]}")
        image = c.get("image", "")
        if ":" not in image.rsplit("/", 1)[-1] or image.endswith(":latest"):
            problems.append(f"{where}: image {image!r} is not pinned to a tag")
    return problems


def dockerfile_problems(text: str, *, entrypoint: str | None = None) -> list[str]:
    """Static checks of a Dockerfile: pinned base, non-root final user, expected entrypoint."""
    problems = []
    lines = [ln.strip() for ln in text.splitlines()
             if ln.strip() and not ln.lstrip().startswith("#")]
    args = {}
    for ln in lines:
        if m := re.match(r"ARG\s+(\w+)=(\S+)", ln):
            args[m.group(1)] = m.group(2)
    froms = [ln.split()[1] for ln in lines if ln.upper().startswith("FROM ")]
    if not froms:
        problems.append("no FROM")
    for ref in froms:
        ref = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), "UNSET"), ref)
        tag = ref.rsplit("/", 1)[-1].partition(":")[2]
        if "@sha256:" not in ref and (not tag or tag == "latest" or not re.search(r"\d", tag)):
            problems.append(f"base image {ref!r} is not pinned to a version tag")
    users = [ln.split()[1] for ln in lines if ln.upper().startswith("USER ")]
    if not users:
        problems.append("no USER: the image runs as root")
    elif users[-1].split(":")[0] in ("root", "0"):
        problems.append(f"final USER {users[-1]} is root")
    if entrypoint is not None:
        entries = [ln for ln in lines if ln.upper().startswith("ENTRYPOINT")]
        if not entries or json.loads(entries[-1].split(None, 1)[1]) != entrypoint.split():
            problems.append(f"ENTRYPOINT is not {entrypoint!r}")
    return problems


# --------------------------------------------------------------------------------------------
# A live predictor: `python -m roadvision.serving` on a loopback port, with a real Redis
# --------------------------------------------------------------------------------------------

class LivePredictor:
    """The real serving entry point on a tiny bundle, started once per test session."""

    def __init__(self, workdir: Path, model_name: str = "roadwork") -> None:
        self.workdir = workdir
        self.model_name = model_name
        self.processes: list[subprocess.Popen] = []
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        import os
        import sys
        import time

        import httpx
        from conftest import RedisServer, free_port

        from roadvision.models import create_model
        from roadvision.models.bundle import save_bundle

        self.redis = RedisServer(port=free_port(), workdir=self.workdir)
        self.redis.start()
        bundle = save_bundle(create_model("roadwork_tiny"), self.workdir / "bundle")
        self.port = free_port()
        log = open(self.workdir / "predictor.log", "wb")  # noqa: SIM115 - closed in stop()
        self._log = log
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "ROADVISION_QUIET": "1"}
        self.processes.append(subprocess.Popen(
            [sys.executable, "-m", "roadvision.serving", "--model", str(bundle),
             "--model_name", self.model_name, "--http_port", str(self.port),
             "--redis", self.redis.url],
            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.workdir))
        deadline = time.monotonic() + 120
        while True:
            if self.processes[0].poll() is not None:
                raise RuntimeError("the predictor exited:\n" + self.log_tail())
            try:
                if httpx.get(f"{self.url}/v2/health/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("the predictor did not become ready:\n" + self.log_tail())
            time.sleep(0.25)

    def drive_traffic(self) -> list[int]:
        """A miss, a hit (same image) and a rejected request, so every family has samples."""
        import base64
        import io

        import httpx
        import numpy as np
        from PIL import Image

        buffer = io.BytesIO()
        pixels = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(buffer, "JPEG")
        image = base64.b64encode(buffer.getvalue()).decode()
        url = f"{self.url}/v1/models/{self.model_name}:predict"
        statuses = []
        for body in ({"instances": [{"image_b64": image}]}, {"instances": [{"image_b64": image}]},
                     {"instances": [{"image_b64": "not an image"}]}):
            statuses.append(httpx.post(url, json=body, timeout=60).status_code)
        return statuses

    def metrics(self) -> str:
        import httpx

        response = httpx.get(f"{self.url}/metrics", timeout=10)
        response.raise_for_status()
        return response.text

    def log_tail(self) -> str:
        path = self.workdir / "predictor.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def stop(self) -> None:
        for proc in self.processes:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        self.processes.clear()
        if getattr(self, "redis", None) is not None:
            self.redis.stop()
        if getattr(self, "_log", None) is not None:
            self._log.close()


_LIVE: dict[str, LivePredictor] = {}


def live_predictor_for(request: Any, tmp_path_factory: Any) -> LivePredictor:
    """One predictor for the whole session, shared by every module that asks for it."""
    if "predictor" not in _LIVE:
        predictor = LivePredictor(tmp_path_factory.mktemp("predictor"))
        # `request` belongs to a session-scoped fixture: this runs when the session ends.
        request.addfinalizer(lambda: (_LIVE.pop("predictor", None), predictor.stop()))
        try:
            predictor.start()
        except BaseException:
            predictor.stop()
            raise
        predictor.statuses = predictor.drive_traffic()
        _LIVE["predictor"] = predictor
    return _LIVE["predictor"]
