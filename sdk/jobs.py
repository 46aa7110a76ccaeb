"""Submitting a :class:`JobSpec` to the backend its plan names, and one handle for every backend.

- local task: a local endpoint with real worker processes runs the inputs (``map``);
- local command: the pod job runner in a sandbox dir (``$XDG_STATE_HOME/runpod-hybrid/local/<job>/``);
- serverless: ``map`` over the endpoint;
- pod: create (TTL, SSH, boot step), wait, upload, start the runner, then collect and stop per ``on_finish``.
Every job is a row in the job store, so the CLI and the MCP server can look it up later; reads reconcile
with the backend.
"""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import BudgetExceededError, ConfigError, JobError, NotFoundError, RunPodHybridError
from .jobspec import JobSpec
from .jobstore import JobRecord
from .localrunner import LocalRunner
from .podjobs import PodJobs, PodJobSpec, boot_docker_args
from .router import Plan, PlanContext, PodOffer, load_prices, plan

if TYPE_CHECKING:
    from .client import RunPod

POD_ROOT = "/workspace"


def new_job_id() -> str:
    return f"j-{secrets.token_hex(4)}"


class JobHandle:
    """Status, logs, result, outputs and cancel of one job, whatever ran it."""

    def __init__(self, jobs: Jobs, record: JobRecord) -> None:
        self._jobs = jobs
        self.record = record

    @property
    def id(self) -> str:
        return self.record.id

    @property
    def backend(self) -> str:
        return self.record.backend

    def _pod_jobs(self) -> PodJobs:
        spec = self.record.spec
        if self.backend == "local":
            return PodJobs(LocalRunner(), spec["root"])
        return PodJobs(self._jobs.client.remote(str(self.record.pod_id)), self._jobs.pod_root)

    @property
    def _is_command(self) -> bool:
        return self.record.spec.get("kind") == "command"

    def status(self) -> str:
        """The job's state, reconciled with where it runs (SUCCEEDED, FAILED, CANCELLED, RUNNING...)."""
        if self._is_command and self.record.status not in ("SUCCEEDED", "FAILED", "CANCELLED"):
            live = self._pod_jobs().status(self.id)
            if live.state != self.record.status:
                self._jobs.store.update(
                    self.id, status=live.state, result={"exit_code": live.exit_code, "attempt": live.attempt}
                )
                self.record.status = live.state
        return self.record.status

    def logs(self, tail_lines: int = 200) -> str:
        if self._is_command:
            return self._pod_jobs().logs(self.id, tail_lines=tail_lines)
        return self.record.error or ""

    def wait(self, on_text: Callable[[str], None] | None = None, poll_s: float = 1.0) -> str:
        if self._is_command:
            self._pod_jobs().follow(self.id, on_text or (lambda _t: None), poll_s=poll_s)
        return self.status()

    def result(self) -> Any:
        state = self.status()
        if state in ("FAILED", "CANCELLED"):
            raise JobError(
                f"Job {self.id} {state}: {self.record.error or 'see `rph jobs logs ' + self.id + '`'}",
                job_id=self.id,
                status=state,
                error=self.record.error,
            )
        return self._jobs.store.get(self.id).result  # type: ignore[union-attr]

    def fetch(self, dest: Path | None = None) -> list[Path]:
        """Download the declared outputs (verified against the runner's checksums)."""
        if not self._is_command:
            raise ConfigError(f"Job {self.id} is a task job: its results come from result(), not files.")
        target = dest or Path("rph-outputs") / self.id
        return self._pod_jobs().fetch(
            self.id, self.record.spec["outputs"], self.record.spec["workdir"], target
        )

    def cancel(self) -> str:
        if self._is_command:
            state = self._pod_jobs().cancel(self.id).state
            self._jobs.store.update(self.id, status=state)
            self.record.status = state
            return state
        raise ConfigError(f"Job {self.id} ran in the foreground and has ended ({self.record.status}).")


