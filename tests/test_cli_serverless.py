"""`rph endpoint serve-local` as a real process, driven by `rph sls` and `rph batch` over HTTP."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

TESTS = str(Path(__file__).parent)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rph(*argv: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runpod_hybrid.cli", *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    home = tmp_path_factory.mktemp("home")
    env = {**os.environ, "PYTHONPATH": TESTS, "HOME": str(home), "XDG_STATE_HOME": str(home / "state")}
    env.pop("RUNPOD_API_KEY", None)
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "runpod_hybrid.cli",
            "--json",
            "endpoint",
            "serve-local",
            "--tasks",
            "sample_tasks",
            "--workers",
            "2",
            "--slots",
            "4",
            "--port",
            str(port),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert server.stdout is not None
    lines: list[str] = []
    while not lines or lines[-1] != "}\n":
        lines.append(server.stdout.readline())
    banner = json.loads("".join(lines))
    yield banner["base_url"], env
    server.terminate()
    server.wait(timeout=30)


def test_sls_run_sync_status_health(served: tuple[str, dict[str, str]]) -> None:
    base_url, env = served
    done = rph(
        "--json",
        "sls",
        "run-sync",
        "local",
        '{"task": "square", "input": 6}',
        "--base-url",
        base_url,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["output"] == [36]
    queued = rph(
        "--json", "sls", "run", "local", '{"task": "count", "input": 2}', "--base-url", base_url, env=env
    )
    job_id = json.loads(queued.stdout)["id"]
    streamed = rph("sls", "stream", "local", job_id, "--base-url", base_url, env=env)
    assert [json.loads(line) for line in streamed.stdout.splitlines()] == [{"i": 0}, {"i": 1}]
    health = json.loads(rph("--json", "sls", "health", "local", "--base-url", base_url, env=env).stdout)
    assert health["jobs"]["completed"] >= 2


def test_sls_failure_exits_non_zero_with_the_worker_error(served: tuple[str, dict[str, str]]) -> None:
    base_url, env = served
    failed = rph(
        "sls", "run-sync", "local", '{"task": "boom", "input": "broken"}', "--base-url", base_url, env=env
    )
    assert failed.returncode == 1
    assert "FAILED: RuntimeError: broken" in failed.stderr


def test_bad_json_input_is_explained(served: tuple[str, dict[str, str]]) -> None:
    base_url, env = served
    bad = rph("sls", "run", "local", "{task: square}", "--base-url", base_url, env=env)
    assert bad.returncode == 1 and "Not valid JSON" in bad.stderr


def test_batch_submit_then_status(served: tuple[str, dict[str, str]], tmp_path: Path) -> None:
    base_url, env = served
    inputs = tmp_path / "inputs.jsonl"
    inputs.write_text("\n".join(str(i) for i in range(12)) + "\n")
    out = rph(
        "--json",
        "batch",
        "submit",
        "local",
        "square",
        str(inputs),
        "--batch-id",
        "cli-batch",
        "--base-url",
        base_url,
        env=env,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["results"] == [i * i for i in range(12)]
    status = json.loads(rph("--json", "batch", "status", "cli-batch", env=env).stdout)
    assert status["jobs_by_state"] == {"SUCCEEDED": 12} and status["state"] == "SUCCEEDED"
    assert status["inputs"] == 12 and status["task"] == "square"
    resumed = json.loads(rph("--json", "batch", "resume", "cli-batch", env=env).stdout)
    assert resumed["results"] == [i * i for i in range(12)]  # nothing left to run: answered from the store
