"""One :class:`JobBackend` per place a job runs, behind one interface.

- :class:`LocalCommandBackend`: a command job run by the detached job runner in a sandbox dir on this
  machine (``$XDG_STATE_HOME/runpod-hybrid/local/<job>/``), exactly as it would run on a pod;
- :class:`PodCommandBackend`: a command job on a new GPU pod (create, wait, upload, start the runner), with
  its outputs collected and verified, and the pod then stopped or terminated per ``on_finish``;
- :class:`TaskBackend`: a ``@task`` over many inputs, as a batch on a serverless endpoint or in a local
  process pool (:func:`local_pool`).

Backends get narrow collaborators (the pods resource, callables that build a runner or an endpoint, a dir),
never the facade. They never write a job's state: they return an :class:`Observation`, or report one
through :class:`JobEvents`, and the job service records it in the one place that does.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from runpod_hybrid.errors import (
    TERMINAL_STATES,
    ConfigError,
    JobError,
    JobState,
    LocalPathError,
    RunPodHybridError,
)
from runpod_hybrid.remote import CommandRunner, LocalRunner

from .runner import DetachedJobs, DetachedJobSpec, DetachedJobStatus, boot_command
from .spec import JobSpec
from .store import JobRecord

if TYPE_CHECKING:
    from runpod_hybrid.pods import Pods
    from runpod_hybrid.serverless import BatchProgress, BatchSize, LocalPool, ProgressCallback

POD_ROOT = "/workspace"
# A job pod's deadline is the job's max_runtime_s plus this, for what happens around the run itself: image
# pull, upload, and the final fetch of the outputs.
JOB_POD_SLACK_S = 1800.0
# The runner's dead-man stop on a pod: no heartbeat from the job's supervisor for this long stops the pod.
POD_IDLE_STOP_S = 900


@dataclass(frozen=True)
class Observation:
    """What a backend saw of a job. ``state`` None: it could not tell (the store's state stands)."""

    state: JobState | None
    exit_code: int | None = None
    attempt: int | None = None
    error: str | None = None
    result: Any = None


class JobEvents(Protocol):
    """How a backend reports what it learns while starting or running a job."""

    def placed(self, **facts: Any) -> None:
        """Facts other than the state: the pod it runs on, where its files live."""

    def changed(self, observation: Observation) -> None:
        """A new state (a task batch running in a thread reports its end here)."""


class JobBackend(Protocol):
    def start(self, job: JobSpec, record: JobRecord, events: JobEvents) -> Observation: ...
    def observe(self, record: JobRecord) -> Observation: ...
    def logs(self, record: JobRecord, tail_lines: int) -> str: ...
    def follow(self, record: JobRecord, on_text: Callable[[str], None]) -> Observation: ...
    def fetch(self, record: JobRecord, dest: Path) -> list[Path]: ...
    def cancel(self, record: JobRecord) -> Observation: ...
    def finish(self, record: JobRecord, final: Observation, dest: Path) -> list[Path]: ...


def _observed(status: DetachedJobStatus) -> Observation:
    return Observation(status.job_state, status.exit_code, status.attempt)


def _workdir(job: JobSpec) -> Path:
    workdir = Path(job.workdir or ".")
    if not workdir.is_dir():
        raise LocalPathError(
            f"The work dir {workdir} does not exist (job {job.name!r}, `command.workdir`): nothing was started."
        )
    return workdir


class _CommandBackend:
    """What both command backends share: the detached runner, found again from the job's record."""

    poll_s: float = 1.0

    def _jobs(self, record: JobRecord) -> DetachedJobs:
        raise NotImplementedError

    def _placed(self, record: JobRecord) -> bool:
        """Whether the job got as far as having a place (a pod, a sandbox) recorded."""
        raise NotImplementedError

    def _spec(self, job: JobSpec, job_id: str, workdir: str, *, on_finish: str) -> DetachedJobSpec:
        return DetachedJobSpec(
            job_id,
            list(job.command),
            workdir,
            outputs=job.outputs,
            on_finish=on_finish,  # type: ignore[arg-type]
            heartbeat_s=self.poll_s,
        )

    def observe(self, record: JobRecord) -> Observation:
        if not self._placed(record):  # still starting (here or in another process)
            return Observation(None)
        return _observed(self._jobs(record).status(record.id))

    def logs(self, record: JobRecord, tail_lines: int) -> str:
        if not self._placed(record):
            return record.error or ""
        return self._jobs(record).logs(record.id, tail_lines=tail_lines)

    def follow(self, record: JobRecord, on_text: Callable[[str], None]) -> Observation:
        return _observed(self._jobs(record).follow(record.id, on_text, poll_s=self.poll_s))

    def fetch(self, record: JobRecord, dest: Path) -> list[Path]:
        return self._jobs(record).fetch(record.id, record.spec["outputs"], record.spec["workdir"], dest)

    def cancel(self, record: JobRecord) -> Observation:
        return _observed(self._jobs(record).cancel(record.id))

    def finish(self, record: JobRecord, final: Observation, dest: Path) -> list[Path]:
        if final.state == "SUCCEEDED" and record.spec.get("outputs"):
            return self.fetch(record, dest)
        return []


class LocalCommandBackend(_CommandBackend):
    """Command jobs on this machine, in a sandbox dir that plays the pod's ``/workspace``."""

    def __init__(self, sandboxes: Path, *, runner: Callable[[], CommandRunner] = LocalRunner) -> None:
        self._sandboxes = sandboxes
        self._runner = runner
        self.poll_s = 0.5

    def _jobs(self, record: JobRecord) -> DetachedJobs:
        return DetachedJobs(self._runner(), record.spec["root"])

    def _placed(self, record: JobRecord) -> bool:
        return "root" in record.spec

    def start(self, job: JobSpec, record: JobRecord, events: JobEvents) -> Observation:
        source = _workdir(job)
        root = self._sandboxes / record.id / "workspace"
        workdir = root / "work"
        runner = self._runner()
        runner.upload(source, str(workdir))
        events.placed(
            spec={**record.spec, "root": str(root), "workdir": str(workdir), "outputs": list(job.outputs)}
        )
        spec = self._spec(job, record.id, str(workdir), on_finish="none")
        return _observed(DetachedJobs(runner, str(root)).start(spec))


class PodCommandBackend(_CommandBackend):
    """Command jobs on a GPU pod: a new one (create with safe defaults, wait, upload, start the detached
    runner), or a running pod of ours the job names (or the planner chose warm), where only what changed in
    the work dir is synced and the pod stays up afterwards.

    The pod is guarded three ways: its deadline (``max_runtime_s`` plus slack, else ``max_pod_hours``) held by
    the pod watchdog, armed at container start by the start command our create sets (which also resumes
    jobs), and by every client that lists pods; and the runner's dead-man stop. ``finish`` collects and
    verifies the outputs before it stops or terminates the pod."""

    def __init__(
        self,
        pods: Pods,
        remote: Callable[[str], CommandRunner],
        *,
        root: str = POD_ROOT,
        poll_s: float = 5.0,
    ) -> None:
        """``root``: where jobs live on the pod (RunPod's volume mount, which survives a stop)."""
        self._pods = pods
        self._remote = remote
        self._root = root
        self.poll_s = poll_s

    def _jobs(self, record: JobRecord) -> DetachedJobs:
        if not record.pod_id:
            raise ConfigError(f"Job {record.id} has no pod (it failed before one was made).")
        return DetachedJobs(self._remote(record.pod_id), self._root)

    def _placed(self, record: JobRecord) -> bool:
        return record.pod_id is not None and "workdir" in record.spec

    def start(self, job: JobSpec, record: JobRecord, events: JobEvents) -> Observation:
        source = _workdir(job)
        workdir = f"{self._root}/rph/work/{_work_slug(source)}"
        on_finish, keep_warm_s = _finish_policy(job)
        pod_id = job.pod or self._new_pod(job)  # a named pod: the plan checked it can run the job
        events.placed(
            pod_id=pod_id,
            spec={**record.spec, "workdir": workdir, "outputs": list(job.outputs), "on_finish": on_finish},
        )
        try:
            if not job.pod:
                self._pods.wait_until_ready(pod_id)
            runner = self._remote(pod_id)  # an SSH contact: it arms (or re-arms) the pod's watchdog too
            runner.upload(source, workdir)  # rsync: on a pod used before, only what changed moves
            spec = self._spec(job, record.id, workdir, on_finish=on_finish)
            status = DetachedJobs(runner, self._root).start(
                replace(
                    spec,
                    checkpoint_dir=self._volume_checkpoints(job),
                    idle_stop_s=POD_IDLE_STOP_S,
                    keep_warm_s=keep_warm_s,
                )
            )
        except RunPodHybridError as exc:
            if job.pod:  # a pod the job did not make stays as it was
                raise
            # The job never started: stop paying for the GPU. Stop, not terminate, keeps the pod for a look.
            self._pods.stop(pod_id)
            exc.add_note(
                f"The job did not start, so pod {pod_id} was stopped; `rph pods terminate {pod_id} --yes` "
                "removes it."
            )
            raise
        return _observed(status)

    def _new_pod(self, job: JobSpec) -> str:
        from runpod_hybrid.pods import PodSpec

        created = self._pods.create(
            PodSpec(
                name=job.name,
                gpu_types=job.gpu_types,
                gpu_count=job.gpu_count,
                min_vram_gb=job.min_vram_gb or None,
                cloud_type=job.cloud_type,
                image=job.image,
                container_disk_gb=job.container_disk_gb,
                volume_gb=job.volume_gb,
                volume_mount_path=self._root,
                network_volume_id=job.network_volume_id,
                spot=job.spot,
                max_hours=(job.max_runtime_s + JOB_POD_SLACK_S) / 3600 if job.max_runtime_s else None,
                boot=boot_command(self._root),
            )
        )
        return created.pod.id

    def _volume_checkpoints(self, job: JobSpec) -> str | None:
        """With a network volume (mounted at the root), checkpoints live on it under the job's name, so the job
        submitted again, on a new pod placed in the volume's data centre, continues from them."""
        if not job.network_volume_id:
            return None
        name = re.sub(r"[^A-Za-z0-9_.-]", "-", job.name) or "job"
        return f"{self._root}/.rph/checkpoints/by-name/{name}"

    def finish(self, record: JobRecord, final: Observation, dest: Path) -> list[Path]:
        """After a watched end: collect and verify the outputs, then stop or terminate the pod per
        ``on_finish``. A job that failed keeps its outputs on the pod, which is stopped, not terminated."""
        on_finish = record.spec.get("on_finish", "stop")
        if on_finish in ("none", "keep") or record.pod_id is None:
            return super().finish(record, final, dest)
        fetched = super().finish(record, final, dest)  # raises, leaving the pod up, if verification fails
        if final.state == "SUCCEEDED" and on_finish == "terminate":
            self._pods.terminate(record.pod_id)
        else:
            self._pods.stop(record.pod_id)
        return fetched


class TaskRunner(Protocol):
    """What runs a task job's batch: an endpoint (``endpoint_id`` set, resumable) or the local pool."""

    @property
    def endpoint_id(self) -> str | None: ...

    def map(
        self,
        task: str,
        inputs: Iterable[Any],
        *,
        batch_size: BatchSize,
        retries: int,
        expected_runtime_s: float | None,
        on_progress: ProgressCallback | None,
        batch_id: str | None,
        stop: threading.Event | None,
    ) -> Iterator[Any]: ...


@dataclass
class _Batch:
    """A task job's batch running in a thread here: ``stop`` asks it to end, ``done`` says it has."""

    stop: threading.Event
    done: threading.Event
    progress: BatchProgress | None = None


class TaskBackend:
    """A ``@task`` over many inputs as a batch on a runner (an endpoint, RunPod's or a local one, or the local
    process pool), run in a thread of this process: the job ends when the batch does. (Waits are on events,
    not ``Thread.join``: a join that Ctrl-C interrupts can leave the thread looking finished while it runs.)

    Map options a job may carry in ``JobSpec.extra``: ``batch_size`` (default ``"auto"``) and ``retries``
    (default 2); ``expected_runtime_s`` (per input) sizes ``"auto"`` packs on an endpoint."""

    def __init__(self, runner: Callable[[JobSpec], contextlib.AbstractContextManager[TaskRunner]]) -> None:
        self._runner = runner
        self._batches: dict[str, _Batch] = {}

    def start(self, job: JobSpec, record: JobRecord, events: JobEvents) -> Observation:
        assert job.task is not None
        _import_task_module(job)
        batch = _Batch(threading.Event(), threading.Event())
        self._batches[record.id] = batch
        events.placed(
            spec={**record.spec, "owner_pid": os.getpid(), "task": job.task, "inputs": len(job.inputs)}
        )

        def progress(seen: BatchProgress) -> None:
            batch.progress = seen

        def run() -> None:
            try:
                with self._runner(job) as runner:
                    if runner.endpoint_id is not None:
                        events.placed(endpoint_id=runner.endpoint_id)
                    results = list(
                        runner.map(
                            job.task or "",
                            job.inputs,
                            batch_size=job.extra.get("batch_size", "auto"),
                            retries=int(job.extra.get("retries", 2)),
                            expected_runtime_s=job.expected_runtime_s,
                            batch_id=f"{record.id}-batch",
                            on_progress=progress,
                            stop=batch.stop,
                        )
                    )
            except JobError as exc:
                events.changed(Observation("CANCELLED" if batch.stop.is_set() else exc.state, error=str(exc)))
            except Exception as exc:  # the thread's end is the job's end: every failure is recorded
                events.changed(Observation("FAILED", error=f"{type(exc).__name__}: {exc}"))
            else:
                events.changed(Observation("SUCCEEDED", result=results))
            finally:
                batch.done.set()

        threading.Thread(target=run, name=f"rph-job-{record.id}", daemon=True).start()
        return Observation("RUNNING")

    def observe(self, record: JobRecord) -> Observation:
        batch = self._batches.get(record.id)
        if batch is not None:
            return Observation(None if batch.done.is_set() else "RUNNING")  # its end is recorded when it ends
        if record.state in TERMINAL_STATES:
            return Observation(None)
        owner = record.spec.get("owner_pid")
        if isinstance(owner, int) and not _process_alive(owner):
            after = (
                f"its serverless jobs are kept: `rph batch resume {record.id}-batch` finishes it"
                if record.endpoint_id
                else "its local processes ended with it: run it again"
            )
            return Observation(
                "FAILED", error=f"the process that ran it (pid {owner}) ended before the batch did; {after}"
            )
        return Observation(None)

    def logs(self, record: JobRecord, tail_lines: int) -> str:
        batch = self._batches.get(record.id)
        if batch is not None and batch.progress is not None:
            seen = batch.progress
            return (
                f"{seen.done}/{seen.total} inputs done, {seen.running} running, "
                f"{seen.retried} retried, {seen.failed} failed\n"
            )
        return record.error or ""

    def follow(self, record: JobRecord, on_text: Callable[[str], None]) -> Observation:
        batch = self._batches.get(record.id)
        while batch is not None and not batch.done.wait(0.5):
            pass
        return Observation(None)

    def fetch(self, record: JobRecord, dest: Path) -> list[Path]:
        raise ConfigError(f"Job {record.id} is a task job: its results come from result(), not files.")

    def cancel(self, record: JobRecord) -> Observation:
        batch = self._batches.get(record.id)
        if batch is None:
            raise ConfigError(
                f"Job {record.id} runs in another process (pid {record.spec.get('owner_pid')}); cancel it there."
            )
        batch.stop.set()
        batch.done.wait(10)
        return Observation("CANCELLED", error="cancelled")

    def finish(self, record: JobRecord, final: Observation, dest: Path) -> list[Path]:
        return []


def _work_slug(source: Path) -> str:
    """The pod dir a local work dir syncs to: the same for every job from it, so later syncs move only what
    changed (jobs each get their own job dir under .rph/jobs; they share the synced tree, as `sky exec`'s do)."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "-", source.resolve().name)[:40] or "work"
    return f"{name}-{hashlib.sha256(str(source.resolve()).encode()).hexdigest()[:8]}"


def _finish_policy(job: JobSpec) -> tuple[str, int]:
    """What a pod job's end does to its pod, and how long a kept pod may then idle. A pod the job names stays
    up (``keep``, unless the job says ``none``)."""
    from .spec import DEFAULT_IDLE_STOP_MIN

    on_finish = job.on_finish
    if job.pod and not job.extra.get("pod_from_plan") and on_finish != "none":
        on_finish = "keep"
    keep_warm_s = int((job.idle_stop_min or DEFAULT_IDLE_STOP_MIN) * 60) if on_finish == "keep" else 0
    return on_finish, keep_warm_s


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _import_task_module(job: JobSpec) -> None:
    """Import the job's task module here before anything runs, so a typo fails now, naming the module."""
    from runpod_hybrid.serverless import load_task_modules

    task_path = job.extra.get("task_path")
    if task_path and task_path not in sys.path:
        sys.path.insert(0, task_path)
    if job.task_module:
        try:
            load_task_modules([job.task_module])
        except ImportError as exc:
            raise ConfigError(str(exc)) from exc


@contextlib.contextmanager
def local_pool(job: JobSpec) -> Iterator[LocalPool]:
    """A pool of local processes running the job's task module through the worker's handler code."""
    from runpod_hybrid.serverless import LocalPool

    task_path = job.extra.get("task_path")
    # Workers import the task module like this process does: from the job's folder, the current dir, our path.
    paths = [p for p in [task_path, os.getcwd()] if p]
    workers = min(os.cpu_count() or 1, max(1, len(job.inputs)))
    with LocalPool([job.task_module] if job.task_module else [], paths=paths, workers=workers) as pool:
        yield pool
