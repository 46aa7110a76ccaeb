"""Deploying and managing serverless endpoints (``rph endpoint deploy|list|get|delete``).

Through the control-plane seam: a worker template, then the endpoint that runs it (as runpodctl and RunPod's
Pulumi provider do). Arguments are checked against RunPod's limits before anything is sent.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping, Sequence

from runpod_hybrid.controlplane import EndpointInfo, EndpointRequest, PodApi, TemplateRequest
from runpod_hybrid.errors import NotFoundError

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
MAX_EXECUTION_TIMEOUT_S = 7 * 24 * 3600


def template_name(endpoint_name: str) -> str:
    return f"{endpoint_name}-template"


class Endpoints:
    """The account's serverless endpoints."""

    def __init__(self, api: PodApi) -> None:
        self._api = api

    def deploy(
        self,
        name: str,
        *,
        image: str,
        gpu_pools: Sequence[str],
        workers_max: int,
        workers_min: int = 0,
        idle_timeout_s: int = 5,
        execution_timeout_s: int = 600,
        env: Mapping[str, str] | None = None,
        network_volume_id: str | None = None,
        container_disk_gb: int = 10,
    ) -> EndpointInfo:
        """Create the worker template, then the endpoint that runs it. ``gpu_pools`` are RunPod's pool ids
        (``GPU_POOLS``) in order of preference."""
        unknown = [p for p in gpu_pools if p not in GPU_POOLS]
        if unknown or not gpu_pools:
            raise ValueError(f"GPU pools must be among {', '.join(GPU_POOLS)}; got {list(gpu_pools)}")
        if workers_max < max(1, workers_min):
            raise ValueError("workers_max must be at least 1 and at least workers_min")
        if not 5 <= execution_timeout_s <= MAX_EXECUTION_TIMEOUT_S:
            raise ValueError("execution_timeout_s must be between 5 s and 7 days (RunPod's limits)")
        template_id = self._api.create_template(
            TemplateRequest(template_name(name), image, container_disk_gb, dict(env or {}))
        )
        return self._api.create_endpoint(
            EndpointRequest(
                name,
                template_id,
                tuple(gpu_pools),
                workers_min,
                workers_max,
                idle_timeout_s,
                execution_timeout_s,
                network_volume_id,
            )
        )

    def list(self) -> builtins.list[EndpointInfo]:
        """Every endpoint of the account."""
        return self._api.list_endpoints()

    def get(self, endpoint: str) -> EndpointInfo:
        """One endpoint by id or name."""
        for info in self.list():
            if endpoint in (info.id, info.name):
                return info
        raise NotFoundError(f"No endpoint {endpoint!r} in this account. `rph endpoint list` shows them.")

    def delete(self, endpoint: str) -> None:
        """Delete the endpoint, then its template (RunPod refuses to delete a template still in use)."""
        info = self.get(endpoint)
        self._api.delete_endpoint(info.id)
        if info.name:
            self._api.delete_template(template_name(info.name))
