"""A RunPod Serverless endpoint: the job API client (``/run``, ``/runsync``, ``/status``, ``/stream``, ...).

Fixes over RunPod's own client: FAILED and TIMED_OUT raise a :class:`JobError` carrying the worker's error
(a JSON error string is parsed); a 404 on a submitted job raises :class:`JobExpiredError`; answers of the
wrong shape (a ``/run`` without an id, a status without one) raise :class:`BadResponseError`, and missing or
null numbers (``delayTime: null``) read as unknown; ``stream`` ends on every terminal status, CANCELLED
included; every wait with a timeout ends when it runs out, even when no worker ever takes the job, saying
what ``/health`` shows; polling backs off (0.25 s doubling to 5 s); 429s honour ``Retry-After`` (in the
transport) and a client-side limiter stays under RunPod's documented per-endpoint limits; ``/run`` is
retried only when the request surely never arrived. Batches over many inputs (``map``) are in ``batch.py``.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from runpod_hybrid.errors import (
    BadResponseError,
    JobError,
    JobExpiredError,
    JobState,
    NotFoundError,
    RunPodHybridError,
)

from .tasks import task_call, task_name

if TYPE_CHECKING:
    from runpod_hybrid._http import HttpTransport

    from .batch import BatchLedger, BatchSize, BatchSummary, InputsFile, MapOptions, ProgressCallback

SERVERLESS_URL = "https://api.runpod.ai/v2"
TERMINAL = frozenset({"COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"})
_STATES: dict[str, JobState] = {
    "IN_QUEUE": "PENDING",
    "IN_PROGRESS": "RUNNING",
    "COMPLETED": "SUCCEEDED",
    "FAILED": "FAILED",
    "CANCELLED": "CANCELLED",
    "TIMED_OUT": "TIMED_OUT",
}


def job_state(runpod_status: Any) -> JobState:
    """Our state for one of RunPod Serverless's statuses (an unknown one reads as PENDING)."""
    return _STATES.get(str(runpod_status), "PENDING")


# RunPod's documented per-endpoint limits, per 10 s window. We stay at 90 %.
RATE_LIMITS = {
    "run": 1000,
    "runsync": 2000,
    "status": 2000,
    "stream": 2000,
    "cancel": 100,
    "purge-queue": 2,
    "retry": 100,
}
RATE_WINDOW_S = 10.0
MAX_POLL_S = 5.0


