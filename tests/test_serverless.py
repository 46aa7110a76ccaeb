"""Serverless end to end: our client and RunPod's own worker runtime (real worker processes) through the
local endpoint emulator."""

from __future__ import annotations

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
from runpod_hybrid.errors import JobError, JobExpiredError
from runpod_hybrid.jobs import JobStore
from runpod_hybrid.serverless import BatchProgress, Endpoint, LocalEndpoint, MapFailure
from runpod_hybrid.serverless.client import RateLimiter

from conftest import eventually

TESTS = str(Path(__file__).parent)
WORKER_ENV = {"PYTHONPATH": TESTS}


@pytest.fixture(scope="module")
def local() -> Iterator[LocalEndpoint]:
    with LocalEndpoint(["sample_tasks"], workers=2, slots_per_worker=16, worker_env=WORKER_ENV) as endpoint:
        yield endpoint


@pytest.fixture
def endpoint(local: LocalEndpoint, tmp_path: Path) -> Endpoint:
    return Endpoint(
        "local", HttpTransport(None), base_url=local.base_url, ledger=JobStore(tmp_path / "jobs.db")
    )


def test_plain_task(endpoint: Endpoint) -> None:
    assert endpoint.call("square", 7) == 49


def test_generator_task_streams_and_the_stream_ends(endpoint: Endpoint) -> None:
    job_id = endpoint.run({"task": "count", "input": 3})
    assert list(endpoint.stream(job_id)) == [{"i": 0}, {"i": 1}, {"i": 2}]
    assert endpoint.status(job_id)["output"] == [{"i": 0}, {"i": 1}, {"i": 2}]


def test_raising_task_fails_with_type_and_traceback(endpoint: Endpoint) -> None:
    job_id = endpoint.run({"task": "boom", "input": "kaput"})
    with pytest.raises(JobError) as info:
        endpoint.wait(job_id, first_poll_s=0.05)
    assert info.value.state == "FAILED"
    assert info.value.error.startswith("RuntimeError: kaput")
    assert "Traceback" in info.value.error and "sample_tasks.py" in info.value.error


def test_soft_error_fails_with_its_string(endpoint: Endpoint) -> None:
    with pytest.raises(JobError) as info:
        endpoint.call("soft_error", "out of memory, try a smaller batch")
    assert info.value.state == "FAILED" and info.value.error == "out of memory, try a smaller batch"


def test_unknown_task_fails_listing_known_ones(endpoint: Endpoint) -> None:
    with pytest.raises(JobError, match="unknown task 'nope'"):
        endpoint.call("nope", 1)


def test_cancel_stops_the_running_task(endpoint: Endpoint, tmp_path: Path) -> None:
    beat = tmp_path / "beat"
    job_id = endpoint.run({"task": "spin", "input": {"beat": str(beat), "limit_s": 60}})
    eventually(beat.exists)
    assert endpoint.cancel(job_id)["status"] == "CANCELLED"

    # The worker hears the stop on its long-poll and the task thread is interrupted: the task ends.
    eventually(Path(f"{beat}.ended").exists)
    assert endpoint.status(job_id)["status"] == "CANCELLED"
    assert list(endpoint.stream(job_id)) == []  # the stream ends on CANCELLED too


def test_retry_of_a_failed_job(endpoint: Endpoint, tmp_path: Path) -> None:
    spec = {"marker": str(tmp_path / "marker"), "fail_times": 1, "value": "second time lucky"}
    job_id = endpoint.run({"task": "flaky", "input": spec})
    with pytest.raises(JobError):
        endpoint.wait(job_id, first_poll_s=0.05)
    assert endpoint.retry(job_id)["status"] == "IN_QUEUE"
    assert endpoint.wait(job_id, first_poll_s=0.05) == ["second time lucky"]
    assert endpoint.status(job_id)["retries"] == 1


