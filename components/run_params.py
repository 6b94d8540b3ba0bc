"""The training pipeline's parameters as every step sees them: fields, defaults, validation.

``RunParams`` mirrors the ``@dsl.pipeline`` signature in ``pipelines/training.py`` field by field
(a test checks that they agree), so the CLI can validate a run *before* it is submitted and the
first step (check_params) validates it again on the cluster, where a KFP UI user may have typed
anything. Every error is a ``UserError`` that names the parameter.

It lives with the steps, not with the pipeline, because a step validates it: steps import
only downwards (``roadvision.pipelines`` builds on this module; the run profiles are there).

Data URIs: a local data set folder, an ``s3://`` prefix, or ``synth://TASK?n=..&size=..&seed=..``
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
from roadvision.metrics import LANE_BIAS_OBJECTIVES

__all__ = ["RunParams", "TASKS", "TTA_MODES", "TRAINING_PROFILES"]

TASKS = ("lanes", "roadwork")
TTA_MODES = ("none", "flip", "full")
#: The names of ``roadvision.training.PROFILES`` (a test checks they agree): written out so
#: that validating a run does not import torch.
TRAINING_PROFILES = ("tiny", "bench", "demo", "full")
_MODEL_NAME = re.compile(r"^[A-Za-z0-9][\w.\-]{0,127}$")


@dataclass
class RunParams:
    """One training pipeline run. Defaults = a full GPU run (the KFP UI's defaults)."""

    task: str = "roadwork"
    data_uri: str = "synth://roadwork?n=2000&size=default&seed=0"
    target_regions: str = ""  # "lat,lon;lat,lon": deployment regions for GPS weighting
    holdout_cities: str = ""  # "city_a,city_b": held out whole into the test split
    min_distance_m: float = 100.0  # no train image within this distance of a val/test image
    training_profile: str = "full"  # epochs, batch, lr... (roadvision.training.PROFILES)
    model_preset: str = ""  # "" = the training profile's model preset for the task
    student_preset: str = ""  # model preset of the student; "" = roadwork_student / teachers'
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
    # unlabelled pool for pseudo-labelling (images / data set folder, payload log folder or
    # s3:// prefix, synth://); "" = the branch is off
    pseudo_label_pool: str = ""
    pseudo_label_rounds: int = 2  # rounds, thresholds rising 0.9 -> 0.95
    # unlabelled images the student also learns from (teachers' soft targets only): a folder
    # or synth://; "" = the labelled train split only
    distill_unlabelled: str = ""
    # lanes: what calibration fits the decision biases for (iou, or lines: skeleton F1 at
    # 0.5 m, the vector product's figure); roadwork ignores it
    lane_bias_objective: str = "iou"

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
        from roadvision.data.split import parse_holdout_cities
        from roadvision.data.weights import parse_target_regions

        if self.task not in TASKS:
            raise UserError(f"task: {self.task!r} is not one of {TASKS}")
        _int_range("epochs", self.epochs, 1, 1000)
        _int_range("members", self.members, 1, 16)
        _int_range("batch_size", self.batch_size, 1, 4096)
        _int_range("max_steps_per_epoch", self.max_steps_per_epoch, 0, 10_000_000)
        _int_range("min_slice_size", self.min_slice_size, 0, 10_000_000)
        _int_range("seed", self.seed, 0, 2**31 - 1)
        _int_range("pseudo_label_rounds", self.pseudo_label_rounds, 1, 10)
        if self.training_profile not in TRAINING_PROFILES:
            raise UserError(f"training_profile: {self.training_profile!r} is not one of "
                            f"{TRAINING_PROFILES}")
        if self.tta not in TTA_MODES:
            raise UserError(f"tta: {self.tta!r} is not one of {TTA_MODES}")
        if self.lane_bias_objective not in LANE_BIAS_OBJECTIVES:
            raise UserError(f"lane_bias_objective: {self.lane_bias_objective!r} is not one of "
                            f"{LANE_BIAS_OBJECTIVES}")
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
                raise UserError(f"{name}: {preset!r} is not a {self.task} model preset "
                                f"(names start with '{self.task}_')")
        parse_target_regions(self.target_regions)
        parse_holdout_cities(self.holdout_cities)
        self._check_data_uri(check_data)
        self._check_pool_uri(check_data)
        if check_mlflow:
            from roadvision.registry import check_tracking

            check_tracking(self.mlflow_tracking_uri or None, parameter="mlflow_tracking_uri")
        return self

    def _check_data_uri(self, check_exists: bool) -> None:
        if not self.data_uri.strip():
            raise UserError("data_uri: is empty (a data set folder, s3://bucket/prefix or "
                            "synth://TASK?n=N)")
        self._check_source("data_uri", check_exists)

    def _check_pool_uri(self, check_exists: bool) -> None:
        """The unlabelled pools: empty (off), or a source like ``data_uri`` (the distillation
        pool: a folder or synth:// only)."""
        if self.pseudo_label_pool.strip():
            self._check_source("pseudo_label_pool", check_exists)
        if self.distill_unlabelled.strip():
            self._check_source("distill_unlabelled", check_exists, s3=False)

    def _check_source(self, name: str, check_exists: bool, *, s3: bool = True) -> None:
        """Parameter ``name``: a folder, an s3:// prefix (when ``s3``) or a synth:// URI of this
        run's task."""
        uri = getattr(self, name).strip()
        parsed = urllib.parse.urlparse(uri)
        schemes = "a folder, s3:// or synth://" if s3 else "a folder or synth://"
        if parsed.scheme == "synth":
            from roadvision.data.synth.uri import parse_synth_uri

            try:
                task, _ = parse_synth_uri(uri)
            except UserError as exc:  # it names data_uri: say which parameter it was
                raise UserError(f"{name}: {str(exc).removeprefix('data_uri: ')}") from None
            if task != self.task:
                raise UserError(f"{name}: generates {task!r} data but task is {self.task!r}")
        elif parsed.scheme == "s3" and s3:
            if not parsed.netloc:
                raise UserError(f"{name}: {uri!r} names no bucket")
        elif parsed.scheme in ("", "file"):
            path = Path(parsed.path if parsed.scheme == "file" else uri)
            if check_exists and not path.is_dir():
                raise UserError(f"{name}: {uri} does not exist (or is not a folder)")
        else:
            raise UserError(f"{name}: unsupported scheme {parsed.scheme!r} (use {schemes})")

    def resolved_model_name(self) -> str:
        from roadvision.registry import resolve_model_name

        return resolve_model_name(self.model_name, self.task)


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
