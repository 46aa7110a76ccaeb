"""The local backend for tasks: a pool of worker processes that runs packs of inputs through the worker's
own handler code (:func:`~runpod_hybrid.serverless.handler.execute_pack`), with a map's batch semantics
(input order or completion order, retries per input, failures as values, progress, stop) and no HTTP.

Workers start from a fork server (safe from a process with threads, cheap per worker) and import the task
modules once; inputs go in packs of about a quarter of each worker's share, as ``multiprocessing.Pool.map``
chunks them. A worker process that dies fails the packs it held (their inputs are retried) and the pool is
started again.
"""

from __future__ import annotations

import math
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from runpod_hybrid.errors import JobError

from .batch import BatchRun, BatchSize, Inputs, InputsFile, Pack, PackOutcome, Place, ProgressCallback
from .handler import TaskFailed, die_with_parent, execute_pack
from .tasks import load_task_modules, task_name

if TYPE_CHECKING:
    from concurrent.futures import ProcessPoolExecutor

CHUNKS_PER_WORKER = 4  # as multiprocessing.Pool.map sizes its chunks


def _start_worker(paths: Sequence[str], modules: Sequence[str]) -> None:
    """In each pool process: die with the fork server, find and import the task modules."""
    die_with_parent()
    sys.path[:0] = [p for p in paths if p not in sys.path]
    load_task_modules(modules)


class LocalPool:
    """Runs ``@task`` functions over many inputs on this machine, in ``workers`` processes (default: one per
    CPU). Use as a context manager; the processes start on the first map and stop on exit."""

    endpoint_id: str | None = None  # not an endpoint: nothing to resume after a crash

    def __init__(
        self,
        modules: Sequence[str],
        *,
        paths: Sequence[str] = (),
        workers: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.modules = list(modules)
        self.paths = list(paths)
        self.workers = max(1, workers or os.cpu_count() or 1)
        self.clock = clock
        self._executor: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    def executor(self) -> ProcessPoolExecutor:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        with self._lock:
            if self._executor is None:
                self._executor = ProcessPoolExecutor(
                    self.workers,
                    mp_context=multiprocessing.get_context("forkserver"),
                    initializer=_start_worker,
                    initargs=(self.paths, self.modules),
                )
            return self._executor

    def restart(self, executor: ProcessPoolExecutor) -> None:
        """After a worker died (the executor is broken) or a cancel: kill this executor's processes; the
        next pack starts a fresh one.

        Killed, not asked to stop: a worker killed while it held the task queue's lock leaves the others
        blocked on that queue for good, so waiting for them to read a stop message can hang (Python's own
        broken-pool path kills them too). ``_processes`` is private but typed; it is the only list that
        holds workers still in their initializer."""
        with self._lock:
            if self._executor is not executor:
                return
            self._executor = None
        processes = executor._processes  # the dict itself: shutdown() drops the executor's reference
        executor.shutdown(wait=False, cancel_futures=True)  # no new workers from here on
        for process in list(processes.values()):
            process.kill()

    def stop_workers(self) -> None:
        """Kill the processes now (their packs end as failures); the next pack starts new ones."""
        executor = self._executor
        if executor is not None:
            self.restart(executor)

    def map(
        self,
        task: Callable[..., Any] | str,
        inputs: Iterable[Any] | InputsFile,
        *,
        batch_size: BatchSize = "auto",
        retries: int = 2,
        timeout_s: float | None = None,
        expected_runtime_s: float | None = None,
        order_outputs: bool = True,
        return_exceptions: bool = False,
        on_progress: ProgressCallback | None = None,
        batch_id: str | None = None,
        stop: threading.Event | None = None,
    ) -> Iterator[Any]:
        """Run ``task`` over ``inputs`` here: one result per input, in input order (or as they come with
        ``order_outputs=False``); the options mean what they mean for :meth:`Endpoint.map`. ``"auto"`` packs
        split the inputs into about four packs per worker."""
        name = task_name(task)
        source = Inputs.of(inputs if isinstance(inputs, InputsFile) else list(inputs), fingerprinted=False)
        if batch_size == "auto" and source.count is not None:
            batch_size = max(1, math.ceil(source.count / (self.workers * CHUNKS_PER_WORKER)))

        def make_place(deliver: Callable[[PackOutcome], None]) -> Place:
            return PoolPlace(self, name, deliver)

        return BatchRun(
            make_place,
            name,
            source.values,
            total=source.count,
            batch_id=batch_id or f"local-{name}",
            ledger=None,
            batch_size=batch_size,
            retries=retries,
            timeout_s=timeout_s,
            job_timeout_s=float("inf"),
            expected_runtime_s=expected_runtime_s,
            order_outputs=order_outputs,
            return_exceptions=return_exceptions,
            on_progress=on_progress,
            stop=stop,
            clock=self.clock,
            resuming=False,
        ).results()

    def close(self) -> None:
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> LocalPool:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


class PoolPlace:
    """Packs as calls of :func:`execute_pack` in the pool's processes."""

    def __init__(self, pool: LocalPool, task: str, deliver: Callable[[PackOutcome], None]) -> None:
        # Two packs per worker in flight: one running, one ready to start as soon as it is free.
        self.slots = pool.workers * 2
        self.max_pack_bytes = sys.maxsize
        self._pool = pool
        self._task = task
        self._deliver = deliver

    def send(self, pack: Pack) -> None:
        from concurrent.futures.process import BrokenProcessPool

        executor = self._pool.executor()
        try:
            future = executor.submit(execute_pack, self._task, pack.values)
        except BrokenProcessPool:  # a worker died under an earlier pack: start afresh
            self._pool.restart(executor)
            executor = self._pool.executor()
            future = executor.submit(execute_pack, self._task, pack.values)
        future.add_done_callback(lambda done: self._deliver(self._outcome(pack, executor, done)))

    def _outcome(
        self, pack: Pack, executor: ProcessPoolExecutor, done: Future[list[dict[str, Any]]]
    ) -> PackOutcome:
        from concurrent.futures.process import BrokenProcessPool

        if done.cancelled():
            return PackOutcome(pack, failure=JobError("cancelled", job_id=pack.id, state="CANCELLED"))
        exc = done.exception()
        if exc is None:
            return PackOutcome(pack, results=done.result())
        if isinstance(exc, BrokenProcessPool):
            threading.Thread(target=self._pool.restart, args=(executor,), daemon=True).start()
            message = "a local worker process died while running it (killed, out of memory, or os._exit)"
        else:
            message = exc.error if isinstance(exc, TaskFailed) else f"{type(exc).__name__}: {exc}"
        return PackOutcome(
            pack,
            failure=JobError(
                f"Pack {pack.id} failed: {message}", job_id=pack.id, state="FAILED", error=message
            ),
        )

    def reattach(self, pack: Pack) -> None:
        raise NotImplementedError("a local pool keeps nothing to re-attach to")

    def cancel(self, packs: Sequence[Pack]) -> None:
        if packs:
            self._pool.stop_workers()

    def close(self) -> None:
        """The pool outlives one map; :meth:`LocalPool.close` stops it."""

    def situation(self) -> str:
        return f"the local pool has {self._pool.workers} worker processes"
