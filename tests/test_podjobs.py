"""Detached jobs through the real runner script: on this machine (LocalRunner) and over a real sshd."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runpod_hybrid.errors import RemoteCommandError
from runpod_hybrid.jobs import DetachedJobs, DetachedJobSpec, parse_nvidia_smi
from runpod_hybrid.remote import LocalRunner

from conftest import eventually
from sshd_pod import SshdPod

SAMPLES = Path(__file__).parent / "data" / "nvidia-smi-samples"

TRAIN = r"""
mkdir -p out
step=$(cat "$RPH_CHECKPOINT_DIR/step" 2>/dev/null || echo 0)
echo "attempt $RPH_ATTEMPT starts at step $step" >> started.txt
while [ "$step" -lt "$STEPS" ]; do
  step=$((step + 1)); echo "$step" > "$RPH_CHECKPOINT_DIR/step"; echo "step $step"
  if [ -n "${HOLD:-}" ] && [ "$step" -eq "$HOLD_STEP" ]; then while [ ! -e "$HOLD" ]; do sleep 0.05; done; fi
done
echo "final $step" > out/result.txt
"""


@pytest.fixture
def local(tmp_path: Path) -> tuple[DetachedJobs, Path]:
    work = tmp_path / "workspace" / "work"
    work.mkdir(parents=True)
    return DetachedJobs(LocalRunner(), str(tmp_path / "workspace")), work


def spec(job_id: str, work: Path, **env: str) -> DetachedJobSpec:
    return DetachedJobSpec(
        job_id, TRAIN, str(work), outputs=("out",), env={"STEPS": "5", **env}, heartbeat_s=0.1
    )


def test_run_to_completion_then_fetch_verified(local: tuple[DetachedJobs, Path], tmp_path: Path) -> None:
    jobs, work = local
    first = jobs.start(spec("train", work))
    assert first.state in ("RUNNING", "SUCCEEDED") and first.attempt == 1
    text: list[str] = []
    final = jobs.follow("train", text.append, poll_s=0.05)
    assert (final.state, final.exit_code, final.attempt) == ("SUCCEEDED", 0, 1)
    assert "step 5" in "".join(text)
    assert jobs.logs("train", tail_lines=1).strip() == "step 5"
    fetched = jobs.fetch("train", ["out"], str(work), tmp_path / "results")
    assert [p.read_text() for p in fetched] == ["final 5\n"]


def test_follow_streams_each_line_as_it_is_written_and_misses_nothing(
    local: tuple[DetachedJobs, Path], tmp_path: Path
) -> None:
    """One streaming session, not a poll: with a minute between polls, the held job's lines still come at
    once; and the catch-up read after the job ends gets the last bytes, each exactly once."""
    import threading

    jobs, work = local
    hold = tmp_path / "release"
    jobs.start(spec("streamed", work, HOLD=str(hold), HOLD_STEP="2", STEPS="3"))
    text: list[str] = []
    ended: list[str] = []
    follower = threading.Thread(
        target=lambda: ended.append(jobs.follow("streamed", text.append, poll_s=60).state), daemon=True
    )
    follower.start()
    eventually(lambda: "step 2" in "".join(text))
    assert jobs.status("streamed").state == "RUNNING" and "step 3" not in "".join(text)
    hold.touch()
    follower.join(timeout=30)
    assert ended == ["SUCCEEDED"]
    assert "".join(text) == "".join(f"step {i}\n" for i in (1, 2, 3))


def test_start_twice_gives_one_process(local: tuple[DetachedJobs, Path], tmp_path: Path) -> None:
    jobs, work = local
    hold = tmp_path / "release"
    job = spec("once", work, HOLD=str(hold), HOLD_STEP="2")
    jobs.start(job)
    again = jobs.start(job)
    assert again.state == "RUNNING" and again.attempt == 1
    hold.touch()
    eventually(lambda: jobs.status("once").finished)
    assert (work / "started.txt").read_text().splitlines() == ["attempt 1 starts at step 0"]


def test_restart_resumes_as_attempt_2_from_the_checkpoint(
    local: tuple[DetachedJobs, Path], tmp_path: Path
) -> None:
    jobs, work = local
    hold = tmp_path / "release"
    jobs.start(spec("resumable", work, HOLD=str(hold), HOLD_STEP="3"))
    eventually(
        lambda: (
            (Path(jobs.checkpoint_dir("resumable")) / "step").exists()
            and (Path(jobs.checkpoint_dir("resumable")) / "step").read_text().strip() == "3"
        )
    )
    # A pod restart: every process dies at once (supervisor and job), the files on /workspace stay.
    job_dir = Path(jobs.job_dir("resumable"))
    pid = job_pid(job_dir)
    supervisor = int((job_dir / "supervisor.pid").read_text())
    os.killpg(supervisor, signal.SIGKILL)
    os.killpg(pid, signal.SIGKILL)
    eventually(lambda: not _alive(pid))
    assert jobs.status("resumable").state == "RUNNING"  # stale: nobody recorded the end
    hold.touch()
    jobs.resume_all()  # the boot step
    final = eventually(lambda: (s := jobs.status("resumable")).finished and s)
    assert (final.state, final.attempt) == ("SUCCEEDED", 2)
    assert (work / "started.txt").read_text().splitlines() == [
        "attempt 1 starts at step 0",
        "attempt 2 starts at step 3",
    ]


def job_pid(job_dir: Path) -> int:
    """The job's pid from the runner's `pid` file ("pid start-time")."""
    return int((job_dir / "pid").read_text().split()[0])


def test_a_live_process_that_reused_the_pid_is_not_taken_for_the_job(
    local: tuple[DetachedJobs, Path], tmp_path: Path
) -> None:
    """A restarted container: the job's processes are gone and its recorded pid now belongs to another live
    process. The boot step must still see the job as dead and resume it."""
    jobs, work = local
    hold = tmp_path / "release"
    jobs.start(spec("reused", work, HOLD=str(hold), HOLD_STEP="2"))
    job_dir = Path(jobs.job_dir("reused"))
    eventually(lambda: (job_dir / "pid").exists() and (Path(jobs.checkpoint_dir("reused")) / "step").exists())
    recorded_pid, recorded_start = (job_dir / "pid").read_text().split()
    os.killpg(int((job_dir / "supervisor.pid").read_text()), signal.SIGKILL)
    os.killpg(int(recorded_pid), signal.SIGKILL)
    eventually(lambda: not _alive(int(recorded_pid)))
    # Pid reuse: the pid written before the restart is now this (live, unrelated) test process's.
    (job_dir / "pid").write_text(f"{os.getpid()} {recorded_start}\n")
    hold.touch()
    jobs.resume_all()
    final = eventually(lambda: (s := jobs.status("reused")).finished and s)
    assert (final.state, final.attempt) == ("SUCCEEDED", 2)
    assert _alive(os.getpid())  # the unrelated process was left alone


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_cancel_kills_the_process_group(local: tuple[DetachedJobs, Path], tmp_path: Path) -> None:
    jobs, work = local
    jobs.start(DetachedJobSpec("forever", "sleep 300 & sleep 300; wait", str(work), heartbeat_s=0.1))
    pid = int(eventually(lambda: (Path(jobs.job_dir("forever")) / "pid").read_text().split()[0]))
    status = jobs.cancel("forever", grace_s=2)
    assert status.state == "CANCELLED"
    assert not _alive(pid)
    assert jobs.start(DetachedJobSpec("forever", "true", str(work))).state == "CANCELLED"  # not restarted


def test_log_rotation_keeps_a_200mb_log_bounded(local: tuple[DetachedJobs, Path]) -> None:
    jobs, work = local
    writer = "i=0; while [ $i -lt 200 ]; do head -c 1048576 /dev/zero | tr '\\0' 'x'; echo; i=$((i+1)); sleep 0.005; done; echo LAST"
    jobs.start(DetachedJobSpec("chatty", writer, str(work), log_max_bytes=20 * 1024 * 1024, heartbeat_s=0.05))
    eventually(lambda: jobs.status("chatty").finished, timeout_s=120)
    job_dir = Path(jobs.job_dir("chatty"))
    on_disk = sum((job_dir / name).stat().st_size for name in ("log", "log.1") if (job_dir / name).exists())
    assert on_disk < 100 * 1024 * 1024
    assert jobs.logs("chatty", tail_lines=1).strip() == "LAST"


def test_outputs_are_fetched_and_verified_before_the_pod_is_released(
    local: tuple[DetachedJobs, Path], tmp_path: Path
) -> None:
    jobs, work = local
    calls: list[str] = []
    runner = jobs.runner
    original = runner.download

    def download(remote: str, local_path: Path, **kwargs: Any) -> Any:
        calls.append(f"download {Path(remote).name}")
        return original(remote, local_path, **kwargs)

    runner.download = download  # type: ignore[method-assign]
    jobs.start(spec("release", work))
    eventually(lambda: jobs.status("release").finished)
    jobs.collect_and_release(
        "release", ["out"], str(work), tmp_path / "got", lambda: calls.append("stop pod")
    )
    assert calls == ["download out", "stop pod"]
    # A corrupted output is never followed by a stop.
    (work / "out" / "result.txt").write_text("tampered")
    calls.clear()
    with pytest.raises(RemoteCommandError, match="does not match"):
        jobs.collect_and_release(
            "release", ["out"], str(work), tmp_path / "again", lambda: calls.append("stop")
        )
    assert "stop" not in calls


def test_nvidia_smi_samples_parse() -> None:
    idle = parse_nvidia_smi((SAMPLES / "idle-noheader-nounits.csv").read_text())
    load = parse_nvidia_smi((SAMPLES / "load-noheader-nounits.csv").read_text())
    assert len(idle) == len(load) == 1
    assert idle[0].name.startswith("NVIDIA H100") and idle[0].util_percent == 0
    assert load[0].util_percent is not None and load[0].util_percent > 50
    assert load[0].power_w is not None and load[0].power_w > idle[0].power_w  # type: ignore[operator]
    assert parse_nvidia_smi("") == ()  # a pod without a GPU


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshdPod]:
    pod = SshdPod(tmp_path_factory.mktemp("jobpod")).setup()
    yield pod
    pod.stop()


def test_job_survives_a_dropped_ssh_connection(sshd: SshdPod, tmp_path: Path) -> None:
    runner = sshd.runner(pod_id="jobs")
    jobs = DetachedJobs(runner, str(sshd.workspace))
    work = sshd.workspace / "w"
    work.mkdir(exist_ok=True)
    hold = tmp_path / "release"
    jobs.start(spec("remote", work, HOLD=str(hold), HOLD_STEP="2"))
    sshd.drop_connections()  # the SSH session that started it is gone
    hold.touch()
    final = eventually(lambda: (s := jobs.status("remote")).finished and s)  # a fresh connection reads it
    assert (final.state, final.attempt) == ("SUCCEEDED", 1)
    assert jobs.fetch("remote", ["out"], str(work), tmp_path / "dl")[0].read_text() == "final 5\n"


FAKE_RUNPODCTL = """#!/bin/sh
echo "$@" >> "$RUNPODCTL_LOG"
"""


@pytest.fixture
def runpodctl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A stand-in `runpodctl` on PATH recording its argv (the real one is preinstalled on pods only)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "runpodctl").write_text(FAKE_RUNPODCTL)
    (bin_dir / "runpodctl").chmod(0o755)
    log = tmp_path / "runpodctl.log"
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("RUNPODCTL_LOG", str(log))
    monkeypatch.setenv("RUNPOD_POD_ID", "pod-under-test")
    return log


def test_unwatched_finish_stops_its_own_pod_but_a_watched_one_leaves_it_to_the_client(
    local: tuple[DetachedJobs, Path], runpodctl: Path
) -> None:
    jobs, work = local
    jobs.start(DetachedJobSpec("unwatched", "true", str(work), on_finish="stop", heartbeat_s=0.1))
    eventually(runpodctl.exists)
    assert runpodctl.read_text() == "stop pod pod-under-test\n"
    runpodctl.unlink()
    jobs.start(DetachedJobSpec("watched", "sleep 0.5", str(work), on_finish="stop", heartbeat_s=0.1))
    assert jobs.follow("watched", lambda _t: None, poll_s=0.05).state == "SUCCEEDED"
    assert not runpodctl.exists()  # the client copies outputs first, then stops the pod itself


def test_dead_man_timer_stops_the_pod_when_heartbeats_stop(
    local: tuple[DetachedJobs, Path], runpodctl: Path
) -> None:
    jobs, work = local
    jobs.start(DetachedJobSpec("stuck", "sleep 300", str(work), heartbeat_s=0.2, idle_stop_s=1))
    job_dir = Path(jobs.job_dir("stuck"))
    os.killpg(int((job_dir / "supervisor.pid").read_text()), signal.SIGKILL)  # heartbeats stop
    eventually(runpodctl.exists, timeout_s=20)
    assert runpodctl.read_text() == "stop pod pod-under-test\n"
    assert "no heartbeat" in jobs.logs("stuck")
    os.killpg(job_pid(job_dir), signal.SIGKILL)
