"""A local RunPod Serverless endpoint: the client API and the worker protocol, with real worker processes.

Client API (RunPod's serverless docs) at ``/v2/<endpoint>/``: ``POST run``, ``POST runsync?wait=ms``, ``GET status/<id>``,
``GET stream/<id>``, ``POST cancel/<id>``, ``POST retry/<id>``, ``GET health``, ``POST purge-queue``; ``policy.ttl``
(404 afterwards) and ``policy.executionTimeout`` (TIMED_OUT), webhooks with the final status object.

Worker protocol (RunPod's worker runtime) for ``python -m runpod_hybrid_worker`` (RunPod's own runtime): long-polled
``job-take``/``job-take-batch``, ``job-done`` (a late ``IN_PROGRESS`` progress body is ignored),
``job-stream``, ``ping``, and long-polled ``job-stop`` so a cancel or timeout stops the running job.

Unlike ``runpod``'s ``--rp_serve_api`` dev server, this behaves like the real API, so RunPod's own client and
the curl examples of RunPod's docs work against ``http://127.0.0.1:<port>`` unchanged.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from runpod_hybrid._logging import get_logger

from .handler import die_with_parent

log = get_logger(__name__)

TERMINAL = frozenset({"COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"})
DEFAULT_EXECUTION_TIMEOUT_MS = 600_000
DEFAULT_TTL_MS = 24 * 3600 * 1000
MAX_RUN_BODY = 10 * 1024 * 1024
MAX_RUNSYNC_BODY = 20 * 1024 * 1024
JOB_TAKE_HOLD_S = 5.0
JOB_STOP_HOLD_S = 20.0


@dataclass
class Job:
    id: str
    input: Any
    created_s: float
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

    def view(self, *, with_output: bool = True) -> dict[str, Any]:
        body: dict[str, Any] = {"id": self.id, "status": self.status}
        if self.started_s is not None:
            body["delayTime"] = int((self.started_s - self.created_s) * 1000)
        if self.started_s is not None and self.finished_s is not None:
            body["executionTime"] = int((self.finished_s - self.started_s) * 1000)
        if self.worker_id:
            body["workerId"] = self.worker_id
        if self.retries:
            body["retries"] = self.retries
        if with_output and self.output is not None:
            body["output"] = self.output
        if self.error is not None:
            body["error"] = self.error
        return body


@dataclass
class WorkerState:
    id: str
    last_seen_s: float | None = None
    took_job: bool = False
    stops: set[str] = field(default_factory=set)
    process: subprocess.Popen[bytes] | None = None


class EndpointState:
    """Jobs, queue and workers of one emulated endpoint. All access under ``lock``."""

    def __init__(self, endpoint_id: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.endpoint_id = endpoint_id
        self.clock = clock
        self.lock = threading.Condition()
        self.jobs: dict[str, Job] = {}
        self.queue: deque[str] = deque()
        self.workers: dict[str, WorkerState] = {}
        self.counts = {"completed": 0, "failed": 0, "retried": 0}
        self.requests: dict[str, int] = {}  # route -> count, for tests and benchmarks
        self.runs_submitted = 0
        self.webhook_sender: Callable[[str, dict[str, Any]], None] = post_webhook

    # --- client side ---

    def submit(self, body: Mapping[str, Any]) -> Job:
        policy = body.get("policy") if isinstance(body.get("policy"), Mapping) else {}
        assert isinstance(policy, Mapping)
        job = Job(
            id=f"{uuid.uuid4()}-e1",
            input=body.get("input"),
            created_s=self.clock(),
            webhook=body.get("webhook") if isinstance(body.get("webhook"), str) else None,
            execution_timeout_ms=int(policy.get("executionTimeout", DEFAULT_EXECUTION_TIMEOUT_MS)),
            ttl_ms=int(policy.get("ttl", DEFAULT_TTL_MS)),
        )
        with self.lock:
            self.jobs[job.id] = job
            self.queue.append(job.id)
            self.runs_submitted += 1
            self.lock.notify_all()
        return job

    def get(self, job_id: str) -> Job | None:
        with self.lock:
            self._expire()
            return self.jobs.get(job_id)

    def wait_terminal(self, job_id: str, wait_s: float) -> Job | None:
        deadline = time.monotonic() + wait_s
        with self.lock:
            while True:
                self._expire()
                job = self.jobs.get(job_id)
                if job is None or job.status in TERMINAL:
                    return job
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return job
                self.lock.wait(remaining)

    def cancel(self, job_id: str) -> Job | None:
        with self.lock:
            job = self.jobs.get(job_id)
            if job is None or job.status in TERMINAL:
                return job
            self._finish(job, "CANCELLED")
            return job

    def retry(self, job_id: str) -> tuple[Job | None, str | None]:
        with self.lock:
            job = self.jobs.get(job_id)
            if job is None:
                return None, None
            if job.status not in ("FAILED", "TIMED_OUT"):
                return job, f"job {job_id} is {job.status}; only FAILED or TIMED_OUT jobs can be retried"
            job.status, job.output, job.error, job.worker_id = "IN_QUEUE", None, None, None
            job.started_s = job.finished_s = None
            job.stream, job.stream_read = [], 0
            job.retries += 1
            self.counts["retried"] += 1
            self.queue.append(job.id)
            self.lock.notify_all()
            return job, None

    def purge(self) -> int:
        with self.lock:
            removed = 0
            while self.queue:
                job = self.jobs.get(self.queue.popleft())
                if job is not None and job.status == "IN_QUEUE":
                    self._finish(job, "CANCELLED")
                    removed += 1
            return removed

    def health(self) -> dict[str, Any]:
        with self.lock:
            self._expire()
            in_progress = {j.worker_id for j in self.jobs.values() if j.status == "IN_PROGRESS"}
            alive = [w for w in self.workers.values() if w.process is None or w.process.poll() is None]
            dead = len(self.workers) - len(alive)
            running = sum(1 for w in alive if w.id in in_progress)
            ready = sum(1 for w in alive if w.took_job)
            return {
                "jobs": {
                    "completed": self.counts["completed"],
                    "failed": self.counts["failed"],
                    "inProgress": sum(1 for j in self.jobs.values() if j.status == "IN_PROGRESS"),
                    "inQueue": sum(1 for j in self.jobs.values() if j.status == "IN_QUEUE"),
                    "retried": self.counts["retried"],
                },
                "workers": {
                    "idle": ready - running,
                    "initializing": len(alive) - ready,
                    "ready": ready,
                    "running": running,
                    "throttled": 0,
                    "unhealthy": dead,
                },
            }

    # --- worker side ---

    def take(self, worker_id: str, count: int, hold_s: float) -> list[Job]:
        deadline = time.monotonic() + hold_s
        with self.lock:
            worker = self.workers.setdefault(worker_id, WorkerState(worker_id))
            worker.took_job = True
            worker.last_seen_s = self.clock()
            while True:
                self._expire()
                taken: list[Job] = []
                while self.queue and len(taken) < count:
                    job = self.jobs.get(self.queue.popleft())
                    if job is None or job.status != "IN_QUEUE":
                        continue
                    job.status, job.worker_id, job.started_s = "IN_PROGRESS", worker_id, self.clock()
                    taken.append(job)
                remaining = deadline - time.monotonic()
                if taken or remaining <= 0:
                    if taken:
                        self.lock.notify_all()
                    return taken
                self.lock.wait(remaining)

    def done(self, worker_id: str, job_id: str, body: Mapping[str, Any]) -> None:
        with self.lock:
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
        with self.lock:
            job = self.jobs.get(job_id)
            if job is not None and job.status == "IN_PROGRESS" and job.worker_id == worker_id:
                job.stream.append(body.get("output"))
                self.lock.notify_all()

    def ping(self, worker_id: str) -> None:
        with self.lock:
            self.workers.setdefault(worker_id, WorkerState(worker_id)).last_seen_s = self.clock()

    def stops_for(self, worker_id: str, hold_s: float) -> list[str]:
        deadline = time.monotonic() + hold_s
        with self.lock:
            worker = self.workers.setdefault(worker_id, WorkerState(worker_id))
            while True:
                self._expire()
                if worker.stops:
                    stops = sorted(worker.stops)
                    worker.stops.clear()
                    return stops
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return []
                self.lock.wait(remaining)

    def read_stream(self, job_id: str, wait_s: float) -> Job | None:
        """Wait (bounded) until the job has unread chunks or ends, like the real /stream's short hold."""
        deadline = time.monotonic() + wait_s
        with self.lock:
            while True:
                job = self.jobs.get(job_id)
                if job is None or job.status in TERMINAL or len(job.stream) > job.stream_read:
                    return job
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return job
                self.lock.wait(remaining)

    # --- time ---

    def tick(self) -> None:
        """Apply execution timeouts and ttl expiry now (the server's monitor also does this)."""
        with self.lock:
            self._expire()

    def _expire(self) -> None:
        now = self.clock()
        for job in list(self.jobs.values()):
            if (
                job.status == "IN_PROGRESS"
                and job.started_s is not None
                and (now - job.started_s) * 1000 >= job.execution_timeout_ms
            ):
                job.error = f"job timed out after {job.execution_timeout_ms / 1000:g} s (executionTimeout)"
                self._finish(job, "TIMED_OUT")
            if (now - job.created_s) * 1000 >= job.ttl_ms:
                if job.status not in TERMINAL and job.worker_id:
                    self.workers.setdefault(job.worker_id, WorkerState(job.worker_id)).stops.add(job.id)
                del self.jobs[job.id]

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
        self.lock.notify_all()


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


