"""Every GraphQL document runpod-hybrid sends to RunPod, as named module constants.

Values always travel in ``$variables``, never pasted into query text; a test validates every constant against
the schema copies in tests/data/runpod-schema.
"""

from __future__ import annotations

from collections.abc import Mapping

# The core pod fields: only what RunPod's own clients select (runpod-python's pod queries, runpodctl's `myPods`,
# and the runtime block of RunPod's docs), so a field RunPod drops from its schema cannot fail every pod
# operation. Fields no reference client sends live in the extras documents below, asked for separately.
POD_FIELDS = """
fragment PodFields on Pod {
  id
  name
  desiredStatus
  costPerHr
  gpuCount
  vcpuCount
  memoryInGb
  imageName
  machineId
  containerDiskInGb
  volumeInGb
  volumeMountPath
  ports
  podType
  lastStatusChange
  uptimeSeconds
  machine { gpuDisplayName }
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
  myself { id pods { ...PodFields } }
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

# The extras: fields no reference client selects. Each document is asked for on its own after the core one;
# if RunPod rejects it, the core answer stands and a warning says what is missing.
POD_EXTRA_FIELDS = """
fragment PodExtraFields on Pod {
  id
  adjustedCostPerHr
  networkVolumeId
  machine { gpuTypeId dataCenterId secureCloud supportPublicIp }
}
"""

LIST_POD_EXTRAS = (
    """
query ListPodExtras {
  myself { id pods { ...PodExtraFields } }
}
"""
    + POD_EXTRA_FIELDS
)

GET_POD_EXTRAS = (
    """
query GetPodExtras($input: PodFilter!) {
  pod(input: $input) { ...PodExtraFields }
}
"""
    + POD_EXTRA_FIELDS
)

POD_TELEMETRY = """
query PodTelemetry($input: PodFilter!) {
  pod(input: $input) {
    id
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

# Renames a pod in place, without a restart: the mutation RunPod's web console sends. It is not in RunPod's
# published GraphQL spec (tests/data/runpod-schema/README.md says where it was seen); REST v2's PATCH of
# /v2/pods/{id} would do it too, on an API this client does not speak yet.
RENAME_POD = """
mutation RenamePod($input: PodEditNameInput!) {
  podEditName(input: $input) { id name }
}
"""

ACCOUNT_SPEND = """
query AccountSpend {
  myself { id clientBalance currentSpendPerHr }
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
    "LIST_POD_EXTRAS": LIST_POD_EXTRAS,
    "GET_POD_EXTRAS": GET_POD_EXTRAS,
    "POD_TELEMETRY": POD_TELEMETRY,
    "GPU_TYPES": GPU_TYPES,
    "CREATE_ON_DEMAND_POD": CREATE_ON_DEMAND_POD,
    "CREATE_SPOT_POD": CREATE_SPOT_POD,
    "RESUME_POD": RESUME_POD,
    "RESUME_SPOT_POD": RESUME_SPOT_POD,
    "STOP_POD": STOP_POD,
    "TERMINATE_POD": TERMINATE_POD,
}

# The fields each extras document adds, and what the SDK loses when RunPod rejects it.
EXTRAS_LOST: Mapping[str, str] = {
    "ListPodExtras": "savings-plan prices (adjustedCostPerHr), network volume, GPU type id, data centre and "
    "cloud of each pod",
    "GetPodExtras": "the pod's savings-plan price (adjustedCostPerHr), network volume, GPU type id, data centre "
    "and cloud",
    "PodTelemetry": "GPU temperature and power, and RunPod's latest telemetry sample (latestTelemetry)",
}
