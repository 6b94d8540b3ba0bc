"""Step 3, split: train/val/test with whole cities held out and a minimum GPS distance.

Random splits of geo-correlated images overstate accuracy, so the split keeps every training
image at least ``min_distance_m`` from any val/test image and can hold out whole cities.
"""

# No `from __future__ import annotations`: KFP reads the component signature's real types.
from pathlib import Path
from typing import Any

from kfp.dsl import Artifact, Dataset, Input, Metrics, Output

from roadvision.components._base import component

__all__ = ["run_split", "split"]


def run_split(data_dir: str | Path, out_dir: str | Path, *, holdout_cities: str = "",
              min_distance_m: float = 100.0, seed: int = 0, pipeline_run_id: str | None = None,
              experiment: str = "roadvision", tracking_uri: str = "") -> dict[str, Any]:
    """Split ``data_dir`` into ``out_dir``; returns the number of rows per split."""
    import mlflow

    from roadvision.components._base import step_run
    from roadvision.data.contract import read_manifest
    from roadvision.data.split import parse_holdout_cities, split_dataset

    cities = parse_holdout_cities(holdout_cities)
    with step_run("split", pipeline_run_id, experiment=experiment, tracking_uri=tracking_uri,
                  params={"holdout_cities": cities, "min_distance_m": min_distance_m,
                          "seed": seed}):
        split_dataset(data_dir, out_dir, holdout_cities=tuple(cities),
                      min_distance_m=min_distance_m, seed=seed)
        counts = read_manifest(out_dir)["split"].value_counts().to_dict()
        sizes = {f"rows_{name}": int(counts.get(name, 0)) for name in ("train", "val", "test")}
        mlflow.log_metrics(sizes)
    return sizes


@component
def split(dataset: Input[Dataset], split_dataset: Output[Dataset], stats: Output[Metrics],
          result: Output[Artifact], holdout_cities: str, min_distance_m: float, seed: int,
          experiment: str, mlflow_tracking_uri: str):
    """Geo-aware train/val/test split (holds out cities, keeps a GPS distance)."""
    from roadvision.components._base import ensure_file, set_metadata, step_result
    from roadvision.components.split import run_split

    with step_result(result, "split", outputs={"split_dataset": split_dataset}) as out:
        sizes = run_split(dataset.path, split_dataset.path, holdout_cities=holdout_cities,
                          min_distance_m=min_distance_m, seed=seed, experiment=experiment,
                          tracking_uri=mlflow_tracking_uri)
        out.update(sizes)
    for key, value in sizes.items():
        stats.log_metric(key, value)
    ensure_file(stats)
    set_metadata(split_dataset, sizes)
