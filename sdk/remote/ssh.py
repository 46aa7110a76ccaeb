"""Commands on a pod over the system OpenSSH client (RunPod has no exec or file API).

- One multiplexed connection per pod (ControlMaster/ControlPersist, sockets in a private 0700 dir): every
  process, CLI call and MCP tool on this machine reuses the same warm connection, so a command costs a
  channel, not a handshake. BatchMode, a connect timeout and keepalives.
- Host keys are pinned per pod (``HostKeyAlias``) in our own known_hosts: the first contact is accepted, a
  changed key is refused with an error naming the pod.
- Non-interactive SSH sessions do not get the container's env (RUNPOD_*, user env); every command is
  prefixed to source ``/etc/rp_environment`` and re-export ``/proc/1/environ``, then the caller's env.
- Every remote command is built from quoted words (``shell.py``); a timeout is enforced on
  the pod (coreutils ``timeout`` kills the process group) and locally (the ssh client is killed).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from runpod_hybrid._logging import get_logger
from runpod_hybrid.errors import HostKeyChangedError, RemoteCommandError, SshConnectionError

from . import transfer
from .runner import (
    MAX_CAPTURE_BYTES,
    ExecResult,
    OutputCallback,
    PipeCapture,
    ProgressCallback,
    TransferResult,
)
from .shell import assignment, script, words

log = get_logger(__name__)

# Grace the local side gives the pod-side `timeout` before killing the ssh client itself.
_LOCAL_GRACE_S = 10.0
SSH_FAILURE = re.compile(
    r"ssh: |Connection (refused|closed|reset|timed out)|Permission denied|kex_exchange_identification|"
    r"Could not resolve hostname|client_loop: |Broken pipe|mux_client|Control socket",
)
_HOST_KEY_CHANGED = re.compile(r"REMOTE HOST IDENTIFICATION HAS CHANGED|Host key verification failed")


@dataclass(frozen=True)
class SshTarget:
    """Where a pod's sshd listens, and the pod id its host key is pinned under."""

    host: str
    port: int
    pod_id: str
    user: str = "root"


@dataclass(frozen=True)
class ContainerEnv:
    """Where the pod keeps the container env a non-interactive SSH session lacks."""

    sourced_file: str = "/etc/rp_environment"
    nul_separated_file: str = "/proc/1/environ"


# Variables of PID 1 that must not override the SSH session's own.
_SESSION_VARS = r"HOME\|PWD\|OLDPWD\|SHLVL\|HOSTNAME\|TERM\|_\|USER\|LOGNAME\|MAIL\|SHELL\|SSH_[A-Z_]*"


def container_env_prefix(env: ContainerEnv) -> str:
    """POSIX sh that brings the container env into this session. Values of PID 1's env are re-quoted with
    single quotes (multi-line values keep only their first line)."""
    template = (
        "[ -r {sourced} ] && . {sourced} >/dev/null 2>&1\n"
        "if [ -r {environ} ]; then\n"
        "  eval \"$(tr '\\000' '\\n' 2>/dev/null < {environ} | "
        "sed -n -e \"s/'/'\\\\\\\\''/g\" -e \"s/^\\([A-Za-z_][A-Za-z0-9_]*\\)=\\(.*\\)\\$/export \\1='\\2'/p\" | "
        f"grep -v -e '^export \\({_SESSION_VARS}\\)=')\"\n"
        "fi\n"
    )
    return script(template, sourced=env.sourced_file, environ=env.nul_separated_file)


def build_script(
    command: str | Sequence[str],
    env: Mapping[str, str] | None,
    cwd: str | None,
    container_env: ContainerEnv | None,
) -> str:
    """The sh script run on the pod: container env, then the caller's env and cwd, then the command. An argv
    is quoted word by word, so none of its arguments can inject shell; a string is the caller's own shell."""
    body = command if isinstance(command, str) else "exec " + words(*command)
    lines = [container_env_prefix(container_env).rstrip("\n")] if container_env else []
    lines += ["export " + assignment(key, value) for key, value in (env or {}).items()]
    if cwd:
        lines.append(script("cd -- {cwd} || exit 125", cwd=cwd))
    lines.append(body)
    return "\n".join(lines)


