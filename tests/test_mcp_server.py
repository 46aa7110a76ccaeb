"""The MCP server through real MCP clients: the `mcp` library in memory and over stdio, and raw HTTP."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp_messages import MCP_INITIALIZE

from runpod_hybrid import RunPod
from runpod_hybrid.config import load_config
from runpod_hybrid_mcp.server import build_server

from conftest import SENTINEL_KEY, eventually
from runpod_standin import StandinServer

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
READ_TOOLS = {
    "list_volumes",
    "list_warm_pods",
    "list_gpu_types",
    "list_pods",
    "get_pod",
    "pod_telemetry",
    "spend_summary",
    "wait_for_pod",
    "plan_job",
    "job_status",
    "job_logs",
    "list_jobs",
    "serverless_status",
    "endpoint_health",
}


def call(server: Any, name: str, arguments: dict[str, Any] | None = None) -> Any:
    from mcp import Client

    async def go() -> Any:
        async with Client(server) as client:
            return await client.call_tool(name, arguments or {})

    return anyio.run(go)


def tools_of(server: Any) -> list[Any]:
    from mcp import Client

    async def go() -> Any:
        async with Client(server) as client:
            return (await client.list_tools()).tools

    return list(anyio.run(go))


def result_json(result: Any) -> Any:
    assert not result.is_error, result.content[0].text
    return json.loads(result.content[0].text)


def keyed(standin: StandinServer, home: Path) -> Callable[[], RunPod]:
    config = load_config(SENTINEL_KEY, env={}, home=home)
    return lambda: RunPod(config=config, graphql_url=standin.url)


def test_every_tool_with_honest_annotations() -> None:
    tools = {t.name: t for t in tools_of(build_server())}
    assert len(tools) == 28
    for name, tool in tools.items():
        annotations = tool.annotations
        assert annotations is not None and tool.description
        assert annotations.read_only_hint == (name in READ_TOOLS), name
    assert tools["terminate_pod"].annotations.destructive_hint
    assert (
        "COSTS MONEY" in tools["create_pod"].description and "wait_for_pod" in tools["create_pod"].description
    )


def test_read_only_mode_exposes_only_read_tools() -> None:
    assert {t.name for t in tools_of(build_server(read_only=True))} == READ_TOOLS


def test_without_a_key_pod_tools_say_how_to_provide_one() -> None:
    result = call(build_server(), "list_pods")
    assert result.is_error
    assert "RUNPOD_API_KEY" in result.content[0].text


def test_plan_and_submit_a_job_on_the_local_backend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    server = build_server()
    plan = result_json(call(server, "plan_job", {"job_file": str(EXAMPLES / "train" / "job.toml")}))
    assert plan["plan"]["backend"] == "local" and "local backend only" in plan["running_on"]
    submitted = result_json(call(server, "submit_job", {"job_file": str(EXAMPLES / "train" / "job.toml")}))
    job_id = submitted["job_id"]
    state = eventually(
        lambda: (
            (s := result_json(call(server, "job_status", {"job_id": job_id}))["state"])
            in ("SUCCEEDED", "FAILED")
            and s
        ),
        timeout_s=60,
    )
    assert state == "SUCCEEDED"
    assert "step 300" in result_json(call(server, "job_logs", {"job_id": job_id}))["log"]["text"]
    outputs = result_json(call(server, "fetch_job_outputs", {"job_id": job_id, "dest": str(tmp_path / "o")}))
    assert outputs["outputs"] == [str(tmp_path / "o" / "out" / "model.json")]
    assert job_id in {j["id"] for j in result_json(call(server, "list_jobs"))["jobs"]}


def test_create_states_cost_and_terminate_needs_the_name(standin: StandinServer, isolated_home: Path) -> None:
    server = build_server(factory=keyed(standin, isolated_home))
    created = result_json(call(server, "create_pod", {"gpu_types": ["NVIDIA RTX A4000"], "name": "mcp-test"}))
    pod = created["pod"]
    assert created["usd_per_hour"] == pod["usd_per_hour"] > 0
    # A deadline by default (24 h), ours to enforce, with its guards and what it may cost until then.
    assert created["deadline"] and created["guards"] == ["client reaper"]
    assert created["projected_usd_to_deadline"] == pytest.approx(24 * pod["usd_per_hour"], rel=0.01)
    assert "never armed" in created["warning"]
    assert created["deadline"][:19].replace("-", "").replace(":", "") in pod["name"]
    refused = call(server, "terminate_pod", {"pod_id": pod["id"], "confirm_name": "wrong"})
    assert refused.is_error and "confirm_name must be the pod's name" in refused.content[0].text
    assert standin.state.calls_of("TerminatePod") == []
    assert result_json(call(server, "terminate_pod", {"pod_id": pod["id"], "confirm_name": pod["name"]}))
    spend = result_json(call(server, "spend_summary"))
    assert spend["total_usd_per_hour"] == 0 and spend["cap_total_usd_per_hour"] == 20.0


def test_listing_tools_stop_our_pods_past_their_deadline_and_spend_shows_it_all(
    standin: StandinServer, isolated_home: Path
) -> None:
    state = standin.state
    late = datetime.now(UTC) - timedelta(minutes=1)
    state.add_pod(id="late", name=f"job-rph-0000000a-{late:%Y%m%dT%H%M%SZ}-wd")
    state.add_pod(id="kept", name="notebook", costPerHr=0.24, adjustedCostPerHr=0.24)
    server = build_server(factory=keyed(standin, isolated_home))
    listed = result_json(call(server, "list_pods"))
    assert listed["stopped_past_deadline"] == ["late"] and state.pods["late"]["desiredStatus"] == "EXITED"
    assert listed["running_usd_per_hour"] == 0.24
    spend = result_json(call(server, "spend_summary"))
    assert [p["id"] for p in spend["running"]] == ["kept"] and spend["running"][0]["guards"] == []
    assert (spend["account_balance_usd"], spend["max_pod_hours"]) == (41.5, 24.0)
    late_pod = result_json(call(server, "get_pod", {"pod_id": "late"}))
    assert late_pod["pod"]["status"] == "EXITED" and late_pod["guards"] == ["pod watchdog", "client reaper"]


def test_no_tool_result_or_error_holds_the_key(standin: StandinServer, isolated_home: Path) -> None:
    server = build_server(factory=keyed(standin, isolated_home))
    texts = [
        call(server, name, args).content[0].text
        for name, args in (
            ("list_pods", {}),
            ("get_pod", {"pod_id": "missing"}),
            ("list_gpu_types", {}),
            ("spend_summary", {}),
            ("create_pod", {"gpu_types": ["NVIDIA H100 NVL"]}),
        )
    ]
    assert all(SENTINEL_KEY not in text for text in texts)
    assert "No GPU matching your request is in stock" in texts[-1]


def test_stdio_session_with_the_mcp_client(isolated_home: Path) -> None:
    from mcp import Client, StdioServerParameters

    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "runpod_hybrid_mcp.server"],
        env={**os.environ, "HOME": str(isolated_home)},
    )

    async def go() -> tuple[int, Any]:
        async with Client(params) as client:
            tools = (await client.list_tools()).tools
            return len(tools), await client.call_tool("list_jobs", {})

    count, listed = anyio.run(go)
    assert count == 28
    assert json.loads(listed.content[0].text)["jobs"] == []


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_http_transport_requires_the_bearer_token(isolated_home: Path) -> None:
    port = _free_port()
    env = {**os.environ, "HOME": str(isolated_home), "RPH_MCP_TOKEN": "test-token-123"}
    server = subprocess.Popen(
        [sys.executable, "-m", "runpod_hybrid_mcp.server", "--http", "--port", str(port)],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stderr is not None
        while "serving" not in server.stderr.readline():
            pass
        body = json.dumps(MCP_INITIALIZE).encode()

        def post(headers: dict[str, str]) -> int:
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/mcp",
                data=body,
                method="POST",
                headers={
                    "Content-Type": "application/json",
                    "Accept": "application/json, text/event-stream",
                    **headers,
                },
            )
            try:
                deadline = time.monotonic() + 20
                while True:
                    try:
                        with urllib.request.urlopen(request, timeout=10) as response:
                            return int(response.status)
                    except urllib.error.URLError as exc:
                        if isinstance(exc, urllib.error.HTTPError) or time.monotonic() > deadline:
                            raise
                        time.sleep(0.05)  # uvicorn still binding its socket
            except urllib.error.HTTPError as exc:
                return exc.code

        assert post({}) == 401
        assert post({"Authorization": "Bearer wrong"}) == 401
        assert (
            post({"Authorization": "Bearer t\u00e9st-\u00fcnicode"}) == 401
        )  # non-ASCII bytes: 401, not 500
        assert post({"Authorization": "Bearer test-token-123"}) == 200
        assert post({"Authorization": "bearer test-token-123"}) == 200  # the scheme is case-insensitive
        assert post({"Authorization": "Bearer test-token-123", "Host": "evil.example.com"}) in (403, 421)
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.mark.filterwarnings("ignore:The logging capability is deprecated")
def test_log_level_requests_of_2025_clients_are_accepted() -> None:
    """Clients on the 2025 protocol revisions send logging/setLevel; the capability is declared and answered."""
    from mcp import Client

    async def go() -> Any:
        async with Client(
            build_server(), mode="legacy"
        ) as client:  # the initialize handshake, as 2025 clients
            return client.server_capabilities.logging, await client.set_logging_level("debug")

    capability, answer = anyio.run(go)
    assert capability is not None
    assert answer.model_dump(exclude_none=True) == {}


def test_volume_tools_create_list_and_delete_with_the_name(
    standin: StandinServer, isolated_home: Path
) -> None:
    from rest_standin import start_rest_standin

    rest, stop = start_rest_standin(standin.state)
    try:
        config = load_config(SENTINEL_KEY, env={}, home=isolated_home)
        server = build_server(
            factory=lambda: RunPod(config=config, graphql_url=standin.url, rest_url=rest.url)
        )
        made = result_json(
            call(server, "create_volume", {"name": "data", "size_gb": 20, "data_center_id": "EU-RO-1"})
        )
        volume_id = made["volume"]["id"]
        assert "GB-month" in made["note"]
        listed = result_json(call(server, "list_volumes"))
        assert [(v["id"], v["data_center_id"]) for v in listed["volumes"]] == [(volume_id, "EU-RO-1")]
        refused = call(server, "delete_volume", {"volume_id": volume_id, "confirm_name": "wrong"})
        assert refused.is_error and volume_id in standin.state.network_volumes
        assert result_json(
            call(server, "delete_volume", {"volume_id": volume_id, "confirm_name": "data"})
        ) == {"deleted": volume_id}
        assert rest.spec_violations == []
    finally:
        stop()


def test_warm_pods_are_listed_and_a_job_names_one_by_pod_id(
    standin: StandinServer, isolated_home: Path, tmp_path: Path
) -> None:
    """list_warm_pods lists running pods of ours only; plan_job/submit_job take pod_id, and a pod that cannot
    run the job (too few GPUs, not ours) is refused before anything runs."""
    later = datetime.now(UTC) + timedelta(hours=1)
    standin.state.add_pod(id="warm1", name=f"job-rph-0000000b-{later:%Y%m%dT%H%M%SZ}-wd", gpuCount=1)
    standin.state.add_pod(id="theirs", name="notebook")
    job_file = tmp_path / "job.toml"
    job_file.write_text(
        'name = "iterate"\n[command]\nargv = ["sh", "train.sh"]\n'
        '[resources]\ngpu = ["NVIDIA GeForce RTX 4090"]\ngpu_count = 2\n'
    )
    (tmp_path / "train.sh").write_text("echo hi\n")
    server = build_server(factory=keyed(standin, isolated_home))
    warm = result_json(call(server, "list_warm_pods"))
    assert [(p["pod_id"], p["gpu_count"], p["busy"]) for p in warm["pods"]] == [("warm1", 1, None)]
    assert warm["pods"][0]["deadline"][:16] == later.isoformat()[:16]

    refused = call(server, "submit_job", {"job_file": str(job_file), "pod_id": "warm1"})
    assert refused.is_error and "has 1 GPU(s) and the job asks for 2" in refused.content[0].text
    not_ours = call(server, "submit_job", {"job_file": str(job_file), "pod_id": "theirs"})
    assert not_ours.is_error and "runpod-hybrid did not make it" in not_ours.content[0].text
    assert standin.state.calls_of("CreateOnDemandPod") == []
    assert result_json(call(server, "list_jobs"))["jobs"] == []  # refused before a job was recorded

    job_file.write_text(job_file.read_text().replace("gpu_count = 2", "gpu_count = 1"))
    plan = result_json(call(server, "plan_job", {"job_file": str(job_file), "pod_id": "warm1"}))["plan"]
    assert plan["backend"] == "pod" and plan["details"]["pod_id"] == "warm1" and plan["refused"] is None
    assert any("no pod boot" in reason for reason in plan["reasons"])
