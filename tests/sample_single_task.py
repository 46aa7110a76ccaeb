"""A module with a single task: a worker serving it runs it for any input that names no task."""

from __future__ import annotations

from typing import Any

from runpod_hybrid import task


@task
def describe(value: Any) -> dict[str, Any]:
    return {"got": value, "type": type(value).__name__}
