"""Pods and GPUs: choice and fallback, create with safe defaults and its dry run, readiness, SSH keys, and
network volumes with placement beside them."""

from __future__ import annotations

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
    running_usd_per_hour,
    tcp_accepts,
)
from .sshkeys import authorize_on_account, ensure_keypair, key_path, public_key
from .volumes import Volumes, place_on_volume

__all__ = [
    "Candidate",
    "CreateAttempt",
    "CreatePreview",
    "CreateResult",
    "GpuPreferences",
    "Gpus",
    "PodSpec",
    "Pods",
    "Spend",
    "Volumes",
    "authorize_on_account",
    "build_request",
    "choose",
    "ensure_keypair",
    "key_path",
    "place_on_volume",
    "preferences_for",
    "public_key",
    "resolve_gpu_id",
    "running_usd_per_hour",
    "tcp_accepts",
]
