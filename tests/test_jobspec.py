from __future__ import annotations

from pathlib import Path

import pytest

from runpod_hybrid.errors import ConfigError
from runpod_hybrid.jobs import load_job_file
from runpod_hybrid.jobs.spec import check_job


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "job.toml"
    path.write_text(text)
    return path


def test_task_job_with_inputs_file(tmp_path: Path) -> None:
    (tmp_path / "in.jsonl").write_text('"a"\n{"b": 1}\n\n')
    job = load_job_file(
        write(
            tmp_path,
            '[task]\nmodule = "t"\nname = "f"\ninputs_file = "in.jsonl"\n'
            "[limits]\nbudget_usd = 2\nspot = true\n",
        )
    )
    assert (job.kind, job.task, job.inputs, job.budget_usd, job.spot) == (
        "task",
        "f",
        ("a", {"b": 1}),
        2,
        True,
    )
    assert job.name == "job"


def test_command_job_resolves_workdir_against_the_file(tmp_path: Path) -> None:
    job = load_job_file(
        write(
            tmp_path,
            '[command]\nargv = ["python", "x.py"]\nworkdir = "src"\noutputs = ["out"]\n'
            '[resources]\ngpu = ["NVIDIA A40"]\ngpu_count = 2\ncloud = "community"\n',
        )
    )
    assert job.workdir == str(tmp_path / "src") and job.outputs == ("out",)
    assert job.gpu_types == ("NVIDIA A40",) and job.gpu_count == 2 and job.cloud_type == "COMMUNITY"


def test_a_command_job_names_its_pod_and_keeps_it_warm(tmp_path: Path) -> None:
    job = load_job_file(
        write(
            tmp_path,
            'pod = "abc123"\n[command]\nargv = ["sh", "t.sh"]\n[limits]\non_finish = "keep"\nidle_stop_min = 30\n',
        )
    )
    assert (job.pod, job.on_finish, job.idle_stop_min) == ("abc123", "keep", 30)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[task]\nname = "f"\n', "`task.module` is required"),
        ("[command]\nargv = []\n", "`command.argv` is required"),
        ('[task]\nmodule = "m"\nname = "f"\n[command]\nargv = ["x"]\n', "exactly one of [task] or [command]"),
        ('[command]\nargv = ["x"]\n[resources]\ngpu_count = 0\n', "`resources.gpu_count` must be at least 1"),
        ('[command]\nargv = ["x"]\n[resources]\ngpus = ["A"]\n', "unknown key `resources.gpus`"),
        ('[command]\nargv = ["x"]\n[limits]\non_finish = "explode"\n', "`limits.on_finish` must be one of"),
        (
            '[command]\nargv = ["x"]\n[limits]\nbudget_usd = "lots"\n',
            "`limits.budget_usd` must be int or float",
        ),
        ('[command]\nargv = ["x"]\n[limits]\nbudget_usd = -1\n', "must not be negative"),
        ('[task]\nmodule = "m"\nname = "f"\ninputs_file = "missing.jsonl"\n', "does not exist"),
        ("[command\n", "not valid TOML"),
    ],
)
def test_bad_job_files_point_at_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_job_file(path)
    assert str(path) in str(info.value) and message in str(info.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[command]\nargv = ["x"]\n[limits]\nidle_stop_min = 0\n',
            "`limits.idle_stop_min` must be more than 0",
        ),
        ('pod = "abc"\n[task]\nmodule = "m"\nname = "f"\ninputs = [1]\n', "`pod` is for command jobs"),
    ],
)
def test_checks_every_plan_runs_refuse_a_pod_for_a_task_and_no_idle_time(
    tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        check_job(load_job_file(write(tmp_path, text)))
