"""RunPod Serverless: the endpoint client, batches over many inputs (packed, resumable), ``@task``, the
worker handler, endpoint management, a local endpoint that speaks RunPod's API with real worker processes,
and a local process pool that runs tasks through the same handler code."""

from __future__ import annotations

from .batch import (
    BatchInfo,
    BatchLedger,
    BatchProgress,
    BatchSize,
    BatchSummary,
    InputsFile,
    ItemRecord,
    MapFailure,
    Pack,
    ProgressCallback,
    summarize,
)
from .client import (
    SERVERLESS_URL,
    Endpoint,
    JobStatus,
    describe_health,
    job_error,
    job_state,
    parse_worker_error,
)
from .emulator import LocalEndpoint
from .handler import TaskFailed, die_with_parent, execute, make_handler
from .local_pool import LocalPool
from .management import GPU_POOLS, Endpoints
from .tasks import (
    TaskInfo,
    get_task,
    load_task_modules,
    task,
    task_call,
    task_name,
    task_pack,
)

__all__ = [
    "GPU_POOLS",
    "SERVERLESS_URL",
    "BatchInfo",
    "BatchLedger",
    "BatchProgress",
    "BatchSize",
    "BatchSummary",
    "Endpoint",
    "Endpoints",
    "InputsFile",
    "ItemRecord",
    "JobStatus",
    "LocalEndpoint",
    "LocalPool",
    "MapFailure",
    "Pack",
    "ProgressCallback",
    "TaskFailed",
    "TaskInfo",
    "describe_health",
    "die_with_parent",
    "execute",
    "get_task",
    "job_error",
    "job_state",
    "load_task_modules",
    "make_handler",
    "parse_worker_error",
    "summarize",
    "task",
    "task_call",
    "task_name",
    "task_pack",
]
