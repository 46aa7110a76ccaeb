"""Batches: one ``@task`` over many inputs through an endpoint, one result per input, resumable.

A batch keeps at most ``concurrency`` jobs in flight, resubmits a failed input up to ``retries`` times, and
yields results in input order or as they complete. Submissions happen on the caller's thread and each is
recorded in the :class:`BatchLedger` (the job store) before anything else happens, so after a crash
``resume`` re-attaches to jobs already submitted instead of submitting them again; polling runs on a thread
pool, at times learnt from the batch's own completion times (``polling.py``).
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from queue import Empty, SimpleQueue
from typing import Any, Protocol

from runpod_hybrid.errors import TERMINAL_STATES, JobError, JobState, NotFoundError

from .client import Endpoint, job_error, job_state
from .polling import PollSchedule
from .tasks import unwrap_output

ProgressCallback = Callable[["BatchProgress"], None]
_STOP_CHECK_S = 0.5


@dataclass(frozen=True)
class BatchProgress:
    """Counts of a running batch, given to ``on_progress`` after every change."""

    total: int
    done: int
    failed: int
    retried: int
    running: int


@dataclass(frozen=True)
class BatchInfo:
    """A batch as the ledger keeps it: enough to resume it."""

    id: str
    endpoint_id: str
    base_url: str
    task: str
    inputs: list[Any]
    options: Mapping[str, Any]
    state: JobState


@dataclass(frozen=True)
class Submission:
    """The latest job submitted for one input of a batch."""

    index: int
    job_id: str
    attempt: int
    state: JobState
    output: Any = None


class BatchLedger(Protocol):
    """Where a batch records what it submitted and what came back (the job store implements it)."""

    def open_batch(
        self,
        batch_id: str,
        endpoint_id: str,
        base_url: str,
        task: str,
        inputs: list[Any],
        options: Mapping[str, Any],
    ) -> None: ...
    def get_batch(self, batch_id: str) -> BatchInfo | None: ...
    def submitted(
        self, batch_id: str, index: int, job_id: str, attempt: int, task: str, task_input: Any
    ) -> None: ...
    def settled(
        self, job_id: str, state: JobState, *, output: Any = None, error: str | None = None
    ) -> None: ...
    def submissions(self, batch_id: str) -> list[Submission]: ...
    def close_batch(self, batch_id: str, state: JobState) -> None: ...


@dataclass(frozen=True)
class BatchSummary:
    """What a batch has done: its state and how many of its inputs' latest jobs are in each state."""

    batch_id: str
    task: str
    endpoint_id: str
    state: JobState
    inputs: int
    jobs_by_state: Mapping[str, int]


def summarize(ledger: BatchLedger, batch_id: str) -> BatchSummary:
    batch = ledger.get_batch(batch_id)
    if batch is None:
        raise NotFoundError(f"No batch {batch_id!r} in the local job store.")
    counts: dict[str, int] = {}
    for submission in ledger.submissions(batch_id):
        counts[submission.state] = counts.get(submission.state, 0) + 1
    return BatchSummary(batch_id, batch.task, batch.endpoint_id, batch.state, len(batch.inputs), counts)


@dataclass(frozen=True)
class MapFailure:
    """An input whose job failed after every retry (returned as a value with ``return_exceptions``)."""

    index: int
    error: JobError


