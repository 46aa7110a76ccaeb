"""RunPod's GraphQL API: ``execute()`` and :class:`GraphQLPodApi`, the control-plane seam served by GraphQL.

``execute()`` returns ``data`` or raises the typed error; all of RunPod's no-capacity shapes raise
:class:`CapacityError`. The documents are in ``documents.py``.

API quirks handled here (from RunPod's docs and public clients):
- errors arrive as HTTP 200 with ``errors``; a bad document as HTTP 400 ``GRAPHQL_VALIDATION_FAILED``;
- "no capacity" is a message, or ``extensions.code = SUPPLY_CONSTRAINT``, or a create that returns null
  with no error at all;
- ``data.myself`` is null when the key belongs to no user.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from runpod_hybrid.errors import (
    ApiStatusError,
    AuthError,
    BadResponseError,
    CapacityError,
    GraphQLError,
    GraphQLErrorDetail,
    GraphQLValidationError,
)

from . import documents as gql

if TYPE_CHECKING:
    from runpod_hybrid._http import HttpTransport
from .models import AccountSpend, EndpointInfo, GpuType, Pod, PodTelemetry
from .seam import CreateCall, CreatePodRequest, EndpointRequest, TemplateRequest

GRAPHQL_URL = "https://api.runpod.io/graphql"

_CAPACITY_PHRASES = (
    "no longer any instances available",
    "does not have the resources to deploy your pod",
    "not enough free gpus",
)
_CAPACITY_CODES = frozenset({"SUPPLY_CONSTRAINT"})
# Mutations whose null result, with no error, means "no machine had room".
_NULL_MEANS_NO_CAPACITY = frozenset(
    {"podFindAndDeployOnDemand", "podRentInterruptable", "podResume", "podBidResume"}
)
_OPERATION = re.compile(r"^\s*(query|mutation)\s+(\w+)")
_GENERIC_FAILURE = "something went wrong"

CAPACITY_ADVICE = (
    "Try another GPU type, another cloud type (SECURE/COMMUNITY), fewer GPUs or another data center, "
    "or retry in a few minutes; `rph gpus` shows what is in stock now."
)


def operation_of(document: str) -> tuple[str, str]:
    """``(kind, name)`` of a document, e.g. ``("mutation", "CreateOnDemandPod")``."""
    match = _OPERATION.match(document)
    if not match:
        raise ValueError("GraphQL documents must start with a named `query` or `mutation`")
    return match.group(1), match.group(2)


def _is_capacity(detail: GraphQLErrorDetail) -> bool:
    return detail.code in _CAPACITY_CODES or any(p in detail.message.lower() for p in _CAPACITY_PHRASES)


def _raise_for_errors(operation: str, errors: Any, body: Any) -> None:
    details = [GraphQLErrorDetail.from_api(e) for e in (errors if isinstance(errors, list) else [errors])]
    if any(_is_capacity(d) for d in details):
        raise CapacityError(
            f"No GPU capacity for {operation}: {details[0].message} {CAPACITY_ADVICE}",
            details=details,
            body=body,
        )
    text = "; ".join(d.describe() for d in details)
    advice = (
        " RunPod gives this generic error for many causes: check the request (image name, GPU id, disk sizes), "
        "then retry; for a create, list your pods first, as it may have been made."
        if any(_GENERIC_FAILURE in d.message.lower() for d in details)
        else ""
    )
    raise GraphQLError(f"RunPod GraphQL error in {operation}: {text}.{advice}", details=details, body=body)


class GraphQLClient:
    """Runs documents against RunPod's GraphQL endpoint through the shared HTTP transport."""

    def __init__(self, transport: HttpTransport, url: str = GRAPHQL_URL) -> None:
        self._transport = transport
        self.url = url

    def execute(
        self,
        document: str,
        variables: Mapping[str, Any] | None = None,
        *,
        idempotent: bool | None = None,
        retry_rate_limited: bool = True,
    ) -> dict[str, Any]:
        """Run ``document`` and return its ``data``. Queries are retried as reads, mutations are not,
        unless ``idempotent`` says otherwise (stop and terminate are safe to repeat). ``retry_rate_limited``
        False raises a 429 at once, for a caller that must look before sending again."""
        kind, operation = operation_of(document)
        if idempotent is None:
            idempotent = kind == "query"
        payload = {"query": document, "variables": dict(variables or {}), "operationName": operation}
        try:
            body = self._transport.request(
                "POST",
                self.url,
                json_body=payload,
                idempotent=idempotent,
                retry_rate_limited=retry_rate_limited,
            )
        except ApiStatusError as exc:
            if exc.status_code == 400 and isinstance(exc.body, Mapping) and exc.body.get("errors"):
                details = [GraphQLErrorDetail.from_api(e) for e in exc.body["errors"]]
                raise GraphQLValidationError(
                    f"RunPod rejected the {operation} document (HTTP 400): "
                    + "; ".join(d.describe() for d in details)
                    + ". This is a bug in runpod-hybrid, not in your input: please report it with this message.",
                    details=details,
                    status_code=400,
                    body=exc.body,
                ) from exc
            raise
        if not isinstance(body, Mapping):
            raise BadResponseError(
                f"RunPod answered {operation} with a JSON {type(body).__name__}, not an object."
            )
        if body.get("errors"):
            _raise_for_errors(operation, body["errors"], body)
        data = body.get("data")
        if not isinstance(data, Mapping):
            raise BadResponseError(
                f"RunPod answered {operation} with neither `data` nor `errors`. This is a RunPod-side fault: "
                "retry later.",
                status_code=200,
                body=body,
            )
        for field, value in data.items():
            if value is not None:
                continue
            if field in _NULL_MEANS_NO_CAPACITY:
                raise CapacityError(
                    f"No GPU capacity for {operation}: RunPod returned no pod and no error. {CAPACITY_ADVICE}",
                    body=body,
                )
            if field == "myself":
                raise AuthError(
                    "RunPod returned no account for this API key (data.myself is null): the key belongs to no "
                    "user or lacks read permission. Check RUNPOD_API_KEY or create a new key in the console.",
                    status_code=200,
                    body=body,
                )
        return dict(data)


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def create_variables(request: CreatePodRequest) -> dict[str, Any]:
    """The GraphQL variables of one create (also what ``rph pods create --dry-run`` prints)."""
    fields: dict[str, Any] = {
        "name": request.name,
        "gpuTypeId": request.gpu_type_id,
        "gpuCount": request.gpu_count,
        "cloudType": request.cloud_type,
        "imageName": request.image,
        "containerDiskInGb": request.container_disk_gb,
        "volumeInGb": request.volume_gb,
        "volumeMountPath": request.volume_mount_path,
        "ports": request.ports,  # ONE comma-separated string, e.g. "22/tcp,8888/http"
        "env": [{"key": k, "value": v} for k, v in request.env.items()],
        "startSsh": True,
        "supportPublicIp": request.support_public_ip,
    }
    optional = {
        "networkVolumeId": request.network_volume_id,
        "dockerArgs": request.docker_args,
        "terminateAfter": _iso(request.terminate_after) if request.terminate_after else None,
        "dataCenterId": request.data_center_id,
        "bidPerGpu": request.bid_per_gpu_usd,
    }
    fields.update({k: v for k, v in optional.items() if v is not None})
    return {"input": fields}


