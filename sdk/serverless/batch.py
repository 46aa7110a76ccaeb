"""Batches: one ``@task`` over many inputs, one result per input, packed several to a job, resumable.

A batch reads its inputs lazily (a list, or a JSON-lines :class:`InputsFile` streamed from disk), packs
them (``batch_size``: a number, or ``"auto"`` from the expected or observed time per input, within the
``/run`` body limit and the job timeout), keeps at most ``concurrency`` packs in flight on a *place* (an
endpoint, or the local process pool), and yields each input's result in input order or as they come.

What it promises, and what it does not:

- One result per input. An input that fails is resubmitted up to ``retries`` times, alone or in a later
  pack; a pack that fails as a whole (its job FAILED, TIMED_OUT, expired, or ran past ``job_timeout_s`` and
  was cancelled) fails each of its inputs once. After the last retry the input's :class:`JobError` is raised
  (or yielded as a :class:`MapFailure` with ``return_exceptions``).
- Not exactly-once execution. With a ledger (the job store) every pack is recorded before its ``/run`` is
  sent and its job id right after, so a resume re-attaches to the jobs it knows. A crash between sending
  and recording the id leaves an intent without a job: the resume sends it again and counts its inputs as
  "possibly submitted twice" (in the progress and the batch summary), since RunPod offers no way to look a
  job up by anything but its id.
- A batch never stalls: ``job_timeout_s`` is sent as the jobs' ``policy.executionTimeout`` and enforced here
  too (a job still running past it is cancelled), and ``timeout_s`` bounds the whole map, ending it with
  what the endpoint's ``/health`` shows.
- A batch is its task and its inputs: the ledger keeps their fingerprint, so a different batch under a used
  id is refused, and a resume whose inputs file changed says so.

Results wait in memory only until they can be yielded (in order: at most a window of them); the ledger keeps
every input's outcome, and a resume reads them back page by page.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import math
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from queue import Empty, SimpleQueue
from typing import TYPE_CHECKING, Any, Literal, Protocol

from runpod_hybrid.errors import (
    ApiStatusError,
    ConfigError,
    ConnectionFailedError,
    JobError,
    JobExpiredError,
    JobState,
    LocalPathError,
    NotFoundError,
    RequestTimeoutError,
    ServerError,
)

from .polling import PollSchedule
from .tasks import task_call, task_pack

if TYPE_CHECKING:
    from .client import Endpoint, JobStatus

ProgressCallback = Callable[["BatchProgress"], None]
BatchSize = int | Literal["auto"]

MAX_RUN_BYTES = 10_000_000 - 10_000  # RunPod's /run limit (decimal MB), less room for the envelope
TARGET_PACK_S = 10.0  # auto: about this long per pack (per-job overhead small, progress still visible)
TIMEOUT_SHARE = 0.25  # auto: a pack's expected time stays under this share of the job timeout
JOB_TIMEOUT_GRACE_S = 5.0  # RunPod times a job out itself; we give it this long to say so first
MIN_POLICY_TIMEOUT_MS = 5_000  # RunPod's minimum executionTimeout
RESULT_WINDOW = 10_000  # in order, at most this many results wait for an earlier one
LEDGER_PAGE = 1_000
STOP_CHECK_S = 0.5  # a polling thread looks this often whether its batch was stopped


@dataclass(frozen=True)
class BatchProgress:
    """Counts of a running batch, given to ``on_progress`` after every change. ``total`` is None when the
    inputs are an iterator of unknown length."""

    total: int | None
    done: int
    failed: int
    retried: int
    running: int
    possibly_submitted_twice: int = 0


@dataclass(frozen=True)
class MapFailure:
    """An input whose job failed after every retry (returned as a value with ``return_exceptions``)."""

    index: int
    error: JobError


# --- inputs ---


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


class InputsFile:
    """A JSON-lines file of inputs (one JSON value per non-blank line), streamed from disk: a batch of any
    size keeps only the inputs it is working on in memory."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).resolve()

    def _lines(self) -> Iterator[tuple[int, bytes]]:
        try:
            with self.path.open("rb") as handle:
                yield from enumerate(handle, 1)
        except OSError as exc:
            raise LocalPathError(f"Cannot read the inputs file {self.path}: {exc.strerror}.") from exc

    def scan(self) -> tuple[str, int]:
        """One pass over the file: its fingerprint and how many inputs it holds; every line must be JSON."""
        digest = hashlib.sha256(b"file\0")
        count = 0
        for number, line in self._lines():
            digest.update(line)
            if line.strip():
                self._parse(number, line)
                count += 1
        return f"sha256:{digest.hexdigest()[:32]}", count

    def _parse(self, number: int, line: bytes) -> Any:
        try:
            return json.loads(line)
        except ValueError as exc:
            raise ConfigError(
                f"{self.path}, line {number}: not JSON ({exc}). Give one JSON value per line."
            ) from exc

    def __iter__(self) -> Iterator[Any]:
        for number, line in self._lines():
            if line.strip():
                yield self._parse(number, line)


