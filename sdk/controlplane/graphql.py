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
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from runpod_hybrid._logging import get_logger
from runpod_hybrid.errors import (
    ApiStatusError,
    ApiUnavailableError,
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
from .models import AccountSpend, EndpointInfo, GpuType, NetworkVolume, Pod, PodTelemetry
from .seam import CreateCall, CreatePodRequest, EndpointRequest, TemplateRequest, VolumeRequest

log = get_logger(__name__)

GRAPHQL_URL = "https://api.runpod.io/graphql"
# Operations of the seam that only REST v2 serves.
REST_ONLY = frozenset(
    {"restart_pod", "list_network_volumes", "create_network_volume", "delete_network_volume"}
)

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


def _with_extras(core: Mapping[str, Any], extras: Mapping[str, Any] | None) -> dict[str, Any]:
    """A pod's core fields with its extras laid over them (``machine`` merged, not replaced)."""
    if not extras:
        return dict(core)
    machine = {**(core.get("machine") or {}), **(extras.get("machine") or {})}
    return {**core, **{k: v for k, v in extras.items() if v is not None}, "machine": machine}


class GraphQLPodApi:
    """:class:`PodApi` over RunPod's GraphQL API.

    Pod reads send the core document first, then the extras (fields no reference client sends). An extras
    document RunPod rejects is not sent again in this process: its fields stay empty and a warning says what
    is missing, while every pod operation keeps working."""

    def __init__(self, client: GraphQLClient) -> None:
        self._client = client
        self._rejected_extras: dict[str, str] = {}  # operation -> RunPod's reason

    def _extras(self, document: str, variables: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
        _, operation = operation_of(document)
        if operation in self._rejected_extras:
            return None
        try:
            return self._client.execute(document, variables)
        except GraphQLError as exc:
            self._rejected_extras[operation] = str(exc)
            log.warning(
                "graphql.extras_rejected",
                operation=operation,
                lost=gql.EXTRAS_LOST[operation],
                reason=str(exc)[:300],
                advice="pods keep working without these fields; please report this (RunPod changed its schema)",
            )
            return None

    def _needs_rest(self, operation: str) -> ApiUnavailableError:
        return ApiUnavailableError(
            f"{operation} needs RunPod's REST v2 API (GraphQL has no such operation here); use the control "
            "plane's choice (RunPod().pods, RunPod().volumes), which sends it there."
        )

    def require(self, operation: str) -> None:
        if operation in REST_ONLY:
            raise self._needs_rest(operation)

    def missing_extras(self) -> dict[str, str]:
        """What RunPod rejected in this process: extras operation -> what is lost."""
        return {op: gql.EXTRAS_LOST[op] for op in self._rejected_extras}

    def gpu_types(
        self, gpu_count: int, ids: list[str] | None = None, data_center_id: str | None = None
    ) -> list[GpuType]:
        where = {"dataCenterId": data_center_id} if data_center_id else {}
        variables: dict[str, Any] = {
            "input": {"ids": ids} if ids else None,
            "secure": {"gpuCount": gpu_count, "secureCloud": True, **where},
            "community": {"gpuCount": gpu_count, "secureCloud": False, **where},
        }
        data = self._client.execute(gql.GPU_TYPES, variables)
        return [GpuType.from_api(raw, gpu_count) for raw in data.get("gpuTypes") or [] if raw]

    def list_pods(self) -> list[Pod]:
        data = self._client.execute(gql.LIST_PODS)
        extras = self._extras(gql.LIST_POD_EXTRAS)
        by_id = {p["id"]: p for p in ((extras or {}).get("myself") or {}).get("pods") or [] if p}
        return [
            Pod.from_api(_with_extras(raw, by_id.get(raw.get("id"))))
            for raw in data["myself"].get("pods") or []
            if raw
        ]

    def _raw_pod(self, pod_id: str) -> dict[str, Any] | None:
        variables = {"input": {"podId": pod_id}}
        raw = self._client.execute(gql.GET_POD, variables).get("pod")
        if not raw:
            return None
        extras = self._extras(gql.GET_POD_EXTRAS, variables)
        return _with_extras(raw, (extras or {}).get("pod"))

    def get_pod(self, pod_id: str) -> Pod | None:
        raw = self._raw_pod(pod_id)
        return Pod.from_api(raw) if raw else None

    def pod_telemetry(self, pod_id: str) -> PodTelemetry | None:
        raw = self._raw_pod(pod_id)
        if raw is None:
            return None
        sample = self._extras(gql.POD_TELEMETRY, {"input": {"podId": pod_id}})
        telemetry = ((sample or {}).get("pod") or {}).get("latestTelemetry")
        missing = () if sample is not None else (f"{gql.EXTRAS_LOST['PodTelemetry']}: RunPod rejected them",)
        return replace(PodTelemetry.from_api({**raw, "latestTelemetry": telemetry}), missing=missing)

    def create_pod(self, request: CreatePodRequest) -> Pod:
        document = gql.CREATE_SPOT_POD if request.spot else gql.CREATE_ON_DEMAND_POD
        field_name = "podRentInterruptable" if request.spot else "podFindAndDeployOnDemand"
        # A 429 comes back to the pods layer at once: it looks its client token up before sending again,
        # because a create answered 429 may still have been made.
        data = self._client.execute(document, create_variables(request), retry_rate_limited=False)
        raw = data[field_name]
        # The new pod's data centre, GPU type and price are extras: asked for apart, as on every read.
        extras = self._extras(gql.GET_POD_EXTRAS, {"input": {"podId": raw.get("id")}})
        return Pod.from_api(_with_extras(raw, (extras or {}).get("pod")))

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

    def restart_pod(self, pod_id: str) -> Pod:
        raise self._needs_rest("restart_pod")

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
        if request.data_center_id:
            endpoint_input["locations"] = request.data_center_id
        data = self._client.execute(gql.SAVE_ENDPOINT, {"input": endpoint_input})
        return EndpointInfo.from_api(data["saveEndpoint"])

    def delete_endpoint(self, endpoint_id: str) -> None:
        self._client.execute(gql.DELETE_ENDPOINT, {"id": endpoint_id}, idempotent=True)

    def delete_template(self, name: str) -> None:
        self._client.execute(gql.DELETE_TEMPLATE, {"templateName": name}, idempotent=True)

    def list_network_volumes(self) -> list[NetworkVolume]:
        raise self._needs_rest("list_network_volumes")

    def create_network_volume(self, request: VolumeRequest) -> NetworkVolume:
        raise self._needs_rest("create_network_volume")

    def delete_network_volume(self, volume_id: str) -> None:
        raise self._needs_rest("delete_network_volume")
