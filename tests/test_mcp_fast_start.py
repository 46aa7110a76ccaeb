"""rph-mcp over real stdio: recorded answers to `initialize` and `tools/list` are the SDK's own, each request
gets exactly one answer, and a stale record is corrected by the SDK's answer in the same launch."""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from mcp_messages import MCP_INITIALIZE

from runpod_hybrid_mcp.fast_start import cache_dir, record_key

SESSION = [
    MCP_INITIALIZE,
    {"jsonrpc": "2.0", "method": "notifications/initialized"},
    {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
    {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "list_jobs", "arguments": {}}},
]


def run_session(home: Path, *extra_args: str) -> list[dict[str, Any]]:
    """One client session as a client runs it: each request waits for its answer. Returns every line the
    server wrote, including any after stdin closed."""
    process = subprocess.Popen(
        [sys.executable, "-m", "runpod_hybrid_mcp.server", *extra_args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "HOME": str(home)},
    )
    assert process.stdin is not None and process.stdout is not None
    lines: list[dict[str, Any]] = []
    deadline = time.monotonic() + 60
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        for message in SESSION:
            process.stdin.write(json.dumps(message) + "\n")
            process.stdin.flush()
            while "id" in message and not any(m.get("id") == message["id"] for m in lines):
                assert selector.select(deadline - time.monotonic()), f"no answer to {message}: {lines}"
                lines.append(json.loads(process.stdout.readline()))
    process.stdin.close()
    lines += [json.loads(line) for line in process.stdout]
    assert process.wait(timeout=30) == 0
    return lines


def answers_by_id(lines: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    ids = [m["id"] for m in lines if "id" in m]
    assert sorted(ids) == [1, 2, 3], lines  # one answer per request, none dropped, none twice
    return {m["id"]: m for m in lines}


def record_path(home: Path, read_only: bool = False) -> Path:
    return cache_dir({"XDG_CACHE_HOME": str(home / ".cache")}) / (
        f"mcp-answers-{record_key(f'read_only={read_only}')}.json"
    )


def test_second_launch_answers_exactly_as_the_sdk_did(isolated_home: Path) -> None:
    first = answers_by_id(run_session(isolated_home))
    path = record_path(isolated_home)
    assert path.exists()
    second = answers_by_id(run_session(isolated_home))
    assert second[1] == first[1] and second[2] == first[2]
    assert len(second[2]["result"]["tools"]) == 24
    assert json.loads(second[3]["result"]["content"][0]["text"])["jobs"] == []


def test_a_stale_record_is_corrected_within_the_launch(isolated_home: Path) -> None:
    run_session(isolated_home)
    path = record_path(isolated_home)
    record = json.loads(path.read_text())
    (tools_key,) = [key for key in record if key.startswith("tools/list ")]
    stale_tools = {"tools": [{"name": "gone", "inputSchema": {"type": "object"}}]}
    path.write_text(json.dumps({**record, tools_key: stale_tools}))
    answers = answers_by_id(run_session(isolated_home))
    assert answers[2]["result"] == stale_tools  # sent at once, before the SDK had loaded
    corrected = json.loads(path.read_text())[tools_key]
    assert corrected == record[tools_key]
    assert answers_by_id(run_session(isolated_home))[2]["result"] == corrected


def test_read_only_has_its_own_record(isolated_home: Path) -> None:
    run_session(isolated_home)
    answers = answers_by_id(run_session(isolated_home, "--read-only"))
    assert len(answers[2]["result"]["tools"]) == 12
    assert record_path(isolated_home, read_only=True).exists()
    assert record_key("read_only=True") != record_key("read_only=False")
