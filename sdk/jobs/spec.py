"""One job description for every backend, from Python or a TOML job file.

A job is either a *task* (a registered ``@task`` over one or many JSON inputs) or a *command* (an argv run in
an uploaded work dir, with declared outputs). TOML layout (every key optional unless marked)::

    name = "train-small"
    pod = "abc123xyz"           # run on this running pod of yours (it stays up afterwards)
    [task]                      # either [task] ...
    module = "examples.hash_texts.tasks"   # required: the module defining the @task
    name = "embed"                         # required
    inputs = ["a", "b"]                    # or inputs_file = "texts.jsonl" (one JSON value per line)
    endpoint = "hasher"                    # a deployed endpoint (name in settings, or id)
    [command]                   # ... or [command]
    argv = ["python", "train.py"]          # required
    workdir = "."                          # uploaded; relative to the job file
    outputs = ["out"]                      # relative to workdir; fetched and verified at the end
    [resources]
    gpu = ["NVIDIA GeForce RTX 4090"]      # ids in order of preference
    min_vram_gb = 16; gpu_count = 1; cloud = "SECURE"; image = "..."; container_disk_gb = 20; volume_gb = 20
    network_volume = "vol-id"
    [limits]
    expected_runtime_s = 60                # per input for a task, total for a command
    max_runtime_s = 3600; budget_usd = 2.0; spot = false; on_finish = "stop"   # none | stop | terminate | keep
    idle_stop_min = 15                     # on_finish = "keep": the pod stops after this long without a job
"""

from __future__ import annotations

import json
import shlex
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from runpod_hybrid.errors import ConfigError

ON_FINISH = ("none", "stop", "terminate", "keep")
DEFAULT_IDLE_STOP_MIN = 15.0


OnFinish = Literal["none", "stop", "terminate", "keep"]


@dataclass(frozen=True)
class JobSpec:
    """What to run and what it needs; the planner chooses where. Build one with :meth:`for_command`,
    :meth:`for_task` or :func:`load_job_file`.

    A *command* job runs ``command`` (an argv) in a copy of ``workdir`` and fetches ``outputs`` (paths
    relative to the work dir), verified by checksum. A *task* job runs the ``@task`` named ``task`` over
    ``inputs``, one result per input. The rest are resources (GPU types in order of preference, count,
    cloud, image, disks, a network volume) and limits (``expected_runtime_s`` per input for a task and in
    all for a command, ``max_runtime_s``, ``budget_usd``, ``spot``, and ``on_finish``: what happens to a
    pod once its outputs are fetched and verified: ``stop``, ``terminate``, ``none``, or ``keep`` it warm for
    the next job until ``idle_stop_min`` pass without one). ``pod`` runs a command job on a running pod of
    yours instead of a new one; the pod stays up afterwards.
    """

    name: str
    kind: Literal["task", "command"]
    task: str | None = None
    task_module: str | None = None
    inputs: tuple[Any, ...] = ()
    endpoint: str | None = None
    command: tuple[str, ...] = ()
    workdir: str | None = None
    outputs: tuple[str, ...] = ()
    gpu_types: tuple[str, ...] = ()
    min_vram_gb: int = 0
    gpu_count: int = 1
    cloud_type: str | None = None
    image: str | None = None
    container_disk_gb: int | None = None
    volume_gb: int | None = None
    network_volume_id: str | None = None
    expected_runtime_s: float = 60.0
    max_runtime_s: float | None = None
    spot: bool = False
    budget_usd: float | None = None
    on_finish: OnFinish = "stop"
    idle_stop_min: float | None = None
    pod: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def for_task(cls, task: str, inputs: list[Any], *, module: str | None = None, **options: Any) -> JobSpec:
        """A job running the ``@task`` named ``task`` over ``inputs`` (JSON values). ``module`` is where the
        task is defined, imported by the workers; ``options`` are any other field (``endpoint``,
        ``budget_usd``, ``expected_runtime_s``...)."""
        return cls(
            name=options.pop("name", task),
            kind="task",
            task=task,
            task_module=module,
            inputs=tuple(inputs),
            **options,
        )

    @classmethod
    def for_command(
        cls,
        command: list[str] | tuple[str, ...] | str,
        *,
        workdir: str = ".",
        outputs: tuple[str, ...] = (),
        **options: Any,
    ) -> JobSpec:
        """A job running ``command`` in a copy of ``workdir``: an argv (``["python3", "train.py"]``), or one
        string split as a POSIX shell would (``"python3 train.py --lr 0.1"``; no pipes or ``&&``: for those,
        pass ``["sh", "-c", "..."]``). ``outputs`` (relative to the work dir) are fetched and verified at the
        end; ``options`` are any other field (``gpu_types``, ``budget_usd``, ``on_finish``...)."""
        argv = _split_command(command)
        return cls(
            name=options.pop("name", Path(argv[0]).name),
            kind="command",
            command=argv,
            workdir=workdir,
            outputs=outputs,
            **options,
        )


