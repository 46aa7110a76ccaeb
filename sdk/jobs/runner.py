"""Detached long jobs on a pod (or, through a local :class:`CommandRunner`, on this machine).

Each job lives in ``<root>/.rph/jobs/<job_id>/`` with a versioned POSIX ``sh`` runner (``runner.sh``): its
spec, a status file (state, attempt, times, exit code), the pid, a size-bounded combined log and a
heartbeat. The job runs under ``setsid``/``nohup``, so a dropped SSH connection does not touch it; starting
the same job again reports it instead of starting a second process; ``boot.sh`` (run at pod start, before
RunPod's ``/start.sh``) resumes jobs that were running when the pod stopped, as ``attempt + 1``.
"""

from __future__ import annotations

import codecs
import hashlib
import io
import re
import tarfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path

from runpod_hybrid.errors import JobError, JobState, RemoteCommandError
from runpod_hybrid.pods import watchdog_path, watchdog_script
from runpod_hybrid.remote import CommandRunner
from runpod_hybrid.remote.shell import assignment, script, words

from .spec import OnFinish

TERMINAL_STATES = frozenset({"SUCCEEDED", "FAILED", "CANCELLED"})
FOLLOW_SESSION_S = 120  # one log-streaming SSH session lasts at most this long; the next resumes by byte
NVIDIA_QUERY = (
    "index,uuid,name,utilization.gpu,utilization.memory,memory.used,memory.total,temperature.gpu,"
    "power.draw,power.limit"
)
_SAFE_OUTPUT = re.compile(r"^[A-Za-z0-9._/-]+$")


def boot_command(root: str = "/workspace") -> str:
    """What a pod runs at every container start for its jobs: resume those left RUNNING (``PodSpec.boot``)."""
    return words("sh", f"{root.rstrip('/')}/.rph/boot.sh")


@dataclass(frozen=True)
class DetachedJobSpec:
    job_id: str
    command: Sequence[str] | str
    workdir: str
    outputs: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    on_finish: OnFinish = "none"
    log_max_bytes: int = 50 * 1024 * 1024
    heartbeat_s: float = 10.0
    # Dead-man timer: stop the pod when the job has not heartbeat for this long (0: off).
    idle_stop_s: int = 0
    # Where RPH_CHECKPOINT_DIR points; None: a dir of this job's own under the root.
    checkpoint_dir: str | None = None
    # on_finish "keep": the pod watchdog stops the pod this long after the job ends, unless a job runs then.
    keep_warm_s: int = 0

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", self.job_id):
            raise ValueError(f"job id {self.job_id!r}: use letters, digits, '.', '_' and '-' only")
        for output in self.outputs:
            if not _SAFE_OUTPUT.match(output) or output.startswith("/") or ".." in output.split("/"):
                raise ValueError(
                    f"output {output!r} must be a relative path inside the work dir, without spaces"
                )


@dataclass(frozen=True)
class GpuSample:
    index: int
    name: str
    util_percent: float | None
    memory_util_percent: float | None
    memory_used_mib: float | None
    memory_total_mib: float | None
    temperature_c: float | None
    power_w: float | None


@dataclass(frozen=True)
class DetachedJobStatus:
    job_id: str
    state: str
    attempt: int
    started_at: int | None
    finished_at: int | None
    exit_code: int | None
    heartbeat_age_s: int | None
    gpus: tuple[GpuSample, ...] = ()

    @property
    def finished(self) -> bool:
        return self.state in TERMINAL_STATES

    @property
    def job_state(self) -> JobState | None:
        """The runner's state in our vocabulary; None when the runner has no status for the job."""
        if self.state in TERMINAL_STATES:
            return self.state  # type: ignore[return-value]
        return "RUNNING" if self.state in ("RUNNING", "CANCELLING") else None


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None  # "[N/A]" and friends


def parse_nvidia_smi(text: str) -> tuple[GpuSample, ...]:
    """Parse ``nvidia-smi --query-gpu=<NVIDIA_QUERY> --format=csv,noheader,nounits`` (fields joined by ", ")."""
    samples = []
    for line in text.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != 10 or not parts[0].isdigit():
            continue
        samples.append(
            GpuSample(
                int(parts[0]),
                parts[2],
                _number(parts[3]),
                _number(parts[4]),
                _number(parts[5]),
                _number(parts[6]),
                _number(parts[7]),
                _number(parts[8]),
            )
        )
    return tuple(samples)


def _int(value: str | None) -> int | None:
    return int(value) if value and value.lstrip("-").isdigit() else None


