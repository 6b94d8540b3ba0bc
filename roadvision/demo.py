"""``make demo`` / ``python -m roadvision.demo``: the product end to end on one machine.

1. Runs the whole training pipeline locally (kfp.local, the same compiled DAG a cluster runs)
   on the ``demo`` run profile: a procedural roadwork data set, a 2-member ensemble, distillation,
   registration in a local MLflow store and the promotion gate.
2. Prints the registered version, its test metrics and where the reports are.
3. Starts the predictor on the ``@champion`` (with a Redis cache when ``redis-server`` is
   installed), sends the same image twice (a cache miss, then a hit) and prints the answers.

Everything lands in the roadvision home, ``~/.cache/roadvision`` (``$XDG_CACHE_HOME/roadvision``
when that is set; ``ROADVISION_HOME`` moves it), so a second demo from any folder finds the same
registry. Flags:
``--task lanes``, ``--run-profile tiny`` (faster), ``--no-serve`` (stop after the pipeline).
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from roadvision.errors import UserError
from roadvision.progress import Heartbeat


def _print_metrics(metrics: dict) -> None:
    headline = metrics.get("headline")
    name = metrics.get("headline_name", "headline")
    if isinstance(headline, (int, float)):
        print(f"  test {name}: {headline:.4f}")
    flat = metrics.get("metrics") if isinstance(metrics.get("metrics"), dict) else metrics
    shown = [k for k in ("accuracy", "f1", "auroc", "ece", "miou", "miou_no_bg", "n")
             if isinstance(flat.get(k), (int, float))]
    if shown:
        print("  " + ", ".join(f"{k} {flat[k]:.4g}" for k in shown))
    for field in ("weather", "daytime", "city"):
        slices = (metrics.get("slices") or {}).get(field) or {}
        parts = []
        for value, entry in sorted(slices.items()):
            score = entry.get("mcc", entry.get("miou_no_bg", entry.get("headline"))) \
                if isinstance(entry, dict) else entry
            n = entry.get("n") if isinstance(entry, dict) else None
            if isinstance(score, (int, float)):
                parts.append(f"{value} {score:.3f}" + (f" (n={n})" if n is not None else ""))
        if parts:
            print(f"  by {field}: " + "; ".join(parts))


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_http(url: str, timeout: float, proc: subprocess.Popen, log_path: Path) -> None:
    with Heartbeat(lambda: "waiting for the predictor to load the model and warm up",
                   out=sys.stdout):
        _poll_http(url, timeout, proc, log_path)


def _poll_http(url: str, timeout: float, proc: subprocess.Popen, log_path: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace").strip().splitlines()[-3:]
            raise UserError(f"the predictor exited with code {proc.returncode}: "
                            + " | ".join(tail))
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 (loopback)
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise UserError(f"the predictor did not become ready at {url} within {timeout:.0f}s")


def _demo_image(result) -> bytes:
    """One image of the pipeline's own test split (encoded as stored)."""
    from roadvision.data.contract import read_manifest

    uri = result.steps.get("gps_weighting", {}).get("artifacts", {}).get("weighted_dataset")
    data = Path(uri) if uri else None  # a kfp.local artifact URI is a local path
    if data is not None and (data / "manifest.parquet").is_file():
        df = read_manifest(data)
        test = df[df["split"] == "test"] if "split" in df.columns else df
        row = (test if len(test) else df).iloc[0]
        return (data / row["image"]).read_bytes()
    from PIL import Image  # fall back to a plain grey picture

    buf = io.BytesIO()
    Image.new("RGB", (224, 224), (120, 120, 120)).save(buf, format="JPEG")
    return buf.getvalue()


