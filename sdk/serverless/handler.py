"""Running a job's input through ``@task`` functions: the one code path of the serverless worker and of the
local process pool.

:func:`execute` reads a job input (``{"task", "value"}``, a pack ``{"task", "values"}``, or a bare input on a
worker with a single task) and returns what the job's output is: a plain task's return value, a generator
task's list of chunks, or for a pack one ``{"output": ...}`` or ``{"error": "..."}`` per input. A failure
raises :class:`TaskFailed` with the string RunPod shows as the job's error.

:func:`make_handler` wraps it as RunPod's handler: a plain ``async`` function, so RunPod's runtime treats
every job as it treats any plain handler (its output is the return value; ``--test_input``,
``test_input.json`` and ``--rp_serve_api`` run it and report failures). A generator task's chunks go to
``post_chunk`` as they come (the worker entry point posts them to RunPod's stream). Tasks run in a thread so
the worker's event loop stays free to hear a per-job stop (cancel or timeout); a stopped task gets
``JobStopped`` raised inside it at its next Python instruction. Nothing here imports ``runpod``.
"""

from __future__ import annotations

import asyncio
import ctypes
import signal
import sys
import threading
import traceback
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from .tasks import TaskInfo, parse_call, registered, task_pack

TRACEBACK_LINES = 8
_PR_SET_PDEATHSIG = 1

ChunkSink = Callable[[dict[str, Any], Any], Awaitable[None]]


def die_with_parent() -> None:
    """In a child, before exec or right after fork: have Linux kill it when its parent dies
    (``PR_SET_PDEATHSIG``; elsewhere a no-op). The signal comes when the parent *thread* that forked it
    exits, so call it only for children forked by a main thread."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class JobStopped(BaseException):
    """Raised inside a task thread when its job was cancelled or timed out."""


class TaskFailed(Exception):
    """A job's task failed; ``error`` is the string that becomes the job's error."""

    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


def describe_error(exc: BaseException) -> str:
    """``Type: message`` and the last lines of the traceback from the task's own code on, as one string
    (RunPod needs str errors)."""
    frames = exc.__traceback__
    while frames is not None and frames.tb_frame.f_code.co_filename == __file__:
        frames = frames.tb_next  # this module's frames say nothing about the task
    lines = traceback.format_exception(type(exc), exc, frames)
    short = "".join(lines[-TRACEBACK_LINES:]).rstrip()
    return f"{type(exc).__name__}: {exc}\n{short}"


def soft_error(value: Any) -> str | None:
    """RunPod's convention: a handler that returns a dict with a truthy ``error`` failed with it."""
    if isinstance(value, dict) and value.get("error"):
        return str(value["error"])
    return None


def run_value(info: TaskInfo, value: Any, on_chunk: Callable[[Any], None] | None = None) -> Any:
    """One input through one task: its return value, or the list of a generator's chunks."""
    if not info.streams:
        return info.function(value)
    chunks = []
    for chunk in info.function(value):
        chunks.append(chunk)
        if on_chunk is not None:
            on_chunk(chunk)
    return chunks


def _outcome(info: TaskInfo, value: Any) -> dict[str, Any]:
    try:
        output = run_value(info, value)
    except JobStopped:
        raise
    except BaseException as exc:  # one input's failure is that input's result, not the pack's
        return {"error": describe_error(exc)}
    error = soft_error(output)
    return {"error": error} if error else {"output": output}


def execute(
    job_input: Any,
    *,
    on_chunk: Callable[[Any], None] | None = None,
    tasks: Mapping[str, TaskInfo] | None = None,
) -> Any:
    """A job input's output (see the module doc); raises :class:`TaskFailed`."""
    try:
        call = parse_call(job_input, registered() if tasks is None else tasks)
    except (ValueError, KeyError) as exc:
        raise TaskFailed(f"{type(exc).__name__}: {exc.args[0] if exc.args else exc}") from None
    if call.packed:
        return [_outcome(call.task, value) for value in call.values]
    try:
        output = run_value(call.task, call.values[0], on_chunk)
    except JobStopped:
        raise
    except BaseException as exc:  # every task failure is the job's error
        raise TaskFailed(describe_error(exc)) from exc
    error = soft_error(output)
    if error:
        raise TaskFailed(error)
    return output


def execute_pack(task: str, values: list[Any]) -> list[dict[str, Any]]:
    """A pack of inputs through ``task`` (what the local process pool runs in its workers)."""
    outcomes: list[dict[str, Any]] = execute(task_pack(task, values))
    return outcomes


def _stop_thread(thread: threading.Thread) -> None:
    if thread.ident is not None and thread.is_alive():
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread.ident), ctypes.py_object(JobStopped))


def make_handler(post_chunk: ChunkSink | None = None) -> Callable[[dict[str, Any]], Awaitable[Any]]:
    """RunPod's handler for every registered task; ``post_chunk(job, chunk)`` gets a generator task's chunks
    as they come."""

    async def handler(job: dict[str, Any]) -> Any:
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

        def put(kind: str, value: Any) -> None:
            loop.call_soon_threadsafe(events.put_nowait, (kind, value))

        def work() -> None:
            try:
                output = execute(job.get("input"), on_chunk=lambda chunk: put("chunk", chunk))
            except JobStopped:
                put("error", "the job was stopped (cancelled or timed out)")
            except TaskFailed as exc:
                put("error", exc.error)
            else:
                put("output", output)

        thread = threading.Thread(target=work, name=f"task-{job.get('id')}", daemon=True)
        thread.start()
        try:
            while True:
                kind, value = await events.get()
                if kind == "chunk":
                    if post_chunk is not None:
                        await post_chunk(job, value)
                elif kind == "error":
                    return {"error": value}
                else:
                    return value
        except asyncio.CancelledError:
            _stop_thread(thread)
            raise

    return handler
