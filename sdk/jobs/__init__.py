"""Jobs: the job spec and job files, the pure planner, the job store, one backend per place a job runs, the
detached job runner, and the service that ties them together (``RunPod().jobs``)."""

from __future__ import annotations

from .backends import (
    JobBackend,
    JobEvents,
    LocalCommandBackend,
    Observation,
    PodCommandBackend,
    TaskBackend,
    local_pool,
)
from .planner import Alternative, Backend, Plan, PlanContext, PodOffer, load_prices, plan
from .runner import DetachedJobs, DetachedJobSpec, DetachedJobStatus, GpuSample, parse_nvidia_smi
from .service import JobHandle, Jobs, new_job_id
from .spec import JobSpec, load_job_file
from .store import JobRecord, JobStore

__all__ = [
    "Alternative",
    "Backend",
    "DetachedJobSpec",
    "DetachedJobStatus",
    "DetachedJobs",
    "GpuSample",
    "JobBackend",
    "JobEvents",
    "JobHandle",
    "JobRecord",
    "JobSpec",
    "JobStore",
    "Jobs",
    "LocalCommandBackend",
    "Observation",
    "Plan",
    "PlanContext",
    "PodCommandBackend",
    "PodOffer",
    "TaskBackend",
    "load_job_file",
    "load_prices",
    "local_pool",
    "new_job_id",
    "parse_nvidia_smi",
    "plan",
]
