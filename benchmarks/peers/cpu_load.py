"""A bounded background CPU load: processes each burning a fixed share of one core.

    python -m benchmarks.peers.cpu_load [--duty 0.5] [--period_ms 10] [--max_seconds 1800]

runs one such process; ``Load`` starts one per core (each in its own session) and stops them.

In every period it spins (pure-Python arithmetic, holding no lock anyone else needs) until it
has used ``duty * period`` of CPU time, then sleeps for what is left of the period. Under
contention the burn takes longer and the sleep shrinks, so the process never uses more than
``duty`` of a core on average, and it still asks for its share like real work does. It exits
by itself after ``max_seconds`` in case whoever started it dies without stopping it.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.peers.proctree import tree_cpu

REPO = Path(__file__).resolve().parents[2]


def burn(duty: float, period_s: float, max_seconds: float) -> None:
    budget = duty * period_s
    end = time.monotonic() + max_seconds
    x = 1.0
    while time.monotonic() < end:
        start = time.monotonic()
        cpu_start = time.process_time()
        while time.process_time() - cpu_start < budget:
            for _ in range(200):
                x = x * 1.000001 + 1e-9
        time.sleep(max(0.0, start + period_s - time.monotonic()))


class Load:
    """``os.cpu_count()`` load processes, each using at most ``duty`` of a core."""

    def __init__(self, duty: float, max_seconds: float, log: Path) -> None:
        self.log = open(log, "ab")  # noqa: SIM115 - closed in stop()
        self.procs = [subprocess.Popen(
            [sys.executable, "-m", "benchmarks.peers.cpu_load", "--duty", str(duty),
             "--max_seconds", str(max_seconds)], stdout=self.log, stderr=subprocess.STDOUT,
            cwd=REPO, start_new_session=True) for _ in range(os.cpu_count() or 1)]
        self.started = time.monotonic()
        self.cpu_start = tree_cpu([p.pid for p in self.procs])

    def used_cores(self) -> float:
        """The load's measured CPU use so far, in cores."""
        cpu = tree_cpu([p.pid for p in self.procs]) - self.cpu_start
        return cpu / max(1e-9, time.monotonic() - self.started)

    def stop(self) -> float:
        """Stop every load process; returns the cores they used on average."""
        used = self.used_cores()
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.log.close()
        return used


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duty", type=float, default=0.5, help="share of one core, 0..1")
    parser.add_argument("--period_ms", type=float, default=10.0)
    parser.add_argument("--max_seconds", type=float, default=1800.0)
    args = parser.parse_args(argv)
    if not 0.0 < args.duty <= 1.0:
        parser.error("--duty must be in (0, 1]")
    burn(args.duty, args.period_ms / 1000, args.max_seconds)


if __name__ == "__main__":
    main()
