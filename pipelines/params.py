"""The training pipeline's parameters: defaults, run presets and validation in one place.

``RunParams`` mirrors the ``@dsl.pipeline`` signature in ``training.py`` field by field (a test
checks that they agree), so the CLI can validate a run *before* it is submitted and the first
step (ingest) validates it again on the cluster, where a KFP UI user may have typed anything.
Every error is a ``UserError`` that names the parameter.

Data URIs: a local data set folder, an ``s3://`` prefix, or ``synth://TASK?n=..&preset=..&seed=..``
(the ingest step generates a procedural data set first: demos and CI need no data on disk).
"""

from __future__ import annotations

import math
import re
import urllib.parse
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from roadvision.errors import UserError

__all__ = ["RunParams", "PRESETS", "from_preset", "parse_synth_uri", "parse_regions",
           "parse_cities", "resolve_model_name", "TTA_MODES", "PROFILES"]

TASKS = ("lanes", "roadwork")
TTA_MODES = ("none", "flip", "full")
PROFILES = ("tiny", "bench", "demo", "full")  # roadvision.training.PROFILES
_MODEL_NAME = re.compile(r"^[A-Za-z0-9][\w.\-]{0,127}$")


@dataclass
class RunParams:
    """One training pipeline run. Defaults = a full GPU run (the KFP UI's defaults)."""

    task: str = "roadwork"
    data_uri: str = "synth://roadwork?n=2000&preset=default&seed=0"
    target_regions: str = ""  # "lat,lon;lat,lon": deployment regions for GPS weighting
    holdout_cities: str = ""  # "city_a,city_b": held out whole into the test split
    min_distance_m: float = 100.0  # no train image within this distance of a val/test image
    profile: str = "full"  # training profile (roadvision.training.PROFILES)
    model_preset: str = ""  # "" = the profile's preset for the task
    student_preset: str = ""  # "" = roadwork_student / the teacher preset for lanes
    epochs: int = 40
    members: int = 3  # ensemble size (teachers for distillation)
    batch_size: int = 32
    max_steps_per_epoch: int = 0  # 0 = full epochs
    tta: str = "none"  # evaluation-time augmentation
    min_delta: float = 0.01  # gate: headline must improve by at least this
    slice_tolerance: float = 0.05  # gate: no slice may drop by more than this
    absolute_floor: float = 0.2  # gate: the first model's headline must reach this
    min_slice_size: int = 20  # gate: smaller slices are reported, not judged
    model_name: str = ""  # "" = the task name ("roadwork"/"lanes"), what serving expects
    experiment: str = "roadvision"  # MLflow experiment
    # "" = MLFLOW_TRACKING_URI or the local SQLite store (refused on a cluster: check_params)
    mlflow_tracking_uri: str = ""
    s3_endpoint_url: str = ""  # MinIO / S3-compatible endpoint for s3:// data URIs
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def replace(self, **changes: Any) -> RunParams:
        unknown = sorted(set(changes) - {f.name for f in fields(self)})
        if unknown:
            raise UserError(f"unknown pipeline parameter(s) {unknown}; valid: "
                            f"{[f.name for f in fields(self)]}")
        return replace(self, **changes)

    def validate(self, *, check_data: bool = True, check_mlflow: bool = True) -> RunParams:
        """Raise ``UserError`` naming the first bad parameter; return self when all are fine.

        ``check_data`` tests that a local data URI exists (skip it when submitting to a cluster,
        whose file system is not this one); ``check_mlflow`` probes the tracking store.
        """
        if self.task not in TASKS:
            raise UserError(f"task: {self.task!r} is not one of {TASKS}")
        _int_range("epochs", self.epochs, 1, 1000)
        _int_range("members", self.members, 1, 16)
        _int_range("batch_size", self.batch_size, 1, 4096)
        _int_range("max_steps_per_epoch", self.max_steps_per_epoch, 0, 10_000_000)
        _int_range("min_slice_size", self.min_slice_size, 0, 10_000_000)
        _int_range("seed", self.seed, 0, 2**31 - 1)
        if self.profile not in PROFILES:
            raise UserError(f"profile: {self.profile!r} is not one of {PROFILES}")
        if self.tta not in TTA_MODES:
            raise UserError(f"tta: {self.tta!r} is not one of {TTA_MODES}")
        _float_range("min_delta", self.min_delta, -1.0, 2.0)
        _float_range("slice_tolerance", self.slice_tolerance, 0.0, 2.0)
        _float_range("absolute_floor", self.absolute_floor, -1.0, 1.0)
        _float_range("min_distance_m", self.min_distance_m, 0.0, 1e7)
        if self.model_name and not _MODEL_NAME.match(self.model_name):
            raise UserError(f"model_name: {self.model_name!r} is not a valid registered model "
                            "name (letters, digits, '.', '_', '-'; at most 128)")
        if not self.experiment.strip():
            raise UserError("experiment: must not be empty")
        for name in ("model_preset", "student_preset"):
            preset = getattr(self, name)
            if preset and not preset.startswith(f"{self.task}_"):
                raise UserError(f"{name}: {preset!r} is not a {self.task} preset "
                                f"(names start with '{self.task}_')")
        parse_regions(self.target_regions)
        parse_cities(self.holdout_cities)
        self._check_data_uri(check_data)
        if check_mlflow:
            from roadvision.registry import check_tracking

            check_tracking(self.mlflow_tracking_uri or None, parameter="mlflow_tracking_uri")
        return self

    def _check_data_uri(self, check_exists: bool) -> None:
        uri = self.data_uri.strip()
        if not uri:
            raise UserError("data_uri: is empty (a data set folder, s3://bucket/prefix or "
                            "synth://TASK?n=N)")
        scheme = urllib.parse.urlparse(uri).scheme
        if scheme == "synth":
            task, _ = parse_synth_uri(uri)
            if task != self.task:
                raise UserError(f"data_uri: generates {task!r} data but task is {self.task!r}")
        elif scheme == "s3":
            if not urllib.parse.urlparse(uri).netloc:
                raise UserError(f"data_uri: {uri!r} names no bucket")
        elif scheme in ("", "file"):
            path = Path(urllib.parse.urlparse(uri).path if scheme == "file" else uri)
            if check_exists and not path.is_dir():
                raise UserError(f"data_uri: {uri} does not exist (or is not a folder)")
        else:
            raise UserError(f"data_uri: unsupported scheme {scheme!r} (use a folder, s3:// or "
                            "synth://)")

    def resolved_model_name(self) -> str:
        return resolve_model_name(self.model_name, self.task)