class DetachedJobs:
    """Jobs under ``root`` (``/workspace`` on a pod) through a :class:`CommandRunner`."""

    def __init__(
        self, runner: CommandRunner, root: str = "/workspace", *, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        self.runner = runner
        self.root = root.rstrip("/")
        self._sleep = sleep

    def job_dir(self, job_id: str) -> str:
        return f"{self.root}/.rph/jobs/{job_id}"

    def checkpoint_dir(self, job_id: str) -> str:
        return f"{self.root}/.rph/checkpoints/{job_id}"

    def _archive(self, spec: DetachedJobSpec) -> bytes:
        command = spec.command if isinstance(spec.command, str) else "exec " + words(*spec.command)
        user_env = "".join(f"export {assignment(k, v)}\n" for k, v in spec.env.items())
        settings = {
            "RPH_JOB_ID": spec.job_id,
            "RPH_WORKDIR": spec.workdir,
            "RPH_CHECKPOINT_DIR": spec.checkpoint_dir or self.checkpoint_dir(spec.job_id),
            "RPH_OUTPUTS": " ".join(spec.outputs),
            "RPH_ON_FINISH": spec.on_finish,
            "RPH_LOG_MAX_BYTES": str(spec.log_max_bytes),
            "RPH_HEARTBEAT_S": f"{spec.heartbeat_s:g}",
            "RPH_IDLE_STOP_S": str(int(spec.idle_stop_s)),
            "RPH_KEEP_WARM_S": str(int(spec.keep_warm_s)),
            "RPH_POD_GUARD": watchdog_path(self.root),
        }
        spec_env = "".join(assignment(k, v) + "\n" for k, v in settings.items())
        boot = script(
            '#!/bin/sh\nfor d in {root}/.rph/jobs/*/; do\n  [ -f "$d/run.sh" ] && sh "$d/run.sh" resume\ndone\n',
            root=self.root,
        )
        members = {
            f"jobs/{spec.job_id}/run.sh": (
                files("runpod_hybrid.jobs").joinpath("runner.sh").read_bytes(),
                0o700,
            ),
            f"jobs/{spec.job_id}/spec.env": (spec_env.encode(), 0o600),
            f"jobs/{spec.job_id}/command.sh": (f"#!/bin/sh\n{user_env}{command}\n".encode(), 0o700),
            "boot.sh": (boot.encode(), 0o700),
            # The runner stops its pod through the pod watchdog's `stop` (one way to stop a pod, one script).
            "watchdog.sh": (watchdog_script(), 0o700),
        }
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as archive:
            for name, (data, mode) in members.items():
                info = tarfile.TarInfo(name)
                info.size, info.mode, info.mtime = len(data), mode, int(time.time())
                archive.addfile(info, io.BytesIO(data))
        return buffer.getvalue()

    def _run(self, job_id: str, *args: str, timeout_s: float = 120) -> str:
        result = self.runner.exec(["sh", f"{self.job_dir(job_id)}/run.sh", *args], timeout_s=timeout_s)
        return result.check(f"runner {args[0]} of job {job_id}").stdout

    def start(self, spec: DetachedJobSpec) -> DetachedJobStatus:
        """Install the runner and start the job detached, in one SSH round trip; a job already running (or
        ended) is reported, not installed or started again."""
        install_and_start = script(
            'case "$(sed -n "s/^state=//p" {job}/status 2>/dev/null)" in\n'
            "  RUNNING | SUCCEEDED | FAILED | CANCELLED) ;;\n"
            "  *) mkdir -p {rph} && tar -C {rph} -xf - && sh {job}/run.sh start > /dev/null || exit 3 ;;\n"
            "esac\n",
            job=self.job_dir(spec.job_id),
            rph=f"{self.root}/.rph",
        )
        result = self.runner.exec(
            install_and_start + self._status_script(spec.job_id), stdin=self._archive(spec)
        )
        return self._parse_status(spec.job_id, result.check(f"starting job {spec.job_id}").stdout)

    def resume_all(self) -> None:
        """What the pod's boot step does: restart jobs left RUNNING by a stop or a spot interruption."""
        self.runner.exec(["sh", f"{self.root}/.rph/boot.sh"]).check("boot step")

    def status(self, job_id: str) -> DetachedJobStatus:
        return self._parse_status(job_id, self.runner.exec(self._status_script(job_id)).stdout)

    def _status_script(self, job_id: str) -> str:
        return script(
            "cat {job}/status 2>/dev/null; echo heartbeat=$(cat {job}/heartbeat 2>/dev/null); "
            "echo now=$(date +%s); echo ---; "
            "nvidia-smi --query-gpu={query} --format=csv,noheader,nounits 2>/dev/null || true",
            job=self.job_dir(job_id),
            query=NVIDIA_QUERY,
        )

    @staticmethod
    def _parse_status(job_id: str, text: str) -> DetachedJobStatus:
        head, _, gpu_text = text.partition("---\n")
        values = dict(line.split("=", 1) for line in head.splitlines() if "=" in line)
        heartbeat, now = _int(values.get("heartbeat")), _int(values.get("now"))
        return DetachedJobStatus(
            job_id=job_id,
            state=values.get("state", "UNKNOWN"),
            attempt=_int(values.get("attempt")) or 0,
            started_at=_int(values.get("started_at")),
            finished_at=_int(values.get("finished_at")),
            exit_code=_int(values.get("exit_code")),
            heartbeat_age_s=now - heartbeat if heartbeat is not None and now is not None else None,
            gpus=parse_nvidia_smi(gpu_text),
        )

    def logs(self, job_id: str, *, tail_lines: int = 200) -> str:
        command = script(
            "tail -n {lines} {log} 2>/dev/null || true",
            lines=int(tail_lines),
            log=f"{self.job_dir(job_id)}/log",
        )
        return self.runner.exec(command).stdout

    def follow(
        self, job_id: str, on_text: Callable[[str], None], *, poll_s: float = 2.0
    ) -> DetachedJobStatus:
        """Stream the log until the job ends; returns its final status. The pod streams it over one SSH
        session at a time (``run.sh follow``), so each line comes as it is written; after each session a
        read of what is left catches up exactly, by byte. A session that fails (a dropped connection) is
        retried ``poll_s`` later. While we watch (``follow`` marks it on the pod), the runner leaves the
        on-finish stop to us (we copy and verify outputs first)."""
        directory = self.job_dir(job_id)
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        received = 0

        def take(stream: str, data: bytes) -> None:
            nonlocal received
            if stream == "stdout" and data:
                received += len(data)
                if text := decoder.decode(data):
                    on_text(text)

        try:
            while True:
                session = self.runner.exec(
                    ["sh", f"{directory}/run.sh", "follow", str(received + 1), str(FOLLOW_SESSION_S)],
                    on_output=take,
                    timeout_s=FOLLOW_SESSION_S + 60,
                )
                status = self.status(job_id)
                self.runner.exec(
                    script(
                        "tail -c +{start} {log} 2>/dev/null || true",
                        start=received + 1,
                        log=f"{directory}/log",
                    ),
                    on_output=take,
                )
                if status.finished:
                    return status
                if session.exit_code != 0:
                    self._sleep(poll_s)
        finally:
            self.runner.exec(["rm", "-f", f"{directory}/client-watching"])

    def cancel(self, job_id: str, *, grace_s: int = 10) -> DetachedJobStatus:
        """SIGTERM the job's process group, SIGKILL after ``grace_s``; records CANCELLED."""
        self._run(job_id, "cancel", str(int(grace_s)), timeout_s=grace_s + 60)
        return self.status(job_id)

    def fetch(self, job_id: str, spec_outputs: Sequence[str], workdir: str, dest: Path) -> list[Path]:
        """Download the declared outputs (path-safe) and verify them against the runner's checksums."""
        sums = self.runner.exec(
            script("cat {sums} 2>/dev/null", sums=self.job_dir(job_id) + "/outputs.sha256")
        ).stdout
        expected = {
            line.split(None, 1)[1].strip().removeprefix("./"): line.split(None, 1)[0]
            for line in sums.splitlines()
            if len(line.split(None, 1)) == 2
        }
        if spec_outputs and not expected:
            raise JobError(
                f"Job {job_id} has no output checksums yet: it has not finished, or wrote no outputs.",
                job_id=job_id,
                state="RUNNING",
            )
        fetched: list[Path] = []
        for output in spec_outputs:
            self.runner.download(f"{workdir}/{output}", dest / output)
        for rel, digest in expected.items():
            local = dest / rel
            if not local.is_file() or hashlib.sha256(local.read_bytes()).hexdigest() != digest:
                raise RemoteCommandError(
                    f"Output {rel} of job {job_id} does not match the checksum the runner "
                    "recorded; it was not stopped. Fetch again before stopping the pod."
                )
            fetched.append(local)
        return fetched

    def collect_and_release(
        self, job_id: str, outputs: Sequence[str], workdir: str, dest: Path, release: Callable[[], None]
    ) -> list[Path]:
        """On finish: copy the outputs, verify them, and only then stop or terminate the pod (``release``)."""
        status = self.status(job_id)
        if not status.finished:
            raise JobError(
                f"Job {job_id} is {status.state}; outputs are collected once it ends.",
                job_id=job_id,
                state=status.job_state or "RUNNING",
            )
        fetched = self.fetch(job_id, outputs, workdir, dest)
        release()
        return fetched
