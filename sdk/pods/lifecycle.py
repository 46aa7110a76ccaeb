"""Pod lifecycle with safe defaults: create (on-demand and spot) with fallback, budget caps, TTL and no
duplicates; start, stop, terminate; readiness that names failure modes; telemetry and the SSH endpoint.

RunPod facts this module works around:
- "no capacity" is routine, not a bug: fall back through GPU types, then cloud types;
- a create that timed out may still have made a pod: look for our client token before trying again;
- RUNNING does not mean usable: ``runtime`` is null until the container starts, and uptime 0 with no ports
  for minutes means an image pull failure or a crash loop;
- direct SSH needs ``22/tcp`` exposed, a public IP (always on SECURE; on COMMUNITY only with
  ``supportPublicIp``) and ``PUBLIC_KEY`` in the env.
"""

from __future__ import annotations

import builtins
import secrets
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from runpod_hybrid._logging import get_logger
from runpod_hybrid.config import Settings
from runpod_hybrid.controlplane import (
    CreateCall,
    CreatePodRequest,
    Pod,
    PodApi,
    PodTelemetry,
    SshEndpoint,
    name_with_token,
)
from runpod_hybrid.errors import (
    BudgetExceededError,
    CapacityError,
    ConfigError,
    ConnectionFailedError,
    GraphQLError,
    NotFoundError,
    PodNotReadyError,
    RequestTimeoutError,
    RunPodHybridError,
    ServerError,
)

from .gpus import Candidate, GpuPreferences, Gpus
from .sshkeys import authorize_on_account
from .volumes import place_on_volume, where_placed

log = get_logger(__name__)

# Seconds without a container runtime, or with uptime stuck at 0 and no ports, before we call it a failure.
RUNTIME_GRACE_S = 600.0
CRASH_LOOP_GRACE_S = 240.0


@dataclass(frozen=True)
class PodSpec:
    """What the caller wants; unset fields come from the settings."""

    name: str = "pod"
    gpu_types: tuple[str, ...] = ()
    gpu_count: int = 1
    min_vram_gb: int | None = None
    cloud_type: str | None = None
    fallback_cloud_types: tuple[str, ...] | None = None
    image: str | None = None
    container_disk_gb: int | None = None
    volume_gb: int | None = None
    network_volume_id: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    extra_ports: tuple[str, ...] = ()
    spot: bool = False
    bid_per_gpu_usd: float | None = None
    ttl_h: float | None = None
    docker_args: str | None = None
    data_center_id: str | None = None


@dataclass(frozen=True)
class CreateAttempt:
    gpu_type_id: str
    cloud_type: str
    usd_per_hour: float
    outcome: str  # created | no_capacity | recovered | ambiguous
    detail: str = ""


@dataclass(frozen=True)
class CreateResult:
    pod: Pod
    attempts: tuple[CreateAttempt, ...]


