"""A circuit breaker for one imagery provider: stop asking a provider that keeps failing.

closed -> (``threshold`` consecutive failures) open: skipped at once, with the reason ->
(``cooldown_s`` later) half-open: one trial fetch -> closed on success, open again on failure.
The clock is injectable (a ``time.monotonic``-like callable), so tests need no sleeps.
``roadvision.geo.providers`` keeps one per tile provider.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Breaker", "CircuitState"]


@dataclass(frozen=True)
class CircuitState:
    """A tile provider's circuit breaker as it stands (:meth:`ImageryChain.circuits`)."""

    state: str  # closed | open (skipped until the cooldown ends) | half-open (a trial next)
    failures: int  # consecutive fetch failures (0 after a success)
    total_failures: int  # every fetch failure since the chain was built
    last_error: str | None  # the last failure's reason
    retry_in_s: float | None  # open: seconds until a trial fetch is let through

    @property
    def open(self) -> bool:
        return self.state == "open"

    def describe(self) -> str:
        """One line for the providers table."""
        if self.state == "closed":
            return "closed"
        return (f"{self.state} after {_failures(self.failures)} (last: {self.last_error})"
                + (f"; retried in {math.ceil(self.retry_in_s or 0)} s" if self.open else
                   "; the next fetch is a trial"))


def _failures(n: int) -> str:
    return f"{n} consecutive failure{'s' if n != 1 else ''}"


class Breaker:
    """One tile provider's circuit: closed -> (``threshold`` consecutive failures) open ->
    (``cooldown_s`` later) half-open: one trial fetch -> closed on success, open on failure.
    Every method holds the lock: the areas route plans on the event loop and fetches on its
    worker thread, and a CLI may read from several threads."""

    def __init__(self, threshold: int, cooldown_s: float, clock: Callable[[], float]):
        self.threshold = threshold
        self.cooldown_s = cooldown_s
        self.clock = clock
        self._lock = threading.Lock()
        self._failures = 0  # consecutive
        self._total = 0
        self._last: str | None = None
        self._opened_at: float | None = None  # None: closed
        self._trial = False  # half-open: the trial fetch is in flight

    def _state(self, now: float) -> str:
        if self._opened_at is None:
            return "closed"
        return "open" if now < self._opened_at + self.cooldown_s else "half-open"

    def _refusal(self, now: float) -> str | None:
        state = self._state(now)
        if state == "open":
            wait = max(1, math.ceil(self._opened_at + self.cooldown_s - now))  # type: ignore[operator]
            return (f"circuit open after {_failures(self._failures)} (last: {self._last}); "
                    f"retried in {wait} s")
        if state == "half-open" and self._trial:
            return (f"circuit half-open after {_failures(self._failures)} (last: "
                    f"{self._last}); a trial fetch is in flight")
        return None

    def refusal(self) -> str | None:
        """Why the provider is skipped now (None: it may be asked); claims nothing."""
        with self._lock:
            return self._refusal(self.clock())

    def acquire(self) -> str | None:
        """Before a fetch: None to go ahead (half-open: this fetch is the trial), else why
        not. Every None is followed by :meth:`succeeded`, :meth:`failed` or :meth:`release`."""
        with self._lock:
            now = self.clock()
            refusal = self._refusal(now)
            if refusal is None and self._state(now) == "half-open":
                self._trial = True
            return refusal

    def succeeded(self) -> None:
        with self._lock:
            self._failures, self._opened_at, self._trial = 0, None, False

    def failed(self, reason: str) -> None:
        with self._lock:
            self._failures += 1
            self._total += 1
            self._last = reason
            if self._trial or self._failures >= self.threshold:
                self._opened_at = self.clock()  # (re)opened: a full cooldown from now
            self._trial = False

    def release(self) -> None:
        """The fetch said nothing on the provider's health (a 404, too many tiles)."""
        with self._lock:
            self._trial = False

    def snapshot(self) -> CircuitState:
        with self._lock:
            now = self.clock()
            state = self._state(now)
            retry = (self._opened_at + self.cooldown_s - now  # type: ignore[operator]
                     if state == "open" else None)
            return CircuitState(state, self._failures, self._total, self._last, retry)
