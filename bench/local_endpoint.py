"""The local endpoint the serverless benches run against: `rph endpoint serve-local` with the bench tasks, in
its own process (so the client measured is alone in this one)."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager


@contextmanager
def local_endpoint(workers: int, env: Mapping[str, str], *options: str) -> Iterator[str]:
    """Serve ``bench_tasks`` with ``workers`` workers; yields the base URL once the workers are up, and stops
    the endpoint (and its workers) on exit."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    argv = [
        "endpoint",
        "serve-local",
        "--tasks",
        "bench_tasks",
        "--workers",
        str(workers),
        "--port",
        str(port),
    ]
    server = subprocess.Popen(
        [sys.executable, "-m", "runpod_hybrid.cli", *argv, *options],
        env=dict(env),
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None
    server.stdout.readline()  # the "serving ..." line: the endpoint and its workers are up
    try:
        yield f"http://127.0.0.1:{port}/v2"
    finally:
        server.terminate()
        server.wait(timeout=30)
