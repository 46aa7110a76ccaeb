"""The ``@task`` registry and the job shape that names a task.

    from runpod_hybrid import task

    @task
    def embed(texts: list[str]) -> list[list[float]]: ...

A task takes one JSON-able input and returns a JSON-able value; a generator task yields chunks that stream
back as they are produced (its output is the list of its chunks).

A job's input names its task as ``{"task": "embed", "value": ...}``, or, for a pack of many inputs run in one
job, ``{"task": "embed", "values": [...]}``. The task's input is under ``value``, not ``input``: RunPod's own
Python client (``runpod.Endpoint.run``) sends a dict that has a truthy ``"input"`` key as the whole request,
so ``{"task": ..., "input": 7}`` would reach the worker as a bare ``7``. With ``value`` every client wraps the
same way: ``runpod.Endpoint``, ``AsyncioEndpoint``, curl with ``{"input": {...}}`` and ours. A worker that
serves a single task runs it for any input that names none.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar, overload

F = TypeVar("F", bound=Callable[..., Any])

TASK_KEY = "task"
VALUE_KEY = "value"
VALUES_KEY = "values"


@dataclass(frozen=True)
class TaskInfo:
    name: str
    function: Callable[[Any], Any]
    streams: bool
    module: str


_REGISTRY: dict[str, TaskInfo] = {}


@overload
def task(function: F) -> F: ...
@overload
def task(*, name: str | None = None) -> Callable[[F], F]: ...


def task(function: F | None = None, *, name: str | None = None) -> F | Callable[[F], F]:
    """Register ``function`` as a task (under its own name, or ``name``)."""

    def register(fn: F) -> F:
        key = name or fn.__name__
        existing = _REGISTRY.get(key)
        # The same file imported twice (as __main__ and by its name) is the same task, not a clash.
        same_file = existing is not None and existing.function.__code__.co_filename == fn.__code__.co_filename
        if existing is not None and existing.module != fn.__module__ and not same_file:
            raise ValueError(f"task {key!r} is registered twice: in {existing.module} and {fn.__module__}")
        streams = inspect.isgeneratorfunction(fn)
        _REGISTRY[key] = TaskInfo(key, fn, streams, fn.__module__)
        fn.__rph_task__ = key  # type: ignore[attr-defined]
        return fn

    return register(function) if function is not None else register


def task_name(function: Callable[..., Any] | str) -> str:
    """The registered name of a task function (or the name itself)."""
    if isinstance(function, str):
        return function
    name = getattr(function, "__rph_task__", None)
    if name is None:
        raise ValueError(f"{getattr(function, '__name__', function)!r} is not a task: decorate it with @task")
    return str(name)


def load_task_modules(modules: Iterable[str]) -> dict[str, TaskInfo]:
    """Import the modules that define tasks (e.g. from ``RPH_TASKS``) and return the registry."""
    for raw_name in modules:
        module = raw_name.strip()
        if module:
            try:
                importlib.import_module(module)
            except ImportError as exc:
                raise ImportError(
                    f"cannot import task module {module!r}: {exc}. It must be importable from the job file's "
                    "folder, the current dir, or the installed packages (RPH_TASKS in a worker)."
                ) from exc
    return dict(_REGISTRY)


def registered() -> Mapping[str, TaskInfo]:
    """Every task registered in this process, by name."""
    return _REGISTRY


def get_task(name: str) -> TaskInfo:
    return _lookup(_REGISTRY, name)


def task_call(task: str, value: Any) -> dict[str, Any]:
    """The job input that runs ``task`` on one ``value``."""
    return {TASK_KEY: task, VALUE_KEY: value}


def task_pack(task: str, values: list[Any]) -> dict[str, Any]:
    """The job input that runs ``task`` on each of ``values`` in one job; its output has one
    ``{"output": ...}`` or ``{"error": "..."}`` per value, in order."""
    return {TASK_KEY: task, VALUES_KEY: values}


@dataclass(frozen=True)
class TaskCall:
    """What one job asks a worker to do: ``task`` on ``values`` (a pack), or on ``values[0]`` alone."""

    task: TaskInfo
    values: list[Any]
    packed: bool


def parse_call(job_input: Any, tasks: Mapping[str, TaskInfo]) -> TaskCall:
    """Read a job's input: ``{"task", "value"}``, a pack ``{"task", "values"}``, or (on a worker that serves
    a single task) any input that names none. Raises ``ValueError``/``KeyError`` saying what to send."""
    if isinstance(job_input, dict) and isinstance(job_input.get(TASK_KEY), str):
        keys = set(job_input)
        if keys <= {TASK_KEY, VALUE_KEY, VALUES_KEY} and not {VALUE_KEY, VALUES_KEY} <= keys:
            info = _lookup(tasks, job_input[TASK_KEY])
            if VALUES_KEY in job_input:
                values = job_input[VALUES_KEY]
                if not isinstance(values, list):
                    raise ValueError(f'"values" must be a list of inputs for task {info.name!r}')
                return TaskCall(info, values, packed=True)
            return TaskCall(info, [job_input.get(VALUE_KEY)], packed=False)
        if keys == {TASK_KEY, "input"} and job_input[TASK_KEY] in tasks:
            raise ValueError(
                f'put the task\'s input under "value": {{"task": "{job_input[TASK_KEY]}", "value": ...}} '
                '("input" inside the job input is taken as the request by runpod.Endpoint)'
            )
    if len(tasks) == 1:
        [info] = tasks.values()
        return TaskCall(info, [job_input], packed=False)
    names = ", ".join(sorted(tasks)) or "none"
    raise ValueError(
        f'the job input names no task and this worker serves several ({names}): send {{"task": "<name>", '
        '"value": <input>}'
    )


def _lookup(tasks: Mapping[str, TaskInfo], name: str) -> TaskInfo:
    try:
        return tasks[name]
    except KeyError:
        raise KeyError(
            f"unknown task {name!r}; registered tasks: {', '.join(sorted(tasks)) or 'none'}"
        ) from None
