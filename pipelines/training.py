"""The training pipeline, written to read like its DAG.

    check_params -> ingest -> validate -> split -> gps_weighting
      -> ParallelFor(members): train -> evaluate
      -> distill(Collected teachers) -> evaluate(student) -> error_analysis(student)
      -> register (@challenger) -> gate -> If(passed): promote (@champion)

Error analysis looks at the student, the model that is registered and served (its failures
are the ones users meet); the members' own evaluations stay in the loop.

Cluster settings (image, GPU type/count, node selector, toleration, Secrets, retries) are not
pipeline parameters: KFP fixes them at compile time. ``ClusterSettings`` (``cluster.py``) carries
them, from the environment or ``roadvision pipeline compile`` options, and
``build_pipeline(settings)`` returns the pipeline. ``training_pipeline`` is the one built from
the environment's settings.
kfp.local ignores the Kubernetes settings (it warns), so the local run is this same DAG.
"""

# No `from __future__ import annotations`: KFP reads the pipeline signature's real types.
from dataclasses import fields

from kfp import dsl, kubernetes

from roadvision.components.check_params import check_params
from roadvision.components.distill import distill
from roadvision.components.error_analysis import error_analysis
from roadvision.components.evaluate import evaluate
from roadvision.components.gate import gate
from roadvision.components.gps_weighting import gps_weighting
from roadvision.components.ingest import ingest
from roadvision.components.promote import promote
from roadvision.components.register import register
from roadvision.components.run_params import RunParams
from roadvision.components.split import split
from roadvision.components.train import train
from roadvision.components.validate import validate
from roadvision.pipelines.cluster import ClusterSettings

__all__ = ["PIPELINE_NAME", "build_pipeline", "training_pipeline"]

PIPELINE_NAME = "roadvision-training"
_DEFAULTS = RunParams()
_PARAM_NAMES = frozenset(f.name for f in fields(RunParams))


