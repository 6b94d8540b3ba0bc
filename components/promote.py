"""Step 12, promote: point ``@champion`` at the version the gate passed (runs under dsl.If).

The audit tags say who (the pipeline run), when and why (the gate's reason).
"""

# No `from __future__ import annotations`: KFP reads the component signature's real types.
from typing import Any

from kfp.dsl import Artifact, Output

from roadvision.components._base import component

__all__ = ["run_promote", "promote"]


def run_promote(version: str, *, task: str, model_name: str = "",
                pipeline_run_id: str | None = None, experiment: str = "roadvision",
                tracking_uri: str = "") -> dict[str, Any]:
    """Promote ``version`` to champion with the gate's reason; returns the new champion."""
    from roadvision import registry
    from roadvision.components._base import current_pipeline_run_id, step_run
    from roadvision.registry import resolve_model_name

    name = resolve_model_name(model_name, task)
    with step_run("promote", pipeline_run_id, experiment=experiment, tracking_uri=tracking_uri,
                  params={"model_name": name, "version": version}):
        info = registry.get_version(f"models:/{name}/{version}")
        reason = "gate passed: " + info.tags.get("gate.reason", "(no gate reason recorded)")
        run_id = current_pipeline_run_id(pipeline_run_id)
        by = f"pipeline:{run_id}" if run_id else None
        promoted = registry.promote(name, version, reason=reason, by=by)
    print(f"promote: {name} v{promoted.version} is now @champion")
    return {"model_name": name, "version": promoted.version, "alias": "champion"}


@component
def promote(result: Output[Artifact], version: str, task: str, model_name: str, experiment: str,
            mlflow_tracking_uri: str) -> str:
    """Set alias ``champion`` on the gated version; returns the model URI."""
    from roadvision.components._base import step_result
    from roadvision.components.promote import run_promote

    with step_result(result, "promote") as out:
        out.update(run_promote(version, task=task, model_name=model_name,
                               experiment=experiment, tracking_uri=mlflow_tracking_uri))
        out["model_uri"] = f"models:/{out['model_name']}/{out['version']}"
    return out["model_uri"]
