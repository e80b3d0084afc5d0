"""Progress lines for long loops: "how far, how fast, how long still", at most every few seconds.

One format for every long step (training steps, collect/clean splits, prediction chunks), so a person reading
an Airflow task log or ``make demo``'s terminal sees the same thing, and ``sentiflow.localstack.demo`` can
pick these lines out of task logs by their marker (``PROGRESS_MARK``).
"""

from __future__ import annotations

import time
from collections.abc import Callable

#: Every progress line contains this; ``sentiflow.localstack.demo`` echoes task-log lines that carry it.
PROGRESS_MARK = "[progress]"


def format_duration(seconds: float) -> str:
    """``75`` → ``1m15s``; ``3725`` → ``1h02m05s``; short and unambiguous in a log line."""
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def progress_line(
    what: str,
    done: int,
    total: int | None,
    elapsed_s: float,
    *,
    unit: str = "items",
    rate: float | None = None,
) -> str:
    """``[progress] train: step 30/125 (24%) | 13.1 samples/s | elapsed 1m02s | ETA 3m20s``."""
    parts = [f"{PROGRESS_MARK} {what}: {done}/{total}" if total else f"{PROGRESS_MARK} {what}: {done}"]
    if total:
        parts[0] += f" ({100.0 * done / total:.0f}%)"
    if rate is None and elapsed_s > 0:
        rate = done / elapsed_s
    if rate:
        parts.append(f"{rate:.1f} {unit}/s")
    parts.append(f"elapsed {format_duration(elapsed_s)}")
    if total and done and done < total:
        parts.append(f"ETA {format_duration(elapsed_s * (total - done) / done)}")
    return " | ".join(parts)


class ProgressReporter:
    """Call ``update(done)`` as often as you like; it logs at most every ``every_s`` seconds, and at the end.

    ``rate_of`` turns ``done`` into the rate's quantity (e.g. steps → samples) when they differ.
    """

    def __init__(
        self,
        what: str,
        total: int | None,
        log: Callable[[str], None],
        *,
        every_s: float = 5.0,
        unit: str = "items",
        rate_of: Callable[[int], float] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.what, self.total, self.log, self.every_s, self.unit = what, total, log, every_s, unit
        self.rate_of = rate_of
        self.clock = clock
        self.started = clock()
        self._last = self.started
        self.lines = 0

    def update(self, done: int, *, force: bool = False) -> bool:
        """Log a line if ``every_s`` passed since the last one, or at the end, or when forced."""
        now = self.clock()
        finished = self.total is not None and done >= self.total
        if not (force or finished or now - self._last >= self.every_s):
            return False
        elapsed = now - self.started
        rate = self.rate_of(done) / elapsed if self.rate_of and elapsed > 0 else None
        self.log(progress_line(self.what, done, self.total, elapsed, unit=self.unit, rate=rate))
        self._last = now
        self.lines += 1
        return True
