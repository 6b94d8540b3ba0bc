"""What the training benchmarks share: their parser, their common flags and their main() tail.

``bench_cross_domain``, ``bench_thin_lines`` and ``bench_pseudo_label`` each take
their own flags, then the same ones (``--n``, ``--epochs``, ``--max-steps``, ``--seed``,
``--threads``, ``--work``, ``--json``), and end the same way: a work folder (kept with
``--work``, else a temporary one), the run, its table, how long it took, the rows as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

Rows = list[dict[str, Any]]


def bench_parser(module: str, doc: str | None) -> argparse.ArgumentParser:
    """The parser of ``python -m benchmarks.<module>``; its help is the module docstring."""
    return argparse.ArgumentParser(prog=f"python -m benchmarks.{module}", description=doc,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)


def add_common_arguments(parser: argparse.ArgumentParser, *, samples_help: str,
                         epochs_help: str | None = None, jobs: bool = True,
                         threads_default: int = 1,
                         threads_help: str = "torch threads per training") -> None:
    """The flags every training benchmark takes, after its own. ``jobs``: it runs trainings in
    parallel processes (``--jobs``)."""
    parser.add_argument("--n", type=int, default=None, help=samples_help)
    parser.add_argument("--epochs", type=int, default=None, help=epochs_help)
    parser.add_argument("--max-steps", type=int, default=None, help="cap batches per epoch")
    parser.add_argument("--seed", type=int, default=0)
    if jobs:
        parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1),
                            help="trainings at a time, one process each")
    parser.add_argument("--threads", type=int, default=threads_default, help=threads_help)
    parser.add_argument("--work", type=Path, default=None, help="keep data and runs here")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")


def run_and_report(name: str, args: argparse.Namespace, run: Callable[[argparse.Namespace], Rows],
                   print_table: Callable[[Rows], None]) -> Rows:
    """Run ``run(args)`` in ``args.work`` (made absolute; a temporary folder when unset), print
    its table and time, write the rows to ``--json``; returns the rows."""
    import torch  # here, not at import: the parser and --help need no torch

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        args.work = (args.work or Path(tmp)).resolve()
        args.work.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        rows = run(args)
        print_table(rows)
        print(f"({name} took {time.perf_counter() - t0:.0f} s)")
        if args.json:
            args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return rows
