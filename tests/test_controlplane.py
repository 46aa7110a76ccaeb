"""The per-operation choice between GraphQL and REST v2 (control_plane = auto | graphql | rest), the memory
of a retired GraphQL, and GraphQL extras that degrade instead of failing every pod operation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from runpod_hybrid._http import HttpTransport, RetryPolicy
from runpod_hybrid.config import ApiKey, Settings
from runpod_hybrid.controlplane import (
    OPERATIONS,
    REMEMBER_S,
    ControlPlane,
    ControlPlaneMode,
    GoneMemory,
    GraphQLClient,
    GraphQLPodApi,
    RestClient,
    RestPodApi,
)
from runpod_hybrid.errors import ApiStatusError, ApiUnavailableError, CapacityError, NotFoundError
from runpod_hybrid.pods import Pods, PodSpec

from conftest import ROOT, SENTINEL_KEY, FakeTime
from rest_standin import RestStandinServer
from runpod_standin import Fault, StandinServer

RTX4090 = "NVIDIA GeForce RTX 4090"
PUBLIC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeTestKeyForRunpodHybridTests rph-test"
RETIRED = json.dumps({"errors": [{"message": "gone"}]})


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def plane(
    standin: StandinServer,
    rest: RestStandinServer,
    fake_time: FakeTime,
    *,
    mode: ControlPlaneMode = "auto",
    memory: GoneMemory | None = None,
    graphql_url: str | None = None,
    retry: RetryPolicy | None = None,
) -> ControlPlane:
    transport = HttpTransport(
        ApiKey(SENTINEL_KEY, "test"), sleep=fake_time.sleep, clock=fake_time.clock, retry=retry
    )
    return ControlPlane(
        GraphQLPodApi(GraphQLClient(transport, graphql_url or standin.url)),
        RestPodApi(RestClient(transport, rest.url)),
        mode=mode,
        memory=memory,
    )


def pods_over(api: Any) -> Pods:
    return Pods(api, Settings(), public_key=lambda: PUBLIC_KEY)


def rest_calls(rest: RestStandinServer) -> list[str]:
    return [name for name, _ in rest.state.calls if name[0].islower()]


def graphql_calls(standin: StandinServer) -> list[str]:
    return [name for name, _ in standin.state.calls if name[0].isupper()]


# --- auto ---------------------------------------------------------------------------------------------------


def test_auto_uses_graphql_and_rest_only_for_what_only_rest_has(
    standin: StandinServer, rest_standin: RestStandinServer, fake_time: FakeTime
) -> None:
    api = plane(standin, rest_standin, fake_time)
    pods = pods_over(api)
    standin.state.new_pod_runtime = {"uptimeInSeconds": 5, "ports": [], "gpus": [], "container": None}
    pod = pods.create(PodSpec(gpu_types=(RTX4090,))).pod
    assert rest_calls(rest_standin) == []
    pods.restart(pod.id)
    assert rest_calls(rest_standin) == ["podAction"]
    routes = {r.operation: r.api for r in api.routes()}
    assert routes["create_pod"] == "graphql" and routes["restart_pod"] == "rest"
    assert routes["list_network_volumes"] == "rest" and routes["create_spot_pod"] == "graphql"


@pytest.mark.parametrize(
    "gone",
    [
        Fault.http(410, RETIRED, "application/json"),
        Fault(
            "graphql_errors",
            errors=[
                {"message": "The GraphQL API has been retired. Use the REST API at https://api.runpod.io/v2."}
            ],
        ),
    ],
    ids=["http-410", "retirement-error"],
)
def test_auto_switches_to_rest_when_graphql_is_gone_and_remembers_it(
    standin: StandinServer,
    rest_standin: RestStandinServer,
    fake_time: FakeTime,
    tmp_path: Path,
    gone: Fault,
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    memory = GoneMemory(tmp_path / "state" / "control-plane.json", wall_clock=clock)
    standin.state.add_pod(id="seededpod00001")
    standin.state.faults["ListPods"].append(gone)
    api = plane(standin, rest_standin, fake_time, memory=memory)
    assert [p.id for p in pods_over(api).list()] == ["seededpod00001"]  # answered by REST v2
    assert api.graphql_gone and rest_calls(rest_standin) == ["listPods"]
    assert [r.levelname for r in caplog.records if r.msg == "controlplane.switched_to_rest"] == ["WARNING"]
    assert {r.api for r in api.routes()} == {"rest", None}
    # The next process starts on REST v2 without asking GraphQL first...
    later = plane(standin, rest_standin, fake_time, memory=memory)
    before = graphql_calls(standin)
    assert later.get_pod("seededpod00001") is not None
    assert graphql_calls(standin) == before and "remembered" in str(later.graphql_gone)
    # ...until the memory runs out: then GraphQL is tried again.
    clock.now += REMEMBER_S + 1
    assert plane(standin, rest_standin, fake_time, memory=memory).graphql_gone is None


def test_a_missing_graphql_path_switches_too(
    standin: StandinServer, rest_standin: RestStandinServer, fake_time: FakeTime
) -> None:
    retired_url = standin.url.replace("/graphql", "/graphql-retired")  # answers 404
    api = plane(standin, rest_standin, fake_time, graphql_url=retired_url)
    assert api.gpu_types(1) and api.graphql_gone == "GraphQL answered HTTP 404 (gone)"


def test_auto_switches_when_graphql_stays_rate_limited(
    standin: StandinServer, rest_standin: RestStandinServer, fake_time: FakeTime
) -> None:
    too_long = Fault.http(429, RETIRED, "application/json", **{"Retry-After": "3600"})
    standin.state.faults["ListPods"].append(too_long)
    api = plane(standin, rest_standin, fake_time, retry=RetryPolicy(deadline_s=60))
    assert api.list_pods() == []
    assert api.graphql_gone == "GraphQL stayed rate-limited past the retry policy"
    assert fake_time.sleeps == []  # 3600 s is past the deadline: no wait, straight to REST v2


def test_once_graphql_is_gone_spot_fails_clearly_and_sends_nothing(
    standin: StandinServer, rest_standin: RestStandinServer, fake_time: FakeTime
) -> None:
    standin.state.faults["GpuTypes"].append(Fault.http(410, RETIRED, "application/json"))
    api = plane(standin, rest_standin, fake_time)
    pods = pods_over(api)
    before_rest = list(rest_calls(rest_standin))
    with pytest.raises(ApiUnavailableError, match=r"GraphQL is gone.*no spot pods"):
        pods.create(PodSpec(gpu_types=(RTX4090,), spot=True, bid_per_gpu_usd=0.5))
    assert "createPod" not in rest_calls(rest_standin)[len(before_rest) :]
    standin.state.add_pod(id="spotpod0000001", desiredStatus="EXITED", podType="INTERRUPTABLE")
    with pytest.raises(ApiUnavailableError, match="GraphQL"):
        api.resume_pod("spotpod0000001", 1, 0.5)


def test_an_ordinary_graphql_error_does_not_switch(
    standin: StandinServer, rest_standin: RestStandinServer, fake_time: FakeTime
) -> None:
    standin.state.faults["CreateOnDemandPod"].append(Fault.capacity_message())
    api = plane(standin, rest_standin, fake_time)
    with pytest.raises(CapacityError):
        pods_over(api).create(PodSpec(gpu_types=(RTX4090,)))
    assert api.graphql_gone is None and rest_calls(rest_standin) == []


# --- graphql and rest -------------------------------------------------------------------------------------


def test_graphql_mode_never_switches_and_says_what_to_set(
    standin: StandinServer, rest_standin: RestStandinServer, fake_time: FakeTime
) -> None:
    standin.state.faults["ListPods"].append(Fault.http(410, RETIRED, "application/json"))
    api = plane(standin, rest_standin, fake_time, mode="graphql")
    with pytest.raises(ApiStatusError) as info:
        api.list_pods()
    assert any('"auto" or "rest"' in note for note in info.value.__notes__)
    assert api.graphql_gone is None and rest_calls(rest_standin) == []


def test_rest_mode_sends_nothing_to_graphql(
    standin: StandinServer, rest_standin: RestStandinServer, fake_time: FakeTime
) -> None:
    api = plane(standin, rest_standin, fake_time, mode="rest")
    pods = pods_over(api)
    pod = pods.create(PodSpec(gpu_types=(RTX4090,))).pod
    pods.stop(pod.id)
    pods.terminate(pod.id)
    with pytest.raises(NotFoundError):
        pods.get(pod.id)
    assert graphql_calls(standin) == []
    with pytest.raises(ApiUnavailableError, match='control_plane = "rest"'):
        pods.create(PodSpec(gpu_types=(RTX4090,), spot=True, bid_per_gpu_usd=0.5))
    assert {r.operation for r in api.routes() if r.api is None} == {"create_spot_pod", "resume_spot_pod"}


def test_the_readme_table_lists_every_operation_with_its_api_under_auto() -> None:
    readme = (ROOT / "README.md").read_text()
    for operation in OPERATIONS:
        api = (
            "REST v2 only"
            if operation.apis == ("rest",)
            else "GraphQL only"
            if operation.apis == ("graphql",)
            else "GraphQL"
        )
        row = next((line for line in readme.splitlines() if line.startswith(f"| `{operation.name}` ")), None)
        assert row is not None, operation.name
        assert f"| {api} |" in row and (operation.lost_without_graphql or "nothing") in row


# --- GraphQL extras degrade --------------------------------------------------------------------------------

VALIDATION_FAILED = json.dumps(
    {
        "errors": [
            {
                "message": 'Cannot query field "adjustedCostPerHr" on type "Pod".',
                "extensions": {"code": "GRAPHQL_VALIDATION_FAILED"},
            }
        ]
    }
)


def test_rejected_extras_leave_pods_working_with_a_warning(
    standin: StandinServer, fake_time: FakeTime, caplog: pytest.LogCaptureFixture
) -> None:
    standin.state.add_pod(id="seededpod00001", costPerHr=0.69, adjustedCostPerHr=0.5)
    transport = HttpTransport(ApiKey(SENTINEL_KEY, "test"), sleep=fake_time.sleep, clock=fake_time.clock)
    api = GraphQLPodApi(GraphQLClient(transport, standin.url))
    assert api.get_pod("seededpod00001").usd_per_hour == 0.5  # type: ignore[union-attr]
    standin.state.faults["GetPodExtras"].append(Fault.http(400, VALIDATION_FAILED, "application/json"))
    pod = api.get_pod("seededpod00001")
    again = api.get_pod("seededpod00001")
    assert pod is not None and again is not None
    assert pod.usd_per_hour == 0.69 and pod.gpu_type_id is None  # the core answer stands
    [warning] = [r for r in caplog.records if r.msg == "graphql.extras_rejected"]
    assert warning.levelname == "WARNING" and "adjustedCostPerHr" in warning.lost  # type: ignore[attr-defined]
    assert len(standin.state.calls_of("GetPodExtras")) == 2  # once fine, once rejected, then never again
    assert "GetPodExtras" in api.missing_extras()
    # Telemetry without latestTelemetry: utilisation from runtime, and it says what is missing.
    standin.state.faults["PodTelemetry"].append(Fault.http(400, VALIDATION_FAILED, "application/json"))
    telemetry = api.pod_telemetry("seededpod00001")
    assert telemetry is not None and any("temperature" in m for m in telemetry.missing)
