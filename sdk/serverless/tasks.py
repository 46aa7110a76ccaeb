"""The ``@task`` registry: functions a serverless worker (or the local backend) can run by name.

    from runpod_hybrid import task

    @task
    def embed(texts: list[str]) -> list[list[float]]: ...

A task takes one JSON-able input and returns a JSON-able value; a generator task yields chunks that
stream back as they are produced.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar, overload

F = TypeVar("F", bound=Callable[..., Any])


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


def unwrap_output(task: str, output: Any) -> Any:
    """Our worker returns what a task yielded, as a list; a plain task yields once: unwrap that one value."""
    info = _REGISTRY.get(task)
    if not (info.streams if info else False) and isinstance(output, list) and len(output) == 1:
        return output[0]
    return output


def get_task(name: str) -> TaskInfo:
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY)) or "none"
        raise KeyError(f"unknown task {name!r}; registered tasks: {known}") from None
