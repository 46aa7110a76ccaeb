"""A local RunPod Serverless endpoint: the client API and the worker protocol, with real worker processes.

Client API (RunPod's serverless docs) at ``/v2/<endpoint>/``, behind a required key (``Authorization:
Bearer <key>``, or the bare key as RunPod's curl examples send it; 401 otherwise): ``POST run`` (10 MB),
``POST runsync?wait=ms`` (20 MB; ids ``sync-...``), ``GET|POST status/<id>``, ``GET|POST
status-sync/<id>?wait=ms``, ``GET|POST stream/<id>``, ``POST cancel/<id>``, ``POST retry/<id>``, ``GET
health``, ``POST purge-queue``. Results are kept 30 min after a ``/run`` job ends and 60 s after a
``/runsync`` one, and no job outlives its ``policy.ttl`` (404 afterwards); ``policy.executionTimeout`` times a
job out; webhooks get the final status object. Bad values get a 400 with a JSON error.

Worker protocol (RunPod's worker runtime) for ``python -m runpod_hybrid_worker``: long-polled
``job-take``/``job-take-batch``, ``job-done`` (a late ``IN_PROGRESS`` progress body is ignored),
``job-stream``, ``ping``, and long-polled ``job-stop`` so a cancel or timeout stops the running job. Each
worker's stdout and stderr go to this module's log; a worker that exits before taking its first job fails
:meth:`LocalEndpoint.start` with what it wrote.

Built on aiohttp's server (which RunPod's own runtime uses): it reads every request body whatever the answer
(chunked ones included), so kept-alive connections survive early 401/404/405 answers, and its long-polls
are coroutines, not a thread each. Everything runs on one event loop in a thread of its own; the state is
touched only there, so it needs no lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from runpod_hybrid._logging import get_logger
from runpod_hybrid.errors import ConfigError

from .handler import die_with_parent

if TYPE_CHECKING:
    from aiohttp import web

log = get_logger(__name__)
T = TypeVar("T")

TERMINAL = frozenset({"COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"})
MB = 1_000_000  # RunPod's limits are decimal megabytes
MAX_RUN_BODY = 10 * MB
MAX_RUNSYNC_BODY = 20 * MB
RUN_RESULT_KEPT_S = 30 * 60
RUNSYNC_RESULT_KEPT_S = 60
DEFAULT_EXECUTION_TIMEOUT_MS = 600_000
EXECUTION_TIMEOUT_RANGE_MS = (5_000, 7 * 24 * 3600 * 1000)
DEFAULT_TTL_MS = 24 * 3600 * 1000
WAIT_RANGE_MS = (1_000, 300_000)
DEFAULT_WAIT_MS = 90_000
JOB_TAKE_HOLD_S = 5.0
JOB_STOP_HOLD_S = 20.0
STREAM_HOLD_S = 2.0
TICK_S = 0.2
OUTPUT_TAIL_LINES = 20
WORKER_ROUTES = frozenset({"job-take", "job-take-batch", "job-done", "job-stream", "job-stop", "ping"})
ROUTES: Mapping[str, frozenset[str]] = {
    "run": frozenset({"POST"}),
    "runsync": frozenset({"POST"}),
    "status": frozenset({"GET", "POST"}),
    "status-sync": frozenset({"GET", "POST"}),
    "stream": frozenset({"GET", "POST"}),
    "cancel": frozenset({"POST"}),
    "retry": frozenset({"POST"}),
    "health": frozenset({"GET"}),
    "purge-queue": frozenset({"POST"}),
    "emulator-stats": frozenset({"GET"}),  # not RunPod's: request counts, for tests and benchmarks
    "job-take": frozenset({"GET"}),
    "job-take-batch": frozenset({"GET"}),
    "job-done": frozenset({"POST"}),
    "job-stream": frozenset({"POST"}),
    "job-stop": frozenset({"GET"}),
    "ping": frozenset({"GET"}),
}


class BadRequest(Exception):
    """A request RunPod would answer with 400."""


@dataclass
class Job:
    id: str
    input: Any
    created_s: float
    sync: bool = False
    webhook: str | None = None
    execution_timeout_ms: int = DEFAULT_EXECUTION_TIMEOUT_MS
    ttl_ms: int = DEFAULT_TTL_MS
    status: str = "IN_QUEUE"
    started_s: float | None = None
    finished_s: float | None = None
    output: Any = None
    error: Any = None
    worker_id: str | None = None
    retries: int = 0
    stream: list[Any] = field(default_factory=list)
    stream_read: int = 0

    def view(self) -> dict[str, Any]:
        body: dict[str, Any] = {"id": self.id, "status": self.status}
        if self.started_s is not None:
            body["delayTime"] = int((self.started_s - self.created_s) * 1000)
        if self.started_s is not None and self.finished_s is not None:
            body["executionTime"] = int((self.finished_s - self.started_s) * 1000)
        if self.worker_id:
            body["workerId"] = self.worker_id
        if self.retries:
            body["retries"] = self.retries
        if self.output is not None:
            body["output"] = self.output
        if self.error is not None:
            body["error"] = self.error
        return body


@dataclass
class WorkerState:
    id: str
    ready: bool = False  # it asked for a job: RunPod's runtime is up
    last_seen_s: float | None = None
    stops: set[str] = field(default_factory=set)
    process: asyncio.subprocess.Process | None = None
    output_tail: deque[str] = field(default_factory=lambda: deque(maxlen=OUTPUT_TAIL_LINES))
    pumps: list[asyncio.Task[None]] = field(default_factory=list)  # read its stdout and stderr into the log

    @property
    def exited(self) -> bool:
        return self.process is not None and self.process.returncode is not None


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadRequest(f"{what} must be a number of milliseconds, got {value!r}")
    return float(value)


def _policy_ms(policy: Mapping[str, Any], key: str, default: int, low: float, high: float) -> int:
    if key not in policy:
        return default
    value = _number(policy[key], f"policy.{key}")
    if not low <= value <= high:
        raise BadRequest(f"policy.{key} must be between {low:g} and {high:g} ms, got {value:g}")
    return int(value)


def wait_ms(query: Mapping[str, str]) -> int:
    """``?wait=ms`` of /runsync and /status-sync: a number (clamped to RunPod's range) or a 400."""
    raw = query.get("wait")
    if raw is None:
        return DEFAULT_WAIT_MS
    try:
        value = float(raw)
    except ValueError:
        raise BadRequest(f"wait must be a number of milliseconds, got {raw!r}") from None
    return int(min(WAIT_RANGE_MS[1], max(WAIT_RANGE_MS[0], value)))


class EndpointState:
    """Jobs, queue and workers of one emulated endpoint. Used only on the server's event loop."""

    def __init__(self, endpoint_id: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.endpoint_id = endpoint_id
        self.clock = clock
        self.jobs: dict[str, Job] = {}
        self.queue: deque[str] = deque()
        self.workers: dict[str, WorkerState] = {}
        self.counts = {"completed": 0, "failed": 0, "retried": 0}
        self.requests: dict[str, int] = {}  # route -> count, for tests and benchmarks
        self.runs_submitted = 0
        self.webhook_sender: Callable[[str, dict[str, Any]], None] = post_webhook
        self._waiters: set[asyncio.Future[None]] = set()

    # --- waiting ---

    def notify(self) -> None:
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._waiters.clear()

    async def wait_for(self, predicate: Callable[[], bool], timeout_s: float) -> bool:
        """Wait (on the loop's own clock) until ``predicate`` holds, re-checked after every change."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while not predicate():
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiters.add(waiter)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiter, remaining)
        return True

    # --- client side ---

    def submit(self, body: Any, *, sync: bool) -> Job:
        if not isinstance(body, dict) or "input" not in body:
            raise BadRequest('the body must be a JSON object with an "input" field')
        policy = body.get("policy") or {}
        if not isinstance(policy, dict):
            raise BadRequest(f"policy must be an object, got {policy!r}")
        webhook = body.get("webhook")
        if webhook is not None and not isinstance(webhook, str):
            raise BadRequest(f"webhook must be a URL string, got {webhook!r}")
        job = Job(
            id=f"{'sync-' if sync else ''}{uuid.uuid4()}-e1",
            input=body["input"],
            created_s=self.clock(),
            sync=sync,
            webhook=webhook or None,
            execution_timeout_ms=_policy_ms(
                policy, "executionTimeout", DEFAULT_EXECUTION_TIMEOUT_MS, *EXECUTION_TIMEOUT_RANGE_MS
            ),
            ttl_ms=_policy_ms(policy, "ttl", DEFAULT_TTL_MS, 1, float("inf")),
        )
        self.jobs[job.id] = job
        self.queue.append(job.id)
        self.runs_submitted += 1
        self.notify()
        return job

    def get(self, job_id: str) -> Job | None:
        job = self.jobs.get(job_id)
        if job is not None and self._expire(job, self.clock()):
            return None
        return job

    def cancel(self, job_id: str) -> Job | None:
        job = self.get(job_id)
        if job is not None and job.status not in TERMINAL:
            self._finish(job, "CANCELLED")
        return job

    def retry(self, job_id: str) -> Job | None:
        job = self.get(job_id)
        if job is None:
            return None
        if job.status not in ("FAILED", "TIMED_OUT"):
            raise BadRequest(f"job {job_id} is {job.status}; only FAILED or TIMED_OUT jobs can be retried")
        job.status, job.output, job.error, job.worker_id = "IN_QUEUE", None, None, None
        job.started_s = job.finished_s = None
        job.stream, job.stream_read = [], 0
        job.retries += 1
        self.counts["retried"] += 1
        self.queue.append(job.id)
        self.notify()
        return job

    def purge(self) -> int:
        removed = 0
        while self.queue:
            job = self.jobs.get(self.queue.popleft())
            if job is not None and job.status == "IN_QUEUE":
                self._finish(job, "CANCELLED")
                removed += 1
        return removed

    def health(self) -> dict[str, Any]:
        self.tick()
        running_on = {j.worker_id for j in self.jobs.values() if j.status == "IN_PROGRESS"}
        alive = [w for w in self.workers.values() if not w.exited]
        ready = [w for w in alive if w.ready]
        running = sum(1 for w in ready if w.id in running_on)
        return {
            "jobs": {
                "completed": self.counts["completed"],
                "failed": self.counts["failed"],
                "inProgress": sum(1 for j in self.jobs.values() if j.status == "IN_PROGRESS"),
                "inQueue": sum(1 for j in self.jobs.values() if j.status == "IN_QUEUE"),
                "retried": self.counts["retried"],
            },
            "workers": {
                "idle": len(ready) - running,
                "initializing": len(alive) - len(ready),
                "ready": len(ready),
                "running": running,
                "throttled": 0,
                "unhealthy": len(self.workers) - len(alive),
            },
        }

    # --- worker side ---

    def worker(self, worker_id: str) -> WorkerState:
        worker = self.workers.setdefault(worker_id, WorkerState(worker_id))
        worker.last_seen_s = self.clock()
        return worker

    def take(self, worker_id: str, count: int) -> list[Job]:
        worker = self.worker(worker_id)
        if not worker.ready:
            worker.ready = True
            self.notify()
        taken: list[Job] = []
        while self.queue and len(taken) < count:
            job = self.jobs.get(self.queue.popleft())
            if job is None or job.status != "IN_QUEUE":
                continue
            job.status, job.worker_id, job.started_s = "IN_PROGRESS", worker_id, self.clock()
            taken.append(job)
        if taken:
            self.notify()
        return taken

    def done(self, worker_id: str, job_id: str, body: Mapping[str, Any]) -> None:
        self.worker(worker_id)
        job = self.jobs.get(job_id)
        if job is None or job.status != "IN_PROGRESS" or job.worker_id != worker_id:
            return  # late result of a cancelled/timed-out job, or a stale worker: ignored
        if body.get("status") == "IN_PROGRESS":
            return  # a progress update (may arrive after the result): never changes the job
        if body.get("error"):
            job.error = body["error"]
            self._finish(job, "FAILED")
        else:
            job.output = body.get("output")
            self._finish(job, "COMPLETED")

    def stream_chunk(self, worker_id: str, job_id: str, body: Mapping[str, Any]) -> None:
        job = self.jobs.get(job_id)
        if job is not None and job.status == "IN_PROGRESS" and job.worker_id == worker_id:
            job.stream.append(body.get("output"))
            self.notify()

    def pop_stops(self, worker_id: str) -> list[str]:
        worker = self.worker(worker_id)
        stops = sorted(worker.stops)
        worker.stops.clear()
        return stops

    def read_stream(self, job: Job) -> list[Any]:
        chunks = job.stream[job.stream_read :]
        job.stream_read = len(job.stream)
        return chunks

    # --- time ---

    def tick(self) -> None:
        """Time jobs out (``executionTimeout``) and forget them (``ttl``, then RunPod's retention)."""
        now = self.clock()
        for job in list(self.jobs.values()):
            self._expire(job, now)

    def _expire(self, job: Job, now: float) -> bool:
        """Time one job out, or forget it; True when it is gone."""
        if (
            job.status == "IN_PROGRESS"
            and job.started_s is not None
            and (now - job.started_s) * 1000 >= job.execution_timeout_ms
        ):
            job.error = f"job timed out after its executionTimeout of {job.execution_timeout_ms} ms"
            self._finish(job, "TIMED_OUT")
        kept_s = RUNSYNC_RESULT_KEPT_S if job.sync else RUN_RESULT_KEPT_S
        past_ttl = (now - job.created_s) * 1000 >= job.ttl_ms
        past_retention = job.finished_s is not None and now - job.finished_s >= kept_s
        if not (past_ttl or past_retention):
            return False
        if job.status not in TERMINAL and job.worker_id:
            self.worker(job.worker_id).stops.add(job.id)
        del self.jobs[job.id]
        self.notify()
        return True

    def _finish(self, job: Job, status: str) -> None:
        was_running = job.status == "IN_PROGRESS"
        job.status, job.finished_s = status, self.clock()
        if status == "COMPLETED":
            self.counts["completed"] += 1
        elif status in ("FAILED", "TIMED_OUT"):
            self.counts["failed"] += 1
        if was_running and status in ("CANCELLED", "TIMED_OUT") and job.worker_id:
            self.workers.setdefault(job.worker_id, WorkerState(job.worker_id)).stops.add(job.id)
        if job.webhook:
            payload = {**job.view(), "input": job.input, "webhook": job.webhook}
            threading.Thread(target=self.webhook_sender, args=(job.webhook, payload), daemon=True).start()
        self.notify()


def post_webhook(url: str, payload: dict[str, Any], attempts: int = 3, pause_s: float = 10.0) -> None:
    """POST the final status object; RunPod retries twice, 10 s apart, unless it gets a 200."""
    if urlsplit(url).scheme not in ("http", "https"):
        log.warning("emulator.webhook_refused", reason="only http(s) webhooks are called")
        return
    data = json.dumps(payload).encode()
    for attempt in range(attempts):
        request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})  # noqa: S310
        with contextlib.suppress(OSError), urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            if response.status == 200:
                return
        if attempt + 1 < attempts:
            time.sleep(pause_s)
    log.warning("emulator.webhook_failed", attempts=attempts)


def _key_matches(header: str, key: str) -> bool:
    """``Bearer <key>`` (any case of the scheme) or the bare key, compared in constant time as bytes (a
    header may hold any bytes)."""
    scheme, _, token = header.partition(" ")
    offered = token.strip() if scheme.lower() == "bearer" else header.strip()
    return hmac.compare_digest(offered.encode("utf-8", "surrogateescape"), key.encode())


class EmulatorApp:
    """The HTTP side: one aiohttp handler that routes as RunPod's API does."""

    def __init__(self, state: EndpointState, api_key: str) -> None:
        self.state = state
        self.api_key = api_key
        self.job_take_hold_s = JOB_TAKE_HOLD_S
        self.job_stop_hold_s = JOB_STOP_HOLD_S

    def application(self) -> web.Application:
        from aiohttp import web

        # Beyond the largest body any route takes; each route checks its own limit once the body is read.
        app = web.Application(client_max_size=MAX_RUNSYNC_BODY + MB)
        app.router.add_route("*", "/{path:.*}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.StreamResponse:
        from aiohttp import web

        # Read the whole body first, whatever the answer: a body left unread would be taken for the next
        # request on a kept-alive connection.
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return self._json(413, {"error": f"the body is over {MAX_RUNSYNC_BODY // MB} MB"})
        segments = [s for s in request.path.split("/") if s]
        if len(segments) < 3 or segments[:2] != ["v2", self.state.endpoint_id]:
            return self._json(
                404, {"error": f"no such route: {request.path} (endpoint id is {self.state.endpoint_id!r})"}
            )
        route, rest = segments[2], segments[3:]
        self.state.requests[route] = self.state.requests.get(route, 0) + 1
        if route not in WORKER_ROUTES and not _key_matches(
            request.headers.get("Authorization", ""), self.api_key
        ):
            return self._json(401, {"error": "Unauthorized"})
        methods = ROUTES.get(route)
        if methods is None:
            return self._json(404, {"error": f"no such route: {route}"})
        if request.method not in methods:
            return self._json(405, {"error": f"{request.method} {route} is not supported"})
        query = dict(request.query)
        try:
            answer = await getattr(self, f"_{route.replace('-', '_')}")(rest, query, body)
        except BadRequest as exc:
            return self._json(400, {"error": str(exc)})
        if answer is None:
            return web.Response(status=204)
        status, payload = answer
        return self._json(status, payload)

    @staticmethod
    def _json(status: int, payload: Any) -> web.Response:
        from aiohttp import web

        return web.json_response(payload, status=status)

    @staticmethod
    def _parse(body: bytes) -> Any:
        if not body:
            return {}
        try:
            return json.loads(body)
        except ValueError:
            raise BadRequest("the body is not JSON") from None

    def _job(self, rest: list[str]) -> Job | None:
        return self.state.get(rest[0]) if rest else None

    # client API

    @staticmethod
    def _too_big(route: str, body: bytes, limit: int) -> tuple[int, Any] | None:
        if len(body) <= limit:
            return None
        return 413, {"error": f"/{route} takes at most {limit // MB} MB; this body is {len(body)} bytes"}

    async def _run(self, _rest: list[str], _query: dict[str, str], body: bytes) -> tuple[int, Any]:
        if too_big := self._too_big("run", body, MAX_RUN_BODY):
            return too_big
        job = self.state.submit(self._parse(body), sync=False)
        return 200, {"id": job.id, "status": job.status}

    async def _runsync(self, _rest: list[str], query: dict[str, str], body: bytes) -> tuple[int, Any]:
        if too_big := self._too_big("runsync", body, MAX_RUNSYNC_BODY):
            return too_big
        wait_s = wait_ms(query) / 1000
        job = self.state.submit(self._parse(body), sync=True)
        await self.state.wait_for(lambda: job.status in TERMINAL, wait_s)
        return 200, job.view()

    async def _status(self, rest: list[str], _query: dict[str, str], _body: bytes) -> tuple[int, Any]:
        job = self._job(rest)
        if job is None:
            return 404, {"error": "job not found (it may have expired: results are kept for a while only)"}
        return 200, job.view()

    async def _status_sync(self, rest: list[str], query: dict[str, str], body: bytes) -> tuple[int, Any]:
        wait_s = wait_ms(query) / 1000
        job = self._job(rest)
        if job is not None:
            await self.state.wait_for(lambda: job.status in TERMINAL or job.id not in self.state.jobs, wait_s)
        return await self._status(rest, query, body)

    async def _stream(self, rest: list[str], _query: dict[str, str], _body: bytes) -> tuple[int, Any]:
        job = self._job(rest)
        if job is None:
            return 404, {"error": "job not found"}
        await self.state.wait_for(
            lambda: job.status in TERMINAL or len(job.stream) > job.stream_read, STREAM_HOLD_S
        )
        chunks = self.state.read_stream(job)
        return 200, {"status": job.status, "stream": [{"output": c} for c in chunks]}

    async def _cancel(self, rest: list[str], _query: dict[str, str], _body: bytes) -> tuple[int, Any]:
        job = self.state.cancel(rest[0]) if rest else None
        if job is None:
            return 404, {"error": "job not found"}
        return 200, {"id": job.id, "status": job.status}

    async def _retry(self, rest: list[str], _query: dict[str, str], _body: bytes) -> tuple[int, Any]:
        job = self.state.retry(rest[0]) if rest else None
        if job is None:
            return 404, {"error": "job not found"}
        return 200, {"id": job.id, "status": job.status}

    async def _health(self, _rest: list[str], _query: dict[str, str], _body: bytes) -> tuple[int, Any]:
        return 200, self.state.health()

    async def _purge_queue(self, _rest: list[str], _query: dict[str, str], _body: bytes) -> tuple[int, Any]:
        return 200, {"removed": self.state.purge(), "status": "completed"}

    async def _emulator_stats(
        self, _rest: list[str], _query: dict[str, str], _body: bytes
    ) -> tuple[int, Any]:
        return 200, {"requests": dict(self.state.requests), "runs_submitted": self.state.runs_submitted}

    # worker protocol

    async def _take(self, rest: list[str], count: int) -> list[Job]:
        if not rest:
            return []
        taken: list[Job] = []

        def some() -> bool:
            taken.extend(self.state.take(rest[0], count))
            return bool(taken)

        await self.state.wait_for(some, self.job_take_hold_s)
        return taken

    async def _job_take(
        self, rest: list[str], _query: dict[str, str], _body: bytes
    ) -> tuple[int, Any] | None:
        jobs = await self._take(rest, 1)
        return (200, {"id": jobs[0].id, "input": jobs[0].input}) if jobs else None

    async def _job_take_batch(
        self, rest: list[str], query: dict[str, str], _body: bytes
    ) -> tuple[int, Any] | None:
        try:
            size = max(1, int(query.get("batch_size", "1")))
        except ValueError:
            raise BadRequest("batch_size must be an integer") from None
        jobs = await self._take(rest, size)
        return (200, [{"id": j.id, "input": j.input} for j in jobs]) if jobs else None

    def _worker_body(self, body: bytes) -> dict[str, Any]:
        parsed = self._parse(body)  # the runtime posts JSON with a form content type
        return parsed if isinstance(parsed, dict) else {}

    async def _job_done(self, rest: list[str], _query: dict[str, str], body: bytes) -> tuple[int, Any]:
        if len(rest) >= 2:
            self.state.done(rest[0], rest[1], self._worker_body(body))
        return 200, {}

    async def _job_stream(self, rest: list[str], _query: dict[str, str], body: bytes) -> tuple[int, Any]:
        if len(rest) >= 2:
            self.state.stream_chunk(rest[0], rest[1], self._worker_body(body))
        return 200, {}

    async def _ping(self, rest: list[str], _query: dict[str, str], _body: bytes) -> tuple[int, Any]:
        if rest:
            self.state.worker(rest[0])
        return 200, {}

    async def _job_stop(
        self, rest: list[str], _query: dict[str, str], _body: bytes
    ) -> tuple[int, Any] | None:
        if not rest:
            return None
        stops: list[str] = []

        def some() -> bool:
            stops.extend(self.state.pop_stops(rest[0]))
            return bool(stops)

        await self.state.wait_for(some, self.job_stop_hold_s)
        return (200, {"jobsToStop": stops}) if stops else None


class LocalEndpoint:
    """An emulated endpoint on loopback plus N real worker processes. Use as a context manager.

    ``api_key`` is what clients must send (one is generated when none is given: see :attr:`api_key`).
    :meth:`start` returns once every worker has asked for a job, and raises :class:`ConfigError` with a
    worker's own words when one exits before that (a task module that cannot be imported, say)."""

    def __init__(
        self,
        tasks: list[str],
        *,
        workers: int = 1,
        slots_per_worker: int = 1,
        port: int = 0,
        host: str = "127.0.0.1",
        endpoint_id: str = "local",
        api_key: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        python: str = sys.executable,
        worker_env: Mapping[str, str] | None = None,
        ready_timeout_s: float = 120.0,
    ) -> None:
        self.state = EndpointState(endpoint_id, clock)
        self.api_key = api_key or f"local-{secrets.token_urlsafe(18)}"
        self.app = EmulatorApp(self.state, self.api_key)
        self.tasks = tasks
        self.worker_count = workers
        self.slots_per_worker = slots_per_worker
        self.host = host
        self.port = port
        self.python = python
        self.worker_env = dict(worker_env or {})
        self.ready_timeout_s = ready_timeout_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: Any = None
        self._background: list[asyncio.Task[None]] = []
        self._stopping = False

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """What a client swaps in for ``https://api.runpod.ai/v2``."""
        return f"{self.url}/v2"

    def worker_environment(self, worker_id: str) -> dict[str, str]:
        ep = f"{self.url}/v2/{self.state.endpoint_id}"
        return {
            "RUNPOD_WEBHOOK_GET_JOB": f"{ep}/job-take/{worker_id}?gpu=LOCAL",
            "RUNPOD_WEBHOOK_POST_OUTPUT": f"{ep}/job-done/{worker_id}/$ID?gpu=LOCAL",
            "RUNPOD_WEBHOOK_POST_STREAM": f"{ep}/job-stream/{worker_id}/$ID?gpu=LOCAL",
            "RUNPOD_WEBHOOK_PING": f"{ep}/ping/{worker_id}?gpu=LOCAL",
            "RUNPOD_PING_INTERVAL": "10000",
            "RUNPOD_AI_API_KEY": "local-worker",
            "RUNPOD_POD_ID": worker_id,
            "RUNPOD_ENDPOINT_ID": self.state.endpoint_id,
            "RUNPOD_SKIP_AUTO_SYSTEM_CHECKS": "true",
            "RUNPOD_DEBUG_LEVEL": "ERROR",
            "RPH_TASKS": ",".join(self.tasks),
            "RPH_WORKER_CONCURRENCY": str(self.slots_per_worker),
        }

    # --- the loop thread ---

    def call(self, function: Callable[[], T]) -> T:
        """Run ``function`` on the endpoint's event loop (where its state lives) and return its result."""
        return self.run(self._as_coroutine(function))

    @staticmethod
    async def _as_coroutine(function: Callable[[], T]) -> T:
        return function()

    def run(self, coroutine: Awaitable[T]) -> T:
        if self._loop is None:
            raise RuntimeError("the local endpoint is not started")
        future: Future[T] = asyncio.run_coroutine_threadsafe(coroutine, self._loop)  # type: ignore[arg-type]
        return future.result()

    def start(self) -> LocalEndpoint:
        try:
            import aiohttp  # noqa: F401 - its server is ours; its workers need runpod, which brings it
        except ImportError as exc:
            raise ConfigError(
                "The local endpoint needs the worker extra: pip install 'runpod-hybrid[worker]'."
            ) from exc
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name="rph-local-endpoint", daemon=True)
        self._thread.start()
        try:
            self.run(self._start())
        except BaseException:
            self.stop()
            raise
        return self

    async def _start(self) -> None:
        from aiohttp import web

        # handler_cancellation: a long-poll whose client went away ends instead of holding a slot.
        listener = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((self.host, self.port))
        except OSError as exc:
            listener.close()
            raise ConfigError(
                f"Cannot serve on {self.host}:{self.port}: {exc.strerror}. Pick another port (--port)."
            ) from exc
        self.port = int(listener.getsockname()[1])
        self._runner = web.AppRunner(
            self.app.application(), handler_cancellation=True, access_log=None, shutdown_timeout=1.0
        )
        await self._runner.setup()
        # RunPod's runtime keeps long-polls open: a generous backlog avoids refused connections under load.
        await web.SockSite(self._runner, listener, backlog=256).start()
        self._background.append(asyncio.create_task(self._ticker()))
        for index in range(self.worker_count):
            await self._add_worker(f"local-worker-{index}")
        await self._wait_ready()

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            self.state.tick()

    async def _add_worker(self, worker_id: str) -> None:
        env = {**os.environ, **self.worker_env, **self.worker_environment(worker_id)}
        env.pop("RUNPOD_API_KEY", None)  # workers never need the user's key
        process = await asyncio.create_subprocess_exec(
            self.python,
            "-m",
            "runpod_hybrid_worker",
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            # A killed or crashed emulator leaves no orphan worker polling a dead port; and each worker is a
            # process group, so stopping it also stops the heartbeat process RunPod's runtime forks.
            preexec_fn=die_with_parent,  # only prctl: no locks taken between fork and exec
            start_new_session=True,
        )
        worker = self.state.workers.setdefault(worker_id, WorkerState(worker_id))
        worker.process = process
        assert process.stdout is not None and process.stderr is not None
        worker.pumps = [
            asyncio.create_task(self._pump(worker, process.stdout, "stdout")),
            asyncio.create_task(self._pump(worker, process.stderr, "stderr")),
        ]
        self._background += [*worker.pumps, asyncio.create_task(self._reap(worker, process))]

    async def _pump(self, worker: WorkerState, stream: asyncio.StreamReader, name: str) -> None:
        """A worker's output, line by line, into this module's log (stderr as warnings)."""
        while line := await stream.readline():
            text = line.decode("utf-8", "replace").rstrip()
            if name == "stderr":
                worker.output_tail.append(text)
                log.warning("emulator.worker_stderr", worker=worker.id, line=text)
            else:
                log.info("emulator.worker_stdout", worker=worker.id, line=text)

    async def _reap(self, worker: WorkerState, process: asyncio.subprocess.Process) -> None:
        code = await process.wait()
        self.state.notify()
        if not self._stopping:
            log.warning("emulator.worker_exited", worker=worker.id, exit_code=code)

    async def _wait_ready(self) -> None:
        workers = list(self.state.workers.values())
        await self.state.wait_for(
            lambda: all(w.ready for w in workers) or any(w.exited and not w.ready for w in workers),
            self.ready_timeout_s,
        )
        for worker in workers:
            if not worker.ready:
                await asyncio.wait(worker.pumps, timeout=2.0)  # the last lines it wrote, up to its exit
                said = "\n".join(worker.output_tail) or "(nothing on stderr)"
                what = (
                    f"exited with code {worker.process.returncode}"
                    if worker.exited and worker.process is not None
                    else f"did not start within {self.ready_timeout_s:g} s"
                )
                raise ConfigError(
                    f"Worker {worker.id} (tasks {', '.join(self.tasks)}) {what} before taking a job:\n{said}"
                )

    def worker_pids(self) -> dict[str, int]:
        """Worker id -> process id, for tests that crash a worker."""
        return self.call(
            lambda: {w.id: w.process.pid for w in self.state.workers.values() if w.process is not None}
        )

    def stats(self) -> dict[str, Any]:
        """Requests per route and ``/run`` submissions so far (not a RunPod API)."""
        return self.call(
            lambda: {"requests": dict(self.state.requests), "runs_submitted": self.state.runs_submitted}
        )

    def tick(self) -> None:
        """Apply timeouts and expiry now (tests that move an injected clock call it)."""
        self.call(self.state.tick)

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if loop.is_running():
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(self._stop(), loop).result(timeout=30)
            loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)
        loop.close()
        self._loop = self._thread = None

    async def _stop(self) -> None:
        self._stopping = True
        processes = [w.process for w in self.state.workers.values() if w.process is not None]
        # Workers hold no state worth a graceful exit, and RunPod's runtime lingers on its long-polls after
        # SIGTERM: kill each whole process group.
        for process in processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        for process in processes:
            await process.wait()
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
        # Requests still held (long-polls of clients that keep their connection) end here, not at loop close.
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)

    def __enter__(self) -> LocalEndpoint:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()
