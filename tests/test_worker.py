"""`python -m runpod_hybrid_worker` in RunPod's own local test modes: `--test_input`, a `test_input.json`
(the bundled one included) and the `--rp_serve_api` dev server print a task's real output and fail on a
failing task."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import eventually

ROOT = Path(__file__).resolve().parent.parent
TESTS = str(ROOT / "tests")


def worker(
    *argv: str, tasks: str = "sample_tasks", cwd: Path = ROOT, path: str = TESTS
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RPH_TASKS": tasks, "PYTHONPATH": path}
    for name in [n for n in env if n.startswith("RUNPOD_WEBHOOK")]:
        del env[name]
    return subprocess.run(
        [sys.executable, "-m", "runpod_hybrid_worker", *argv],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=120,
        check=False,
    )


def test_input_of_a_plain_task_prints_its_return_value() -> None:
    ran = worker("--test_input", json.dumps({"input": {"task": "square", "value": 7}}))
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "Job result: {'output': 49}" in ran.stdout


def test_input_of_a_generator_task_prints_its_chunks() -> None:
    ran = worker("--test_input", json.dumps({"input": {"task": "count", "value": 2}}))
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "Job result: {'output': [{'i': 0}, {'i': 1}]}" in ran.stdout


@pytest.mark.parametrize(
    ("job_input", "says"),
    [
        ({"task": "boom", "value": "kaput"}, "RuntimeError: kaput"),
        ({"task": "nope", "value": 1}, "unknown task 'nope'"),
        (7, "names no task"),
        ({"task": "count", "values": "not a list"}, '"values" must be a list'),
    ],
)
def test_input_of_a_failing_task_or_a_bad_input_exits_1(job_input: Any, says: str) -> None:
    ran = worker("--test_input", json.dumps({"input": job_input}))
    assert ran.returncode == 1
    assert "failed with error" in ran.stdout and says in ran.stdout


def test_the_bundled_test_input_runs_the_bundled_example(tmp_path: Path) -> None:
    """What the worker image does by default: test_input.json beside it, the example's tasks importable."""
    (tmp_path / "test_input.json").write_text((ROOT / "serverless_worker" / "test_input.json").read_text())
    ran = worker(tasks="tasks", cwd=tmp_path, path=str(ROOT / "examples" / "hash_texts"))
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "'text': 'hello serverless world'" in ran.stdout and "'dim': 256" in ran.stdout


def test_a_task_module_that_cannot_be_imported_fails_the_worker_at_once() -> None:
    ran = worker("--test_input", json.dumps({"input": 1}), tasks="no_such_module")
    assert ran.returncode == 3
    assert "cannot import task module 'no_such_module'" in ran.stderr


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def dev_server() -> Iterator[str]:
    """RunPod's own `--rp_serve_api` dev server over our handler."""
    port = free_port()
    env = {**os.environ, "RPH_TASKS": "sample_tasks", "PYTHONPATH": TESTS, "UVICORN_LOG_LEVEL": "warning"}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "runpod_hybrid_worker",
            "--rp_serve_api",
            "--rp_api_host",
            "127.0.0.1",
            "--rp_api_port",
            str(port),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            return False
        return True

    try:
        eventually(up, timeout_s=60)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_rp_serve_api_reports_a_raising_task_as_failed(dev_server: str) -> None:
    def runsync(job_input: Any) -> dict[str, Any]:
        request = urllib.request.Request(
            f"{dev_server}/runsync",
            data=json.dumps({"input": job_input}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            answer: dict[str, Any] = json.loads(response.read())
        return answer

    done = runsync({"task": "square", "value": 9})
    assert (done["status"], done["output"]) == ("COMPLETED", 81)
    failed = runsync({"task": "boom", "value": "kaput"})
    assert failed["status"] == "FAILED" and failed["error"].startswith("RuntimeError: kaput")
