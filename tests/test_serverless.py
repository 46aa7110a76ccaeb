"""Serverless end to end: our client, RunPod's own clients (`runpod.Endpoint`, `AsyncioEndpoint`) and plain
HTTP as RunPod's curl examples send it, against the local endpoint with RunPod's own worker runtime (real
worker processes)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest

from runpod_hybrid._http import HttpTransport
from runpod_hybrid.config import ApiKey
from runpod_hybrid.errors import ConfigError, JobError, JobExpiredError
from runpod_hybrid.jobs import JobStore
from runpod_hybrid.serverless import Endpoint, LocalEndpoint, task_call
from runpod_hybrid.serverless.client import RateLimiter

from conftest import eventually

TESTS = str(Path(__file__).parent)
WORKER_ENV = {"PYTHONPATH": TESTS}


def client_of(local: LocalEndpoint, ledger: JobStore | None = None) -> Endpoint:
    return Endpoint(
        "local", HttpTransport(ApiKey(local.api_key, "test")), base_url=local.base_url, ledger=ledger
    )


def post(local: LocalEndpoint, route: str, body: Any) -> dict[str, Any]:
    """A request as RunPod's curl examples send it: JSON, and the key as a Bearer token."""
    request = urllib.request.Request(
        f"{local.base_url}/local/{route}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {local.api_key}"},
        method="POST",
    )
    with urllib.request.urlopen(request) as response:
        answer: dict[str, Any] = json.loads(response.read())
    return answer


@pytest.fixture(scope="module")
def local() -> Iterator[LocalEndpoint]:
    with LocalEndpoint(["sample_tasks"], workers=2, slots_per_worker=16, worker_env=WORKER_ENV) as endpoint:
        yield endpoint


@pytest.fixture(scope="module")
def single() -> Iterator[LocalEndpoint]:
    with LocalEndpoint(
        ["sample_single_task"], workers=1, slots_per_worker=4, worker_env=WORKER_ENV
    ) as endpoint:
        yield endpoint


@pytest.fixture
def endpoint(local: LocalEndpoint, tmp_path: Path) -> Endpoint:
    return client_of(local, JobStore(tmp_path / "jobs.db"))


@pytest.fixture
def runpod_client(local: LocalEndpoint) -> Iterator[Any]:
    """RunPod's own client module, pointed at the local endpoint as its docs configure it."""
    import runpod

    runpod.api_key = local.api_key
    runpod.endpoint_url_base = local.base_url
    yield runpod
    runpod.api_key = None


# --- the job shape, through every client ---


def test_runpods_endpoint_natural_call_runs_the_task(runpod_client: Any) -> None:
    """runpod.Endpoint.run() sends a dict without a truthy "input" wrapped in {"input": ...}: our job shape."""
    endpoint = runpod_client.Endpoint("local")
    job = endpoint.run({"task": "square", "value": 12})
    assert job.output(timeout=30) == 144
    assert job.status() == "COMPLETED"
    assert endpoint.run_sync({"task": "square", "value": 5}, timeout=30) == 25
    # The already-wrapped form is sent as it is, and means the same.
    assert endpoint.run({"input": {"task": "square", "value": 3}}).output(timeout=30) == 9


def test_runpods_asyncio_endpoint_as_its_docs_show(runpod_client: Any) -> None:
    import aiohttp

    async def main() -> Any:
        async with aiohttp.ClientSession() as session:
            endpoint = runpod_client.AsyncioEndpoint("local", session)
            job = await endpoint.run({"task": "square", "value": 6})
            assert await job.status() in ("IN_QUEUE", "IN_PROGRESS", "COMPLETED")
            return await job.output(timeout=30)

    assert asyncio.run(main()) == 36


