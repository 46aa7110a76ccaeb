"""Batches: packs of inputs per job, retries per input, results per input in order or as they come, the
ledger (fingerprints, intents before /run, resume), and the rules that keep a batch from stalling. Through
the local endpoint with real workers, or a stand-in that answers as a misbehaving RunPod would."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from runpod_hybrid._http import HttpTransport
from runpod_hybrid.config import ApiKey
from runpod_hybrid.errors import BadResponseError, ConfigError, JobError
from runpod_hybrid.jobs import JobStore
from runpod_hybrid.serverless import BatchProgress, Endpoint, InputsFile, LocalEndpoint, MapFailure
from runpod_hybrid.serverless.batch import PackSizer

from conftest import FakeTime, eventually

TESTS = str(Path(__file__).parent)
WORKER_ENV = {"PYTHONPATH": TESTS}


@pytest.fixture(scope="module")
def local() -> Iterator[LocalEndpoint]:
    with LocalEndpoint(["sample_tasks"], workers=2, slots_per_worker=16, worker_env=WORKER_ENV) as endpoint:
        yield endpoint


def client_of(local: LocalEndpoint, ledger: JobStore | None = None) -> Endpoint:
    return Endpoint(
        "local", HttpTransport(ApiKey(local.api_key, "test")), base_url=local.base_url, ledger=ledger
    )


@pytest.fixture
def store(tmp_path: Path) -> JobStore:
    return JobStore(tmp_path / "jobs.db")


@pytest.fixture
def endpoint(local: LocalEndpoint, store: JobStore) -> Endpoint:
    return client_of(local, store)


def sent_values(local: LocalEndpoint, task: str) -> list[Any]:
    """Every input of ``task`` the endpoint has received, packs unpacked."""

    def inputs() -> list[Any]:
        return [
            j.input
            for j in local.state.jobs.values()
            if isinstance(j.input, dict) and j.input.get("task") == task
        ]

    values: list[Any] = []
    for job_input in local.call(inputs):
        values.extend(job_input["values"] if "values" in job_input else [job_input["value"]])
    return values


# --- packing ---


def test_a_pack_carries_several_inputs_and_each_gets_its_own_result(
    endpoint: Endpoint, local: LocalEndpoint
) -> None:
    before = local.stats()["runs_submitted"]
    assert list(endpoint.map("square", range(100), batch_size=10)) == [i * i for i in range(100)]
    assert local.stats()["runs_submitted"] - before == 10


def test_a_failing_input_is_retried_without_its_pack(
    endpoint: Endpoint, local: LocalEndpoint, tmp_path: Path
) -> None:
    inputs = [
        {"marker": str(tmp_path / f"m{i}"), "fail_times": 1 if i % 10 == 0 else 0, "value": i}
        for i in range(40)
    ]
    seen: list[BatchProgress] = []
    results = list(endpoint.map("flaky", inputs, batch_size=10, on_progress=seen.append))
    assert results == list(range(40))
    sent = Counter(v["value"] for v in sent_values(local, "flaky") if v["marker"].startswith(str(tmp_path)))
    assert sent == Counter({**dict.fromkeys(range(40), 1), **dict.fromkeys(range(0, 40, 10), 2)})
    assert (seen[-1].done, seen[-1].retried, seen[-1].failed) == (40, 4, 0)


def test_auto_packs_by_expected_runtime_and_spread_over_the_slots(
    endpoint: Endpoint, local: LocalEndpoint
) -> None:
    before = local.stats()["runs_submitted"]
    results = list(endpoint.map("square", range(64), concurrency=4, expected_runtime_s=0.001))
    assert results == [i * i for i in range(64)]
    assert local.stats()["runs_submitted"] - before == 8  # two packs per slot


def test_auto_pack_size_rules() -> None:
    sizer = PackSizer("auto", slots=4, job_timeout_s=600, expected_runtime_s=None)
    assert sizer.size(None) == 1  # nothing known: one input a job until the first ones report
    sizer.observe(10, 1.0)  # 0.1 s per input
    assert sizer.size(None) == 100  # about 10 s of work
    assert sizer.size(40) == 5  # two packs per slot
    slow = PackSizer("auto", slots=4, job_timeout_s=20, expected_runtime_s=1.0)
    assert slow.size(None) == 5  # a quarter of the job timeout
    with pytest.raises(ValueError, match="batch_size"):
        PackSizer(0, slots=1, job_timeout_s=1, expected_runtime_s=None)


def test_packs_stay_under_runpods_10_mb_and_a_bigger_input_fails_alone(
    endpoint: Endpoint, local: LocalEndpoint
) -> None:
    big = "x" * 4_000_000
    before = local.stats()["runs_submitted"]
    results = list(
        endpoint.map("echo", [big, big, big, "y" * 10_500_000, "small"], batch_size=5, return_exceptions=True)
    )
    assert results[:3] == [big, big, big] and results[4] == "small"
    assert isinstance(results[3], MapFailure) and "10 MB" in str(results[3].error)
    assert local.stats()["runs_submitted"] - before == 2  # 8 MB, then 4 MB and the small one


# --- results ---


def test_failures_as_values_in_completion_order(endpoint: Endpoint) -> None:
    results = list(endpoint.map("boom", ["a", "b"], retries=0, return_exceptions=True, order_outputs=False))
    assert len(results) == 2 and all(isinstance(r, MapFailure) for r in results)
    assert sorted(r.index for r in results) == [0, 1]
    assert "RuntimeError: a" in str(next(r for r in results if r.index == 0).error)
    with pytest.raises(JobError, match="RuntimeError: c"):
        list(endpoint.map("boom", ["c"], retries=1))


def test_map_is_an_iterator_yielding_each_result_when_it_is_ready(endpoint: Endpoint, tmp_path: Path) -> None:
    release = tmp_path / "release"
    done_at_once = tmp_path / "already"
    done_at_once.touch()
    results = endpoint.map(
        "spin",
        [
            {"beat": str(tmp_path / "b0"), "until": str(done_at_once)},
            {"beat": str(tmp_path / "b1"), "until": str(release)},
        ],
        batch_size=1,
    )
    assert next(results) == "released"  # the second input is still running
    assert not Path(f"{tmp_path / 'b1'}.ended").exists()
    release.touch()
    assert list(results) == ["released"]


# --- never stalls ---


def test_a_job_on_a_killed_worker_is_retried_and_the_batch_ends(tmp_path: Path, store: JobStore) -> None:
    with LocalEndpoint(["sample_tasks"], workers=2, worker_env=WORKER_ENV) as ep:
        endpoint = client_of(ep, store)
        beat, release = tmp_path / "beat", tmp_path / "release"
        results: list[Any] = []
        runner = threading.Thread(
            target=lambda: results.extend(
                endpoint.map(
                    "spin", [{"beat": str(beat), "until": str(release)}], job_timeout_s=3, batch_id="killed"
                )
            )
        )
        runner.start()
        eventually(beat.exists)
        running_on = ep.call(
            lambda: next(j.worker_id for j in ep.state.jobs.values() if j.status == "IN_PROGRESS")
        )
        os.killpg(ep.worker_pids()[running_on], signal.SIGKILL)
        release.touch()
        runner.join(timeout=60)
        assert results == ["released"]
        summary = endpoint.batch_summary("killed")
        assert summary.state == "SUCCEEDED" and summary.inputs_by_state == {"SUCCEEDED": 1}


class Standin:
    """A serverless API that answers the way a misbehaving RunPod would (set ``run_answer`` and ``status``);
    it records cancels."""

    def __init__(self) -> None:
        self.run_answer: dict[str, Any] = {"id": "job-1", "status": "IN_QUEUE"}
        self.status: dict[str, Any] = {"status": "IN_PROGRESS", "delayTime": None, "executionTime": None}
        self.runs = 0
        self.cancelled: list[str] = []
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self, body: Any) -> None:
                raw = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                parts = self.path.split("?")[0].split("/")  # /v2/<endpoint>/<route>[/<job id>]
                if parts[3] == "run":
                    standin.runs += 1
                    answer = dict(standin.run_answer)
                    if "id" in answer:
                        answer["id"] = f"job-{standin.runs}"
                    self._answer(answer)
                else:
                    standin.cancelled.append(parts[4])
                    self._answer({"id": parts[4], "status": "CANCELLED"})

            def do_GET(self) -> None:
                parts = self.path.split("?")[0].split("/")
                if parts[3] == "health":
                    self._answer({"jobs": {"inQueue": 0, "inProgress": 1}, "workers": {"running": 1}})
                else:
                    self._answer({"id": parts[4], **standin.status})

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.base_url = f"http://127.0.0.1:{self.server.server_port}/v2"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def standin() -> Iterator[Standin]:
    server = Standin()
    yield server
    server.close()


def test_a_job_running_past_the_job_timeout_is_cancelled_and_counts_as_a_failure(standin: Standin) -> None:
    """RunPod never says the job ended (its worker is gone): the map cancels it after the job timeout and
    retries the input; after the retries it fails, naming the timeout. Null delay and execution times are fine."""
    fake_time = FakeTime()
    endpoint = Endpoint(
        "ep", HttpTransport(None), base_url=standin.base_url, sleep=fake_time.sleep, clock=fake_time.clock
    )
    [result] = endpoint.map("square", [3], batch_size=1, retries=1, job_timeout_s=30, return_exceptions=True)
    assert isinstance(result, MapFailure) and result.error.state == "TIMED_OUT"
    assert "still running 30 s (the job timeout)" in str(result.error)
    assert standin.runs == 2 and standin.cancelled == ["job-1", "job-2"]


def test_odd_answers_are_typed_errors_not_key_or_type_errors(standin: Standin) -> None:
    endpoint = Endpoint("ep", HttpTransport(None), base_url=standin.base_url)
    standin.run_answer = {"status": "IN_QUEUE"}
    with pytest.raises(BadResponseError, match="without a job id"):
        endpoint.run({"task": "square", "value": 1})
    standin.status = {"status": "COMPLETED", "delayTime": None, "executionTime": None, "output": 25}
    status = endpoint.job_status("job-9")
    assert (status.delay_ms, status.execution_ms, status.output) == (None, None, 25)
    assert endpoint.wait("job-9") == 25
    standin.run_answer = {"id": "x", "status": "IN_QUEUE"}
    assert list(endpoint.map("square", [5], batch_size=1)) == [25]
    standin.status = {"output": 1}
    with pytest.raises(BadResponseError, match="without a job id and status"):
        endpoint.status("job-9")


# --- the ledger ---


CRASH_AFTER_RUN = """
import os, signal, sys
sys.path.insert(0, {tests!r})
from pathlib import Path
from runpod_hybrid._http import HttpTransport
from runpod_hybrid.config import ApiKey
from runpod_hybrid.jobs import JobStore
from runpod_hybrid.serverless import Endpoint

