"""GraphQL execution and error mapping, replayed from cassettes (cassettes/graphql/).

Recording (``--record-mode=once``) runs against the schema-checked stand-in; ``seed()`` sets the stand-in up
and is None on replay, when the cassette holds RunPod's answers.
"""

from __future__ import annotations

from typing import Any

import pytest

from runpod_hybrid._http import HttpTransport, RetryPolicy
from runpod_hybrid.config import ApiKey
from runpod_hybrid.controlplane import documents as gql
from runpod_hybrid.controlplane import graphql as gql_exec
from runpod_hybrid.errors import (
    AuthError,
    BadResponseError,
    CapacityError,
    GraphQLError,
    GraphQLValidationError,
    RateLimitError,
    ServerError,
)

from conftest import SENTINEL_KEY, ApiTarget, FakeTime
from runpod_standin import GATEWAY_PAGE, Fault

CREATE_INPUT = {
    "input": {
        "name": "rph-test",
        "gpuTypeId": "NVIDIA GeForce RTX 4090",
        "cloudType": "SECURE",
        "gpuCount": 1,
        "imageName": "runpod/pytorch:2.4.0",
        "ports": "22/tcp",
    }
}


def client(
    target: ApiTarget, fake_time: FakeTime, retry: RetryPolicy | None = None
) -> gql_exec.GraphQLClient:
    transport = HttpTransport(
        ApiKey(target.key, "test"), sleep=fake_time.sleep, clock=fake_time.clock, retry=retry
    )
    return gql_exec.GraphQLClient(transport, url=target.url)


def inject(target: ApiTarget, operation: str, *faults: Fault) -> None:
    state = target.seed()
    if state is not None:
        state.faults[operation].extend(faults)


@pytest.mark.vcr
def test_query_returns_data(runpod_api: ApiTarget, fake_time: FakeTime) -> None:
    data = client(runpod_api, fake_time).execute(
        gql.GPU_TYPES,
        {"input": {"id": "NVIDIA GeForce RTX 4090"}, "secure": {"gpuCount": 1, "secureCloud": True}},
    )
    [gpu] = data["gpuTypes"]
    assert gpu["id"] == "NVIDIA GeForce RTX 4090"
    assert gpu["secureOffer"]["stockStatus"] in ("High", "Medium", "Low")
    assert gpu["communityOffer"]["stockStatus"] == "High"


@pytest.mark.vcr
@pytest.mark.parametrize(
    ("fault", "code"),
    [
        (Fault.capacity_message(), None),
        (Fault.capacity_message("There are no longer any instances available with enough disk space."), None),
        (
            Fault.capacity_message(
                "This machine does not have the resources to deploy your pod. Please try a different machine"
            ),
            None,
        ),
        (Fault.supply_constraint(), "SUPPLY_CONSTRAINT"),
        (Fault.null_data(), None),
    ],
    ids=["message", "disk-message", "machine-message", "supply-constraint", "null-data"],
)
def test_every_capacity_shape_raises_capacity_error(
    runpod_api: ApiTarget, fake_time: FakeTime, fault: Fault, code: str | None
) -> None:
    inject(runpod_api, "CreateOnDemandPod", fault)
    with pytest.raises(CapacityError) as info:
        client(runpod_api, fake_time).execute(gql.CREATE_ON_DEMAND_POD, CREATE_INPUT)
    assert "rph gpus" in str(info.value)
    assert (info.value.details[0].code if info.value.details else None) == code
    assert fake_time.sleeps == []  # a create is never retried blindly


@pytest.mark.vcr
def test_resume_on_full_host_is_capacity(runpod_api: ApiTarget, fake_time: FakeTime) -> None:
    inject(
        runpod_api,
        "ResumePod",
        Fault.capacity_message("There are not enough free GPUs on the host machine to start this pod."),
    )
    with pytest.raises(CapacityError):
        client(runpod_api, fake_time).execute(gql.RESUME_POD, {"input": {"podId": "abc123", "gpuCount": 1}})


@pytest.mark.vcr
def test_graphql_errors_keep_every_message_code_and_path(runpod_api: ApiTarget, fake_time: FakeTime) -> None:
    inject(
        runpod_api,
        "StopPod",
        Fault(
            "graphql_errors",
            errors=[
                {"message": "Pod not found", "path": ["podStop"], "extensions": {"code": "NOT_FOUND"}},
                {"message": "Second problem", "path": ["podStop", "runtime"]},
            ],
        ),
    )
    with pytest.raises(GraphQLError) as info:
        client(runpod_api, fake_time).execute(gql.STOP_POD, {"input": {"podId": "abc123"}})
    details = info.value.details
    assert [d.message for d in details] == ["Pod not found", "Second problem"]
    assert details[0].code == "NOT_FOUND" and details[0].path == ("podStop",)
    assert details[1].path == ("podStop", "runtime")
    assert "Pod not found [NOT_FOUND] at podStop" in str(info.value)


