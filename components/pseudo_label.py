"""Step 8b, pseudo_label (off by default): the student learns from confident predictions on an
unlabelled pool (GPU step).

The pipeline runs it only when ``pseudo_label_pool`` is set (``dsl.If``); otherwise
``keep_student`` passes the plain student on (``dsl.Else``). Both return their model's URI,
which ``dsl.OneOf`` merges and a ``dsl.importer`` turns back into the one ``Model`` that is
evaluated and registered: kfp.local (2.17) cannot resolve a ``OneOf`` of artifacts, only of
parameters, and the local run must be the cluster's DAG.

The pool is a folder of images, a data-contract folder, a payload log (a folder or ``s3://``
prefix of the predictor's parquet batches, ``roadvision.monitoring.records``) or a
``synth://`` URI. The rounds themselves are ``roadvision.training.pseudo_label``; each round's
model is calibrated on the labelled validation split, as the student was.
"""

# No `from __future__ import annotations`: KFP reads the component signature's real types.
import shutil
import tempfile
from pathlib import Path
from typing import Any

from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

from roadvision.components._base import component

__all__ = ["load_pool", "run_pseudo_label", "pseudo_label", "keep_student"]


def _has_parquet(folder: Path) -> bool:
    return any(p.suffix == ".parquet" for p in folder.rglob("*.parquet"))


def load_pool(uri: str, *, task: str, work_dir: str | Path, endpoint_url: str = "") -> list:
    """The unlabelled pool named by ``uri`` as ``PoolItem``s.

    ``synth://TASK?...``: generated into ``work_dir`` (its labels are kept only to report
    pseudo-label accuracy); ``s3://``: a payload log; a folder: a data set when it holds
    ``manifest.parquet``, a payload log when it holds other parquet files, else its images.
    """
    import urllib.parse

    from roadvision.errors import UserError
    from roadvision.training.pseudo_pool import pool_from_folder, pool_from_frame

    uri = str(uri).strip()
    scheme = urllib.parse.urlparse(uri).scheme
    if scheme == "synth":
        from roadvision.data.synth import generate, parse_synth_uri

        synth_task, options = parse_synth_uri(uri)
        if synth_task != task:
            raise UserError(f"pseudo_label_pool: generates {synth_task!r} data but task is "
                            f"{task!r}")
        folder = Path(work_dir) / "synth-pool"
        generate(synth_task, out=folder, overwrite=True, **options)
        return pool_from_folder(folder)
    path = Path(uri)
    if scheme == "s3" or (path.is_dir() and not (path / "manifest.parquet").is_file()
                          and _has_parquet(path)):
        from roadvision.monitoring.records import read_logged

        logged = read_logged(uri, endpoint_url=endpoint_url or None)
        if "task" in logged.columns:
            logged = logged[logged["task"].isna() | (logged["task"] == task)]
        return pool_from_frame(logged)
    if scheme not in ("", "file"):
        raise UserError(f"pseudo_label_pool: unsupported scheme {scheme!r} (a folder, s3:// "
                        "payload log or synth://)")
    return pool_from_folder(urllib.parse.urlparse(uri).path if scheme == "file" else path)


