"""When a batch map looks at a job again: a poll schedule learnt from how long the batch's jobs took.

Every poll costs the client a request and RunPod a slot of the status rate limit; every late poll costs the
batch throughput, since a finished job holds its in-flight slot until we see it. Completion times in a
batch are spread by queueing and worker pick-up (not by the task), so polling at the mean misses half the
jobs, and a backoff after a miss polls far too late for the rest. The schedule instead polls at quantiles of
recent completion times: at the 70th percentile (most jobs are done), again at the 95th (nearly all are),
then backs off from their spread, doubling, for stragglers. Completion times are RunPod's own ``delayTime +
executionTime``, not when we happened to see the job, so the estimate does not feed on our polling.
"""

from __future__ import annotations

import threading
from collections import deque

QUANTILES = (0.7, 0.95)


class PollSchedule:
    def __init__(
        self,
        *,
        initial_s: float = 0.25,
        window: int = 64,
        min_samples: int = 8,
        min_gap_s: float = 0.05,
        max_gap_s: float = 5.0,
    ) -> None:
        self.initial_s = initial_s
        self.min_samples = min_samples
        self.min_gap_s = min_gap_s
        self.max_gap_s = max_gap_s
        self._took_s: deque[float] = deque(maxlen=window)
        self._lock = threading.Lock()

    def observe(self, took_s: float) -> None:
        """A job of this batch completed ``took_s`` after it was submitted (by RunPod's account)."""
        with self._lock:
            self._took_s.append(took_s)

    def _first_offsets_s(self) -> list[float]:
        with self._lock:
            samples = sorted(self._took_s)
        if len(samples) < self.min_samples:
            return [sum(samples) / len(samples) if samples else self.initial_s]
        offsets: list[float] = []
        for q in QUANTILES:
            offset = samples[min(len(samples) - 1, int(q * len(samples)))]
            offsets.append(max(offset, offsets[-1] + self.min_gap_s) if offsets else offset)
        return offsets

    def offset_s(self, poll: int) -> float:
        """Seconds after submission at which to make poll number ``poll`` (0 for the first)."""
        offsets = self._first_offsets_s()
        if poll < len(offsets):
            return offsets[poll]
        # Stragglers: back off from the spread of the quantiles (or half the estimate), doubling.
        step = offsets[-1] - offsets[0] if len(offsets) > 1 else offsets[0] / 2
        offset = offsets[-1]
        for _ in range(poll - len(offsets) + 1):
            step = min(self.max_gap_s, max(self.min_gap_s, step))
            offset += step
            step *= 2
        return offset
