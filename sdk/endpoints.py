"""Deploying and managing serverless endpoints.

Through GraphQL (``saveTemplate`` + ``saveEndpoint``, as runpodctl and RunPod's Pulumi provider do), not REST
v2: it shares the schema-validated client, cassettes and error mapping of every other control-plane call
here, and ``EndpointInput`` carries ``executionTimeoutMs`` and ``idleTimeout`` directly. GraphQL's retirement is
announced for early 2027; this module is the one place to port to ``/v2/templates`` and ``/v2/serverless``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from . import graphql as gql
from .errors import NotFoundError

GPU_POOLS = (
    "AMPERE_16",
    "AMPERE_24",
    "ADA_24",
    "AMPERE_48",
    "ADA_48_PRO",
    "AMPERE_80",
    "ADA_80_PRO",
    "HOPPER_141",
)


@dataclass(frozen=True)
class EndpointInfo:
    id: str
    name: str
    gpu_pools: tuple[str, ...]
    workers_min: int
    workers_max: int
    idle_timeout_s: int
    execution_timeout_s: float | None
    template_id: str | None
    network_volume_id: str | None

    @classmethod
    def from_api(cls, raw: Mapping[str, Any]) -> EndpointInfo:
        timeout_ms = raw.get("executionTimeoutMs")
        return cls(
            id=str(raw.get("id")),
            name=str(raw.get("name") or ""),
            gpu_pools=tuple(p for p in str(raw.get("gpuIds") or "").split(",") if p),
            workers_min=int(raw.get("workersMin") or 0),
            workers_max=int(raw.get("workersMax") or 0),
            idle_timeout_s=int(raw.get("idleTimeout") or 0),
            execution_timeout_s=timeout_ms / 1000 if isinstance(timeout_ms, int | float) else None,
            template_id=raw.get("templateId"),
            network_volume_id=raw.get("networkVolumeId"),
        )


class Endpoints:
    def __init__(self, client: gql.GraphQLClient) -> None:
        self._client = client

    def deploy(
        self,
        name: str,
        image: str,
        gpu_pools: Sequence[str],
        *,
        workers_max: int,
        workers_min: int = 0,
        idle_timeout_s: int = 5,
        execution_timeout_s: int = 600,
        env: Mapping[str, str] | None = None,
        network_volume_id: str | None = None,
        container_disk_gb: int = 10,
    ) -> EndpointInfo:
        """Create the worker template, then the endpoint that runs it."""
        unknown = [p for p in gpu_pools if p not in GPU_POOLS]
        if unknown or not gpu_pools:
            raise ValueError(f"GPU pools must be among {', '.join(GPU_POOLS)}; got {list(gpu_pools)}")
        if workers_max < max(1, workers_min):
            raise ValueError("workers_max must be at least 1 and at least workers_min")
        if not 5 <= execution_timeout_s <= 7 * 24 * 3600:
            raise ValueError("execution_timeout_s must be between 5 s and 7 days (RunPod's limits)")
        env_list = [{"key": k, "value": v} for k, v in (env or {}).items()]
        template = self._client.execute(
            gql.SAVE_TEMPLATE,
            {
                "input": {
                    "name": f"{name}-template",
                    "imageName": image,
                    "isServerless": True,
                    "containerDiskInGb": container_disk_gb,
                    "volumeInGb": 0,
                    "dockerArgs": "",
                    "env": env_list,
                    "startSsh": False,
                }
            },
        )["saveTemplate"]
        endpoint_input: dict[str, Any] = {
            "name": name,
            "templateId": template["id"],
            "gpuIds": ",".join(gpu_pools),
            "workersMin": workers_min,
            "workersMax": workers_max,
            "idleTimeout": idle_timeout_s,
            "executionTimeoutMs": execution_timeout_s * 1000,
            "scalerType": "QUEUE_DELAY",
            "scalerValue": 4,
        }
        if network_volume_id:
            endpoint_input["networkVolumeId"] = network_volume_id
        return EndpointInfo.from_api(
            self._client.execute(gql.SAVE_ENDPOINT, {"input": endpoint_input})["saveEndpoint"]
        )

    def list(self) -> list[EndpointInfo]:
        data = self._client.execute(gql.LIST_ENDPOINTS)
        return [EndpointInfo.from_api(e) for e in data["myself"].get("endpoints") or [] if e]

    def get(self, endpoint_id: str) -> EndpointInfo:
        for endpoint in self.list():
            if endpoint_id in (endpoint.id, endpoint.name):
                return endpoint
        raise NotFoundError(f"No endpoint {endpoint_id!r} in this account. `rph endpoint list` shows them.")

    def delete(self, endpoint_id: str) -> None:
        """Delete the endpoint, then its template (RunPod refuses to delete a template still in use)."""
        endpoint = self.get(endpoint_id)
        self._client.execute(gql.DELETE_ENDPOINT, {"id": endpoint.id}, idempotent=True)
        if endpoint.name:
            self._client.execute(
                gql.DELETE_TEMPLATE, {"templateName": f"{endpoint.name}-template"}, idempotent=True
            )
