"""``python -m runpod_hybrid_worker``: start RunPod's worker runtime on our task handler.

The only place in runpod-hybrid that imports ``runpod``. Task modules come from ``RPH_TASKS``
(comma-separated module names importable in the worker image).
"""

from __future__ import annotations

import os
import sys
import threading


def main() -> None:
    from runpod_hybrid import configure_logging
    from runpod_hybrid.serverless import die_with_parent, handler, load_task_modules

    configure_logging(json_output=True)
    modules = [m for m in os.environ.get("RPH_TASKS", "").split(",") if m.strip()]
    if not modules:
        sys.stderr.write("RPH_TASKS is empty: name the modules that define your @task functions.\n")
        sys.exit(2)
    load_task_modules(modules)

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
    # runs several tasks at once (in threads) for light tasks; keep 1 for tasks that fill the GPU.
    slots = max(1, int(os.environ.get("RPH_WORKER_CONCURRENCY", "1")))

    # The handler is an async generator for every task; with return_aggregate_stream the job's output is
    # the list of what the task yielded (one element for a plain task), and /stream sees each chunk.
    runpod.serverless.start(
        {"handler": handler, "return_aggregate_stream": True, "concurrency_modifier": lambda _current: slots}
    )


if __name__ == "__main__":
    main()
