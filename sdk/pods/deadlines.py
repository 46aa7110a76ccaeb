"""Pod deadlines we enforce ourselves, because RunPod enforces none (it accepts ``terminateAfter`` and ignores it).

Every pod we create gets a deadline (``max_pod_hours``, 24 h unless changed), held by these guards:

- **the pod watchdog** (``watchdog.sh``, on the pod's volume): stops the pod at its deadline with the pod's own
  key (``runpodctl stop pod $RUNPOD_POD_ID``, else RunPod's API with that key). It is armed at container
  start where our create sets the start command (:func:`start_command`, job pods), otherwise at the first
  SSH contact (:func:`arm_command`), and again at every later one; it runs detached from SSH, and a restarted
  container re-arms it from the absolute deadline kept on the volume;
- **the client reaper**: the deadline travels in the pod's name (:class:`NameTag`), so every rph or MCP call
  that lists pods, from any machine, stops our pods past it (:func:`due_for_stop`) and warns about ours whose
  watchdog was never armed (:func:`guard_of`);
- for jobs, the runner's dead-man stop (``jobs/runner.sh``).

Stopping, not terminating: the volume (checkpoints, outputs) is kept; it bills as storage until terminated.
"""

from __future__ import annotations

import base64
import gzip
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib.resources import files

from runpod_hybrid.controlplane import NameTag, Pod
from runpod_hybrid.remote.shell import script, words

POD_WATCHDOG = "pod watchdog"
CLIENT_REAPER = "client reaper"
# States in which a pod may still bill for its GPU, so a deadline applies.
_MAY_BILL_GPU = frozenset({"RUNNING", "CREATED", "RESTARTING"})


def watchdog_script() -> bytes:
    """The watchdog's POSIX sh source, as installed on a pod's volume."""
    return files("runpod_hybrid.pods").joinpath("watchdog.sh").read_bytes()


def watchdog_path(root: str) -> str:
    """Where the watchdog lives on a pod whose volume is mounted at ``root``."""
    return f"{root.rstrip('/')}/.rph/watchdog.sh"


def deadline_after(now: datetime, hours: float) -> datetime | None:
    """The deadline ``hours`` after ``now``, rounded up to the second (as the name tag keeps it); None for 0."""
    return datetime.fromtimestamp(_epoch(now + timedelta(hours=hours)), UTC) if hours > 0 else None


def _epoch(deadline: datetime) -> int:
    """The deadline in UTC epoch seconds, rounded up: never earlier than asked."""
    return math.ceil(deadline.timestamp())


def start_command(
    root: str, deadline: datetime | None, boot: str | None = None, *, image_start: str = "/start.sh"
) -> str:
    """The container start command our creates set for job pods: install the watchdog on the volume and arm it
    (from the deadline already on the volume after a restart; ``deadline`` at the first start), start ``boot``
    (our shell text, e.g. resuming jobs) in the background, then hand over to the image's own start script
    (RunPod images start sshd and apply PUBLIC_KEY there). The watchdog travels compressed, in base64, since
    the volume is empty at the first start. No deadline: no watchdog."""
    body = ""
    if deadline is not None:
        body = script(
            "mkdir -p {rph} && echo {packed} | base64 -d | gzip -dc > {rph}/watchdog.sh && "
            "sh {rph}/watchdog.sh boot {epoch} >/dev/null 2>&1; ",
            rph=f"{root.rstrip('/')}/.rph",
            packed=base64.b64encode(gzip.compress(watchdog_script(), mtime=0)).decode(),
            epoch=_epoch(deadline),
        )
    if boot:
        body += f"({boot}) >/dev/null 2>&1 & "
    return words("bash", "-c", body + script("exec {start}", start=image_start))