def test_plain_http_as_rundpods_curl_examples(local: LocalEndpoint) -> None:
    body = post(local, "runsync", {"input": {"task": "echo", "value": "hi"}})
    assert body["status"] == "COMPLETED" and body["output"] == "hi" and "delayTime" in body
    request = urllib.request.Request(
        f"{local.base_url}/local/status/{body['id']}", headers={"Authorization": f"Bearer {local.api_key}"}
    )
    with urllib.request.urlopen(request) as response:
        assert json.loads(response.read())["output"] == "hi"


def test_our_client_gets_a_plain_tasks_return_value(endpoint: Endpoint) -> None:
    assert endpoint.call("square", 7) == 49
    job_id = endpoint.run(task_call("square", 8))
    assert endpoint.wait(job_id, first_poll_s=0.05) == 64
    assert endpoint.status(job_id)["output"] == 64  # the job's own output, as any RunPod handler's


def test_a_single_task_worker_runs_any_input_that_names_none(single: LocalEndpoint) -> None:
    import runpod

    assert post(single, "runsync", {"input": 7})["output"] == {"got": 7, "type": "int"}
    assert post(single, "runsync", {"input": {"prompt": "hi"}})["output"]["got"] == {"prompt": "hi"}
    assert post(single, "runsync", {"input": {"task": "describe", "value": "x"}})["output"]["got"] == "x"
    runpod.api_key, runpod.endpoint_url_base = single.api_key, single.base_url
    try:
        assert runpod.Endpoint("local").run_sync({"prompt": "hi"}, timeout=30)["got"] == {"prompt": "hi"}
    finally:
        runpod.api_key = None


def test_a_worker_with_several_tasks_says_how_to_name_one(local: LocalEndpoint) -> None:
    unnamed = post(local, "runsync", {"input": 7})
    assert (
        unnamed["status"] == "FAILED" and "names no task" in unnamed["error"] and "square" in unnamed["error"]
    )
    old_shape = post(local, "runsync", {"input": {"task": "square", "input": 7}})
    assert old_shape["status"] == "FAILED" and 'under "value"' in old_shape["error"]


# --- what tasks return ---


def test_generator_task_streams_and_its_output_is_its_chunks(endpoint: Endpoint) -> None:
    job_id = endpoint.run(task_call("count", 3))
    assert list(endpoint.stream(job_id)) == [{"i": 0}, {"i": 1}, {"i": 2}]
    assert endpoint.wait(job_id) == [{"i": 0}, {"i": 1}, {"i": 2}]


def test_raising_task_fails_with_type_and_traceback(endpoint: Endpoint) -> None:
    job_id = endpoint.run(task_call("boom", "kaput"))
    with pytest.raises(JobError) as info:
        endpoint.wait(job_id, first_poll_s=0.05)
    assert info.value.state == "FAILED"
    assert info.value.error.startswith("RuntimeError: kaput")
    assert "Traceback" in info.value.error and "sample_tasks.py" in info.value.error
    assert "handler.py" not in info.value.error  # the task's frames, not ours


def test_soft_error_fails_with_its_string(endpoint: Endpoint) -> None:
    with pytest.raises(JobError) as info:
        endpoint.call("soft_error", "out of memory, try a smaller batch")
    assert info.value.state == "FAILED" and info.value.error == "out of memory, try a smaller batch"


def test_unknown_task_fails_listing_known_ones(endpoint: Endpoint) -> None:
    with pytest.raises(JobError, match=r"unknown task 'nope'.*square"):
        endpoint.call("nope", 1)


# --- jobs over time ---


def test_cancel_stops_the_running_task(endpoint: Endpoint, tmp_path: Path) -> None:
    beat = tmp_path / "beat"
    job_id = endpoint.run(task_call("spin", {"beat": str(beat), "limit_s": 60}))
    eventually(beat.exists)
    assert endpoint.cancel(job_id)["status"] == "CANCELLED"

    # The worker hears the stop on its long-poll and the task thread is interrupted: the task ends.
    eventually(Path(f"{beat}.ended").exists)
    assert endpoint.status(job_id)["status"] == "CANCELLED"
    assert list(endpoint.stream(job_id)) == []  # the stream ends on CANCELLED too


