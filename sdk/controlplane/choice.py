"""Which control-plane API serves each operation: :class:`ControlPlane`, the :class:`PodApi` callers get.

The setting ``control_plane``:
- ``auto`` (default): GraphQL, the design card's choice, while it lives. When GraphQL answers that it is gone
  (HTTP 404 or 410 on ``/graphql``, or RunPod's retirement error) or stays rate-limited past the retry
  policy, the process switches to REST v2 for good, re-sends the call that failed there (it surely did not
  act: those answers mean GraphQL did nothing) and remembers the switch for :data:`REMEMBER_S` in the state
  dir, so the next process does not knock on a closed door first.
- ``graphql``: GraphQL only (operations only REST v2 has still go there).
- ``rest``: REST v2 only; spot create and bid resume fail with a clear message.
Operations only REST v2 has (restart, network volumes) always go to REST v2.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal, TypeVar

from runpod_hybrid._logging import get_logger
from runpod_hybrid.errors import (
    ApiError,
    ApiStatusError,
    ApiUnavailableError,
    GraphQLError,
    RateLimitError,
)

from .graphql import GraphQLPodApi
from .models import AccountSpend, EndpointInfo, GpuType, NetworkVolume, Pod, PodTelemetry, find_volume
from .seam import CreateCall, CreatePodRequest, EndpointRequest, PodApi, TemplateRequest, VolumeRequest

log = get_logger(__name__)

Api = Literal["graphql", "rest"]
ControlPlaneMode = Literal["auto", "graphql", "rest"]
CONTROL_PLANE_MODES: tuple[ControlPlaneMode, ...] = ("auto", "graphql", "rest")
REMEMBER_S = 6 * 3600.0
T = TypeVar("T")

# What RunPod may say when GraphQL is retired (its exact words are not published): checked in lower case,
# only in messages that also name GraphQL.
_RETIREMENT_PHRASES = ("retired", "sunset", "no longer available", "no longer supported", "has been removed")
_RETIREMENT_CODES = frozenset({"GONE", "API_RETIRED", "GRAPHQL_RETIRED", "DEPRECATED"})


@dataclass(frozen=True)
class Operation:
    """One control-plane operation: the APIs that can serve it (the one ``auto`` prefers first) and what a
    user loses when only REST v2 serves it."""

    name: str
    what: str
    apis: tuple[Api, ...]
    lost_without_graphql: str = ""


OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "gpu_types",
        "GPU catalog: stock and price (`rph gpus`, choosing a GPU)",
        ("graphql", "rest"),
        "live per-count lowest prices, account discounts and spot prices (REST v2 gives list prices and "
        "NONE/LOW/MEDIUM/HIGH stock, per data centre too)",
    ),
    Operation(
        "list_pods",
        "list pods (`rph pods list`, budget caps, create recovery)",
        ("graphql", "rest"),
        "savings-plan price, GPU display name, spot flag; a stopped pod's price reads $0",
    ),
    Operation(
        "get_pod",
        "one pod (`rph pods get|wait|ssh-info`)",
        ("graphql", "rest"),
        "savings-plan price, GPU display name, spot flag, last status text",
    ),
    Operation(
        "pod_telemetry",
        "pod telemetry (`rph pods telemetry`)",
        ("graphql", "rest"),
        "GPU temperature and power",
    ),
    Operation(
        "create_pod",
        "create an on-demand pod (`rph pods create`, pod jobs)",
        ("graphql", "rest"),
        "supportPublicIp (a COMMUNITY pod may get no public IP: use SECURE), cloud type ALL",
    ),
    Operation(
        "create_spot_pod",
        "create a spot pod (`rph pods create --spot`)",
        ("graphql",),
        "everything: REST v2 has no spot pods",
    ),
    Operation(
        "resume_pod",
        "start a stopped pod (`rph pods start`)",
        ("graphql", "rest"),
        "a new GPU count on start",
    ),
    Operation(
        "resume_spot_pod",
        "start a stopped spot pod with a bid",
        ("graphql",),
        "everything: REST v2 has no spot pods",
    ),
    Operation("stop_pod", "stop a pod (`rph pods stop`)", ("graphql", "rest")),
    Operation("restart_pod", "restart a pod's container (`rph pods restart`)", ("rest",)),
    Operation("terminate_pod", "terminate a pod (`rph pods terminate`)", ("graphql", "rest")),
    Operation(
        "rename_pod", "move a pod's deadline, kept in its name (`rph pods extend`)", ("graphql", "rest")
    ),
    Operation(
        "account_spend",
        "the account's balance and spend per hour (`rph spend`)",
        ("graphql", "rest"),
        "the balance and spend per hour (REST v2 reports neither)",
    ),
    Operation("account_ssh_keys", "read the account's SSH keys", ("graphql", "rest")),
    Operation(
        "set_account_ssh_keys", "add our key to the account (`rph pods authorize-key`)", ("graphql", "rest")
    ),
    Operation(
        "list_endpoints",
        "list serverless endpoints (`rph endpoint list|get`)",
        ("graphql", "rest"),
        "the template id of each endpoint",
    ),
    Operation("create_template", "create a worker template (`rph endpoint deploy`)", ("graphql", "rest")),
    Operation("create_endpoint", "create an endpoint (`rph endpoint deploy`)", ("graphql", "rest")),
    Operation("delete_endpoint", "delete an endpoint (`rph endpoint delete`)", ("graphql", "rest")),
    Operation("delete_template", "delete its template (`rph endpoint delete`)", ("graphql", "rest")),
    Operation("list_network_volumes", "list network volumes (`rph volumes list`, placement)", ("rest",)),
    Operation("create_network_volume", "create a network volume (`rph volumes create`)", ("rest",)),
    Operation("delete_network_volume", "delete a network volume (`rph volumes delete`)", ("rest",)),
)
_BY_NAME = {op.name: op for op in OPERATIONS}


@dataclass(frozen=True)
class Route:
    """Where one operation goes now: ``api`` is None when no usable API can serve it."""

    operation: str
    what: str
    api: Api | None
    lost_without_graphql: str


def graphql_gone_reason(exc: BaseException) -> str | None:
    """Why ``exc`` means GraphQL is gone for this process, or None when it is an ordinary error."""
    if isinstance(exc, RateLimitError):
        return "GraphQL stayed rate-limited past the retry policy"
    if isinstance(exc, ApiStatusError) and exc.status_code in (404, 410):
        return f"GraphQL answered HTTP {exc.status_code} (gone)"
    if isinstance(exc, GraphQLError):
        for detail in exc.details:
            message = detail.message.lower()
            retired = "graphql" in message and any(p in message for p in _RETIREMENT_PHRASES)
            if retired or detail.code in _RETIREMENT_CODES:
                return f"GraphQL says it is retired: {detail.message}"
    return None


class GoneMemory:
    """A small file in the state dir: when GraphQL was found gone, and why (kept :data:`REMEMBER_S`)."""

    def __init__(self, path: Path, *, wall_clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self._wall_clock = wall_clock

    def recall(self) -> str | None:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            since, reason = float(data["gone_since"]), str(data["reason"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return reason if self._wall_clock() - since < REMEMBER_S else None

    def remember(self, reason: str) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(f".tmp{os.getpid()}")
            tmp.write_text(json.dumps({"gone_since": self._wall_clock(), "reason": reason}), encoding="utf-8")
            tmp.replace(self.path)
        except OSError as exc:  # the switch still holds for this process
            log.warning("controlplane.memory_not_saved", path=str(self.path), error=str(exc))


class ControlPlane:
    """:class:`PodApi` that sends each operation to GraphQL or REST v2 per ``mode`` (see the module doc)."""

    def __init__(
        self,
        graphql: GraphQLPodApi,
        rest: PodApi,
        *,
        mode: ControlPlaneMode = "auto",
        memory: GoneMemory | None = None,
    ) -> None:
        if mode not in CONTROL_PLANE_MODES:
            raise ValueError(f"control_plane must be one of {', '.join(CONTROL_PLANE_MODES)}, not {mode!r}")
        self._graphql = graphql
        self._rest = rest
        self.mode: ControlPlaneMode = mode
        self._memory = memory
        recalled = memory.recall() if memory is not None and mode == "auto" else None
        self.graphql_gone: str | None = f"{recalled} (remembered from an earlier run)" if recalled else None

    # --- the choice ---

    def api_for(self, operation: str) -> Api | None:
        apis = _BY_NAME[operation].apis
        if self.mode == "rest" or (self.mode == "auto" and self.graphql_gone):
            return "rest" if "rest" in apis else None
        return apis[0]

    def routes(self) -> list[Route]:
        """Every operation and the API it uses now (``rph config show``)."""
        return [Route(op.name, op.what, self.api_for(op.name), op.lost_without_graphql) for op in OPERATIONS]

    def require(self, operation: str) -> None:
        if self.api_for(operation) is None:
            raise self._unavailable(operation)

    def missing_extras(self) -> dict[str, str]:
        """GraphQL extras RunPod rejected in this process, and what each one loses."""
        return self._graphql.missing_extras()

    def _unavailable(self, operation: str) -> ApiUnavailableError:
        what = _BY_NAME[operation].what
        if self.mode == "rest":
            why = 'control_plane = "rest" is set (rph config show)'
        else:
            why = f"GraphQL is gone for this process: {self.graphql_gone}"
        return ApiUnavailableError(
            f"Cannot {what}: it needs RunPod's GraphQL API, and {why}. REST v2 has no spot pods: create an "
            "on-demand pod instead (drop --spot)."
        )

    def _run(self, operation: str, call: Callable[[PodApi], T]) -> T:
        self.require(operation)
        if self.api_for(operation) == "rest":
            return call(self._rest)
        try:
            return call(self._graphql)
        except ApiError as exc:
            reason = graphql_gone_reason(exc)
            if reason is None:
                raise
            if self.mode != "auto":
                exc.add_note(
                    f'{reason}. control_plane = "graphql" is set: set it to "auto" or "rest" to use REST v2.'
                )
                raise
            self.graphql_gone = reason
            if self._memory is not None:
                self._memory.remember(reason)
            log.warning("controlplane.switched_to_rest", reason=reason, operation=operation)
            if self.api_for(operation) is None:
                raise self._unavailable(operation) from exc
            return call(self._rest)

    # --- PodApi ---

    def gpu_types(
        self, gpu_count: int, ids: list[str] | None = None, data_center_id: str | None = None
    ) -> list[GpuType]:
        return self._run("gpu_types", lambda api: api.gpu_types(gpu_count, ids, data_center_id))

    def list_pods(self) -> list[Pod]:
        return self._run("list_pods", lambda api: api.list_pods())

    def get_pod(self, pod_id: str) -> Pod | None:
        return self._run("get_pod", lambda api: api.get_pod(pod_id))

    def pod_telemetry(self, pod_id: str) -> PodTelemetry | None:
        return self._run("pod_telemetry", lambda api: api.pod_telemetry(pod_id))

    def create_pod(self, request: CreatePodRequest) -> Pod:
        operation = "create_spot_pod" if request.spot else "create_pod"
        return self._run(operation, lambda api: api.create_pod(request))

    def describe_create(self, request: CreatePodRequest) -> CreateCall:
        operation = "create_spot_pod" if request.spot else "create_pod"
        self.require(operation)
        return (self._graphql if self.api_for(operation) == "graphql" else self._rest).describe_create(
            request
        )

    def resume_pod(self, pod_id: str, gpu_count: int, bid_per_gpu_usd: float | None) -> Pod:
        operation = "resume_pod" if bid_per_gpu_usd is None else "resume_spot_pod"
        return self._run(operation, lambda api: api.resume_pod(pod_id, gpu_count, bid_per_gpu_usd))

    def stop_pod(self, pod_id: str) -> Pod:
        return self._run("stop_pod", lambda api: api.stop_pod(pod_id))

    def restart_pod(self, pod_id: str) -> Pod:
        return self._run("restart_pod", lambda api: api.restart_pod(pod_id))

    def terminate_pod(self, pod_id: str) -> None:
        self._run("terminate_pod", lambda api: api.terminate_pod(pod_id))

    def rename_pod(self, pod_id: str, name: str) -> None:
        self._run("rename_pod", lambda api: api.rename_pod(pod_id, name))

    def account_spend(self) -> AccountSpend:
        return self._run("account_spend", lambda api: api.account_spend())

    def account_ssh_keys(self) -> str:
        return self._run("account_ssh_keys", lambda api: api.account_ssh_keys())

    def set_account_ssh_keys(self, keys: str) -> None:
        self._run("set_account_ssh_keys", lambda api: api.set_account_ssh_keys(keys))

    def list_endpoints(self) -> list[EndpointInfo]:
        return self._run("list_endpoints", lambda api: api.list_endpoints())

    def create_template(self, request: TemplateRequest) -> str:
        return self._run("create_template", lambda api: api.create_template(request))

    def create_endpoint(self, request: EndpointRequest) -> EndpointInfo:
        if request.network_volume_id and not request.data_center_id:
            # Workers can mount a network volume only in its data centre: place them there.
            volume = find_volume(self.list_network_volumes(), request.network_volume_id)
            request = replace(request, data_center_id=volume.data_center_id)
        return self._run("create_endpoint", lambda api: api.create_endpoint(request))

    def delete_endpoint(self, endpoint_id: str) -> None:
        self._run("delete_endpoint", lambda api: api.delete_endpoint(endpoint_id))

    def delete_template(self, name: str) -> None:
        self._run("delete_template", lambda api: api.delete_template(name))

    def list_network_volumes(self) -> list[NetworkVolume]:
        return self._run("list_network_volumes", lambda api: api.list_network_volumes())

    def create_network_volume(self, request: VolumeRequest) -> NetworkVolume:
        return self._run("create_network_volume", lambda api: api.create_network_volume(request))

    def delete_network_volume(self, volume_id: str) -> None:
        self._run("delete_network_volume", lambda api: api.delete_network_volume(volume_id))