class CrashingStore(JobStore):
    def sent(self, pack_id, job_id):
        # /run has answered, the job exists, and its id is not recorded yet: the crash window.
        if pack_id.split("-p")[1].startswith("2-"):
            os.kill(os.getpid(), signal.SIGKILL)
        super().sent(pack_id, job_id)

endpoint = Endpoint("local", HttpTransport(ApiKey({key!r}, "t")), base_url={base_url!r}, ledger=CrashingStore(Path({db!r})))
list(endpoint.map("echo", [f"w{{i}}" for i in range(30)], batch_size=5, concurrency=2, batch_id="window"))
"""


def test_a_crash_between_run_and_its_record_is_counted_as_possibly_submitted_twice(
    local: LocalEndpoint, tmp_path: Path
) -> None:
    db = tmp_path / "jobs.db"
    script = CRASH_AFTER_RUN.format(tests=TESTS, key=local.api_key, base_url=local.base_url, db=str(db))
    crashed = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    endpoint = client_of(local, JobStore(db))
    seen: list[BatchProgress] = []
    assert list(endpoint.resume_batch("window", on_progress=seen.append)) == [f"w{i}" for i in range(30)]
    assert seen[-1].possibly_submitted_twice == 5
    summary = endpoint.batch_summary("window")
    assert summary.possibly_submitted_twice == 5 and summary.inputs_by_state == {"SUCCEEDED": 30}
    sent = Counter(v for v in sent_values(local, "echo") if isinstance(v, str) and v.startswith("w"))
    assert sorted(sent.values()) == [1] * 25 + [2] * 5  # the one pack in the window, and only it, went twice


CRASHING_MAP = """
import os, signal, sys
sys.path.insert(0, {tests!r})
from pathlib import Path
from runpod_hybrid._http import HttpTransport
from runpod_hybrid.config import ApiKey
from runpod_hybrid.jobs import JobStore
from runpod_hybrid.serverless import Endpoint
endpoint = Endpoint("local", HttpTransport(ApiKey({key!r}, "t")), base_url={base_url!r}, ledger=JobStore(Path({db!r})))
for n, value in enumerate(endpoint.map("echo", [f"c{{i}}" for i in range(60)], batch_size=3, concurrency=8, batch_id="crashy")):
    if n == 20:
        os.kill(os.getpid(), signal.SIGKILL)
