"""Step 6, evaluate: a bundle on the frozen test split, headline + slices + plots.

Used for every ensemble member and for the distilled student. The full metrics dict (slices
included) is written as JSON into the ``Metrics`` artifact's file, so that register and gate
read exactly what was measured; scalars also go to the artifact's metadata (KFP UI) and to
MLflow. The ``ClassificationMetrics`` artifact holds roadwork's confusion matrix and ROC, and
lanes' class confusion matrix (pixels, rows = truth).
"""

# No `from __future__ import annotations`: KFP reads the component signature's real types.
import tempfile
from pathlib import Path
from typing import Any

from kfp.dsl import Artifact, ClassificationMetrics, Dataset, Input, Metrics, Model, Output

from roadvision.components._base import component

__all__ = ["run_evaluate", "classification_curves", "class_confusion", "log_classification",
           "evaluation_task", "evaluate"]


def classification_curves(predictions: Path, max_points: int = 50) -> dict[str, Any] | None:
    """Confusion matrix + ROC points from a roadwork predictions.parquet (None for lanes)."""
    import numpy as np
    import pandas as pd

    if not predictions.is_file():
        return None
    df = pd.read_parquet(predictions)
    prob_col = next((c for c in ("probability", "prob", "score") if c in df.columns), None)
    if prob_col is None or "label" not in df.columns:
        return None
    y = df["label"].astype(int).to_numpy()
    p = df[prob_col].astype(float).to_numpy()
    pred = (df["pred"].astype(int).to_numpy() if "pred" in df.columns else (p >= 0.5).astype(int))
    matrix = [[int(((y == t) & (pred == q)).sum()) for q in (0, 1)] for t in (0, 1)]
    thresholds = np.unique(np.concatenate([[0.0, 1.0], np.quantile(p, np.linspace(0, 1,
                                                                               max_points))]))
    pos, neg = max(int((y == 1).sum()), 1), max(int((y == 0).sum()), 1)
    roc = [(float(((p >= t) & (y == 0)).sum() / neg), float(((p >= t) & (y == 1)).sum() / pos),
            float(t)) for t in thresholds[::-1]]
    return {"matrix": matrix, "roc": roc}


def class_confusion(measured: dict[str, Any]) -> tuple[list[str], list[list[int]]] | None:
    """A lanes evaluation's class names and pixel confusion matrix (rows = truth), for the KFP
    UI's ``ClassificationMetrics``; None when the metrics hold none (roadwork)."""
    metrics = measured.get("metrics") or {}
    matrix, per_class = metrics.get("confusion_matrix"), metrics.get("per_class_iou")
    if not matrix or not isinstance(per_class, dict) or len(per_class) != len(matrix):
        return None
    return list(per_class), [[int(v) for v in row] for row in matrix]


def log_classification(classification: Any, measured: dict[str, Any],
                       curves: dict[str, Any] | None) -> None:
    """Fill the ``ClassificationMetrics`` artifact: roadwork's confusion matrix and ROC from
    the predictions (``curves``), lanes' class confusion matrix from the metrics."""
    if curves:
        classification.log_confusion_matrix(["no_roadwork", "roadwork"], curves["matrix"])
        fpr, tpr, thr = zip(*curves["roc"], strict=True)
        classification.log_roc_curve(list(fpr), list(tpr), list(thr))
        return
    confusion = class_confusion(measured)
    if confusion is not None:
        classification.log_confusion_matrix(*confusion)


def evaluation_task(name: str, model_metadata: dict[str, Any]) -> str:
    """The evaluation's own name: ``name``, plus the member's number when the model is an
    ensemble member (``train`` writes it into the model's metadata), so that the members'
    evaluations stay apart in MLflow and in the run's results."""
    member = model_metadata.get("member")
    return name if member in (None, "") else f"{name}-{int(float(member))}"


def run_evaluate(bundle_dir: str | Path, data_dir: str | Path, metrics_path: str | Path, *,
                 name: str = "evaluate", split: str = "test", tta: str = "none",
                 pipeline_run_id: str | None = None, experiment: str = "roadvision",
                 tracking_uri: str = "") -> dict[str, Any]:
    """Evaluate; write the metrics JSON to ``metrics_path``; return metrics (+ ``_curves``)."""
    import mlflow

    from roadvision.components._base import log_metrics, step_run, write_json
    from roadvision.evaluation import evaluate as evaluate_bundle

    with step_run(name, pipeline_run_id, experiment=experiment, tracking_uri=tracking_uri,
                  params={"split": split, "tta": tta}), tempfile.TemporaryDirectory() as tmp:
        metrics = evaluate_bundle(bundle_dir, data_dir, split=split, tta=tta, out_dir=tmp)
        write_json(metrics_path, metrics)
        log_metrics(metrics)
        mlflow.log_artifact(str(metrics_path), artifact_path=name)
        curves = classification_curves(Path(tmp) / "predictions.parquet")
    return {**metrics, "_curves": curves}


@component
def evaluate(model: Input[Model], data: Input[Dataset], metrics: Output[Metrics],
             classification: Output[ClassificationMetrics], result: Output[Artifact], name: str,
             tta: str, experiment: str, mlflow_tracking_uri: str) -> float:
    """Evaluate a bundle on the test split; returns the headline metric."""
    from roadvision.components._base import ensure_file, publish_metrics, step_result
    from roadvision.components.evaluate import evaluation_task, log_classification, run_evaluate

    task = evaluation_task(name, dict(model.metadata))
    with step_result(result, "evaluate", task, outputs={"metrics": metrics}) as out:
        measured = run_evaluate(model.path, data.path, metrics.path, name=task, tta=tta,
                                experiment=experiment, tracking_uri=mlflow_tracking_uri)
        curves = measured.pop("_curves")
        headline = measured.get("headline")
        out.update({"split": "test", "tta": tta, "metrics": measured,
                    "headline": float(headline) if isinstance(headline, (int, float))
                    else float("nan")})
    publish_metrics(metrics, {k: v for k, v in measured.items() if k != "slices"})
    log_classification(classification, measured, curves)
    ensure_file(classification)
    return out["headline"]
