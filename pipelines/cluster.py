"""Compile-time Kubernetes settings of the pipeline's pods (image, GPUs, Secrets, retries).

KFP fixes these when the pipeline is compiled, so they are not pipeline parameters:
``ClusterSettings`` carries them, from the environment (``from_env``) or ``roadvision pipeline
compile`` options (``parse_pairs``, ``parse_toleration`` read the ``key=value`` forms).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from roadvision.components._base import TRAIN_IMAGE
from roadvision.errors import UserError

__all__ = ["ClusterSettings", "parse_pairs", "parse_toleration"]

#: The fields of a Kubernetes toleration (``kfp.kubernetes.add_toleration``'s keywords).
TOLERATION_FIELDS = ("key", "operator", "value", "effect")


@dataclass
class ClusterSettings:
    """Compile-time Kubernetes settings of the pipeline's pods."""

    image: str = TRAIN_IMAGE  # built from Dockerfile.train
    accelerator_type: str = "nvidia.com/gpu"  # resource name the GPU nodes advertise
    accelerator_limit: int = 1  # GPUs per training pod
    gpu_node_selector: dict[str, str] = field(
        default_factory=lambda: {"roadvision.io/node-pool": "gpu"})
    gpu_toleration: dict[str, str] = field(
        default_factory=lambda: {"key": "nvidia.com/gpu", "operator": "Exists",
                                 "effect": "NoSchedule"})
    gpu_memory_limit: str = "32G"
    gpu_cpu_limit: str = "8"
    s3_secret: str = "roadvision-s3"  # keys: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY
    mlflow_secret: str = "roadvision-mlflow"  # keys: MLFLOW_TRACKING_USERNAME/_PASSWORD
    io_retries: int = 3  # retries of I/O steps (object store, MLflow)
    retry_backoff: str = "30s"  # first wait; doubles each retry
    retry_backoff_max: str = "600s"

    @classmethod
    def from_env(cls) -> ClusterSettings:
        """Defaults, overridden by ``ROADVISION_*`` environment variables (compile time)."""
        s = cls()
        env = os.environ
        s.image = env.get("ROADVISION_TRAIN_IMAGE", s.image)
        s.accelerator_type = env.get("ROADVISION_GPU_TYPE", s.accelerator_type)
        s.accelerator_limit = int(env.get("ROADVISION_GPU_COUNT", s.accelerator_limit))
        if env.get("ROADVISION_GPU_NODE_SELECTOR"):
            s.gpu_node_selector = parse_pairs(env["ROADVISION_GPU_NODE_SELECTOR"])
        if env.get("ROADVISION_GPU_TOLERATION"):
            s.gpu_toleration = parse_toleration(env["ROADVISION_GPU_TOLERATION"])
        s.s3_secret = env.get("ROADVISION_S3_SECRET", s.s3_secret)
        s.mlflow_secret = env.get("ROADVISION_MLFLOW_SECRET", s.mlflow_secret)
        return s


def parse_pairs(text: str) -> dict[str, str]:
    """``"key=value,key2=value2"`` -> dict (node selector and toleration options)."""
    out = {}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        key, sep, value = part.partition("=")
        if not sep or not key:
            raise UserError(f"{text!r}: expected key=value[,key=value...]")
        out[key.strip()] = value.strip()
    return out


def parse_toleration(text: str) -> dict[str, str]:
    """``"key=..,operator=..,value=..,effect=.."`` -> a toleration; unknown fields refused."""
    toleration = parse_pairs(text)
    unknown = set(toleration) - set(TOLERATION_FIELDS)
    if unknown:
        raise UserError(f"toleration {text!r}: unknown field(s) {sorted(unknown)}; "
                        f"expected {', '.join(TOLERATION_FIELDS)}")
    return toleration
