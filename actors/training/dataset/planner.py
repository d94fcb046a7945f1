"""How a dataset build cuts its sessions into tasks: by measured cost, not a fixed count.

A Ray task pays a fixed price (scheduling, a database connection, moving its result), so it
pays off only when it carries enough work; one too large leaves the other CPUs idle at the end
and makes the driver hold a large result. Each session has an estimated size in *units*
(`session_units`); the first chunks are one session each, and every finished task reports the
seconds and result bytes it took, so later chunks are cut to about `target_seconds` of work and
at most `max_result_bytes`, and near the end to an even share of what is left per worker, so
the last tasks finish together. Chunks are contiguous runs of the work list, which keeps the
output order, and so the files, the same however the work was cut.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["ChunkPlanner", "session_units"]

# Per screenshot embedded as a data URL, in events: reading and base64-encoding a ~100 KB frame
# and writing it into every example that shows it costs about as much as 40 events do (measured
# with `tracemill bench dataset`); the planner's calibration absorbs the rest of the error.
_UNITS_PER_EMBEDDED_FRAME = 40.0


def session_units(events: int, screenshots: int, embeds_images: bool) -> float:
    """A session's estimated cost: its events, plus its frames when they are embedded."""
    return 1.0 + max(events, 0) + (_UNITS_PER_EMBEDDED_FRAME * max(screenshots, 0) if embeds_images else 0.0)


class ChunkPlanner:
    def __init__(self, units: Sequence[float], *, workers: int, target_seconds: float,
                 max_result_bytes: int, max_sessions: int) -> None:
        self._units = list(units)
        self._next = 0
        self._remaining = sum(self._units)
        self._workers = max(workers, 1)
        self._target = target_seconds
        self._max_bytes = max_result_bytes
        self._max_sessions = max_sessions
        self._seconds = self._bytes = self._observed_units = 0.0

    @property
    def submitted(self) -> int:
        """Sessions handed out so far."""
        return self._next

    def observe(self, units: float, seconds: float, nbytes: int) -> None:
        """What a finished chunk of `units` took."""
        self._observed_units += units
        self._seconds += seconds
        self._bytes += nbytes

    def units(self, chunk: range) -> float:
        return sum(self._units[i] for i in chunk)

    def next(self) -> range | None:
        """The next chunk (indices into the work list), or None when everything is handed out."""
        if self._next >= len(self._units):
            return None
        budget = self._budget()
        end, taken = self._next, 0.0
        while end < len(self._units) and end - self._next < self._max_sessions:
            if end > self._next and taken + self._units[end] > budget:
                break
            taken += self._units[end]
            end += 1
        chunk = range(self._next, end)
        self._next, self._remaining = end, self._remaining - taken
        return chunk

    def _budget(self) -> float:
        """Units the next chunk may hold: nothing is known yet, one session (a probe)."""
        if not self._observed_units:
            return 0.0
        budget = self._remaining / self._workers  # near the end: an even share per worker
        if self._seconds > 0:
            budget = min(budget, self._target * self._observed_units / self._seconds)
        if self._bytes > 0:
            budget = min(budget, self._max_bytes * self._observed_units / self._bytes)
        return budget
