"""Pods and GPUs: choice and fallback, create with safe defaults and its dry run, deadlines we enforce
ourselves (a watchdog on the pod, and every client that lists pods), readiness, SSH keys, and network
volumes with placement beside them."""

from __future__ import annotations

from .deadlines import (
    CLIENT_REAPER,
    POD_WATCHDOG,
    PodGuard,
    PodOverview,
    WarmPod,
    arm_command,
    start_command,
    watchdog_path,
    watchdog_script,
)
from .gpus import Candidate, GpuPreferences, Gpus, choose, resolve_gpu_id
from .lifecycle import (
    CreateAttempt,
    CreatePreview,
    CreateResult,
    Pods,
    PodSpec,
    Spend,
    build_request,
    preferences_for,
    tcp_accepts,
)
from .sshkeys import authorize_on_account, ensure_keypair, key_path, public_key
from .volumes import Volumes, place_on_volume

__all__ = [
    "CLIENT_REAPER",
    "POD_WATCHDOG",
    "Candidate",
    "CreateAttempt",
    "CreatePreview",
    "CreateResult",
    "GpuPreferences",
    "Gpus",
    "PodGuard",
    "PodOverview",
    "PodSpec",
    "Pods",
    "Spend",
    "Volumes",
    "WarmPod",
    "arm_command",
    "authorize_on_account",
    "build_request",
    "choose",
    "ensure_keypair",
    "key_path",
    "place_on_volume",
    "preferences_for",
    "public_key",
    "resolve_gpu_id",
    "start_command",
    "tcp_accepts",
    "watchdog_path",
    "watchdog_script",
]
