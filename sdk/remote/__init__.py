"""Commands and files: the :class:`CommandRunner` seam, SSH to a pod (multiplexed OpenSSH, rsync/tar) and
this machine (the local backend), and the ignore rules that choose what to upload."""

from __future__ import annotations

from .ignore import IgnoreRules, walk_included
from .local import LocalRunner
from .runner import CommandRunner, ExecResult, OutputCallback, ProgressCallback, TransferResult
from .ssh import ContainerEnv, SshRunner, SshTarget, build_script, forget_host_key
from .sync import sync_tree
from .transfer import extract_safely

__all__ = [
    "CommandRunner",
    "ContainerEnv",
    "ExecResult",
    "IgnoreRules",
    "LocalRunner",
    "OutputCallback",
    "ProgressCallback",
    "SshRunner",
    "SshTarget",
    "TransferResult",
    "build_script",
    "extract_safely",
    "forget_host_key",
    "sync_tree",
    "walk_included",
]