def fingerprint_values(values: Sequence[Any]) -> str:
    digest = hashlib.sha256(b"values\0")
    for value in values:
        digest.update(_canonical(value) + b"\n")
    return f"sha256:{digest.hexdigest()[:32]}"


# --- the ledger ---


@dataclass(frozen=True)
class BatchInfo:
    """A batch as the ledger keeps it: what it runs, where, on which inputs, and how."""

    id: str
    endpoint_id: str
    base_url: str
    task: str
    fingerprint: str
    inputs_count: int
    inputs_file: str | None
    options: Mapping[str, Any]
    state: JobState = "RUNNING"
    possibly_submitted_twice: int = 0


@dataclass(frozen=True)
class ItemRecord:
    """One input's latest outcome: SUCCEEDED (``output``), FAILED after ``attempts`` submissions
    (``error``; final once the retries are spent), CANCELLED (to run again), or PENDING in pack ``pack_id``."""

    index: int
    state: JobState
    attempts: int
    output: Any = None
    error: str | None = None
    pack_id: str | None = None


@dataclass
class Pack:
    """Inputs sent together as one job (``packed``: as ``{"task", "values"}``; else ``{"task", "value"}``)."""

    id: str
    indexes: list[int]
    values: list[Any]
    attempts: list[int]
    packed: bool
    job_id: str | None = None


class BatchLedger(Protocol):
    """Where a batch records what it sent and what came back (the job store implements it)."""

    def open_batch(self, batch: BatchInfo) -> tuple[BatchInfo, bool]:
        """Record a new batch (True), or return the one already under its id (False) when it has the same
        task, endpoint and inputs; raise :class:`ConfigError` when that id is taken by another batch."""

    def get_batch(self, batch_id: str) -> BatchInfo | None: ...
    def store_inputs(self, batch_id: str, first_index: int, values: Sequence[Any]) -> None: ...
    def stored_inputs(self, batch_id: str, first_index: int, limit: int) -> list[Any]: ...
    def intend(self, batch_id: str, pack: Pack) -> None:
        """Before a pack's ``/run`` is sent."""

    def sent(self, pack_id: str, job_id: str) -> None:
        """Right after ``/run`` answered with the job's id."""

    def settle(self, batch_id: str, pack_id: str | None, items: Sequence[ItemRecord]) -> None:
        """A pack ended (``pack_id``; None for inputs never sent): each of its inputs' outcome."""

    def open_packs(self, batch_id: str) -> list[Pack]:
        """Packs recorded as intended or sent that never ended (after a crash)."""

    def items_between(self, batch_id: str, start: int, stop: int) -> dict[int, ItemRecord]: ...
    def count_items(self, batch_id: str) -> dict[str, int]: ...
    def note_possibly_twice(self, batch_id: str, inputs: int) -> None: ...
    def set_batch_state(self, batch_id: str, state: JobState) -> None: ...


@dataclass(frozen=True)
class BatchSummary:
    """What a batch has done: its state, how many of its inputs are in each state (PENDING: not yet run),
    and how many inputs may have been submitted twice after a crash."""

    batch_id: str
    task: str
    endpoint_id: str
    state: JobState
    inputs: int
    inputs_by_state: Mapping[str, int]
    possibly_submitted_twice: int
    inputs_file: str | None


