"""Submit the compiled pipeline to a Kubeflow Pipelines host with ``kfp.Client``.

The host is probed first with a short timeout: ``kfp.Client`` otherwise retries for a long
time and ends in a stack trace; here an unreachable host is one clear line.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from pathlib import Path

from roadvision.components.run_params import RunParams
from roadvision.errors import UserError

__all__ = ["check_host", "submit"]


def check_host(host: str, timeout: float = 5.0) -> str:
    """Fail with a clear message when ``host`` is not a reachable KFP API endpoint."""
    host = host.rstrip("/")
    if not host.startswith(("http://", "https://")):
        raise UserError(f"--host {host!r}: expected an http(s):// URL of the KFP API")
    try:
        with urllib.request.urlopen(f"{host}/apis/v2beta1/healthz", timeout=timeout):  # noqa: S310
            pass
    except urllib.error.HTTPError as exc:
        if exc.code >= 500:
            raise UserError(f"--host {host}: the KFP API answers HTTP {exc.code}") from None
        # 401/403/404: something answers (auth in front, older path); let kfp.Client decide
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise UserError(f"--host {host}: Kubeflow Pipelines is unreachable "
                        f"({getattr(exc, 'reason', exc)})") from None
    return host


def submit(params: RunParams, *, host: str, experiment: str = "roadvision",
           pipeline_file: str | os.PathLike | None = None, run_name: str | None = None,
           namespace: str | None = None) -> str:
    """Validate ``params`` (no local path or MLflow checks: those are the cluster's) and
    create a run; returns the run id."""
    import kfp

    from roadvision.pipelines.compile import DEFAULT_OUT

    params.validate(check_data=False, check_mlflow=False)
    pipeline_file = Path(pipeline_file or DEFAULT_OUT)
    if not pipeline_file.is_file():
        raise UserError(f"pipeline file {pipeline_file} does not exist (roadvision pipeline "
                        "compile --out FILE)")
    host = check_host(host)
    client = kfp.Client(host=host, namespace=namespace)
    run = client.create_run_from_pipeline_package(
        str(pipeline_file), arguments=params.to_dict(), experiment_name=experiment,
        run_name=run_name, enable_caching=None)
    return run.run_id