def tcp_accepts(host: str, port: int, timeout_s: float = 3.0) -> bool:
    """True when a TCP connection to host:port succeeds."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def _ambiguous(exc: RunPodHybridError) -> bool:
    """Failures after which the create may or may not have happened."""
    if isinstance(exc, RequestTimeoutError | ConnectionFailedError):
        return exc.request_sent
    if isinstance(exc, ServerError):
        return True
    return isinstance(exc, GraphQLError) and "something went wrong" in str(exc).lower()


def build_request(
    spec: PodSpec, candidate: Candidate, token: str, *, settings: Settings, public_key: str, now: datetime
) -> CreatePodRequest:
    """The exact create call for one candidate: 22/tcp, PUBLIC_KEY, the TTL and our token by default."""
    ttl_h = settings.pod_ttl_h if spec.ttl_h is None else spec.ttl_h
    ports = ",".join(dict.fromkeys(["22/tcp", *spec.extra_ports]))
    env = {**spec.env, "PUBLIC_KEY": public_key, "RPH_CLIENT_TOKEN": token}
    bid = None
    if spec.spot:
        floor = candidate.min_bid_usd_per_gpu_hour
        bid = spec.bid_per_gpu_usd if spec.bid_per_gpu_usd is not None else floor
        if bid is None:
            raise ConfigError(f"No spot price is known for {candidate.gpu_type_id}; pass a bid per GPU.")
        if floor is not None and bid < floor:
            raise ConfigError(
                f"Bid ${bid:.3f}/GPU-h is below the current minimum bid ${floor:.3f}/GPU-h for "
                f"{candidate.gpu_type_id} ({candidate.cloud_type}). Bid at least the minimum."
            )
    return CreatePodRequest(
        name=name_with_token(spec.name, token),
        gpu_type_id=candidate.gpu_type_id,
        gpu_count=spec.gpu_count,
        cloud_type=candidate.cloud_type,
        image=spec.image or settings.image,
        container_disk_gb=spec.container_disk_gb
        if spec.container_disk_gb is not None
        else settings.container_disk_gb,
        volume_gb=spec.volume_gb if spec.volume_gb is not None else settings.volume_gb,
        ports=ports,
        env=env,
        network_volume_id=spec.network_volume_id,
        docker_args=spec.docker_args,
        terminate_after=now + timedelta(hours=ttl_h) if ttl_h > 0 else None,
        # COMMUNITY machines give a public IP only when asked; direct SSH needs one.
        support_public_ip=True,
        data_center_id=spec.data_center_id,
        bid_per_gpu_usd=bid,
    )


def preferences_for(spec: PodSpec, settings: Settings) -> GpuPreferences:
    primary = (spec.cloud_type or settings.cloud_type).upper()
    fallbacks = (
        spec.fallback_cloud_types if spec.fallback_cloud_types is not None else settings.fallback_cloud_types
    )
    clouds = tuple(dict.fromkeys([primary, *(c.upper() for c in fallbacks)]))
    clouds = tuple(c for cloud in clouds for c in (("SECURE", "COMMUNITY") if cloud == "ALL" else (cloud,)))
    return GpuPreferences(
        gpu_type_ids=spec.gpu_types or settings.gpu_types,
        min_vram_gb=spec.min_vram_gb if spec.min_vram_gb is not None else settings.min_vram_gb,
        max_usd_per_gpu_hour=settings.max_gpu_usd_per_hour,
        cloud_types=tuple(dict.fromkeys(clouds)),
        spot=spec.spot,
    )


@dataclass(frozen=True)
class CreatePreview:
    """What a create would send, computed offline: one call per candidate, in order, and the hourly cost bound.
    Env values are hidden in ``calls``."""

    calls: tuple[CreateCall, ...]
    max_usd_per_hour: float | None


def _preview_requests(
    spec: PodSpec, settings: Settings, *, public_key: str, now: datetime, token: str
) -> tuple[tuple[CreatePodRequest, ...], float | None]:
    """The create requests for ``spec`` without calling the API, and the hourly cost bound.

    Live prices need the API, so the cost bound is the per-pod cap that ``create`` enforces."""
    prefs = preferences_for(spec, settings)
    if not prefs.gpu_type_ids:
        raise ConfigError("A dry run needs explicit GPU types (--gpu): choosing by price needs the live API.")
    if spec.spot and spec.bid_per_gpu_usd is None:
        raise ConfigError("A spot dry run needs --bid: the current minimum bid needs the live API.")
    requests = tuple(
        build_request(
            spec,
            Candidate(gpu, gpu, cloud, spec.gpu_count, 0.0, None, "unknown"),
            token,
            settings=settings,
            public_key=public_key,
            now=now,
        )
        for cloud in prefs.cloud_types
        for gpu in prefs.gpu_type_ids
    )
    bound = settings.max_pod_usd_per_hour or None
    if spec.spot and spec.bid_per_gpu_usd is not None:
        bid_bound = spec.bid_per_gpu_usd * spec.gpu_count
        bound = min(bound, bid_bound) if bound else bid_bound
    return requests, bound


@dataclass(frozen=True)
class Spend:
    """What the account's running pods cost now, against the caps in force."""

    running: tuple[Pod, ...]
    usd_per_hour: float
    max_pod_usd_per_hour: float
    max_total_usd_per_hour: float