def arm_command(root: str, deadline: datetime) -> str:
    """Shell text for an SSH contact: install the watchdog (its source on stdin) and arm it with ``deadline``,
    the one in the pod's name; prints the watchdog's status."""
    return script(
        "mkdir -p {rph} && cat > {rph}/watchdog.sh.new && mv -f {rph}/watchdog.sh.new {rph}/watchdog.sh && "
        "exec sh {rph}/watchdog.sh arm {epoch}",
        rph=f"{root.rstrip('/')}/.rph",
        epoch=_epoch(deadline),
    )


def due_for_stop(pod: Pod, now: datetime) -> bool:
    """Whether ``pod`` is ours, past its deadline, and may still bill for its GPU."""
    tag = pod.tag
    return (
        tag is not None and tag.deadline is not None and now >= tag.deadline and pod.status in _MAY_BILL_GPU
    )


@dataclass(frozen=True)
class PodGuard:
    """A pod with its money guards: its deadline, which guards hold it, what it costs per hour, and what it
    will cost from now to the deadline at that price."""

    pod: Pod
    deadline: datetime | None
    guards: tuple[str, ...]
    usd_per_hour: float
    hours_left: float | None
    projected_usd: float | None
    stopped_now: bool = False
    warning: str | None = None


def guard_of(pod: Pod, now: datetime, *, stopped_now: bool = False) -> PodGuard:
    """The guards of ``pod`` at ``now`` (no API call). Pods we did not create have none of ours."""
    tag: NameTag | None = pod.tag
    deadline = tag.deadline if tag else None
    guards: tuple[str, ...] = ()
    if tag is not None and deadline is not None:
        guards = (POD_WATCHDOG, CLIENT_REAPER) if tag.watchdog_armed else (CLIENT_REAPER,)
    billing = pod.status in _MAY_BILL_GPU
    hours_left = max(0.0, (deadline - now).total_seconds() / 3600) if deadline else None
    warning = None
    if tag is not None and billing and deadline is None:
        warning = f"Pod {pod.id} has no deadline: it runs and bills until someone stops it."
    elif tag is not None and billing and not tag.watchdog_armed:
        warning = (
            f"Pod {pod.id}'s watchdog was never armed, so only rph/MCP calls that list pods enforce its deadline; "
            f"the first SSH contact arms it (`rph pods wait {pod.id}`, MCP wait_for_pod, or any command on it)."
        )
    return PodGuard(
        pod=pod,
        deadline=deadline,
        guards=guards,
        usd_per_hour=pod.usd_per_hour if billing else 0.0,
        hours_left=None if hours_left is None else round(hours_left, 3),
        projected_usd=round(pod.usd_per_hour * hours_left, 4) if billing and hours_left is not None else None,
        stopped_now=stopped_now,
        warning=warning,
    )


@dataclass(frozen=True)
class PodOverview:
    """Pods with their guards, after the client reaper ran: ``stopped`` were ours past their deadline and were
    stopped by this call; ``warnings`` name ours that are not fully guarded, and stops that failed."""

    pods: tuple[PodGuard, ...]
    stopped: tuple[str, ...]
    warnings: tuple[str, ...]

    @property
    def running_usd_per_hour(self) -> float:
        """What the listed pods that may bill for their GPU cost per hour, together."""
        return round(sum(g.usd_per_hour for g in self.pods), 4)


@dataclass(frozen=True)
class WarmPod:
    """A running pod of ours that a job could use now, without the boot of a new one. ``busy``: a job of
    ours runs on it (None: the pod could not be asked). ``idle_left_s``: until its idle stop, when a job
    that kept it warm set one (None: none set; its deadline holds)."""

    guard: PodGuard
    busy: bool | None
    idle_left_s: float | None

    @property
    def pod(self) -> Pod:
        return self.guard.pod


def parse_watchdog_status(text: str, now: datetime) -> tuple[bool | None, float | None]:
    """``busy`` and seconds until the idle stop, from what ``watchdog.sh status`` prints."""
    values = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    busy = {"yes": True, "no": False}.get(values.get("busy", ""))
    idle_until = values.get("idle_until", "")
    idle_left = max(0.0, int(idle_until) - now.timestamp()) if idle_until.isdigit() else None
    return busy, idle_left