def test_health_counts(endpoint: Endpoint, local: LocalEndpoint) -> None:
    before = endpoint.health()
    endpoint.call("square", 3)
    with pytest.raises(JobError):
        endpoint.call("boom", "x")
    after = endpoint.health()
    assert after["jobs"]["completed"] == before["jobs"]["completed"] + 1
    assert after["jobs"]["failed"] == before["jobs"]["failed"] + 1
    assert after["workers"]["ready"] == 2 and after["workers"]["unhealthy"] == 0


def test_runpods_own_client_works_unchanged(local: LocalEndpoint) -> None:
    """runpod.Endpoint, driven as RunPod's docs show, with only the base URL swapped."""
    import runpod

    runpod.api_key = "local-key"
    runpod.endpoint_url_base = local.base_url
    job = runpod.Endpoint("local").run({"input": {"task": "square", "input": 12}})
    assert job.output(timeout=30) == [144]
    assert job.status() == "COMPLETED"
    assert runpod.Endpoint("local").run_sync({"input": {"task": "square", "input": 5}}, timeout=30) == [25]


def test_docs_curl_requests_work(local: LocalEndpoint) -> None:
    """The requests of RunPod's curl examples: POST /runsync with a Bearer key and JSON, GET /status."""
    request = urllib.request.Request(
        f"{local.base_url}/local/runsync",
        data=json.dumps({"input": {"task": "echo", "input": "hi"}}).encode(),
        headers={"Content-Type": "application/json", "Authorization": "Bearer anything"},
        method="POST",
    )
    with urllib.request.urlopen(request) as response:
        body = json.loads(response.read())
    assert body["status"] == "COMPLETED" and body["output"] == ["hi"] and "delayTime" in body
    with urllib.request.urlopen(f"{local.base_url}/local/status/{body['id']}") as response:
        assert json.loads(response.read())["status"] == "COMPLETED"


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
        job_id = endpoint.run(
            {"task": "square", "input": 4}, webhook=f"http://127.0.0.1:{server.server_port}/hook"
        )
        eventually(lambda: received)
        assert received[0]["id"] == job_id and received[0]["status"] == "COMPLETED"
        assert received[0]["output"] == [16] and received[0]["input"] == {"task": "square", "input": 4}
    finally:
        server.shutdown()


def test_map_200_inputs_with_failures_and_retries(
    endpoint: Endpoint, local: LocalEndpoint, tmp_path: Path
) -> None:
    inputs = [
        {"marker": str(tmp_path / f"m{i}"), "fail_times": 1 if i % 10 == 0 else 0, "value": i}
        for i in range(200)
    ]
    submitted_before = local.state.runs_submitted
    seen: list[BatchProgress] = []
    results = list(endpoint.map("flaky", inputs, concurrency=16, retries=2, on_progress=seen.append))
    assert results == list(range(200))
    assert local.state.runs_submitted - submitted_before == 200 + 20  # 20 inputs failed once
    assert (seen[-1].done, seen[-1].retried, seen[-1].failed) == (200, 20, 0)


def test_map_unordered_and_exceptions_as_values(endpoint: Endpoint) -> None:
    results = list(endpoint.map("boom", ["a", "b"], retries=0, return_exceptions=True, order_outputs=False))
    assert len(results) == 2 and all(isinstance(r, MapFailure) for r in results)
    assert sorted(r.index for r in results) == [0, 1]
    with pytest.raises(JobError, match="RuntimeError"):
        list(endpoint.map("boom", ["c"], retries=1))


CRASHING_MAP = """
import os, signal, sys
sys.path.insert(0, {tests!r})
from runpod_hybrid._http import HttpTransport
from runpod_hybrid.jobs import JobStore
from runpod_hybrid.serverless import Endpoint
endpoint = Endpoint("local", HttpTransport(None), base_url={base_url!r}, ledger=JobStore(__import__("pathlib").Path({db!r})))
for n, value in enumerate(endpoint.map("square", list(range(60)), concurrency=8, batch_id="crashy")):
    if n == 20:
        os.kill(os.getpid(), signal.SIGKILL)
"""


