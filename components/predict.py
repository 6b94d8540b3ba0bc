"""Batch prediction: a model over a folder (a prefix) of images and/or GeoTIFF orthophotos.

Not a step of the training DAG: a pipeline (or a scheduled run) uses it to predict a whole
prefix with a registered model. The plain function is ``roadvision.mapping.batch``'s, the
same one ``roadvision predict`` runs: images give ``predictions.parquet``/``.csv``; GeoTIFFs
(lanes) give GeoJSON, GeoPackage and a class GeoTIFF each. The result JSON counts what was
predicted and names the GSD the model ran at (and whether it was assumed).
"""

# No `from __future__ import annotations`: KFP reads the component signature's real types.
from pathlib import Path
from typing import Any

from kfp.dsl import Artifact, Dataset, Input, Model, Output

from roadvision.components._base import component

__all__ = ["run_predict", "predict"]


def run_predict(bundle_dir: str | Path, input_dir: str | Path, out_dir: str | Path, *,
                gsd: float = 0.0, tta: str = "none", block: int = 1024) -> dict[str, Any]:
    """Predict everything under ``input_dir`` into ``out_dir``; returns the summary.

    ``gsd`` 0 runs at the bundle's training GSD. ``out_dir`` is written aside and swapped in;
    a retry with the same inputs replaces its own earlier output, anything else is refused.
    """
    from roadvision.data.output import OutputFolder
    from roadvision.mapping import MappingConfig
    from roadvision.mapping.batch import BatchConfig, load_predictor, predict_files

    predictor = load_predictor(bundle_dir, gsd=gsd or None)
    cfg = BatchConfig(MappingConfig(gsd=predictor.gsd, block=block, tta=tta),
                      gsd_assumed=predictor.gsd_assumed, tta=tta)
    inputs = {"input": str(input_dir), "model": predictor.provenance, "gsd": predictor.gsd,
              "tta": tta, "block": block}
    with OutputFolder(out_dir, command="predict", inputs=inputs) as tmp:
        return predict_files(predictor.model, [Path(input_dir)], tmp, cfg,
                             predictor.provenance, exclude=out_dir)


@component
def predict(model: Input[Model], images: Input[Dataset], predictions: Output[Dataset],
            result: Output[Artifact], tta: str = "none", gsd: float = 0.0) -> int:
    """Batch prediction over a folder of images / GeoTIFFs; returns the number of outputs."""
    from roadvision.components._base import step_result
    from roadvision.components.predict import run_predict

    with step_result(result, "predict", outputs={"predictions": predictions}) as out:
        summary = run_predict(model.path, images.path, predictions.path, gsd=gsd, tta=tta)
        count = len(summary["rasters"]) + summary.get("images", {}).get("images", 0)
        out.update({"rasters": summary["rasters"], "images": summary.get("images"),
                    "gsd_m": summary["gsd_m"], "gsd_assumed": summary["gsd_assumed"],
                    "outputs": count})
    return count