def summarize(ledger: BatchLedger, batch_id: str) -> BatchSummary:
    batch = ledger.get_batch(batch_id)
    if batch is None:
        raise NotFoundError(f"No batch {batch_id!r} in the local job store.")
    counts = ledger.count_items(batch_id)
    pending = batch.inputs_count - sum(counts.values())
    if pending > 0:
        counts["PENDING"] = counts.get("PENDING", 0) + pending
    return BatchSummary(
        batch_id,
        batch.task,
        batch.endpoint_id,
        batch.state,
        batch.inputs_count,
        counts,
        batch.possibly_submitted_twice,
        batch.inputs_file,
    )


class Inputs:
    """A batch's inputs, however given, with what the ledger needs to know them again."""

    def __init__(
        self, values: Iterable[Any], *, count: int | None, fingerprint: str, file: str | None
    ) -> None:
        self.values = values
        self.count = count
        self.fingerprint = fingerprint
        self.file = file

    @classmethod
    def of(cls, inputs: Iterable[Any] | InputsFile, *, fingerprinted: bool) -> Inputs:
        """``fingerprinted``: the batch is recorded, so its inputs must be known exactly (an iterator is
        read into memory then; stream big batches with an :class:`InputsFile`)."""
        if isinstance(inputs, InputsFile):
            fingerprint, count = inputs.scan()
            return cls(inputs, count=count, fingerprint=fingerprint, file=str(inputs.path))
        if isinstance(inputs, Sequence) or fingerprinted:
            values = inputs if isinstance(inputs, Sequence) else list(inputs)
            return cls(
                values,
                count=len(values),
                fingerprint=fingerprint_values(values) if fingerprinted else "",
                file=None,
            )
        return cls(inputs, count=None, fingerprint="", file=None)


class StoredInputs:
    """A recorded batch's own copy of its inputs, read back a page at a time."""

    def __init__(self, ledger: BatchLedger, batch_id: str, count: int) -> None:
        self._ledger, self._batch_id, self._count = ledger, batch_id, count

    def __iter__(self) -> Iterator[Any]:
        for start in range(0, self._count, LEDGER_PAGE):
            yield from self._ledger.stored_inputs(self._batch_id, start, LEDGER_PAGE)


def open_recorded(ledger: BatchLedger, batch: BatchInfo, inputs: Inputs) -> tuple[Iterable[Any], bool]:
    """Open a recorded batch, or find it again (the same task and inputs under the same id): what to iterate
    for its inputs, and whether it is new."""
    _recorded, created = ledger.open_batch(batch)
    if created and inputs.file is None and isinstance(inputs.values, Sequence):
        values = inputs.values
        for start in range(0, len(values), LEDGER_PAGE * 10):
            ledger.store_inputs(batch.id, start, values[start : start + LEDGER_PAGE * 10])
    return inputs.values, created


def recorded_inputs(ledger: BatchLedger, batch: BatchInfo) -> Iterable[Any]:
    """A recorded batch's inputs for a resume: its inputs file (unchanged since) or its stored copy."""
    if batch.inputs_file is None:
        return StoredInputs(ledger, batch.id, batch.inputs_count)
    source = InputsFile(batch.inputs_file)
    fingerprint, count = source.scan()
    if fingerprint != batch.fingerprint:
        raise ConfigError(
            f"Batch {batch.id}'s inputs changed: {batch.inputs_file} now holds {count} inputs with fingerprint "
            f"{fingerprint}, not the {batch.inputs_count} inputs ({batch.fingerprint}) the batch began with. "
            "Restore the file to resume, or start a new batch under another --batch-id."
        )
    return source


def unsent(pack: Pack) -> list[ItemRecord]:
    """A pack's inputs as never run: to be sent again, without counting this as one of their attempts."""
    return [ItemRecord(i, "CANCELLED", a - 1) for i, a in zip(pack.indexes, pack.attempts, strict=True)]


# --- where packs run ---


@dataclass
class PackOutcome:
    """How a pack ended: one ``{"output"}``/``{"error"}`` per input, or a failure of the whole job
    (``failure``), or an error of ours that ends the batch (``exception``)."""

    pack: Pack
    results: list[dict[str, Any]] | None = None
    failure: JobError | None = None
    execution_s: float | None = None
    exception: BaseException | None = None


