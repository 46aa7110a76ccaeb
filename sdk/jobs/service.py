"""Jobs: plan where a :class:`JobSpec` runs, start it there, and one :class:`JobHandle` for every backend.

Every job is a row in the job store, so the CLI and the MCP server can find it later; a handle reads the
row, picks the job's backend once from it, and reconciles the row with what the backend sees. A job's state
is written in one place: :meth:`Jobs._record`.
"""

from __future__ import annotations

import builtins
import contextlib
import secrets
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runpod_hybrid.config import Settings
from runpod_hybrid.errors import (
    TERMINAL_STATES,
    BudgetExceededError,
    ConfigError,
    JobError,
    JobState,
    NotFoundError,
    TransportError,
)

from .backends import JobBackend, Observation
from .planner import Backend, Plan, PlanContext, PodOffer, load_prices, plan

if TYPE_CHECKING:
    from runpod_hybrid.pods import WarmPod
    from runpod_hybrid.serverless import BatchSize
from .spec import JobSpec, check_job
from .store import JobRecord, JobStore

JobKind = str  # "command" | "task"
BackendKey = tuple[JobKind, Backend]
LOG_TAIL_LINES = 20


def new_job_id() -> str:
    return f"j-{secrets.token_hex(4)}"


class JobHandle:
    """One job, wherever it runs: its state, logs, results or output files, and cancel."""

    def __init__(self, jobs: Jobs, record: JobRecord) -> None:
        self._jobs = jobs
        self.record = record
        self._backend = jobs._backend_for(record)

    @property
    def id(self) -> str:
        """The job's id (``j-`` and eight hex digits), as ``rph jobs`` and the MCP tools take it."""
        return self.record.id

    @property
    def backend(self) -> str:
        """Where it runs: ``local``, ``pod`` or ``serverless``."""
        return self.record.backend

    @property
    def kind(self) -> str:
        """``command`` or ``task``."""
        return str(self.record.spec.get("kind", "command"))

    @property
    def state(self) -> JobState:
        """The last known state (no call to the backend); :meth:`status` reconciles."""
        return self.record.state

    def status(self) -> JobState:
        """The job's state, reconciled with where it runs."""
        if self.record.state not in TERMINAL_STATES:
            self._jobs._record(self.record, self._backend.observe(self.record))
        return self.record.state

    def settle(self, timeout_s: float, *, poll_s: float = 0.5) -> JobState:
        """Check the job's state until it ends or ``timeout_s`` pass, then return it (no log streaming, no
        output collection: for callers that must answer quickly, such as an MCP tool)."""
        deadline = self._jobs.clock() + timeout_s
        while self.status() not in TERMINAL_STATES and self._jobs.clock() < deadline:
            self._jobs.sleep(min(poll_s, max(0.0, deadline - self._jobs.clock())))
        return self.record.state

    def logs(self, tail_lines: int = 200) -> str:
        """The end of the job's log (a task job: its progress or its error)."""
        return self._backend.logs(self.record, tail_lines)

    def wait(self, on_text: Callable[[str], None] | None = None) -> JobState:
        """Follow the job until it ends (``on_text`` gets its log as it grows, from the start) and return its
        final state. The first wait that sees the end also finishes the job: a command job's outputs are
        collected and verified (into ``./rph-outputs/<job>``), and a pod is stopped or terminated per
        ``on_finish``."""
        if self.record.spec.get("finished"):
            return self.status()
        self._jobs._record(self.record, self._backend.follow(self.record, on_text or (lambda _text: None)))
        while self.status() not in TERMINAL_STATES:  # a batch running in another process: watch the store
            self._jobs.sleep(1.0)
        outputs = self._backend.finish(self.record, Observation(self.record.state), self.outputs_dir())
        known = self.record.result if isinstance(self.record.result, dict) else {}
        result = (
            {**known, "outputs": [str(p) for p in outputs]} if self.kind == "command" else self.record.result
        )
        self._jobs._note(self.record, spec={**self.record.spec, "finished": True}, result=result)
        return self.record.state

    def raise_for_state(self) -> None:
        """Raise :class:`JobError` (with the exit code and the end of the log) unless the job SUCCEEDED."""
        state = self.status()
        if state == "SUCCEEDED":
            return
        if state not in TERMINAL_STATES:
            raise JobError(f"Job {self.id} is still {state}.", job_id=self.id, state=state)
        result = self.record.result if isinstance(self.record.result, dict) else {}
        exit_code = result.get("exit_code") if self.kind == "command" else None
        tail = self.logs(LOG_TAIL_LINES).strip() if self.kind == "command" else ""
        reason = self.record.error or (f"exit code {exit_code}" if exit_code is not None else "no detail")
        raise JobError(
            f"Job {self.id} {state}: {reason}."
            + (f"\nLast lines of its log:\n{tail}" if tail else "")
            + f"\n`rph jobs logs {self.id}` shows more.",
            job_id=self.id,
            state=state,
            error=self.record.error,
            exit_code=exit_code,
            log_tail=tail,
        )

    def result(self) -> list[Any]:
        """A finished task job's results, one per input, in input order. Raises :class:`JobError` when the
        job failed or was cancelled, and :class:`ConfigError` for a command job (use :meth:`fetch`)."""
        if self.kind != "task":
            raise ConfigError(f"Job {self.id} is a command job: its outputs are files, from fetch().")
        self.raise_for_state()
        return list(self.record.result or [])

    def outputs_dir(self) -> Path:
        """Where a command job's outputs are collected by default: ``./rph-outputs/<job>`` (absolute)."""
        return (Path("rph-outputs") / self.id).resolve()

    def fetch(self, dest: Path | None = None) -> list[Path]:
        """Download a command job's declared outputs (verified against the runner's checksums) into
        ``dest`` (default ``./rph-outputs/<job>``) and return their absolute paths."""
        target = (dest or self.outputs_dir()).resolve()
        return [p.resolve() for p in self._backend.fetch(self.record, target)]

    def cancel(self, *, reason: str = "cancelled") -> JobState:
        """Stop the job (a command: SIGTERM to its process group, then SIGKILL; a batch: its jobs in flight,
        kept in the job store so ``rph batch resume`` can finish it) and record ``reason``."""
        if self.status() in TERMINAL_STATES:
            return self.record.state
        seen = self._backend.cancel(self.record)
        self._jobs._record(self.record, Observation(seen.state, seen.exit_code, seen.attempt, reason))
        return self.record.state


