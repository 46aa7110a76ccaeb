"""runpod-hybrid: one job, two places to run it (RunPod Serverless or a GPU pod), plus a local backend.

    from runpod_hybrid import RunPod, JobSpec, task

Importing this package does nothing but define names: no network, no config reads, no logging setup, and no
heavy imports. The names below load their module on first use (PEP 562), so ``rph --help`` and a worker
importing ``task`` pay only for what they touch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from ._logging import configure_logging, redact_text, redact_value
    from .client import RunPod
    from .config import Config, Settings, load_config
    from .errors import TERMINAL_STATES, JobState, RunPodHybridError
    from .jobs import JobHandle, JobSpec, Plan, load_job_file
    from .pods import PodSpec
    from .serverless import task

_WHERE = {
    "configure_logging": "._logging",
    "redact_text": "._logging",
    "redact_value": "._logging",
    "RunPod": ".client",
    "Config": ".config",
    "Settings": ".config",
    "load_config": ".config",
    "JobState": ".errors",
    "TERMINAL_STATES": ".errors",
    "RunPodHybridError": ".errors",
    "JobHandle": ".jobs",
    "JobSpec": ".jobs",
    "Plan": ".jobs",
    "load_job_file": ".jobs",
    "PodSpec": ".pods",
    "task": ".serverless.tasks",
}

__all__ = [
    "TERMINAL_STATES",
    "Config",
    "JobHandle",
    "JobSpec",
    "JobState",
    "Plan",
    "PodSpec",
    "RunPod",
    "RunPodHybridError",
    "Settings",
    "__version__",
    "configure_logging",
    "load_config",
    "load_job_file",
    "redact_text",
    "redact_value",
    "task",
]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name], __name__), name)
