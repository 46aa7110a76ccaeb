"""The benchmarks' tasks."""

from __future__ import annotations

import time
from typing import Any

from runpod_hybrid import task


@task
def work20ms(x: int) -> int:
    time.sleep(0.02)
    return x * 2


@task
def work10ms(x: int) -> int:
    time.sleep(0.01)
    return x * 2


@task
def identity(x: Any) -> Any:
    return x
