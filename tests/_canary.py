"""Canary test helpers: a champion and a challenger in a real MLflow store, served together.

``registered_arms`` registers tiny roadwork bundles as versions of one registered model and
points ``@champion`` and ``@challenger`` at them; ``canary_server`` starts the real
``python -m roadvision.serving`` (through ``tests/_serving.py``) on a loopback port serving
``models:/NAME@champion`` with its challenger in split or shadow mode.
"""

from __future__ import annotations

from pathlib import Path

from _serving import ServingServer

from roadvision import registry


def tiny_roadwork(out: Path, seed: int, **kwargs) -> Path:
    """A randomly initialised ``roadwork_tiny`` bundle (weights from ``seed``; ``kwargs`` change
    the architecture, e.g. ``view_size``)."""
    import torch

    from roadvision.models import create_model, save_bundle

    torch.manual_seed(seed)
    return Path(save_bundle(create_model("roadwork_tiny", **kwargs), out))


def store_env(root: Path) -> dict[str, str]:
    """A SQLite MLflow store under ``root`` (artifacts beside it), as environment variables."""
    return {"MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
            "ROADVISION_HOME": str(root / "home")}


def registered_arms(root: Path, name: str, champion_seed: int, challenger_seed: int,
                    **challenger_kwargs) -> tuple[str, str]:
    """Register two ``roadwork_tiny`` bundles (weights from their seeds; ``challenger_kwargs``
    change the challenger's architecture) as ``name`` v1 @champion and v2 @challenger. Call
    with the store's environment set (``store_env``). Returns the two version numbers."""
    champion = tiny_roadwork(root / f"{name}-champion", champion_seed)
    v1 = registry.register_bundle(champion, name, {"task": "roadwork"}, validate_example=False)
    registry.promote(name, v1, reason="canary test champion")
    challenger = tiny_roadwork(root / f"{name}-challenger", challenger_seed,
                               **challenger_kwargs)
    v2 = registry.register_bundle(challenger, name, {"task": "roadwork"},
                                  validate_example=False)  # registered as @challenger
    return v1, v2


def canary_server(root: Path, name: str, *, percent: float | None = None, shadow: bool = False,
                  extra: list[str] | None = None, env: dict[str, str] | None = None
                  ) -> ServingServer:
    """A started server serving ``models:/NAME@champion`` under ``name`` with its
    ``@challenger`` answering ``percent`` % of requests (or shadowing them)."""
    args = ["--model", f"{name}=models:/{name}@champion", "--forward_workers", "0"]
    if percent is not None:
        args += ["--canary-percent", f"{percent:g}"]
    if shadow:
        args.append("--shadow")
    server = ServingServer(args=args + list(extra or []), log_path=root / f"{name}-server.log",
                           env={**store_env(root), **(env or {})})
    server.start(ready_models=(name,))
    return server
