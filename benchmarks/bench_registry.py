"""Registry benchmark: concurrent ``promote`` calls from several processes, 20 rounds each.

    python -m benchmarks.bench_registry [--rounds 20] [--workers 2 4] [--stores sqlite server]

Each worker is its own process (MLflow imported once, then all released at the same moment) and
promotes ``--rounds`` versions back to back against one registry: a SQLite file, and a real
``mlflow server`` on 127.0.0.1 in front of another SQLite file. Printed
per setting: calls, successes, errors, audit entries lost, whether ``@champion`` equals the
last audit entry and the champion history, whether every audit entry's ``previous`` is the entry
before it (the changes were serialised, so the alias equalled the newest entry after every
change, not only at the end), the wall time and promotes per second. Goal: consistent, 0 lost.
Everything goes to a temporary folder; nothing under the roadvision home is touched.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

MODEL = "rv-bench"
VERSIONS = ["1", "2", "3", "4", "5"]


def _store(uri: str) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.create_registered_model(MODEL)
    for i in range(len(VERSIONS)):
        # never downloaded: promote needs versions, not weights (a server refuses file: sources)
        client.create_model_version(MODEL, source=f"s3://rv-bench/nowhere/{i}")


def _server(db: Path, log: Path) -> tuple[subprocess.Popen, str]:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1", "--backend-store-uri", f"sqlite:///{db}"],
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        stdout=log.open("w"), stderr=subprocess.STDOUT)
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"{uri}/health", timeout=2).close()  # noqa: S310 (loopback)
            return proc, uri
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.5)
    proc.kill()
    raise SystemExit(f"mlflow server did not start: {log.read_text()[-1000:]}")


def _one(label: str, uri: str, workers: int, rounds: int, workdir: Path) -> dict:
    from roadvision import registry
    from tests._registry_race import race

    os.environ["MLFLOW_TRACKING_URI"] = uri  # the store the registry functions use
    _store(uri)
    result = race(uri, MODEL, VERSIONS, workers=workers, rounds=rounds, workdir=workdir,
                  timeout=1800)
    wall = result.race_s
    log = registry.audit_log(MODEL)
    chained = all(b.get("previous") == a.get("version")
                  for a, b in zip(log, log[1:], strict=False))
    row = {"store": label, "workers": workers, "rounds": rounds, "calls": result.calls,
           "ok": result.ok, "errors": len(result.errors), "lost": result.lost,
           "entries": len(log), "consistent": result.consistent, "serialised": chained,
           "wall_s": wall, "per_s": result.ok / wall if wall else 0.0}
    print(f"{label:7s} workers {workers} x {rounds} rounds: {row['ok']}/{row['calls']} ok, "
          f"{row['errors']} errors, {row['lost']} audit entries lost ({row['entries']} entries), "
          f"champion = last audit = history: {result.consistent} (v{result.champion}), "
          f"serialised: {chained}; {wall:.1f} s from go to last exit, "
          f"{row['per_s']:.2f} promotes/s", flush=True)
    for error in result.errors[:3]:
        print(f"    error: {error}")
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--workers", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--stores", nargs="+", default=["sqlite", "server"],
                        choices=["sqlite", "server"])
    args = parser.parse_args(argv)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    rows = []
    with tempfile.TemporaryDirectory(prefix="rv-bench-registry-") as tmp:
        root = Path(tmp)
        os.environ["ROADVISION_HOME"] = str(root / "home")
        for workers in args.workers if "sqlite" in args.stores else []:
            work = root / f"sqlite-{workers}"
            work.mkdir()
            rows.append(_one("sqlite", f"sqlite:///{work / 'mlflow.db'}", workers, args.rounds,
                             work))
        if "server" in args.stores:
            for workers in args.workers:
                work = root / f"server-{workers}"
                work.mkdir()
                proc, uri = _server(work / "server.db", work / "server.log")
                try:
                    rows.append(_one("server", uri, workers, args.rounds, work))
                finally:
                    proc.terminate()
                    proc.wait(timeout=60)
    bad = [r for r in rows if not (r["consistent"] and r["serialised"] and r["lost"] == 0
                                   and r["errors"] == 0)]
    print("goal (champion = last audit entry, 0 lost, 0 errors): "
          + ("met" if not bad else f"MISSED in {len(bad)} of {len(rows)} settings"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