class Place(Protocol):
    """Where a batch's packs run. Outcomes arrive through the ``deliver`` callback it was made with."""

    slots: int
    max_pack_bytes: int

    def send(self, pack: Pack) -> None: ...
    def reattach(self, pack: Pack) -> None: ...
    def cancel(self, packs: Sequence[Pack]) -> None: ...
    def close(self) -> None: ...
    def situation(self) -> str:
        """What the place shows now, for a message about a wait that ran out."""


class PackSizer:
    """How many inputs go in the next pack: ``batch_size``, or for ``"auto"`` about ``TARGET_PACK_S`` of
    work by the observed (else the expected) time per input, never more than a share of the job timeout,
    and at most a share of the batch so every slot gets work."""

    def __init__(
        self, batch_size: BatchSize, *, slots: int, job_timeout_s: float, expected_runtime_s: float | None
    ) -> None:
        if batch_size != "auto" and (not isinstance(batch_size, int) or batch_size < 1):
            raise ValueError(f'batch_size must be a positive integer or "auto", got {batch_size!r}')
        self.batch_size = batch_size
        self.slots = slots
        self.job_timeout_s = job_timeout_s
        self.per_input_s = expected_runtime_s
        self._observed: deque[float] = deque(maxlen=32)

    def observe(self, inputs: int, execution_s: float | None) -> None:
        if execution_s is not None and inputs:
            self._observed.append(execution_s / inputs)

    def size(self, total: int | None) -> int:
        if self.batch_size != "auto":
            return self.batch_size
        per_input_s = (sum(self._observed) / len(self._observed)) if self._observed else self.per_input_s
        if per_input_s is None:
            return 1  # nothing known yet: one input a job until the first ones say how long they take
        budget_s = min(TARGET_PACK_S, self.job_timeout_s * TIMEOUT_SHARE)
        size = max(1, int(budget_s / max(per_input_s, 1e-6)))
        if total is not None:  # two packs per slot: every slot busy, and a slow one no long tail
            size = min(size, max(1, math.ceil(total / (2 * self.slots))))
        return size


# --- one pass of a batch ---