@pytest.mark.vcr
def test_generic_failure_says_to_check_before_retrying(runpod_api: ApiTarget, fake_time: FakeTime) -> None:
    inject(
        runpod_api,
        "CreateOnDemandPod",
        Fault.capacity_message("Something went wrong. Please try again later or contact support."),
    )
    with pytest.raises(GraphQLError) as info:
        client(runpod_api, fake_time).execute(gql.CREATE_ON_DEMAND_POD, CREATE_INPUT)
    assert not isinstance(info.value, CapacityError)
    assert "list your pods first" in str(info.value)


@pytest.mark.vcr
def test_invalid_document_is_reported_as_an_sdk_bug(runpod_api: ApiTarget, fake_time: FakeTime) -> None:
    broken = "query Broken { myself { noSuchField } }"
    with pytest.raises(GraphQLValidationError) as info:
        client(runpod_api, fake_time).execute(broken)
    assert info.value.status_code == 400
    assert info.value.codes == ("GRAPHQL_VALIDATION_FAILED",)
    assert "bug in runpod-hybrid" in str(info.value)
    assert "noSuchField" in str(info.value)


@pytest.mark.vcr
def test_answer_with_neither_data_nor_errors(runpod_api: ApiTarget, fake_time: FakeTime) -> None:
    inject(runpod_api, "ListPods", Fault.http(200, "{}", "application/json"))
    with pytest.raises(BadResponseError, match="neither `data` nor `errors`"):
        client(runpod_api, fake_time).execute(gql.LIST_PODS)


@pytest.mark.vcr
def test_myself_null_is_an_auth_error(runpod_api: ApiTarget, fake_time: FakeTime) -> None:
    inject(runpod_api, "ListPods", Fault.http(200, '{"data": {"myself": null}}', "application/json"))
    with pytest.raises(AuthError, match=r"data\.myself is null"):
        client(runpod_api, fake_time).execute(gql.LIST_PODS)


@pytest.mark.vcr
def test_rate_limit_then_success_waits_retry_after(runpod_api: ApiTarget, fake_time: FakeTime) -> None:
    inject(
        runpod_api,
        "ListPods",
        Fault.http(
            429, '{"errors": [{"message": "Too many requests"}]}', "application/json", **{"Retry-After": "3"}
        ),
    )
    data = client(runpod_api, fake_time).execute(gql.LIST_PODS)
    assert "pods" in data["myself"]
    assert fake_time.sleeps == [3.0]


@pytest.mark.vcr
def test_502_page_on_a_query_is_retried_then_raised(runpod_api: ApiTarget, fake_time: FakeTime) -> None:
    inject(runpod_api, "ListPods", *[Fault.http(502, GATEWAY_PAGE) for _ in range(3)])
    with pytest.raises(ServerError, match="HTTP 502"):
        client(runpod_api, fake_time, RetryPolicy(max_attempts=3)).execute(gql.LIST_PODS)
    assert len(fake_time.sleeps) == 2


@pytest.mark.vcr
def test_rate_limit_without_retry_after_backs_off(runpod_api: ApiTarget, fake_time: FakeTime) -> None:
    inject(runpod_api, "ListPods", *[Fault.http(429, "{}", "application/json") for _ in range(2)])
    with pytest.raises(RateLimitError):
        client(runpod_api, fake_time, RetryPolicy(max_attempts=2)).execute(gql.LIST_PODS)
    assert len(fake_time.sleeps) == 1 and 0.25 <= fake_time.sleeps[0] <= 0.5


def test_operation_of_reads_kind_and_name() -> None:
    assert gql_exec.operation_of(gql.TERMINATE_POD) == ("mutation", "TerminatePod")
    assert gql_exec.operation_of(gql.LIST_PODS) == ("query", "ListPods")
    with pytest.raises(ValueError, match="named"):
        gql_exec.operation_of("{ myself { id } }")


def test_mutations_are_not_retried_on_server_errors_by_default(standin: Any, fake_time: FakeTime) -> None:
    standin.state.faults["CreateOnDemandPod"].append(Fault.http(502, GATEWAY_PAGE))
    target = ApiTarget(standin.url, SENTINEL_KEY, standin)
    with pytest.raises(ServerError):
        client(target, fake_time).execute(gql.CREATE_ON_DEMAND_POD, CREATE_INPUT)
    assert len(standin.state.calls_of("CreateOnDemandPod")) == 1
    assert fake_time.sleeps == []