class GraphQLPodApi:
    """:class:`PodApi` over RunPod's GraphQL API."""

    def __init__(self, client: GraphQLClient) -> None:
        self._client = client

    def gpu_types(self, gpu_count: int, ids: list[str] | None = None) -> list[GpuType]:
        variables: dict[str, Any] = {
            "input": {"ids": ids} if ids else None,
            "secure": {"gpuCount": gpu_count, "secureCloud": True},
            "community": {"gpuCount": gpu_count, "secureCloud": False},
        }
        data = self._client.execute(gql.GPU_TYPES, variables)
        return [GpuType.from_api(raw, gpu_count) for raw in data.get("gpuTypes") or [] if raw]

    def list_pods(self) -> list[Pod]:
        data = self._client.execute(gql.LIST_PODS)
        return [Pod.from_api(raw) for raw in data["myself"].get("pods") or [] if raw]

    def get_pod(self, pod_id: str) -> Pod | None:
        raw = self._client.execute(gql.GET_POD, {"input": {"podId": pod_id}}).get("pod")
        return Pod.from_api(raw) if raw else None

    def pod_telemetry(self, pod_id: str) -> PodTelemetry | None:
        raw = self._client.execute(gql.POD_TELEMETRY, {"input": {"podId": pod_id}}).get("pod")
        return PodTelemetry.from_api(raw) if raw else None

    def create_pod(self, request: CreatePodRequest) -> Pod:
        document = gql.CREATE_SPOT_POD if request.spot else gql.CREATE_ON_DEMAND_POD
        field_name = "podRentInterruptable" if request.spot else "podFindAndDeployOnDemand"
        # A 429 comes back to the pods layer at once: it looks its client token up before sending again,
        # because a create answered 429 may still have been made.
        data = self._client.execute(document, create_variables(request), retry_rate_limited=False)
        return Pod.from_api(data[field_name])

    def rename_pod(self, pod_id: str, name: str) -> None:
        # Setting the same name twice is harmless, so a lost answer may be retried.
        self._client.execute(gql.RENAME_POD, {"input": {"podId": pod_id, "name": name}}, idempotent=True)

    def account_spend(self) -> AccountSpend:
        return AccountSpend.from_api(self._client.execute(gql.ACCOUNT_SPEND)["myself"])

    def resume_pod(self, pod_id: str, gpu_count: int, bid_per_gpu_usd: float | None) -> Pod:
        if bid_per_gpu_usd is None:
            data = self._client.execute(gql.RESUME_POD, {"input": {"podId": pod_id, "gpuCount": gpu_count}})
            return Pod.from_api(data["podResume"])
        data = self._client.execute(
            gql.RESUME_SPOT_POD,
            {"input": {"podId": pod_id, "gpuCount": gpu_count, "bidPerGpu": bid_per_gpu_usd}},
        )
        return Pod.from_api(data["podBidResume"])

    def stop_pod(self, pod_id: str) -> Pod:
        # Stopping twice is harmless, so a lost answer may be retried.
        data = self._client.execute(gql.STOP_POD, {"input": {"podId": pod_id}}, idempotent=True)
        return Pod.from_api(data["podStop"])

    def terminate_pod(self, pod_id: str) -> None:
        self._client.execute(gql.TERMINATE_POD, {"input": {"podId": pod_id}}, idempotent=True)

    def account_ssh_keys(self) -> str:
        return str(self._client.execute(gql.ACCOUNT_SSH_KEYS)["myself"].get("pubKey") or "")

    def set_account_ssh_keys(self, keys: str) -> None:
        self._client.execute(gql.UPDATE_ACCOUNT_SSH_KEYS, {"input": {"pubKey": keys}})

    def describe_create(self, request: CreatePodRequest) -> CreateCall:
        operation = "podRentInterruptable" if request.spot else "podFindAndDeployOnDemand"
        return CreateCall(operation, create_variables(request))

    def list_endpoints(self) -> list[EndpointInfo]:
        data = self._client.execute(gql.LIST_ENDPOINTS)
        return [EndpointInfo.from_api(e) for e in data["myself"].get("endpoints") or [] if e]

    def create_template(self, request: TemplateRequest) -> str:
        template = self._client.execute(
            gql.SAVE_TEMPLATE,
            {
                "input": {
                    "name": request.name,
                    "imageName": request.image,
                    "isServerless": True,
                    "containerDiskInGb": request.container_disk_gb,
                    "volumeInGb": 0,
                    "dockerArgs": "",
                    "env": [{"key": k, "value": v} for k, v in request.env.items()],
                    "startSsh": False,
                }
            },
        )["saveTemplate"]
        return str(template["id"])

    def create_endpoint(self, request: EndpointRequest) -> EndpointInfo:
        endpoint_input: dict[str, Any] = {
            "name": request.name,
            "templateId": request.template_id,
            "gpuIds": ",".join(request.gpu_pools),
            "workersMin": request.workers_min,
            "workersMax": request.workers_max,
            "idleTimeout": request.idle_timeout_s,
            "executionTimeoutMs": request.execution_timeout_s * 1000,
            "scalerType": "QUEUE_DELAY",
            "scalerValue": 4,
        }
        if request.network_volume_id:
            endpoint_input["networkVolumeId"] = request.network_volume_id
        data = self._client.execute(gql.SAVE_ENDPOINT, {"input": endpoint_input})
        return EndpointInfo.from_api(data["saveEndpoint"])

    def delete_endpoint(self, endpoint_id: str) -> None:
        self._client.execute(gql.DELETE_ENDPOINT, {"id": endpoint_id}, idempotent=True)

    def delete_template(self, name: str) -> None:
        self._client.execute(gql.DELETE_TEMPLATE, {"templateName": name}, idempotent=True)