class BatchRun:
    """One pass of a batch (a first run or a resume) on a place."""

    def __init__(
        self,
        make_place: Callable[[Callable[[PackOutcome], None]], Place],
        task: str,
        inputs: Iterable[Any],
        *,
        total: int | None,
        batch_id: str,
        ledger: BatchLedger | None,
        batch_size: BatchSize,
        retries: int,
        timeout_s: float | None,
        job_timeout_s: float,
        expected_runtime_s: float | None,
        order_outputs: bool,
        return_exceptions: bool,
        on_progress: ProgressCallback | None,
        stop: threading.Event | None,
        clock: Callable[[], float],
        resuming: bool,
    ) -> None:
        if retries < 0:
            raise ValueError("retries must be at least 0")
        self._outcomes: SimpleQueue[PackOutcome] = SimpleQueue()
        self.place = make_place(self._outcomes.put)
        self.task = task
        self.total = total
        self.batch_id = batch_id
        self.ledger = ledger
        self.retries = retries
        self.timeout_s = timeout_s
        self.order_outputs = order_outputs
        self.return_exceptions = return_exceptions
        self.on_progress = on_progress
        self.stop = stop or threading.Event()
        self.clock = clock
        self.sizer = PackSizer(
            batch_size,
            slots=self.place.slots,
            job_timeout_s=job_timeout_s,
            expected_runtime_s=expected_runtime_s,
        )
        self._packed = batch_size != 1
        self._source = enumerate(inputs)
        self._source_done = False
        self._next_source_index = 0
        self._resuming = resuming
        self._page: dict[int, ItemRecord] = {}
        self._page_stop = 0
        self._claimed: set[int] = set()  # in packs re-attached by this resume
        self._retry: deque[tuple[int, Any, int]] = deque()  # (index, value, attempts so far)
        self._in_flight: dict[str, Pack] = {}
        self._outputs: dict[int, Any] = {}
        self._next_to_yield = 0
        self._pack_ids = (f"{batch_id}-p{n}-{id(self):x}" for n in itertools.count())
        self.done = self.failed = self.retried = self.possibly_twice = 0

    # --- progress ---

    def _report(self) -> None:
        if self.on_progress:
            self.on_progress(
                BatchProgress(
                    self.total,
                    self.done,
                    self.failed,
                    self.retried,
                    sum(len(p.indexes) for p in self._in_flight.values()),
                    self.possibly_twice,
                )
            )

    # --- inputs, merged with what the ledger already has ---

    def _recorded(self, index: int) -> ItemRecord | None:
        if not self._resuming or self.ledger is None:
            return None
        if index >= self._page_stop:
            self._page_stop = index + LEDGER_PAGE
            self._page = self.ledger.items_between(self.batch_id, index, self._page_stop)
        return self._page.get(index)

    def _next_input(self) -> tuple[int, Any, int] | None:
        """The next input to send from the source (skipping those already settled or re-attached), or
        None when the source is done or the window of waiting results is full."""
        while not self._source_done:
            if len(self._outputs) >= RESULT_WINDOW or (
                self.order_outputs and self._next_source_index - self._next_to_yield >= RESULT_WINDOW
            ):
                return None
            try:
                index, value = next(self._source)
            except StopIteration:
                self._source_done = True
                return None
            self._next_source_index = index + 1
            if index in self._claimed:
                continue
            record = self._recorded(index)
            if record is None or record.state in ("PENDING", "RUNNING"):
                return index, value, 0
            if record.state == "SUCCEEDED":
                self._outputs[index] = record.output
                self.done += 1
            elif record.state == "CANCELLED" or record.attempts <= self.retries:
                return index, value, record.attempts
            else:
                self._final_failure(index, self._item_error(index, None, record.error))
        return None

    def _next_pack(self) -> Pack | None:
        size = self.sizer.size(self.total)
        indexes: list[int] = []
        values: list[Any] = []
        attempts: list[int] = []
        pack_bytes = 0
        while len(indexes) < size:
            item = self._retry.popleft() if self._retry else self._next_input()
            if item is None:
                break
            index, value, tries = item
            value_bytes = len(_canonical(value)) + 1
            if value_bytes > self.place.max_pack_bytes:
                self._input_too_big(index, value_bytes)
                continue
            if indexes and pack_bytes + value_bytes > self.place.max_pack_bytes:
                self._retry.appendleft(item)  # it starts the next pack
                break
            indexes.append(index)
            values.append(value)
            attempts.append(tries + 1)
            pack_bytes += value_bytes
        if not indexes:
            return None
        return Pack(next(self._pack_ids), indexes, values, attempts, self._packed)

    def _input_too_big(self, index: int, size: int) -> None:
        error = JobError(
            f"Input {index} is {size / 1e6:.1f} MB as JSON: RunPod's /run takes at most 10 MB. Put it in "
            "storage (a network volume, S3) and pass its location instead.",
            job_id=self.batch_id,
            state="FAILED",
        )
        if self.ledger is not None:
            self.ledger.settle(
                self.batch_id, None, [ItemRecord(index, "FAILED", self.retries + 1, error=str(error))]
            )
        self._final_failure(index, error)

    # --- outcomes ---

    def _item_error(self, index: int, job_id: str | None, error: Any) -> JobError:
        from .client import parse_worker_error

        parsed = parse_worker_error(error)
        detail = parsed.get("error_message", parsed) if isinstance(parsed, dict) else parsed
        first = str(detail).strip().splitlines()[0] if detail else "no error given"
        where = f" (job {job_id})" if job_id else ""
        return JobError(
            f"Input {index} of batch {self.batch_id} failed{where}: {first}",
            job_id=job_id or self.batch_id,
            state="FAILED",
            error=parsed,
        )

    def _final_failure(self, index: int, error: JobError) -> None:
        self.failed += 1
        self.done += 1
        if not self.return_exceptions:
            self._halt("FAILED")
            raise error
        self._outputs[index] = MapFailure(index, error)

    def _settle(self, outcome: PackOutcome) -> None:
        pack = outcome.pack
        self._in_flight.pop(pack.id, None)
        if outcome.exception is not None:
            raise outcome.exception
        if outcome.results is not None and outcome.failure is None:
            self.sizer.observe(len(pack.indexes), outcome.execution_s)
        records: list[ItemRecord] = []
        final: list[tuple[int, JobError]] = []
        for position, index in enumerate(pack.indexes):
            result = outcome.results[position] if outcome.results is not None else None
            attempts = pack.attempts[position]
            if result is not None and "error" not in result:
                self._outputs[index] = result.get("output")
                self.done += 1
                records.append(ItemRecord(index, "SUCCEEDED", attempts, output=result.get("output")))
                continue
            error = outcome.failure or self._item_error(index, pack.job_id, (result or {}).get("error"))
            records.append(ItemRecord(index, "FAILED", attempts, error=str(error)))
            if attempts <= self.retries:
                self.retried += 1
                self._retry.append((index, pack.values[position], attempts))
            else:
                final.append((index, error))
        if self.ledger is not None:
            self.ledger.settle(self.batch_id, pack.id, records)
        for index, error in final:
            self._final_failure(index, error)

    def _wait_outcome(self, started_s: float) -> PackOutcome:
        """The next pack outcome; a stop or the map's timeout ends the batch here."""
        while True:
            if self.stop.is_set():
                self._halt("CANCELLED")
                raise JobError(
                    f"Batch {self.batch_id} was stopped with {self.done}/{self._total_text()} inputs done"
                    + (f"; `rph batch resume {self.batch_id}` finishes it." if self.ledger else "."),
                    job_id=self.batch_id,
                    state="CANCELLED",
                )
            if self.timeout_s is not None and self.clock() - started_s > self.timeout_s:
                situation = self.place.situation()
                self._halt("TIMED_OUT")
                raise JobError(
                    f"Batch {self.batch_id}: {self.done}/{self._total_text()} inputs done when its timeout of "
                    f"{self.timeout_s:g} s ran out; {situation}. Its jobs in flight were cancelled"
                    + (f"; `rph batch resume {self.batch_id}` finishes it." if self.ledger else "."),
                    job_id=self.batch_id,
                    state="TIMED_OUT",
                )
            with contextlib.suppress(Empty):
                return self._outcomes.get(timeout=0.2)

    def _total_text(self) -> str:
        return "?" if self.total is None else str(self.total)

    def _halt(self, state: JobState) -> None:
        """Cancel what is in flight; the ledger keeps the batch, so it can be resumed."""
        packs = list(self._in_flight.values())
        self.place.cancel(packs)
        if self.ledger is not None:
            for pack in packs:
                self.ledger.settle(self.batch_id, pack.id, unsent(pack))
            self.ledger.set_batch_state(self.batch_id, state)
        self._in_flight.clear()

    # --- the run ---

    def _reattach(self) -> None:
        """After a crash: follow the jobs the ledger knows, resend the intents that never got a job id."""
        if self.ledger is None or not self._resuming:
            return
        for pack in self.ledger.open_packs(self.batch_id):
            self._claimed.update(pack.indexes)
            if pack.job_id is not None:
                self._in_flight[pack.id] = pack
                self.place.reattach(pack)
                continue
            self.possibly_twice += len(pack.indexes)
            self.ledger.note_possibly_twice(self.batch_id, len(pack.indexes))
            self.ledger.settle(self.batch_id, pack.id, unsent(pack))
            self._retry.extend(zip(pack.indexes, pack.values, [a - 1 for a in pack.attempts], strict=True))

    def _ready(self) -> Iterator[Any]:
        if self.order_outputs:
            while self._next_to_yield in self._outputs:
                yield self._outputs.pop(self._next_to_yield)
                self._next_to_yield += 1
        else:
            while self._outputs:
                yield self._outputs.pop(next(iter(self._outputs)))

    def _fill(self) -> None:
        while len(self._in_flight) < self.place.slots:
            pack = self._next_pack()
            if pack is None:
                return
            self.place.send(pack)
            self._in_flight[pack.id] = pack

    def results(self) -> Iterator[Any]:
        started_s = self.clock()
        try:
            if self.ledger is not None:
                self.ledger.set_batch_state(self.batch_id, "RUNNING")
            self._reattach()
            while True:
                yield from self._ready()
                self._fill()
                if not self._in_flight:
                    if self._source_done and not self._retry:
                        break
                    continue  # only a full window of results stops sending: yield them first
                self._report()
                outcome = self._wait_outcome(started_s)
                self._settle(outcome)
                while True:
                    try:
                        more = self._outcomes.get_nowait()
                    except Empty:
                        break
                    self._settle(more)
            yield from self._ready()
            self._report()
            if self.ledger is not None:
                self.ledger.set_batch_state(self.batch_id, "FAILED" if self.failed else "SUCCEEDED")
        except GeneratorExit:  # the caller stopped reading: stop paying for the rest
            self._halt("CANCELLED")
            raise
        finally:
            self.place.close()