def test_retry_of_a_failed_job(endpoint: Endpoint, tmp_path: Path) -> None:
    spec = {"marker": str(tmp_path / "marker"), "fail_times": 1, "value": "second time lucky"}
    job_id = endpoint.run(task_call("flaky", spec))
    with pytest.raises(JobError):
        endpoint.wait(job_id, first_poll_s=0.05)
    assert endpoint.retry(job_id)["status"] == "IN_QUEUE"
    assert endpoint.wait(job_id, first_poll_s=0.05) == "second time lucky"
    assert endpoint.status(job_id)["retries"] == 1


def test_health_counts(endpoint: Endpoint) -> None:
    before = endpoint.health()
    endpoint.call("square", 3)
    with pytest.raises(JobError):
        endpoint.call("boom", "x")
    after = endpoint.health()
    assert after["jobs"]["completed"] == before["jobs"]["completed"] + 1
    assert after["jobs"]["failed"] == before["jobs"]["failed"] + 1
    assert after["workers"]["ready"] == 2 and after["workers"]["unhealthy"] == 0


def test_webhook_receives_the_final_status(endpoint: Endpoint) -> None:
    received: list[dict[str, Any]] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *_args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        job_id = endpoint.run(task_call("square", 4), webhook=f"http://127.0.0.1:{server.server_port}/hook")
        eventually(lambda: received)
        assert received[0]["id"] == job_id and received[0]["status"] == "COMPLETED"
        assert received[0]["output"] == 16 and received[0]["input"] == {"task": "square", "value": 4}
    finally:
        server.shutdown()
        server.server_close()


class FakeClock:
    def __init__(self) -> None:
        self.now_s = 0.0

    def __call__(self) -> float:
        return self.now_s


def test_ttl_expiry_then_404_and_purge() -> None:
    clock = FakeClock()
    with LocalEndpoint(["sample_tasks"], workers=0, clock=clock) as idle:
        endpoint = client_of(idle)
        job_id = endpoint.run(task_call("square", 2), policy={"ttl": 5000})
        assert endpoint.status(job_id)["status"] == "IN_QUEUE"
        clock.now_s += 6
        with pytest.raises(JobExpiredError, match="expired"):
            endpoint.status(job_id)
        for i in range(3):
            endpoint.run(task_call("square", i))
        assert endpoint.purge_queue() == {"removed": 3, "status": "completed"}
        assert endpoint.health()["jobs"]["inQueue"] == 0


def test_execution_timeout_times_out_and_stops_the_worker(tmp_path: Path) -> None:
    clock = FakeClock()
    with LocalEndpoint(["sample_tasks"], workers=1, clock=clock, worker_env=WORKER_ENV) as ep:
        endpoint = client_of(ep)
        beat = tmp_path / "beat"
        job_id = endpoint.run(task_call("spin", {"beat": str(beat)}), policy={"executionTimeout": 5000})
        eventually(beat.exists)
        clock.now_s += 6
        ep.tick()
        with pytest.raises(JobError) as info:
            endpoint.wait(job_id, first_poll_s=0.01)
        assert info.value.state == "TIMED_OUT" and "executionTimeout" in str(info.value.error)
        eventually(Path(f"{beat}.ended").exists)  # the worker stopped the task


def test_four_workers_run_in_parallel(tmp_path: Path) -> None:
    with LocalEndpoint(["sample_tasks"], workers=4, worker_env=WORKER_ENV) as ep:
        endpoint = client_of(ep)
        release = tmp_path / "release"
        jobs = [
            endpoint.run(task_call("spin", {"beat": str(tmp_path / f"b{i}"), "until": str(release)}))
            for i in range(4)
        ]
        eventually(lambda: endpoint.health()["workers"]["running"] == 4)
        assert len({endpoint.status(j)["workerId"] for j in jobs}) == 4
        release.touch()
        assert [endpoint.wait(j, first_poll_s=0.05) for j in jobs] == ["released"] * 4