def build_pipeline(settings: ClusterSettings | None = None):
    """The ``@dsl.pipeline`` with ``settings`` applied (compiled or run locally as is)."""
    s = settings or ClusterSettings.from_env()

    def pod(task: dsl.PipelineTask, name: str, *, io: bool = False, cache: bool = True):
        """Settings every step shares: image, display name, Secrets as env vars, caching,
        and retries with exponential backoff for steps that talk to S3 or MLflow."""
        task.container_spec.image = s.image
        task.set_display_name(name)
        task.set_caching_options(cache)
        # Which pipeline run a step belongs to (its MLflow parent run), from the pod's label:
        # an env var, not an input, so that it stays out of the cache key.
        kubernetes.use_field_path_as_env(task, "KFP_RUN_ID", "metadata.labels['pipeline/runid']")
        kubernetes.use_secret_as_env(task, s.s3_secret, {
            "AWS_ACCESS_KEY_ID": "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY": "AWS_SECRET_ACCESS_KEY"})
        kubernetes.use_secret_as_env(task, s.mlflow_secret, {
            "MLFLOW_TRACKING_USERNAME": "MLFLOW_TRACKING_USERNAME",
            "MLFLOW_TRACKING_PASSWORD": "MLFLOW_TRACKING_PASSWORD"}, optional=True)
        if io and s.io_retries:
            task.set_retry(num_retries=s.io_retries, backoff_duration=s.retry_backoff,
                           backoff_factor=2.0, backoff_max_duration=s.retry_backoff_max)
        return task

    def gpu(task: dsl.PipelineTask):
        """GPU steps: accelerator, memory/CPU limits, GPU node pool and its taint."""
        task.set_accelerator_type(s.accelerator_type)
        task.set_accelerator_limit(s.accelerator_limit)
        task.set_memory_limit(s.gpu_memory_limit)
        task.set_cpu_limit(s.gpu_cpu_limit)
        for key, value in s.gpu_node_selector.items():
            kubernetes.add_node_selector(task, label_key=key, label_value=value)
        if s.gpu_toleration:
            kubernetes.add_toleration(task, **s.gpu_toleration)
        return task

    @dsl.pipeline(name=PIPELINE_NAME,
                  description="Ingest, split, weight, train an ensemble on GPU nodes, distil, "
                              "evaluate, register in MLflow and promote through a gate.")
    def training_pipeline(
        task: str = _DEFAULTS.task,
        data_uri: str = _DEFAULTS.data_uri,
        target_regions: str = _DEFAULTS.target_regions,
        holdout_cities: str = _DEFAULTS.holdout_cities,
        min_distance_m: float = _DEFAULTS.min_distance_m,
        training_profile: str = _DEFAULTS.training_profile,
        model_preset: str = _DEFAULTS.model_preset,
        student_preset: str = _DEFAULTS.student_preset,
        epochs: int = _DEFAULTS.epochs,
        members: int = _DEFAULTS.members,
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
    ):
        """Train, evaluate, register and promote a road-infrastructure vision model.

        Args:
            task: What the models learn: lanes (aerial lane segmentation) or roadwork
                (street-level roadwork classification).
            data_uri: The data set: a folder in the data contract, an s3://bucket/prefix, or
                synth://TASK?n=N&size=SIZE&seed=S to generate a procedural (synthetic) one.
            target_regions: Deployment regions for GPS weighting, "lat,lon;lat,lon"; empty
                weights every image alike.
            holdout_cities: Cities held out whole into the test split, "city_a,city_b"; empty
                splits every city.
            min_distance_m: No training image lies within this many metres of a val or test
                image.
            training_profile: Epochs, batch size and learning rate of each training: tiny,
                bench, demo or full.
            model_preset: Architecture and size of the ensemble members, e.g. roadwork_small;
                empty uses the training profile's preset for the task.
            student_preset: Architecture of the distilled student; empty uses
                roadwork_student for roadwork, the members' preset for lanes.
            epochs: Most training epochs per member (early stopping may end sooner).
            members: Ensemble size: how many teachers are trained in parallel for distillation.
            batch_size: Images per training step.
            max_steps_per_epoch: Cap on steps per epoch; 0 trains full epochs.
            tta: Test-time augmentation at evaluation: none, flip or full.
            min_delta: Gate: the headline metric must beat the champion's by at least this.
            slice_tolerance: Gate: no slice (weather, city, ...) may drop by more than this.
            absolute_floor: Gate: the first model ever registered must reach this headline.
            min_slice_size: Gate: slices with fewer images are reported but not judged.
            model_name: Registered model name in MLflow; empty uses the task name (roadwork or
                lanes), which serving expects.
            experiment: MLflow experiment the run's steps log to.
            mlflow_tracking_uri: MLflow tracking server, e.g.
                http://mlflow.mlflow.svc.cluster.local:5000; empty uses the image's
                MLFLOW_TRACKING_URI (a local file is refused on a cluster).
            s3_endpoint_url: MinIO or other S3-compatible endpoint for s3:// data URIs; empty
                uses AWS S3.
            seed: Random seed of the split, the training and the synthetic data.
        """
        # every pipeline parameter, for the first step's validation (locals() also holds the
        # closure's helpers, hence the filter)
        params = {k: v for k, v in locals().items() if k in _PARAM_NAMES}
        run = {"experiment": experiment, "mlflow_tracking_uri": mlflow_tracking_uri}
        training = {"task": task, "training_profile": training_profile, "epochs": epochs,
                    "batch_size": batch_size, "max_steps_per_epoch": max_steps_per_epoch,
                    "seed": seed}

        plan = pod(check_params(**params), "Check parameters", cache=False)
        raw = pod(ingest(data_uri=data_uri, task=task, s3_endpoint_url=s3_endpoint_url, **run),
                  "Ingest data", io=True)
        raw.after(plan)
        checked = pod(validate(dataset=raw.outputs["dataset"], **run), "Validate data")
        splits = pod(split(dataset=raw.outputs["dataset"], holdout_cities=holdout_cities,
                           min_distance_m=min_distance_m, seed=seed, **run), "Split by city")
        splits.after(checked)
        weighted = pod(gps_weighting(dataset=splits.outputs["split_dataset"],
                                     target_regions=target_regions, **run), "Weight by GPS")
        data = weighted.outputs["weighted_dataset"]

        with dsl.ParallelFor(items=plan.outputs["Output"], name="Ensemble members") as member:
            teacher = gpu(pod(train(data=data, member=member, model_preset=model_preset,
                                    **training, **run), "Train ensemble member"))
            teacher_eval = pod(evaluate(model=teacher.outputs["model"], data=data,
                                        name="evaluate-member", tta=tta, **run),
                               "Evaluate member")

        student = gpu(pod(distill(teachers=dsl.Collected(teacher.outputs["model"]), data=data,
                                  student_preset=student_preset, model_preset=model_preset,
                                  **training, **run), "Distil student"))
        student_eval = pod(evaluate(model=student.outputs["student"], data=data,
                                    name="evaluate-student", tta=tta, **run), "Evaluate student")
        analysis = pod(error_analysis(model=student.outputs["student"], data=data, **run),
                       "Error analysis")
        registered = pod(register(model=student.outputs["student"],
                                  metrics=student_eval.outputs["metrics"], data=data,
                                  report=analysis.outputs["report"],
                                  teacher_headlines=dsl.Collected(teacher_eval.outputs["Output"]),
                                  task=task, model_name=model_name, **run),
                         "Register as challenger", io=True, cache=False)
        decision = pod(gate(metrics=student_eval.outputs["metrics"], data=data,
                            version=registered.outputs["Output"], task=task, model_name=model_name,
                            tta=tta, min_delta=min_delta, slice_tolerance=slice_tolerance,
                            absolute_floor=absolute_floor, min_slice_size=min_slice_size, **run),
                       "Gate", io=True, cache=False)
        with dsl.If(decision.outputs["Output"] == True, name="Gate passed"):  # noqa: E712 (KFP condition)
            pod(promote(version=registered.outputs["Output"], task=task, model_name=model_name,
                        **run), "Promote to champion", io=True, cache=False)

    return training_pipeline


training_pipeline = build_pipeline()