def with_timeout(body: str, timeout_s: float | None) -> str:
    """``body`` as one sh command, killed on the pod (with its process group) after ``timeout_s``."""
    if timeout_s is None:
        return script("exec sh -c {body}", body=body)
    return script(
        "if command -v timeout >/dev/null 2>&1; then exec timeout -k 5 {seconds} sh -c {body}; "
        "else exec sh -c {body}; fi",
        seconds=max(1, int(timeout_s + 0.999)),
        body=body,
    )


def _private_dir(name: str) -> Path:
    """A 0700 dir owned by us. Unix socket paths are limited to ~104 bytes, so sockets live under /tmp."""
    path = Path(tempfile.gettempdir()) / f"{name}-{os.getuid()}"
    path.mkdir(mode=0o700, exist_ok=True)
    info = path.stat()
    if info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise RemoteCommandError(f"{path} must be a private dir of yours (mode 0700); remove it and retry.")
    return path


@dataclass
class SshRunner:
    """Runs commands and moves files on one pod over SSH."""

    target: SshTarget
    key_path: Path
    known_hosts: Path
    connect_timeout_s: float = 15.0
    control_persist_s: int = 600
    container_env: ContainerEnv = field(default_factory=ContainerEnv)
    max_capture_bytes: int = MAX_CAPTURE_BYTES
    local_rsync: bool = field(default_factory=lambda: shutil.which("rsync") is not None)

    def ssh_options(self) -> list[str]:
        """The ssh client options for this pod: key, port, user, multiplexing, pinned host key."""
        control_dir = _private_dir("rph-ssh")
        self.known_hosts.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        options = {
            "BatchMode": "yes",
            "IdentitiesOnly": "yes",
            "ConnectTimeout": str(int(self.connect_timeout_s)),
            "ServerAliveInterval": "15",
            "ServerAliveCountMax": "4",
            "ControlMaster": "auto",
            "ControlPath": f"{control_dir}/%C",
            "ControlPersist": str(self.control_persist_s),
            "UserKnownHostsFile": str(self.known_hosts),
            "StrictHostKeyChecking": "accept-new",
            "HostKeyAlias": f"rph-pod-{self.target.pod_id}",
            "LogLevel": "ERROR",
        }
        argv = ["-i", str(self.key_path), "-p", str(self.target.port), "-l", self.target.user]
        for name, value in options.items():
            argv += ["-o", f"{name}={value}"]
        return argv

    def ssh_argv(self, remote_command: str) -> list[str]:
        """The ssh client's argv to run ``remote_command`` (already quoted sh) on the pod."""
        return ["ssh", *self.ssh_options(), self.target.host, remote_command]

    def connection_error(self, stderr: str) -> RemoteCommandError:
        """The error for an ssh failure with this ``stderr``: a changed host key, or no connection."""
        where = f"pod {self.target.pod_id} ({self.target.user}@{self.target.host}:{self.target.port})"
        if _HOST_KEY_CHANGED.search(stderr):
            return HostKeyChangedError(
                f"The SSH host key of {where} differs from the one pinned at first contact. If you restarted or "
                f"recreated the pod, its container made a new key: run `rph pods forget-host-key "
                f"{self.target.pod_id}` and retry. Otherwise someone may be intercepting the connection.",
                exit_code=255,
                stderr=stderr,
            )
        return SshConnectionError(
            f"Could not reach {where} over SSH: {stderr.strip()[-300:] or 'no detail'}. Check the pod is RUNNING "
            "(`rph pods wait`), exposes 22/tcp with a public IP, and has our PUBLIC_KEY.",
            exit_code=255,
            stderr=stderr,
        )

    def close(self) -> None:
        """End the multiplexed master connection (a later command opens a new one)."""
        subprocess.run(
            ["ssh", *self.ssh_options(), "-O", "exit", self.target.host],
            capture_output=True,
            check=False,
            timeout=10,
        )

    def exec(
        self,
        command: str | Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        timeout_s: float | None = None,
        on_output: OutputCallback | None = None,
        stdin: bytes | None = None,
    ) -> ExecResult:
        """Run ``command`` (an argv, or shell text) on the pod and return its exit code and output."""
        remote = with_timeout(build_script(command, env, cwd, self.container_env), timeout_s)
        for attempt in (1, 2):
            result, nothing_ran = self._run_ssh(remote, timeout_s, on_output, stdin)
            if result.exit_code != 255 or (
                not SSH_FAILURE.search(result.stderr) and not _HOST_KEY_CHANGED.search(result.stderr)
            ):
                return result
            error = self.connection_error(result.stderr)
            # A master whose connection died fails the next session at once: drop it and connect afresh,
            # but only when nothing ran (no output), so a command is never run twice.
            if attempt == 1 and nothing_ran and not isinstance(error, HostKeyChangedError):
                log.info("remote.reconnect", pod=self.target.pod_id)
                self.close()
                continue
            raise error
        raise AssertionError("unreachable")

    def _run_ssh(
        self, remote: str, timeout_s: float | None, on_output: OutputCallback | None, stdin: bytes | None
    ) -> tuple[ExecResult, bool]:
        started = time.monotonic()
        process = subprocess.Popen(
            self.ssh_argv(remote),
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert process.stdout is not None and process.stderr is not None
        out = PipeCapture(process.stdout, "stdout", on_output, self.max_capture_bytes)
        err = PipeCapture(process.stderr, "stderr", on_output, self.max_capture_bytes)
        if stdin is not None:
            assert process.stdin is not None
            try:
                process.stdin.write(stdin)
                process.stdin.close()
            except BrokenPipeError:
                pass
        killed = False
        try:
            process.wait(timeout=None if timeout_s is None else timeout_s + _LOCAL_GRACE_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            killed = True
        duration_s = time.monotonic() - started
        exit_code = 124 if killed else process.returncode
        stdout, stderr = out.text(), err.text()
        timed_out = killed or (timeout_s is not None and exit_code in (124, 137) and duration_s >= timeout_s)
        result = ExecResult(
            exit_code, stdout, stderr, round(duration_s, 3), timed_out, out.truncated, err.truncated
        )
        return result, not out.data

    def upload(
        self,
        local_path: Path,
        remote_path: str,
        *,
        exclude: Sequence[str] = (),
        delete: bool = False,
        on_progress: ProgressCallback | None = None,
    ) -> TransferResult:
        """Copy a local dir's contents (honouring .gitignore/.rphignore) or one file to ``remote_path``:
        rsync when both ends have it (only what changed moves), else a tar stream."""
        return transfer.upload(self, Path(local_path), remote_path, tuple(exclude), delete, on_progress)

    def download(
        self, remote_path: str, local_path: Path, *, on_progress: ProgressCallback | None = None
    ) -> TransferResult:
        """Copy ``remote_path`` (a file or a dir) to ``local_path``, path-safely."""
        return transfer.download(self, remote_path, Path(local_path), on_progress)


def forget_host_key(known_hosts: Path, pod_id: str) -> bool:
    """Drop the pinned host key of a pod (after a legitimate restart). True when one was removed."""
    if not known_hosts.exists():
        return False
    result = subprocess.run(
        ["ssh-keygen", "-R", f"rph-pod-{pod_id}", "-f", str(known_hosts)],
        capture_output=True,
        text=True,
        check=False,
    )
    return result.returncode == 0 and "not found" not in result.stderr + result.stdout
