"""Outcomes a user can trust: failures fail everywhere, jobs are checked before anything runs, local work
never touches the network, lists count jobs, results are reachable from every door, and ordinary trouble
never ends in a traceback. The CLI runs as a real process where its exit code and streams matter."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from test_mcp_server import call, result_json

from runpod_hybrid import JobSpec, RunPod
from runpod_hybrid.cli import main
from runpod_hybrid.config import load_config
from runpod_hybrid.errors import ConfigError, JobError, LocalPathError
from runpod_hybrid_mcp.server import build_server, for_assistants

from conftest import SENTINEL_KEY, eventually
from runpod_standin import StandinServer

TESTS = Path(__file__).resolve().parent


@pytest.fixture
def env(isolated_home: Path) -> dict[str, str]:
    variables = {**os.environ, "HOME": str(isolated_home), "PYTHONPATH": str(TESTS)}
    variables.pop("RUNPOD_API_KEY", None)
    return variables


def rph(
    *argv: str, env: dict[str, str], cwd: Path, timeout_s: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runpod_hybrid.cli", *argv],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=timeout_s,
        check=False,
    )


def command_job(folder: Path, argv: list[str], *, extra: str = "") -> Path:
    (folder / "work").mkdir(exist_ok=True)
    job = folder / "job.toml"
    job.write_text(f'[command]\nargv = {json.dumps(argv)}\nworkdir = "work"\n{extra}')
    return job


# --- 1. a failed job is a failure everywhere --------------------------------------------------------------


def test_a_failed_job_raises_with_its_exit_code_and_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    job = JobSpec.for_command(["sh", "-c", "echo about to fail; exit 3"], workdir=str(tmp_path))
    with pytest.raises(JobError) as info:
        RunPod().jobs.run(job)
    assert info.value.state == "FAILED" and info.value.exit_code == 3
    assert "about to fail" in info.value.log_tail and "about to fail" in str(info.value)
    with pytest.raises(JobError) as false:
        RunPod().jobs.run(JobSpec.for_command(["false"], workdir=str(tmp_path)))
    assert false.value.exit_code == 1


def test_a_command_string_is_split_as_a_shell_would() -> None:
    job = JobSpec.for_command("python3 train.py --note 'two words'")
    assert job.command == ("python3", "train.py", "--note", "two words") and job.name == "python3"
    with pytest.raises(ValueError, match="cannot split"):
        JobSpec.for_command("python3 'unclosed")
    with pytest.raises(ValueError, match="empty"):
        JobSpec.for_command("   ")


def test_rph_run_of_a_failing_job_exits_1_with_its_state(env: dict[str, str], tmp_path: Path) -> None:
    job = command_job(tmp_path, ["sh", "-c", "echo oops >&2; exit 7"])
    out = rph("--json", "run", str(job), env=env, cwd=tmp_path)
    assert out.returncode == 1, out.stderr
    payload = json.loads(out.stdout)
    assert payload["state"] == "FAILED" and payload["exit_code"] == 7
    assert "Traceback" not in out.stderr


def test_mcp_tools_report_a_failed_job_as_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    job = command_job(tmp_path, ["sh", "-c", "echo broken; exit 4"])
    result = call(build_server(), "submit_job", {"job_file": str(job)})
    assert result.is_error
    text = result.content[0].text
    assert "FAILED" in text and "exit code 4" in text and "broken" in text
    assert "rph " not in text.replace("the CLI command `rph", "")  # advice names tools, not the CLI
    job_id = next(w for w in text.split() if w.startswith("j-"))
    status = call(build_server(), "job_status", {"job_id": job_id})
    assert status.is_error and "exit code 4" in status.content[0].text


# --- 4. checked before anything runs ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("job_toml", "key"),
    [
        ('[command]\nargv = ["true"]\nworkdir = "missing"\n', "command.workdir"),
        ('[command]\nargv = ["true"]\nworkdir = "."\noutputs = ["../escape"]\n', "command.outputs"),
        ('[task]\nmodule = "no_such_module_anywhere"\nname = "t"\ninputs = [1]\n', "task.module"),
        (
            '[task]\nmodule = "sample_tasks"\nname = "square"\ninputs_file = "gone.jsonl"\n',
            "task.inputs_file",
        ),
        ('[task]\nmodule = "sample_tasks"\nname = "square"\ninputs = []\n', "task.inputs"),
    ],
)
def test_a_broken_job_is_refused_before_anything_runs(
    job_toml: str, key: str, env: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "job.toml").write_text(job_toml)
    for command in ("plan", "run"):
        out = rph(command, "job.toml", env=env, cwd=tmp_path)
        assert out.returncode == 1 and key in out.stderr and "Traceback" not in out.stderr, out.stderr
    listed = json.loads(rph("--json", "jobs", "list", env=env, cwd=tmp_path).stdout)
    assert listed == []  # nothing was started
    result = call(build_server(), "plan_job", {"job_file": str(tmp_path / "job.toml")})
    assert result.is_error and key in result.content[0].text


def test_check_job_names_the_key_from_python(tmp_path: Path) -> None:
    with pytest.raises(LocalPathError, match=r"command\.workdir"):
        RunPod().jobs.plan(JobSpec.for_command(["true"], workdir=str(tmp_path / "nope")))
    with pytest.raises(ConfigError, match=r"command\.outputs"):
        RunPod().jobs.plan(JobSpec.for_command(["true"], workdir=str(tmp_path), outputs=("/etc",)))


# --- 5. local never needs the network ---------------------------------------------------------------------


def test_local_plans_and_runs_make_no_network_call(
    standin: StandinServer, isolated_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    rp = RunPod(config=load_config(SENTINEL_KEY, env={}, home=isolated_home), graphql_url=standin.url)
    job = JobSpec.for_command(["true"], workdir=str(tmp_path))
    assert rp.jobs.plan(job, backend="local").backend == "local"
    assert rp.jobs.run(job, backend="local") == []
    tasks = JobSpec.for_task("square", [1, 2], module="sample_tasks", extra={"task_path": str(TESTS)})
    assert rp.jobs.plan(tasks, backend="local").backend == "local"
    assert standin.state.requests == []  # not one call to RunPod


def test_an_auto_plan_offline_says_pod_prices_are_unknown(isolated_home: Path, tmp_path: Path) -> None:
    closed = socket_closed_port()
    rp = RunPod(
        config=load_config(SENTINEL_KEY, env={}, home=isolated_home),
        graphql_url=f"http://127.0.0.1:{closed}/graphql",
    )
    plan = rp.jobs.plan(JobSpec.for_command(["true"], workdir=str(tmp_path)))
    assert plan.backend == "pod" and plan.estimated_cost_usd is None
    assert "pod prices unknown (offline" in plan.price_source


def socket_closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- 6. no tracebacks for ordinary trouble ----------------------------------------------------------------


BAD_INPUTS: list[list[str]] = [
    ["gpus"],
    ["pods", "list"],
    ["pods", "get", "nope"],
    ["pods", "create", "--gpu", "X"],
    ["pods", "create", "--dry-run"],
    ["pods", "stop", "nope"],
    ["pods", "start", "nope"],
    ["pods", "terminate", "nope"],
    ["pods", "wait", "nope"],
    ["pods", "telemetry", "nope"],
    ["pods", "ssh-info", "nope"],
    ["pods", "authorize-key"],
    ["pods", "run", "--gpu", "X"],
    ["exec", "nope"],
    ["exec", "nope", "--", "true"],
    ["ssh", "nope"],
    ["upload", "nope", "/nonexistent/here", "/workspace"],
    ["download", "nope", "/x", "out"],
    ["endpoint", "list"],
    ["endpoint", "get", "nope"],
    ["endpoint", "delete", "nope"],
    ["endpoint", "deploy", "--name", "n", "--image", "i", "--gpu", "NOPE", "--workers-max", "1"],
    ["sls", "run", "local", "{not json"],
    ["sls", "run-sync", "local", "[1,", "--base-url", "http://127.0.0.1:9/v2"],
    ["sls", "status", "local", "job"],
    ["batch", "submit", "local", "square", "/nonexistent/inputs.jsonl"],
    ["batch", "status", "nope"],
    ["batch", "resume", "nope"],
    ["plan", "/nonexistent/job.toml"],
    ["run", "/nonexistent/job.toml"],
    ["jobs", "status", "nope"],
    ["jobs", "logs", "nope"],
    ["jobs", "fetch", "nope"],
    ["jobs", "result", "nope"],
    ["jobs", "cancel", "nope"],
    ["jobs", "start", "/nonexistent/job.toml"],
    ["--log-level", "loud", "jobs", "list"],
    ["no-such-command"],
    ["config"],
]


@pytest.mark.parametrize("argv", BAD_INPUTS, ids=" ".join)
def test_every_command_with_bad_input_fails_in_one_line(
    argv: list[str], capsys: pytest.CaptureFixture[str], isolated_home: Path
) -> None:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's usage errors
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    assert code in (1, 2), (code, out, err)
    assert "Traceback" not in out + err and err.strip(), err
    if code == 1:
        assert err.startswith("error: ") and len(err.strip().splitlines()) <= 12, err


def test_a_port_in_use_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        code = main(["endpoint", "serve-local", "--tasks", "sample_tasks", "--port", port])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("error: ") and "Address already in use" in err and "--port" in err


def test_a_closed_pipe_ends_quietly(env: dict[str, str], tmp_path: Path) -> None:
    """`rph ... --json | head`: the reader goes away; no BrokenPipeError traceback."""
    for i in range(3):
        command_job(tmp_path / f"j{i}", ["true"]) if (tmp_path / f"j{i}").mkdir() is None else None
        assert rph("run", str(tmp_path / f"j{i}" / "job.toml"), env=env, cwd=tmp_path).returncode == 0
    process = subprocess.Popen(
        [sys.executable, "-m", "runpod_hybrid.cli", "--json", "jobs", "list"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**env, "PYTHONUNBUFFERED": "1"},
        cwd=tmp_path,
    )
    assert process.stdout is not None and process.stderr is not None
    process.stdout.read(1)  # like `head -c 1`
    process.stdout.close()
    process.wait(timeout=60)
    err = process.stderr.read().decode()
    process.stderr.close()
    assert "Traceback" not in err and "Exception ignored" not in err, err


# --- 3. nothing hangs: Ctrl-C -----------------------------------------------------------------------------

SLOW_TASKS = textwrap.dedent(
    """
    [task]
    module = "sample_tasks"
    name = "spin"
    inputs_file = "inputs.jsonl"
    """
)


def test_one_ctrl_c_cancels_a_local_task_run_quickly(env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "job.toml").write_text(SLOW_TASKS)
    beats = [tmp_path / f"beat{i}" for i in range(2)]
    (tmp_path / "inputs.jsonl").write_text(
        "".join(json.dumps({"beat": str(b), "limit_s": 120}) + "\n" for b in beats)
    )
    cli = subprocess.Popen(
        [sys.executable, "-m", "runpod_hybrid.cli", "run", "job.toml"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    eventually(lambda: any(b.exists() for b in beats), timeout_s=60)
    interrupted_at = time_now()
    cli.send_signal(signal.SIGINT)
    _out, err = cli.communicate(timeout=30)
    assert cli.returncode == 130, err
    assert time_now() - interrupted_at < 5  # stopped at once, not after the tasks' 120 s
    assert "Traceback" not in err and "CANCELLED" in err
    [job] = json.loads(rph("--json", "jobs", "list", env=env, cwd=tmp_path).stdout)
    status = json.loads(rph("--json", "jobs", "status", job["id"], env=env, cwd=tmp_path).stdout)
    assert status["state"] == "CANCELLED" and "Ctrl-C" in status["error"]


def test_ctrl_c_while_following_a_detached_job_says_how_to_reach_it(
    env: dict[str, str], tmp_path: Path
) -> None:
    release = tmp_path / "release"
    job = command_job(tmp_path, ["sh", "-c", f"echo started; while [ ! -e {release} ]; do sleep 0.1; done"])
    cli = subprocess.Popen(
        [sys.executable, "-m", "runpod_hybrid.cli", "run", str(job)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert cli.stdout is not None
    while "started" not in cli.stdout.readline():
        pass
    cli.send_signal(signal.SIGINT)
    _out, err = cli.communicate(timeout=30)
    assert cli.returncode == 130 and "Traceback" not in err
    assert "still RUNNING" in err and "rph jobs cancel" in err and "rph jobs logs" in err
    [listed] = json.loads(rph("--json", "jobs", "list", env=env, cwd=tmp_path).stdout)
    assert (
        json.loads(rph("--json", "jobs", "status", listed["id"], env=env, cwd=tmp_path).stdout)["state"]
        == "RUNNING"
    )
    release.touch()
    follow = rph("jobs", "logs", listed["id"], "--follow", env=env, cwd=tmp_path)
    assert follow.returncode == 0 and "started" in follow.stdout and "SUCCEEDED" in follow.stdout


def time_now() -> float:
    import time

    return time.monotonic()


# --- 7 and 8. lists count jobs; results from every door ---------------------------------------------------


def test_lists_count_jobs_and_results_are_reachable(
    env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "tasks.toml").write_text(
        '[task]\nmodule = "sample_tasks"\nname = "square"\ninputs = [1, 2, 3, 4, 5, 6]\n'
    )
    ids = []
    for _ in range(2):
        out = rph("--json", "run", "tasks.toml", env=env, cwd=tmp_path)
        assert out.returncode == 0, out.stderr
        ids.append(json.loads(out.stdout)["job_id"])
    for i in range(3):
        folder = tmp_path / f"c{i}"
        folder.mkdir()
        assert rph("run", str(command_job(folder, ["true"])), env=env, cwd=tmp_path).returncode == 0
    listed = json.loads(rph("--json", "jobs", "list", "--limit", "5", env=env, cwd=tmp_path).stdout)
    assert len(listed) == 5
    result = rph("--json", "jobs", "result", ids[0], env=env, cwd=tmp_path)
    assert json.loads(result.stdout)["results"] == [1, 4, 9, 16, 25, 36]
    assert rph("jobs", "result", ids[0], env=env, cwd=tmp_path).stdout.split() == [
        "1",
        "4",
        "9",
        "16",
        "25",
        "36",
    ]
    monkeypatch.setenv("HOME", env["HOME"])
    jobs = result_json(call(build_server(), "list_jobs", {"limit": 2}))["jobs"]
    assert len(jobs) == 2


def test_fetched_outputs_are_absolute_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    job = command_job(
        tmp_path, ["sh", "-c", "mkdir -p out && echo hi > out/a.txt"], extra='outputs = ["out"]\n'
    )
    server = build_server()
    submitted = result_json(call(server, "submit_job", {"job_file": str(job)}))
    assert submitted["state"] == "SUCCEEDED" and submitted["finished_in_call"] is True
    fetched = result_json(call(server, "fetch_job_outputs", {"job_id": submitted["job_id"], "dest": "rel"}))
    assert fetched["outputs"] == [str(tmp_path / "rel" / "out" / "a.txt")]


def test_submit_job_never_says_finished_while_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    release = tmp_path / "release"
    job = command_job(tmp_path, ["sh", "-c", f"while [ ! -e {release} ]; do sleep 0.1; done"])
    server = build_server(settle_s=0.5)
    submitted = result_json(call(server, "submit_job", {"job_file": str(job)}))
    assert submitted["state"] in ("PENDING", "RUNNING") and submitted["finished_in_call"] is False
    release.touch()
    eventually(
        lambda: (
            result_json(call(server, "job_status", {"job_id": submitted["job_id"]}))["state"] == "SUCCEEDED"
        )
    )


def test_error_advice_names_tools_not_cli_commands() -> None:
    advice = for_assistants(
        "Pod p1 is EXITED. Start it with `rph pods start p1`; `rph gpus --count 2` shows stock; "
        "or run it here with --backend local; `rph pods list` shows your pods."
    )
    assert "start_pod(pod_id='p1')" in advice and "list_gpu_types(gpu_count=2)" in advice
    assert 'backend="local"' in advice and "list_pods" in advice and "`rph" not in advice


def test_mcp_errors_from_the_sdk_name_tools(standin: StandinServer, isolated_home: Path) -> None:
    config = load_config(SENTINEL_KEY, env={}, home=isolated_home)
    server = build_server(factory=lambda: RunPod(config=config, graphql_url=standin.url))
    result = call(server, "get_pod", {"pod_id": "nope"})
    assert (
        result.is_error and "list_pods" in result.content[0].text and "rph pods" not in result.content[0].text
    )


def _public(obj: Any) -> list[str]:
    return [n for n in dir(obj) if not n.startswith("_")]


def test_the_public_api_is_documented_and_keyword_only() -> None:
    """Every public class and method of the facade has a docstring; arguments after the first are
    keyword-only (pairs that read as one thing, like source and destination, are listed)."""
    import inspect

    from runpod_hybrid.jobs import JobHandle, Jobs
    from runpod_hybrid.pods import Gpus, Pods, Volumes
    from runpod_hybrid.remote import SshRunner
    from runpod_hybrid.serverless import Endpoint, Endpoints

    # (task, inputs), (task, input), (source, destination)
    two_positional = {"map", "for_task", "call", "upload", "download"}
    for cls in (RunPod, Jobs, JobHandle, JobSpec, Pods, Gpus, Volumes, Endpoints, Endpoint, SshRunner):
        assert inspect.getdoc(cls), cls
        for name in _public(cls):
            member = inspect.getattr_static(cls, name)
            function = member.fget if isinstance(member, property) else getattr(member, "__func__", member)
            if not callable(function) or isinstance(member, type):
                continue
            assert inspect.getdoc(function), f"{cls.__name__}.{name} has no docstring"
            if isinstance(member, property | staticmethod) or name.startswith("from_"):
                continue
            positional = [
                p
                for p in inspect.signature(function).parameters.values()
                if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name not in ("self", "cls")
            ]
            allowed = 2 if name in two_positional else 1
            assert len(positional) <= allowed, f"{cls.__name__}.{name}: {[p.name for p in positional]}"


def test_map_takes_packing_and_retries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(TESTS))
    jobs = RunPod().jobs
    flaky = [{"marker": str(tmp_path / f"m{i}"), "fail_times": 1, "value": i} for i in range(3)]
    assert jobs.map("flaky", flaky, module="sample_tasks", batch_size=2, retries=1) == [0, 1, 2]
    again = [{"marker": str(tmp_path / f"n{i}"), "fail_times": 1, "value": i} for i in range(2)]
    with pytest.raises(JobError, match="flaky failure"):
        jobs.map("flaky", again, module="sample_tasks", retries=0)
