"""RunPod's REST v2 API (``https://api.runpod.io/v2``): :class:`RestPodApi`, the control-plane seam served by it.

The shapes are those of RunPod's OpenAPI spec (tests/data/runpod-openapi) and the field mapping RunPod
publishes for GraphQL users. What REST v2 does differently, handled here:
- errors are HTTP statuses with a problem body ``{title, status, detail, errors?}``; "no capacity" is a 400
  whose ``detail`` says so (no machine-readable code), 422 means our body broke the contract;
- ``env`` is a map, ``ports`` a list, storage is ``mounts.persistent`` or ``mounts.network`` (never both), the
  start command is one ``args`` string, ``cloud`` is SECURE or COMMUNITY (no ALL);
- ``status`` is the observed state (PROVISIONING, STARTING, RUNNING, EXITED, ERROR, TERMINATED); the SDK's
  statuses are GraphQL's desired states, so the first two read RUNNING (with no runtime yet);
- runtime ports carry no ``isIpPublic``: an address in a private range is not public;
- actions: start, stop, restart, terminate; a start cannot change the GPU count; stop of a stopped pod is 409;
- no spot pods, no TTL fields, no GPU temperature or power, list prices only, availability as
  NONE/LOW/MEDIUM/HIGH overall and per data centre.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from runpod_hybrid.errors import (
    ApiStatusError,
    ApiUnavailableError,
    CapacityError,
    ConfigError,
    NotFoundError,
)

from .graphql import CAPACITY_ADVICE
from .models import (
    AccountSpend,
    EndpointInfo,
    GpuOffer,
    GpuType,
    GpuUsage,
    NetworkVolume,
    Pod,
    PodRuntime,
    PodTelemetry,
    PortMapping,
)
from .seam import CreateCall, CreatePodRequest, EndpointRequest, TemplateRequest, VolumeRequest

if TYPE_CHECKING:
    from runpod_hybrid._http import HttpTransport

REST_URL = "https://api.runpod.io/v2"

# REST v2's observed pod status -> the SDK's (GraphQL's desired status).
_STATUS = {
    "PROVISIONING": "RUNNING",
    "STARTING": "RUNNING",
    "RUNNING": "RUNNING",
    "EXITED": "EXITED",
    "ERROR": "DEAD",
    "TERMINATED": "TERMINATED",
}
_PRIVATE_NETWORKS = tuple(
    ipaddress.ip_network(n)
    for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "169.254.0.0/16")
)
_CAPACITY_PHRASES = (
    "no longer any instances available",
    "does not have the resources to deploy your pod",
    "not enough free gpus",
    "no instances available",
)
_MIN_PERSISTENT_GB = 10  # REST v2's floor for a pod's volume disk

TELEMETRY_MISSING = (
    "GPU temperature and power need GraphQL (REST v2 reports utilisation only)",
    "no telemetry sample time over REST v2",
)
GPU_CATALOG_MISSING = (
    "spot prices and bids need GraphQL",
    "REST v2 shows list prices per GPU-hour (no account discounts, no per-count lowest price)",
)
SPOT_NEEDS_GRAPHQL = (
    "Spot (interruptible) pods exist only in RunPod's GraphQL API; REST v2 has none. Create an on-demand pod "
    "instead (drop --spot / spot=True)"
)


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _is_public(ip: str) -> bool:
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return bool(ip)  # a host name
    return not any(address in network for network in _PRIVATE_NETWORKS)


def runtime_from_rest(raw: Any) -> PodRuntime | None:
    if not isinstance(raw, Mapping):
        return None
    ports = raw.get("ports")
    return PodRuntime(
        uptime_s=int(_number(raw.get("uptime")) or 0),
        ports=tuple(
            PortMapping(
                ip=str(p.get("ip") or ""),
                is_public=_is_public(str(p.get("ip") or "")) and p.get("public") is not None,
                private_port=int(_number(p.get("private")) or 0),
                public_port=int(_number(p.get("public")) or 0),
                type=str(p.get("type") or ""),
            )
            for p in ports
            if isinstance(p, Mapping)
        )
        if isinstance(ports, list)
        else None,
        gpus=tuple(
            GpuUsage(str(i), _number(_map(g).get("util")), _number(_map(g).get("memoryUtil")))
            for i, g in enumerate(_list(raw.get("gpus")))
        ),
        cpu_percent=_number(_map(raw.get("cpu")).get("util")),
        memory_percent=_number(_map(raw.get("memory")).get("util")),
    )


def pod_from_rest(raw: Any) -> Pod:
    data = _map(raw)
    gpu = _map(data.get("gpu"))
    mounts = _map(data.get("mounts"))
    persistent = _map(mounts.get("persistent"))
    network = _map(next(iter(_list(mounts.get("network"))), None))
    cloud = data.get("cloud")
    return Pod(
        id=str(data.get("id", "")),
        name=str(data.get("name") or ""),
        status=_STATUS.get(str(data.get("status")), str(data.get("status") or "UNKNOWN")),
        usd_per_hour=_number(data.get("cost")) or 0.0,
        gpu_count=int(_number(gpu.get("count")) or 0),
        gpu_type_id=gpu.get("id"),
        gpu_display_name=None,
        image=str(data.get("image") or ""),
        data_center_id=data.get("dataCenterId"),
        secure_cloud=cloud == "SECURE" if cloud else None,
        support_public_ip=None,
        is_spot=False,
        container_disk_gb=int(d) if (d := _number(data.get("disk"))) is not None else None,
        volume_gb=_number(persistent.get("size")),
        volume_mount_path=persistent.get("path") or network.get("path"),
        network_volume_id=network.get("volumeId"),
        exposed_ports=",".join(str(p) for p in _list(data.get("ports"))),
        last_status_change=None,
        runtime=runtime_from_rest(data.get("runtime")),
    )


def _level(raw: Mapping[str, Any], data_center_id: str | None) -> str:
    if data_center_id is None:
        return str(raw.get("availability") or "NONE")
    here = next((d for d in _list(raw.get("dataCenters")) if _map(d).get("id") == data_center_id), None)
    return str(_map(here).get("availability") or "NONE")


def gpu_types_from_rest(
    by_cloud: Mapping[Literal["SECURE", "COMMUNITY"], list[Any]], gpu_count: int, data_center_id: str | None
) -> list[GpuType]:
    """GPU types from one catalog answer per cloud (availability is per cloud; prices and ids are not)."""
    merged: dict[str, dict[str, Any]] = {}
    for cloud, gpus in by_cloud.items():
        for raw in gpus:
            if isinstance(raw, Mapping) and raw.get("id"):
                merged.setdefault(str(raw["id"]), {"raw": raw})[cloud] = raw
    types = []
    for gpu_id, entry in merged.items():
        raw = entry["raw"]
        price = _map(raw.get("price"))
        max_count = _map(raw.get("maxCount"))
        offers = []
        for cloud in by_cloud:
            key = cloud.lower()
            list_price = _number(price.get(key)) if raw.get(key) else None
            level = _level(entry[cloud], data_center_id) if cloud in entry else "NONE"
            in_stock = level != "NONE" and bool(list_price)
            offers.append(
                GpuOffer(
                    cloud_type=cloud,
                    gpu_count=gpu_count,
                    usd_per_gpu_hour=list_price if in_stock else None,
                    min_bid_usd_per_gpu_hour=None,
                    stock_status=level.title() if in_stock else None,  # type: ignore[arg-type]
                    max_unreserved_gpus=None,
                    available_gpu_counts=(),
                )
            )
        counts = [
            int(c) for c in (_number(max_count.get("secure")), _number(max_count.get("community"))) if c
        ]
        types.append(
            GpuType(
                id=gpu_id,
                display_name=str(raw.get("name") or gpu_id),
                memory_gb=int(_number(raw.get("memory")) or 0),
                max_gpu_count=max(counts) if counts else None,
                secure_usd_per_hour=_number(price.get("secure")) if raw.get("secure") else None,
                community_usd_per_hour=_number(price.get("community")) if raw.get("community") else None,
                secure_spot_usd_per_hour=None,
                community_spot_usd_per_hour=None,
                offers=tuple(offers),
                missing=GPU_CATALOG_MISSING,
            )
        )
    return types


def endpoint_from_rest(raw: Any, template_id: str | None = None) -> EndpointInfo:
    data = _map(raw)
    workers = _map(data.get("workers"))
    timeout_ms = _number(data.get("timeout"))
    return EndpointInfo(
        id=str(data.get("id")),
        name=str(data.get("name") or ""),
        gpu_pools=tuple(str(p) for p in _list(_map(data.get("gpu")).get("pools"))),
        workers_min=int(_number(workers.get("min")) or 0),
        workers_max=int(_number(workers.get("max")) or 0),
        idle_timeout_s=int(_number(workers.get("idleTimeout")) or 0),
        execution_timeout_s=timeout_ms / 1000 if timeout_ms is not None else None,
        # REST v2 endpoints do not say which template they came from (RunPod resolves it once, at create).
        template_id=template_id,
        network_volume_id=next(iter(_list(data.get("networkVolumes"))), None),
    )


def volume_from_rest(raw: Any) -> NetworkVolume:
    data = _map(raw)
    return NetworkVolume(
        id=str(data.get("id")),
        name=str(data.get("name") or ""),
        size_gb=int(_number(data.get("size")) or 0),
        data_center_id=str(data.get("dataCenter") or ""),
        type=data.get("type"),
    )


def create_body(request: CreatePodRequest) -> dict[str, Any]:
    """The ``POST /v2/pods`` body of one create (also what ``rph pods create --dry-run`` prints).

    REST v2 has no TTL field (RunPod ignored GraphQL's anyway) and no ``supportPublicIp``."""
    if request.spot:
        raise ApiUnavailableError(SPOT_NEEDS_GRAPHQL + ".")
    if request.cloud_type not in ("SECURE", "COMMUNITY"):
        raise ConfigError(f"REST v2 needs cloud SECURE or COMMUNITY, not {request.cloud_type!r}.")
    body: dict[str, Any] = {
        "name": request.name,
        "image": request.image,
        "cloud": request.cloud_type,
        "gpu": {"id": request.gpu_type_id, "count": request.gpu_count},
        "disk": request.container_disk_gb,
        "ports": [p.strip() for p in request.ports.split(",") if p.strip()],
        "env": dict(request.env),
        "startSsh": True,
    }
    if request.network_volume_id:
        # The network volume takes the place of the volume disk, at the same path.
        body["mounts"] = {
            "network": [{"volumeId": request.network_volume_id, "path": request.volume_mount_path}]
        }
    elif request.volume_gb:
        if request.volume_gb < _MIN_PERSISTENT_GB:
            raise ConfigError(
                f"A volume disk of {request.volume_gb} GB is below REST v2's minimum of {_MIN_PERSISTENT_GB} GB: "
                "ask for at least 10 GB, or 0 for none."
            )
        body["mounts"] = {"persistent": {"size": request.volume_gb, "path": request.volume_mount_path}}
    if request.docker_args:
        body["args"] = request.docker_args
    if request.data_center_id:
        body["dataCenterIds"] = [request.data_center_id]
    return body


class RestClient:
    """Calls RunPod's REST v2 API through the shared HTTP transport; maps its problem answers."""

    def __init__(self, transport: HttpTransport, base_url: str = REST_URL) -> None:
        self._transport = transport
        self.base_url = base_url.rstrip("/")

    def call(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: Mapping[str, str] | None = None,
        idempotent: bool | None = None,
        retry_rate_limited: bool = True,
    ) -> Any:
        """Send one call; GET, PUT and DELETE are retried as reads, POST and PATCH only when safe."""
        if idempotent is None:
            idempotent = method in ("GET", "PUT", "DELETE")
        try:
            return self._transport.request(
                method,
                self.base_url + path,
                json_body=json_body,
                params=params,
                idempotent=idempotent,
                retry_rate_limited=retry_rate_limited,
            )
        except ApiStatusError as exc:
            raise _mapped(exc, method, path) from exc


def _problem_text(body: Any) -> str:
    data = _map(body)
    errors = [str(e) for e in _list(data.get("errors"))]
    return "; ".join([str(data.get("detail") or data.get("title") or ""), *errors]).strip("; ")


def _mapped(exc: ApiStatusError, method: str, path: str) -> ApiStatusError | CapacityError:
    detail = _problem_text(exc.body)
    if exc.status_code in (400, 409) and any(p in detail.lower() for p in _CAPACITY_PHRASES):
        return CapacityError(
            f"No GPU capacity for {method} /v2{path}: {detail} {CAPACITY_ADVICE}", body=exc.body
        )
    if exc.status_code == 422:
        return ApiStatusError(
            f"RunPod's REST v2 API rejected the body of {method} /v2{path} (HTTP 422): {detail}. This is a bug "
            "in runpod-hybrid, not in your input: please report it with this message.",
            status_code=422,
            body=exc.body,
        )
    return exc


class RestPodApi:
    """:class:`PodApi` over RunPod's REST v2 API."""

    def __init__(self, client: RestClient) -> None:
        self._client = client

    def require(self, operation: str) -> None:
        if operation in ("create_spot_pod", "resume_spot_pod"):
            raise ApiUnavailableError(SPOT_NEEDS_GRAPHQL + ".")

    # --- GPUs and pods ---

    def gpu_types(
        self, gpu_count: int, ids: list[str] | None = None, data_center_id: str | None = None
    ) -> list[GpuType]:
        by_cloud: dict[Literal["SECURE", "COMMUNITY"], list[Any]] = {}
        for cloud in ("SECURE", "COMMUNITY"):
            params = {"include": "AVAILABILITY", "product": "POD", "count": str(gpu_count), "cloud": cloud}
            by_cloud[cloud] = _list(
                _map(self._client.call("GET", "/catalog/gpus", params=params)).get("gpus")
            )
        types = gpu_types_from_rest(by_cloud, gpu_count, data_center_id)
        return [t for t in types if not ids or t.id in ids]

    def list_pods(self) -> list[Pod]:
        pods = _list(_map(self._client.call("GET", "/pods")).get("pods"))
        return [p for p in map(pod_from_rest, pods) if p.status != "TERMINATED"]

    def get_pod(self, pod_id: str) -> Pod | None:
        try:
            pod = pod_from_rest(self._client.call("GET", f"/pods/{pod_id}"))
        except NotFoundError:
            return None
        return None if pod.status == "TERMINATED" else pod

    def pod_telemetry(self, pod_id: str) -> PodTelemetry | None:
        pod = self.get_pod(pod_id)
        return PodTelemetry.from_pod(pod, TELEMETRY_MISSING) if pod else None

    def create_pod(self, request: CreatePodRequest) -> Pod:
        # A 429 comes back to the pods layer at once: it looks its client token up before sending again.
        body = self._client.call("POST", "/pods", json_body=create_body(request), retry_rate_limited=False)
        return pod_from_rest(body)

    def describe_create(self, request: CreatePodRequest) -> CreateCall:
        return CreateCall("POST /v2/pods", create_body(request))

    def _action(self, pod_id: str, action: str, *, idempotent: bool) -> Pod:
        body = {"action": action}
        return pod_from_rest(
            self._client.call("POST", f"/pods/{pod_id}/action", json_body=body, idempotent=idempotent)
        )

    def resume_pod(self, pod_id: str, gpu_count: int, bid_per_gpu_usd: float | None) -> Pod:
        """REST v2 resumes a pod with the GPU count it had; ``gpu_count`` must be that count."""
        if bid_per_gpu_usd is not None:
            self.require("resume_spot_pod")
        pod = self._action(pod_id, "start", idempotent=False)
        if pod.gpu_count and pod.gpu_count != gpu_count:
            raise ConfigError(
                f"Pod {pod_id} was resumed with its {pod.gpu_count} GPU(s): REST v2 cannot change the GPU count on "
                f"start (you asked for {gpu_count}). Stop it and create a pod of the size you need."
            )
        return pod

    def stop_pod(self, pod_id: str) -> Pod:
        try:
            return self._action(pod_id, "stop", idempotent=True)
        except ApiStatusError as exc:
            # 409: not valid for the pod's status; stopping a stopped pod is done, as GraphQL answers it.
            current = self.get_pod(pod_id) if exc.status_code == 409 else None
            if current is not None and current.status == "EXITED":
                return current
            raise

    def restart_pod(self, pod_id: str) -> Pod:
        return self._action(pod_id, "restart", idempotent=False)

    def terminate_pod(self, pod_id: str) -> None:
        self._client.call("DELETE", f"/pods/{pod_id}")

    def rename_pod(self, pod_id: str, name: str) -> None:
        # Setting the same name twice is harmless, so a lost answer may be retried.
        self._client.call("PATCH", f"/pods/{pod_id}", json_body={"name": name}, idempotent=True)

    def account_spend(self) -> AccountSpend:
        """REST v2 gives neither the account's balance nor its spend per hour."""
        return AccountSpend(None, None)

    # --- account ---

    def account_ssh_keys(self) -> str:
        keys = _list(_map(self._client.call("GET", "/account/ssh-keys")).get("keys"))
        return "".join(f"{k}\n" for k in keys)

    def set_account_ssh_keys(self, keys: str) -> None:
        lines = [line.strip() for line in keys.splitlines() if line.strip()]
        self._client.call("PUT", "/account/ssh-keys", json_body={"keys": lines})

    # --- serverless endpoints and their templates ---

    def list_endpoints(self) -> list[EndpointInfo]:
        return [
            endpoint_from_rest(e)
            for e in _list(_map(self._client.call("GET", "/serverless")).get("endpoints"))
        ]

    def create_template(self, request: TemplateRequest) -> str:
        body = {
            "name": request.name,
            "image": request.image,
            "disk": request.container_disk_gb,
            "env": dict(request.env),
            "serverless": True,
            "startSsh": False,
            "startJupyter": False,
        }
        return str(_map(self._client.call("POST", "/templates", json_body=body)).get("id"))

    def create_endpoint(self, request: EndpointRequest) -> EndpointInfo:
        body: dict[str, Any] = {
            "name": request.name,
            "type": "QUEUE",
            "templateId": request.template_id,
            "gpu": {"pools": list(request.gpu_pools), "count": 1},
            "workers": {
                "min": request.workers_min,
                "max": request.workers_max,
                "idleTimeout": request.idle_timeout_s,
            },
            "scaling": {"type": "QUEUE_DELAY", "queueDelay": 4},
            # Sent explicitly: an endpoint created without it reads back 0 (RunPod's migration notes).
            "timeout": request.execution_timeout_s * 1000,
        }
        if request.network_volume_id:
            body["networkVolumes"] = [request.network_volume_id]
        if request.data_center_id:
            body["dataCenterIds"] = [request.data_center_id]
        return endpoint_from_rest(
            self._client.call("POST", "/serverless", json_body=body), request.template_id
        )

    def delete_endpoint(self, endpoint_id: str) -> None:
        self._client.call("DELETE", f"/serverless/{endpoint_id}")

    def delete_template(self, name: str) -> None:
        """REST v2 deletes templates by id, so the name is looked up first; an unknown name is nothing to do."""
        templates = _list(_map(self._client.call("GET", "/templates")).get("templates"))
        for template in templates:
            if _map(template).get("name") == name:
                self._client.call("DELETE", f"/templates/{template['id']}")

    # --- network volumes ---

    def list_network_volumes(self) -> list[NetworkVolume]:
        volumes = _list(_map(self._client.call("GET", "/network-volumes")).get("networkVolumes"))
        return [volume_from_rest(v) for v in volumes]

    def create_network_volume(self, request: VolumeRequest) -> NetworkVolume:
        body = {"name": request.name, "size": request.size_gb, "dataCenter": request.data_center_id}
        return volume_from_rest(self._client.call("POST", "/network-volumes", json_body=body))

    def delete_network_volume(self, volume_id: str) -> None:
        self._client.call("DELETE", f"/network-volumes/{volume_id}")
