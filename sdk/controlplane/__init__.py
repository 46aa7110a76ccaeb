"""The control plane: the :class:`PodApi` seam, its value types, its GraphQL and REST v2 implementations, and
the per-operation choice between them (:class:`ControlPlane`)."""

from __future__ import annotations

from .choice import (
    CONTROL_PLANE_MODES,
    OPERATIONS,
    REMEMBER_S,
    ControlPlane,
    ControlPlaneMode,
    GoneMemory,
    Operation,
    Route,
    graphql_gone_reason,
)
from .graphql import GRAPHQL_URL, GraphQLClient, GraphQLPodApi
from .models import (
    AccountSpend,
    EndpointInfo,
    GpuOffer,
    GpuType,
    GpuUsage,
    NameTag,
    NetworkVolume,
    Pod,
    PodRuntime,
    PodTelemetry,
    PortMapping,
    SshEndpoint,
    describe_volumes,
    find_volume,
)
from .rest import REST_URL, RestClient, RestPodApi
from .seam import CreateCall, CreatePodRequest, EndpointRequest, PodApi, TemplateRequest, VolumeRequest

__all__ = [
    "CONTROL_PLANE_MODES",
    "GRAPHQL_URL",
    "OPERATIONS",
    "REMEMBER_S",
    "REST_URL",
    "AccountSpend",
    "ControlPlane",
    "ControlPlaneMode",
    "CreateCall",
    "CreatePodRequest",
    "EndpointInfo",
    "EndpointRequest",
    "GoneMemory",
    "GpuOffer",
    "GpuType",
    "GpuUsage",
    "GraphQLClient",
    "GraphQLPodApi",
    "NameTag",
    "NetworkVolume",
    "Operation",
    "Pod",
    "PodApi",
    "PodRuntime",
    "PodTelemetry",
    "PortMapping",
    "RestClient",
    "RestPodApi",
    "Route",
    "SshEndpoint",
    "TemplateRequest",
    "VolumeRequest",
    "describe_volumes",
    "find_volume",
    "graphql_gone_reason",
]
