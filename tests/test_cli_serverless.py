"""`rph endpoint serve-local` as a real process, driven by `rph sls` and `rph batch` over HTTP."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import select
import socket
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import eventually

TESTS = str(Path(__file__).parent)
LOCAL_KEY = "local-test-key"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rph(*argv: str, env: dict[str, str], timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runpod_hybrid.cli", *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout_s,
        check=False,
    )


def home_env(home: Path, **extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "PYTHONPATH": TESTS,
        "HOME": str(home),
        "XDG_STATE_HOME": str(home / "state"),
        **extra,
    }
    if "RUNPOD_API_KEY" not in extra:
        env.pop("RUNPOD_API_KEY", None)
    return env


class Served:
    """A `rph endpoint serve-local` process and what its banner said."""

    def __init__(self, env: dict[str, str], *options: str) -> None:
        self.port = free_port()
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "runpod_hybrid.cli",
                "--json",
                "endpoint",
                "serve-local",
                "--tasks",
                "sample_tasks",
                "--port",
                str(self.port),
                *options,
            ],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert self.process.stdout is not None
        lines: list[str] = []
        while not lines or lines[-1] != "}\n":
            line = self.process.stdout.readline()
            assert line, "serve-local ended before its banner"
            lines.append(line)
        self.banner: dict[str, Any] = json.loads("".join(lines))
        self.base_url = str(self.banner["base_url"])

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("home")


@pytest.fixture(scope="module")
def served(home: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """Served with the key from the environment, which `rph sls` sends too."""
    env = home_env(home, RUNPOD_API_KEY=LOCAL_KEY)
    server = Served(env, "--workers", "2", "--slots", "4")
    assert "api_key" not in server.banner  # a key the user gave is never printed
    yield server.base_url, env
    server.stop()


@pytest.fixture(scope="module")
def no_workers(home: Path) -> Iterator[tuple[str, dict[str, str]]]:
    env = home_env(home, RUNPOD_API_KEY=LOCAL_KEY)
    server = Served(env, "--workers", "0")
    yield server.base_url, env
    server.stop()


def test_sls_run_sync_status_health(served: tuple[str, dict[str, str]]) -> None:
    base_url, env = served
    done = rph(
        "--json",
        "sls",
        "run-sync",
        "local",
        '{"task": "square", "value": 6}',
        "--base-url",
        base_url,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["output"] == 36
    queued = rph(
        "--json", "sls", "run", "local", '{"task": "count", "value": 2}', "--base-url", base_url, env=env
    )
    job_id = json.loads(queued.stdout)["id"]
    streamed = rph("sls", "stream", "local", job_id, "--base-url", base_url, env=env)
    assert [json.loads(line) for line in streamed.stdout.splitlines()] == [{"i": 0}, {"i": 1}]
    waited = rph("--json", "sls", "status", "local", job_id, "--wait", "30", "--base-url", base_url, env=env)
    assert waited.returncode == 0 and json.loads(waited.stdout)["output"] == [{"i": 0}, {"i": 1}]
    health = json.loads(rph("--json", "sls", "health", "local", "--base-url", base_url, env=env).stdout)
    assert health["jobs"]["completed"] >= 2


def test_serve_local_without_a_key_makes_one_and_refuses_requests_without_it(home: Path) -> None:
    server = Served(home_env(home), "--workers", "0")
    try:
        key = server.banner["api_key"]
        assert key.startswith("local-")
        refused = rph("sls", "health", "local", "--base-url", server.base_url, env=home_env(home))
        assert (
            refused.returncode == 1
            and "refused the API key" in refused.stderr
            and "HTTP 401" in refused.stderr
        )
        wrong = rph(
            "sls", "health", "local", "--base-url", server.base_url, env=home_env(home, RUNPOD_API_KEY="nope")
        )
        assert wrong.returncode == 1 and "HTTP 401" in wrong.stderr
        right = rph(
            "--json",
            "sls",
            "health",
            "local",
            "--base-url",
            server.base_url,
            env=home_env(home, RUNPOD_API_KEY=key),
        )
        assert right.returncode == 0 and json.loads(right.stdout)["workers"]["ready"] == 0
    finally:
        server.stop()


def test_serve_local_takes_the_key_from_its_option(home: Path) -> None:
    server = Served(home_env(home), "--workers", "0", "--api-key", "given-key")
    try:
        assert "api_key" not in server.banner
        ok = rph(
            "sls",
            "health",
            "local",
            "--base-url",
            server.base_url,
            env=home_env(home, RUNPOD_API_KEY="given-key"),
        )
        assert ok.returncode == 0, ok.stderr
    finally:
        server.stop()


def test_serve_local_exits_within_seconds_when_workers_cannot_import_their_tasks(home: Path) -> None:
    started = time.monotonic()
    out = rph(
        "endpoint",
        "serve-local",
        "--tasks",
        "no_such_tasks",
        "--port",
        str(free_port()),
        env=home_env(home),
        timeout_s=60,
    )
    assert out.returncode == 1 and time.monotonic() - started < 30
    assert "no_such_tasks" in out.stderr and "No module named 'no_such_tasks'" in out.stderr
    assert "serving" not in out.stdout


def test_waits_end_with_what_health_shows_when_no_worker_takes_the_job(
    no_workers: tuple[str, dict[str, str]],
) -> None:
    base_url, env = no_workers
    started = time.monotonic()
    out = rph(
        "sls",
        "run-sync",
        "local",
        '{"task": "square", "value": 1}',
        "--wait-s",
        "2",
        "--base-url",
        base_url,
        env=env,
    )
    assert out.returncode == 1 and time.monotonic() - started < 30
    assert "still IN_QUEUE after 2 s" in out.stderr and "1 in queue" in out.stderr
    job_id = json.loads(rph("--json", "sls", "run", "local", "1", "--base-url", base_url, env=env).stdout)[
        "id"
    ]
    waited = rph("sls", "status", "local", job_id, "--wait", "1", "--base-url", base_url, env=env)
    assert (
        waited.returncode == 1
        and "still IN_QUEUE after 1 s" in waited.stderr
        and "2 in queue" in waited.stderr
    )


def test_sls_failure_exits_non_zero_with_the_worker_error(served: tuple[str, dict[str, str]]) -> None:
    base_url, env = served
    failed = rph(
        "sls", "run-sync", "local", '{"task": "boom", "value": "broken"}', "--base-url", base_url, env=env
    )
    assert failed.returncode == 1
    assert "FAILED: RuntimeError: broken" in failed.stderr


def test_bad_json_input_is_explained(served: tuple[str, dict[str, str]]) -> None:
    base_url, env = served
    bad = rph("sls", "run", "local", "{task: square}", "--base-url", base_url, env=env)
    assert bad.returncode == 1 and "Not valid JSON" in bad.stderr


def submit(
    base_url: str, env: dict[str, str], inputs: Path, *options: str
) -> subprocess.CompletedProcess[str]:
    return rph(
        "--json", "batch", "submit", "local", "square", str(inputs), "--base-url", base_url, *options, env=env
    )


def test_batch_submit_then_status_and_resume(served: tuple[str, dict[str, str]], tmp_path: Path) -> None:
    base_url, env = served
    inputs = tmp_path / "inputs.jsonl"
    inputs.write_text("\n".join(str(i) for i in range(12)) + "\n")
    out = submit(base_url, env, inputs, "--batch-id", "cli-batch", "--batch-size", "5")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"batch_id": "cli-batch", "results": [i * i for i in range(12)]}
    status = json.loads(rph("--json", "batch", "status", "cli-batch", env=env).stdout)
    assert status["inputs_by_state"] == {"SUCCEEDED": 12} and status["state"] == "SUCCEEDED"
    assert status["inputs"] == 12 and status["task"] == "square" and status["possibly_submitted_twice"] == 0
    resumed = json.loads(rph("--json", "batch", "resume", "cli-batch", env=env).stdout)
    assert resumed["results"] == [i * i for i in range(12)]  # nothing left to run: answered from the store


def test_a_used_batch_id_with_other_inputs_is_refused(
    served: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    base_url, env = served
    first, other, shorter = tmp_path / "a.jsonl", tmp_path / "b.jsonl", tmp_path / "c.jsonl"
    first.write_text("1\n2\n3\n")
    other.write_text("4\n5\n6\n")
    shorter.write_text("1\n2\n")
    assert json.loads(submit(base_url, env, first, "--batch-id", "b1").stdout)["results"] == [1, 4, 9]
    for inputs in (other, shorter):
        refused = submit(base_url, env, inputs, "--batch-id", "b1")
        assert refused.returncode == 1 and "Traceback" not in refused.stderr
        assert "Batch id 'b1' is taken by another batch" in refused.stderr
        assert json.loads(refused.stdout) == {
            "error": {"type": "ConfigError", "message": refused.stderr.removeprefix("error: ").strip()}
        }
    again = submit(base_url, env, first, "--batch-id", "b1")
    assert json.loads(again.stdout)["results"] == [1, 4, 9]  # the same batch: its own results
    first.write_text("1\n2\n")
    changed = rph("batch", "resume", "b1", env=env)
    assert changed.returncode == 1 and "b1's inputs changed" in changed.stderr and not changed.stdout


def test_batch_submit_shows_progress_on_a_terminal_before_any_result(
    served: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    base_url, env = served
    release = tmp_path / "release"
    inputs = tmp_path / "inputs.jsonl"
    inputs.write_text(
        "\n".join(json.dumps({"beat": str(tmp_path / f"b{i}"), "until": str(release)}) for i in range(3))
        + "\n"
    )
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # a terminal has a size
    batch = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "runpod_hybrid.cli",
            "batch",
            "submit",
            "local",
            "spin",
            str(inputs),
            "--base-url",
            base_url,
        ],
        stdout=subprocess.PIPE,
        stderr=terminal,
        text=True,
        env=env,
    )
    os.close(terminal)
    seen = b""

    def drawn() -> bool:
        nonlocal seen
        while select.select([controller], [], [], 0)[0]:
            seen += os.read(controller, 4096)
        return b"batch:" in seen and b"3 running" in seen

    try:
        assert eventually(drawn), seen  # while every input is still running
        assert not release.exists()
        release.touch()
        out, _ = batch.communicate(timeout=60)
    finally:
        os.close(controller)
        if batch.poll() is None:
            batch.kill()
            batch.wait()
    assert batch.returncode == 0
    assert [json.loads(line) for line in out.splitlines()] == ["released"] * 3