# --- waits that end, workers that cannot start ---


def test_waits_end_when_their_timeout_runs_out_saying_what_health_shows() -> None:
    """No worker ever takes the job: run_sync, wait and a map's timeout still return, with the queue's state."""
    with LocalEndpoint(["sample_tasks"], workers=0) as idle:
        endpoint = client_of(idle)
        with pytest.raises(JobError, match=r"still IN_QUEUE after 1 s \(endpoint local: 1 in queue") as info:
            endpoint.run_sync(task_call("square", 2), wait_s=1)
        assert info.value.state == "PENDING"
        job_id = endpoint.run(task_call("square", 3))
        with pytest.raises(JobError, match="2 in queue"):
            endpoint.wait(job_id, timeout_s=0.5, first_poll_s=0.1)
        with pytest.raises(
            JobError, match=r"0/2 inputs done when its timeout of 1 s ran out.*in queue"
        ) as mapped:
            list(endpoint.map("square", [1, 2], timeout_s=1, batch_size=1))
        assert mapped.value.state == "TIMED_OUT"
        assert endpoint.health()["jobs"]["inQueue"] == 2  # the map cancelled its own jobs


def test_unhealthy_workers_are_named_when_a_map_times_out() -> None:
    with LocalEndpoint(["sample_tasks"], workers=2, worker_env=WORKER_ENV) as ep:
        for pid in ep.worker_pids().values():
            os.killpg(pid, signal.SIGKILL)
        eventually(lambda: client_of(ep).health()["workers"]["unhealthy"] == 2)
        with pytest.raises(JobError, match="1 in queue, 0 in progress; workers: 2 unhealthy"):
            list(client_of(ep).map("square", [1], timeout_s=1))


def test_a_worker_that_cannot_import_its_tasks_fails_the_start_with_its_words(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with pytest.raises(ConfigError) as info:
        LocalEndpoint(["no_such_task_module"], workers=1).start()
    assert "exited with code 3 before taking a job" in str(info.value)
    assert "no_such_task_module" in str(info.value) and "No module named" in str(info.value)
    # What the worker wrote on stderr is in the emulator's log too.
    assert any(
        r.msg == "emulator.worker_stderr" and "no_such_task_module" in getattr(r, "line", "")
        for r in caplog.records
    )


# --- pieces ---


def test_rate_limiter_waits_out_the_window() -> None:
    now = [0.0]
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    limiter = RateLimiter({"cancel": 10}, 10.0, share=1.0, clock=lambda: now[0], sleep=sleep)
    for _ in range(10):
        limiter.acquire("cancel")
    assert waits == []
    limiter.acquire("cancel")
    assert waits == [10.0]
    limiter.acquire("status")  # unlimited routes pass


def test_worker_handler_imports_without_runpod() -> None:
    code = "import sys; from runpod_hybrid.serverless import make_handler; print('runpod' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": TESTS},
    )
    assert out.stdout.strip() == "False"


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    with contextlib.suppress(OSError):
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_stopping_or_killing_workers_leaves_no_heartbeat_process() -> None:
    """RunPod's runtime forks a heartbeat process per worker that pings forever: it must go with its worker."""
    local = LocalEndpoint(["sample_tasks"], workers=2, worker_env=WORKER_ENV).start()
    try:
        pids = list(local.worker_pids().values())
        # The worker's one child once RunPod's runtime is up: its heartbeat process.
        heartbeats = [eventually(lambda p=p: _children(p))[0] for p in pids]
        os.kill(pids[0], signal.SIGKILL)  # a crashed worker
        assert eventually(lambda: not _alive(heartbeats[0]), timeout_s=10)
    finally:
        local.stop()
    assert eventually(lambda: not _alive(heartbeats[1]), timeout_s=10)  # a stopped one
