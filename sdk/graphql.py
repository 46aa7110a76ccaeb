"""RunPod's GraphQL API: every document we send, and ``execute()``.

Each document is a named module constant that takes its values through ``$variables``; no value is ever
pasted into query text (a test checks every constant against the schema copies). ``execute()`` returns
``data`` or raises the typed error; all of RunPod's no-capacity shapes raise :class:`CapacityError`.

API quirks handled here (see RUNPOD-FACTS §2):
- errors arrive as HTTP 200 with ``errors``; a bad document as HTTP 400 ``GRAPHQL_VALIDATION_FAILED``;
- "no capacity" is a message, or ``extensions.code = SUPPLY_CONSTRAINT``, or a create that returns null
  with no error at all;
- ``data.myself`` is null when the key belongs to no user.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .errors import (
    ApiStatusError,
    AuthError,
    BadResponseError,
    CapacityError,
    GraphQLError,
    GraphQLErrorDetail,
    GraphQLValidationError,
)

if TYPE_CHECKING:
    from ._http import HttpTransport

GRAPHQL_URL = "https://api.runpod.io/graphql"

# --- documents -------------------------------------------------------------------------------------------

POD_FIELDS = """
fragment PodFields on Pod {
  id
  name
  desiredStatus
  costPerHr
  adjustedCostPerHr
  gpuCount
  vcpuCount
  memoryInGb
  imageName
  machineId
  containerDiskInGb
  volumeInGb
  volumeMountPath
  networkVolumeId
  ports
  podType
  lastStatusChange
  uptimeSeconds
  machine { gpuDisplayName gpuTypeId dataCenterId secureCloud supportPublicIp }
  runtime {
    uptimeInSeconds
    ports { ip isIpPublic privatePort publicPort type }
    gpus { id gpuUtilPercent memoryUtilPercent }
    container { cpuPercent memoryPercent }
  }
}
"""

LIST_PODS = (
    """
query ListPods {
  myself { id currentSpendPerHr pods { ...PodFields } }
}
"""
    + POD_FIELDS
)

GET_POD = (
    """
query GetPod($input: PodFilter!) {
  pod(input: $input) { ...PodFields }
}
"""
    + POD_FIELDS
)

POD_TELEMETRY = (
    """
query PodTelemetry($input: PodFilter!) {
  pod(input: $input) {
    ...PodFields
    latestTelemetry {
      state
      time
      cpuUtilization
      memoryUtilization
      averageGpuMetrics { percentUtilization memoryUtilization temperatureCelcius powerWatts }
      individualGpuMetrics { id percentUtilization memoryUtilization temperatureCelcius powerWatts }
    }
  }
}
"""
    + POD_FIELDS
)

# `maxUnreservedGpuCount` and `availableGpuCounts` appear in RunPod's docs output (runpod-samples) and the
# introspected merged schema, but not in the older third-party SDL; the schema test names that exception.
GPU_TYPES = """
query GpuTypes($input: GpuTypeFilter, $secure: GpuLowestPriceInput, $community: GpuLowestPriceInput) {
  gpuTypes(input: $input) {
    id
    displayName
    memoryInGb
    maxGpuCount
    secureCloud
    communityCloud
    securePrice
    communityPrice
    secureSpotPrice
    communitySpotPrice
    secureOffer: lowestPrice(input: $secure) {
      uninterruptablePrice minimumBidPrice stockStatus maxUnreservedGpuCount availableGpuCounts
    }
    communityOffer: lowestPrice(input: $community) {
      uninterruptablePrice minimumBidPrice stockStatus maxUnreservedGpuCount availableGpuCounts
    }
  }
}
"""

CREATE_ON_DEMAND_POD = (
    """
mutation CreateOnDemandPod($input: PodFindAndDeployOnDemandInput!) {
  podFindAndDeployOnDemand(input: $input) { ...PodFields }
}
"""
    + POD_FIELDS
)

CREATE_SPOT_POD = (
    """