def check_job(job: JobSpec) -> None:
    """Refuse a job that cannot work before anything runs or is paid for, naming the job-file key: the
    work dir must be a dir, outputs paths inside it, the task module findable, and there must be inputs.
    (A task module is found, not imported: its imports may exist only in the worker image.)"""
    import importlib.machinery
    import os
    import sys

    from runpod_hybrid.errors import LocalPathError

    where = f"job {job.name!r}"
    if job.kind == "command":
        workdir = Path(job.workdir or ".")
        if not workdir.is_dir():
            raise LocalPathError(
                f"{where}: `command.workdir` {workdir} is not a directory here, so there is nothing to upload. "
                "Give the folder holding the code (relative to the job file)."
            )
        for output in job.outputs:
            parts = Path(output).parts
            if not output or Path(output).is_absolute() or ".." in parts:
                raise ConfigError(
                    f"{where}: `command.outputs` entry {output!r} must be a path inside the work dir "
                    '(relative, without \'..\'), e.g. "out" or "checkpoints/final.pt".'
                )
        if len(set(job.outputs)) != len(job.outputs):
            raise ConfigError(f"{where}: `command.outputs` lists a path twice.")
        if job.idle_stop_min is not None and job.idle_stop_min <= 0:
            raise ConfigError(f"{where}: `limits.idle_stop_min` must be more than 0 (minutes).")
        return
    if job.pod:
        raise ConfigError(f"{where}: `pod` is for command jobs; a task runs on serverless or here.")
    if not job.inputs:
        raise ConfigError(f"{where}: the task has no inputs (`task.inputs` or `task.inputs_file`).")
    if job.task_module:
        # Where the workers will look: beside the job file, the current dir, and this interpreter's path.
        task_path = job.extra.get("task_path")
        path = [p for p in (task_path, os.getcwd(), *sys.path) if p]
        if importlib.machinery.PathFinder.find_spec(job.task_module.split(".")[0], path) is None:
            raise ConfigError(
                f"{where}: `task.module` {job.task_module!r} cannot be found"
                + (f" beside the job file ({task_path})" if task_path else "")
                + " or on the Python path. Put the module there, or fix its name."
            )


def _split_command(command: list[str] | tuple[str, ...] | str) -> tuple[str, ...]:
    if isinstance(command, str):
        try:
            argv = shlex.split(command)
        except ValueError as exc:
            raise ValueError(f"cannot split the command {command!r} into words: {exc}") from exc
    else:
        argv = list(command)
        if not all(isinstance(word, str) for word in argv):
            raise TypeError("a command's argv must be strings")
    if not argv:
        raise ValueError("the command is empty: give an argv such as ['python3', 'train.py']")
    return tuple(argv)


class _Reader:
    """Typed access to one TOML table, with errors that name the file and the key."""

    def __init__(self, path: Path, table: Mapping[str, Any], prefix: str, allowed: set[str]) -> None:
        self.path, self.table, self.prefix = path, table, prefix
        unknown = set(table) - allowed
        if unknown:
            raise ConfigError(
                f"{path}: unknown key {self._key(sorted(unknown)[0])}; allowed here: "
                f"{', '.join(sorted(allowed))}."
            )

    def _key(self, key: str) -> str:
        return f"`{self.prefix}{key}`"

    def get(
        self, key: str, kind: type | tuple[type, ...], default: Any = None, *, required: bool = False
    ) -> Any:
        if key not in self.table:
            if required:
                raise ConfigError(f"{self.path}: {self._key(key)} is required.")
            return default
        value = self.table[key]
        if isinstance(value, bool) and kind is not bool and (kind is int or kind == (int, float)):
            raise ConfigError(f"{self.path}: {self._key(key)} must be a number, got {value!r}.")
        if not isinstance(value, kind):
            names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
            raise ConfigError(f"{self.path}: {self._key(key)} must be {names}, got {value!r}.")
        if isinstance(value, int | float) and not isinstance(value, bool) and value < 0:
            raise ConfigError(f"{self.path}: {self._key(key)} must not be negative, got {value!r}.")
        return value

    def strings(self, key: str, default: tuple[str, ...] = ()) -> tuple[str, ...]:
        value = self.get(key, list, None)
        if value is None:
            return default
        if not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{self.path}: {self._key(key)} must be a list of strings.")
        return tuple(value)