class _Events:
    """What a backend reports about one job, written through the job service."""

    def __init__(self, jobs: Jobs, record: JobRecord) -> None:
        self._jobs = jobs
        self._record = record

    def placed(self, **facts: Any) -> None:
        self._jobs._note(self._record, **facts)

    def changed(self, observation: Observation) -> None:
        self._jobs._record(self._record, observation)


class Jobs:
    """Plan, submit, run and find jobs on any backend. Reached as ``RunPod().jobs``."""

    def __init__(
        self,
        store: JobStore,
        settings: Settings,
        *,
        has_api_key: bool,
        backends: Mapping[BackendKey, JobBackend],
        pod_offers: Callable[[JobSpec], list[PodOffer]],
        warm_pods: Callable[[JobSpec], list[WarmPod]] = lambda _job: [],
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self._settings = settings
        self._has_api_key = has_api_key
        self._backends = backends
        self._pod_offers = pod_offers
        self._warm_pods = warm_pods
        self.sleep = sleep
        self.clock = clock
        self._lock = threading.Lock()

    def _backend_for(self, record: JobRecord) -> JobBackend:
        backend = self._backends.get((str(record.spec.get("kind", "command")), record.backend))  # type: ignore[arg-type]
        if backend is None:
            raise ConfigError(f"Job {record.id} ran on {record.backend!r}, which this version cannot reach.")
        return backend

    def _note(self, record: JobRecord, **facts: Any) -> None:
        """Facts of a job other than its state, in the store and in the handle's record."""
        self.store.update(record.id, **facts)
        for name, value in facts.items():
            setattr(record, name, value)

    def _record(self, record: JobRecord, observation: Observation) -> None:
        """The one place a job's state changes (and the facts that come with the change)."""
        if observation.state is None:
            fresh = self.store.get(record.id)
            if fresh is not None:
                record.state, record.error, record.result = fresh.state, fresh.error, fresh.result
            return
        facts: dict[str, Any] = {}
        if observation.error is not None:
            facts["error"] = observation.error
        if observation.result is not None:
            facts["result"] = observation.result
        elif observation.exit_code is not None or observation.attempt is not None:
            facts["result"] = {"exit_code": observation.exit_code, "attempt": observation.attempt}
        with self._lock:
            self.store.transition(record.id, observation.state, **facts)
            record.state = observation.state
            for name, value in facts.items():
                setattr(record, name, value)

    # --- planning ---

    def plan(self, job: JobSpec, *, backend: str = "auto", pod: str | None = None) -> Plan:
        """Where ``job`` would run (``backend``: auto, local, pod or serverless), why, what it would cost, and
        the alternatives. Creates nothing. ``pod`` plans a command job on that running pod of ours."""
        job = _on_pod(job, pod)
        if backend not in ("auto", "local", "pod", "serverless"):
            raise ValueError(f"backend must be auto, local, pod or serverless, got {backend!r}")
        check_job(job)
        settings = self._settings
        offers: list[PodOffer] = []
        warm: list[WarmPod] = []
        offline = False
        # A local plan never needs the network; an auto plan without live prices still plans.
        if self._has_api_key and backend in ("auto", "pod"):
            try:
                offers = self._pod_offers(job)
                if job.kind == "command":
                    warm = self._warm_pods(job)
            except TransportError:
                if backend == "pod" or job.pod:
                    raise
                offline = True
        prices = load_prices(
            Path(settings.serverless_prices_path) if settings.serverless_prices_path else None
        )
        context = PlanContext(
            self._has_api_key,
            dict(settings.endpoints),
            prices,
            offers,
            offline=offline,
            warm_pods=warm,
            default_image=settings.image,
        )
        return plan(job, context, backend)  # type: ignore[arg-type]

    # --- running ---

    def submit(
        self,
        job: JobSpec,
        *,
        backend: str = "auto",
        plan: Plan | None = None,
        job_id: str | None = None,
        background: bool = False,
        pod: str | None = None,
    ) -> JobHandle:
        """Start ``job`` where its plan says and return its handle; nothing waits for the job to end.

        A job over its ``budget_usd`` (or that no backend can run) is refused before anything is created.
        Pass a ``plan`` from :meth:`plan` to run exactly that plan. A command job runs detached (on a pod,
        or here under the job runner) and survives this process; a task job's batch runs in a thread of
        this process. Starting a pod job takes minutes (create, boot, upload): with ``background`` the
        handle comes back at once, PENDING, and a failure to start is recorded on the job (FAILED, with
        the error) instead of raised. ``pod`` runs a command job on that running pod of ours (only what
        changed in its work dir is synced; the pod stays up afterwards, its idle stop set)."""
        job = _on_pod(job, pod)
        chosen = plan or self.plan(job, backend=backend)
        if chosen.refused and chosen.over_budget:
            raise BudgetExceededError(
                f"Refused before creating anything: {chosen.refused}.",
                cost_usd=chosen.estimated_cost_usd or 0.0,
                cap_usd=job.budget_usd or 0.0,
            )
        if chosen.refused:
            raise ConfigError(f"Cannot run this job: {chosen.refused}.")
        warm_pod = chosen.details.get("pod_id")
        if warm_pod and not job.pod:  # the plan found a warm pod of ours: run there, no new pod
            job = replace(job, pod=warm_pod, extra={**job.extra, "pod_from_plan": True})
        spec = {"kind": job.kind, "name": job.name, "plan": chosen.backend}
        record = JobRecord(job_id or new_job_id(), chosen.backend, "PENDING", name=job.name, spec=spec)
        backend_impl = self._backend_for(record)
        self.store.put(record)
        handle = JobHandle(self, record)

        def start() -> None:
            try:
                started = backend_impl.start(job, record, _Events(self, record))
            except BaseException as exc:
                notes = "".join(f" {note}" for note in getattr(exc, "__notes__", []))
                self._record(record, Observation("FAILED", error=f"{exc or type(exc).__name__}{notes}"))
                raise
            if record.state == "PENDING":  # a task batch may have ended (and been recorded) already
                self._record(record, started)

        if not background:
            start()
            return handle

        def start_quietly() -> None:
            with contextlib.suppress(Exception):  # recorded on the job by start()
                start()

        threading.Thread(target=start_quietly, name=f"rph-start-{record.id}", daemon=True).start()
        return handle

    def run(
        self,
        job: JobSpec,
        *,
        backend: str = "auto",
        on_text: Callable[[str], None] | None = None,
        pod: str | None = None,
    ) -> Any:
        """Run ``job`` to its end and return a task job's results (one per input) or a command job's fetched
        output files (absolute paths, verified). Raises :class:`JobError` (with the exit code and the end of
        the log) when the job fails or is cancelled. ``pod``: as for :meth:`submit`."""
        handle = self.submit(job, backend=backend, pod=pod)
        handle.wait(on_text)
        handle.raise_for_state()
        if handle.kind == "task":
            return handle.result()
        outputs = handle.record.result.get("outputs") if isinstance(handle.record.result, dict) else None
        return [Path(p) for p in outputs] if outputs else []

    def map(
        self,
        task: Callable[..., Any] | str,
        inputs: Iterable[Any],
        *,
        backend: str = "auto",
        module: str | None = None,
        batch_size: BatchSize = "auto",
        retries: int = 2,
        **options: Any,
    ) -> list[Any]:
        """Run the ``@task`` ``task`` over ``inputs`` and return one result per input, in order: on this
        machine without a key (a process pool), on serverless when an endpoint in your settings serves it.

        ``batch_size`` packs several inputs into one serverless job (``"auto"`` sizes packs from
        ``expected_runtime_s``, within RunPod's 10 MB ``/run`` limit); a failed input is retried ``retries``
        times on its own. ``module`` is where workers import the task from (default: the function's module;
        a script's tasks come from its file, so guard its own work with ``if __name__ == "__main__":``, as
        with multiprocessing). Other ``options`` are :class:`JobSpec` fields (``endpoint``, ``budget_usd``,
        ``expected_runtime_s``...). Raises :class:`JobError` when an input still fails after its retries; for
        failures as values, iterator results or completion order, use ``RunPod().endpoint(...).map``."""
        from runpod_hybrid.serverless import task_name

        name = task_name(task)
        source = module or (getattr(task, "__module__", None) if not isinstance(task, str) else None)
        extra: dict[str, Any] = {"batch_size": batch_size, "retries": retries}
        if source == "__main__":
            script = getattr(sys.modules["__main__"], "__file__", None)
            if script is None:
                raise ValueError(
                    "define @task functions in a module (not an interactive session) to map them"
                )
            source, extra["task_path"] = Path(script).stem, str(Path(script).resolve().parent)
        result: list[Any] = self.run(
            JobSpec.for_task(name, list(inputs), module=source, extra=extra, **options), backend=backend
        )
        return result

    # --- finding ---

    def get(self, job_id: str) -> JobHandle:
        """The handle of a job in the local job store."""
        record = self.store.get(job_id)
        if record is None:
            raise NotFoundError(
                f"No job {job_id!r} in the local job store. `rph jobs list` shows recent jobs."
            )
        return JobHandle(self, record)

    def list(self, limit: int = 20) -> builtins.list[JobHandle]:
        """The ``limit`` newest jobs (each job counts once, however many inputs it has)."""
        return [JobHandle(self, r) for r in self.store.recent(limit=limit)]


def _on_pod(job: JobSpec, pod: str | None) -> JobSpec:
    """The job on ``pod`` when one is given (it wins over the job file's ``pod``)."""
    return replace(job, pod=pod) if pod else job
