"""The training pipeline, written to read like its DAG.

    check_params -> ingest -> validate -> split -> gps_weighting
      -> ParallelFor(members): train -> evaluate
      -> distill(Collected teachers)
      -> If(pseudo_label_pool != ""): pseudo_label(student)   Else: keep_student
      -> importer(OneOf(their model URIs))                    (the model to register)
      -> evaluate(student) -> error_analysis(student)
      -> register (@challenger) -> gate -> If(passed): promote (@champion)

Error analysis looks at the student, the model that is registered and served (its failures
are the ones users meet); the members' own evaluations stay in the loop.

The pseudo-label branch is off by default (``pseudo_label_pool=""``). Both branches return
their model's URI and the importer turns the ``OneOf`` of the two back into one ``Model``:
kfp.local cannot resolve a ``OneOf`` of artifacts (only of parameters), and the local run
must be this same DAG.

Cluster settings (image, GPU type/count, node selector, toleration, Secrets, retries) are not
pipeline parameters: KFP fixes them at compile time. ``ClusterSettings`` (``cluster.py``) carries
them, from the environment or ``roadvision pipeline compile`` options, and
``build_pipeline(settings)`` returns the pipeline. ``training_pipeline`` is the one built from
the environment's settings.
kfp.local ignores the Kubernetes settings (it warns), so the local run is this same DAG.
"""

# No `from __future__ import annotations`: KFP reads the pipeline signature's real types.
from dataclasses import fields
from functools import partial

from kfp import dsl

from roadvision.components.check_params import check_params
from roadvision.components.distill import distill
from roadvision.components.error_analysis import error_analysis
from roadvision.components.evaluate import evaluate
from roadvision.components.pseudo_label import keep_student, pseudo_label
from roadvision.components.run_params import RunParams
from roadvision.components.train import train
from roadvision.pipelines import _tasks
from roadvision.pipelines._stages import prepare_data, release
from roadvision.pipelines.cluster import ClusterSettings

__all__ = ["PIPELINE_NAME", "build_pipeline", "training_pipeline"]

PIPELINE_NAME = "roadvision-training"
_DEFAULTS = RunParams()
_PARAM_NAMES = frozenset(f.name for f in fields(RunParams))


def build_pipeline(settings: ClusterSettings | None = None):
    """The ``@dsl.pipeline`` with ``settings`` applied (compiled or run locally as is)."""
    s = settings or ClusterSettings.from_env()

    # the settings every step shares, bound to this pipeline's cluster settings
    pod, gpu = partial(_tasks.pod, s), partial(_tasks.gpu, s)

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
        pseudo_label_pool: str = _DEFAULTS.pseudo_label_pool,
        pseudo_label_rounds: int = _DEFAULTS.pseudo_label_rounds,
        distill_unlabelled: str = _DEFAULTS.distill_unlabelled,
        lane_bias_objective: str = _DEFAULTS.lane_bias_objective,
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
            pseudo_label_pool: Unlabelled images the student learns from through confident
                pseudo labels: a folder of images, a data set folder, a payload log (folder
                or s3:// prefix) or synth://TASK?n=N; empty skips pseudo-labelling.
            pseudo_label_rounds: Pseudo-labelling rounds, each with a higher confidence
                threshold (0.9 rising to 0.95).
            distill_unlabelled: Unlabelled images the student also learns from, through the
                teachers' soft targets only: a folder or synth://TASK?n=N (the generator's
                every scene family); empty distils on the labelled train split only.
            lane_bias_objective: Lanes: what calibration fits each model's decision biases
                for: iou (pixel IoU) or lines (skeleton F1 at 0.5 m, the figure of the
                lane-marking vectors). Roadwork ignores it.
        """
        # every pipeline parameter, for the first step's validation (locals() also holds the
        # closure's helpers, hence the filter)
        params = {k: v for k, v in locals().items() if k in _PARAM_NAMES}
        run = {"experiment": experiment, "mlflow_tracking_uri": mlflow_tracking_uri}
        training = {"task": task, "training_profile": training_profile, "epochs": epochs,
                    "batch_size": batch_size, "max_steps_per_epoch": max_steps_per_epoch,
                    "seed": seed, "lane_bias_objective": lane_bias_objective}

        plan = pod(check_params(**params), "Check parameters", cache=False)
        data = prepare_data(pod, plan, task=task, data_uri=data_uri,
                            s3_endpoint_url=s3_endpoint_url, holdout_cities=holdout_cities,
                            min_distance_m=min_distance_m, seed=seed,
                            target_regions=target_regions, run=run)

        with dsl.ParallelFor(items=plan.outputs["Output"], name="Ensemble members") as member:
            teacher = gpu(pod(train(data=data, member=member, model_preset=model_preset,
                                    **training, **run), "Train ensemble member"))
            teacher_eval = pod(evaluate(model=teacher.outputs["model"], data=data,
                                        name="evaluate-member", tta=tta, **run),
                               "Evaluate member")

        student = gpu(pod(distill(teachers=dsl.Collected(teacher.outputs["model"]), data=data,
                                  student_preset=student_preset, model_preset=model_preset,
                                  unlabelled=distill_unlabelled, **training, **run),
                          "Distil student"))
        with dsl.If(pseudo_label_pool != "", name="Pseudo label pool given"):
            relabelled = gpu(pod(pseudo_label(student=student.outputs["student"], data=data,
                                              pool=pseudo_label_pool,
                                              rounds=pseudo_label_rounds,
                                              s3_endpoint_url=s3_endpoint_url, **training,
                                              **run), "Pseudo label the pool"))
        with dsl.Else(name="No pseudo label pool"):
            kept = pod(keep_student(student=student.outputs["student"]), "Keep the student")
        # KFP wraps If/Else in a group it names "condition-branches-N" and offers no argument
        # to name it; the group is the one dsl.OneOf itself reads (task -> branch -> group).
        kept.parent_task_group.parent_task_group.display_name = "Pseudo labelling"
        chosen = dsl.importer(artifact_uri=dsl.OneOf(relabelled.outputs["Output"],
                                                     kept.outputs["Output"]),
                              artifact_class=dsl.Model, reimport=False)
        chosen.set_display_name("Model to register")
        final = chosen.output

        student_eval = pod(evaluate(model=final, data=data, name="evaluate-student", tta=tta,
                                    **run), "Evaluate student")
        analysis = pod(error_analysis(model=final, data=data, **run), "Error analysis")
        release(pod, model=final, metrics=student_eval.outputs["metrics"], data=data,
                report=analysis.outputs["report"],
                teacher_headlines=dsl.Collected(teacher_eval.outputs["Output"]),
                task=task, model_name=model_name, tta=tta, min_delta=min_delta,
                slice_tolerance=slice_tolerance, absolute_floor=absolute_floor,
                min_slice_size=min_slice_size, run=run)

    return training_pipeline


training_pipeline = build_pipeline()
