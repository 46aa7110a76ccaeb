"""The one seam between pods/GPUs and RunPod's control-plane API.

``pods.py`` and ``gpus.py`` call only :class:`PodApi`. Today it is served by GraphQL, the only API with spot
pods and server-side TTLs; a REST v2 implementation (``/v2/pods``, see tests/data/runpod-openapi) can be
added beside :class:`GraphQLPodApi` without touching callers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from . import graphql as gql
from .models import GpuType, Pod, PodTelemetry


@dataclass(frozen=True)
class CreatePodRequest:
    """Exactly one create call: one GPU type, one cloud type. ``bid_per_gpu_usd`` set means spot."""

    name: str
    gpu_type_id: str
    gpu_count: int
    cloud_type: str
    image: str
    container_disk_gb: int
    volume_gb: int
    ports: str
    env: Mapping[str, str] = field(default_factory=dict)
    volume_mount_path: str = "/workspace"
    network_volume_id: str | None = None
    docker_args: str | None = None
    terminate_after: datetime | None = None
    support_public_ip: bool = True
    data_center_id: str | None = None
    bid_per_gpu_usd: float | None = None

    @property
    def spot(self) -> bool:
        return self.bid_per_gpu_usd is not None


class PodApi(Protocol):
    """What pods and GPUs need from RunPod, in our own types."""

    def gpu_types(self, gpu_count: int, ids: list[str] | None = None) -> list[GpuType]: ...
    def list_pods(self) -> list[Pod]: ...
    def get_pod(self, pod_id: str) -> Pod | None: ...
    def pod_telemetry(self, pod_id: str) -> PodTelemetry | None: ...
    def create_pod(self, request: CreatePodRequest) -> Pod: ...
    def resume_pod(self, pod_id: str, gpu_count: int, bid_per_gpu_usd: float | None) -> Pod: ...
    def stop_pod(self, pod_id: str) -> Pod: ...
    def terminate_pod(self, pod_id: str) -> None: ...
    def account_ssh_keys(self) -> str: ...
    def set_account_ssh_keys(self, keys: str) -> None: ...


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

    def __init__(self, client: gql.GraphQLClient) -> None:
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
        data = self._client.execute(document, create_variables(request))
        return Pod.from_api(data[field_name])

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
