"""The stages every pipeline of the project shares (training, sweep), each a run of steps.

    prepare_data:  ingest -> validate -> split -> gps_weighting        (the data every step reads)
    release:       register (@challenger) -> gate -> If(passed): promote (@champion)

A pipeline calls them inside its ``@dsl.pipeline`` function, so their tasks belong to its DAG
exactly as if written there (the compiled YAML is the same); ``pod`` is the pipeline's own
``partial(_tasks.pod, settings)``.
"""

# No `from __future__ import annotations`, as in the pipelines: KFP objects pass through.
from collections.abc import Callable
from typing import Any

from kfp import dsl

from roadvision.components.gate import gate
from roadvision.components.gps_weighting import gps_weighting
from roadvision.components.ingest import ingest
from roadvision.components.promote import promote
from roadvision.components.register import register
from roadvision.components.split import split
from roadvision.components.validate import validate

__all__ = ["prepare_data", "release"]

#: A pipeline's ``partial(_tasks.pod, settings)``: (task, display name, io=, cache=) -> task.
Pod = Callable[..., dsl.PipelineTask]


def prepare_data(pod: Pod, checked_params: dsl.PipelineTask, *, task: Any, data_uri: Any,
                 s3_endpoint_url: Any, holdout_cities: Any, min_distance_m: Any, seed: Any,
                 target_regions: Any, run: dict[str, Any]) -> Any:
    """Ingest (after ``checked_params``), validate, split by city and weight by GPS; returns
    the weighted data set, the input of every later step."""
    raw = pod(ingest(data_uri=data_uri, task=task, s3_endpoint_url=s3_endpoint_url, **run),
              "Ingest data", io=True)
    raw.after(checked_params)
    checked = pod(validate(dataset=raw.outputs["dataset"], **run), "Validate data")
    splits = pod(split(dataset=raw.outputs["dataset"], holdout_cities=holdout_cities,
                       min_distance_m=min_distance_m, seed=seed, **run), "Split by city")
    splits.after(checked)
    weighted = pod(gps_weighting(dataset=splits.outputs["split_dataset"],
                                 target_regions=target_regions, **run), "Weight by GPS")
    return weighted.outputs["weighted_dataset"]


def release(pod: Pod, *, model: Any, metrics: Any, data: Any, report: Any,
            teacher_headlines: Any, task: Any, model_name: Any, tta: Any, min_delta: Any,
            slice_tolerance: Any, absolute_floor: Any, min_slice_size: Any,
            run: dict[str, Any]) -> None:
    """Register ``model`` as the challenger, gate it on ``metrics``, promote it if it passed."""
    registered = pod(register(model=model, metrics=metrics, data=data, report=report,
                              teacher_headlines=teacher_headlines, task=task,
                              model_name=model_name, **run),
                     "Register as challenger", io=True, cache=False)
    decision = pod(gate(metrics=metrics, data=data, version=registered.outputs["Output"],
                        task=task, model_name=model_name, tta=tta, min_delta=min_delta,
                        slice_tolerance=slice_tolerance, absolute_floor=absolute_floor,
                        min_slice_size=min_slice_size, **run),
                   "Gate", io=True, cache=False)
    with dsl.If(decision.outputs["Output"] == True, name="Gate passed"):  # noqa: E712 (KFP condition)
        pod(promote(version=registered.outputs["Output"], task=task, model_name=model_name,
                    **run), "Promote to champion", io=True, cache=False)