"""


def test_resume_after_a_crash_submits_nothing_twice(local: LocalEndpoint, tmp_path: Path) -> None:
    db = tmp_path / "jobs.db"
    script = CRASHING_MAP.format(tests=TESTS, key=local.api_key, base_url=local.base_url, db=str(db))
    crashed = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    endpoint = client_of(local, JobStore(db))
    assert list(endpoint.resume_batch("crashy")) == [f"c{i}" for i in range(60)]
    sent = Counter(v for v in sent_values(local, "echo") if isinstance(v, str) and v.startswith("c"))
    assert set(sent.values()) == {1} and len(sent) == 60  # each input submitted exactly once
    summary = endpoint.batch_summary("crashy")
    assert (summary.state, summary.possibly_submitted_twice) == ("SUCCEEDED", 0)


def test_a_used_batch_id_takes_only_the_same_task_and_inputs(
    endpoint: Endpoint, local: LocalEndpoint
) -> None:
    assert list(endpoint.map("square", [1, 2, 3], batch_id="b1")) == [1, 4, 9]
    before = local.stats()["runs_submitted"]
    assert list(endpoint.map("square", [1, 2, 3], batch_id="b1")) == [
        1,
        4,
        9,
    ]  # the same batch: from the ledger
    assert local.stats()["runs_submitted"] == before
    for task, inputs in (("square", [4, 5, 6]), ("square", [1, 2]), ("echo", [1, 2, 3])):
        with pytest.raises(ConfigError, match="Batch id 'b1' is taken by another batch: task square"):
            endpoint.map(task, inputs, batch_id="b1")


def test_resume_says_so_when_the_inputs_file_changed(
    endpoint: Endpoint, store: JobStore, tmp_path: Path
) -> None:
    inputs = tmp_path / "inputs.jsonl"
    inputs.write_text("1\n2\n3\n")
    assert list(endpoint.map("square", InputsFile(inputs), batch_id="from-file")) == [1, 4, 9]
    # A file batch reads its file again on resume: the ledger keeps no copy of its inputs.
    assert store.stored_inputs("from-file", 0, 10) == []
    inputs.write_text("1\n2\n")
    with pytest.raises(ConfigError, match=r"inputs changed: .*inputs.jsonl now holds 2 inputs"):
        endpoint.resume_batch("from-file")


def test_a_stopped_batch_cancels_its_jobs_and_resumes(
    endpoint: Endpoint, local: LocalEndpoint, tmp_path: Path
) -> None:
    stop = threading.Event()
    release = tmp_path / "release"
    specs = [{"beat": str(tmp_path / f"b{i}"), "until": str(release)} for i in range(3)]
    results = endpoint.map("spin", specs, batch_size=1, batch_id="stopped", stop=stop)
    ended: list[JobError] = []

    def consume() -> None:
        try:
            list(results)
        except JobError as exc:
            ended.append(exc)

    runner = threading.Thread(target=consume)
    runner.start()
    eventually(lambda: all(Path(s["beat"]).exists() for s in specs))
    stop.set()
    runner.join(timeout=30)
    assert [e.state for e in ended] == ["CANCELLED"] and "rph batch resume stopped" in str(ended[0])
    assert endpoint.batch_summary("stopped").state == "CANCELLED"
    eventually(lambda: all(Path(f"{s['beat']}.ended").exists() for s in specs))  # the workers stopped them
    release.touch()
    assert list(endpoint.resume_batch("stopped")) == ["released"] * 3