class Jobs:
    """Plans and submits jobs for one account (or none: the local backend)."""

    def __init__(self, client: RunPod, *, pod_root: str = POD_ROOT, pod_poll_s: float = 5.0) -> None:
        self.client = client
        self.store = client.job_store
        self.pod_root = pod_root  # where jobs live on a pod: RunPod's volume mount
        self.pod_poll_s = pod_poll_s

    def context(self, job: JobSpec, *, live_prices: bool = True) -> PlanContext:
        settings = self.client.config.settings
        offers: list[PodOffer] = []
        has_key = self.client.config.api_key is not None
        if has_key and live_prices:
            from .pods import PodSpec, preferences_for

            prefs = preferences_for(
                PodSpec(
                    gpu_types=job.gpu_types,
                    min_vram_gb=job.min_vram_gb or None,
                    cloud_type=job.cloud_type,
                    spot=job.spot,
                ),
                settings,
            )
            offers = [
                PodOffer(c.gpu_type_id, c.usd_per_gpu_hour)
                for c in self.client.gpus.candidates(prefs, job.gpu_count)
            ]
        prices = load_prices(
            Path(settings.serverless_prices_path) if settings.serverless_prices_path else None
        )
        return PlanContext(has_key, dict(settings.endpoints), prices, offers)

    def plan(self, job: JobSpec, backend: str = "auto") -> Plan:
        return plan(job, self.context(job), backend)  # type: ignore[arg-type]

    def submit(
        self,
        job: JobSpec,
        *,
        backend: str = "auto",
        detach: bool = False,
        on_text: Callable[[str], None] | None = None,
        planned: Plan | None = None,
        job_id: str | None = None,
    ) -> tuple[Plan, JobHandle]:
        """Plan, refuse what is over budget before anything is created, then run it where the plan says."""
        chosen = planned or self.plan(job, backend)
        if chosen.refused and chosen.over_budget:
            raise BudgetExceededError(
                f"Refused before creating anything: {chosen.refused}.",
                cost_usd=chosen.estimated_cost_usd or 0.0,
                cap_usd=job.budget_usd or 0.0,
            )
        if chosen.refused:
            raise ConfigError(f"Cannot run this job: {chosen.refused}.")
        job_id = job_id or new_job_id()
        spec: dict[str, Any] = {"kind": job.kind, "name": job.name, "plan": chosen.backend}
        record = JobRecord(job_id, chosen.backend, "STARTING", name=job.name, spec=spec)
        self.store.put(record)
        handle = JobHandle(self, record)
        try:
            if job.kind == "task":
                self._run_tasks(job, handle, chosen)
            elif chosen.backend == "local":
                self._start_local_command(job, handle, detach, on_text)
            else:
                self._start_pod_command(job, handle, detach, on_text)
        except BaseException as exc:
            if handle.record.status == "STARTING":
                self.store.update(handle.id, status="FAILED", error=str(exc))
                handle.record.status, handle.record.error = "FAILED", str(exc)
            raise
        return chosen, handle

    # --- tasks ---

    def _run_tasks(self, job: JobSpec, handle: JobHandle, chosen: Plan) -> None:
        assert job.task is not None
        from .tasks import load_task_modules

        # A job file's task module sits beside it: importable here and in the workers.
        task_path = job.extra.get("task_path")
        if task_path and task_path not in sys.path:
            sys.path.insert(0, task_path)
        if job.task_module:
            try:
                load_task_modules([job.task_module])
            except ImportError as exc:
                raise ConfigError(str(exc)) from exc
        if chosen.backend == "local":
            from ._http import HttpTransport
            from .endpoint_emulator import LocalEndpoint
            from .serverless import Endpoint

            # Workers import the task module like this process does: from the current dir and our path.
            env = {"PYTHONPATH": os.pathsep.join([p for p in [task_path, os.getcwd(), *sys.path] if p])}
            modules = [job.task_module] if job.task_module else []
            with LocalEndpoint(
                modules, workers=min(2, max(1, len(job.inputs))), slots_per_worker=4, worker_env=env
            ) as local:
                endpoint = Endpoint("local", HttpTransport(None), base_url=local.base_url, store=self.store)
                self._map(job, handle, endpoint)
        else:
            endpoint_id = self.client.config.settings.endpoints.get(
                job.endpoint or job.task, job.endpoint or job.task
            )
            self._map(job, handle, self.client.endpoint(endpoint_id))

    def _map(self, job: JobSpec, handle: JobHandle, endpoint: Any) -> None:
        assert job.task is not None
        try:
            results = list(endpoint.map(job.task, list(job.inputs), batch_id=f"{handle.id}-batch"))
        except JobError as exc:
            self.store.update(handle.id, status="FAILED", error=str(exc))
            handle.record.status, handle.record.error = "FAILED", str(exc)
            raise
        self.store.update(handle.id, status="SUCCEEDED", result=results, endpoint_id=endpoint.endpoint_id)
        handle.record.status = "SUCCEEDED"

    # --- commands ---

    def _command_spec(self, job: JobSpec, handle: JobHandle, root: str, workdir: str) -> PodJobSpec:
        handle.record.spec.update({"root": root, "workdir": workdir, "outputs": list(job.outputs)})
        self.store.update(handle.id, spec=handle.record.spec)
        return PodJobSpec(
            handle.id,
            list(job.command),
            workdir,
            outputs=job.outputs,
            on_finish=job.on_finish if handle.backend == "pod" else "none",  # type: ignore[arg-type]
            heartbeat_s=1.0 if handle.backend == "local" else 10.0,
        )

    def _start_local_command(
        self, job: JobSpec, handle: JobHandle, detach: bool, on_text: Callable[[str], None] | None
    ) -> None:
        root = self.client.config.paths.state_dir / "local" / handle.id / "workspace"
        workdir = root / "work"
        runner = LocalRunner()
        runner.upload(Path(job.workdir or "."), str(workdir))
        status = PodJobs(runner, str(root)).start(self._command_spec(job, handle, str(root), str(workdir)))
        self.store.update(handle.id, status=status.state)
        handle.record.status = status.state
        if not detach:
            handle.wait(on_text, poll_s=0.5)

    def _start_pod_command(
        self, job: JobSpec, handle: JobHandle, detach: bool, on_text: Callable[[str], None] | None
    ) -> None:
        from .pods import PodSpec

        pods = self.client.pods
        result = pods.create(
            PodSpec(
                name=job.name,
                gpu_types=job.gpu_types,
                gpu_count=job.gpu_count,
                min_vram_gb=job.min_vram_gb or None,
                cloud_type=job.cloud_type,
                image=job.image,
                container_disk_gb=job.container_disk_gb,
                volume_gb=job.volume_gb,
                network_volume_id=job.network_volume_id,
                spot=job.spot,
                docker_args=boot_docker_args(self.pod_root),
            )
        )
        pod_id = result.pod.id
        self.store.update(handle.id, pod_id=pod_id)
        handle.record.pod_id = pod_id
        workdir = f"{self.pod_root}/rph/{handle.id}/work"
        try:
            pods.wait_until_ready(pod_id)
            runner = self.client.remote(pod_id)
            runner.upload(Path(job.workdir or "."), workdir)
            status = PodJobs(runner, self.pod_root).start(
                self._command_spec(job, handle, self.pod_root, workdir)
            )
        except RunPodHybridError as exc:
            # The job never started: stop paying for the GPU. Stop, not terminate, keeps the pod for a look.
            pods.stop(pod_id)
            exc.add_note(
                f"The job did not start, so pod {pod_id} was stopped; `rph pods terminate {pod_id} --yes` "
                "removes it."
            )
            raise
        self.store.update(handle.id, status=status.state)
        handle.record.status = status.state
        if detach:
            return
        final = handle.wait(on_text, poll_s=self.pod_poll_s)
        if job.on_finish != "none" and final == "SUCCEEDED":

            def release() -> None:
                if job.on_finish == "stop":
                    pods.stop(pod_id)
                else:
                    pods.terminate(pod_id)

            PodJobs(runner, self.pod_root).collect_and_release(
                handle.id, list(job.outputs), workdir, Path("rph-outputs") / handle.id, release
            )

    # --- lookup ---

    def get(self, job_id: str) -> JobHandle:
        record = self.store.get(job_id)
        if record is None:
            raise NotFoundError(
                f"No job {job_id!r} in the local job store. `rph jobs list` shows recent jobs."
            )
        return JobHandle(self, record)

    def recent(self, limit: int = 20) -> list[JobHandle]:
        return [JobHandle(self, r) for r in self.store.recent(limit=limit) if r.batch_id is None]
