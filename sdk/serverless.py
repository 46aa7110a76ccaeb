"""RunPod Serverless endpoints: the job client and a batch ``map``.

Fixes over RunPod's own client: FAILED and TIMED_OUT raise a :class:`JobError` carrying the worker's error
(a JSON error string is parsed); a 404 on a submitted job raises :class:`JobExpiredError`; ``stream`` ends on
every terminal status, CANCELLED included; polling backs off (0.25 s doubling to 5 s) under a deadline;
429s honour ``Retry-After`` (in the transport) and a client-side limiter stays under RunPod's documented
per-endpoint limits; ``/run`` is retried only when the request surely never arrived.

``map`` keeps at most ``concurrency`` jobs in flight, retries each failed input, yields results as they
complete or in order, and records every submitted job in the job store before moving on, so
``resume_batch`` re-attaches to jobs already submitted instead of submitting them twice.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from queue import SimpleQueue
from typing import TYPE_CHECKING, Any

from .errors import JobError, JobExpiredError, NotFoundError
from .jobstore import BatchRecord, JobRecord, JobStore
from .polling import PollSchedule
from .tasks import _REGISTRY, task_name

if TYPE_CHECKING:
    from ._http import HttpTransport

SERVERLESS_URL = "https://api.runpod.ai/v2"
TERMINAL = frozenset({"COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"})
# RunPod's documented per-endpoint limits, per 10 s window (RUNPOD-FACTS §4). We stay at 90 %.
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
        status=status,
        error=error,
    )


@dataclass(frozen=True)
class MapFailure:
    """An input whose job failed after every retry (returned as a value with ``return_exceptions``)."""

    index: int
    error: JobError


class Endpoint:
    """One serverless endpoint. ``base_url`` swaps RunPod for a local endpoint (``rph endpoint serve-local``)."""

    def __init__(
        self,
        endpoint_id: str,
        transport: HttpTransport,
        *,
        base_url: str = SERVERLESS_URL,
        store: JobStore | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.endpoint_id = endpoint_id
        self.base_url = base_url.rstrip("/")
        self._transport = transport
        self._store = store
        self._sleep = sleep
        self._clock = clock
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
                status="EXPIRED",
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
        deadline = None if timeout_s is None else self._clock() + timeout_s
        delay = first_poll_s
        while True:
            body = self.status(job_id)
            if on_status:
                on_status(body)
            if body.get("status") in TERMINAL:
                return self._output(job_id, body)
            if deadline is not None and self._clock() + delay > deadline:
                raise JobError(
                    f"Job {job_id} still {body.get('status')} after {timeout_s:g} s; it keeps running. "
                    f"Check later with `rph sls status {self.endpoint_id} {job_id}` or cancel it.",
                    job_id=job_id,
                    status=str(body.get("status")),
                )
            self._sleep(delay)
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
                self._sleep(poll_s)

    def cancel(self, job_id: str) -> dict[str, Any]:
        return dict(self._call("POST", "cancel", job_id, idempotent=True))

    def retry(self, job_id: str) -> dict[str, Any]:
        return dict(self._call("POST", "retry", job_id, idempotent=False))

    def health(self) -> dict[str, Any]:
        return dict(self._call("GET", "health"))

    def purge_queue(self) -> dict[str, Any]:
        return dict(self._call("POST", "purge-queue", idempotent=False))

    def call(self, task: Callable[..., Any] | str, task_input: Any, *, wait_s: float = 90.0) -> Any:
        """Run one ``@task`` on the endpoint and return its value (our worker's job shape, unwrapped)."""
        name = task_name(task)
        return _unwrap(name, self.run_sync({"task": name, "input": task_input}, wait_s=wait_s))

    # --- batch ---------------------------------------------------------------------------------------------

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
        progress: bool | Callable[[dict[str, int]], None] = True,
        batch_id: str | None = None,
    ) -> Iterator[Any]:
        """Run ``task`` over ``inputs``: exactly one result per input, in input order (or as completed).

        A failed input is resubmitted up to ``retries`` times; after that its :class:`JobError` is raised
        (or yielded as a :class:`MapFailure` with ``return_exceptions``)."""
        name = task_name(task)
        items = list(inputs)
        batch = batch_id or f"b-{uuid.uuid4().hex[:12]}"
        if self._store is not None and self._store.get_batch(batch) is None:
            options = {
                "concurrency": concurrency,
                "retries": retries,
                "timeout_s": timeout_s,
                "order_outputs": order_outputs,
                "return_exceptions": return_exceptions,
            }
            self._store.create_batch(
                BatchRecord(batch, self.endpoint_id, self.base_url, name, items, options, 0.0, "RUNNING")
            )
        self.last_batch_id = batch
        return _BatchRun(
            self,
            name,
            items,
            batch,
            concurrency=concurrency,
            retries=retries,
            timeout_s=timeout_s,
            order_outputs=order_outputs,
            return_exceptions=return_exceptions,
            progress=progress,
        ).results()

    def resume_batch(
        self, batch_id: str, *, progress: bool | Callable[[dict[str, int]], None] = True
    ) -> Iterator[Any]:
        """Finish a batch after a crash: jobs already submitted are re-attached, never submitted again."""
        if self._store is None:
            raise ValueError("resume needs a job store")
        batch = self._store.get_batch(batch_id)
        if batch is None:
            raise NotFoundError(
                f"No batch {batch_id!r} in the local job store (`rph batch status` lists them)."
            )
        options = batch.options
        return _BatchRun(
            self,
            batch.task,
            batch.inputs,
            batch_id,
            concurrency=options["concurrency"],
            retries=options["retries"],
            timeout_s=options["timeout_s"],
            order_outputs=options["order_outputs"],
            return_exceptions=options["return_exceptions"],
            progress=progress,
        ).results()


