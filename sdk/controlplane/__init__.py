"""The control plane: the :class:`PodApi` seam, its value types, and its GraphQL implementation."""

from __future__ import annotations

from .graphql import GRAPHQL_URL, GraphQLClient, GraphQLPodApi
from .models import (
    EndpointInfo,
    GpuOffer,
    GpuType,
    GpuUsage,
    Pod,
    PodRuntime,
    PodTelemetry,
    PortMapping,
    SshEndpoint,
    name_with_token,
    token_of,
)
from .seam import CreateCall, CreatePodRequest, EndpointRequest, PodApi, TemplateRequest

__all__ = [
    "GRAPHQL_URL",
    "CreateCall",
    "CreatePodRequest",
    "EndpointInfo",
    "EndpointRequest",
    "GpuOffer",
    "GpuType",
    "GpuUsage",
    "GraphQLClient",
    "GraphQLPodApi",
    "Pod",
    "PodApi",
    "PodRuntime",
    "PodTelemetry",
    "PortMapping",
    "SshEndpoint",
    "TemplateRequest",
    "name_with_token",
    "token_of",
]
