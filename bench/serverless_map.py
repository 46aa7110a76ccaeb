"""Our `map` against RunPod's own client (`runpod.Endpoint`: run, then poll status, as its docs show, from a
thread pool of the same size), through the same local endpoint with real workers, in one run.

    .venv/bin/python bench/serverless_map.py [--inputs 1000] [--workers 8] [--slots 4]

Prints the wall-time ratio, HTTP requests per job and client CPU per job. Targets (issue "Serverless"):
at least 3x faster wall, at most 3 requests per job, at most 1 ms of client CPU per job.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_tasks  # noqa: E402, F401 - registers the task

from runpod_hybrid._http import HttpTransport  # noqa: E402
from runpod_hybrid.serverless import Endpoint  # noqa: E402

CLIENT_ROUTES = ("run", "runsync", "status", "stream")


def client_requests(base_url: str) -> int:
    with urllib.request.urlopen(f"{base_url}/local/emulator-stats") as response:  # noqa: S310 - loopback
        counts = json.loads(response.read())["requests"]
    return sum(counts.get(route, 0) for route in CLIENT_ROUTES)


def measure(base_url: str, run: object) -> tuple[float, float, int]:
    """Wall time, this process's CPU time (the client only: the endpoint runs in another process), requests."""
    before = client_requests(base_url)
    wall, cpu = time.perf_counter(), time.process_time()
    run()  # type: ignore[operator]
    return time.perf_counter() - wall, time.process_time() - cpu, client_requests(base_url) - before


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--inputs", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument(
        "--slots", type=int, default=4, help="tasks per worker at once (RPH_WORKER_CONCURRENCY)"
    )
    args = parser.parse_args()
    inputs = list(range(args.inputs))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), *sys.path])}
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "runpod_hybrid.cli",
            "endpoint",
            "serve-local",
            "--tasks",
            "bench_tasks",
            "--workers",
            str(args.workers),
            "--slots",
            str(args.slots),
            "--port",
            str(port),
        ],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None
    server.stdout.readline()  # the "serving ..." line: the endpoint is up
    base_url = f"http://127.0.0.1:{port}/v2"
    try:
        ours = Endpoint("local", HttpTransport(None), base_url=base_url)
        ours.call("work20ms", 0)  # workers are up
        import runpod

        runpod.api_key = "local"
        runpod.endpoint_url_base = base_url
        theirs = runpod.Endpoint("local")

        def run_theirs() -> None:
            def one(x: int) -> object:
                job = theirs.run({"input": {"task": "work20ms", "input": x}})
                while job.status() not in ("COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"):
                    time.sleep(1)  # as RunPod's docs and its own `output()` poll
                return job.output()

            with ThreadPoolExecutor(max_workers=args.workers) as pool:
                results = list(pool.map(one, inputs))
            assert results == [[x * 2] for x in inputs]

        def run_ours() -> None:
            results = list(ours.map("work20ms", inputs, concurrency=args.workers, progress=False))
            assert results == [x * 2 for x in inputs]

        theirs_wall, theirs_cpu, theirs_requests = measure(base_url, run_theirs)
        ours_wall, ours_cpu, ours_requests = measure(base_url, run_ours)
    finally:
        server.terminate()
        server.wait(timeout=30)
    n = args.inputs
    print(f"{n} inputs of a 20 ms task, {args.workers} workers x {args.slots} slots, local endpoint")
    print(
        f"runpod.Endpoint: {theirs_wall:7.2f} s wall, {theirs_requests / n:.2f} requests/job, "
        f"{theirs_cpu / n * 1000:.2f} ms client CPU/job"
    )
    print(
        f"our map:         {ours_wall:7.2f} s wall, {ours_requests / n:.2f} requests/job, "
        f"{ours_cpu / n * 1000:.2f} ms client CPU/job"
    )
    print(f"wall ratio (theirs/ours) = {theirs_wall / ours_wall:.2f}  (target >= 3)")


if __name__ == "__main__":
    main()
