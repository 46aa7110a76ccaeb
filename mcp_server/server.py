"""``rph-mcp``: runpod-hybrid's operations as MCP tools for AI assistants.

Each tool is one call of the public ``runpod_hybrid`` API. Long work returns a job id instead of blocking
(no tool waits more than about 30 s); outputs are bounded; every create and submit goes through the
budget caps and reports the hourly cost; ``terminate_pod`` needs the pod's name as confirmation.
Logs go to stderr only: stdout is the protocol.
"""

from __future__ import annotations

import argparse
import functools
import inspect
import os
import re
import secrets
import sys
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, is_dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mcp.server import MCPServer
    from mcp.server.mcpserver import Context
    from mcp.types import ToolAnnotations

    from runpod_hybrid import RunPod

MAX_TOOL_WAIT_S = 25.0
MAX_OUTPUT_CHARS = 20_000
INSTRUCTIONS = (
    "Run GPU work on RunPod, or on this machine when no RunPod key is configured. Prefer plan_job before "
    "submit_job: it says where a job would run, why, and what it would cost. Anything that creates pods costs "
    "money per second: results state the hourly cost; stop or terminate pods you no longer need "
    "(spend_summary lists what is running). Every pod created here is stopped at its deadline (max_hours, 24 h "
    "by default; runpod-hybrid enforces it, RunPod does not). Long work returns a job id: poll job_status, "
    "read job_logs."
)


@dataclass(frozen=True)
class Kinds:
    """Honest tool annotations, one per kind of effect."""

    read: ToolAnnotations
    costs: ToolAnnotations
    safe_write: ToolAnnotations
    destroys: ToolAnnotations


Register = Callable[[Any, str], Callable[[Callable[..., Any]], Callable[..., Any]]]


class Tools:
    """The SDK client, built on first use (not at start-up, so `initialize` stays fast), and how long a tool
    may wait for a job it started to end (``settle_s``)."""

    def __init__(self, factory: Callable[[], RunPod], settle_s: float = MAX_TOOL_WAIT_S) -> None:
        self._factory = factory
        self.settle_s = settle_s
        self._client: RunPod | None = None
        self._lock = threading.Lock()

    @property
    def client(self) -> RunPod:
        with self._lock:
            if self._client is None:
                self._client = self._factory()
            return self._client


def _plain(value: Any) -> Any:
    """Dataclasses as plain JSON data (times as ISO 8601 strings)."""
    if is_dataclass(value) and not isinstance(value, type):
        return _plain(asdict(value))
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def _bounded(text: str, limit: int = MAX_OUTPUT_CHARS) -> dict[str, Any]:
    if len(text) <= limit:
        return {"text": text, "truncated": False}
    return {
        "text": text[-limit:],
        "truncated": True,
        "note": f"output cut to its last {limit} characters of {len(text)}; ask for less (tail) or download files",
    }


# The SDK's advice names `rph` commands; an assistant calls tools. (pattern, what to say instead)
_ADVICE_FOR_TOOLS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), replacement)
    for pattern, replacement in (
        (r"`rph pods list[^`]*`", "list_pods"),
        (r"`rph gpus(?: --count (\d+))?[^`]*`", "list_gpu_types(gpu_count=\\1)"),
        (r"`rph pods wait ([\w-]+)`", "wait_for_pod(pod_id='\\1')"),
        (r"`rph pods start ([\w-]+)`", "start_pod(pod_id='\\1')"),
        (r"`rph pods start`", "start_pod"),
        (r"`rph pods terminate ([\w-]+)[^`]*`", "terminate_pod(pod_id='\\1', confirm_name=<its name>)"),
        (r"`rph jobs list`", "list_jobs"),
        (r"`rph jobs logs ([\w-]+)[^`]*`", "job_logs(job_id='\\1')"),
        (r"`rph jobs cancel ([\w-]+)`", "cancel_job(job_id='\\1')"),
        (r"`rph sls status ([\w-]+) ([\w-]+)`", "serverless_status(endpoint='\\1', job_id='\\2')"),
        (r"--backend local", 'backend="local"'),
        (r"`(rph [^`]+)`", "the CLI command `\\1` (the user can run it)"),
    )
)


