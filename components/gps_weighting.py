"""Step 4, gps_weighting: sample weights that favour the target deployment regions.

The targets are a pipeline parameter, never the test set's coordinates (k-means on test GPS
would leak the test distribution into training). No targets = uniform weights.
"""

# No `from __future__ import annotations`: KFP reads the component signature's real types.
from pathlib import Path
from typing import Any

from kfp.dsl import Artifact, Dataset, Input, Output

from roadvision.components._base import component

__all__ = ["run_gps_weighting", "gps_weighting"]


def run_gps_weighting(data_dir: str | Path, out_dir: str | Path, *, target_regions: str = "",
                      pipeline_run_id: str | None = None, experiment: str = "roadvision",
                      tracking_uri: str = "") -> dict[str, Any]:
    """Weight ``data_dir``'s rows into ``out_dir``; returns weight statistics."""
    import mlflow

    from roadvision.components._base import step_run
    from roadvision.data.contract import read_manifest
    from roadvision.data.weights import gps_weights, parse_target_regions

    targets = parse_target_regions(target_regions)
    with step_run("gps_weighting", pipeline_run_id, experiment=experiment,
                  tracking_uri=tracking_uri, params={"target_regions": targets}):
        if targets:
            gps_weights(data_dir, out_dir, targets=targets)
        else:
            _uniform_weights(data_dir, out_dir)
        weights = read_manifest(out_dir)["weight"].astype("float64")
        stats = {"weight_mean": float(weights.mean()), "weight_min": float(weights.min()),
                 "weight_max": float(weights.max()), "targets": len(targets)}
        mlflow.log_metrics(stats)
    return stats


def _uniform_weights(data_dir: str | Path, out_dir: str | Path) -> None:
    """No target regions given: every row weighs 1 (the data set as it is)."""
    from roadvision.data.contract import read_info, read_manifest, write_dataset
    from roadvision.data.fileops import carry_files

    df = read_manifest(data_dir)
    df["weight"] = 1.0
    carry_files(data_dir, out_dir, df)
    write_dataset(out_dir, df, read_info(data_dir))


@component
def gps_weighting(dataset: Input[Dataset], weighted_dataset: Output[Dataset],
                  result: Output[Artifact], target_regions: str, experiment: str,
                  mlflow_tracking_uri: str):
    """Per-sample weights towards the target deployment regions (uniform without targets)."""
    from roadvision.components._base import set_metadata, step_result
    from roadvision.components.gps_weighting import run_gps_weighting

    outputs = {"weighted_dataset": weighted_dataset}
    with step_result(result, "gps_weighting", outputs=outputs) as out:
        out.update(run_gps_weighting(dataset.path, weighted_dataset.path,
                                     target_regions=target_regions, experiment=experiment,
                                     tracking_uri=mlflow_tracking_uri))
    set_metadata(weighted_dataset, out)
