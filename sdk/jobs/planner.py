"""Where a job should run, why, and what it will cost: a pure function of the job and what we know.

Rules (each one a reason in the plan):
- local when asked for, or when no API key is configured;
- a command (work dir, outputs, checkpoints), a spot request, or a job too long for an endpoint goes to a pod;
- a task goes to serverless when it is deployed on a configured endpoint, every input fits the 10 MB
  ``/run`` limit and the expected runtime fits the endpoint's execution timeout; otherwise to a pod.
Costs count serverless cold start and idle timeout, and pod boot; serverless prices come from the bundled
list-price table (source and date in the plan), pod prices from live offers when given.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from .spec import JobSpec

if TYPE_CHECKING:
    from runpod_hybrid.pods import WarmPod

Backend = Literal["serverless", "pod", "local"]
MAX_RUN_INPUT_BYTES = 10 * 1024 * 1024
DEFAULT_EXECUTION_TIMEOUT_S = 600.0
COLD_START_S = 15.0  # a flex worker's start, billed (RunPod's own guidance: seconds to tens of seconds)
IDLE_TIMEOUT_S = 5.0  # RunPod's default idle timeout, billed per worker
DEFAULT_ENDPOINT_WORKERS = 3  # workersMax assumed when the endpoint's is unknown
POD_BOOT_S = 180.0  # image pull and start on a fresh pod, billed
WARM_START_S = 5.0  # a job on a running pod: sync what changed and start the runner
LOCAL_START_S = 3.0


@dataclass(frozen=True)
class ServerlessPrices:
    source: str
    pools: tuple[tuple[str, int, float], ...]  # (pool id, memory GB, USD per second)

    def pool_for(self, min_vram_gb: int) -> tuple[str, int, float]:
        fitting = [p for p in self.pools if p[1] >= min_vram_gb]
        return min(fitting or self.pools, key=lambda p: p[2])


def load_prices(path: Path | None = None) -> ServerlessPrices:
    raw = json.loads(
        path.read_text()
        if path
        else files("runpod_hybrid.data").joinpath("serverless-flex-prices.json").read_text()
    )
    return ServerlessPrices(
        str(raw["source"]),
        tuple((p["pool"], int(p["memory_gb"]), float(p["usd_per_s"])) for p in raw["pools"]),
    )


@dataclass(frozen=True)
class PodOffer:
    gpu_type_id: str
    usd_per_hour: float


@dataclass(frozen=True)
class Alternative:
    backend: Backend
    estimated_cost_usd: float | None
    estimated_start_s: float
    why_not: str


@dataclass(frozen=True)
class Plan:
    backend: Backend
    reasons: tuple[str, ...]
    estimated_cost_usd: float | None
    estimated_start_s: float
    alternatives: tuple[Alternative, ...] = ()
    price_source: str = ""
    refused: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)
    over_budget: bool = False


@dataclass(frozen=True)
class PlanContext:
    """What the planner may know; all of it plain data."""

    has_api_key: bool
    endpoints: Mapping[str, str]  # task endpoint names -> ids (from settings)
    prices: ServerlessPrices
    pod_offers: Sequence[PodOffer] = ()  # live offers, cheapest first; empty when unknown
    execution_timeout_s: float = DEFAULT_EXECUTION_TIMEOUT_S
    endpoint_workers: int = DEFAULT_ENDPOINT_WORKERS
    offline: bool = False  # live pod prices were asked for but RunPod could not be reached
    warm_pods: Sequence[WarmPod] = ()  # running pods of ours a command job could use
    default_image: str = ""  # the image a new pod would get (settings), to tell whether a warm pod matches


def _input_bytes(value: Any) -> int:
    return len(json.dumps({"input": value}).encode())


def serverless_cost(job: JobSpec, ctx: PlanContext) -> tuple[float, str]:
    pool, _, usd_per_s = ctx.prices.pool_for(job.min_vram_gb or 16)
    inputs = max(1, len(job.inputs))
    workers = min(inputs, ctx.endpoint_workers)
    billed_s = inputs * job.expected_runtime_s + workers * (COLD_START_S + IDLE_TIMEOUT_S)
    return round(billed_s * usd_per_s, 4), pool


def pod_cost(job: JobSpec, ctx: PlanContext) -> float | None:
    if not ctx.pod_offers:
        return None
    runtime_s = job.expected_runtime_s * (max(1, len(job.inputs)) if job.kind == "task" else 1)
    usd_per_hour = ctx.pod_offers[0].usd_per_hour * job.gpu_count
    return round((POD_BOOT_S + runtime_s) / 3600 * usd_per_hour, 4)


def _serverless_blockers(job: JobSpec, ctx: PlanContext) -> list[str]:
    if job.kind == "command":
        return ["commands run in an uploaded work dir with outputs, which needs a pod"]
    blockers = []
    endpoint = job.endpoint or job.task or ""
    if endpoint not in ctx.endpoints and not job.endpoint:
        blockers.append(
            f"task {job.task!r} is not deployed on a configured endpoint ([endpoints] in settings)"
        )
    if job.spot:
        blockers.append("spot was asked for, and only pods can be spot")
    if job.outputs:
        blockers.append("the job declares file outputs, which serverless cannot return")
    big = [i for i, value in enumerate(job.inputs) if _input_bytes(value) > MAX_RUN_INPUT_BYTES]
    if big:
        blockers.append(f"input #{big[0]} is over RunPod's 10 MB /run payload limit")
    if job.expected_runtime_s > ctx.execution_timeout_s:
        blockers.append(
            f"each input may run {job.expected_runtime_s:g} s, over the endpoint's execution timeout "
            f"of {ctx.execution_timeout_s:g} s"
        )
    return blockers


def plan(
    job: JobSpec, ctx: PlanContext, backend: Literal["auto", "serverless", "pod", "local"] = "auto"
) -> Plan:
    sls_cost, pool = serverless_cost(job, ctx)
    pods_cost = pod_cost(job, ctx)
    sls_start = COLD_START_S
    source = f"serverless: {ctx.prices.source}"
    details: dict[str, Any] = {"serverless_pool": pool, "inputs": len(job.inputs)}
    if ctx.pod_offers:
        details["pod_gpu"] = ctx.pod_offers[0].gpu_type_id
        source += "; pods: live RunPod prices"
    elif ctx.offline:
        source += "; pod prices unknown (offline: RunPod could not be reached)"
    blockers = _serverless_blockers(job, ctx)
    if backend in ("pod", "serverless") and not ctx.has_api_key:
        return Plan(
            backend,
            (),
            None,
            0.0,
            (),
            source,
            f"a {backend} needs a RunPod API key: set RUNPOD_API_KEY (or ~/.runpod/config.toml), or run "
            "it here with --backend local",
            details,
        )
    if backend == "local" or not ctx.has_api_key:
        why = (
            "asked for the local backend"
            if backend == "local"
            else (
                "no RunPod API key is configured, so the job runs on this machine (set RUNPOD_API_KEY to use RunPod)"
            )
        )
        shape = (
            "in a local process pool, through the serverless worker's own handler"
            if job.kind == "task"
            else ("with the pod job runner in a sandbox dir")
        )
        alternatives = (
            Alternative("serverless", sls_cost, sls_start, blockers[0] if blockers else "not chosen: " + why),
            Alternative("pod", pods_cost, POD_BOOT_S, "not chosen: " + why),
        )
        return Plan("local", (why, f"runs {shape}"), 0.0, LOCAL_START_S, alternatives, source, None, details)
    warm = _warm_plan(job, ctx, backend, pods_cost, (sls_cost, sls_start, blockers), source, details)
    if warm is not None:
        chosen: Plan = warm
    elif backend == "pod" or (backend == "auto" and blockers):
        reasons = tuple(blockers) if backend == "auto" else ("asked for a pod",)
        chosen = Plan(
            "pod",
            reasons,
            pods_cost,
            POD_BOOT_S,
            (Alternative("serverless", sls_cost, sls_start, "; ".join(blockers) or "not asked for"),),
            source,
            None,
            details,
        )
    else:
        if backend == "serverless" and blockers:
            return Plan(
                "serverless",
                (),
                sls_cost,
                sls_start,
                (),
                source,
                "serverless cannot run this job: " + "; ".join(blockers),
                details,
            )
        reasons = (
            "the task is deployed on an endpoint and every input fits its limits",
            f"no pod boot to wait for or pay ({POD_BOOT_S:g} s)",
        )
        chosen = Plan(
            "serverless",
            reasons,
            sls_cost,
            sls_start,
            (Alternative("pod", pods_cost, POD_BOOT_S, "not needed: no files, checkpoints or long runs"),),
            source,
            None,
            details,
        )
    cheaper = [
        a
        for a in chosen.alternatives
        if a.estimated_cost_usd is not None
        and chosen.estimated_cost_usd is not None
        and a.estimated_cost_usd < chosen.estimated_cost_usd
    ]
    if cheaper:
        chosen = Plan(
            chosen.backend,
            (
                *chosen.reasons,
                f"note: {cheaper[0].backend} would cost less "
                f"(${cheaper[0].estimated_cost_usd:.4f} vs ${chosen.estimated_cost_usd:.4f}), but "
                f"{cheaper[0].why_not}",
            ),
            chosen.estimated_cost_usd,
            chosen.estimated_start_s,
            chosen.alternatives,
            source,
            None,
            details,
        )
    if chosen.refused:
        return chosen
    if (
        job.budget_usd is not None
        and chosen.estimated_cost_usd is not None
        and chosen.estimated_cost_usd > job.budget_usd
    ):
        return Plan(
            chosen.backend,
            chosen.reasons,
            chosen.estimated_cost_usd,
            chosen.estimated_start_s,
            chosen.alternatives,
            source,
            f"estimated ${chosen.estimated_cost_usd:.4f} on {chosen.backend} is over the job's budget of "
            f"${job.budget_usd:.4f}",
            details,
            over_budget=True,
        )
    return chosen


def warm_misfit(job: JobSpec, warm: WarmPod, default_image: str) -> str | None:
    """Why the warm pod cannot run ``job`` (None: it can). A pod the job names must be ours, running, with
    enough GPUs; one the planner would choose must also match the job's GPU type and count, image, cloud and network volume, so that
    reusing it is what creating one would have made."""
    pod = warm.pod
    if pod.client_token is None:
        return "runpod-hybrid did not make it, so no deadline or watchdog of ours guards it"
    if pod.status != "RUNNING":
        return f"it is {pod.status} (`rph pods start {pod.id}` resumes it)"
    if pod.gpu_count < job.gpu_count:
        return f"it has {pod.gpu_count} GPU(s) and the job asks for {job.gpu_count}"
    if job.pod:
        return None
    if job.gpu_types and pod.gpu_type_id not in job.gpu_types:
        return f"its GPU is {pod.gpu_type_id}, not one of {', '.join(job.gpu_types)}"
    if pod.gpu_count != job.gpu_count:
        return f"it has {pod.gpu_count} GPUs (more than the job's {job.gpu_count}, billed all the same)"
    if pod.image != (job.image or default_image):
        return f"it runs another image ({pod.image})"
    if (job.network_volume_id or None) != (pod.network_volume_id or None):
        return "its network volume is not the job's"
    on_secure = job.cloud_type == "SECURE"
    if job.cloud_type in ("SECURE", "COMMUNITY") and pod.secure_cloud not in (None, on_secure):
        return f"it is not on {job.cloud_type} cloud"
    return None


def _warm_plan(
    job: JobSpec,
    ctx: PlanContext,
    backend: str,
    new_pod_cost: float | None,
    serverless: tuple[float, float, Sequence[str]],
    source: str,
    details: Mapping[str, Any],
) -> Plan | None:
    """Run a command job on a running pod of ours: the one the job names, or a warm one that fits and is
    idle. None when no such pod is there (a new pod is made, or serverless runs it)."""
    if job.kind != "command" or backend not in ("auto", "pod"):
        return None
    sls_cost, sls_start, blockers = serverless
    chosen = next((w for w in ctx.warm_pods if w.pod.id == job.pod), None) if job.pod else None
    if job.pod and chosen is None:
        return Plan(
            "pod",
            (),
            None,
            WARM_START_S,
            (),
            source,
            f"pod {job.pod} is not a running pod of ours (`rph pods list --ours` shows them; `rph pods start` "
            "resumes a stopped one)",
            details,
        )
    if job.pod and chosen is not None and (misfit := warm_misfit(job, chosen, ctx.default_image)):
        return Plan(
            "pod", (), None, WARM_START_S, (), source, f"pod {job.pod} cannot run this job: {misfit}", details
        )
    if chosen is None:
        fitting = [
            w for w in ctx.warm_pods if w.busy is False and warm_misfit(job, w, ctx.default_image) is None
        ]
        if not fitting:
            return None
        chosen = min(fitting, key=lambda w: w.pod.usd_per_hour)
    pod = chosen.pod
    runtime_h = job.expected_runtime_s / 3600
    boot_usd = round(POD_BOOT_S / 3600 * pod.usd_per_hour, 4)
    idle = (
        f"; its idle stop is due in {chosen.idle_left_s / 60:.0f} min"
        if chosen.idle_left_s is not None
        else ""
    )
    why = "you named it" if job.pod else "a warm pod of ours fits (GPU type and count, image, cloud, volume)"
    reasons: tuple[str, ...] = (
        f"runs on running pod {pod.id} ({pod.gpu_count}x {pod.gpu_display_name or pod.gpu_type_id}, "
        f"${pod.usd_per_hour:.2f}/h): {why}{idle}",
        f"no pod boot: saves ~{POD_BOOT_S:g} s and ${boot_usd:.4f} of boot time",
    )
    if chosen.busy:
        reasons += (f"another job runs on {pod.id} now: they share it",)
    alternatives = (
        Alternative("pod", new_pod_cost, POD_BOOT_S, f"a new pod: {POD_BOOT_S:g} s of boot, billed"),
        Alternative("serverless", sls_cost, sls_start, "; ".join(blockers) or "not chosen"),
    )
    return Plan(
        "pod",
        reasons,
        round(runtime_h * pod.usd_per_hour, 4),
        WARM_START_S,
        alternatives,
        source,
        None,
        {
            **details,
            "pod_id": pod.id,
            "pod_gpu": pod.gpu_type_id,
            "saved_boot_s": POD_BOOT_S,
            "saved_usd": boot_usd,
        },
    )
