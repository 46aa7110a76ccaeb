"""Our `map` (packing on) against RunPod's own client (`runpod.Endpoint`: run, then poll its status once a
second as its docs and its own `output()` do, from a thread pool of the same size), through the same local
endpoint with real workers (RunPod's runtime), in one run.

    .venv/bin/python bench/serverless_map.py [--inputs 1000] [--workers 8]

Prints wall time, HTTP requests per input and client CPU per input for both, and the ratios. Targets
(issue "Serverless that RunPod's own clients and runtime accept"): at least 10x fewer HTTP requests per
input and at least 5x faster wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_tasks  # noqa: E402, F401 - registers the task
from local_endpoint import local_endpoint  # noqa: E402

from runpod_hybrid._http import HttpTransport  # noqa: E402
from runpod_hybrid.config import ApiKey  # noqa: E402
from runpod_hybrid.serverless import Endpoint  # noqa: E402

CLIENT_ROUTES = ("run", "runsync", "status", "status-sync", "stream", "cancel")
KEY = "bench-key"


def client_requests(base_url: str) -> int:
    url = f"{base_url}/local/emulator-stats"
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {KEY}"})  # noqa: S310 - loopback
    with urllib.request.urlopen(request) as response:  # noqa: S310 - loopback
        counts = json.loads(response.read())["requests"]
    return sum(counts.get(route, 0) for route in CLIENT_ROUTES)


def measure(base_url: str, run: Callable[[], None]) -> tuple[float, float, int]:
    """Wall time, this process's CPU time (the client only: the endpoint runs in another process), requests."""
    before = client_requests(base_url)
    wall, cpu = time.perf_counter(), time.process_time()
    run()
    return time.perf_counter() - wall, time.process_time() - cpu, client_requests(base_url) - before


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--inputs", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=8)
    args = parser.parse_args()
    inputs = list(range(args.inputs))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), *sys.path])}
    with local_endpoint(args.workers, env, "--api-key", KEY) as base_url:
        ours = Endpoint("local", HttpTransport(ApiKey(KEY, "bench")), base_url=base_url)
        import runpod

        runpod.api_key = KEY
        runpod.endpoint_url_base = base_url
        theirs = runpod.Endpoint("local")

        def run_theirs() -> None:
            def one(x: int) -> object:
                job = theirs.run({"task": "work20ms", "value": x})
                return job.output(timeout=600)  # polls the status once a second until the job ends

            with ThreadPoolExecutor(max_workers=args.workers) as pool:
                results = list(pool.map(one, inputs))
            assert results == [x * 2 for x in inputs]

        def run_ours() -> None:
            results = list(ours.map("work20ms", inputs, concurrency=args.workers, batch_size="auto"))
            assert results == [x * 2 for x in inputs]

        ours_wall, ours_cpu, ours_requests = measure(base_url, run_ours)
        theirs_wall, theirs_cpu, theirs_requests = measure(base_url, run_theirs)
    n = args.inputs
    print(f"{n} inputs of a 20 ms task, {args.workers} workers, local endpoint (RunPod's runtime), one run")
    print(
        f"runpod.Endpoint + {args.workers} threads: {theirs_wall:7.2f} s wall, {theirs_requests / n:.3f} requests/input, "
        f"{theirs_cpu / n * 1000:.2f} ms client CPU/input"
    )
    print(
        f"our map (packing on):      {ours_wall:7.2f} s wall, {ours_requests / n:.3f} requests/input, "
        f"{ours_cpu / n * 1000:.2f} ms client CPU/input"
    )
    print(
        f"requests per input: {theirs_requests / max(ours_requests, 1):.1f}x fewer (target >= 10); "
        f"wall time: {theirs_wall / ours_wall:.1f}x faster (target >= 5)"
    )


if __name__ == "__main__":
    main()
