"""The hybrid core end to end on the local backend: `rph plan` / `rph run` / `rph jobs` as real processes."""

from __future__ import annotations

import getpass
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from runpod_hybrid import RunPod
from runpod_hybrid.config import Settings, load_config
from runpod_hybrid.controlplane import GraphQLClient, GraphQLPodApi, NameTag
from runpod_hybrid.errors import BudgetExceededError, PodNotReadyError
from runpod_hybrid.jobs import Jobs, JobSpec, JobStore, Observation, PodCommandBackend, PodOffer
from runpod_hybrid.pods import Pods
from runpod_hybrid.remote import CommandRunner

from conftest import SENTINEL_KEY, FakeTime, eventually
from runpod_standin import StandinServer
from sshd_pod import SshdPod

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture
def env(isolated_home: Path) -> dict[str, str]:
    variables = {**os.environ, "HOME": str(isolated_home)}
    variables.pop("RUNPOD_API_KEY", None)
    return variables


def rph(*argv: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runpod_hybrid.cli", *argv],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=180,
        check=False,
    )


@pytest.mark.parametrize(
    ("example", "reason"),
    [
        ("hash_texts", "local process pool"),
        ("train", "pod job runner in a sandbox dir"),
    ],
)
def test_plan_of_each_example_without_a_key(
    example: str, reason: str, env: dict[str, str], tmp_path: Path
) -> None:
    out = rph("--json", "plan", str(EXAMPLES / example / "job.toml"), env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    plan = json.loads(out.stdout)
    assert plan["backend"] == "local"
    assert any("no RunPod API key" in r for r in plan["reasons"]) and any(
        reason in r for r in plan["reasons"]
    )
    assert {a["backend"] for a in plan["alternatives"]} == {"serverless", "pod"}


def test_run_the_batch_example_locally(env: dict[str, str], tmp_path: Path) -> None:
    out = rph("--json", "run", str(EXAMPLES / "hash_texts" / "job.toml"), env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    payload = json.loads(out.stdout)
    texts = [json.loads(line) for line in (EXAMPLES / "hash_texts" / "texts.jsonl").read_text().splitlines()]
    assert payload["state"] == "SUCCEEDED" and payload["backend"] == "local"
    assert [r["text"] for r in payload["results"]] == texts  # one result per input, in order
    assert all(r["dim"] == 256 and r["buckets"] for r in payload["results"])


def test_run_the_training_example_locally(env: dict[str, str], tmp_path: Path) -> None:
    out = rph("run", str(EXAMPLES / "train" / "job.toml"), env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "step 300 loss" in out.stdout and "outputs (verified)" in out.stdout
    job_id = out.stdout.split("job ")[-1].split(":")[0]
    model = json.loads((tmp_path / "rph-outputs" / job_id / "out" / "model.json").read_text())
    assert model["steps"] == 300 and model["final_loss"] < 0.05
    status = json.loads(rph("--json", "jobs", "status", job_id, env=env, cwd=tmp_path).stdout)
    assert status["state"] == "SUCCEEDED"
    listed = json.loads(rph("--json", "jobs", "list", env=env, cwd=tmp_path).stdout)
    assert job_id in [j["id"] for j in listed]


def test_cancel_a_detached_local_command_job(env: dict[str, str], tmp_path: Path) -> None:
    job = tmp_path / "job.toml"
    (tmp_path / "work").mkdir()
    job.write_text('[command]\nargv = ["sh", "-c", "echo started; sleep 300"]\nworkdir = "work"\n')
    out = rph("--json", "run", "--detach", str(job), env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    job_id = json.loads(out.stdout)["job_id"]
    eventually(lambda: "started" in rph("jobs", "logs", job_id, env=env, cwd=tmp_path).stdout)
    cancelled = json.loads(rph("--json", "jobs", "cancel", job_id, env=env, cwd=tmp_path).stdout)
    assert cancelled["state"] == "CANCELLED"
    assert (
        json.loads(rph("--json", "jobs", "status", job_id, env=env, cwd=tmp_path).stdout)["state"]
        == "CANCELLED"
    )


class RecordingBackend:
    """A backend that only notes what it was asked to start (the budget test must see nothing started)."""

    def __init__(self) -> None:
        self.started: list[str] = []

    def start(self, job: JobSpec, record: object, events: object) -> Observation:
        self.started.append(job.name)
        return Observation("RUNNING")


def test_over_budget_is_refused_before_anything_is_created(tmp_path: Path) -> None:
    backend = RecordingBackend()
    store = JobStore(tmp_path / "jobs.db")
    jobs = Jobs(
        store,
        Settings(),
        has_api_key=True,
        backends={("command", "pod"): backend},  # type: ignore[dict-item]
        pod_offers=lambda _job: [PodOffer("NVIDIA GeForce RTX 4090", 0.69)],
    )
    job = JobSpec.for_command(["python", "train.py"], expected_runtime_s=3600.0, budget_usd=0.10)
    with pytest.raises(BudgetExceededError, match=r"over the job's budget of \$0\.1000"):
        jobs.submit(job)
    assert backend.started == [] and store.recent() == []


def pod_jobs(
    rp: RunPod,
    pods: Pods,
    root: str,
    poll_s: float,
    *,
    warm: bool = False,
    remote: Callable[[str], CommandRunner] | None = None,
) -> Jobs:
    """Jobs whose only backend is the pod backend, on our own pods resource, pod root and SSH (``remote``,
    else the client's), and with ``warm`` the running pods of ours the planner may reuse, as the facade
    wires them."""
    return Jobs(
        rp.job_store,
        rp.config.settings,
        has_api_key=True,
        backends={("command", "pod"): PodCommandBackend(pods, remote or rp.remote, root=root, poll_s=poll_s)},
        pod_offers=lambda _job: [],
        warm_pods=(lambda job: pods.warm(job.pod)) if warm else (lambda _job: []),
    )


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshdPod]:
    pod = SshdPod(tmp_path_factory.mktemp("runpod")).setup()
    yield pod
    pod.stop()


@pytest.mark.skipif(getpass.getuser() != "root", reason="RunPod pods are entered as root")
def test_run_a_command_job_on_a_pod_end_to_end(
    standin: StandinServer,
    sshd: SshdPod,
    isolated_home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The pod backend against the API stand-in and a real sshd: create (a start command that arms the pod
    watchdog and resumes jobs, a deadline from max_runtime_s), wait, upload, run the job under the runner
    (dead-man stop on), fetch and verify outputs, and only then stop the pod."""
    standin.state.new_pod_runtime = sshd.pod_runtime()
    settings = isolated_home / "settings.toml"
    settings.write_text(f'ssh_key_path = "{sshd.client_key}"\n')
    config = load_config(SENTINEL_KEY, env={"RPH_CONFIG": str(settings)}, home=isolated_home)
    rp = RunPod(config=config, graphql_url=standin.url)
    jobs = pod_jobs(rp, rp.pods, str(sshd.workspace), 0.2)
    work = tmp_path / "project"
    work.mkdir()
    (work / "train.sh").write_text(
        'mkdir -p out && echo "trained on attempt $RPH_ATTEMPT" > out/result.txt\n'
    )
    monkeypatch.chdir(tmp_path)
    job = JobSpec.for_command(
        ["sh", "train.sh"],
        workdir=str(work),
        outputs=("out",),
        on_finish="stop",
        gpu_types=("NVIDIA RTX A4000",),
        max_runtime_s=600,
    )
    created_after = datetime.now(UTC)
    outputs = jobs.run(job)
    [handle] = jobs.list()
    assert handle.backend == "pod" and handle.status() == "SUCCEEDED"
    assert outputs == [tmp_path / "rph-outputs" / handle.id / "out" / "result.txt"]
    [create] = standin.state.calls_of("CreateOnDemandPod")
    assert "watchdog.sh boot" in create["input"]["dockerArgs"] and "boot.sh" in create["input"]["dockerArgs"]
    tag = NameTag.split(create["input"]["name"])
    assert tag is not None and tag[1].watchdog_armed and tag[1].deadline is not None
    # The job's max_runtime_s plus 30 minutes for what surrounds the run (pull, upload, fetch).
    expected = created_after + timedelta(seconds=600 + 1800)
    assert timedelta(0) <= tag[1].deadline - expected.replace(microsecond=0) <= timedelta(seconds=30)
    spec_env = (sshd.workspace / ".rph" / "jobs" / handle.id / "spec.env").read_text()
    assert "RPH_IDLE_STOP_S=900" in spec_env  # the runner's dead-man stop is on
    assert (
        tmp_path / "rph-outputs" / handle.id / "out" / "result.txt"
    ).read_text() == "trained on attempt 1\n"
    assert [c["input"]["podId"] for c in standin.state.calls_of("StopPod")] == [handle.record.pod_id]


def test_store_reconciles_after_the_cli_is_killed(env: dict[str, str], tmp_path: Path) -> None:
    """`rph run` dies mid-job; the detached job finishes anyway and `rph jobs status` reads the truth."""
    (tmp_path / "work").mkdir()
    release = tmp_path / "release"
    job = tmp_path / "job.toml"
    job.write_text(
        f'[command]\nargv = ["sh", "-c", "while [ ! -e {release} ]; do sleep 0.05; done; echo done"]\n'
        'workdir = "work"\n'
    )
    cli = subprocess.Popen(
        [sys.executable, "-m", "runpod_hybrid.cli", "run", str(job)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

    def listed_jobs() -> list[dict[str, str]]:
        out = rph("--json", "jobs", "list", env=env, cwd=tmp_path)
        assert out.returncode == 0, out.stderr  # the store is shared with the running `rph run`
        return list(json.loads(out.stdout))

    listed = eventually(listed_jobs)
    cli.kill()
    cli.wait()
    job_id = listed[0]["id"]
    release.touch()
    eventually(
        lambda: (
            json.loads(rph("--json", "jobs", "status", job_id, env=env, cwd=tmp_path).stdout)["state"]
            == "SUCCEEDED"
        )
    )
    assert "done" in rph("jobs", "logs", job_id, env=env, cwd=tmp_path).stdout


def test_a_pod_whose_job_cannot_start_is_stopped(
    standin: StandinServer, isolated_home: Path, tmp_path: Path
) -> None:
    """Readiness fails (the container crash loops): the new pod is stopped at once, not left billing."""
    standin.state.new_pod_runtime = {"uptimeInSeconds": 0, "ports": None, "gpus": [], "container": None}
    rp = RunPod(config=load_config(SENTINEL_KEY, env={}, home=isolated_home), graphql_url=standin.url)
    fake_time = FakeTime()  # the pods resource waits on our clock: time passes without waiting
    pods = Pods(
        GraphQLPodApi(GraphQLClient(rp.transport, standin.url)),
        rp.config.settings,
        public_key=lambda: "ssh-ed25519 AAAA test",
        sleep=fake_time.sleep,
        clock=fake_time.clock,
    )
    jobs = pod_jobs(rp, pods, "/workspace", 5.0)
    (tmp_path / "w").mkdir()
    job = JobSpec.for_command(["true"], workdir=str(tmp_path / "w"), gpu_types=("NVIDIA RTX A4000",))
    with pytest.raises(PodNotReadyError) as info:
        jobs.submit(job)
    [pod_id] = list(standin.state.pods)
    assert "crash" in str(info.value) and f"pod {pod_id} was stopped" in " ".join(info.value.__notes__)
    assert [c["input"]["podId"] for c in standin.state.calls_of("StopPod")] == [pod_id]
    [record] = rp.job_store.recent()
    assert record.state == "FAILED" and f"pod {pod_id} was stopped" in (record.error or "")


MAP_SCRIPT = """
from runpod_hybrid import RunPod, task


@task
def double(x: int) -> int:
    return 2 * x


if __name__ == "__main__":
    print(RunPod().jobs.map(double, [1, 2, 3]))
"""


def test_hybrid_map_from_a_script_runs_its_task_in_real_workers(env: dict[str, str], tmp_path: Path) -> None:
    script = tmp_path / "go.py"
    script.write_text(MAP_SCRIPT)
    out = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[2, 4, 6]"
