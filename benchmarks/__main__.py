"""``python -m benchmarks [AREA ...]`` (``make bench``): run the benchmarks, printing figures.

With no AREA, runs the quick set: data, models, serving, pipeline and the ML training-loop
throughput. The long ML benchmarks (each planned under 40 minutes on 2 CPU cores) are run by
name: ``make bench BENCH_ARGS="ml-lanes ml-roadwork ml-ablation ml-student ml-pretrained"``;
the serving peers comparison (about 12 minutes, side environments installed on first use) is
``make bench BENCH_ARGS=peers``.
Figures and the commands that produced them are kept in ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import subprocess
import sys

COMMANDS: dict[str, list[str]] = {
    "data": ["benchmarks.bench_data"],
    "models": ["benchmarks.bench_models"],
    "fuse": ["benchmarks.bench_fuse"],
    "serving": ["benchmarks.bench_serving"],
    "peers": ["benchmarks.bench_peers"],
    "reliability": ["benchmarks.bench_reliability"],
    "registry": ["benchmarks.bench_registry"],
    "pipeline": ["benchmarks.bench_pipeline"],
    "ml-throughput": ["benchmarks.bench_ml", "throughput"],
    "ml-lanes": ["benchmarks.bench_ml", "lanes"],
    "ml-roadwork": ["benchmarks.bench_ml", "roadwork"],
    "ml-ablation": ["benchmarks.bench_ml", "ablation"],
    "ml-student": ["benchmarks.bench_ml", "student"],
    "ml-pretrained": ["benchmarks.bench_ml", "pretrained"],
    "cross-domain": ["benchmarks.bench_cross_domain"],
    "cross-domain-quick": ["benchmarks.bench_cross_domain", "--quick"],
    "drift": ["benchmarks.bench_drift"],
    "geo": ["benchmarks.bench_geo"],
    "geo-areas": ["benchmarks.bench_geo", "--areas"],
    "thin-lines": ["benchmarks.bench_thin_lines"],
    "thin-lines-quick": ["benchmarks.bench_thin_lines", "--quick"],
    "pseudo-label": ["benchmarks.bench_pseudo_label"],
    "pseudo-label-quick": ["benchmarks.bench_pseudo_label", "--quick"],
    "sweep": ["benchmarks.bench_sweep"],
    "sweep-quick": ["benchmarks.bench_sweep", "--quick"],
}
QUICK = ["data", "models", "serving", "pipeline", "ml-throughput"]


def main(argv: list[str]) -> int:
    names = argv or QUICK
    unknown = [name for name in names if name not in COMMANDS]
    if unknown:
        print(f"unknown benchmark(s) {unknown}; choose from {sorted(COMMANDS)}", file=sys.stderr)
        return 2
    failed = []
    for name in names:
        print(f"\n=== {name} ===", flush=True)
        module, *args = COMMANDS[name]
        if subprocess.run([sys.executable, "-m", module, *args]).returncode != 0:
            failed.append(name)
    if failed:
        print(f"failed: {failed}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
