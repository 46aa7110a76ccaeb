"""The control plane: the :class:`PodApi` seam, its value types, and its GraphQL implementation."""

from __future__ import annotations

from .graphql import GRAPHQL_URL, GraphQLClient, GraphQLPodApi
from .models import (
    AccountSpend,
    EndpointInfo,
    GpuOffer,
    GpuType,
    GpuUsage,
    NameTag,
    Pod,
    PodRuntime,
    PodTelemetry,
    PortMapping,
    SshEndpoint,
)
from .seam import CreateCall, CreatePodRequest, EndpointRequest, PodApi, TemplateRequest

__all__ = [
    "GRAPHQL_URL",
    "AccountSpend",
    "CreateCall",
    "CreatePodRequest",
    "EndpointInfo",
    "EndpointRequest",
    "GpuOffer",
    "GpuType",
    "GpuUsage",
    "GraphQLClient",
    "GraphQLPodApi",
    "NameTag",
    "Pod",
    "PodApi",
    "PodRuntime",
    "PodTelemetry",
    "PortMapping",
    "SshEndpoint",
    "TemplateRequest",
]
