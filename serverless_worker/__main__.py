"""``python -m runpod_hybrid_worker``: start RunPod's worker runtime on our task handler.

The only place in runpod-hybrid that imports ``runpod``. Task modules come from ``RPH_TASKS``
(comma-separated module names importable in the worker image). RunPod's own local modes work unchanged:
``--test_input '{"input": {...}}'``, a ``test_input.json`` in the current dir, and ``--rp_serve_api``.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Any

EXIT_NO_TASKS = 2
EXIT_IMPORT_FAILED = 3


def _streams_to_runpod() -> bool:
    """Whether chunks have somewhere to go: a real (or emulated) endpoint, not one of RunPod's local modes."""
    local_mode = any(arg.startswith(("--test_input", "--rp_serve_api")) for arg in sys.argv[1:])
    return not local_mode and bool(os.environ.get("RUNPOD_WEBHOOK_POST_STREAM"))


def _chunk_poster() -> Any:
    """Posts a generator task's chunks to the job's stream, with the call RunPod's runtime makes for a
    generator handler (so ``/stream`` sees them), on one HTTP session per worker."""
    from runpod.http_client import AsyncClientSession
    from runpod.serverless.modules.rp_http import stream_result

    session: list[Any] = []

    async def post_chunk(job: dict[str, Any], chunk: Any) -> None:
        if not session:
            session.append(AsyncClientSession())
        await stream_result(session[0], {"output": chunk}, job)

    return post_chunk


def main() -> None:
    from runpod_hybrid import configure_logging
    from runpod_hybrid.serverless import die_with_parent, load_task_modules, make_handler

    configure_logging(json_output=True)
    modules = [m for m in os.environ.get("RPH_TASKS", "").split(",") if m.strip()]
    if not modules:
        sys.stderr.write("RPH_TASKS is empty: name the modules that define your @task functions.\n")
        sys.exit(EXIT_NO_TASKS)
    try:
        load_task_modules(modules)
    except ImportError as exc:  # the worker cannot serve anything: say why, and fail fast
        sys.stderr.write(f"runpod-hybrid worker: {exc}\n")
        sys.exit(EXIT_IMPORT_FAILED)

    import runpod

    # RunPod's runtime forks, from the main thread, a heartbeat process that pings forever: it must not
    # outlive this worker. (Not for forks from task threads: the signal would come when that thread ends.)
    forked_from_main = [False]
    os.register_at_fork(
        before=lambda: forked_from_main.__setitem__(0, threading.current_thread() is threading.main_thread()),
        after_in_child=lambda: die_with_parent() if forked_from_main[0] else None,
    )

    # RunPod's runtime fetches a new job only when it has a free slot, and otherwise re-checks once a
    # second: with one slot a worker does at most about one short job per second. RPH_WORKER_CONCURRENCY
    # runs several tasks at once (in threads) for light tasks; keep 1 for tasks that fill the GPU. Many
    # small inputs are better sent as packs (map's batch_size), one job each.
    slots = max(1, int(os.environ.get("RPH_WORKER_CONCURRENCY", "1")))

    # A plain handler: a job's output is the task's return value (a generator task's: its chunks, which
    # also stream as they come), and RunPod's local test modes run it and report failures.
    handler = make_handler(_chunk_poster() if _streams_to_runpod() else None)
    runpod.serverless.start({"handler": handler, "concurrency_modifier": lambda _current: slots})


if __name__ == "__main__":
    main()