mutation CreateSpotPod($input: PodRentInterruptableInput!) {
  podRentInterruptable(input: $input) { ...PodFields }
}
"""
    + POD_FIELDS
)

RESUME_POD = (
    """
mutation ResumePod($input: PodResumeInput!) {
  podResume(input: $input) { ...PodFields }
}
"""
    + POD_FIELDS
)

RESUME_SPOT_POD = (
    """
mutation ResumeSpotPod($input: PodBidResumeInput!) {
  podBidResume(input: $input) { ...PodFields }
}
"""
    + POD_FIELDS
)

STOP_POD = (
    """
mutation StopPod($input: PodStopInput!) {
  podStop(input: $input) { ...PodFields }
}
"""
    + POD_FIELDS
)

# podTerminate returns the scalar Void: no selection set.
TERMINATE_POD = """
mutation TerminatePod($input: PodTerminateInput!) {
  podTerminate(input: $input)
}
"""

ACCOUNT_SSH_KEYS = """
query AccountSshKeys {
  myself { id pubKey }
}
"""

# Replaces the account's whole key list: callers append to what ACCOUNT_SSH_KEYS returned.
UPDATE_ACCOUNT_SSH_KEYS = """
mutation UpdateAccountSshKeys($input: UpdateUserSettingsInput!) {
  updateUserSettings(input: $input) { id pubKey }
}
"""

# Serverless endpoint management (runpodctl and RunPod's Pulumi provider use these same mutations).
ENDPOINT_FIELDS = """
fragment EndpointFields on Endpoint {
  id
  name
  gpuIds
  gpuCount
  workersMin
  workersMax
  idleTimeout
  executionTimeoutMs
  templateId
  networkVolumeId
}
"""

LIST_ENDPOINTS = (
    """
query ListEndpoints {
  myself { id endpoints { ...EndpointFields } }
}
"""
    + ENDPOINT_FIELDS
)

SAVE_TEMPLATE = """
mutation SaveTemplate($input: SaveTemplateInput!) {
  saveTemplate(input: $input) { id name imageName isServerless }
}
"""

SAVE_ENDPOINT = (
    """
mutation SaveEndpoint($input: EndpointInput!) {
  saveEndpoint(input: $input) { ...EndpointFields }
}
"""
    + ENDPOINT_FIELDS
)

DELETE_ENDPOINT = """
mutation DeleteEndpoint($id: String!) {
  deleteEndpoint(id: $id)
}
"""

DELETE_TEMPLATE = """
mutation DeleteTemplate($templateName: String!) {
  deleteTemplate(templateName: $templateName)
}
"""

# Documents that also must validate against the older third-party SDL (runpod.schema.graphql).
POD_AND_GPU_DOCUMENTS: Mapping[str, str] = {
    "LIST_PODS": LIST_PODS,
    "GET_POD": GET_POD,
    "POD_TELEMETRY": POD_TELEMETRY,
    "GPU_TYPES": GPU_TYPES,
    "CREATE_ON_DEMAND_POD": CREATE_ON_DEMAND_POD,
    "CREATE_SPOT_POD": CREATE_SPOT_POD,
    "RESUME_POD": RESUME_POD,
    "RESUME_SPOT_POD": RESUME_SPOT_POD,
    "STOP_POD": STOP_POD,
    "TERMINATE_POD": TERMINATE_POD,
}

# --- execution -------------------------------------------------------------------------------------------

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
        self, document: str, variables: Mapping[str, Any] | None = None, *, idempotent: bool | None = None
    ) -> dict[str, Any]:
        """Run ``document`` and return its ``data``. Queries are retried as reads, mutations are not,
        unless ``idempotent`` says otherwise (stop and terminate are safe to repeat)."""
        kind, operation = operation_of(document)
        if idempotent is None:
            idempotent = kind == "query"
        payload = {"query": document, "variables": dict(variables or {}), "operationName": operation}
        try:
            body = self._transport.request("POST", self.url, json_body=payload, idempotent=idempotent)
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
