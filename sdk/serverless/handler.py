"""The serverless handler: runs ``@task`` functions named in jobs shaped ``{"task": name, "input": ...}``.

Imports neither ``runpod`` nor anything from the network: the worker's entry point
(``python -m runpod_hybrid_worker``) starts RunPod's worker runtime with :func:`handler`. Tasks run in a
thread so the worker's event loop stays free to hear a per-job stop (cancel or timeout); a stopped task gets
``JobStopped`` raised inside it at its next Python instruction. Worker processes (local or on RunPod) are
made to die with their parent (:func:`die_with_parent`).
"""

from __future__ import annotations

import asyncio
import ctypes
import signal
import sys
import threading
import traceback
from collections.abc import AsyncIterator
from typing import Any

from .tasks import get_task

TRACEBACK_LINES = 8
_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """In a child, before exec or right after fork: have Linux kill it when its parent dies
    (``PR_SET_PDEATHSIG``; elsewhere a no-op). The signal comes when the parent *thread* that forked it
    exits, so call it only for children forked by a main thread."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class JobStopped(BaseException):
    """Raised inside a task thread when its job was cancelled or timed out."""


def describe_error(exc: BaseException) -> str:
    """``Type: message`` and the last lines of the traceback, as one string (RunPod needs str errors)."""
    lines = traceback.format_exception(exc)
    short = "".join(lines[-TRACEBACK_LINES:]).rstrip()
    return f"{type(exc).__name__}: {exc}\n{short}"


def parse_job_input(job: dict[str, Any]) -> tuple[str, Any]:
    payload = job.get("input")
    if not isinstance(payload, dict) or not isinstance(payload.get("task"), str):
        raise ValueError('job input must be {"task": "<name>", "input": ...}')
    return payload["task"], payload.get("input")


def _stop_thread(thread: threading.Thread) -> None:
    if thread.ident is not None and thread.is_alive():
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread.ident), ctypes.py_object(JobStopped))


async def handler(job: dict[str, Any]) -> AsyncIterator[Any]:
    """Yield each chunk of a streaming task, or the one value of a plain task; yield ``{"error": str}`` on
    failure (RunPod marks the job FAILED with that string)."""
    try:
        name, task_input = parse_job_input(job)
        info = get_task(name)
    except (ValueError, KeyError) as exc:
        yield {"error": describe_error(exc)}
        return
    loop = asyncio.get_running_loop()
    chunks: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

    def put(kind: str, value: Any) -> None:
        loop.call_soon_threadsafe(chunks.put_nowait, (kind, value))

    def run() -> None:
        try:
            if info.streams:
                for chunk in info.function(task_input):
                    put("chunk", chunk)
            else:
                put("chunk", info.function(task_input))
        except JobStopped:
            put("stopped", None)
        except BaseException as exc:  # every task failure goes back as the job's error
            put("error", describe_error(exc))
        finally:
            put("done", None)

    thread = threading.Thread(target=run, name=f"task-{job.get('id')}", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = await chunks.get()
            if kind == "done":
                return
            if kind == "error":
                yield {"error": value}
                return
            if kind == "chunk":
                yield value
    except asyncio.CancelledError:
        _stop_thread(thread)
        raise
