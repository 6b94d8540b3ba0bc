"""Submit the compiled pipeline to a Kubeflow Pipelines host with ``kfp.Client``: one run
(``submit``) or a recurring run on a cron schedule (``recurring_run`` + ``schedule``).

The host is probed first with a short timeout: ``kfp.Client`` otherwise retries for a long
time and ends in a stack trace; here an unreachable host is one clear line.
"""

from __future__ import annotations

import os
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from roadvision.components.run_params import RunParams
from roadvision.errors import UserError

__all__ = ["check_host", "submit", "check_cron", "RecurringRun", "recurring_run", "schedule"]


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


# --------------------------------------------------------------------------- recurring runs
#: The fields of KFP's cron (robfig/cron, seconds first) and their ranges.
_CRON_FIELDS = (("second", 0, 59), ("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31),
                ("month", 1, 12), ("day of week", 0, 6))
_CRON_PART = re.compile(r"^(\*|\?|\d+(?:-\d+)?)(?:/(\d+))?$")


def check_cron(expression: str) -> str:
    """KFP's six-field cron (seconds first) for a standard five-field expression ("0 3 * * 1":
    Mondays at 03:00) or a six-field one; a UserError naming the bad field otherwise."""
    parts = expression.split()
    if len(parts) == 5:
        parts = ["0", *parts]  # KFP's scheduler counts seconds too: at second 0
    if len(parts) != 6:
        raise UserError(f"--cron {expression!r}: expected 5 fields (minute hour day-of-month "
                        "month day-of-week) or 6 (seconds first)")
    for text, (name, low, high) in zip(parts, _CRON_FIELDS, strict=True):
        for item in text.split(","):
            match = _CRON_PART.match(item)
            if not match or (match[2] is not None and int(match[2]) < 1):
                raise UserError(f"--cron {expression!r}: {name} {item!r} is not N, N-M, *, "
                                "with an optional /STEP")
            if match[1] == "?" and name not in ("day of month", "day of week"):
                raise UserError(f"--cron {expression!r}: '?' only stands for a day")
            for number in re.findall(r"\d+", match[1]):
                if not low <= int(number) <= high:
                    raise UserError(f"--cron {expression!r}: {name} {number} is out of "
                                    f"range [{low}, {high}]")
    return " ".join(parts)


@dataclass
class RecurringRun:
    """What a schedule uploads: the compiled package, its arguments, the six-field cron."""

    job_name: str
    cron: str
    pipeline_file: Path
    arguments: dict[str, Any]
    experiment: str = "roadvision"
    max_concurrency: int = 1  # a slow run never overlaps the next one
    no_catchup: bool = True  # a paused schedule does not backfill every missed week


def recurring_run(params: RunParams, cron: str, *, job_name: str = "roadvision-retrain",
                  experiment: str = "roadvision",
                  pipeline_file: str | os.PathLike | None = None) -> RecurringRun:
    """The recurring run for ``params`` on ``cron``, every part checked (nothing is sent)."""
    from roadvision.pipelines.compile import DEFAULT_OUT

    params.validate(check_data=False, check_mlflow=False)
    if not job_name.strip():
        raise UserError("--name: must not be empty")
    path = Path(pipeline_file or DEFAULT_OUT)
    if not path.is_file():
        raise UserError(f"pipeline file {path} does not exist (roadvision pipeline compile "
                        "--out FILE)")
    return RecurringRun(job_name=job_name, cron=check_cron(cron), pipeline_file=path,
                        arguments=params.to_dict(), experiment=experiment)


def schedule(run: RecurringRun, *, host: str, namespace: str | None = None) -> str:
    """Create the recurring run on the KFP host; returns its id."""
    import kfp

    host = check_host(host)
    client = kfp.Client(host=host, namespace=namespace)
    experiment = client.create_experiment(run.experiment, namespace=namespace)
    job = client.create_recurring_run(
        experiment_id=experiment.experiment_id, job_name=run.job_name,
        cron_expression=run.cron, max_concurrency=run.max_concurrency,
        no_catchup=run.no_catchup, params=run.arguments,
        pipeline_package_path=str(run.pipeline_file))
    return job.recurring_run_id