class _Handler(BaseHTTPRequestHandler):
    server: EmulatorServer
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; without TCP_NODELAY, Nagle plus delayed ACKs add 40 ms to
    # every keep-alive request.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per request (and per long-poll) would drown every other log

    def _reply(self, status: int, body: Any = None) -> None:
        raw = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        if body is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        # The client may have given up (a long-poll cut short at shutdown): nothing to tell it then.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.wfile.write(raw)

    def _body(self) -> tuple[Any, int]:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not raw:
            return {}, 0
        try:
            return json.loads(raw), len(raw)
        except ValueError:
            return None, len(raw)

    def _route(self) -> tuple[str, list[str], dict[str, list[str]]]:
        parts = urlsplit(self.path)
        segments = [s for s in parts.path.split("/") if s]
        query = parse_qs(parts.query)
        if len(segments) < 3 or segments[0] != "v2" or segments[1] != self.server.state.endpoint_id:
            return "", [], query
        return segments[2], segments[3:], query

    def _authorized(self, route: str) -> bool:
        key = self.server.api_key
        if key is None or route.startswith("job-") or route == "ping":
            return True
        header = self.headers.get("Authorization", "")
        return header in (f"Bearer {key}", key)

    def _dispatch(self, method: str) -> None:
        state = self.server.state
        route, rest, query = self._route()
        with state.lock:
            state.requests[route] = state.requests.get(route, 0) + 1
        if not route:
            self._reply(404, {"error": f"no such route: {self.path} (endpoint id is {state.endpoint_id!r})"})
            return
        if not self._authorized(route):
            self._reply(401, {"error": "Unauthorized: wrong API key"})
            return
        handler = getattr(self, f"_{method}_{route.replace('-', '_')}", None)
        if handler is None:
            self._reply(
                405
                if hasattr(self, f"_{'GET' if method == 'POST' else 'POST'}_{route.replace('-', '_')}")
                else 404,
                {"error": f"{method} {route} is not supported"},
            )
            return
        handler(rest, query)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    # client API

    def _submit(self, limit: int) -> Job | None:
        body, size = self._body()
        if size > limit:
            self._reply(400, {"error": f"request body is {size} bytes; the limit is {limit}"})
            return None
        if not isinstance(body, dict) or "input" not in body:
            self._reply(400, {"error": 'body must be JSON with an "input" field'})
            return None
        return self.server.state.submit(body)

    def _POST_run(self, _rest: list[str], _query: dict[str, list[str]]) -> None:
        job = self._submit(MAX_RUN_BODY)
        if job is not None:
            self._reply(200, {"id": job.id, "status": "IN_QUEUE"})

    def _POST_runsync(self, _rest: list[str], query: dict[str, list[str]]) -> None:
        wait_ms = min(300_000, max(1000, int(query.get("wait", ["90000"])[0])))
        job = self._submit(MAX_RUNSYNC_BODY)
        if job is not None:
            finished = self.server.state.wait_terminal(job.id, wait_ms / 1000)
            self._reply(200, (finished or job).view())

    def _job_or_404(self, rest: list[str]) -> Job | None:
        job = self.server.state.get(rest[0]) if rest else None
        if job is None:
            self._reply(404, {"error": "job not found (it may have expired: results are kept for the ttl)"})
        return job

    def _GET_status(self, rest: list[str], _query: dict[str, list[str]]) -> None:
        job = self._job_or_404(rest)
        if job is not None:
            with self.server.state.lock:
                self._reply(200, job.view())

    _POST_status = _GET_status  # runpod's dev server and some clients POST it

    def _GET_stream(self, rest: list[str], _query: dict[str, list[str]]) -> None:
        state = self.server.state
        job = self._job_or_404(rest)
        if job is None:
            return
        job = state.read_stream(job.id, 2.0) or job
        with state.lock:
            chunks = job.stream[job.stream_read :]
            job.stream_read = len(job.stream)
            self._reply(200, {"status": job.status, "stream": [{"output": c} for c in chunks]})

    def _POST_cancel(self, rest: list[str], _query: dict[str, list[str]]) -> None:
        job = self.server.state.cancel(rest[0]) if rest else None
        if job is None:
            self._reply(404, {"error": "job not found"})
        else:
            self._reply(200, {"id": job.id, "status": job.status})

    def _POST_retry(self, rest: list[str], _query: dict[str, list[str]]) -> None:
        job, problem = self.server.state.retry(rest[0]) if rest else (None, None)
        if job is None:
            self._reply(404, {"error": "job not found"})
        elif problem:
            self._reply(400, {"error": problem})
        else:
            self._reply(200, {"id": job.id, "status": "IN_QUEUE"})

    def _GET_health(self, _rest: list[str], _query: dict[str, list[str]]) -> None:
        self._reply(200, self.server.state.health())

    def _GET_emulator_stats(self, _rest: list[str], _query: dict[str, list[str]]) -> None:
        """Not a RunPod route: request counts per route and /run submissions, for tests and benchmarks."""
        state = self.server.state
        with state.lock:
            self._reply(200, {"requests": dict(state.requests), "runs_submitted": state.runs_submitted})

    def _POST_purge_queue(self, _rest: list[str], _query: dict[str, list[str]]) -> None:
        self._reply(200, {"removed": self.server.state.purge(), "status": "completed"})

    # worker protocol

    def _GET_job_take(self, rest: list[str], _query: dict[str, list[str]]) -> None:
        jobs = self.server.state.take(rest[0], 1, self.server.job_take_hold_s) if rest else []
        if jobs:
            self._reply(200, {"id": jobs[0].id, "input": jobs[0].input})
        else:
            self._reply(204)

    def _GET_job_take_batch(self, rest: list[str], query: dict[str, list[str]]) -> None:
        size = max(1, int(query.get("batch_size", ["1"])[0]))
        jobs = self.server.state.take(rest[0], size, self.server.job_take_hold_s) if rest else []
        if jobs:
            self._reply(200, [{"id": j.id, "input": j.input} for j in jobs])
        else:
            self._reply(204)

    def _worker_body(self) -> Any:
        body, _ = self._body()  # the runtime posts JSON with a form content type
        return body if isinstance(body, dict) else {}

    def _POST_job_done(self, rest: list[str], _query: dict[str, list[str]]) -> None:
        if len(rest) >= 2:
            self.server.state.done(rest[0], rest[1], self._worker_body())
        self._reply(200, {})

    def _POST_job_stream(self, rest: list[str], _query: dict[str, list[str]]) -> None:
        if len(rest) >= 2:
            self.server.state.stream_chunk(rest[0], rest[1], self._worker_body())
        self._reply(200, {})

    def _GET_ping(self, rest: list[str], _query: dict[str, list[str]]) -> None:
        if rest:
            self.server.state.ping(rest[0])
        self._reply(200, {})

    def _GET_job_stop(self, rest: list[str], _query: dict[str, list[str]]) -> None:
        stops = self.server.state.stops_for(rest[0], self.server.job_stop_hold_s) if rest else []
        if stops:
            self._reply(200, {"jobsToStop": stops})
        else:
            self._reply(204)


