"""Concurrent promotes from real processes against one registry (a SQLite file or a server).

``race()`` starts ``workers`` processes (this file run as a script), lets them all go at once
and has each promote ``rounds`` versions back to back; ``check()`` then reads the registry and
counts what the issue measured: does ``@champion`` equal the last champion audit entry (and
the champion history), and is any call's audit entry missing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class RaceResult:
    calls: int
    ok: int
    errors: list[str] = field(default_factory=list)
    champion: str | None = None
    last_audit: str | None = None
    history_last: str | None = None
    lost: int = 0  # successful calls whose audit entry is not in the log
    race_s: float = 0.0  # from "go" until the last worker finished (process start excluded)

    @property
    def consistent(self) -> bool:
        return self.champion == self.last_audit == self.history_last


def check(model: str, reasons: list[str], ok: int, calls: int,
          errors: list[str]) -> RaceResult:
    """Read the registry after a race; ``reasons`` are the successful calls' unique reasons."""
    from roadvision import registry

    log = registry.audit_log(model)
    champion_entries = [e for e in log if e.get("alias") == registry.CHAMPION]
    recorded = {e.get("reason") for e in champion_entries}
    history = registry.champion_history(model)
    current = registry.champion(model)
    return RaceResult(calls=calls, ok=ok, errors=errors,
                      champion=current.version if current else None,
                      last_audit=champion_entries[-1]["version"] if champion_entries else None,
                      history_last=history[-1] if history else None,
                      lost=sum(1 for r in reasons if r not in recorded))


def race(tracking_uri: str, model: str, versions: list[str], *, workers: int = 3,
         rounds: int = 4, workdir: Path, env: dict[str, str] | None = None,
         timeout: float = 300) -> RaceResult:
    """``workers`` processes promote ``rounds`` versions each, all at once."""
    go = workdir / f"go-{time.monotonic_ns()}"
    procs = []
    for w in range(workers):
        plan = [versions[(w + r) % len(versions)] for r in range(rounds)]
        procs.append(subprocess.Popen(
            [sys.executable, __file__, tracking_uri, model, str(go), f"w{w}", ",".join(plan)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, **(env or {})}))
    try:
        for proc in procs:  # every worker has imported MLflow and waits: start them together
            line = proc.stdout.readline()
            if line.strip() != "ready":
                raise RuntimeError(f"race worker did not start: {line}{proc.stderr.read()}")
        go.touch()
        started = time.perf_counter()
        outputs = [proc.communicate(timeout=timeout) for proc in procs]
        race_s = time.perf_counter() - started
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    reasons, errors, ok = [], [], 0
    for out, err in outputs:
        for line in out.splitlines():
            record = json.loads(line)
            if record["ok"]:
                ok += 1
                reasons.append(record["reason"])
            else:
                errors.append(record["error"])
        if "Traceback" in err:
            errors.append(err.strip().splitlines()[-1])
    result = check(model, reasons, ok, workers * rounds, errors)
    result.race_s = race_s
    return result


def _worker(tracking_uri: str, model: str, go: str, name: str, plan: str) -> None:
    os.environ["MLFLOW_TRACKING_URI"] = tracking_uri  # the store the registry functions use
    from roadvision import registry
    from roadvision.errors import UserError

    registry.champion(model)  # warm: first-call costs are not part of the race
    print("ready", flush=True)
    while not Path(go).exists():
        time.sleep(0.005)
    for i, version in enumerate(plan.split(",")):
        reason = f"{name} call {i} -> v{version}"
        try:
            registry.promote(model, version, reason=reason, by=name)
            print(json.dumps({"ok": True, "reason": reason}), flush=True)
        except UserError as exc:
            print(json.dumps({"ok": False, "error": str(exc)}), flush=True)


if __name__ == "__main__":
    _worker(*sys.argv[1:6])