def run_pseudo_label(student_dir: str | Path, data_dir: str | Path, out_dir: str | Path, *,
                     pool_uri: str, rounds: int, task: str, training_profile: str = "full",
                     epochs: int = 40, batch_size: int = 32, max_steps_per_epoch: int = 0,
                     seed: int = 0, shifted_data: str | Path | None = None,
                     pipeline_run_id: str | None = None, experiment: str = "roadvision",
                     tracking_uri: str = "", s3_endpoint_url: str = "",
                     lane_bias_objective: str = "iou") -> dict[str, Any]:
    """Pseudo-label ``pool_uri`` for ``rounds`` rounds starting from ``student_dir``; the final
    (calibrated) bundle goes to ``out_dir`` (the student itself when no round trained)."""
    import mlflow

    from roadvision.components._base import log_metrics, step_run
    from roadvision.components.train import train_config
    from roadvision.evaluation.calibration import calibrate
    from roadvision.training.pseudo_label import PseudoLabelConfig, pseudo_label_rounds

    cfg = train_config(task=task, training_profile=training_profile, model_preset="",
                       epochs=epochs, batch_size=batch_size,
                       max_steps_per_epoch=max_steps_per_epoch, seed=int(seed) * 1000 + 777,
                       lane_bias_objective=lane_bias_objective)
    config = PseudoLabelConfig(rounds=int(rounds), train=cfg)
    with step_run("pseudo_label", pipeline_run_id, experiment=experiment,
                  tracking_uri=tracking_uri,
                  params={"pool": pool_uri, "rounds": int(rounds),
                          "thresholds": config.thresholds,
                          "pseudo_weight": config.pseudo_weight}):
        with tempfile.TemporaryDirectory() as work:
            pool = load_pool(pool_uri, task=task, work_dir=work, endpoint_url=s3_endpoint_url)
            reports = pseudo_label_rounds(
                student_dir, data_dir, pool, config, Path(work) / "rounds",
                shifted_data=shifted_data,
                after_train=lambda bundle, data: calibrate(
                    bundle, data, split="val", objective=cfg.lane_bias_objective))
            final = Path(reports[-1].bundle) if reports else Path(student_dir)
            shutil.copytree(final, out_dir, dirs_exist_ok=True)
        summary = {"pool_size": len(pool), "thresholds": config.thresholds,
                   "rounds": [r.to_dict() for r in reports],
                   "trained_rounds": sum(r.trained for r in reports),
                   "test_headline_before": reports[0].test_before["headline"],
                   "test_headline_after": reports[-1].test_after["headline"],
                   "note": next((r.note for r in reports if r.note), "")}
        for r in reports:
            log_metrics({"kept": r.kept, "test_gain": r.test_gain,
                         "test_after": r.test_after["headline"]}, prefix=f"round_{r.round}")
        mlflow.log_dict(summary, "pseudo_label.json")
    return summary


@component
def pseudo_label(student: Input[Model], data: Input[Dataset], model: Output[Model],
                 metrics: Output[Metrics], result: Output[Artifact], pool: str, rounds: int,
                 task: str, training_profile: str, epochs: int, batch_size: int,
                 max_steps_per_epoch: int, seed: int, experiment: str,
                 mlflow_tracking_uri: str, s3_endpoint_url: str,
                 lane_bias_objective: str = "iou") -> str:
    """Fine-tune the student on confident pseudo labels of the pool; returns the model's URI."""
    from roadvision.components._base import publish_metrics, set_metadata, step_result
    from roadvision.components.pseudo_label import run_pseudo_label

    with step_result(result, "pseudo_label", outputs={"model": model}) as out:
        out.update(run_pseudo_label(
            student.path, data.path, model.path, pool_uri=pool, rounds=rounds, task=task,
            training_profile=training_profile, epochs=epochs, batch_size=batch_size,
            max_steps_per_epoch=max_steps_per_epoch, seed=seed, experiment=experiment,
            tracking_uri=mlflow_tracking_uri, s3_endpoint_url=s3_endpoint_url,
            lane_bias_objective=lane_bias_objective))
    publish_metrics(metrics, {"test_headline_before": out["test_headline_before"],
                              "test_headline_after": out["test_headline_after"],
                              "trained_rounds": out["trained_rounds"]})
    set_metadata(model, {"framework": "pytorch", "format": "roadvision-bundle",
                         "pseudo_label_rounds": out["trained_rounds"]})
    return model.uri


@component
def keep_student(student: Input[Model], result: Output[Artifact]) -> str:
    """No pseudo-label pool: the plain student goes on; returns its URI."""
    from roadvision.components._base import step_result

    with step_result(result, "keep_student", outputs={"student": student}) as out:
        out["model_uri"] = student.uri
    return student.uri
