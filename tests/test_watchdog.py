"""The pod watchdog, for real: a real sshd plays the pod, with a pod-scoped key, a `runpodctl` stand-in on its
PATH and the API stand-in behind both. Deadlines are a few seconds away, and the tests wait for the real
processes (``eventually``), never for a fixed time."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from runpod_hybrid._http import HttpTransport
from runpod_hybrid.config import ApiKey, Settings
from runpod_hybrid.controlplane import GraphQLClient, GraphQLPodApi, SshEndpoint
from runpod_hybrid.pods import Pods, PodSpec, start_command, watchdog_path, watchdog_script
from runpod_hybrid.pods.lifecycle import ARM_REFRESH_S
from runpod_hybrid.remote import SshRunner

from conftest import SENTINEL_KEY, FakeTime, eventually
from rest_standin import RestStandinServer
from runpod_standin import StandinServer
from sshd_pod import SshdPod

RTX4090 = "NVIDIA GeForce RTX 4090"
DEADLINE_S = 8.0  # long enough for the steps before it on a busy 2-core machine


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[SshdPod]:
    pod = SshdPod(tmp_path / "pod").setup()
    yield pod
    pod.stop()  # ends the container's processes too: no watchdog outlives its test


def pods_on(standin: StandinServer, sshd: SshdPod, *, clock: Callable[[], float] = time.monotonic) -> Pods:
    """Pods whose SSH contact goes to the sshd pod (what the facade wires with real SSH endpoints)."""

    def open_runner(pod_id: str, _endpoint: SshEndpoint) -> SshRunner:
        return sshd.runner(pod_id)

    api = GraphQLPodApi(GraphQLClient(HttpTransport(ApiKey(SENTINEL_KEY, "test")), standin.url))
    return Pods(
        api, Settings(), public_key=lambda: "ssh-ed25519 AAAA test", open_runner=open_runner, clock=clock
    )


def played_by(
    standin: StandinServer, sshd: SshdPod, pod_id: str, *, runpodctl: bool = True, rest_url: str | None = None
) -> str:
    """Make the stand-in's pod ``pod_id`` the sshd pod: its SSH route and volume, and in its container env
    the pod's own scoped key, the APIs to call (REST v2 at ``rest_url``, else at a port where nothing
    listens), and (unless told not to) runpodctl on its PATH."""
    standin.state.pods[pod_id].update(
        volumeMountPath=str(sshd.workspace),
        runtime=sshd.pod_runtime(),
    )
    key = standin.state.add_pod_key(pod_id)
    path = os.environ["PATH"]
    sshd.set_container_env(
        {
            "RUNPOD_POD_ID": pod_id,
            "RUNPOD_API_KEY": key,
            "RPH_GRAPHQL_URL": standin.url,
            "RPH_REST_URL": rest_url or f"http://127.0.0.1:{closed_port()}/v2",
            "PATH": f"{sshd.install_runpodctl()}:{path}" if runpodctl else path,
        }
    )
    return key


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def watchdog_status(sshd: SshdPod, pod_id: str) -> dict[str, str]:
    text = sshd.runner(pod_id).exec(["sh", watchdog_path(str(sshd.workspace)), "status"]).check().stdout
    return dict(line.split("=", 1) for line in text.splitlines())


def user_agents(standin: StandinServer) -> list[str]:
    return [headers.get("User-Agent", "") for _path, headers in standin.state.requests]


def stopped(standin: StandinServer, pod_id: str) -> bool:
    return bool(standin.state.pods[pod_id]["desiredStatus"] == "EXITED")


def test_the_watchdog_stops_the_pod_at_its_deadline_through_dropped_ssh_and_a_restart(
    standin: StandinServer, sshd: SshdPod
) -> None:
    pods = pods_on(standin, sshd)
    pod = pods.create(PodSpec(gpu_types=(RTX4090,), max_hours=DEADLINE_S / 3600, boot=":")).pod
    assert pod.tag is not None and pod.tag.deadline is not None
    deadline = pod.tag.deadline
    key = played_by(standin, sshd, pod.id)

    # The first SSH contact (create --wait, a job start) arms it, with the deadline from the pod's name.
    pods.wait_until_ready(pod.id)
    status = watchdog_status(sshd, pod.id)
    assert status == {
        "deadline": str(int(deadline.timestamp())),
        "idle_until": "",
        "busy": "no",
        "running": "yes",
    }

    sshd.drop_connections()  # the SSH session that armed it is gone; the watchdog is not
    assert watchdog_status(sshd, pod.id)["running"] == "yes"

    # A container restart kills every process; our start command re-arms it from the deadline on the volume
    # (the one baked into the command is an hour later: the volume's wins).
    sshd.restart_container(
        start_command(str(sshd.workspace), deadline + timedelta(hours=1), ":", image_start="true")
    )
    assert watchdog_status(sshd, pod.id) == status

    eventually(lambda: stopped(standin, pod.id), timeout_s=DEADLINE_S + 20)
    assert time.time() >= deadline.timestamp()  # not before its deadline
    assert standin.state.keys_used("StopPod") == [key]  # the pod's own key, not the account's
    assert any(agent.startswith("Python-urllib") for agent in user_agents(standin))  # via runpodctl
    eventually(lambda: watchdog_status(sshd, pod.id)["running"] == "no")  # it ends once the pod is stopped
    assert standin.state.calls_of("TerminatePod") == []  # stopped, never deleted: the volume stays


def test_without_runpodctl_it_stops_the_pod_through_rest_v2_with_the_pods_key(
    standin: StandinServer, rest_standin: RestStandinServer, sshd: SshdPod
) -> None:
    pods = pods_on(standin, sshd)
    pod = pods.create(PodSpec(gpu_types=(RTX4090,), max_hours=1)).pod
    key = played_by(standin, sshd, pod.id, runpodctl=False, rest_url=rest_standin.url)
    pods.ssh_endpoint(pod.id)  # first SSH contact: installs and arms it
    guard = sshd.runner(pod.id).exec(["sh", watchdog_path(str(sshd.workspace)), "stop", "a test asked"])
    assert guard.check().exit_code == 0
    assert stopped(standin, pod.id)
    assert standin.state.keys_used("podAction") == [key] and standin.state.calls_of("StopPod") == []
    log = (sshd.workspace / ".rph" / "watchdog.log").read_text()
    assert "stopped through the API (REST v2)" in log and key not in log


def test_when_rest_v2_cannot_stop_it_graphql_does_with_the_pods_key(
    standin: StandinServer, sshd: SshdPod
) -> None:
    pods = pods_on(standin, sshd)
    pod = pods.create(PodSpec(gpu_types=(RTX4090,), max_hours=1)).pod
    key = played_by(standin, sshd, pod.id, runpodctl=False)
    pods.ssh_endpoint(pod.id)  # first SSH contact: installs and arms it
    assert pods.get(pod.id).name.endswith("-wd")  # the name says it was armed, for every client
    guard = sshd.runner(pod.id).exec(["sh", watchdog_path(str(sshd.workspace)), "stop", "a test asked"])
    assert guard.check().exit_code == 0
    assert stopped(standin, pod.id)
    assert standin.state.keys_used("StopPod") == [key]
    assert "runpod-hybrid-watchdog/1" in user_agents(standin)  # curl, with the key read from stdin
    log = (sshd.workspace / ".rph" / "watchdog.log").read_text()
    assert "REST v2 did not stop it" in log and "stopped through the API (GraphQL)" in log and key not in log


def test_every_ssh_contact_re_arms_a_watchdog_that_a_restart_ended(
    standin: StandinServer, sshd: SshdPod
) -> None:
    """Without our start command, a restarted (or stopped and started) container has no watchdog: the next SSH
    contact (here `rph exec`'s, through ssh_endpoint) arms it again, with the deadline in the name. Contacts
    within ARM_REFRESH_S of an arming (those of one job start) do not arm it again."""
    clock = FakeTime()
    pods = pods_on(standin, sshd, clock=clock.clock)
    pod = pods.create(PodSpec(gpu_types=(RTX4090,), max_hours=1)).pod
    played_by(standin, sshd, pod.id)
    pods.ssh_endpoint(pod.id)
    sshd.restart_container()  # the image's own start command: nothing of ours runs
    assert watchdog_status(sshd, pod.id)["running"] == "no"
    pods.ssh_endpoint(pod.id)
    assert watchdog_status(sshd, pod.id)["running"] == "no"  # armed a moment ago by this process
    clock.sleep(ARM_REFRESH_S)
    pods.ssh_endpoint(pod.id)
    assert watchdog_status(sshd, pod.id)["running"] == "yes"


def test_our_start_command_arms_the_watchdog_at_the_first_container_start(
    standin: StandinServer, sshd: SshdPod
) -> None:
    """A job pod: the start command our create sets installs the watchdog on the (empty) volume and arms it,
    with no SSH contact at all."""
    pods = pods_on(standin, sshd)
    root = str(sshd.workspace)
    pod = pods.create(PodSpec(gpu_types=(RTX4090,), max_hours=1, boot=":", volume_mount_path=root)).pod
    assert pod.tag is not None and pod.tag.deadline is not None and pod.tag.watchdog_armed
    played_by(standin, sshd, pod.id)
    sent = standin.state.pods[pod.id]["dockerArgs"]
    assert sent == start_command(root, pod.tag.deadline, ":")
    assert not (sshd.workspace / ".rph").exists()
    sshd.restart_container(sent.replace("exec /start.sh", "exec true"))  # sshd plays RunPod's /start.sh
    assert watchdog_status(sshd, pod.id) == {
        "deadline": str(int(pod.tag.deadline.timestamp())),
        "idle_until": "",
        "busy": "no",
        "running": "yes",
    }
    assert (sshd.workspace / ".rph" / "watchdog.sh").read_bytes() == watchdog_script()


def test_a_container_started_after_its_deadline_gets_a_grace_to_be_re_armed(
    standin: StandinServer, sshd: SshdPod
) -> None:
    """A pod whose deadline was extended while it was stopped starts with the old deadline on its volume: it
    is stopped after the boot grace (1 s here, 600 s by default), not at once, so a client can re-arm it."""
    pods = pods_on(standin, sshd)
    pod = pods.create(PodSpec(gpu_types=(RTX4090,), max_hours=1)).pod
    played_by(standin, sshd, pod.id)
    sshd.set_container_env({**sshd.container_variables(), "RPH_BOOT_GRACE_S": "1"})
    past = datetime.now(UTC) - timedelta(minutes=5)
    (sshd.workspace / ".rph").mkdir()
    (sshd.workspace / ".rph" / f"deadline.{pod.id}").write_text(f"{int(past.timestamp())}\n")
    sshd.restart_container(start_command(str(sshd.workspace), past, None, image_start="true"))
    log = sshd.workspace / ".rph" / "watchdog.log"
    assert "started after its deadline" in log.read_text()
    eventually(lambda: stopped(standin, pod.id), timeout_s=20)


def test_extend_moves_the_deadline_in_the_name_and_on_the_pod(standin: StandinServer, sshd: SshdPod) -> None:
    pods = pods_on(standin, sshd)
    pod = pods.create(PodSpec(gpu_types=(RTX4090,), max_hours=1)).pod
    played_by(standin, sshd, pod.id)
    pods.wait_until_ready(pod.id)
    assert pod.tag is not None and pod.tag.deadline is not None
    guard = pods.extend(pod.id, hours=2)
    assert guard.deadline == pod.tag.deadline + timedelta(hours=2) and guard.warning is None
    assert guard.guards == ("pod watchdog", "client reaper")
    renamed: Any = pods.get(pod.id).tag
    assert renamed.deadline == guard.deadline and renamed.watchdog_armed
    assert watchdog_status(sshd, pod.id) == {
        "deadline": str(int(guard.deadline.timestamp())),
        "idle_until": "",
        "busy": "no",
        "running": "yes",
    }


def watchdog(sshd: SshdPod, pod_id: str, *args: str) -> None:
    sshd.runner(pod_id).exec(["sh", watchdog_path(str(sshd.workspace)), *args]).check()


def test_a_warm_pod_is_stopped_once_idle_past_its_keep_warm_time_and_not_while_a_job_runs(
    standin: StandinServer, sshd: SshdPod
) -> None:
    """The idle stop: a keep-warm job that ends asks for a stop SECONDS later; a job running then keeps the
    pod up, and once it ends the pod stops. The loop reads the files every second here (60 s by default)."""
    pods = pods_on(standin, sshd)
    pod = pods.create(PodSpec(gpu_types=(RTX4090,), max_hours=1)).pod
    played_by(standin, sshd, pod.id)
    sshd.set_container_env({**sshd.container_variables(), "RPH_WATCHDOG_POLL_S": "1"})
    pods.wait_until_ready(pod.id)  # arms it: the deadline is an hour away
    job_status = sshd.workspace / ".rph" / "jobs" / "j-1" / "status"
    job_status.parent.mkdir(parents=True)
    job_status.write_text("state=RUNNING\n")

    watchdog(sshd, pod.id, "idle", "1")
    log = sshd.workspace / ".rph" / "watchdog.log"
    eventually(lambda: "keep-warm time is up but a job runs" in log.read_text(), timeout_s=20)
    assert not stopped(standin, pod.id) and watchdog_status(sshd, pod.id)["busy"] == "yes"

    job_status.write_text("state=SUCCEEDED\n")
    eventually(lambda: stopped(standin, pod.id), timeout_s=20)
    assert "idle since its last job" in log.read_text()
    assert standin.state.calls_of("TerminatePod") == []  # stopped: the volume and the warm files stay


def test_a_job_that_starts_cancels_the_idle_stop(standin: StandinServer, sshd: SshdPod) -> None:
    pods = pods_on(standin, sshd)
    pod = pods.create(PodSpec(gpu_types=(RTX4090,), max_hours=1)).pod
    played_by(standin, sshd, pod.id)
    pods.wait_until_ready(pod.id)
    watchdog(sshd, pod.id, "idle", "900")
    until = int(watchdog_status(sshd, pod.id)["idle_until"])
    assert time.time() + 890 <= until <= time.time() + 900
    watchdog(sshd, pod.id, "busy")
    assert watchdog_status(sshd, pod.id)["idle_until"] == ""
