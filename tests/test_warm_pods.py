"""Jobs on a pod we already have: named (``pod=``) or chosen warm by the planner. Against the API stand-in and a
real sshd playing the pod (its /workspace a temp dir): the work dir is synced with rsync (only what changed),
each job has its own job dir, outputs are fetched and verified, and the pod stays up with its idle stop set."""

from __future__ import annotations

import getpass
import os
from pathlib import Path

import pytest
from test_jobs import pod_jobs
from test_watchdog import played_by, pods_on, sshd  # noqa: F401 - sshd is a fixture

from runpod_hybrid import RunPod
from runpod_hybrid.config import load_config
from runpod_hybrid.errors import ConfigError
from runpod_hybrid.jobs import Jobs, JobSpec
from runpod_hybrid.pods import Pods, PodSpec
from runpod_hybrid.remote import CommandRunner

from conftest import SENTINEL_KEY
from runpod_standin import StandinServer
from sshd_pod import SshdPod

A4000 = "NVIDIA RTX A4000"
TRAIN = 'mkdir -p out && cat data.txt > out/result.txt && echo "$RPH_JOB_ID" >> runs.txt\n'

pytestmark = pytest.mark.skipif(getpass.getuser() != "root", reason="RunPod pods are entered as root")


def facade(standin: StandinServer, sshd: SshdPod, home: Path) -> tuple[Jobs, Pods]:  # noqa: F811
    """Jobs and pods as the client wires them, warm pods included, with SSH that sees the sshd pod's
    container env (the watchdog needs its RUNPOD_POD_ID) as on a real pod; each SSH contact arms the pod's
    watchdog, as the client's does."""
    config = load_config(SENTINEL_KEY, env={}, home=home)
    pods = pods_on(standin, sshd)

    def remote(pod_id: str) -> CommandRunner:
        pods.ssh_endpoint(pod_id)
        return sshd.runner(pod_id)

    rp = RunPod(config=config, graphql_url=standin.url)
    return pod_jobs(rp, pods, str(sshd.workspace), 0.2, warm=True, remote=remote), pods


def project(tmp_path: Path) -> Path:
    work = tmp_path / "project"
    work.mkdir()
    (work / "train.sh").write_text(TRAIN)
    (work / "data.txt").write_text("v1")
    (work / "weights.bin").write_bytes(os.urandom(1 << 20))
    return work


def command_job(work: Path, **options: object) -> JobSpec:
    return JobSpec.for_command(
        ["sh", "train.sh"], workdir=str(work), outputs=("out",), gpu_types=(A4000,), name="iterate", **options
    )


