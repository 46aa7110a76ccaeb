"""The value types the control-plane seam hands back (pods, GPU types, telemetry, endpoints, network volumes),
whichever API served them. ``from_api()`` reads RunPod's GraphQL shapes and ignores unknown keys (REST v2's
shapes are read in ``rest.py``); every field RunPod may leave null is Optional here (``runtime``,
``runtime.ports``, ``lowestPrice`` fields, prices). ``missing`` names what the serving API could not report."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from runpod_hybrid.errors import NotFoundError

PodStatus = Literal["CREATED", "RUNNING", "RESTARTING", "EXITED", "PAUSED", "DEAD", "TERMINATED"]
StockStatus = Literal["High", "Medium", "Low"]

# The tag we put at the end of every pod name we create (see NameTag).
_TAG = re.compile(r"-rph-(?P<token>[0-9a-f]{8})(?:-(?P<deadline>\d{8}T\d{6}Z)(?P<armed>-wd)?)?$")
_DEADLINE_FORMAT = "%Y%m%dT%H%M%SZ"


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


@dataclass(frozen=True)
class NameTag:
    """What runpod-hybrid appends to the name of every pod it creates, ``<name>-rph-<token>[-<deadline>[-wd]]``:

    - ``token``: the client token of the create, so a create whose answer was lost finds its pod;
    - ``deadline`` (UTC, to the second): when the pod must stop. It travels with the pod, so every client
      (any machine, the CLI, the MCP server) can enforce it; RunPod itself enforces nothing (it ignores
      ``terminateAfter``);
    - ``-wd``: the watchdog on the pod was armed (at container start or at the first SSH contact).
    """

    token: str
    deadline: datetime | None = None
    watchdog_armed: bool = False

    @classmethod
    def split(cls, pod_name: str) -> tuple[str, NameTag] | None:
        """The name given at create and the tag, or None for a pod we did not create."""
        match = _TAG.search(pod_name)
        if match is None:
            return None
        deadline = match.group("deadline")
        tag = cls(
            match.group("token"),
            datetime.strptime(deadline, _DEADLINE_FORMAT).replace(tzinfo=UTC) if deadline else None,
            bool(match.group("armed")),
        )
        return pod_name[: match.start()], tag

    def name(self, base: str) -> str:
        """The whole pod name for ``base``. A deadline is kept to the second, rounded up (never earlier)."""
        if self.deadline is None:
            return f"{base}-rph-{self.token}"
        seconds = self.deadline.astimezone(UTC)
        if seconds.microsecond:
            seconds = seconds.replace(microsecond=0) + timedelta(seconds=1)
        return f"{base}-rph-{self.token}-{seconds.strftime(_DEADLINE_FORMAT)}" + (
            "-wd" if self.watchdog_armed else ""
        )


@dataclass(frozen=True)
class GpuOffer:
    """Live availability of one GPU type in one cloud for a given GPU count (``lowestPrice``)."""

    cloud_type: Literal["SECURE", "COMMUNITY"]
    gpu_count: int
    usd_per_gpu_hour: float | None
    min_bid_usd_per_gpu_hour: float | None
    stock_status: StockStatus | None
    max_unreserved_gpus: int | None
    available_gpu_counts: tuple[int, ...]

    @property
    def in_stock(self) -> bool:
        return self.stock_status is not None and self.usd_per_gpu_hour is not None

    @classmethod
    def from_api(cls, raw: Any, cloud_type: Literal["SECURE", "COMMUNITY"], gpu_count: int) -> GpuOffer:
        data = _map(raw)
        stock = data.get("stockStatus")
        return cls(
            cloud_type=cloud_type,
            gpu_count=gpu_count,
            usd_per_gpu_hour=_float(data.get("uninterruptablePrice")),
            min_bid_usd_per_gpu_hour=_float(data.get("minimumBidPrice")),
            stock_status=stock if stock in ("High", "Medium", "Low") else None,
            max_unreserved_gpus=_int(data.get("maxUnreservedGpuCount")),
            available_gpu_counts=tuple(
                c for c in _list(data.get("availableGpuCounts")) if isinstance(c, int)
            ),
        )


@dataclass(frozen=True)
class GpuType:
    """A GPU type with list prices (per GPU-hour) and, when asked for, live offers per cloud."""

    id: str
    display_name: str
    memory_gb: int
    max_gpu_count: int | None
    secure_usd_per_hour: float | None
    community_usd_per_hour: float | None
    secure_spot_usd_per_hour: float | None
    community_spot_usd_per_hour: float | None
    offers: tuple[GpuOffer, ...] = ()
    missing: tuple[str, ...] = ()

    def offer(self, cloud_type: str) -> GpuOffer | None:
        return next((o for o in self.offers if o.cloud_type == cloud_type), None)

    @classmethod
    def from_api(cls, raw: Any, gpu_count: int = 1) -> GpuType:
        data = _map(raw)
        offers = []
        for cloud, key in (("SECURE", "secureOffer"), ("COMMUNITY", "communityOffer")):
            if key in data:
                offers.append(GpuOffer.from_api(data[key], cloud, gpu_count))  # type: ignore[arg-type]
        if not offers and "lowestPrice" in data:
            # The plain `lowestPrice` shape (runpod-samples): one offer, cloud unknown, read as SECURE.
            offers.append(GpuOffer.from_api(data["lowestPrice"], "SECURE", gpu_count))
        return cls(
            id=str(data.get("id", "")),
            display_name=str(data.get("displayName") or data.get("id", "")),
            memory_gb=_int(data.get("memoryInGb")) or 0,
            max_gpu_count=_int(data.get("maxGpuCount")),
            secure_usd_per_hour=_float(data.get("securePrice")),
            community_usd_per_hour=_float(data.get("communityPrice")),
            secure_spot_usd_per_hour=_float(data.get("secureSpotPrice")),
            community_spot_usd_per_hour=_float(data.get("communitySpotPrice")),
            offers=tuple(offers),
        )


@dataclass(frozen=True)
class PortMapping:
    ip: str
    is_public: bool
    private_port: int
    public_port: int
    type: str

    @classmethod
    def from_api(cls, raw: Any) -> PortMapping:
        data = _map(raw)
        return cls(
            ip=str(data.get("ip") or ""),
            is_public=bool(data.get("isIpPublic")),
            private_port=_int(data.get("privatePort")) or 0,
            public_port=_int(data.get("publicPort")) or 0,
            type=str(data.get("type") or ""),
        )


@dataclass(frozen=True)
class GpuUsage:
    id: str
    util_percent: float | None
    memory_util_percent: float | None
    temperature_c: float | None = None
    power_w: float | None = None


@dataclass(frozen=True)
class PodRuntime:
    """What RunPod reports once the container runs. ``ports`` is None while RunPod has not mapped any."""

    uptime_s: int
    ports: tuple[PortMapping, ...] | None
    gpus: tuple[GpuUsage, ...]
    cpu_percent: float | None
    memory_percent: float | None

    @classmethod
    def from_api(cls, raw: Any) -> PodRuntime | None:
        if not isinstance(raw, Mapping):
            return None
        ports = raw.get("ports")
        container = _map(raw.get("container"))
        return cls(
            uptime_s=_int(raw.get("uptimeInSeconds")) or 0,
            ports=tuple(PortMapping.from_api(p) for p in ports if p) if isinstance(ports, list) else None,
            gpus=tuple(
                GpuUsage(
                    str(_map(g).get("id", "")),
                    _float(_map(g).get("gpuUtilPercent")),
                    _float(_map(g).get("memoryUtilPercent")),
                )
                for g in _list(raw.get("gpus"))
            ),
            cpu_percent=_float(container.get("cpuPercent")),
            memory_percent=_float(container.get("memoryPercent")),
        )


@dataclass(frozen=True)
class SshEndpoint:
    """The direct SSH route to a pod: ``ssh root@host -p port``."""

    host: str
    port: int
    user: str = "root"


@dataclass(frozen=True)
class Pod:
    id: str
    name: str
    status: str
    usd_per_hour: float
    gpu_count: int
    gpu_type_id: str | None
    gpu_display_name: str | None
    image: str
    data_center_id: str | None
    secure_cloud: bool | None
    support_public_ip: bool | None
    is_spot: bool
    container_disk_gb: int | None
    volume_gb: float | None
    volume_mount_path: str | None
    network_volume_id: str | None
    exposed_ports: str | None
    last_status_change: str | None
    runtime: PodRuntime | None

    @property
    def tag(self) -> NameTag | None:
        """Our tag in the pod's name (token, deadline, watchdog), or None for a pod we did not create."""
        split = NameTag.split(self.name)
        return split[1] if split else None

    @property
    def client_token(self) -> str | None:
        return self.tag.token if self.tag else None

    @property
    def ssh(self) -> SshEndpoint | None:
        """The public port-22 TCP mapping, when RunPod has made one."""
        for port in (self.runtime.ports or ()) if self.runtime else ():
            if port.private_port == 22 and port.type == "tcp" and port.is_public and port.ip:
                return SshEndpoint(port.ip, port.public_port)
        return None

    @classmethod
    def from_api(cls, raw: Any) -> Pod:
        data = _map(raw)
        machine = _map(data.get("machine"))
        return cls(
            id=str(data.get("id", "")),
            name=str(data.get("name") or ""),
            status=str(data.get("desiredStatus") or "UNKNOWN"),
            usd_per_hour=_float(data.get("adjustedCostPerHr")) or _float(data.get("costPerHr")) or 0.0,
            gpu_count=_int(data.get("gpuCount")) or 0,
            gpu_type_id=machine.get("gpuTypeId"),
            gpu_display_name=machine.get("gpuDisplayName"),
            image=str(data.get("imageName") or ""),
            data_center_id=machine.get("dataCenterId"),
            secure_cloud=machine.get("secureCloud"),
            support_public_ip=machine.get("supportPublicIp"),
            is_spot=data.get("podType") in ("INTERRUPTABLE", "BID"),
            container_disk_gb=_int(data.get("containerDiskInGb")),
            volume_gb=_float(data.get("volumeInGb")),
            volume_mount_path=data.get("volumeMountPath"),
            network_volume_id=data.get("networkVolumeId"),
            exposed_ports=data.get("ports"),
            last_status_change=data.get("lastStatusChange"),
            runtime=PodRuntime.from_api(data.get("runtime")),
        )


