"""Pod lifecycle with safe defaults: create (on-demand and spot) with fallback, budget caps, a deadline we
enforce ourselves (``deadlines.py``) and no duplicates; start, stop, terminate, extend; readiness that names
failure modes; telemetry and the SSH endpoint.

RunPod facts this module works around:
- "no capacity" is routine, not a bug: fall back through GPU types, then cloud types;
- a create whose answer was lost (a timeout, a dropped connection, a 5xx or an HTML page, truncated JSON, a
  GraphQL error, even a 429) may still have made a pod, and the pod list can lag behind a create: look for
  our client token, for a bounded settle period, before any retry or error;
- RunPod ignores ``terminateAfter``: we still send it, in case RunPod fixes that, and claim nothing for it;
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
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from runpod_hybrid._logging import get_logger
from runpod_hybrid.config import Settings
from runpod_hybrid.controlplane import (
    CreateCall,
    CreatePodRequest,
    NameTag,
    Pod,
    PodApi,
    PodTelemetry,
    SshEndpoint,
)
from runpod_hybrid.errors import (
    BadResponseError,
    BudgetExceededError,
    CapacityError,
    ConfigError,
    ConnectionFailedError,
    GraphQLError,
    GraphQLValidationError,
    NotFoundError,
    PodNotReadyError,
    RateLimitError,
    RequestTimeoutError,
    RunPodHybridError,
    ServerError,
)

from .deadlines import (
    CLIENT_REAPER,
    POD_WATCHDOG,
    PodGuard,
    PodOverview,
    WarmPod,
    arm_command,
    deadline_after,
    due_for_stop,
    guard_of,
    parse_watchdog_status,
    start_command,
    watchdog_path,
    watchdog_script,
)
from .gpus import Candidate, GpuPreferences, Gpus
from .sshkeys import authorize_on_account
from .volumes import place_on_volume, where_placed

if TYPE_CHECKING:
    from runpod_hybrid.remote import CommandRunner

log = get_logger(__name__)

# Seconds without a container runtime, or with uptime stuck at 0 and no ports, before we call it a failure.
RUNTIME_GRACE_S = 600.0
CRASH_LOOP_GRACE_S = 240.0
# A job start contacts its pod three times within seconds (wait, upload and start, follow): an SSH contact this
# soon after this process armed the watchdog with the same deadline does not arm it again. A later one does.
ARM_REFRESH_S = 30.0
# After a create whose answer was lost, how long to look for its pod (the list lags behind a create), and
# the waits between looks: 30 s in all.
SETTLE_WAITS_S = (1.0, 2.0, 4.0, 8.0, 15.0)
# How often a create answered 429 (and then not found) is sent again, after RunPod's Retry-After.
RATE_LIMITED_RESENDS = 4


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
    # Where the volume is mounted; the watchdog and its deadline live there, under .rph/.
    volume_mount_path: str = "/workspace"
    network_volume_id: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    extra_ports: tuple[str, ...] = ()
    spot: bool = False
    bid_per_gpu_usd: float | None = None
    # Hours until the pod is stopped (settings' max_pod_hours when None; 0: no deadline).
    max_hours: float | None = None
    # The caller's own start command: it replaces the image's, and then the watchdog is armed at the first
    # SSH contact. Exclusive with `boot`.
    docker_args: str | None = None
    # Our shell text to run in the background at every container start (a job pod resumes its jobs): it
    # makes the start command ours, which also arms the watchdog at container start.
    boot: str | None = None
    data_center_id: str | None = None


@dataclass(frozen=True)
class CreateAttempt:
    gpu_type_id: str
    cloud_type: str
    usd_per_hour: float
    # created | no_capacity | recovered (the answer was lost, the pod was found) | rate_limited (429, no pod
    # found, sent again) | lost (the answer was lost and no pod appeared)
    outcome: str
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


def _may_have_arrived(exc: RunPodHybridError) -> bool:
    """Failures after which RunPod may have made the pod: every answer that is not a clear refusal."""
    if isinstance(exc, RequestTimeoutError | ConnectionFailedError):
        return exc.request_sent
    if isinstance(exc, GraphQLValidationError):
        return False  # the document was refused before it ran
    return isinstance(exc, RateLimitError | ServerError | BadResponseError | GraphQLError)


def max_hours_of(spec: PodSpec, settings: Settings) -> float:
    return settings.max_pod_hours if spec.max_hours is None else spec.max_hours


def build_request(
    spec: PodSpec, candidate: Candidate, token: str, *, settings: Settings, public_key: str, now: datetime
) -> CreatePodRequest:
    """The exact create call for one candidate: 22/tcp, PUBLIC_KEY, and our name tag (client token and
    deadline) by default; a ``boot`` hook makes the start command ours, arming the watchdog at container start."""
    if spec.boot is not None and spec.docker_args is not None:
        raise ValueError("PodSpec.boot and PodSpec.docker_args are exclusive: both set the start command")
    deadline = deadline_after(now, max_hours_of(spec, settings))
    docker_args = spec.docker_args
    if spec.boot is not None:
        docker_args = start_command(spec.volume_mount_path, deadline, spec.boot)
    tag = NameTag(token, deadline, watchdog_armed=deadline is not None and spec.boot is not None)
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
        name=tag.name(spec.name),
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
        volume_mount_path=spec.volume_mount_path,
        network_volume_id=spec.network_volume_id,
        docker_args=docker_args,
        # RunPod accepts terminateAfter and ignores it; sent in case that is fixed, relied on nowhere.
        terminate_after=deadline,
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
    """What a create would send, computed offline: one call per candidate, in order, the hourly cost bound,
    the deadline and the guards that will hold it, and the cost bound until then. Env values are hidden in
    ``calls``."""

    calls: tuple[CreateCall, ...]
    max_usd_per_hour: float | None
    deadline: datetime | None
    guards: tuple[str, ...]
    watchdog_armed_at: str | None
    projected_max_usd: float | None


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
    """What is billing now, against the caps in force: the pods that may bill for a GPU (ours and others) with
    their guards, their total per hour, and the account's balance and spend per hour as RunPod reports them
    (None where it does not). ``stopped`` and ``warnings`` come from the client reaper, which ran first."""

    running: tuple[PodGuard, ...]
    usd_per_hour: float
    balance_usd: float | None
    account_usd_per_hour: float | None
    max_pod_usd_per_hour: float
    max_total_usd_per_hour: float
    max_pod_hours: float
    stopped: tuple[str, ...]
    warnings: tuple[str, ...]


class Pods:
    """The account's pods: create with safe defaults, read, start, stop, terminate, extend, wait until usable.

    Every read of the pod list runs the client reaper first: our pods past their deadline are stopped."""

    def __init__(
        self,
        api: PodApi,
        settings: Settings,
        *,
        public_key: Callable[[], str],
        existing_public_key: Callable[[], str | None] = lambda: None,
        open_runner: Callable[[str, SshEndpoint], CommandRunner] | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        new_token: Callable[[], str] = lambda: secrets.token_hex(4),
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        tcp_probe: Callable[[str, int], bool] = tcp_accepts,
    ) -> None:
        """``open_runner(pod_id, endpoint)`` gives commands on a pod (SSH): with it, the first SSH contact arms
        the pod's watchdog; without it, nothing is armed over SSH."""
        self._api = api
        self._settings = settings
        self._public_key = public_key
        self._existing_public_key = existing_public_key
        self._open_runner = open_runner
        self._now = now
        self._new_token = new_token
        self._sleep = sleep
        self._clock = clock
        self._tcp_probe = tcp_probe
        self._armed: dict[tuple[str, datetime], float] = {}  # (pod, deadline) -> when this process armed it
        self.gpus = Gpus(api)

    # --- reading (the client reaper runs first) ---

    def overview(
        self, *, status: str | None = None, name: str | None = None, ours_only: bool = False
    ) -> PodOverview:
        """The account's pods with their guards, after stopping ours that are past their deadline (from any
        machine: the deadline is in the pod's name). Filters apply to what is returned, not to the reaping."""
        now = self._now()
        guards: builtins.list[PodGuard] = []
        failures: builtins.list[str] = []
        for pod in self._api.list_pods():
            guard, failure = self._reaped(pod, now)
            guards.append(guard)
            failures += [failure] if failure else []
        shown = tuple(
            g
            for g in guards
            if (status is None or g.pod.status == status.upper())
            and (name is None or name.lower() in g.pod.name.lower())
            and (not ours_only or g.pod.tag is not None)
        )
        return PodOverview(
            shown,
            tuple(g.pod.id for g in guards if g.stopped_now),
            tuple(failures) + tuple(g.warning for g in shown if g.warning),
        )

    def _reaped(self, pod: Pod, now: datetime) -> tuple[PodGuard, str | None]:
        """``pod`` stopped if it is ours and past its deadline; a failed stop is reported, not raised, so one
        pod cannot hide the others."""
        if not due_for_stop(pod, now):
            return guard_of(pod, now), None
        try:
            stopped = self._api.stop_pod(pod.id)
        except RunPodHybridError as exc:
            return guard_of(pod, now), f"Pod {pod.id} is past its deadline but could not be stopped: {exc}"
        log.warning(
            "pods.stopped_past_deadline", pod=pod.id, deadline=str(pod.tag.deadline if pod.tag else "")
        )
        return guard_of(stopped, now, stopped_now=True), None

    def list(
        self, *, status: str | None = None, name: str | None = None, ours_only: bool = False
    ) -> builtins.list[Pod]:
        """The account's pods (ours past their deadline stopped first; see :meth:`overview`)."""
        overview = self.overview(status=status, name=name, ours_only=ours_only)
        for warning in overview.warnings:
            log.warning("pods.guard", warning=warning)
        return [g.pod for g in overview.pods]

    def get(self, pod_id: str) -> Pod:
        """One pod; if it is ours and past its deadline, it is stopped first."""
        return self.guard(pod_id).pod

    def warm(self, pod_id: str | None = None) -> builtins.list[WarmPod]:
        """Running pods of ours a job could use now (or just ``pod_id``), each asked over SSH (all at once)
        whether a job runs on it and when its idle stop is due. Pods that cannot be asked are listed with
        ``busy`` None."""
        from concurrent.futures import ThreadPoolExecutor

        guards = (
            [self.guard(pod_id)] if pod_id else list(self.overview(status="RUNNING", ours_only=True).pods)
        )
        if len(guards) < 2:
            return [self._warm(guard) for guard in guards]
        with ThreadPoolExecutor(min(len(guards), 8), thread_name_prefix="rph-warm") as pool:
            return list(pool.map(self._warm, guards))

    def _warm(self, guard: PodGuard) -> WarmPod:
        pod = guard.pod
        endpoint = pod.ssh
        if pod.status != "RUNNING" or endpoint is None or self._open_runner is None:
            return WarmPod(guard, None, None)
        root = pod.volume_mount_path or PodSpec.volume_mount_path
        try:
            seen = self._open_runner(pod.id, endpoint).exec(
                ["sh", watchdog_path(root), "status"], timeout_s=30
            )
        except RunPodHybridError as exc:
            log.warning("pods.warm_unreachable", pod=pod.id, error=str(exc))
            return WarmPod(guard, None, None)
        if seen.exit_code != 0:
            return WarmPod(guard, None, None)
        return WarmPod(guard, *parse_watchdog_status(seen.stdout, self._now()))

    def guard(self, pod_id: str) -> PodGuard:
        """One pod with its guards (stopped first if it is ours and past its deadline)."""
        pod = self._api.get_pod(pod_id)
        if pod is None:
            raise NotFoundError(
                f"No pod {pod_id!r} in this account (it may have been terminated). `rph pods list` shows your pods.",
                status_code=None,
            )
        guard, failure = self._reaped(pod, self._now())
        if failure:
            log.warning("pods.guard", warning=failure)
        return guard

    def telemetry(self, pod_id: str) -> PodTelemetry:
        """Utilisation (GPU, CPU, memory; temperature and power where RunPod reports them) and cost so far."""
        telemetry = self._api.pod_telemetry(pod_id)
        if telemetry is None:
            raise NotFoundError(f"No pod {pod_id!r} in this account. `rph pods list` shows your pods.")
        return telemetry

    def spend(self) -> Spend:
        """What is billing now (after the reaper), the account's balance and spend per hour where RunPod
        gives them, and the caps in force."""
        overview = self.overview()
        warnings = list(overview.warnings)
        try:
            account = self._api.account_spend()
            balance, account_rate = account.balance_usd, account.usd_per_hour
        except RunPodHybridError as exc:
            balance = account_rate = None
            warnings.append(f"RunPod did not give the account's balance: {exc}")
        settings = self._settings
        return Spend(
            tuple(g for g in overview.pods if g.usd_per_hour > 0),
            overview.running_usd_per_hour,
            balance,
            account_rate,
            settings.max_pod_usd_per_hour,
            settings.max_total_usd_per_hour,
            settings.max_pod_hours,
            overview.stopped,
            tuple(warnings),
        )

    def preview(self, spec: PodSpec) -> CreatePreview:
        """The exact create calls ``create(spec)`` would make, in order, without calling the API or making an
        SSH key (``rph pods create --dry-run``), with the deadline, its guards and the cost bound until then.
        Needs explicit GPU types; env values are hidden."""
        from runpod_hybrid._logging import redact_value

        key = self._existing_public_key() or "<our public key, generated at create>"
        now = self._now()
        requests, bound = _preview_requests(
            spec, self._settings, public_key=key, now=now, token=self._new_token()
        )
        calls = []
        for request in requests:
            call = self._api.describe_create(request)
            calls.append(CreateCall(call.operation, redact_value(dict(call.arguments))))
        hours = max_hours_of(spec, self._settings)
        deadline = deadline_after(now, hours)
        return CreatePreview(
            tuple(calls),
            bound,
            deadline,
            (POD_WATCHDOG, CLIENT_REAPER) if deadline else (),
            None if deadline is None else ("container start" if spec.boot else "first SSH contact"),
            round(bound * hours, 2) if bound and deadline else None,
        )

    def authorize_ssh_key(self) -> tuple[bool, str]:
        """Add our SSH public key to the account's keys (RunPod writes them into new pods), keeping the user's
        other keys. Returns whether it was added (False: it was there already) and the key."""
        key = self._public_key()
        return authorize_on_account(self._api, key), key

    def ssh_endpoint(self, pod_id: str) -> SshEndpoint:
        """The pod's direct SSH endpoint. Asking for it is an SSH contact: a pod of ours gets its watchdog armed
        (the first time) or re-armed (a stop and start, or a restart without our start command, ended it)."""
        pod = self.get(pod_id)
        endpoint = pod.ssh
        if endpoint is None:
            raise self._ssh_problem(pod)
        self._arm_watchdog(pod, endpoint)
        return endpoint

    def _arm_watchdog(self, pod: Pod, endpoint: SshEndpoint) -> tuple[Pod, str | None]:
        """Install the watchdog on the pod and arm it with the deadline in the pod's name (idempotent: a running
        watchdog is kept and reads the new deadline), then mark the name. Returns the pod and, when it could not
        be armed, why (never raised: the caller's own work goes on, and listings keep warning)."""
        split = NameTag.split(pod.name)
        if split is None or split[1].deadline is None:
            return pod, None  # not ours, or no deadline: nothing to arm
        if self._open_runner is None:
            return pod, "no SSH runner to arm it with"
        base, tag = split
        assert tag.deadline is not None
        armed_at = self._armed.get((pod.id, tag.deadline))
        if armed_at is not None and self._clock() - armed_at < ARM_REFRESH_S and tag.watchdog_armed:
            return pod, None
        root = pod.volume_mount_path or PodSpec.volume_mount_path
        try:
            result = self._open_runner(pod.id, endpoint).exec(
                arm_command(root, tag.deadline), stdin=watchdog_script(), timeout_s=60
            )
            result.check(f"arming the watchdog of pod {pod.id}")
            if "running=yes" not in result.stdout:
                return pod, f"its watchdog did not start: {result.stdout.strip()[-300:]}"
            if not tag.watchdog_armed:
                name = replace(tag, watchdog_armed=True).name(base)
                self._api.rename_pod(pod.id, name)
                pod = replace(pod, name=name)
        except RunPodHybridError as exc:
            log.warning("pods.watchdog_not_armed", pod=pod.id, error=str(exc))
            return pod, f"its watchdog could not be armed: {exc}"
        self._armed[(pod.id, tag.deadline)] = self._clock()
        log.info("pods.watchdog_armed", pod=pod.id, deadline=tag.deadline.isoformat())
        return pod, None

    def extend(self, pod_id: str, *, hours: float) -> PodGuard:
        """Move a pod's deadline ``hours`` later (from now, if it has passed or there was none), for every
        guard: the name tag (clients) and, when the pod runs and answers over SSH, its watchdog."""
        if hours <= 0:
            raise ValueError("hours must be positive")
        pod = self.guard(pod_id).pod
        split = NameTag.split(pod.name)
        if split is None:
            raise ConfigError(
                f"Pod {pod_id} was not created by runpod-hybrid, so it has no deadline of ours to move."
            )
        base, tag = split
        now = self._now()
        deadline = deadline_after(max(now, tag.deadline or now), hours)
        name = replace(tag, deadline=deadline).name(base)
        self._api.rename_pod(pod_id, name)
        pod = replace(pod, name=name)
        problem = None
        if pod.status == "RUNNING" and pod.ssh is not None:
            pod, problem = self._arm_watchdog(pod, pod.ssh)
        elif pod.status == "RUNNING":
            problem = "it has no SSH endpoint"
        guard = guard_of(pod, now)
        if problem and tag.watchdog_armed:
            return replace(
                guard,
                warning=f"The watchdog on pod {pod_id} still holds the old deadline ({problem}): it stops the pod "
                f"then unless an SSH contact re-arms it first (`rph pods wait {pod_id}`).",
            )
        if pod.status != "RUNNING" and tag.watchdog_armed:
            return replace(
                guard,
                warning=f"Pod {pod_id} is {pod.status}: once started, its watchdog keeps the old deadline until the "
                f"first SSH contact (`rph pods wait {pod_id}`); started after that old deadline, it waits 10 minutes "
                "for that contact before it stops the pod.",
            )
        return guard

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
            running = self.overview().running_usd_per_hour
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

    def _find_settled(self, token: str) -> Pod | None:
        """Our pod with ``token``, looked for over the settle period: the list lags behind a create."""
        for wait_s in (0.0, *SETTLE_WAITS_S):
            if wait_s:
                self._sleep(wait_s)
            found = next((p for p in self._api.list_pods() if p.client_token == token), None)
            if found is not None:
                return found
        return None

    def create(
        self, spec: PodSpec, *, on_attempt: Callable[[CreateAttempt], None] | None = None
    ) -> CreateResult:
        """Create one pod, trying candidates in order. Never makes two pods for one call: after any answer that
        may hide a pod, it looks the client token up (allowing for list lag) before sending anything again,
        and then sends again only after a 429, RunPod's "not now"."""
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

        def record(candidate: Candidate, outcome: str, usd_per_hour: float, detail: str = "") -> None:
            attempt = CreateAttempt(
                candidate.gpu_type_id, candidate.cloud_type, usd_per_hour, outcome, detail
            )
            attempts.append(attempt)
            log.info(
                "pods.create_attempt", gpu=attempt.gpu_type_id, cloud=attempt.cloud_type, outcome=outcome
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
            pod = self._create_one(request, candidate, token, record)
            if pod is not None:
                return CreateResult(pod, tuple(attempts))
        tried = ", ".join(f"{a.gpu_type_id} ({a.cloud_type})" for a in attempts)
        raise CapacityError(
            f"No capacity for any candidate; tried {tried}. `rph gpus` shows what is in stock now."
        )

    def _create_one(
        self,
        request: CreatePodRequest,
        candidate: Candidate,
        token: str,
        record: Callable[[Candidate, str, float, str], None],
    ) -> Pod | None:
        """One candidate: its pod, or None when it has no capacity. Raises when the outcome stays unknown."""
        for resend in range(RATE_LIMITED_RESENDS + 1):
            try:
                pod = self._api.create_pod(request)
            except CapacityError as exc:
                record(candidate, "no_capacity", candidate.usd_per_hour, str(exc).split(". ")[0])
                return None
            except RunPodHybridError as exc:
                if not _may_have_arrived(exc):
                    raise
                what = f"the create answered {type(exc).__name__}"
                try:
                    found = self._find_settled(token)
                except RunPodHybridError as lookup:
                    exc.add_note(
                        f"Whether RunPod made the pod is unknown: looking for it failed ({lookup}). Before creating "
                        f"again, look for a pod whose name has -rph-{token} (`rph pods list --ours`)."
                    )
                    raise exc from lookup
                if found is not None:
                    record(candidate, "recovered", found.usd_per_hour, f"{what}, but pod {found.id} exists")
                    return found
                if isinstance(exc, RateLimitError) and resend < RATE_LIMITED_RESENDS:
                    record(candidate, "rate_limited", candidate.usd_per_hour, f"{what}; no pod was made")
                    self._sleep(exc.retry_after_s if exc.retry_after_s is not None else 2.0 ** (resend + 1))
                    continue
                record(candidate, "lost", candidate.usd_per_hour, what)
                exc.add_note(
                    f"No pod exists for this create: none with client token {token} appeared in your account "
                    f"within {sum(SETTLE_WAITS_S):g} s of looking, so it is safe to create again. (Should one appear "
                    f"later, its name has -rph-{token}: `rph pods list --ours`.)"
                )
                raise
            record(candidate, "created", pod.usd_per_hour, "")
            return pod
        raise AssertionError("unreachable: the last resend returns or raises")

    # --- lifecycle ---

    def start(
        self, pod_id: str, *, gpu_count: int | None = None, bid_per_gpu_usd: float | None = None
    ) -> Pod:
        """Resume a stopped pod (a spot pod bids again, at ``bid_per_gpu_usd`` or its last price), within the
        total budget cap. Its host may have no free GPU: the :class:`CapacityError` says what to do."""
        pod = self.get(pod_id)
        if pod.status == "RUNNING":
            return pod
        tag = pod.tag
        if tag is not None and tag.deadline is not None and self._now() >= tag.deadline:
            raise ConfigError(
                f"Pod {pod_id} is past its deadline ({tag.deadline:%Y-%m-%d %H:%M} UTC), so it would be stopped "
                f"again at once. Move the deadline first: `rph pods extend {pod_id} --hours N`."
            )
        count = gpu_count or pod.gpu_count or 1
        cap_total = self._settings.max_total_usd_per_hour
        if cap_total:
            running = self.overview().running_usd_per_hour
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
        """Stop a pod: the GPU is released and stops billing; the volume disk stays (and bills as storage).
        Stopping a stopped pod does nothing."""
        pod = self.get(pod_id)
        return pod if pod.status == "EXITED" else self._api.stop_pod(pod_id)

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
        poll_s: float = 1.0,
        on_progress: Callable[[str], None] | None = None,
    ) -> Pod:
        """Return the pod once it is RUNNING with its container up and, if ``need_ssh``, port 22 reachable.
        ``poll_s``: the user waits for this, so one small pod read a second (half a second late on average)
        rather than up to 5 s more before every job starts; a 429 from RunPod's staged rate limits is waited
        out as it asks (``Retry-After``) by the transport.
        With SSH up, this is an SSH contact: the pod's watchdog is (re-)armed with the deadline in its name
        (after a start, a container that was stopped has none running).

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
                if need_ssh and pod.ssh is not None:
                    pod, problem = self._arm_watchdog(pod, pod.ssh)
                    if problem:
                        log.warning("pods.guard", warning=f"Pod {pod.id}: {problem}")
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