def for_assistants(message: str) -> str:
    """An error's advice in tool terms: CLI commands become the tools (and arguments) that do the same."""
    for pattern, replacement in _ADVICE_FOR_TOOLS:
        message = pattern.sub(replacement, message)
    return message.replace("(gpu_count=)", "()")


def _readable_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn our errors into tool errors whose text the model reads (mcp hides unexpected exceptions)."""
    from mcp.server.mcpserver.exceptions import ToolError

    from runpod_hybrid import redact_text

    def message(exc: Exception) -> str:
        notes = "".join(f"\n{note}" for note in getattr(exc, "__notes__", []))
        return for_assistants(redact_text(f"{type(exc).__name__}: {exc}{notes}"))

    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def run_async(*args: Any, **kwargs: Any) -> Any:
            try:
                return await fn(*args, **kwargs)
            except Exception as exc:
                raise ToolError(message(exc)) from exc

        return run_async

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            raise ToolError(message(exc)) from exc

    return run


def backend_note(tools: Tools) -> str:
    return (
        "RunPod (API key configured)"
        if tools.client.config.api_key is not None
        else "local backend only: no RunPod API key is configured (pod and serverless tools will say so)"
    )


def _pod_tools(tool: Register, tools: Tools, kinds: Kinds) -> None:
    """Gpus and pods tools."""

    @tool(
        kinds.read,
        "List GPU types with live stock and on-demand/spot price per GPU-hour for `gpu_count` GPUs. "
        "Free, read-only. Use it before create_pod to pick a type that is in stock.",
    )
    def list_gpu_types(gpu_count: int = 1, min_vram_gb: int = 0) -> dict[str, Any]:
        types = tools.client.gpus.list(gpu_count=gpu_count, min_vram_gb=min_vram_gb)
        return {"gpu_types": _plain(types[:40]), "shown": min(len(types), 40), "total": len(types)}

    @tool(
        kinds.read,
        "List your pods with status, $/hour, SSH endpoint, deadline, the guards that hold it and the "
        "projected cost until then. Free. Enforces the deadlines you set: a pod of ours past its deadline is "
        "stopped (not deleted) first, and the result says so. `status` filters, e.g. RUNNING.",
    )
    def list_pods(status: str | None = None) -> dict[str, Any]:
        overview = tools.client.pods.overview(status=status)
        return {
            "pods": _plain(overview.pods),
            "stopped_past_deadline": list(overview.stopped),
            "warnings": list(overview.warnings),
            "running_usd_per_hour": overview.running_usd_per_hour,
        }

    @tool(
        kinds.read,
        "Get one pod: status, $/hour, GPU, runtime, SSH endpoint, deadline, guards and projected cost. Free. "
        "A pod of ours past its deadline is stopped first.",
    )
    def get_pod(pod_id: str) -> dict[str, Any]:
        guard: dict[str, Any] = _plain(tools.client.pods.guard(pod_id))
        return guard

    @tool(kinds.read, "GPU/CPU utilisation, uptime and cost so far of a pod. Free, read-only.")
    def pod_telemetry(pod_id: str) -> dict[str, Any]:
        return {"telemetry": _plain(tools.client.pods.telemetry(pod_id))}

    @tool(
        kinds.read,
        "What is billing now: each running pod with $/hour, uptime, deadline, guards and projected cost to "
        "its deadline; the total per hour; the account's balance and spend per hour as RunPod reports them; "
        "the budget caps. Free. Check it before creating more pods, and stop what is idle. Pods of ours past "
        "their deadline are stopped first.",
    )
    def spend_summary() -> dict[str, Any]:
        spend = tools.client.pods.spend()
        return {
            "running": [
                {
                    "id": g.pod.id,
                    "name": g.pod.name,
                    "usd_per_hour": g.usd_per_hour,
                    "uptime_s": g.pod.runtime.uptime_s if g.pod.runtime else 0,
                    "deadline": _plain(g.deadline),
                    "hours_left": g.hours_left,
                    "guards": list(g.guards),
                    "projected_usd_to_deadline": g.projected_usd,
                    "warning": g.warning,
                }
                for g in spend.running
            ],
            "total_usd_per_hour": spend.usd_per_hour,
            "account_balance_usd": spend.balance_usd,
            "account_usd_per_hour": spend.account_usd_per_hour,
            "cap_total_usd_per_hour": spend.max_total_usd_per_hour,
            "cap_per_pod_usd_per_hour": spend.max_pod_usd_per_hour,
            "max_pod_hours": spend.max_pod_hours,
            "stopped_past_deadline": list(spend.stopped),
            "warnings": list(spend.warnings),
        }

    @tool(
        kinds.costs,
        "Create a GPU pod. COSTS MONEY per second while it runs (the result states $/hour, its deadline and "
        "the cost until then). Safe defaults: it is stopped `max_hours` after creation (default from settings, "
        "24; RunPod enforces no deadline, so runpod-hybrid does: a watchdog on the pod, armed at the first SSH "
        "contact such as wait_for_pod's end or pod_exec, and every listing of pods), SSH is set up, budget caps "
        "refuse expensive pods, and no capacity falls back to the next GPU type. `spot` is cheaper but can be "
        "interrupted. `network_volume` (id or name, list_volumes) is mounted at /workspace and places the pod "
        "in that volume's data centre. Next: wait_for_pod, then pod_exec.",
    )
    def create_pod(
        gpu_types: list[str],
        gpu_count: int = 1,
        image: str | None = None,
        name: str = "mcp",
        spot: bool = False,
        max_hours: float | None = None,
        volume_gb: int | None = None,
        network_volume: str | None = None,
    ) -> dict[str, Any]:
        from runpod_hybrid import PodSpec

        result = tools.client.pods.create(
            PodSpec(
                name=name,
                gpu_types=tuple(gpu_types),
                gpu_count=gpu_count,
                image=image,
                spot=spot,
                max_hours=max_hours,
                volume_gb=volume_gb,
                network_volume_id=network_volume,
            )
        )
        guard = tools.client.pods.guard(result.pod.id)
        return {
            "pod": _plain(guard.pod),
            "usd_per_hour": guard.pod.usd_per_hour,
            "deadline": _plain(guard.deadline),
            "guards": list(guard.guards),
            "projected_usd_to_deadline": guard.projected_usd,
            "warning": guard.warning,
            "attempts": _plain(result.attempts),
            "next": f"wait_for_pod(pod_id='{result.pod.id}'), then pod_exec; stop_pod when done",
        }

    @tool(
        kinds.costs,
        "Start (resume) a stopped pod. Costs its $/hour again while running. May fail when its "
        "host has no free GPU; the error says what to do.",
    )
    def start_pod(pod_id: str) -> dict[str, Any]:
        pod = tools.client.pods.start(pod_id)
        return {"pod": _plain(pod), "usd_per_hour": pod.usd_per_hour}

    @tool(
        kinds.safe_write,
        "Stop a pod: releases the GPU and stops its hourly GPU cost; /workspace is kept (and "
        "billed as storage). Container disk is wiped. Idempotent.",
    )
    def stop_pod(pod_id: str) -> dict[str, Any]:
        return {"pod": _plain(tools.client.pods.stop(pod_id))}

    @tool(
        kinds.destroys,
        "Terminate a pod: deletes it and its volume disk for good. Give the pod's exact name as "
        "`confirm_name` (get_pod shows it).",
    )
    def terminate_pod(pod_id: str, confirm_name: str) -> dict[str, Any]:
        pod = tools.client.pods.get(pod_id)
        if confirm_name != pod.name:
            raise ValueError(f"confirm_name must be the pod's name {pod.name!r}; nothing was terminated.")
        tools.client.pods.terminate(pod_id)
        return {"terminated": pod_id}

    @tool(
        kinds.read,
        "Wait (at most `max_wait_s`, up to 25) for a pod to run and accept SSH, sending progress. "
        "Returns ready=false with the current state when time runs out: call it again. Free.",
    )
    async def wait_for_pod(pod_id: str, ctx: Context, max_wait_s: float = 25.0) -> dict[str, Any]:
        import anyio

        from runpod_hybrid.errors import PodNotReadyError

        budget = min(max_wait_s, MAX_TOOL_WAIT_S)
        messages: list[str] = []

        def wait() -> Any:
            return tools.client.pods.wait_until_ready(
                pod_id, timeout_s=budget, poll_s=5.0, on_progress=messages.append
            )

        try:
            pod = await anyio.to_thread.run_sync(wait)
        except PodNotReadyError as exc:
            if exc.reason != "timeout":
                raise
            await ctx.report_progress(1, 1, messages[-1] if messages else "waiting")
            return {
                "ready": False,
                "state": messages[-1] if messages else "unknown",
                "next": "call wait_for_pod again",
            }
        await ctx.report_progress(1, 1, "ready")
        return {"ready": True, "pod": _plain(pod)}


def _remote_tools(tool: Register, tools: Tools, kinds: Kinds) -> None:
    """Commands and files tools."""

    @tool(
        kinds.costs,
        "Run a command on a running pod over SSH (argv list, quoted safely). Returns exit code and the "
        "last 20k characters of output. At most `timeout_s` (<= 25); use submit_job for long work.",
    )
    def pod_exec(
        pod_id: str, argv: list[str], timeout_s: float = 25.0, cwd: str | None = None
    ) -> dict[str, Any]:
        result = tools.client.remote(pod_id).exec(argv, cwd=cwd, timeout_s=min(timeout_s, MAX_TOOL_WAIT_S))
        return {
            "exit_code": result.exit_code,
            "timed_out": result.timed_out,
            "stdout": _bounded(result.stdout),
            "stderr": _bounded(result.stderr, 5000),
        }

    @tool(
        kinds.safe_write, "Upload a local file or dir to a pod (rsync, else tar; .gitignore honoured). Free."
    )
    def upload_to_pod(pod_id: str, local_path: str, remote_path: str) -> dict[str, Any]:
        return {"transfer": _plain(tools.client.remote(pod_id).upload(Path(local_path), remote_path))}

    @tool(kinds.safe_write, "Download a file or dir from a pod to a local path (path-safe). Free.")
    def download_from_pod(pod_id: str, remote_path: str, local_path: str) -> dict[str, Any]:
        return {"transfer": _plain(tools.client.remote(pod_id).download(remote_path, Path(local_path)))}


def _job_tools(tool: Register, tools: Tools, kinds: Kinds) -> None:
    """Jobs tools."""

    @tool(
        kinds.read,
        "Plan a job file (TOML, see examples/): which backend (serverless, pod or local) and why, the "
        "estimated cost and start time, and the alternatives. Free; creates nothing.",
    )
    def plan_job(job_file: str, backend: str = "auto", pod_id: str | None = None) -> dict[str, Any]:
        from runpod_hybrid import load_job_file

        plan = tools.client.jobs.plan(load_job_file(Path(job_file)), backend=backend, pod=pod_id)
        return {"plan": _plain(plan), "running_on": backend_note(tools)}

    @tool(
        kinds.costs,
        "Submit a job file. May COST MONEY on RunPod (the plan's estimate is returned; jobs over their "
        "budget are refused before anything is created). `pod_id` runs a command job on a running pod of "
        "yours (list_warm_pods), which stays up afterwards; without it, a warm pod that fits is used before a new "
        "one is made. Returns a job id at once; poll job_status.",
    )
    def submit_job(job_file: str, backend: str = "auto", pod_id: str | None = None) -> dict[str, Any]:
        from runpod_hybrid import TERMINAL_STATES, load_job_file

        jobs = tools.client.jobs
        job = load_job_file(Path(job_file))
        plan = jobs.plan(job, backend=backend, pod=pod_id)
        handle = jobs.submit(job, plan=plan, background=True, pod=pod_id)
        state = handle.settle(tools.settle_s)
        if state in ("FAILED", "CANCELLED", "TIMED_OUT"):
            handle.raise_for_state()
        return {
            "job_id": handle.id,
            "backend": plan.backend,
            "state": state,
            "estimated_cost_usd": plan.estimated_cost_usd,
            "finished_in_call": state in TERMINAL_STATES,
            "next": f"job_status(job_id='{handle.id}')",
        }

    @tool(
        kinds.read,
        "Running pods of yours a job could use now (submit_job with pod_id, no boot wait): each with its GPU, "
        "$/hour, whether a job runs on it, the minutes until its idle stop, and its deadline. Free (it asks "
        "each pod over SSH).",
    )
    def list_warm_pods() -> dict[str, Any]:
        warm = tools.client.pods.warm()
        return {
            "pods": [
                {
                    "pod_id": w.pod.id,
                    "name": w.pod.name,
                    "gpu": w.pod.gpu_type_id,
                    "gpu_count": w.pod.gpu_count,
                    "usd_per_hour": w.pod.usd_per_hour,
                    "busy": w.busy,
                    "idle_stop_in_min": None if w.idle_left_s is None else round(w.idle_left_s / 60, 1),
                    "deadline": _plain(w.guard.deadline),
                }
                for w in warm
            ],
            "next": "submit_job(job_file=..., pod_id=<one of these>)",
        }

    @tool(
        kinds.read,
        "A job's state (reconciled with where it runs) and, when a task job succeeded, its results "
        "(bounded). Free.",
    )
    def job_status(job_id: str) -> dict[str, Any]:
        handle = tools.client.jobs.get(job_id)
        state = handle.status()
        if state in ("FAILED", "CANCELLED", "TIMED_OUT"):
            handle.raise_for_state()  # an error result: its state, exit code, error and the end of its log
        out: dict[str, Any] = {"job_id": job_id, "backend": handle.backend, "state": state}
        if state == "SUCCEEDED" and handle.kind == "task":
            results = handle.result()
            out["results"] = results[:100]
            out["results_truncated"] = len(results) > 100
        return out

    @tool(kinds.read, "The last lines of a job's log (bounded). Free.")
    def job_logs(job_id: str, tail_lines: int = 200) -> dict[str, Any]:
        return {"job_id": job_id, "log": _bounded(tools.client.jobs.get(job_id).logs(min(tail_lines, 2000)))}

    @tool(
        kinds.safe_write,
        "Download a finished command job's declared outputs, verified against checksums. Free.",
    )
    def fetch_job_outputs(job_id: str, dest: str | None = None) -> dict[str, Any]:
        paths = tools.client.jobs.get(job_id).fetch(Path(dest) if dest else None)
        return {"job_id": job_id, "outputs": [str(p) for p in paths]}

    @tool(
        kinds.destroys,
        "Cancel a running command job (SIGTERM, then SIGKILL). Its pod keeps running: stop_pod it.",
    )
    def cancel_job(job_id: str) -> dict[str, Any]:
        return {"job_id": job_id, "state": tools.client.jobs.get(job_id).cancel()}

    @tool(kinds.read, "Recent jobs from every backend. Free.")
    def list_jobs(limit: int = 20) -> dict[str, Any]:
        return {
            "jobs": [
                {"id": h.id, "backend": h.backend, "name": h.record.name, "state": h.state}
                for h in tools.client.jobs.list(min(limit, 100))
            ],
            "running_on": backend_note(tools),
        }


def _serverless_tools(tool: Register, tools: Tools, kinds: Kinds) -> None:
    """Serverless tools."""

    @tool(
        kinds.costs,
        "Queue one job on a serverless endpoint (billed per second of worker time). `job_input` is the "
        'endpoint\'s input, e.g. {"task": "embed", "value": ...}. Returns the job id; poll '
        "serverless_status.",
    )
    def serverless_run(endpoint: str, job_input: dict[str, Any]) -> dict[str, Any]:
        return {"job_id": tools.client.endpoint(endpoint).run(job_input), "endpoint": endpoint}

    @tool(kinds.read, "Status (and output, bounded) of a serverless job. Free.")
    def serverless_status(endpoint: str, job_id: str) -> dict[str, Any]:
        status = tools.client.endpoint(endpoint).status(job_id)
        text = str(status.get("output", ""))
        if len(text) > MAX_OUTPUT_CHARS:
            status["output"] = _bounded(text)
        return {"status": status}

    @tool(kinds.safe_write, "Cancel a serverless job. Idempotent.")
    def serverless_cancel(endpoint: str, job_id: str) -> dict[str, Any]:
        return {"status": tools.client.endpoint(endpoint).cancel(job_id)}

    @tool(
        kinds.read,
        "Queue and worker counts of a serverless endpoint (unhealthy workers mean a crash loop). Free.",
    )
    def endpoint_health(endpoint: str) -> dict[str, Any]:
        return {"health": tools.client.endpoint(endpoint).health()}


def _volume_tools(tool: Register, tools: Tools, kinds: Kinds) -> None:
    """Network volume tools (served by RunPod's REST v2 API whatever control_plane says)."""

    @tool(
        kinds.read,
        "List your network volumes (storage that outlives pods) with size and data centre. Free, read-only. "
        "A pod using one runs in its data centre.",
    )
    def list_volumes() -> dict[str, Any]:
        return {"volumes": _plain(tools.client.volumes.list())}

    @tool(
        kinds.costs,
        "Create a network volume of `size_gb` (10-4096) in `data_center_id` (e.g. EU-RO-1). COSTS MONEY per "
        "GB-month until deleted. Pods that use it (create_pod's network_volume) run in that data centre.",
    )
    def create_volume(name: str, size_gb: int, data_center_id: str) -> dict[str, Any]:
        volume = tools.client.volumes.create(name, size_gb=size_gb, data_center_id=data_center_id)
        return {"volume": _plain(volume), "note": "billed per GB-month until delete_volume"}

    @tool(
        kinds.destroys,
        "Delete a network volume and all its data for good. Give its exact name as `confirm_name` "
        "(list_volumes shows it). Refused while a pod still uses it.",
    )
    def delete_volume(volume_id: str, confirm_name: str) -> dict[str, Any]:
        volume = tools.client.volumes.get(volume_id)
        if confirm_name != volume.name:
            raise ValueError(f"confirm_name must be the volume's name {volume.name!r}; nothing was deleted.")
        tools.client.volumes.delete(volume.id)
        return {"deleted": volume.id}


def _accept_log_level(server: MCPServer) -> None:
    """Answer ``logging/setLevel``, which clients on the 2025 protocol revisions send (the 2026-07-28 revision
    dropped it). rph-mcp sends no log messages over the protocol (its logs go to stderr), so any level is
    accepted and nothing changes. MCPServer has no public hook for it: the SDK points to the low-level server."""
    from mcp.types import EmptyResult, SetLevelRequestParams

    async def set_level(_context: Any, _params: SetLevelRequestParams) -> EmptyResult:
        return EmptyResult()

    server._lowlevel_server.add_request_handler("logging/setLevel", SetLevelRequestParams, set_level)


def build_server(
    *,
    read_only: bool = False,
    factory: Callable[[], RunPod] | None = None,
    settle_s: float = MAX_TOOL_WAIT_S,
) -> MCPServer:
    from mcp.server import MCPServer
    from mcp.server.mcpserver import Context
    from mcp.types import ToolAnnotations

    from runpod_hybrid import __version__

    # Tool signatures are read with their annotations evaluated in this module's namespace; the names they
    # use are imported lazily (importing mcp costs ~0.5 s), so make them resolvable now.
    globals().setdefault("Context", Context)

    def default_factory() -> RunPod:
        from runpod_hybrid import RunPod

        return RunPod()

    tools = Tools(factory or default_factory, settle_s)
    server = MCPServer("runpod-hybrid", version=__version__, instructions=INSTRUCTIONS)
    _accept_log_level(server)

    kinds = Kinds(
        read=ToolAnnotations(
            read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=True
        ),
        costs=ToolAnnotations(
            read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=True
        ),
        safe_write=ToolAnnotations(
            read_only_hint=False, destructive_hint=False, idempotent_hint=True, open_world_hint=True
        ),
        destroys=ToolAnnotations(
            read_only_hint=False, destructive_hint=True, idempotent_hint=True, open_world_hint=True
        ),
    )

    def tool(
        annotations: ToolAnnotations, description: str
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def register(fn: Callable[..., Any]) -> Callable[..., Any]:
            if read_only and not annotations.read_only_hint:
                return fn
            return server.tool(name=fn.__name__, description=description, annotations=annotations)(
                _readable_errors(fn)
            )

        return register

    _pod_tools(tool, tools, kinds)
    _remote_tools(tool, tools, kinds)
    _job_tools(tool, tools, kinds)
    _serverless_tools(tool, tools, kinds)
    _volume_tools(tool, tools, kinds)
    return server


def _http_app(server: MCPServer, token: str) -> Any:
    """Streamable HTTP on /mcp behind a bearer token (DNS-rebinding protection is on for localhost)."""
    from starlette.responses import JSONResponse

    app = server.streamable_http_app()
    expected = token.encode()

    def authorized(headers: list[tuple[bytes, bytes]]) -> bool:
        # Compared as bytes (a header may hold any byte), and the scheme case-insensitively (RFC 9110).
        value = next((v for k, v in headers if k.lower() == b"authorization"), b"")
        scheme, _, presented = value.strip().partition(b" ")
        return scheme.lower() == b"bearer" and secrets.compare_digest(presented.strip(), expected)

    async def guarded(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and not authorized(scope.get("headers", [])):
            response = JSONResponse(
                {"error": "missing or wrong bearer token (see rph-mcp's start-up line)"}, status_code=401
            )
            await response(scope, receive, send)
            return
        await app(scope, receive, send)

    return guarded


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rph-mcp", description="runpod-hybrid's MCP server")
    parser.add_argument("--read-only", action="store_true", help="expose only tools that change nothing")
    parser.add_argument(
        "--http", action="store_true", help="serve streamable HTTP on 127.0.0.1 instead of stdio"
    )
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument(
        "--insecure-no-token",
        action="store_true",
        help="HTTP without the bearer token (only for protocol test suites; still 127.0.0.1 only)",
    )
    parser.add_argument("--log-level", default=None)
    args = parser.parse_args(argv)
    from runpod_hybrid import configure_logging

    configure_logging(args.log_level, stream=sys.stderr)  # stdout is the protocol channel
    if not args.http:
        build_server(read_only=args.read_only).run("stdio")
        return 0
    server = build_server(read_only=args.read_only)
    import uvicorn

    if args.insecure_no_token:
        sys.stderr.write("rph-mcp: WARNING: no bearer token: any local process can call the tools\n")
        app: Any = server.streamable_http_app()
    else:
        token = os.environ.get("RPH_MCP_TOKEN") or secrets.token_urlsafe(24)
        if "RPH_MCP_TOKEN" not in os.environ:
            sys.stderr.write(f"rph-mcp: bearer token for this run: {token}\n")
        app = _http_app(server, token)
    sys.stderr.write(f"rph-mcp: serving http://127.0.0.1:{args.port}/mcp\n")
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