def running_usd_per_hour(pods: builtins.list[Pod]) -> float:
    """What the RUNNING pods among ``pods`` cost per hour, together."""
    return round(sum(p.usd_per_hour for p in pods if p.status == "RUNNING"), 4)


class Pods:
    """The account's pods: create with safe defaults, read, start, stop, terminate, wait until usable."""

    def __init__(
        self,
        api: PodApi,
        settings: Settings,
        *,
        public_key: Callable[[], str],
        existing_public_key: Callable[[], str | None] = lambda: None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        new_token: Callable[[], str] = lambda: secrets.token_hex(4),
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        tcp_probe: Callable[[str, int], bool] = tcp_accepts,
    ) -> None:
        self._api = api
        self._settings = settings
        self._public_key = public_key
        self._existing_public_key = existing_public_key
        self._now = now
        self._new_token = new_token
        self._sleep = sleep
        self._clock = clock
        self._tcp_probe = tcp_probe
        self.gpus = Gpus(api)

    # --- reading ---

    def list(
        self, *, status: str | None = None, name: str | None = None, ours_only: bool = False
    ) -> builtins.list[Pod]:
        """The account\'s pods, filtered by ``status`` (e.g. RUNNING), a ``name`` substring, or ``ours_only``
        (created by runpod-hybrid)."""
        pods = self._api.list_pods()
        return [
            p
            for p in pods
            if (status is None or p.status == status.upper())
            and (name is None or name.lower() in p.name.lower())
            and (not ours_only or p.client_token is not None)
        ]

    def get(self, pod_id: str) -> Pod:
        """One pod by id; :class:`NotFoundError` when the account has no such pod."""
        pod = self._api.get_pod(pod_id)
        if pod is None:
            raise NotFoundError(
                f"No pod {pod_id!r} in this account (it may have been terminated). `rph pods list` shows your pods.",
                status_code=None,
            )
        return pod

    def telemetry(self, pod_id: str) -> PodTelemetry:
        """Utilisation (GPU, CPU, memory; temperature and power where RunPod reports them) and cost so far."""
        telemetry = self._api.pod_telemetry(pod_id)
        if telemetry is None:
            raise NotFoundError(f"No pod {pod_id!r} in this account. `rph pods list` shows your pods.")
        return telemetry

    def spend(self) -> Spend:
        """The running pods, what they cost per hour together, and the budget caps."""
        running = tuple(p for p in self._api.list_pods() if p.status == "RUNNING")
        return Spend(
            running,
            running_usd_per_hour(list(running)),
            self._settings.max_pod_usd_per_hour,
            self._settings.max_total_usd_per_hour,
        )

    def preview(self, spec: PodSpec) -> CreatePreview:
        """The exact create calls ``create(spec)`` would make, in order, without calling the API or making an
        SSH key (``rph pods create --dry-run``). Needs explicit GPU types; env values are hidden."""
        from runpod_hybrid._logging import redact_value

        key = self._existing_public_key() or "<our public key, generated at create>"
        requests, bound = _preview_requests(
            spec, self._settings, public_key=key, now=self._now(), token=self._new_token()
        )
        calls = []
        for request in requests:
            call = self._api.describe_create(request)
            calls.append(CreateCall(call.operation, redact_value(dict(call.arguments))))
        return CreatePreview(tuple(calls), bound)

    def authorize_ssh_key(self) -> tuple[bool, str]:
        """Add our SSH public key to the account's keys (RunPod writes them into new pods), keeping the user's
        other keys. Returns whether it was added (False: it was there already) and the key."""
        key = self._public_key()
        return authorize_on_account(self._api, key), key

    def ssh_endpoint(self, pod_id: str) -> SshEndpoint:
        """The direct SSH route to a running pod; :class:`PodNotReadyError` saying why there is none yet."""
        pod = self.get(pod_id)
        endpoint = pod.ssh
        if endpoint is None:
            raise self._ssh_problem(pod)
        return endpoint

    def _ssh_problem(self, pod: Pod) -> PodNotReadyError:
        if pod.status != "RUNNING":
            return PodNotReadyError(
                f"Pod {pod.id} is {pod.status}, so it has no SSH endpoint. Start it with `rph pods start {pod.id}`.",
                pod_id=pod.id,
                reason="not_running",
            )
        if pod.exposed_ports is not None and "22/tcp" not in pod.exposed_ports.replace(" ", "").split(","):
            return PodNotReadyError(
                f"Pod {pod.id} does not expose 22/tcp (ports: {pod.exposed_ports!r}), so it cannot be reached over "
                "SSH. Create pods with `rph pods create`, which exposes it, or add 22/tcp to the pod's ports.",
                pod_id=pod.id,
                reason="no_ssh_port",
            )
        if pod.runtime is not None and pod.runtime.ports and not any(p.is_public for p in pod.runtime.ports):
            return PodNotReadyError(
                f"Pod {pod.id} has no public IP, so direct SSH is impossible (RunPod's ssh.runpod.io proxy cannot "
                "run commands or move files). Use SECURE cloud, or COMMUNITY with supportPublicIp.",
                pod_id=pod.id,
                reason="no_public_ip",
            )
        return PodNotReadyError(
            f"Pod {pod.id} has no SSH port mapping yet; wait with `rph pods wait {pod.id}`.",
            pod_id=pod.id,
            reason="starting",
        )

    # --- creating ---

    def _affordable(self, candidates: builtins.list[Candidate], spec: PodSpec) -> builtins.list[Candidate]:
        """Drop candidates over the per-pod cap and over what the total cap leaves; refuse if none remain."""
        cap_pod = self._settings.max_pod_usd_per_hour
        cap_total = self._settings.max_total_usd_per_hour

        def price(c: Candidate) -> float:
            unit = (
                spec.bid_per_gpu_usd if spec.spot and spec.bid_per_gpu_usd is not None else c.usd_per_gpu_hour
            )
            return unit * c.gpu_count

        cheapest = min(price(c) for c in candidates)
        if cap_pod and cheapest > cap_pod:
            raise BudgetExceededError(
                f"The cheapest matching pod costs ${cheapest:.2f}/h, over your cap of ${cap_pod:.2f}/h per pod "
                "(max_pod_usd_per_hour). Raise the cap in `rph config`, or ask for fewer or cheaper GPUs.",
                cost_usd=cheapest,
                cap_usd=cap_pod,
            )
        kept = [c for c in candidates if not cap_pod or price(c) <= cap_pod]
        if cap_total:
            running = self.spend().usd_per_hour
            room = cap_total - running
            if cheapest > room:
                raise BudgetExceededError(
                    f"Running pods cost ${running:.2f}/h; a new pod of ${cheapest:.2f}/h would exceed your total cap of "
                    f"${cap_total:.2f}/h (max_total_usd_per_hour). Stop a pod (`rph pods list --status RUNNING`) "
                    "or raise the cap.",
                    cost_usd=running + cheapest,
                    cap_usd=cap_total,
                )
            kept = [c for c in kept if price(c) <= room]
        return kept

    def _find_by_token(self, token: str) -> Pod | None:
        return next((p for p in self._api.list_pods() if p.client_token == token), None)

    def create(
        self, spec: PodSpec, *, on_attempt: Callable[[CreateAttempt], None] | None = None
    ) -> CreateResult:
        """Create one pod, trying candidates in order. Never makes two pods for one call."""
        if spec.gpu_count < 1:
            raise ValueError("gpu_count must be at least 1")
        if spec.spot:  # before choosing: only GraphQL knows spot prices
            self._api.require("create_spot_pod")
        spec = place_on_volume(spec, self._api)
        prefs = preferences_for(spec, self._settings)
        candidates = self.gpus.candidates(prefs, gpu_count=spec.gpu_count, data_center_id=spec.data_center_id)
        if not candidates:
            if spec.spot:  # GraphQL may have gone while choosing; then no API has spot prices
                self._api.require("create_spot_pod")
            raise CapacityError(
                f"No GPU matching your request is in stock for {spec.gpu_count} GPU(s) in "
                f"{'/'.join(prefs.cloud_types)}{where_placed(spec, self._api)}. `rph gpus --count {spec.gpu_count}` "
                "shows what is available; add GPU types or fallback_cloud_types, or try later."
            )
        candidates = self._affordable(candidates, spec)
        token = self._new_token()
        attempts: builtins.list[CreateAttempt] = []

        def record(attempt: CreateAttempt) -> None:
            attempts.append(attempt)
            log.info(
                "pods.create_attempt",
                gpu=attempt.gpu_type_id,
                cloud=attempt.cloud_type,
                outcome=attempt.outcome,
            )
            if on_attempt:
                on_attempt(attempt)

        for candidate in candidates:
            request = build_request(
                spec,
                candidate,
                token,
                settings=self._settings,
                public_key=self._public_key(),
                now=self._now(),
            )
            for try_number in (1, 2):
                try:
                    pod = self._api.create_pod(request)
                except CapacityError as exc:
                    record(
                        CreateAttempt(
                            candidate.gpu_type_id,
                            candidate.cloud_type,
                            candidate.usd_per_hour,
                            "no_capacity",
                            str(exc).split(". ")[0],
                        )
                    )
                    break
                except RunPodHybridError as exc:
                    if not _ambiguous(exc):
                        raise
                    found = self._find_by_token(token)
                    if found is not None:
                        record(
                            CreateAttempt(
                                candidate.gpu_type_id,
                                candidate.cloud_type,
                                found.usd_per_hour,
                                "recovered",
                                f"the create answered {type(exc).__name__}, but the pod exists",
                            )
                        )
                        return CreateResult(found, tuple(attempts))
                    record(
                        CreateAttempt(
                            candidate.gpu_type_id,
                            candidate.cloud_type,
                            candidate.usd_per_hour,
                            "ambiguous",
                            type(exc).__name__,
                        )
                    )
                    if try_number == 2:
                        raise
                    continue
                record(
                    CreateAttempt(candidate.gpu_type_id, candidate.cloud_type, pod.usd_per_hour, "created")
                )
                return CreateResult(pod, tuple(attempts))
        tried = ", ".join(f"{a.gpu_type_id} ({a.cloud_type})" for a in attempts)
        raise CapacityError(
            f"No capacity for any candidate; tried {tried}. `rph gpus` shows what is in stock now."
        )

    # --- lifecycle ---

    def start(
        self, pod_id: str, *, gpu_count: int | None = None, bid_per_gpu_usd: float | None = None
    ) -> Pod:
        """Resume a stopped pod (a spot pod bids again, at ``bid_per_gpu_usd`` or its last price), within the
        total budget cap. Its host may have no free GPU: the :class:`CapacityError` says what to do."""
        pod = self.get(pod_id)
        if pod.status == "RUNNING":
            return pod
        count = gpu_count or pod.gpu_count or 1
        cap_total = self._settings.max_total_usd_per_hour
        if cap_total:
            running = self.spend().usd_per_hour
            if running + pod.usd_per_hour > cap_total:
                raise BudgetExceededError(
                    f"Starting {pod_id} (${pod.usd_per_hour:.2f}/h) would take running pods to "
                    f"${running + pod.usd_per_hour:.2f}/h, over your total cap of ${cap_total:.2f}/h.",
                    cost_usd=running + pod.usd_per_hour,
                    cap_usd=cap_total,
                )
        bid = None
        if pod.is_spot:
            bid = bid_per_gpu_usd if bid_per_gpu_usd is not None else pod.usd_per_hour / max(pod.gpu_count, 1)
        try:
            return self._api.resume_pod(pod_id, count, bid)
        except CapacityError as exc:
            raise CapacityError(
                f"Pod {pod_id}'s host has no free GPU to resume it ({exc.details[0].message if exc.details else 'no pod returned'}). "
                "Wait and retry, or terminate it and create a new pod elsewhere; its volume disk is lost on "
                "terminate, so copy /workspace out first or use a network volume.",
                details=exc.details,
            ) from exc

    def stop(self, pod_id: str) -> Pod:
        """Stop a pod: the GPU is released and stops billing; the volume disk stays (and bills as storage)."""
        self.get(pod_id)
        return self._api.stop_pod(pod_id)

    def restart(self, pod_id: str) -> Pod:
        """Restart a running pod's container in place (REST v2): the container disk is wiped, /workspace kept."""
        self.get(pod_id)
        return self._api.restart_pod(pod_id)

    def terminate(self, pod_id: str) -> None:
        """Delete a pod and its volume disk for good."""
        if self._api.get_pod(pod_id) is None:
            raise NotFoundError(
                f"Pod {pod_id!r} does not exist or is already terminated: nothing to do. `rph pods list` shows your pods."
            )
        self._api.terminate_pod(pod_id)

    # --- readiness ---

    def wait_until_ready(
        self,
        pod_id: str,
        *,
        timeout_s: float = 900.0,
        need_ssh: bool = True,
        poll_s: float = 5.0,
        on_progress: Callable[[str], None] | None = None,
    ) -> Pod:
        """Return the pod once it is RUNNING with its container up and, if ``need_ssh``, port 22 reachable.

        Raises :class:`PodNotReadyError` naming the failure mode instead of waiting blindly.
        """
        started = self._clock()
        stuck_since: float | None = None
        while True:
            pod = self.get(pod_id)
            elapsed = self._clock() - started
            state = self._readiness(pod, need_ssh)
            if on_progress:
                on_progress(f"{pod_id}: {state} ({elapsed:.0f}s)")
            if state == "ready":
                return pod
            if pod.status in ("EXITED", "TERMINATED", "DEAD"):
                raise PodNotReadyError(
                    f"Pod {pod_id} is {pod.status} ({pod.last_status_change or 'no reason given'}): it stopped "
                    "instead of starting. Check its logs in the RunPod console; if its start command ended, the "
                    "container exits. Start it again with `rph pods start`.",
                    pod_id=pod_id,
                    reason="exited",
                )
            if pod.runtime is None and elapsed >= RUNTIME_GRACE_S:
                raise PodNotReadyError(
                    f"Pod {pod_id} has had no container runtime for {elapsed:.0f}s: the image may still be "
                    f"downloading (large images take minutes) or the host is failing. Check the pod's logs in the "
                    "console; if nothing happens, terminate it and create one on another GPU type.",
                    pod_id=pod_id,
                    reason="no_runtime",
                )
            if pod.runtime is not None and pod.runtime.uptime_s == 0 and not pod.runtime.ports:
                stuck_since = elapsed if stuck_since is None else stuck_since
                if elapsed - stuck_since >= CRASH_LOOP_GRACE_S:
                    raise PodNotReadyError(
                        f"Pod {pod_id} has been RUNNING with uptime 0 and no ports for {elapsed - stuck_since:.0f}s: "
                        "its container is crash looping or its image cannot be pulled. Check the image name and "
                        "start command, and the pod's logs in the console.",
                        pod_id=pod_id,
                        reason="crash_loop",
                    )
            else:
                stuck_since = None
            if state in ("no_public_ip", "no_ssh_port"):
                raise self._ssh_problem(pod)
            if elapsed + poll_s > timeout_s:
                raise PodNotReadyError(
                    f"Pod {pod_id} was not ready after {timeout_s:.0f}s (last state: {state}). It is still billing: "
                    f"wait longer with `rph pods wait {pod_id}`, or stop it.",
                    pod_id=pod_id,
                    reason="timeout",
                )
            self._sleep(poll_s)

    def _readiness(self, pod: Pod, need_ssh: bool) -> str:
        if pod.status != "RUNNING":
            return pod.status.lower()
        if pod.runtime is None:
            return "waiting for container"
        if pod.runtime.uptime_s == 0 and not pod.runtime.ports:
            return "container starting"
        if not need_ssh:
            return "ready"
        endpoint = pod.ssh
        if endpoint is None:
            problem = self._ssh_problem(pod)
            return (
                problem.reason
                if problem.reason in ("no_public_ip", "no_ssh_port")
                else "waiting for SSH port"
            )
        return "ready" if self._tcp_probe(endpoint.host, endpoint.port) else "waiting for sshd"
