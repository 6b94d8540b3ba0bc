"""Per-task settings every pipeline of the project shares (training, sweep).

KFP fixes them at compile time from ``ClusterSettings``: a pipeline binds its settings once
(``functools.partial(pod, settings)``) and wraps every task it creates.
"""

from kfp import dsl, kubernetes

from roadvision.pipelines.cluster import ClusterSettings

__all__ = ["pod", "gpu"]


def pod(s: ClusterSettings, task: dsl.PipelineTask, name: str, *, io: bool = False,
        cache: bool = True) -> dsl.PipelineTask:
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


def gpu(s: ClusterSettings, task: dsl.PipelineTask) -> dsl.PipelineTask:
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
