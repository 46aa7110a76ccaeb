"""The local backend for tasks against `multiprocessing.Pool` of the same size, in one run.

    .venv/bin/python bench/local_map.py [--inputs 1000] [--workers N]

Measures, each from a cold start (pool processes started inside the timing):
- 1,000 inputs of a 10 ms task: `LocalPool.map` and `RunPod().jobs.map(..., backend="local")` (the whole
  job path: job store, plan, pool) against `multiprocessing.Pool(N).map`. Target: at most 1.5x its wall.
- 1,000 trivial inputs through `RunPod().jobs.map(..., backend="local")`. Target: under 2 s.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_tasks  # noqa: E402

from runpod_hybrid import RunPod  # noqa: E402
from runpod_hybrid.serverless import LocalPool  # noqa: E402


def timed(run: Callable[[], list[object]], expected: list[object]) -> float:
    started = time.perf_counter()
    results = run()
    wall = time.perf_counter() - started
    assert results == expected, "wrong results"
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--inputs", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    inputs = list(range(args.inputs))
    doubled: list[object] = [x * 2 for x in inputs]
    # A throwaway state dir: the job store of this run is not the user's.
    os.environ["XDG_STATE_HOME"] = tempfile.mkdtemp(prefix="rph-bench-")
    os.environ.pop("RUNPOD_API_KEY", None)

    def pool_map() -> list[object]:
        with multiprocessing.Pool(args.workers) as pool:
            return list(pool.map(bench_tasks.work10ms, inputs))

    def local_pool_map() -> list[object]:
        with LocalPool(["bench_tasks"], workers=args.workers) as pool:
            return list(pool.map("work10ms", inputs))

    def jobs_map(task: Callable[[int], object]) -> Callable[[], list[object]]:
        return lambda: list(RunPod().jobs.map(task, inputs, backend="local"))

    baseline = timed(pool_map, doubled)
    ours = timed(local_pool_map, doubled)
    via_jobs = timed(jobs_map(bench_tasks.work10ms), doubled)
    trivial = timed(jobs_map(bench_tasks.identity), list(inputs))
    print(f"{args.inputs} inputs, {args.workers} processes each, cold starts, one run")
    print(f"multiprocessing.Pool.map, 10 ms task:        {baseline:6.2f} s")
    print(
        f"LocalPool.map, 10 ms task:                   {ours:6.2f} s  ({ours / baseline:.2f}x the pool; target <= 1.5)"
    )
    print(
        f"RunPod().jobs.map(backend=local), 10 ms:     {via_jobs:6.2f} s  ({via_jobs / baseline:.2f}x the pool; target <= 1.5)"
    )
    print(f"RunPod().jobs.map(backend=local), trivial:   {trivial:6.2f} s  (target < 2)")


if __name__ == "__main__":
    main()
