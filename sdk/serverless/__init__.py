"""RunPod Serverless: the endpoint client, batches over many inputs, ``@task``, the worker handler, endpoint
management, and a local endpoint that speaks RunPod's API with real worker processes."""

from __future__ import annotations

from .batch import (
    BatchInfo,
    BatchLedger,
    BatchProgress,
    BatchSummary,
    MapFailure,
    ProgressCallback,
    Submission,
    summarize,
)
from .client import SERVERLESS_URL, Endpoint, job_error, job_state, parse_worker_error
from .emulator import LocalEndpoint
from .handler import die_with_parent, handler
from .management import GPU_POOLS, Endpoints
from .tasks import TaskInfo, get_task, load_task_modules, task, task_name

__all__ = [
    "GPU_POOLS",
    "SERVERLESS_URL",
    "BatchInfo",
    "BatchLedger",
    "BatchProgress",
    "BatchSummary",
    "Endpoint",
    "Endpoints",
    "LocalEndpoint",
    "MapFailure",
    "ProgressCallback",
    "Submission",
    "TaskInfo",
    "die_with_parent",
    "get_task",
    "handler",
    "job_error",
    "job_state",
    "load_task_modules",
    "parse_worker_error",
    "summarize",
    "task",
    "task_name",
]