def _unwrap(task: str, output: Any) -> Any:
    """Our worker returns what a task yielded, as a list; a plain task yields once. Unwrap that one value."""
    info = _REGISTRY.get(task)
    streams = info.streams if info else False
    if not streams and isinstance(output, list) and len(output) == 1:
        return output[0]
    return output


class _BatchRun:
    """One pass of a batch. Submissions happen on the caller's thread (recorded before anything else
    happens), polling on a pool, so a crash between two yields never loses a submitted job id."""

    def __init__(
        self,
        endpoint: Endpoint,
        task: str,
        items: list[Any],
        batch_id: str,
        *,
        concurrency: int,
        retries: int,
        timeout_s: float | None,
        order_outputs: bool,
        return_exceptions: bool,
        progress: bool | Callable[[dict[str, int]], None],
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.endpoint = endpoint
        self.task = task
        self.items = items
        self.batch_id = batch_id
        self.concurrency = concurrency
        self.retries = retries
        self.timeout_s = timeout_s
        self.order_outputs = order_outputs
        self.return_exceptions = return_exceptions
        self.attempts = [0] * len(items)
        self.counts = {"total": len(items), "done": 0, "failed": 0, "retried": 0, "running": 0}
        self._schedule = PollSchedule()
        if callable(progress):
            self._progress: Callable[[dict[str, int]], None] | None = progress
        elif progress and sys.stderr.isatty():
            self._progress = self._print_progress
        else:
            self._progress = None

    def _print_progress(self, counts: dict[str, int]) -> None:
        sys.stderr.write(
            f"\r{self.task}: {counts['done']}/{counts['total']} done, {counts['running']} running, "
            f"{counts['retried']} retried, {counts['failed']} failed "
        )
        if counts["done"] == counts["total"]:
            sys.stderr.write("\n")
        sys.stderr.flush()

    def _report(self) -> None:
        if self._progress:
            self._progress(dict(self.counts))

    def _record(self, index: int, job_id: str, status: str) -> None:
        store = self.endpoint._store
        if store is not None:
            store.put(
                JobRecord(
                    job_id,
                    "serverless",
                    status,
                    name=self.task,
                    endpoint_id=self.endpoint.endpoint_id,
                    batch_id=self.batch_id,
                    batch_index=index,
                    attempt=self.attempts[index],
                    spec={"task": self.task, "input": self.items[index]},
                )
            )

    def _submit(self, index: int) -> str:
        self.attempts[index] += 1
        job_id = self.endpoint.run({"task": self.task, "input": self.items[index]})
        self._record(index, job_id, "IN_QUEUE")
        return job_id

    def _poll(self, job_id: str, submitted_s: float) -> dict[str, Any]:
        """Wait for one job, polling when the schedule says similar jobs have finished."""
        endpoint = self.endpoint
        poll = 0
        while True:
            endpoint._sleep(max(0.0, submitted_s + self._schedule.offset_s(poll) - endpoint._clock()))
            body = endpoint.status(job_id)
            if body.get("status") in TERMINAL:
                took_ms = body.get("delayTime", 0) + body.get("executionTime", 0)
                if body.get("status") == "COMPLETED" and took_ms:
                    self._schedule.observe(took_ms / 1000)
                return body
            if self.timeout_s is not None and endpoint._clock() - submitted_s > self.timeout_s:
                endpoint.cancel(job_id)
                return {
                    "id": job_id,
                    "status": "TIMED_OUT",
                    "error": f"no result within the map's timeout of {self.timeout_s:g} s; cancelled",
                }
            poll += 1

    def _known_jobs(self) -> dict[int, JobRecord]:
        """On resume: the latest job of each input already submitted."""
        store = self.endpoint._store
        latest: dict[int, JobRecord] = {}
        for record in store.batch_jobs(self.batch_id) if store else []:
            if record.batch_index is not None:
                latest[record.batch_index] = record
                self.attempts[record.batch_index] = max(self.attempts[record.batch_index], record.attempt)
        return latest

    def _settle(
        self, index: int, job_id: str, body: dict[str, Any], outputs: dict[int, Any], pending: deque[int]
    ) -> None:
        """Record one finished job: its value, a resubmission, or (after every retry) its failure."""
        store = self.endpoint._store
        status = str(body.get("status"))
        if status == "COMPLETED":
            value = _unwrap(self.task, body.get("output"))
            if store is not None:
                store.update(job_id, status=status, result=value)
            outputs[index] = value
            self.counts["done"] += 1
            return
        if store is not None:
            store.update(job_id, status=status, error=json.dumps(body.get("error"), default=str))
        if self.attempts[index] <= self.retries:
            self.counts["retried"] += 1
            pending.append(index)
            return
        error = job_error(job_id, body)
        self.counts["failed"] += 1
        self.counts["done"] += 1
        if not self.return_exceptions:
            raise error
        outputs[index] = MapFailure(index, error)

    def results(self) -> Iterator[Any]:
        outputs: dict[int, Any] = {}
        next_to_yield = 0
        pending: deque[int] = deque()
        in_flight: dict[Future[dict[str, Any]], tuple[int, str]] = {}
        finished: SimpleQueue[Future[dict[str, Any]]] = SimpleQueue()  # O(1) per completion, unlike wait()
        pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="rph-map")

        def start_polling(index: int, job_id: str) -> None:
            future = pool.submit(self._poll, job_id, self.endpoint._clock())
            in_flight[future] = (index, job_id)
            future.add_done_callback(finished.put)

        try:
            known = self._known_jobs()
            for index in range(len(self.items)):
                record = known.get(index)
                if record is not None and record.status == "COMPLETED":
                    outputs[index] = record.result
                    self.counts["done"] += 1
                elif record is not None and record.status not in TERMINAL:
                    start_polling(index, record.id)
                else:
                    pending.append(index)
            while True:
                if self.order_outputs:
                    while next_to_yield in outputs:
                        yield outputs.pop(next_to_yield)
                        next_to_yield += 1
                else:
                    for index in list(outputs):
                        yield outputs.pop(index)
                if not pending and not in_flight:
                    break
                while pending and len(in_flight) < self.concurrency:
                    index = pending.popleft()
                    job_id = self._submit(index)
                    start_polling(index, job_id)
                self.counts["running"] = len(in_flight)
                self._report()
                done = [finished.get()]
                while not finished.empty():
                    done.append(finished.get())
                for future in done:
                    index, job_id = in_flight.pop(future)
                    self._settle(index, job_id, future.result(), outputs, pending)
            self.counts["running"] = 0
            self._report()
            if self.endpoint._store is not None:
                self.endpoint._store.set_batch_status(self.batch_id, "COMPLETED")
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
