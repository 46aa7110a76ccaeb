"""A RunPod Serverless endpoint: the job API client (``/run``, ``/runsync``, ``/status``, ``/stream``, ...).

Fixes over RunPod's own client: FAILED and TIMED_OUT raise a :class:`JobError` carrying the worker's error
(a JSON error string is parsed); a 404 on a submitted job raises :class:`JobExpiredError`; ``stream`` ends on
every terminal status, CANCELLED included; polling backs off (0.25 s doubling to 5 s) under a deadline;
429s honour ``Retry-After`` (in the transport) and a client-side limiter stays under RunPod's documented
per-endpoint limits; ``/run`` is retried only when the request surely never arrived. Batches over many
inputs (``map``) are in ``batch.py``.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from runpod_hybrid.errors import JobError, JobExpiredError, JobState, NotFoundError

from .tasks import task_name, unwrap_output

if TYPE_CHECKING:
    from runpod_hybrid._http import HttpTransport

    from .batch import BatchLedger, BatchRun, BatchSummary, ProgressCallback

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
        return str(body["id"])

    def run_sync(
        self,
        task_input: Any,
        *,
        wait_s: float = 90.0,
        webhook: str | None = None,
        policy: Mapping[str, Any] | None = None,
    ) -> Any:
        """Run and wait server-side (``?wait=``); returns the output, raises on failure, keeps polling if the
        server's wait ran out first."""
        wait_ms = int(min(300.0, max(1.0, wait_s)) * 1000)
        body = self._call(
            "POST",
            "runsync",
            body=self._payload(task_input, webhook, policy, None),
            idempotent=False,
            params={"wait": str(wait_ms)},
            read_timeout_s=wait_ms / 1000 + 30,
        )
        if body.get("status") not in TERMINAL:
            return self.wait(str(body["id"]))
        return self._output(str(body["id"]), body)

    def status(self, job_id: str) -> dict[str, Any]:
        """The job's status object as RunPod answers it (status, delayTime, executionTime, output...)."""
        return dict(self._call("GET", "status", job_id))

    def _output(self, job_id: str, body: Mapping[str, Any]) -> Any:
        if body.get("status") == "COMPLETED":
            return body.get("output")
        raise job_error(job_id, body)

    def wait(
        self,
        job_id: str,
        *,
        timeout_s: float | None = None,
        first_poll_s: float = 0.25,
        max_poll_s: float = 5.0,
        on_status: Callable[[dict[str, Any]], None] | None = None,
    ) -> Any:
        """Poll until the job ends (0.25 s doubling to 5 s); return its output or raise :class:`JobError`."""
        deadline = None if timeout_s is None else self.clock() + timeout_s
        delay = first_poll_s
        while True:
            body = self.status(job_id)
            if on_status:
                on_status(body)
            if body.get("status") in TERMINAL:
                return self._output(job_id, body)
            if deadline is not None and self.clock() + delay > deadline:
                raise JobError(
                    f"Job {job_id} still {body.get('status')} after {timeout_s:g} s; it keeps running. "
                    f"Check later with `rph sls status {self.endpoint_id} {job_id}` or cancel it.",
                    job_id=job_id,
                    state=job_state(body.get("status")),
                )
            self.sleep(delay)
            delay = min(max_poll_s, delay * 2)

    def stream(self, job_id: str, *, poll_s: float = 0.25) -> Iterator[Any]:
        """Yield each streamed chunk; stop on every terminal status (CANCELLED ends quietly); raise after the
        chunks when the job FAILED or TIMED_OUT."""
        while True:
            body = self._call("GET", "stream", job_id)
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

    def call(self, task: Callable[..., Any] | str, task_input: Any, *, wait_s: float = 90.0) -> Any:
        """Run one ``@task`` on the endpoint and return its value (our worker's job shape, unwrapped)."""
        name = task_name(task)
        return unwrap_output(name, self.run_sync({"task": name, "input": task_input}, wait_s=wait_s))

    # --- batches ---

    def map(
        self,
        task: Callable[..., Any] | str,
        inputs: Iterable[Any],
        *,
        concurrency: int = 8,
        retries: int = 2,
        timeout_s: float | None = None,
        order_outputs: bool = True,
        return_exceptions: bool = False,
        on_progress: ProgressCallback | None = None,
        batch_id: str | None = None,
        stop: threading.Event | None = None,
    ) -> Iterator[Any]:
        """Run ``task`` over ``inputs``: one result per input, in input order (or as completed with
        ``order_outputs=False``).

        At most ``concurrency`` jobs are in flight. A failed input is resubmitted up to ``retries`` times;
        after that its :class:`JobError` is raised (or yielded as a :class:`MapFailure` with
        ``return_exceptions``). With a ledger (the job store), every submitted job is recorded before
        anything else happens, so :meth:`resume_batch` re-attaches to jobs already submitted instead of
        submitting them twice. ``on_progress`` gets the counts (total, done, failed, retried, running);
        setting ``stop`` cancels the jobs in flight and ends the batch with a CANCELLED :class:`JobError`."""
        name = task_name(task)
        items = list(inputs)
        batch = batch_id or f"b-{uuid.uuid4().hex[:12]}"
        options = {
            "concurrency": concurrency,
            "retries": retries,
            "timeout_s": timeout_s,
            "order_outputs": order_outputs,
            "return_exceptions": return_exceptions,
        }
        if self._ledger is not None:
            self._ledger.open_batch(batch, self.endpoint_id, self.base_url, name, items, options)
        self.last_batch_id = batch
        return self._batch(name, items, batch, options, on_progress, stop).results()

    def resume_batch(self, batch_id: str, *, on_progress: ProgressCallback | None = None) -> Iterator[Any]:
        """Finish a batch after a crash: jobs already submitted are re-attached, never submitted again."""
        if self._ledger is None:
            raise ValueError("resume needs a ledger (the job store)")
        batch = self._ledger.get_batch(batch_id)
        if batch is None:
            raise NotFoundError(
                f"No batch {batch_id!r} in the local job store (`rph batch status` lists them)."
            )
        return self._batch(batch.task, batch.inputs, batch_id, batch.options, on_progress).results()

    def batch_summary(self, batch_id: str) -> BatchSummary:
        """What a batch has done so far, from the ledger (no API call)."""
        from .batch import summarize

        if self._ledger is None:
            raise ValueError("batch summaries need a ledger (the job store)")
        return summarize(self._ledger, batch_id)

    def _batch(
        self,
        task: str,
        items: list[Any],
        batch_id: str,
        options: Mapping[str, Any],
        on_progress: ProgressCallback | None,
        stop: threading.Event | None = None,
    ) -> BatchRun:
        from .batch import BatchRun

        return BatchRun(
            self,
            task,
            items,
            batch_id,
            ledger=self._ledger,
            concurrency=int(options["concurrency"]),
            retries=int(options["retries"]),
            timeout_s=options["timeout_s"],
            order_outputs=bool(options["order_outputs"]),
            return_exceptions=bool(options["return_exceptions"]),
            on_progress=on_progress,
            stop=stop,
        )
