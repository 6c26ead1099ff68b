"""Periodic progress lines on stderr for long-running commands.

A :class:`Progress` is polled by the caller's own loop (``tick``) instead of running a task of
its own, so it never interleaves with a half-written line and costs one clock read per call.
It promises at most one line per ``interval_s`` and nothing at all when disabled.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

#: Seconds between two progress lines.
DEFAULT_INTERVAL_S = 2.0


class Progress:
    """Rate-limited progress reporting: ``label: 12,000 done (5,800/s) acked 11,900``."""

    def __init__(
        self,
        label: str,
        *,
        enabled: bool = True,
        interval_s: float = DEFAULT_INTERVAL_S,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label = label
        self.enabled = enabled
        self.interval_s = interval_s
        self._stream = stream if stream is not None else sys.stderr
        self._clock = clock
        self._started = clock()
        self._last_at = self._started
        self._last_done = 0

    def tick(self, done: int, **extra: object) -> bool:
        """Print one line if enabled and the interval has passed; True if a line was printed."""
        if not self.enabled:
            return False
        now = self._clock()
        if now - self._last_at < self.interval_s:
            return False
        rate = (done - self._last_done) / max(now - self._last_at, 1e-9)
        self._last_at, self._last_done = now, done
        self._emit(f"{done:,} done ({rate:,.0f}/s)", extra)
        return True

    def finish(self, done: int, **extra: object) -> None:
        """Print the closing line with the average rate (only if enabled)."""
        if not self.enabled:
            return
        elapsed = max(self._clock() - self._started, 1e-9)
        self._emit(f"{done:,} done in {elapsed:.1f}s ({done / elapsed:,.0f}/s)", extra)

    @property
    def elapsed_s(self) -> float:
        return self._clock() - self._started

    def _emit(self, head: str, extra: dict[str, object]) -> None:
        tail = "".join(
            f", {key.replace('_', ' ')} {value:,}" if isinstance(value, int) else f", {key} {value}"
            for key, value in extra.items()
        )
        print(f"{self.label}: {head}{tail}", file=self._stream, flush=True)


def stderr_is_tty() -> bool:
    """Whether a human is probably watching stderr."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False