class BatchRun:
    """One pass of a batch (a first run or a resume)."""

    def __init__(
        self,
        endpoint: Endpoint,
        task: str,
        items: list[Any],
        batch_id: str,
        *,
        ledger: BatchLedger | None,
        concurrency: int,
        retries: int,
        timeout_s: float | None,
        order_outputs: bool,
        return_exceptions: bool,
        on_progress: ProgressCallback | None,
        stop: threading.Event | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.endpoint = endpoint
        self.task = task
        self.items = items
        self.batch_id = batch_id
        self.ledger = ledger
        self.concurrency = concurrency
        self.retries = retries
        self.timeout_s = timeout_s
        self.order_outputs = order_outputs
        self.return_exceptions = return_exceptions
        self.on_progress = on_progress
        self.stop = stop or threading.Event()
        self.attempts = [0] * len(items)
        self.done = self.failed = self.retried = self.running = 0
        self._schedule = PollSchedule()

    def _report(self) -> None:
        if self.on_progress:
            self.on_progress(
                BatchProgress(len(self.items), self.done, self.failed, self.retried, self.running)
            )

    def _submit(self, index: int) -> str:
        self.attempts[index] += 1
        job_id = self.endpoint.run({"task": self.task, "input": self.items[index]})
        if self.ledger is not None:
            self.ledger.submitted(
                self.batch_id, index, job_id, self.attempts[index], self.task, self.items[index]
            )
        return job_id

    def _poll(self, job_id: str, submitted_s: float) -> dict[str, Any]:
        """Wait for one job, polling when the schedule says similar jobs have finished."""
        endpoint = self.endpoint
        poll = 0
        while True:
            if not self._pause_until(submitted_s + self._schedule.offset_s(poll)):
                return {"id": job_id, "status": "CANCELLED", "error": "the batch was stopped"}
            body = endpoint.status(job_id)
            if body.get("status") in ("COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"):
                took_ms = (body.get("delayTime") or 0) + (body.get("executionTime") or 0)
                if body.get("status") == "COMPLETED" and took_ms:
                    self._schedule.observe(took_ms / 1000)
                return body
            if self.timeout_s is not None and endpoint.clock() - submitted_s > self.timeout_s:
                endpoint.cancel(job_id)
                return {
                    "id": job_id,
                    "status": "TIMED_OUT",
                    "error": f"no result within the map's timeout of {self.timeout_s:g} s; cancelled",
                }
            poll += 1

    def _pause_until(self, moment_s: float) -> bool:
        """Sleep until ``moment_s`` on the endpoint's clock, in short steps so a stopped batch lets its
        polling threads go within half a second. False when the batch was stopped."""
        while not self.stop.is_set():
            left = moment_s - self.endpoint.clock()
            if left <= 0:
                return True
            self.endpoint.sleep(min(left, _STOP_CHECK_S))
        return False

    def _known(self) -> dict[int, Submission]:
        """On resume: the latest job of each input already submitted."""
        latest: dict[int, Submission] = {}
        for submission in self.ledger.submissions(self.batch_id) if self.ledger else []:
            latest[submission.index] = submission
            self.attempts[submission.index] = max(self.attempts[submission.index], submission.attempt)
        return latest

    def _settle(
        self, index: int, job_id: str, body: dict[str, Any], outputs: dict[int, Any], pending: deque[int]
    ) -> None:
        """Record one finished job: its value, a resubmission, or (after every retry) its failure."""
        state = job_state(body.get("status"))
        if state == "SUCCEEDED":
            value = unwrap_output(self.task, body.get("output"))
            if self.ledger is not None:
                self.ledger.settled(job_id, state, output=value)
            outputs[index] = value
            self.done += 1
            return
        if self.ledger is not None:
            self.ledger.settled(job_id, state, error=json.dumps(body.get("error"), default=str))
        if self.attempts[index] <= self.retries:
            self.retried += 1
            pending.append(index)
            return
        error = job_error(job_id, body)
        self.failed += 1
        self.done += 1
        if not self.return_exceptions:
            raise error
        outputs[index] = MapFailure(index, error)

    def _next_finished(
        self,
        finished: SimpleQueue[Future[dict[str, Any]]],
        in_flight: Mapping[Future[dict[str, Any]], tuple[int, str]],
    ) -> list[Future[dict[str, Any]]]:
        """Wait for a job to finish; when the batch is stopped meanwhile, cancel what is in flight (the
        ledger keeps it, so the batch can be resumed) and end with a CANCELLED error."""
        while True:
            if self.stop.is_set():
                for _index, job_id in in_flight.values():
                    self.endpoint.cancel(job_id)
                    if self.ledger is not None:
                        self.ledger.settled(job_id, "CANCELLED", error="the batch was stopped")
                if self.ledger is not None:
                    self.ledger.close_batch(self.batch_id, "CANCELLED")
                raise JobError(
                    f"Batch {self.batch_id} was stopped with {self.done}/{len(self.items)} inputs done; "
                    f"`rph batch resume {self.batch_id}` finishes it.",
                    job_id=self.batch_id,
                    state="CANCELLED",
                )
            with contextlib.suppress(Empty):
                return [finished.get(timeout=0.2)]

    def results(self) -> Iterator[Any]:
        outputs: dict[int, Any] = {}
        next_to_yield = 0
        pending: deque[int] = deque()
        in_flight: dict[Future[dict[str, Any]], tuple[int, str]] = {}
        finished: SimpleQueue[Future[dict[str, Any]]] = SimpleQueue()
        pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="rph-map")

        def start_polling(index: int, job_id: str) -> None:
            future = pool.submit(self._poll, job_id, self.endpoint.clock())
            in_flight[future] = (index, job_id)
            future.add_done_callback(finished.put)

        try:
            known = self._known()
            for index in range(len(self.items)):
                submission = known.get(index)
                if submission is not None and submission.state == "SUCCEEDED":
                    outputs[index] = submission.output
                    self.done += 1
                elif submission is not None and submission.state not in TERMINAL_STATES:
                    start_polling(index, submission.job_id)
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
                    start_polling(index, self._submit(index))
                self.running = len(in_flight)
                self._report()
                done = self._next_finished(finished, in_flight)
                while not finished.empty():
                    done.append(finished.get())
                for future in done:
                    index, job_id = in_flight.pop(future)
                    self._settle(index, job_id, future.result(), outputs, pending)
            self.running = 0
            self._report()
            if self.ledger is not None:
                self.ledger.close_batch(self.batch_id, "SUCCEEDED")
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