def load_job_file(path: Path) -> JobSpec:
    """Read and validate a TOML job file; every error names the file and the bad key."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"No job file at {path}.") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}.") from exc
    top = _Reader(path, data, "", {"name", "pod", "task", "command", "resources", "limits"})
    if ("task" in data) == ("command" in data):
        raise ConfigError(f"{path}: give exactly one of [task] or [command].")
    base = path.parent
    resources = _Reader(
        path,
        data.get("resources", {}),
        "resources.",
        {
            "gpu",
            "min_vram_gb",
            "gpu_count",
            "cloud",
            "image",
            "container_disk_gb",
            "volume_gb",
            "network_volume",
        },
    )
    limits = _Reader(
        path,
        data.get("limits", {}),
        "limits.",
        {"expected_runtime_s", "max_runtime_s", "budget_usd", "spot", "on_finish", "idle_stop_min"},
    )
    on_finish = limits.get("on_finish", str, "stop")
    if on_finish not in ON_FINISH:
        raise ConfigError(
            f"{path}: `limits.on_finish` must be one of {', '.join(ON_FINISH)}, got {on_finish!r}."
        )
    cloud = resources.get("cloud", str)
    if cloud is not None and cloud.upper() not in ("SECURE", "COMMUNITY", "ALL"):
        raise ConfigError(f"{path}: `resources.cloud` must be SECURE, COMMUNITY or ALL, got {cloud!r}.")
    gpu_count = resources.get("gpu_count", int, 1)
    if gpu_count < 1:
        raise ConfigError(f"{path}: `resources.gpu_count` must be at least 1.")
    common: dict[str, Any] = {
        "name": top.get("name", str, path.stem),
        "gpu_types": resources.strings("gpu"),
        "min_vram_gb": resources.get("min_vram_gb", int, 0),
        "gpu_count": gpu_count,
        "cloud_type": cloud.upper() if cloud else None,
        "image": resources.get("image", str),
        "container_disk_gb": resources.get("container_disk_gb", int),
        "volume_gb": resources.get("volume_gb", int),
        "network_volume_id": resources.get("network_volume", str),
        "expected_runtime_s": float(limits.get("expected_runtime_s", (int, float), 60.0)),
        "max_runtime_s": limits.get("max_runtime_s", (int, float)),
        "budget_usd": limits.get("budget_usd", (int, float)),
        "spot": limits.get("spot", bool, False),
        "on_finish": on_finish,
        "idle_stop_min": limits.get("idle_stop_min", (int, float)),
        "pod": top.get("pod", str),
    }
    if "task" in data:
        task = _Reader(path, data["task"], "task.", {"module", "name", "inputs", "inputs_file", "endpoint"})
        if "inputs" in data["task"] and "inputs_file" in data["task"]:
            raise ConfigError(f"{path}: give `task.inputs` or `task.inputs_file`, not both.")
        inputs: list[Any] = task.get("inputs", list, [])
        inputs_file = task.get("inputs_file", str)
        if inputs_file:
            source = base / inputs_file
            try:
                lines = source.read_text(encoding="utf-8").splitlines()
            except FileNotFoundError as exc:
                raise ConfigError(f"{path}: `task.inputs_file` {source} does not exist.") from exc
            try:
                inputs = [json.loads(line) for line in lines if line.strip()]
            except ValueError as exc:
                raise ConfigError(f"{path}: `task.inputs_file` {source} is not JSON lines: {exc}.") from exc
        return JobSpec(
            kind="task",
            task=task.get("name", str, required=True),
            task_module=task.get("module", str, required=True),
            inputs=tuple(inputs),
            endpoint=task.get("endpoint", str),
            extra={"task_path": str(base.resolve())},
            **common,
        )
    command = _Reader(path, data["command"], "command.", {"argv", "workdir", "outputs"})
    argv = command.strings("argv")
    if not argv:
        raise ConfigError(f"{path}: `command.argv` is required (a list of strings).")
    workdir = str((base / command.get("workdir", str, ".")).resolve())
    return JobSpec(
        kind="command", command=argv, workdir=workdir, outputs=command.strings("outputs"), **common
    )
