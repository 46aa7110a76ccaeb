"""The benchmark's task: 20 ms of work per input."""

from __future__ import annotations

import time

from runpod_hybrid import task


@task
def work20ms(x: int) -> int:
    time.sleep(0.02)
    return x * 2
