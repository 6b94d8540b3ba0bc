"""The sweep pipeline (``roadvision-sweep``), written to read like its DAG.

    check_params -> ingest -> validate -> split -> gps_weighting
      -> sweep_plan (the Optuna sampler: one parameter set per trial)
      -> ParallelFor(trials): train (the training pipeline's step, with the trial's overrides)
      -> sweep_select(Collected trial models: the best validation headline)
      -> evaluate(winner, test) -> error_analysis -> register (@challenger) -> gate
      -> If(passed): promote (@champion)

Every trial is the ``train`` step of the training pipeline (one nested MLflow run under the
pipeline's run, calibrated like an ensemble member), fed the trial's hyper-parameters as a JSON
``overrides`` parameter; its output is its best validation headline, the figure selection
reads. The test split is scored once, for the winner. The trials run in parallel, so the
sampler cannot learn from earlier trials and no trial is pruned: for TPE's model and the
median pruner, run ``roadvision sweep`` (one machine, trials in sequence).
"""

# No `from __future__ import annotations`: KFP reads the pipeline signature's real types.
from functools import partial

from kfp import dsl

from roadvision.components.check_params import check_params
from roadvision.components.error_analysis import error_analysis
from roadvision.components.evaluate import evaluate
from roadvision.components.sweep import (
    SweepParams,
    fixed_run_params,
    sweep_plan,
    sweep_select,
)
from roadvision.components.train import train
from roadvision.pipelines import _tasks
from roadvision.pipelines._stages import prepare_data, release
from roadvision.pipelines.cluster import ClusterSettings

__all__ = ["PIPELINE_NAME", "build_sweep_pipeline"]

PIPELINE_NAME = "roadvision-sweep"
_DEFAULTS = SweepParams()


def build_sweep_pipeline(settings: ClusterSettings | None = None):
    """The sweep ``@dsl.pipeline`` with ``settings`` applied."""
    s = settings or ClusterSettings.from_env()
    pod, gpu = partial(_tasks.pod, s), partial(_tasks.gpu, s)

    @dsl.pipeline(name=PIPELINE_NAME,
                  description="Ingest and split once, train one trial per Optuna parameter set "
                              "on GPU nodes, select on validation, evaluate the winner on test, "
                              "register it and promote through the gate.")
    def sweep_pipeline(
        task: str = _DEFAULTS.task,
        data_uri: str = _DEFAULTS.data_uri,
        target_regions: str = _DEFAULTS.target_regions,
        holdout_cities: str = _DEFAULTS.holdout_cities,
        min_distance_m: float = _DEFAULTS.min_distance_m,
        training_profile: str = _DEFAULTS.training_profile,
        model_preset: str = _DEFAULTS.model_preset,
        epochs: int = _DEFAULTS.epochs,
        batch_size: int = _DEFAULTS.batch_size,
        max_steps_per_epoch: int = _DEFAULTS.max_steps_per_epoch,
        tta: str = _DEFAULTS.tta,
        min_delta: float = _DEFAULTS.min_delta,
        slice_tolerance: float = _DEFAULTS.slice_tolerance,
        absolute_floor: float = _DEFAULTS.absolute_floor,
        min_slice_size: int = _DEFAULTS.min_slice_size,
        model_name: str = _DEFAULTS.model_name,
        experiment: str = _DEFAULTS.experiment,
        mlflow_tracking_uri: str = _DEFAULTS.mlflow_tracking_uri,
        s3_endpoint_url: str = _DEFAULTS.s3_endpoint_url,
        seed: int = _DEFAULTS.seed,
        trials: int = _DEFAULTS.trials,
        search_space: str = _DEFAULTS.search_space,
    ):
        """Sweep training hyper-parameters with Optuna and register the best trial.

        Args:
            task: lanes or roadwork.
            data_uri: A data set folder, s3://bucket/prefix or synth://TASK?n=N&size=SIZE.
            target_regions: Deployment regions for GPS weighting, "lat,lon;lat,lon".
            holdout_cities: Cities held out whole into the test split, "city_a,city_b".
            min_distance_m: No training image within this many metres of a val/test image.
            training_profile: The profile every trial starts from: tiny, bench, demo or full.
            model_preset: Architecture of every trial; empty uses the profile's for the task.
            epochs: Most epochs per trial (a search space with epochs overrides it).
            batch_size: Images per step (a search space with batch_size overrides it).
            max_steps_per_epoch: Cap on steps per epoch; 0 trains full epochs.
            tta: Test-time augmentation when the winner is evaluated: none, flip or full.
            min_delta: Gate: the headline must beat the champion's by at least this.
            slice_tolerance: Gate: no slice may drop by more than this.
            absolute_floor: Gate: the first model ever registered must reach this headline.
            min_slice_size: Gate: slices with fewer images are reported but not judged.
            model_name: Registered model name; empty uses the task name.
            experiment: MLflow experiment the run's steps log to.
            mlflow_tracking_uri: MLflow tracking server (a local file is refused on a cluster).
            s3_endpoint_url: S3-compatible endpoint for s3:// data URIs; empty uses AWS S3.
            seed: Seed of the split, the sampler and every trial's training.
            trials: Parameter sets to train, in parallel; the first is the profile's own.
            search_space: JSON object of ranges (lr, weight_decay, warmup_epochs, epochs as
                [low, high]; min_lr_ratio, augment, appearance, batch_size as choices); empty
                uses the default space.
        """
        sweep = {k: v for k, v in locals().items() if k in SweepParams.names()}
        run = {"experiment": experiment, "mlflow_tracking_uri": mlflow_tracking_uri}
        plan_inputs = {k: sweep[k] for k in ("task", "training_profile", "model_preset",
                                             "epochs", "batch_size", "max_steps_per_epoch",
                                             "seed", "trials", "search_space")}

        checked_params = pod(check_params(**{k: v for k, v in sweep.items()
                                              if k not in ("trials", "search_space")},
                                          **fixed_run_params()),
                             "Check parameters", cache=False)
        plan = pod(sweep_plan(**plan_inputs), "Plan trials (Optuna)")
        plan.after(checked_params)
        data = prepare_data(pod, checked_params, task=task, data_uri=data_uri,
                            s3_endpoint_url=s3_endpoint_url, holdout_cities=holdout_cities,
                            min_distance_m=min_distance_m, seed=seed,
                            target_regions=target_regions, run=run)

        with dsl.ParallelFor(items=plan.outputs["Output"], name="Sweep trials") as trial:
            trained = gpu(pod(train(data=data, member=trial.number, overrides=trial.overrides,
                                    task=task, training_profile=training_profile,
                                    model_preset=model_preset, epochs=epochs,
                                    batch_size=batch_size,
                                    max_steps_per_epoch=max_steps_per_epoch, seed=seed, **run),
                              "Train trial"))

        chosen = pod(sweep_select(models=dsl.Collected(trained.outputs["model"]), **run),
                     "Select on validation")
        best = chosen.outputs["best"]
        tested = pod(evaluate(model=best, data=data, name="evaluate-sweep", tta=tta, **run),
                     "Evaluate winner on test")
        analysis = pod(error_analysis(model=best, data=data, **run), "Error analysis")
        release(pod, model=best, metrics=tested.outputs["metrics"], data=data,
                report=analysis.outputs["report"], teacher_headlines=[], task=task,
                model_name=model_name, tta=tta, min_delta=min_delta,
                slice_tolerance=slice_tolerance, absolute_floor=absolute_floor,
                min_slice_size=min_slice_size, run=run)

    return sweep_pipeline