@dataclass(frozen=True)
class PodTelemetry:
    """Utilisation of a pod right now, and what it has cost since it last started."""

    pod_id: str
    status: str
    uptime_s: int
    usd_per_hour: float
    cost_since_start_usd: float
    cpu_percent: float | None
    memory_percent: float | None
    gpus: tuple[GpuUsage, ...]
    sampled_at: str | None
    missing: tuple[str, ...] = ()

    @classmethod
    def from_pod(cls, pod: Pod, missing: tuple[str, ...] = ()) -> PodTelemetry:
        """What the pod's own ``runtime`` says (all REST v2 gives; GraphQL adds ``latestTelemetry``)."""
        runtime = pod.runtime
        uptime = runtime.uptime_s if runtime else 0
        return cls(
            pod_id=pod.id,
            status=pod.status,
            uptime_s=uptime,
            usd_per_hour=pod.usd_per_hour,
            cost_since_start_usd=round(pod.usd_per_hour * uptime / 3600, 4),
            cpu_percent=runtime.cpu_percent if runtime else None,
            memory_percent=runtime.memory_percent if runtime else None,
            gpus=runtime.gpus if runtime else (),
            sampled_at=None,
            missing=missing,
        )

    @classmethod
    def from_api(cls, raw: Any) -> PodTelemetry:
        base = cls.from_pod(Pod.from_api(raw))
        telemetry = _map(_map(raw).get("latestTelemetry"))
        if not telemetry:
            return base
        gpus = tuple(
            GpuUsage(
                str(_map(g).get("id") or i),
                _float(_map(g).get("percentUtilization")),
                _float(_map(g).get("memoryUtilization")),
                _float(_map(g).get("temperatureCelcius")),  # sic: RunPod's spelling
                _float(_map(g).get("powerWatts")),
            )
            for i, g in enumerate(_list(telemetry.get("individualGpuMetrics")))
        )
        return replace(
            base,
            cpu_percent=_float(telemetry.get("cpuUtilization")),
            memory_percent=_float(telemetry.get("memoryUtilization")),
            gpus=gpus or base.gpus,
            sampled_at=telemetry.get("time"),
        )