def test_resume_after_a_crash_submits_nothing_twice(local: LocalEndpoint, tmp_path: Path) -> None:
    db = tmp_path / "jobs.db"
    script = CRASHING_MAP.format(tests=TESTS, base_url=local.base_url, db=str(db))
    before = local.state.runs_submitted
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == -signal.SIGKILL, result.stderr
    submitted_by_crashed = local.state.runs_submitted - before
    assert 20 < submitted_by_crashed < 60
    endpoint = Endpoint("local", HttpTransport(None), base_url=local.base_url, ledger=JobStore(db))
    assert list(endpoint.resume_batch("crashy")) == [i * i for i in range(60)]
    assert local.state.runs_submitted - before == 60  # each input submitted exactly once
    store = JobStore(db)
    assert store.get_batch("crashy").state == "SUCCEEDED"  # type: ignore[union-attr]
    assert [s.index for s in store.submissions("crashy")] == list(range(60))


class FakeClock:
    def __init__(self) -> None:
        self.now_s = 0.0

    def __call__(self) -> float:
        return self.now_s


def test_ttl_expiry_then_404_and_purge() -> None:
    clock = FakeClock()
    with LocalEndpoint(["sample_tasks"], workers=0, clock=clock, worker_env=WORKER_ENV) as idle:
        endpoint = Endpoint("local", HttpTransport(None), base_url=idle.base_url)
        job_id = endpoint.run({"task": "square", "input": 2}, policy={"ttl": 5000})
        assert endpoint.status(job_id)["status"] == "IN_QUEUE"
        clock.now_s += 6
        with pytest.raises(JobExpiredError, match="expired"):
            endpoint.status(job_id)
        for i in range(3):
            endpoint.run({"task": "square", "input": i})
        assert endpoint.purge_queue() == {"removed": 3, "status": "completed"}
        assert endpoint.health()["jobs"]["inQueue"] == 0


def test_execution_timeout_times_out_and_stops_the_worker(tmp_path: Path) -> None:
    clock = FakeClock()
    with LocalEndpoint(["sample_tasks"], workers=1, clock=clock, worker_env=WORKER_ENV) as ep:
        endpoint = Endpoint("local", HttpTransport(None), base_url=ep.base_url)
        beat = tmp_path / "beat"
        job_id = endpoint.run(
            {"task": "spin", "input": {"beat": str(beat)}}, policy={"executionTimeout": 5000}
        )
        eventually(beat.exists)
        clock.now_s += 6
        ep.state.tick()
        with pytest.raises(JobError) as info:
            endpoint.wait(job_id, first_poll_s=0.01)
        assert info.value.state == "TIMED_OUT" and "executionTimeout" in str(info.value.error)
        eventually(Path(f"{beat}.ended").exists)  # the worker stopped the task


def test_four_workers_run_in_parallel(tmp_path: Path) -> None:
    with LocalEndpoint(["sample_tasks"], workers=4, worker_env=WORKER_ENV) as ep:
        endpoint = Endpoint("local", HttpTransport(None), base_url=ep.base_url)
        release = tmp_path / "release"
        jobs = [
            endpoint.run({"task": "spin", "input": {"beat": str(tmp_path / f"b{i}"), "until": str(release)}})
            for i in range(4)
        ]
        eventually(lambda: endpoint.health()["workers"]["running"] == 4)
        assert len({endpoint.status(j)["workerId"] for j in jobs}) == 4
        release.touch()
        assert [endpoint.wait(j, first_poll_s=0.05) for j in jobs] == [["released"]] * 4


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
    code = "import sys; from runpod_hybrid.serverless import handler; print('runpod' in sys.modules)"
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
        workers = [w.process for w in local.state.workers.values() if w.process is not None]
        # The worker's one child once RunPod's runtime is up: its heartbeat process.
        eventually(lambda: all(local.state.workers[w].last_seen_s for w in local.state.workers))
        heartbeats = [eventually(lambda p=p: _children(p.pid))[0] for p in workers]
        os.kill(workers[0].pid, signal.SIGKILL)  # a crashed worker
        assert eventually(lambda: not _alive(heartbeats[0]), timeout_s=10)
    finally:
        local.stop()
    assert eventually(lambda: not _alive(heartbeats[1]), timeout_s=10)  # a stopped one
