"""Progress for every long loop: a rich bar on a terminal, and plain lines everywhere.

Two kinds of output, because a user watches runs in two kinds of places:

* ``track`` draws a rich progress bar, only when stderr is a terminal (a bar in a pipeline
  step's log or a CI log is noise).
* Progress *lines* (``emit``, ``EpochProgress``, ``Heartbeat``) are plain text that survives
  any log: a kfp.local step's output (``pipelines/local.py`` echoes every line starting with
  ``PREFIX``), ``make demo``, a pod's log. They come at least every ``interval_s()`` seconds
  (``ROADVISION_PROGRESS_INTERVAL``, default 20 s, so that no 30 s pass without a line).

``ROADVISION_QUIET=1`` switches both off (the test suite sets it).

The process shares one progress state (``STATE``): when the last line was printed and what is
running now, so that two heartbeats watching the same process (the demo's and the local
pipeline run's) neither both speak nor repeat what a real progress line just said.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TextIO, TypeVar

T = TypeVar("T")

#: Every progress line starts with this, so that a log reader can pick the lines out.
PREFIX = "progress: "
INTERVAL_ENV = "ROADVISION_PROGRESS_INTERVAL"
DEFAULT_INTERVAL_S = 20.0



def clock() -> float:
    """The one clock of every progress line (a test replaces it with a fake one)."""
    return time.monotonic()


def quiet() -> bool:
    """``ROADVISION_QUIET`` set to anything but ""/"0": no bars, no progress lines."""
    return os.environ.get("ROADVISION_QUIET", "") not in ("", "0")


def interval_s() -> float:
    """Seconds between progress lines at most (``ROADVISION_PROGRESS_INTERVAL``)."""
    try:
        value = float(os.environ.get(INTERVAL_ENV, DEFAULT_INTERVAL_S))
    except ValueError:
        return DEFAULT_INTERVAL_S
    return value if value > 0 else DEFAULT_INTERVAL_S


def format_duration(seconds: float) -> str:
    """``42s``, ``3m05s``, ``1h02m``: what a person reads at a glance."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


@dataclass
class ProgressState:
    """The process's progress: when it last printed a line, and what runs now."""

    last_line: float = field(default_factory=lambda: clock())
    status: str = ""
    status_since: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def set_status(self, text: str) -> None:
        """What runs now ("" for nothing); a heartbeat counts its elapsed time from here."""
        if text != self.status:
            self.status, self.status_since = text, clock()

    def touch(self, now: float | None = None) -> None:
        """A line reached the user now (a progress line, or a console line that says as much)."""
        self.last_line = clock() if now is None else now


STATE = ProgressState()


def emit(text: str, out: TextIO | None = None, *, now: float | None = None) -> None:
    """Print one progress line (``PREFIX`` + ``text``) and flush it; nothing when quiet."""
    if quiet():
        return
    # sys.stderr is looked up now, not at import: rich (and pytest) swap it while they run.
    stream = out if out is not None else sys.stderr
    stream.write(f"{PREFIX}{text}\n")
    stream.flush()
    STATE.touch(now)


def track(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """Yield from ``items`` with a rich progress bar on stderr when stderr is a terminal."""
    if quiet() or not sys.stderr.isatty():
        yield from items
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, transient=True) as progress:
        task = progress.add_task(description, total=total)
        for item in items:
            yield item
            progress.advance(task)


class Heartbeat:
    """Print ``describe()`` (or ``STATE.status`` when set) whenever no progress line came for
    ``interval`` seconds, from a background thread while the ``with`` block runs.

    For phases that have no steps to count: a model loading, a validation pass, a pipeline
    step that prints nothing. ``check()`` is the thread's whole work, callable by a test.
    """

    def __init__(self, describe: Callable[[], str], *, interval: float | None = None,
                 out: TextIO | None = None, prefer_status: bool = True) -> None:
        self.describe, self.out = describe, out
        self.interval = interval or interval_s()
        self.prefer_status = prefer_status
        self.started: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def check(self) -> bool:
        """Print the heartbeat line if one is due; True when it printed."""
        now = clock()
        with STATE.lock:
            if now - STATE.last_line < self.interval:
                return False
            if self.prefer_status and STATE.status:
                what, since = STATE.status, STATE.status_since
            else:
                what, since = self.describe(), now if self.started is None else self.started
            emit(f"{what} ({format_duration(now - since)} elapsed)", self.out, now=now)
            STATE.touch(now)  # also when quiet: the next check waits a whole interval again
        return True

    def _run(self) -> None:
        while not self._stop.wait(min(1.0, self.interval / 4)):
            self.check()

    def __enter__(self) -> Heartbeat:
        self.started = clock()
        if not quiet():
            self._thread = threading.Thread(target=self._run, name="progress-heartbeat",
                                            daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)


class EpochProgress:
    """The lines of one training run: a step line at least every ``interval`` seconds within
    an epoch (steps done/total, elapsed, ETA), and one line per epoch (loss, validation metric,
    best so far, elapsed, ETA).

    ETA counts from this call's own epochs only (a resumed run does not credit the epochs it
    skipped) and assumes the remaining epochs all run (early stopping may end sooner).
    """

    def __init__(self, label: str, epochs: int, steps_per_epoch: int, *, first_epoch: int = 0,
                 out: TextIO | None = None, interval: float | None = None) -> None:
        self.label, self.epochs = label, epochs
        self.steps_per_epoch = max(1, steps_per_epoch)
        self.first_epoch, self.epoch, self.out = first_epoch, first_epoch, out
        self.interval = interval or interval_s()
        self.started = clock()
        self.steps_done = 0  # over this call's epochs

    def _eta(self, now: float, work_done: float, work_left: float) -> str:
        if work_done <= 0:
            return "ETA unknown"
        return f"ETA {format_duration((now - self.started) / work_done * work_left)}"

    def _line(self, text: str, now: float) -> None:
        emit(f"{self.label} {text}", self.out, now=now)

    def start_epoch(self, epoch: int) -> None:
        """``epoch`` counts from 0; the lines count from 1."""
        self.epoch = epoch

    def step(self, done: int) -> None:
        """``done`` steps of the current epoch are finished: a line if one is due."""
        self.steps_done += 1
        now = clock()
        if now - STATE.last_line < self.interval:
            return
        total = self.steps_per_epoch * (self.epochs - self.first_epoch)
        self._line(f"epoch {self.epoch + 1}/{self.epochs} step {done}/{self.steps_per_epoch}, "
                   f"{format_duration(now - self.started)} elapsed, "
                   f"{self._eta(now, self.steps_done, total - self.steps_done)}", now)

    def validating(self) -> Heartbeat:
        """A heartbeat for the validation pass (no steps to count there)."""
        epoch = f"epoch {self.epoch + 1}/{self.epochs}"
        return Heartbeat(lambda: f"{self.label} {epoch} validating", out=self.out,
                         interval=self.interval, prefer_status=False)

    def end_epoch(self, loss: float, metric: str, value: float, best: float) -> None:
        now = clock()
        ran = self.epoch + 1 - self.first_epoch
        self._line(f"epoch {self.epoch + 1}/{self.epochs}: loss {loss:.4f}, {metric} {value:.4f} "
                   f"(best {best:.4f}), {format_duration(now - self.started)} elapsed, "
                   f"{self._eta(now, ran, self.epochs - self.epoch - 1)}", now)