# --- an endpoint as a place ---


class EndpointPlace:
    """Packs as jobs on a serverless endpoint: sent on the batch's thread (recorded in the ledger before and
    after ``/run``), polled on a thread pool when the batch's recent jobs tended to finish."""

    def __init__(
        self,
        endpoint: Endpoint,
        task: str,
        deliver: Callable[[PackOutcome], None],
        *,
        concurrency: int,
        job_timeout_s: float,
        ledger: BatchLedger | None,
        batch_id: str,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.slots = concurrency
        self.max_pack_bytes = MAX_RUN_BYTES
        self._endpoint = endpoint
        self._task = task
        self._deliver = deliver
        self._job_timeout_s = job_timeout_s
        self._ledger = ledger
        self._batch_id = batch_id
        self._schedule = PollSchedule()
        self._closed = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="rph-map")

    def send(self, pack: Pack) -> None:
        payload = task_pack(self._task, pack.values) if pack.packed else task_call(self._task, pack.values[0])
        if self._ledger is not None:
            self._ledger.intend(self._batch_id, pack)
        # RunPod enforces the job timeout too, so a job stuck on a dead worker ends there as well.
        policy = {"executionTimeout": max(MIN_POLICY_TIMEOUT_MS, int(self._job_timeout_s * 1000))}
        try:
            pack.job_id = self._endpoint.run(payload, policy=policy)
        except (ConnectionFailedError, RequestTimeoutError, ApiStatusError) as exc:
            surely_unsent = not getattr(exc, "request_sent", True) or (
                isinstance(exc, ApiStatusError) and not isinstance(exc, ServerError)
            )
            if surely_unsent and self._ledger is not None:  # no job was made: nothing to find again
                self._ledger.settle(self._batch_id, pack.id, unsent(pack))
            raise  # an ambiguous one stays an intent: a resume sends it again and counts it
        if self._ledger is not None:
            self._ledger.sent(pack.id, pack.job_id)
        self.reattach(pack)

    def reattach(self, pack: Pack) -> None:
        submitted_s = self._endpoint.clock()
        future = self._pool.submit(self._follow, pack, submitted_s)

        def delivered(done: Future[PackOutcome]) -> None:
            exc = done.exception()
            self._deliver(PackOutcome(pack, exception=exc) if exc else done.result())

        future.add_done_callback(delivered)

    def _follow(self, pack: Pack, submitted_s: float) -> PackOutcome:
        """Poll one job until it ends; cancel it when it runs past the job timeout."""
        endpoint = self._endpoint
        assert pack.job_id is not None
        running_since: float | None = None
        for poll in itertools.count():
            if not self._pause_until(submitted_s + self._schedule.offset_s(poll)):
                return PackOutcome(pack, failure=self._stopped(pack))
            try:
                status = endpoint.job_status(pack.job_id)
            except JobExpiredError as exc:
                return PackOutcome(pack, failure=exc)
            if status.terminal:
                if (
                    status.state == "SUCCEEDED"
                    and status.delay_ms is not None
                    and status.execution_ms is not None
                ):
                    self._schedule.observe((status.delay_ms + status.execution_ms) / 1000)
                return self._outcome(pack, status)
            if status.state == "RUNNING" and running_since is None:
                running_since = endpoint.clock()
            if (
                running_since is not None
                and endpoint.clock() - running_since > self._job_timeout_s + JOB_TIMEOUT_GRACE_S
            ):
                with contextlib.suppress(Exception):  # it ends here either way
                    endpoint.cancel(pack.job_id)
                return PackOutcome(
                    pack,
                    failure=JobError(
                        f"Job {pack.job_id} was still running {self._job_timeout_s:g} s (the job timeout) after it "
                        "started, so it was cancelled; its inputs are retried. Raise job_timeout_s for longer "
                        "packs, or lower batch_size.",
                        job_id=pack.job_id,
                        state="TIMED_OUT",
                    ),
                )
        raise AssertionError("unreachable")

    def _pause_until(self, moment_s: float) -> bool:
        """Sleep until ``moment_s`` on the endpoint's clock, in short steps, so a stopped batch lets its
        polling threads go within half a second (an exiting interpreter waits for them). False once stopped."""
        endpoint = self._endpoint
        while not self._closed.is_set():
            left = moment_s - endpoint.clock()
            if left <= 0:
                return True
            endpoint.sleep(min(left, STOP_CHECK_S))
        return False

    def _stopped(self, pack: Pack) -> JobError:
        return JobError(f"Job {pack.job_id} was cancelled", job_id=pack.job_id or "", state="CANCELLED")

    def _outcome(self, pack: Pack, status: JobStatus) -> PackOutcome:
        from .client import job_error

        job_id = status.id
        execution_s = None if status.execution_ms is None else status.execution_ms / 1000
        if status.state != "SUCCEEDED":
            return PackOutcome(pack, failure=job_error(job_id, status.raw), execution_s=execution_s)
        if not pack.packed:
            return PackOutcome(pack, results=[{"output": status.output}], execution_s=execution_s)
        results = status.output
        if (
            not isinstance(results, list)
            or len(results) != len(pack.indexes)
            or not all(isinstance(r, dict) and ("output" in r or "error" in r) for r in results)
        ):
            return PackOutcome(
                pack,
                failure=JobError(
                    f"Job {job_id} answered a pack of {len(pack.indexes)} inputs with something other than one "
                    "result per input: is the endpoint running runpod-hybrid's worker? (batch_size=1 sends one "
                    "input a job)",
                    job_id=job_id,
                    state="FAILED",
                ),
            )
        return PackOutcome(pack, results=results, execution_s=execution_s)

    def cancel(self, packs: Sequence[Pack]) -> None:
        self._closed.set()
        for pack in packs:
            if pack.job_id is not None:
                with contextlib.suppress(Exception):  # best effort: the job may have ended meanwhile
                    self._endpoint.cancel(pack.job_id)

    def close(self) -> None:
        self._closed.set()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def situation(self) -> str:
        return self._endpoint.describe_health()


