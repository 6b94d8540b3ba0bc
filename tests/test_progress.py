"""Progress lines: a real tiny training prints epoch lines with the metric and an ETA, and never
leaves 30 s without a line (on a fake clock: 5 s pass at every look at the clock, so the whole
run spans minutes of "time" in about a second); heartbeats cover phases without steps; the
local pipeline run echoes the steps' progress lines to the console and nothing else of theirs.
"""

from __future__ import annotations

import io
import re
import threading
import time

import pytest
from _training import make_roadwork

import roadvision.progress as progress
from roadvision.progress import PREFIX, EpochProgress, Heartbeat

TICK_S = 5.0


class FakeClock:
    """Each reading advances time by ``TICK_S`` (thread-safe: the heartbeat thread reads it)."""

    def __init__(self) -> None:
        self.now, self._lock = 1000.0, threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            self.now += TICK_S
            return self.now


class StampedStream(io.StringIO):
    """Records the fake time at which each line was written."""

    def __init__(self, fake: FakeClock) -> None:
        super().__init__()
        self.fake, self.lines = fake, []

    def write(self, text: str) -> int:
        for line in text.splitlines():
            self.lines.append((self.fake.now, line))
        return super().write(text)


@pytest.fixture
def loud(monkeypatch):
    """Progress on (the suite runs with ROADVISION_QUIET=1), a fresh process state."""
    monkeypatch.setenv("ROADVISION_QUIET", "0")
    monkeypatch.setenv(progress.INTERVAL_ENV, "20")
    # the same object (modules hold it by name), its fields reset and restored afterwards
    for name, value in (("status", ""), ("status_since", 0.0), ("last_line", progress.clock())):
        monkeypatch.setattr(progress.STATE, name, value)


def test_training_prints_epoch_lines_with_eta_and_no_30s_gap(tmp_path, monkeypatch, loud):
    from roadvision.training import TrainConfig, train

    fake = FakeClock()
    monkeypatch.setattr(progress, "clock", fake)
    progress.STATE.touch()  # the state's clock is the fake one from here on
    stream = StampedStream(fake)
    monkeypatch.setattr("sys.stderr", stream)
    data = make_roadwork(tmp_path / "data", n=24, size=32)
    cfg = TrainConfig.for_profile("tiny", "roadwork", epochs=2, batch_size=4, patience=0,
                                  max_steps_per_epoch=3)
    started = fake.now
    result = train(data, tmp_path / "run", cfg)
    ended = fake.now

    lines = [(t, line) for t, line in stream.lines if line.startswith(PREFIX)]
    assert lines, stream.getvalue()
    epoch = re.compile(r"train epoch (\d)/2: loss \d+\.\d{4}, val mcc -?\d\.\d{4} "
                       r"\(best -?\d\.\d{4}\), \S+ elapsed, ETA (\S+)$")
    epochs = [m for _, line in lines if (m := epoch.search(line))]
    assert [m[1] for m in epochs] == ["1", "2"], stream.getvalue()
    assert epochs[-1][2] == "0s" and epochs[0][2] != "0s"  # the ETA counts down to zero
    assert float(epochs[-1][0].split("best ")[1].rstrip(")").split(")")[0]) == \
        pytest.approx(result.best_metric, abs=1e-4)
    steps = [line for _, line in lines if re.search(r"epoch \d/2 step \d+/\d+, \S+ elapsed, "
                                                    r"ETA \S+$", line)]
    assert steps, "no step line within epochs although 20 s passed between steps"
    times = [started, *(t for t, _ in lines), ended]
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert max(gaps) <= 30, (max(gaps), stream.getvalue())
    assert ended - started > 40  # the run was long in fake time: the check above meant it


def test_resumed_run_counts_its_eta_from_its_own_epochs(monkeypatch, loud):
    fake = FakeClock()
    monkeypatch.setattr(progress, "clock", fake)
    out = io.StringIO()
    run = EpochProgress("distill", epochs=10, steps_per_epoch=4, first_epoch=8, out=out)
    run.start_epoch(8)
    run.end_epoch(0.5, "val mcc", 0.25, 0.3)
    # its one epoch took one tick (5 s): one epoch is left
    assert out.getvalue().strip() == (f"{PREFIX}distill epoch 9/10: loss 0.5000, val mcc 0.2500 "
                                      "(best 0.3000), 5s elapsed, ETA 5s")


def test_heartbeat_speaks_in_a_silent_phase_and_prefers_the_status(monkeypatch, loud):
    out = io.StringIO()
    with Heartbeat(lambda: "loading the model", interval=0.05, out=out):
        time.sleep(0.6)
    beats = out.getvalue().splitlines()
    assert len(beats) >= 2 and all(re.fullmatch(rf"{PREFIX}loading the model \(\S+ elapsed\)", b)
                                   for b in beats), beats
    progress.STATE.set_status("pipeline still running: train x2")
    out = io.StringIO()
    with Heartbeat(lambda: "ignored", interval=0.05, out=out):
        time.sleep(0.3)
    assert out.getvalue().startswith(f"{PREFIX}pipeline still running: train x2 (")


def test_a_recent_line_holds_the_heartbeat_back(monkeypatch, loud):
    out = io.StringIO()
    beat = Heartbeat(lambda: "x", interval=30, out=out)
    progress.emit("something happened", io.StringIO())
    assert beat.check() is False and out.getvalue() == ""


def test_quiet_prints_nothing(monkeypatch):
    monkeypatch.setenv("ROADVISION_QUIET", "1")
    out = io.StringIO()
    run = EpochProgress("train", epochs=1, steps_per_epoch=1, out=out, interval=0.0001)
    run.step(1)
    run.end_epoch(0.1, "val mcc", 0.2, 0.2)
    assert out.getvalue() == ""


def test_local_run_echoes_progress_lines_and_follows_steps(monkeypatch, loud):
    from roadvision.pipelines.local import _Tee

    log, console = io.StringIO(), io.StringIO()
    tee = _Tee(log, console)
    tee.write("12:00:00.000 - INFO - Executing task \x1b[96m'train'\x1b[0m\n")
    tee.write("12:00:00.001 - INFO - Executing task 'train'\n")
    tee.write("    step chatter the console must not get\n")
    tee.write(f"    {PREFIX}train-member-0 epoch 1/2 step 3/9, 21s elapsed, ETA 2m")
    assert PREFIX not in console.getvalue()  # not before the line is complete
    tee.write("\n")
    assert progress.STATE.status == "pipeline still running: train x2"
    tee.write("12:00:09.000 - INFO - Task 'train' finished with status SUCCESS\n")
    assert progress.STATE.status == "pipeline still running: train"
    shown = console.getvalue().splitlines()
    assert f"{PREFIX}train-member-0 epoch 1/2 step 3/9, 21s elapsed, ETA 2m" in shown
    assert not any("chatter" in line for line in shown) and "chatter" in log.getvalue()
    assert len(shown) == 4