class EmulatorServer(ThreadingHTTPServer):
    daemon_threads = True
    # RunPod's runtime keeps long-polls open; a generous backlog avoids refused connections under load.
    request_queue_size = 256

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A worker killed mid-request (stop, or a test) resets its connection: not worth a traceback.
        log.debug("emulator.request_error", client=str(client_address), error=str(sys.exc_info()[1]))

    def __init__(self, state: EndpointState, host: str, port: int, api_key: str | None) -> None:
        self.state = state
        self.api_key = api_key
        self.job_take_hold_s = JOB_TAKE_HOLD_S
        self.job_stop_hold_s = JOB_STOP_HOLD_S
        super().__init__((host, port), _Handler)


class LocalEndpoint:
    """An emulated endpoint on loopback plus N real worker processes. Use as a context manager."""

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
    ) -> None:
        self.state = EndpointState(endpoint_id, clock)
        self.server = EmulatorServer(self.state, host, port, api_key)
        self.tasks = tasks
        self.worker_count = workers
        self.slots_per_worker = slots_per_worker
        self.python = python
        self.worker_env = dict(worker_env or {})
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host.decode() if isinstance(host, bytes) else host}:{port}"

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

    def start(self) -> LocalEndpoint:
        serve = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        serve.start()
        monitor = threading.Thread(target=self._monitor, daemon=True)
        monitor.start()
        self._threads += [serve, monitor]
        for index in range(self.worker_count):
            self.add_worker(f"local-worker-{index}")
        return self

    def add_worker(self, worker_id: str) -> None:
        env = {**os.environ, **self.worker_env, **self.worker_environment(worker_id)}
        env.pop("RUNPOD_API_KEY", None)  # workers never need the user's key
        process = subprocess.Popen(
            [self.python, "-m", "runpod_hybrid_worker"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            # A killed or crashed emulator leaves no orphan worker polling a dead port; and each worker is a
            # process group, so stopping it also stops the heartbeat process RunPod's runtime forks.
            preexec_fn=die_with_parent,  # noqa: PLW1509 - only prctl, no locks taken
            start_new_session=True,
        )
        with self.state.lock:
            self.state.workers[worker_id] = WorkerState(worker_id, process=process)

    def _monitor(self) -> None:
        while not self._stopping.wait(0.2):
            self.state.tick()

    def stop(self) -> None:
        self._stopping.set()
        with self.state.lock:
            processes = [w.process for w in self.state.workers.values() if w.process is not None]
        # Workers hold no state worth a graceful exit, and RunPod's runtime lingers on its long-polls
        # after SIGTERM: kill them.
        for process in processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        for process in processes:
            process.wait()
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> LocalEndpoint:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()