def endpoint_place(
    endpoint: Endpoint,
    task: str,
    *,
    concurrency: int,
    job_timeout_s: float,
    ledger: BatchLedger | None,
    batch_id: str,
) -> Callable[[Callable[[PackOutcome], None]], Place]:
    def make(deliver: Callable[[PackOutcome], None]) -> Place:
        return EndpointPlace(
            endpoint,
            task,
            deliver,
            concurrency=concurrency,
            job_timeout_s=job_timeout_s,
            ledger=ledger,
            batch_id=batch_id,
        )

    return make


@dataclass
class MapOptions:
    """How a map runs; a recorded batch keeps them for its resume."""

    batch_size: BatchSize = "auto"
    concurrency: int = 8
    retries: int = 2
    timeout_s: float | None = None
    job_timeout_s: float = 600.0
    expected_runtime_s: float | None = None
    order_outputs: bool = True
    return_exceptions: bool = False

    def to_record(self) -> dict[str, Any]:
        return {
            "batch_size": self.batch_size,
            "concurrency": self.concurrency,
            "retries": self.retries,
            "timeout_s": self.timeout_s,
            "job_timeout_s": self.job_timeout_s,
            "expected_runtime_s": self.expected_runtime_s,
            "order_outputs": self.order_outputs,
            "return_exceptions": self.return_exceptions,
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> MapOptions:
        known = cls().to_record()
        return cls(**{k: record[k] for k in known if k in record})