@dataclass(frozen=True)
class AccountSpend:
    """The account's balance and what it spends per hour now, as RunPod reports them (None: not reported)."""

    balance_usd: float | None
    usd_per_hour: float | None

    @classmethod
    def from_api(cls, raw: Any) -> AccountSpend:
        data = _map(raw)
        return cls(_float(data.get("clientBalance")), _float(data.get("currentSpendPerHr")))


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


@dataclass(frozen=True)
class NetworkVolume:
    """Storage that outlives every pod, in one data centre; pods and endpoints using it must run there."""

    id: str
    name: str
    size_gb: int
    data_center_id: str
    type: str | None = None


def describe_volumes(volumes: list[NetworkVolume]) -> str:
    """The account's network volumes and their data centres, for messages that must name them."""
    if not volumes:
        return "The account has no network volumes (`rph volumes create`)."
    listed = ", ".join(f"{v.id} ({v.name}, {v.size_gb} GB) in {v.data_center_id}" for v in volumes)
    return f"Your network volumes: {listed}."


def find_volume(volumes: list[NetworkVolume], volume_id: str) -> NetworkVolume:
    """The volume with ``volume_id`` (or name); the error names every volume and where it is."""
    for volume in volumes:
        if volume_id in (volume.id, volume.name):
            return volume
    raise NotFoundError(f"No network volume {volume_id!r} in this account. {describe_volumes(volumes)}")
