"""Process trees from /proc: who belongs to a server, how much CPU it used, freezing it.

CPU time is user + system of every live process in the tree, plus the time of children they
have reaped (``cutime``/``cstime``), so a worker that exits within a phase still counts.
"""

from __future__ import annotations

import contextlib
import os
from typing import NamedTuple

CLK_TCK = os.sysconf("SC_CLK_TCK")


class ProcStat(NamedTuple):
    ppid: int
    cpu: float  # user + system seconds, reaped children included
    start: int  # start time in clock ticks since boot: tells a reused pid apart
    session: int


def proc_stats() -> dict[int, ProcStat]:
    """Every process now alive, from /proc/<pid>/stat."""
    out = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as handle:
                text = handle.read()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2:].split()  # after "pid (comm) "
        ticks = sum(int(value) for value in fields[11:15])  # utime stime cutime cstime
        out[int(entry.name)] = ProcStat(int(fields[1]), ticks / CLK_TCK, int(fields[19]),
                                        int(fields[3]))
    return out


def tree(roots: list[int], stats: dict[int, ProcStat] | None = None) -> list[int]:
    """The live pids of ``roots`` and all their descendants."""
    stats = stats if stats is not None else proc_stats()
    children: dict[int, list[int]] = {}
    for pid, stat in stats.items():
        children.setdefault(stat.ppid, []).append(pid)
    found, todo = [], [pid for pid in roots if pid in stats]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, [])
    return found


def tree_cpu(roots: list[int]) -> float:
    stats = proc_stats()
    return sum(stats[pid].cpu for pid in tree(roots, stats))


def signal_tree(roots: list[int], sig: int) -> None:
    for pid in tree(roots):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
