"""The one seam between the SDK and RunPod's control-plane API: :class:`PodApi`.

``pods/`` and ``serverless/``'s endpoint management call only this protocol, in our own types (``models``).
Two implementations serve it: GraphQL (``graphql.py``), the design card's choice and the only API with spot
pods, and REST v2 (``rest.py``, RunPod's successor API). ``choice.py`` picks one per operation
(``control_plane = "auto" | "graphql" | "rest"``). Where an API cannot do an operation its implementation
raises :class:`~runpod_hybrid.errors.ApiUnavailableError` saying which API can.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from .models import AccountSpend, EndpointInfo, GpuType, NetworkVolume, Pod, PodTelemetry


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


@dataclass(frozen=True)
class CreateCall:
    """What one create sends, for a dry run: the API's operation name and its arguments."""

    operation: str
    arguments: Mapping[str, Any]


@dataclass(frozen=True)
class TemplateRequest:
    """A serverless worker template: the image and how its workers start."""

    name: str
    image: str
    container_disk_gb: int
    env: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class EndpointRequest:
    """A serverless endpoint running ``template_id``."""

    name: str
    template_id: str
    gpu_pools: tuple[str, ...]
    workers_min: int
    workers_max: int
    idle_timeout_s: int
    execution_timeout_s: int
    network_volume_id: str | None = None
    # Where workers may run; the control plane sets it to the network volume's data centre.
    data_center_id: str | None = None


@dataclass(frozen=True)
class VolumeRequest:
    """A network volume: storage that outlives pods, in one data centre (``size_gb`` 10 to 4096)."""

    name: str
    size_gb: int
    data_center_id: str


class PodApi(Protocol):
    """What pods and GPUs need from RunPod, in our own types. Operation names are the method names, plus
    ``create_spot_pod`` and ``resume_spot_pod`` for the spot forms of create and resume."""

    def require(self, operation: str) -> None:
        """Raise :class:`~runpod_hybrid.errors.ApiUnavailableError` now, before any call, when ``operation``
        cannot be served (e.g. a spot create once GraphQL is gone)."""
        ...

    def gpu_types(
        self, gpu_count: int, ids: list[str] | None = None, data_center_id: str | None = None
    ) -> list[GpuType]:
        """GPU types with offers for ``gpu_count`` GPUs, in stock anywhere or, given ``data_center_id``, there."""
        ...

    def list_pods(self) -> list[Pod]: ...
    def get_pod(self, pod_id: str) -> Pod | None: ...
    def pod_telemetry(self, pod_id: str) -> PodTelemetry | None: ...
    def create_pod(self, request: CreatePodRequest) -> Pod: ...
    def resume_pod(self, pod_id: str, gpu_count: int, bid_per_gpu_usd: float | None) -> Pod: ...
    def stop_pod(self, pod_id: str) -> Pod: ...
    def restart_pod(self, pod_id: str) -> Pod: ...
    def terminate_pod(self, pod_id: str) -> None: ...
    def rename_pod(self, pod_id: str, name: str) -> None: ...
    def account_spend(self) -> AccountSpend: ...
    def account_ssh_keys(self) -> str: ...
    def set_account_ssh_keys(self, keys: str) -> None: ...
    def describe_create(self, request: CreatePodRequest) -> CreateCall: ...
    def list_endpoints(self) -> list[EndpointInfo]: ...
    def create_template(self, request: TemplateRequest) -> str: ...
    def create_endpoint(self, request: EndpointRequest) -> EndpointInfo: ...
    def delete_endpoint(self, endpoint_id: str) -> None: ...
    def delete_template(self, name: str) -> None: ...
    def list_network_volumes(self) -> list[NetworkVolume]: ...
    def create_network_volume(self, request: VolumeRequest) -> NetworkVolume: ...
    def delete_network_volume(self, volume_id: str) -> None: ...
