"""REST v2: the stand-in's strictness, RunPod's REST faults, and what only the REST side does (network
volumes and placement, restart, the shapes it lacks), against the live stand-ins."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests

from runpod_hybrid._http import HttpTransport, RetryPolicy
from runpod_hybrid.config import ApiKey, Settings
from runpod_hybrid.controlplane import (
    ControlPlane,
    CreatePodRequest,
    GraphQLClient,
    GraphQLPodApi,
    RestClient,
    RestPodApi,
)
from runpod_hybrid.errors import (
    ApiStatusError,
    ApiUnavailableError,
    CapacityError,
    ConfigError,
    NotFoundError,
    ServerError,
)
from runpod_hybrid.pods import Pods, PodSpec, Volumes
from runpod_hybrid.serverless import Endpoints

from conftest import SENTINEL_KEY, FakeTime
from rest_standin import RestStandinServer, capacity_fault, rate_limit_fault
from runpod_standin import GATEWAY_PAGE, Fault, StandinServer

RTX4090 = "NVIDIA GeForce RTX 4090"
A4000 = "NVIDIA RTX A4000"
PUBLIC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeTestKeyForRunpodHybridTests rph-test"


def rest_api(server: RestStandinServer, fake_time: FakeTime, **options: Any) -> RestPodApi:
    transport = HttpTransport(
        ApiKey(SENTINEL_KEY, "test"), sleep=fake_time.sleep, clock=fake_time.clock, **options
    )
    return RestPodApi(RestClient(transport, server.url))


def control_plane(standin: StandinServer, rest: RestStandinServer, fake_time: FakeTime) -> ControlPlane:
    transport = HttpTransport(ApiKey(SENTINEL_KEY, "test"), sleep=fake_time.sleep, clock=fake_time.clock)
    return ControlPlane(
        GraphQLPodApi(GraphQLClient(transport, standin.url)), RestPodApi(RestClient(transport, rest.url))
    )


def pods_over(api: Any, settings: Settings | None = None) -> Pods:
    return Pods(api, settings or Settings(), public_key=lambda: PUBLIC_KEY, new_token=lambda: "0a1b2c3d")


def raw(server: RestStandinServer, method: str, path: str, key: str = SENTINEL_KEY, **kwargs: Any) -> Any:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return requests.request(method, server.url + path, headers=headers, timeout=10, **kwargs)


# --- the stand-in is as strict as RunPod ------------------------------------------------------------------


def test_standin_rejects_a_request_that_breaks_the_spec(rest_standin: RestStandinServer) -> None:
    # GraphQL's field names in a REST v2 body: RunPod answers 422 naming the stray field.
    body = {"name": "x", "imageName": "img", "gpuTypeId": RTX4090, "gpu": {"id": RTX4090}}
    answer = raw(rest_standin, "POST", "/pods", json=body)
    assert answer.status_code == 422
    assert answer.headers["Content-Type"] == "application/problem+json"
    assert "imageName" in json.dumps(answer.json()["errors"])
    assert rest_standin.state.pods == {} and len(rest_standin.rejections) == 1
    # A parameter outside its enum, and a call without the key.
    assert raw(rest_standin, "GET", "/catalog/gpus", params={"include": "STOCK"}).status_code == 400
    assert raw(rest_standin, "GET", "/pods", key="").status_code == 401


def test_the_sdk_reports_a_422_as_its_own_bug(rest_standin: RestStandinServer, fake_time: FakeTime) -> None:
    api = rest_api(rest_standin, fake_time)
    request = CreatePodRequest("p", RTX4090, 1, "SECURE", "img", 20, 20, "22/tcp", docker_args="x")
    rest_standin.state.faults["createPod"].append(
        Fault.http(
            422,
            json.dumps(
                {"title": "Unprocessable Entity", "status": 422, "detail": "Request validation failed."}
            ),
            "application/problem+json",
        )
    )
    with pytest.raises(ApiStatusError, match="bug in runpod-hybrid") as info:
        api.create_pod(request)
    assert info.value.status_code == 422


def test_standin_checks_its_own_answers(standin: StandinServer, fake_time: FakeTime) -> None:
    from rest_standin import start_rest_standin

    server, stop = start_rest_standin(standin.state)
    try:
        standin.state.add_pod(id="brokenpod00001", name=None)  # the spec says a pod's name is a string
        with pytest.raises(ServerError):
            rest_api(server, fake_time, retry=RetryPolicy(max_attempts=1)).get_pod("brokenpod00001")
        assert (
            len(server.spec_violations) == 1 and "None is not of type 'string'" in server.spec_violations[0]
        )
    finally:
        stop()


# --- RunPod's REST faults ---------------------------------------------------------------------------------


def test_capacity_400_falls_back_to_the_next_gpu(
    rest_standin: RestStandinServer, fake_time: FakeTime
) -> None:
    rest_standin.state.faults["createPod"].append(capacity_fault())
    result = pods_over(rest_api(rest_standin, fake_time)).create(PodSpec(gpu_types=(RTX4090, A4000)))
    assert [(a.gpu_type_id, a.outcome) for a in result.attempts] == [
        (RTX4090, "no_capacity"),
        (A4000, "created"),
    ]


def test_429_waits_retry_after_then_succeeds(rest_standin: RestStandinServer, fake_time: FakeTime) -> None:
    rest_standin.state.faults["listPods"].append(rate_limit_fault(3))
    assert rest_api(rest_standin, fake_time).list_pods() == []
    assert fake_time.sleeps == [3.0]


def test_gateway_page_on_a_read_is_retried_then_raised(
    rest_standin: RestStandinServer, fake_time: FakeTime
) -> None:
    rest_standin.state.faults["listPods"].extend([Fault.http(502, GATEWAY_PAGE)] * 5)
    with pytest.raises(ServerError, match="HTTP 502"):
        rest_api(rest_standin, fake_time).list_pods()
    assert len(fake_time.sleeps) == 4


@pytest.mark.parametrize("fault", [Fault.apply_then_hang(), Fault.drop_after_apply()], ids=["hang", "reset"])
def test_a_create_whose_answer_is_lost_is_not_made_twice(
    rest_standin: RestStandinServer, fake_time: FakeTime, fault: Fault
) -> None:
    rest_standin.state.faults["createPod"].append(fault)
    api = rest_api(rest_standin, fake_time, read_timeout_s=0.3)
    result = pods_over(api).create(PodSpec(gpu_types=(RTX4090,)))
    assert [a.outcome for a in result.attempts] == ["recovered"]
    assert list(rest_standin.state.pods) == [result.pod.id]
    assert len(rest_standin.state.calls_of("createPod")) == 1


# --- what REST v2 has and lacks ---------------------------------------------------------------------------


def test_restart_and_stop_twice(rest_standin: RestStandinServer, fake_time: FakeTime) -> None:
    rest_standin.state.new_pod_runtime = {"uptimeInSeconds": 5, "ports": [], "gpus": [], "container": None}
    pods = pods_over(rest_api(rest_standin, fake_time))
    pod = pods.create(PodSpec(gpu_types=(RTX4090,))).pod
    assert pods.restart(pod.id).status == "RUNNING"
    assert pods.stop(pod.id).status == "EXITED"
    assert pods.stop(pod.id).status == "EXITED"  # a stopped pod is what was asked: nothing more is sent
    assert (
        rest_api(rest_standin, fake_time).stop_pod(pod.id).status == "EXITED"
    )  # RunPod's 409, taken as done
    actions = [c["action"] for c in rest_standin.state.calls_of("podAction")]
    assert actions == ["restart", "stop", "stop"]


def test_spot_and_bid_resume_say_they_need_graphql(
    rest_standin: RestStandinServer, fake_time: FakeTime
) -> None:
    api = rest_api(rest_standin, fake_time)
    spot = CreatePodRequest("p", RTX4090, 1, "SECURE", "img", 20, 20, "22/tcp", bid_per_gpu_usd=0.3)
    with pytest.raises(ApiUnavailableError, match="GraphQL"):
        api.create_pod(spot)
    with pytest.raises(ApiUnavailableError, match="GraphQL"):
        api.resume_pod("anypod", 1, 0.3)
    assert rest_standin.state.calls == []


def test_a_private_address_is_no_public_ip(rest_standin: RestStandinServer, fake_time: FakeTime) -> None:
    runtime = {
        "uptimeInSeconds": 9,
        "ports": [
            {"ip": "10.2.0.7", "isIpPublic": False, "privatePort": 22, "publicPort": 22, "type": "tcp"}
        ],
        "gpus": [],
        "container": None,
    }
    rest_standin.state.add_pod(id="privatepod0001", runtime=runtime, ports="22/tcp")
    pod = rest_api(rest_standin, fake_time).get_pod("privatepod0001")
    assert pod is not None and pod.runtime is not None and pod.runtime.ports
    assert not pod.runtime.ports[0].is_public and pod.ssh is None


def test_endpoint_list_lacks_only_the_template_id(
    rest_standin: RestStandinServer, fake_time: FakeTime
) -> None:
    endpoints = Endpoints(rest_api(rest_standin, fake_time))
    deployed = endpoints.deploy(
        "e", image="me/worker:1", gpu_pools=["AMPERE_16"], workers_max=2, execution_timeout_s=60
    )
    [listed] = endpoints.list()
    assert deployed.template_id and listed.template_id is None
    assert (listed.id, listed.gpu_pools, listed.execution_timeout_s) == (deployed.id, ("AMPERE_16",), 60)


# --- network volumes and placement ------------------------------------------------------------------------


def make_volume(rest: RestStandinServer, fake_time: FakeTime, data_center: str = "US-KS-2") -> str:
    return Volumes(rest_api(rest, fake_time)).create("ckpt", size_gb=50, data_center_id=data_center).id


def test_volumes_list_create_delete(rest_standin: RestStandinServer, fake_time: FakeTime) -> None:
    volumes = Volumes(rest_api(rest_standin, fake_time))
    made = volumes.create("data", size_gb=20, data_center_id="EU-RO-1")
    assert (made.name, made.size_gb, made.data_center_id) == ("data", 20, "EU-RO-1")
    assert [v.id for v in volumes.list()] == [made.id] and volumes.get("data").id == made.id
    with pytest.raises(ValueError, match="between 10 and 4096"):
        volumes.create("tiny", size_gb=5, data_center_id="EU-RO-1")
    assert volumes.delete(made.id).id == made.id
    with pytest.raises(NotFoundError, match="no network volumes"):
        volumes.get(made.id)


def test_a_volume_in_use_is_not_deleted(rest_standin: RestStandinServer, fake_time: FakeTime) -> None:
    volume_id = make_volume(rest_standin, fake_time)
    api = rest_api(rest_standin, fake_time)
    pod = pods_over(api).create(PodSpec(gpu_types=(RTX4090,), network_volume_id=volume_id)).pod
    with pytest.raises(ConfigError, match=pod.id):
        Volumes(api).delete(volume_id)
    assert volume_id in rest_standin.state.network_volumes


def test_a_pod_with_a_volume_is_placed_in_its_data_centre(
    rest_standin: RestStandinServer, fake_time: FakeTime
) -> None:
    volume_id = make_volume(rest_standin, fake_time, "US-KS-2")
    pods = pods_over(rest_api(rest_standin, fake_time))
    pod = pods.create(PodSpec(gpu_types=(RTX4090,), network_volume_id=volume_id)).pod
    assert pod.data_center_id == "US-KS-2" and pod.network_volume_id == volume_id
    [body] = rest_standin.state.calls_of("createPod")
    assert body["dataCenterIds"] == ["US-KS-2"] and body["cloud"] == "SECURE"
    assert body["mounts"] == {"network": [{"volumeId": volume_id, "path": "/workspace"}]}


def test_a_volume_elsewhere_is_refused_before_create_naming_where_volumes_are(
    rest_standin: RestStandinServer, fake_time: FakeTime
) -> None:
    volume_id = make_volume(rest_standin, fake_time, "US-KS-2")
    pods = pods_over(rest_api(rest_standin, fake_time))
    with pytest.raises(ConfigError, match=f"{volume_id} .*in US-KS-2") as info:
        pods.create(PodSpec(gpu_types=(RTX4090,), network_volume_id=volume_id, data_center_id="EU-RO-1"))
    assert "Your network volumes" in str(info.value)
    with pytest.raises(ConfigError, match="Secure Cloud only"):
        pods.create(PodSpec(gpu_types=(RTX4090,), network_volume_id=volume_id, cloud_type="COMMUNITY"))
    # The chosen GPU is not offered in the volume's data centre: refused, naming the volumes' locations.
    rest_standin.state.gpu_data_centers[A4000] = ("EU-RO-1",)
    with pytest.raises(CapacityError, match=f"in US-KS-2, where network volume {volume_id}"):
        pods.create(PodSpec(gpu_types=(A4000,), network_volume_id=volume_id))
    assert rest_standin.state.calls_of("createPod") == []


def test_gpus_in_one_data_centre(rest_standin: RestStandinServer, fake_time: FakeTime) -> None:
    rest_standin.state.gpu_data_centers[A4000] = ("EU-RO-1",)
    api = rest_api(rest_standin, fake_time)
    here = {g.id: g for g in api.gpu_types(1, data_center_id="US-KS-2")}
    offer = here[A4000].offer("SECURE")
    assert offer is not None and not offer.in_stock
    secure = here[RTX4090].offer("SECURE")
    assert secure is not None and secure.in_stock and secure.stock_status == "High"


@pytest.mark.parametrize("graphql_first", [True, False], ids=["graphql", "rest"])
def test_an_endpoint_with_a_volume_runs_in_its_data_centre(
    standin: StandinServer, rest_standin: RestStandinServer, fake_time: FakeTime, graphql_first: bool
) -> None:
    volume_id = make_volume(rest_standin, fake_time, "US-KS-2")
    plane = control_plane(standin, rest_standin, fake_time)
    plane.mode = "auto" if graphql_first else "rest"
    Endpoints(plane).deploy(
        "e", image="img:1", gpu_pools=["ADA_24"], workers_max=1, network_volume_id=volume_id
    )
    [endpoint] = standin.state.endpoints.values()
    assert endpoint["locations"] == "US-KS-2" and endpoint["networkVolumeId"] == volume_id
    assert bool(standin.state.calls_of("SaveEndpoint")) == graphql_first