def test_jobs_on_a_pod_of_ours_sync_only_what_changed_share_it_and_leave_it_up(
    standin: StandinServer,
    sshd: SshdPod,  # noqa: F811 - the fixture
    isolated_home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    jobs, pods = facade(standin, sshd, isolated_home)
    pod = pods.create(PodSpec(gpu_types=(A4000,), max_hours=1, volume_mount_path=str(sshd.workspace))).pod
    played_by(standin, sshd, pod.id)
    work = project(tmp_path)
    monkeypatch.chdir(tmp_path)

    [first] = jobs.run(command_job(work), pod=pod.id)
    assert first.read_text() == "v1"
    [weights] = sshd.workspace.glob("rph/work/*/weights.bin")
    sent = weights.stat().st_ino
    (work / "data.txt").write_text("v2")
    [second] = jobs.run(command_job(work), pod=pod.id)
    assert second.read_text() == "v2" and first != second  # each job's outputs are its own

    assert weights.stat().st_ino == sent  # unchanged: not sent again
    handles = jobs.list()
    assert (weights.parent / "runs.txt").read_text().split() == [h.id for h in reversed(handles)]  # one tree
    assert {d.name for d in (sshd.workspace / ".rph" / "jobs").iterdir()} == {h.id for h in handles}
    assert {h.record.pod_id for h in handles} == {pod.id}
    # The pod stays up, warm: no stop, no other pod, and its watchdog stops it 15 idle minutes from now.
    assert standin.state.pods[pod.id]["desiredStatus"] == "RUNNING"
    assert standin.state.calls_of("StopPod") == [] and standin.state.calls_of("TerminatePod") == []
    assert len(standin.state.calls_of("CreateOnDemandPod")) == 1
    [warm] = pods.warm(pod.id)
    assert warm.busy is False and warm.idle_left_s is not None and 14 * 60 < warm.idle_left_s <= 15 * 60


def test_a_pod_that_cannot_run_the_job_is_refused_before_anything_runs(
    standin: StandinServer,
    sshd: SshdPod,  # noqa: F811 - the fixture
    isolated_home: Path,
    tmp_path: Path,
) -> None:
    jobs, pods = facade(standin, sshd, isolated_home)
    pod = pods.create(PodSpec(gpu_types=(A4000,), max_hours=1, volume_mount_path=str(sshd.workspace))).pod
    played_by(standin, sshd, pod.id)
    theirs = standin.state.add_pod(name="notebook")["id"]
    work = project(tmp_path)
    with pytest.raises(ConfigError, match=r"has 1 GPU\(s\) and the job asks for 2"):
        jobs.submit(command_job(work, gpu_count=2), pod=pod.id)
    with pytest.raises(ConfigError, match="runpod-hybrid did not make it"):
        jobs.submit(command_job(work), pod=theirs)
    pods.stop(pod.id)
    with pytest.raises(ConfigError, match=rf"it is EXITED \(`rph pods start {pod.id}`"):
        jobs.submit(command_job(work), pod=pod.id)
    assert jobs.list() == [] and not (sshd.workspace / "rph").exists()
    assert not (sshd.workspace / ".rph" / "jobs").exists()


def test_the_planner_reuses_a_warm_pod_that_fits_and_says_what_it_saves(
    standin: StandinServer,
    sshd: SshdPod,  # noqa: F811 - the fixture
    isolated_home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A job that keeps its pod warm (on_finish keep, idle_stop_min): the next job that fits runs there, no
    new pod; one that does not fit (another GPU type) gets a new pod."""
    standin.state.new_pod_runtime = sshd.pod_runtime()
    standin.state.next_pod_ids.append("warmpod0000001")
    sshd.set_container_env({"RUNPOD_POD_ID": "warmpod0000001", "PATH": os.environ["PATH"]})
    jobs, pods = facade(standin, sshd, isolated_home)
    work = project(tmp_path)
    monkeypatch.chdir(tmp_path)
    keep = command_job(work, on_finish="keep", idle_stop_min=5, max_runtime_s=600)

    assert jobs.plan(keep).details.get("pod_id") is None  # nothing warm yet: a new pod
    jobs.run(keep)
    [created] = [c["input"] for c in standin.state.calls_of("CreateOnDemandPod")]
    [pod_id] = {h.record.pod_id for h in jobs.list()}
    [warm] = pods.warm(pod_id)
    assert warm.busy is False and warm.idle_left_s is not None and 4 * 60 < warm.idle_left_s <= 5 * 60

    plan = jobs.plan(keep)
    assert plan.backend == "pod" and plan.details["pod_id"] == pod_id and plan.estimated_start_s < 10
    assert plan.details["saved_boot_s"] == 180 and plan.details["saved_usd"] > 0
    assert any("no pod boot: saves ~180 s" in reason for reason in plan.reasons)
    assert any(alt.backend == "pod" and alt.estimated_start_s == 180 for alt in plan.alternatives)
    jobs.run(keep)
    assert len(standin.state.calls_of("CreateOnDemandPod")) == 1 and A4000 in str(created)
    assert standin.state.pods[pod_id]["desiredStatus"] == "RUNNING"

    other_gpu = JobSpec.for_command(["sh", "train.sh"], workdir=str(work), gpu_types=("NVIDIA A40",))
    assert jobs.plan(other_gpu).details.get("pod_id") is None