def resolve_model_name(model_name: str, task: str) -> str:
    return model_name or task


def _int_range(name: str, value: Any, low: int, high: int) -> None:
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # kfp.local hands list-borne ints back as floats
    if isinstance(value, bool) or not isinstance(value, int):
        raise UserError(f"{name}: must be an integer, got {value!r}")
    if not low <= value <= high:
        raise UserError(f"{name}: {value} is out of range [{low}, {high}]")


def _float_range(name: str, value: Any, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise UserError(f"{name}: must be a finite number, got {value!r}")
    if not low <= value <= high:
        raise UserError(f"{name}: {value} is out of range [{low}, {high}]")


def parse_synth_uri(uri: str) -> tuple[str, dict[str, Any]]:
    """``synth://roadwork?n=48&preset=tiny&seed=0`` -> ``("roadwork", {n, preset, seed})``."""
    parsed = urllib.parse.urlparse(uri)
    task = parsed.netloc or parsed.path.strip("/")
    if task not in TASKS:
        raise UserError(f"data_uri: {uri!r}: synth:// needs a task ({' or '.join(TASKS)}), "
                        "e.g. synth://roadwork?n=200")
    query = dict(urllib.parse.parse_qsl(parsed.query))
    unknown = sorted(set(query) - {"n", "preset", "seed", "size", "num_classes"})
    if unknown:
        raise UserError(f"data_uri: unknown synth:// option(s) {unknown} "
                        "(n, preset, seed, size, num_classes)")
    opts: dict[str, Any] = {"n": 200, "preset": "default", "seed": 0}
    for key in ("n", "seed", "num_classes"):
        if key in query:
            try:
                opts[key] = int(query[key])
            except ValueError:
                raise UserError(f"data_uri: synth:// option {key}={query[key]!r} is not an "
                                "integer") from None
    if "preset" in query:
        opts["preset"] = query["preset"]
    if "size" in query:
        match = re.fullmatch(r"(\d+)x(\d+)", query["size"])
        if not match:
            raise UserError(f"data_uri: synth:// size={query['size']!r} is not WxH")
        opts["size"] = (int(match[1]), int(match[2]))
    if not 8 <= opts["n"] <= 1_000_000:
        raise UserError(f"data_uri: synth:// n={opts['n']} is out of range [8, 1000000]")
    return task, opts


def parse_regions(text: str) -> list[tuple[float, float]]:
    """``"lat,lon;lat,lon"`` (or a points file) -> coordinates; ``UserError`` naming
    ``target_regions`` when bad. Empty = no targets (uniform weights)."""
    if not (text or "").strip():
        return []
    from roadvision.data.weights import parse_targets

    try:
        return parse_targets(text)
    except UserError as exc:
        raise UserError(f"target_regions: {exc}") from None


def parse_cities(text: str) -> list[str]:
    cities = [c.strip() for c in (text or "").split(",") if c.strip()]
    if len(set(cities)) != len(cities):
        raise UserError(f"holdout_cities: {text!r} names a city twice")
    return cities


#: Named parameter sets for ``roadvision pipeline run --local --preset NAME``. ``{task}`` is
#: replaced by the task. "tiny" is what tests run (seconds per step), "demo" is ``make demo``
#: (a few minutes on 2 CPU cores), "full" is the GPU default.
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {"data_uri": "synth://{task}?n=40&preset=tiny&seed=0", "profile": "tiny",
             "epochs": 1, "members": 2, "batch_size": 8, "max_steps_per_epoch": 2,
             "absolute_floor": -1.0, "min_slice_size": 1000},
    "demo": {"data_uri": "synth://{task}?n=600&preset=demo&seed=0", "profile": "demo",
             "epochs": 6, "members": 2, "batch_size": 16, "max_steps_per_epoch": 0,
             "absolute_floor": 0.0, "min_slice_size": 20},
    "full": {"data_uri": "synth://{task}?n=2000&preset=default&seed=0"},
}


def from_preset(preset: str, task: str = "roadwork", **overrides: Any) -> RunParams:
    """``RunParams`` for a named preset; ``overrides`` (None values dropped) win."""
    if preset not in PRESETS:
        raise UserError(f"preset: {preset!r} is not one of {list(PRESETS)}")
    values = {k: v.format(task=task) if isinstance(v, str) else v
              for k, v in PRESETS[preset].items()}
    values.update({k: v for k, v in overrides.items() if v is not None})
    return RunParams(task=task).replace(**values)