def serve_and_query(model_name: str, image: bytes, home: Path, alias: str = "champion") -> None:
    """Start the predictor on ``@alias``, query it twice, print both answers, stop it."""
    port = _free_port()
    env = {**os.environ, "ROADVISION_QUIET": "1"}
    redis_proc = None
    redis_bin = shutil.which("redis-server")
    args = [sys.executable, "-m", "roadvision.serving", "--model",
            f"models:/{model_name}@{alias}", "--model_name", model_name, "--http_port",
            str(port)]
    if redis_bin:
        redis_port = _free_port()
        redis_proc = subprocess.Popen(
            [redis_bin, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        args += ["--redis", f"redis://127.0.0.1:{redis_port}/0"]
    else:
        print("  (redis-server not installed: serving without the response cache)")
    log_path = home / "demo-serving.log"
    with open(log_path, "w") as log:
        server = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        _wait_http(f"http://127.0.0.1:{port}/v2/health/ready", 180, server, log_path)
        url = f"http://127.0.0.1:{port}/v1/models/{model_name}:predict"
        body = json.dumps({"instances": [{"image_b64": base64.b64encode(image).decode()}]})
        for attempt in ("first request", "same request again"):
            request = urllib.request.Request(url, data=body.encode(), method="POST",
                                             headers={"Content-Type": "application/json"})
            started = time.perf_counter()
            with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
                answer = json.loads(response.read())
                cache = response.headers.get("x-roadvision-cache", "-")
                version = response.headers.get("x-roadvision-model-version", "-")
            ms = (time.perf_counter() - started) * 1000
            print(f"  {attempt}: cache {cache}, model version {version}, {ms:.0f} ms")
            print(f"    {json.dumps(answer)[:300]}")
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        if redis_proc is not None:
            redis_proc.terminate()
            redis_proc.wait(timeout=10)
    print(f"  predictor log: {log_path}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m roadvision.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="roadwork", choices=("roadwork", "lanes"))
    parser.add_argument("--run-profile", default="demo",
                        help="run profile: a whole run's parameters (tiny, demo, full)")
    parser.add_argument("--data-uri", default=None,
                        help="data set instead of the run profile's")
    parser.add_argument("--no-serve", action="store_true", help="stop after the pipeline")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    try:
        from roadvision.pipelines.local import run_local
        from roadvision.pipelines.run_profiles import from_run_profile
        from roadvision.registry import get_version, roadvision_home, tracking_uri

        home = roadvision_home()
        params = from_run_profile(args.run_profile, task=args.task, data_uri=args.data_uri)
        print(f"== 1/3 training pipeline (run profile {args.run_profile}, {params.data_uri}) "
              "on kfp.local")
        # Before the first step prints, the run opens (and on a first run, creates) the MLflow
        # store and compiles the pipeline: the heartbeat keeps the console moving meanwhile,
        # and during the run says which steps are running when they are quiet.
        with Heartbeat(lambda: "preparing the pipeline run (MLflow store, compile)",
                       out=sys.stdout):
            result = run_local(params)
        print(result.summary())
        if not result.succeeded:
            return 1
        print(f"\n== 2/3 registered model ({tracking_uri()})")
        with Heartbeat(lambda: "reading the registry", out=sys.stdout):
            info = get_version(f"models:/{result.model_name}/{result.version}")
        print(f"  {info.name} version {info.version}  aliases: "
              f"{', '.join('@' + a for a in info.aliases) or 'none'}")
        print(f"  gate: {info.tags.get('gate.decision', '?')}: {info.tags.get('gate.reason', '')}")
        _print_metrics(result.metrics)
        for label, path in result.reports.items():
            print(f"  report ({label}): {path}")
        if args.no_serve:
            return 0
        from roadvision.registry import champion

        alias = "champion"
        if champion(result.model_name) is None:
            # The gate refused the first model (below the floor): say so, and still show
            # serving with the refused challenger rather than stopping the demo here.
            alias = "challenger"
            print("\n  no @champion: the gate refused this model (see the reason above); the "
                  "demo serves @challenger instead, which production would never do")
        print(f"\n== 3/3 serving models:/{result.model_name}@{alias}")
        serve_and_query(result.model_name, _demo_image(result), home, alias=alias)
        return 0
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
