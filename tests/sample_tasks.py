"""Tasks the serverless tests run in real worker processes (imported by RPH_TASKS=sample_tasks)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from runpod_hybrid import task


@task
def echo(value: Any) -> Any:
    return value


@task
def square(x: int) -> int:
    return x * x


@task
def boom(message: str) -> None:
    raise RuntimeError(message)


@task
def soft_error(message: str) -> dict[str, str]:
    return {"error": message}


@task
def count(n: int) -> Iterator[dict[str, int]]:
    for i in range(n):
        yield {"i": i}


@task
def flaky(spec: dict[str, Any]) -> Any:
    """Fails until a marker file has been touched ``fail_times`` times, then succeeds."""
    marker = Path(spec["marker"])
    seen = int(marker.read_text()) if marker.exists() else 0
    marker.write_text(str(seen + 1))
    if seen < spec["fail_times"]:
        raise RuntimeError(f"flaky failure {seen + 1}")
    return spec["value"]


@task
def spin(spec: dict[str, Any]) -> str:
    """Busy-waits (in Python, so a stop can interrupt it) until a file appears or a limit passes; writes
    a heartbeat file so tests can see it running, and ``<beat>.ended`` however it ends (a stop included)."""
    beat = Path(spec["beat"])
    limit = time.monotonic() + spec.get("limit_s", 60)
    try:
        while time.monotonic() < limit:
            beat.write_text(str(time.monotonic()))
            if os.path.exists(spec.get("until", "/nonexistent")):
                return "released"
            sum(range(10_000))
        return "limit"
    finally:
        Path(f"{beat}.ended").touch()


@task
def where(_value: Any) -> dict[str, Any]:
    """Where a task runs: in a process pool's worker, or in RunPod's worker runtime (its env)."""
    import multiprocessing

    return {
        "pool_process": multiprocessing.parent_process() is not None,
        "runpod_runtime": "RUNPOD_WEBHOOK_GET_JOB" in os.environ,
    }


@task
def die_once(spec: dict[str, Any]) -> Any:
    """Kills its own process the first time (as an out-of-memory kill would), then returns its value."""
    marker = Path(spec["marker"])
    if not marker.exists():
        marker.touch()
        os._exit(1)
    return spec["value"]