class RateLimiter:
    """Sliding-window limiter per route; ``sleep``/``clock`` injectable."""

    def __init__(
        self,
        limits: Mapping[str, int],
        window_s: float,
        *,
        share: float = 0.9,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._limits = {k: max(1, int(v * share)) for k, v in limits.items()}
        self._window_s = window_s
        self._clock = clock
        self._sleep = sleep
        self._calls: dict[str, deque[float]] = {k: deque() for k in limits}
        self._lock = threading.Lock()

    def acquire(self, route: str) -> None:
        if route not in self._limits:
            return
        while True:
            with self._lock:
                now = self._clock()
                calls = self._calls[route]
                while calls and now - calls[0] >= self._window_s:
                    calls.popleft()
                if len(calls) < self._limits[route]:
                    calls.append(now)
                    return
                pause = self._window_s - (now - calls[0])
            self._sleep(max(pause, 0.001))


def parse_worker_error(error: Any) -> Any:
    """RunPod's runtime sends a raised exception as a JSON string; return it parsed when it is one."""
    if isinstance(error, str):
        try:
            parsed = json.loads(error)
        except ValueError:
            return error
        return parsed if isinstance(parsed, dict) else error
    return error


def job_error(job_id: str, body: Mapping[str, Any]) -> JobError:
    status = str(body.get("status"))
    error = parse_worker_error(body.get("error"))
    detail = error.get("error_message", error) if isinstance(error, dict) else error
    text = str(detail).strip().splitlines()[0] if detail else "no error given"
    advice = {
        "FAILED": "see the worker's error; `rph sls retry` runs it again",
        "TIMED_OUT": "raise the endpoint's executionTimeout or the job's policy.executionTimeout",
        "CANCELLED": "it was cancelled",
    }.get(status, "")
    return JobError(
        f"Job {job_id} {status}: {text}" + (f" ({advice})" if advice else ""),
        job_id=job_id,
        state=job_state(status),
        error=error,
    )


def _milliseconds(value: Any) -> int | None:
    """A duration in ms from a status body; anything but a number (null, missing) is unknown."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value)


@dataclass(frozen=True)
class JobStatus:
    """One job's status as RunPod reports it (``/status``, ``/runsync``), typed. ``raw`` is the body."""

    id: str
    status: str
    delay_ms: int | None
    execution_ms: int | None
    output: Any
    error: Any
    worker_id: str | None
    retries: int
    raw: Mapping[str, Any]

    @property
    def state(self) -> JobState:
        return job_state(self.status)

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    @classmethod
    def from_api(cls, body: Any, what: str, job_id: str | None = None) -> JobStatus:
        found = body.get("id") if isinstance(body, Mapping) else None
        status = body.get("status") if isinstance(body, Mapping) else None
        if not isinstance(status, str) or not isinstance(found or job_id, str):
            raise BadResponseError(
                f"{what} answered without a job id and status: {str(body)[:200]!r}. Is the base URL a RunPod "
                "serverless API (https://api.runpod.ai/v2, or `rph endpoint serve-local`)?",
                body=body,
            )
        assert isinstance(body, Mapping)
        retries = body.get("retries")
        worker = body.get("workerId")
        return cls(
            id=str(found or job_id),
            status=status,
            delay_ms=_milliseconds(body.get("delayTime")),
            execution_ms=_milliseconds(body.get("executionTime")),
            output=body.get("output"),
            error=body.get("error"),
            worker_id=worker if isinstance(worker, str) else None,
            retries=retries if isinstance(retries, int) and not isinstance(retries, bool) else 0,
            raw=body,
        )


def describe_health(health: Mapping[str, Any]) -> str:
    """``/health`` in words: "1 in queue, 0 in progress; workers: 0 ready, 2 unhealthy"."""
    jobs = health.get("jobs") if isinstance(health.get("jobs"), Mapping) else {}
    workers = health.get("workers") if isinstance(health.get("workers"), Mapping) else {}
    assert isinstance(jobs, Mapping) and isinstance(workers, Mapping)
    parts = [f"{jobs.get('inQueue', '?')} in queue", f"{jobs.get('inProgress', '?')} in progress"]
    worker_parts = [
        f"{workers.get(k, 0)} {k}"
        for k in ("ready", "running", "initializing", "throttled", "unhealthy")
        if workers.get(k)
    ]
    return ", ".join(parts) + "; workers: " + (", ".join(worker_parts) or "none")


class Endpoint:
    """One serverless endpoint. ``base_url`` swaps RunPod for a local endpoint (``rph endpoint serve-local``)."""

    def __init__(
        self,
        endpoint_id: str,
        transport: HttpTransport,
        *,
        base_url: str = SERVERLESS_URL,
        ledger: BatchLedger | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.endpoint_id = endpoint_id
        self.base_url = base_url.rstrip("/")
        self._transport = transport
        self._ledger = ledger
        self.sleep = sleep
        self.clock = clock
        self._limiter = RateLimiter(RATE_LIMITS, RATE_WINDOW_S, clock=clock, sleep=sleep)

    def _url(self, route: str, job_id: str | None = None) -> str:
        return f"{self.base_url}/{self.endpoint_id}/{route}" + (f"/{job_id}" if job_id else "")

    def _call(
        self,
        method: str,
        route: str,
        job_id: str | None = None,
        *,
        body: Any = None,
        idempotent: bool = True,
        params: Mapping[str, str] | None = None,
        read_timeout_s: float | None = None,
    ) -> Any:
        self._limiter.acquire(route)
        try:
            return self._transport.request(
                method,
                self._url(route, job_id),
                json_body=body,
                params=params,
                idempotent=idempotent,
                read_timeout_s=read_timeout_s,
            )
        except NotFoundError as exc:
            if job_id is None:
                raise NotFoundError(
                    f"No endpoint {self.endpoint_id!r} at {self.base_url} (HTTP 404). Check the endpoint id "
                    "(`rph endpoint list`).",
                    status_code=404,
                ) from exc
            raise JobExpiredError(
                f"Job {job_id} is unknown to endpoint {self.endpoint_id}: its result expired (kept 30 min after "
                "/run, 1 min after /runsync, or its policy.ttl) or the id is wrong.",
                job_id=job_id,
                state="FAILED",
            ) from exc

    @staticmethod
    def _payload(
        task_input: Any,
        webhook: str | None,
        policy: Mapping[str, Any] | None,
        s3_config: Mapping[str, Any] | None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"input": task_input}
        if webhook:
            body["webhook"] = webhook
        if policy:
            body["policy"] = dict(policy)
        if s3_config:
            body["s3Config"] = dict(s3_config)
        return body

    def run(
        self,
        task_input: Any,
        *,
        webhook: str | None = None,
        policy: Mapping[str, Any] | None = None,
        s3_config: Mapping[str, Any] | None = None,
    ) -> str:
        """Queue a job and return its id. Never retried once the request may have arrived (no duplicates)."""
        body = self._call(
            "POST", "run", body=self._payload(task_input, webhook, policy, s3_config), idempotent=False
        )
        job_id = body.get("id") if isinstance(body, Mapping) else None
        if not isinstance(job_id, str) or not job_id:
            raise BadResponseError(
                f"POST /run answered without a job id: {str(body)[:200]!r}. The job may or may not have been "
                f"queued: `rph sls health {self.endpoint_id}` shows the queue.",
                body=body,
            )
        return job_id

    def run_sync(
        self,
        task_input: Any,
        *,
        wait_s: float = 90.0,
        webhook: str | None = None,
        policy: Mapping[str, Any] | None = None,
    ) -> Any:
        """Run and wait at most ``wait_s`` in all (server-side first, ``?wait=``, then polling); return the
        output, raise :class:`JobError` on failure or when the wait runs out (saying what ``/health`` shows)."""
        started_s = self.clock()
        deadline = started_s + wait_s
        wait_ms = int(min(300.0, max(1.0, wait_s)) * 1000)
        body = self._call(
            "POST",
            "runsync",
            body=self._payload(task_input, webhook, policy, None),
            idempotent=False,
            params={"wait": str(wait_ms)},
            read_timeout_s=wait_ms / 1000 + 30,
        )
        status = JobStatus.from_api(body, "POST /runsync")
        if status.terminal:
            return self._output(status)
        return self._output(self._wait_status(status.id, deadline=deadline, started_s=started_s))

    def status(self, job_id: str) -> dict[str, Any]:
        """The job's status body as RunPod answers it."""
        return dict(self.job_status(job_id).raw)

    def job_status(self, job_id: str) -> JobStatus:
        """The job's status, typed."""
        return JobStatus.from_api(self._call("GET", "status", job_id), f"GET /status/{job_id}", job_id)

    def _output(self, status: JobStatus) -> Any:
        if status.status == "COMPLETED":
            return status.output
        raise job_error(status.id, status.raw)

    def describe_health(self) -> str:
        """What ``/health`` shows, in words (or why it could not be read): for messages about waits."""
        try:
            return f"endpoint {self.endpoint_id}: {describe_health(self.health())}"
        except RunPodHybridError as exc:
            return f"endpoint {self.endpoint_id}'s health is unknown ({exc})"

    def wait(self, job_id: str, *, timeout_s: float | None = None, first_poll_s: float = 0.25) -> Any:
        """Poll until the job ends (0.25 s doubling to 5 s); return its output or raise :class:`JobError`,
        also when ``timeout_s`` runs out first (then saying what ``/health`` shows)."""
        return self._output(self.wait_status(job_id, timeout_s=timeout_s, first_poll_s=first_poll_s))

    def wait_status(
        self, job_id: str, *, timeout_s: float | None = None, first_poll_s: float = 0.25
    ) -> JobStatus:
        """Poll until the job ends and return its final status, whatever it is; raise :class:`JobError` when
        ``timeout_s`` runs out first, saying what ``/health`` shows (a job no worker takes stays IN_QUEUE)."""
        started_s = self.clock()
        deadline = None if timeout_s is None else started_s + timeout_s
        return self._wait_status(job_id, deadline=deadline, started_s=started_s, first_poll_s=first_poll_s)

    def _wait_status(
        self, job_id: str, *, deadline: float | None, started_s: float, first_poll_s: float = 0.25
    ) -> JobStatus:
        delay = first_poll_s
        while True:
            status = self.job_status(job_id)
            if status.terminal:
                return status
            if deadline is not None and self.clock() >= deadline:
                raise JobError(
                    f"Job {job_id} still {status.status} after {self.clock() - started_s:.0f} s "
                    f"({self.describe_health()}); it "
                    f"keeps going. Check later with `rph sls status {self.endpoint_id} {job_id}`, or cancel it.",
                    job_id=job_id,
                    state=status.state,
                )
            pause = delay if deadline is None else min(delay, max(0.0, deadline - self.clock()))
            self.sleep(pause)
            delay = min(MAX_POLL_S, delay * 2)

    def stream(self, job_id: str, *, poll_s: float = 0.25) -> Iterator[Any]:
        """Yield each streamed chunk; stop on every terminal status (CANCELLED ends quietly); raise after the
        chunks when the job FAILED or TIMED_OUT."""
        while True:
            body = self._call("GET", "stream", job_id)
            if not isinstance(body, Mapping):
                raise BadResponseError(f"GET /stream/{job_id} answered {str(body)[:200]!r}", body=body)
            for chunk in body.get("stream") or []:
                yield chunk.get("output") if isinstance(chunk, Mapping) else chunk
            status = body.get("status")
            if status in TERMINAL:
                if status in ("FAILED", "TIMED_OUT"):
                    raise job_error(job_id, self.status(job_id))
                return
            if not body.get("stream"):
                self.sleep(poll_s)

    def cancel(self, job_id: str) -> dict[str, Any]:
        """Cancel a job (idempotent: cancelling twice is harmless)."""
        return dict(self._call("POST", "cancel", job_id, idempotent=True))

    def retry(self, job_id: str) -> dict[str, Any]:
        """Run a FAILED or TIMED_OUT job again, under the same id."""
        return dict(self._call("POST", "retry", job_id, idempotent=False))

    def health(self) -> dict[str, Any]:
        """Queue and worker counts (``workers.unhealthy`` above 0 means workers crash at start)."""
        return dict(self._call("GET", "health"))

    def purge_queue(self) -> dict[str, Any]:
        """Drop every job still queued (running ones go on)."""
        return dict(self._call("POST", "purge-queue", idempotent=False))

    def call(self, task: Callable[..., Any] | str, value: Any, *, wait_s: float = 90.0) -> Any:
        """Run one ``@task`` on one input and return its output (a generator task's: its chunks)."""
        return self.run_sync(task_call(task_name(task), value), wait_s=wait_s)

    # --- batches ---

    def map(
        self,
        task: Callable[..., Any] | str,
        inputs: Iterable[Any] | InputsFile,
        *,
        batch_size: BatchSize = "auto",
        concurrency: int = 8,
        retries: int = 2,
        timeout_s: float | None = None,
        job_timeout_s: float = 600.0,
        expected_runtime_s: float | None = None,
        order_outputs: bool = True,
        return_exceptions: bool = False,
        on_progress: ProgressCallback | None = None,
        batch_id: str | None = None,
        stop: threading.Event | None = None,
    ) -> Iterator[Any]:
        """Run ``task`` over ``inputs``: an iterator of one result per input, in input order (or as they come
        with ``order_outputs=False``). Inputs are read as they are needed; an :class:`InputsFile` streams a
        JSON-lines file of any size from disk.

        ``batch_size`` inputs go in one job (``"auto"``: about 10 s of work each, from ``expected_runtime_s``
        per input or from the times of the first jobs, within the 10 MB ``/run`` limit and a quarter of
        ``job_timeout_s``); at most ``concurrency`` jobs are in flight. A failed input is resubmitted up to
        ``retries`` times; after that its :class:`JobError` is raised (or yielded as a :class:`MapFailure`
        with ``return_exceptions``). A job still running ``job_timeout_s`` after it started (also sent as its
        ``policy.executionTimeout``) is cancelled and its inputs retried; ``timeout_s`` bounds the whole map.
        With a ledger (the job store) the batch is recorded under ``batch_id`` with a fingerprint of its task
        and inputs, each job before it is sent, so :meth:`resume_batch` finishes it after a crash.
        ``on_progress`` gets the counts; setting ``stop`` cancels the jobs in flight and ends the batch with
        a CANCELLED :class:`JobError`."""
        from .batch import MapOptions

        options = MapOptions(
            batch_size=batch_size,
            concurrency=concurrency,
            retries=retries,
            timeout_s=timeout_s,
            job_timeout_s=job_timeout_s,
            expected_runtime_s=expected_runtime_s,
            order_outputs=order_outputs,
            return_exceptions=return_exceptions,
        )
        return self._map(task_name(task), inputs, options, batch_id, on_progress, stop)

    def _map(
        self,
        task: str,
        inputs: Iterable[Any] | InputsFile,
        options: MapOptions,
        batch_id: str | None,
        on_progress: ProgressCallback | None,
        stop: threading.Event | None,
    ) -> Iterator[Any]:
        from .batch import BatchInfo, Inputs, open_recorded

        batch = batch_id or f"b-{uuid.uuid4().hex[:12]}"
        self.last_batch_id = batch
        source = Inputs.of(inputs, fingerprinted=self._ledger is not None)
        values: Iterable[Any] = source.values
        resuming = False
        if self._ledger is not None:
            info = BatchInfo(
                batch,
                self.endpoint_id,
                self.base_url,
                task,
                source.fingerprint,
                source.count or 0,
                source.file,
                options.to_record(),
            )
            values, created = open_recorded(self._ledger, info, source)
            resuming = not created
        return self._run_batch(
            task, values, source.count, batch, options, on_progress, stop, resuming=resuming
        )

    def _run_batch(
        self,
        task: str,
        values: Iterable[Any],
        total: int | None,
        batch_id: str,
        options: MapOptions,
        on_progress: ProgressCallback | None,
        stop: threading.Event | None,
        *,
        resuming: bool,
    ) -> Iterator[Any]:
        from .batch import BatchRun, endpoint_place

        return BatchRun(
            endpoint_place(
                self,
                task,
                concurrency=options.concurrency,
                job_timeout_s=options.job_timeout_s,
                ledger=self._ledger,
                batch_id=batch_id,
            ),
            task,
            values,
            total=total,
            batch_id=batch_id,
            ledger=self._ledger,
            batch_size=options.batch_size,
            retries=options.retries,
            timeout_s=options.timeout_s,
            job_timeout_s=options.job_timeout_s,
            expected_runtime_s=options.expected_runtime_s,
            order_outputs=options.order_outputs,
            return_exceptions=options.return_exceptions,
            on_progress=on_progress,
            stop=stop,
            clock=self.clock,
            resuming=resuming,
        ).results()

    def resume_batch(
        self,
        batch_id: str,
        *,
        on_progress: ProgressCallback | None = None,
        stop: threading.Event | None = None,
    ) -> Iterator[Any]:
        """Finish a recorded batch after a crash or a stop: inputs already done are answered from the ledger,
        jobs already sent are followed again; its inputs file must be unchanged (else :class:`ConfigError`)."""
        from .batch import MapOptions, recorded_inputs

        if self._ledger is None:
            raise ValueError("resume needs a ledger (the job store)")
        batch = self._ledger.get_batch(batch_id)
        if batch is None:
            raise NotFoundError(
                f"No batch {batch_id!r} in the local job store (`rph batch status` lists them)."
            )
        values = recorded_inputs(self._ledger, batch)
        options = MapOptions.from_record(batch.options)
        return self._run_batch(
            batch.task, values, batch.inputs_count, batch_id, options, on_progress, stop, resuming=True
        )

    def batch_summary(self, batch_id: str) -> BatchSummary:
        """What a batch has done so far, from the ledger (no API call)."""
        from .batch import summarize

        if self._ledger is None:
            raise ValueError("batch summaries need a ledger (the job store)")
        return summarize(self._ledger, batch_id)
