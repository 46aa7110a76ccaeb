"""Commands and files on a pod, over the system OpenSSH client (RunPod has no exec or file API).

- One multiplexed connection per pod (ControlMaster; sockets in a private 0700 dir), BatchMode, connect
  timeout and keepalives. Host keys are pinned per pod (``HostKeyAlias``) in our own known_hosts: the
  first contact is accepted, a changed key is refused with an error naming the pod.
- Non-interactive SSH sessions do not get the container's env (RUNPOD_*, user env); every command is
  prefixed to source ``/etc/rp_environment`` and re-export ``/proc/1/environ``, then the caller's env.
- argv is quoted with ``shlex``; a timeout is enforced on the pod (coreutils ``timeout`` kills the process
  group) and locally (the ssh client is killed).
- Uploads into an empty dir stream tar; later ones use rsync when both ends have it, else tar again
  (incremental through a manifest kept on the pod). Downloads always stream tar and extract with tarfile's ``data``
  filter into a staging dir, so nothing the pod sends (``..``, absolute paths, outward links, devices) can
  land outside the target.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import shutil
import subprocess
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Protocol

from .errors import HostKeyChangedError, RemoteCommandError, SshConnectionError, UnsafeArchiveError
from .ignore import walk_included
from .logs import get_logger
from .remote_session import BoundedOutput, OutputCallback, ShellSession

log = get_logger(__name__)

ProgressCallback = Callable[[int, int | None], None]

MAX_CAPTURE_BYTES = 1 << 20
_CHUNK = 1 << 16
# Grace the local side gives the pod-side `timeout` before killing the ssh client itself.
_LOCAL_GRACE_S = 10.0
_SSH_FAILURE = re.compile(
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
class ExecResult:
    exit_code: int
    stdout: str
    stderr: str
    duration_s: float
    timed_out: bool = False
    stdout_truncated: bool = False
    stderr_truncated: bool = False

    def check(self, what: str = "command") -> ExecResult:
        """Raise :class:`RemoteCommandError` unless the command exited 0."""
        if self.exit_code != 0:
            tail = self.stderr.strip()[-500:]
            raise RemoteCommandError(
                f"{what} exited {self.exit_code}"
                + (" (timed out)" if self.timed_out else "")
                + (f": {tail}" if tail else ""),
                exit_code=self.exit_code,
                stderr=self.stderr,
            )
        return self


@dataclass(frozen=True)
class TransferResult:
    method: str  # rsync | tar
    files: int
    bytes_sent: int
    duration_s: float


class CommandRunner(Protocol):
    """Where a job's commands and files go: a pod over SSH, or this machine (the local backend)."""

    def exec(
        self,
        command: str | Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        timeout_s: float | None = None,
        on_output: OutputCallback | None = None,
        stdin: bytes | None = None,
    ) -> ExecResult: ...

    def upload(
        self,
        local_path: Path,
        remote_path: str,
        *,
        exclude: Sequence[str] = (),
        delete: bool = False,
        on_progress: ProgressCallback | None = None,
    ) -> TransferResult: ...

    def download(
        self, remote_path: str, local_path: Path, *, on_progress: ProgressCallback | None = None
    ) -> TransferResult: ...


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
    sourced = shlex.quote(env.sourced_file)
    environ = shlex.quote(env.nul_separated_file)
    return (
        f"[ -r {sourced} ] && . {sourced} >/dev/null 2>&1\n"
        f"if [ -r {environ} ]; then\n"
        f"  eval \"$(tr '\\000' '\\n' 2>/dev/null < {environ} | "
        "sed -n -e \"s/'/'\\\\\\\\''/g\" -e \"s/^\\([A-Za-z_][A-Za-z0-9_]*\\)=\\(.*\\)\\$/export \\1='\\2'/p\" | "
        f"grep -v -e '^export \\({_SESSION_VARS}\\)=')\"\n"
        "fi\n"
    )


def build_script(
    command: str | Sequence[str],
    env: Mapping[str, str] | None,
    cwd: str | None,
    container_env: ContainerEnv | None,
) -> str:
    """The sh script run on the pod: container env (unless the shell already has it), then the caller's env
    and cwd, then the command. An argv is quoted word by word, so its arguments can never inject shell."""
    body = command if isinstance(command, str) else "exec " + shlex.join(command)
    lines = [container_env_prefix(container_env).rstrip("\n")] if container_env else []
    for key, value in (env or {}).items():
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise ValueError(f"invalid environment variable name {key!r}")
        lines.append(f"export {key}={shlex.quote(value)}")
    if cwd:
        lines.append(f"cd -- {shlex.quote(cwd)} || exit 125")
    lines.append(body)
    return "\n".join(lines)


def _private_dir(name: str) -> Path:
    """A 0700 dir owned by us. Unix socket paths are limited to ~104 bytes, so sockets live under /tmp."""
    path = Path(tempfile.gettempdir()) / f"{name}-{os.getuid()}"
    path.mkdir(mode=0o700, exist_ok=True)
    info = path.stat()
    if info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise RemoteCommandError(f"{path} must be a private dir of yours (mode 0700); remove it and retry.")
    return path


class _Capture(BoundedOutput):
    """Reads a pipe to its end in a thread."""

    def __init__(self, pipe: IO[bytes], name: str, on_output: OutputCallback | None, limit: int) -> None:
        super().__init__(name, on_output, limit)
        self._thread = threading.Thread(target=self._read, args=(pipe,), daemon=True)
        self._thread.start()

    def _read(self, pipe: IO[bytes]) -> None:
        while chunk := pipe.read1(_CHUNK) if hasattr(pipe, "read1") else pipe.read(_CHUNK):
            self.add(chunk)

    def text(self) -> str:
        self._thread.join()
        return super().text()


@dataclass
class _HostFacts:
    rsync: bool | None = None


_host_facts: dict[tuple[str, int], _HostFacts] = {}
_host_facts_lock = threading.Lock()


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
    _shell: ShellSession | None = field(default=None, init=False, repr=False, compare=False)
    _session_lock: threading.Lock = field(
        default_factory=threading.Lock, init=False, repr=False, compare=False
    )

    def ssh_options(self) -> list[str]:
        control_dir = _private_dir("rph-ssh")
        self.known_hosts.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        return [
            "-i",
            str(self.key_path),
            "-p",
            str(self.target.port),
            "-l",
            self.target.user,
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            f"ConnectTimeout={int(self.connect_timeout_s)}",
            "-o",
            "ServerAliveInterval=15",
            "-o",
            "ServerAliveCountMax=4",
            "-o",
            "ControlMaster=auto",
            "-o",
            f"ControlPath={control_dir}/%C",
            "-o",
            f"ControlPersist={self.control_persist_s}",
            "-o",
            f"UserKnownHostsFile={self.known_hosts}",
            "-o",
            "StrictHostKeyChecking=accept-new",
            "-o",
            f"HostKeyAlias=rph-pod-{self.target.pod_id}",
            "-o",
            "LogLevel=ERROR",
        ]

    def _ssh_argv(self, remote_command: str) -> list[str]:
        return ["ssh", *self.ssh_options(), self.target.host, remote_command]

    def _connection_error(self, stderr: str) -> RemoteCommandError:
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

    def _close_master(self) -> None:
        self.close()
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
        """Run ``command`` (an argv, or shell text) on the pod and return its exit code and output.

        Runs in the runner's shell session on the pod when it is free (see ``remote_session``), else, and
        whenever ``stdin`` is given, in an SSH session of its own."""
        if stdin is None:
            result = self._exec_in_session(build_script(command, env, cwd, None), timeout_s, on_output)
            if result is not None:
                return result
        remote = _with_timeout(build_script(command, env, cwd, self.container_env), timeout_s)
        for attempt in (1, 2):
            result, stderr_only_ssh = self._run_ssh(remote, timeout_s, on_output, stdin)
            if result.exit_code != 255 or (
                not _SSH_FAILURE.search(result.stderr) and not _HOST_KEY_CHANGED.search(result.stderr)
            ):
                return result
            error = self._connection_error(result.stderr)
            # A master whose connection died fails the next session at once: drop it and connect afresh,
            # but only when nothing ran (no output), so a command is never run twice.
            if attempt == 1 and stderr_only_ssh and not isinstance(error, HostKeyChangedError):
                log.info("remote.reconnect", pod=self.target.pod_id)
                self._close_master()
                continue
            raise error
        raise AssertionError("unreachable")

    def _session(self) -> ShellSession | None:
        """The shell session, started on first use and again after it died; None when it cannot start (the
        caller's own SSH session then reports why, or reconnects)."""
        with self._session_lock:
            if self._shell is None or not self._shell.alive:
                shell = ShellSession(
                    self._ssh_argv("exec sh -s"),
                    container_env_prefix(self.container_env),
                    ready_timeout_s=self.connect_timeout_s + 5,
                )
                if not shell.ready:
                    return None
                self._shell = shell
            return self._shell

    def close(self) -> None:
        """End the shell session (the master connection stays, for ControlPersist)."""
        with self._session_lock:
            if self._shell is not None:
                self._shell.close()
                self._shell = None

    def _exec_in_session(
        self, script: str, timeout_s: float | None, on_output: OutputCallback | None
    ) -> ExecResult | None:
        session = self._session()
        if session is None:
            return None
        run = session.run(
            _with_timeout(script, timeout_s),
            timeout_s=None if timeout_s is None else timeout_s + _LOCAL_GRACE_S,
            on_output=on_output,
            limit=self.max_capture_bytes,
        )
        if run is None:
            return None
        return _exec_result(
            run.exit_code, run.stdout, run.stderr, run.duration_s, killed=run.killed, timeout_s=timeout_s
        )

    def _run_ssh(
        self, remote: str, timeout_s: float | None, on_output: OutputCallback | None, stdin: bytes | None
    ) -> tuple[ExecResult, bool]:
        started = time.monotonic()
        process = subprocess.Popen(
            self._ssh_argv(remote),
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert process.stdout is not None and process.stderr is not None
        out = _Capture(process.stdout, "stdout", on_output, self.max_capture_bytes)
        err = _Capture(process.stderr, "stderr", on_output, self.max_capture_bytes)
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
        duration = time.monotonic() - started
        result = _exec_result(  # reads both pipes to their end
            process.returncode if not killed else 124, out, err, duration, killed=killed, timeout_s=timeout_s
        )
        return result, not out.data

    # --- files ---

    def _has_rsync(self) -> bool:
        key = (self.target.host, self.target.port)
        with _host_facts_lock:
            facts = _host_facts.setdefault(key, _HostFacts())
        if facts.rsync is None:
            facts.rsync = self.exec("command -v rsync >/dev/null 2>&1").exit_code == 0
        return bool(facts.rsync) and self.local_rsync

    def upload(
        self,
        local_path: Path,
        remote_path: str,
        *,
        exclude: Sequence[str] = (),
        delete: bool = False,
        on_progress: ProgressCallback | None = None,
    ) -> TransferResult:
        """Copy a local dir's contents (honouring .gitignore/.rphignore) or one file to ``remote_path``."""
        local_path = Path(local_path)
        if not local_path.exists():
            raise FileNotFoundError(f"nothing to upload at {local_path}")
        started = time.monotonic()
        if local_path.is_dir():
            included, excluded = walk_included(local_path, tuple(exclude))
            total = sum((local_path / rel).lstat().st_size for rel in included)
        else:
            included, excluded = [local_path.name], []
            total = local_path.stat().st_size
        # Into an empty dir one tar stream is fastest (rsync's per-file exchange buys nothing there); later
        # uploads see the files with their sizes and mtimes kept, so rsync then moves only what changed.
        rsync = self._has_rsync()
        if rsync and not (local_path.is_dir() and self._is_empty_dir(remote_path)):
            sent = self._rsync_upload(local_path, remote_path, excluded, delete, total, on_progress)
            method = "rsync"
        else:
            # The manifest serves later tar uploads only: with rsync, later uploads need none.
            sent = self._tar_upload(
                local_path, remote_path, included, total, delete, on_progress, manifest=not rsync
            )
            method = "tar"
        return TransferResult(method, len(included), sent, round(time.monotonic() - started, 3))

    def _is_empty_dir(self, remote_path: str) -> bool:
        """True when ``remote_path`` does not exist or is an empty dir."""
        quoted = shlex.quote(remote_path)
        probe = self.exec(f'[ ! -e {quoted} ] || {{ [ -d {quoted} ] && [ -z "$(ls -A {quoted})" ]; }}')
        return probe.exit_code == 0

    def _rsync_ssh_command(self) -> str:
        return shlex.join(["ssh", *self.ssh_options()])

    def _rsync_upload(
        self,
        local: Path,
        remote: str,
        excluded: list[str],
        delete: bool,
        total: int,
        on_progress: ProgressCallback | None,
    ) -> int:
        parent = remote if local.is_dir() else str(Path(remote).parent)
        self.exec(["mkdir", "-p", parent]).check(f"mkdir -p {parent}")
        with tempfile.NamedTemporaryFile("w", suffix=".rph-exclude", encoding="utf-8") as rules:
            rules.writelines(_rsync_literal("/" + rel) + "\n" for rel in excluded)
            rules.flush()
            source = f"{local}/" if local.is_dir() else str(local)
            argv = [
                "rsync",
                "-a",
                "--partial",
                "--stats",
                "--info=progress2",
                "--no-inc-recursive",
                "-e",
                self._rsync_ssh_command(),
                f"--exclude-from={rules.name}",
            ]
            if delete:
                argv.append("--delete")
            argv += [source, f"{self.target.host}:{remote}"]
            return self._run_rsync(argv, total, on_progress)

    def _run_rsync(self, argv: list[str], total: int | None, on_progress: ProgressCallback | None) -> int:
        progress = re.compile(rb"^\s*([\d,]+)\s+\d+%")
        sent = 0

        def on_output(stream: str, chunk: bytes) -> None:
            if stream == "stdout" and on_progress:
                for line in re.split(rb"[\r\n]", chunk):
                    match = progress.match(line)
                    if match:
                        on_progress(int(match.group(1).replace(b",", b"")), total)

        process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert process.stdout is not None and process.stderr is not None
        out = _Capture(process.stdout, "stdout", on_output, self.max_capture_bytes)
        err = _Capture(process.stderr, "stderr", None, self.max_capture_bytes)
        code = process.wait()
        stdout, stderr = out.text(), err.text()
        if code != 0:
            if code == 255 or _SSH_FAILURE.search(stderr):
                raise self._connection_error(stderr)
            raise RemoteCommandError(
                f"rsync failed (exit {code}): {stderr.strip()[-500:]}", exit_code=code, stderr=stderr
            )
        match = re.search(r"Total bytes sent: ([\d,]+)", stdout)
        sent = int(match.group(1).replace(",", "")) if match else 0
        return sent

    def _manifest_path(self, remote: str) -> str:
        digest = hashlib.sha256(remote.encode()).hexdigest()[:16]
        return f"$HOME/.cache/rph/uploads/{digest}.tsv"

    def _tar_upload(
        self,
        local: Path,
        remote: str,
        included: list[str],
        total: int,
        delete: bool,
        on_progress: ProgressCallback | None,
        *,
        manifest: bool,
    ) -> int:
        """``total``: the bytes of all of ``included``, for progress."""
        root = local if local.is_dir() else local.parent
        dest = remote if local.is_dir() else str(Path(remote).parent)
        if not manifest:
            return self._send_tar(root, included, dest, total, on_progress)
        entries = _manifest(root, included)
        manifest_path = self._manifest_path(remote)
        old = self.exec(f'cat "{manifest_path}" 2>/dev/null || true').stdout
        previous = dict(line.split("\t", 1) for line in old.splitlines() if "\t" in line)
        changed = [rel for rel, entry in entries.items() if previous.get(rel) != entry]
        gone = [rel for rel in previous if rel not in entries] if delete else []
        changed_total = sum(int(entries[rel].split("\t")[1]) for rel in changed)
        sent = self._send_tar(root, changed, dest, changed_total, on_progress) if changed else 0
        if gone:
            self.exec(["rm", "-rf", "--", *(f"{dest}/{rel}" for rel in gone)]).check("removing deleted files")
        # Without delete, files gone locally stay on the pod: keep them in the manifest so a later
        # upload with delete=True still removes them.
        kept = {} if delete else {rel: entry for rel, entry in previous.items() if rel not in entries}
        body = "".join(f"{rel}\t{entry}\n" for rel, entry in {**kept, **entries}.items()).encode()
        self.exec(f'mkdir -p "$(dirname "{manifest_path}")" && cat > "{manifest_path}"', stdin=body).check(
            "saving manifest"
        )
        return sent

    def _send_tar(
        self, root: Path, members: list[str], dest: str, total: int, on_progress: ProgressCallback | None
    ) -> int:
        """Stream ``members`` of ``root`` (``total`` bytes) as one tar into ``dest`` on the pod; returns the
        bytes sent."""
        sent = 0
        with tempfile.NamedTemporaryFile("wb", suffix=".rph-list") as listing:
            listing.write(b"\0".join(os.fsencode(rel) for rel in members) + b"\0")
            listing.flush()
            pack = subprocess.Popen(
                ["tar", "-C", str(root), "-cf", "-", "--no-recursion", "--null", "-T", listing.name],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            assert pack.stdout is not None
            unpack = subprocess.Popen(
                self._ssh_argv(f"mkdir -p {shlex.quote(dest)} && exec tar -C {shlex.quote(dest)} -xpf -"),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            assert unpack.stdin is not None and unpack.stdout is not None and unpack.stderr is not None
            unpack_out = _Capture(unpack.stdout, "stdout", None, self.max_capture_bytes)
            unpack_err = _Capture(unpack.stderr, "stderr", None, self.max_capture_bytes)
            try:
                while chunk := pack.stdout.read(_CHUNK):
                    unpack.stdin.write(chunk)
                    sent += len(chunk)
                    if on_progress:
                        on_progress(min(sent, total), total)
                unpack.stdin.close()
            except BrokenPipeError:
                pack.kill()
            unpack.wait()
            unpack_out.text()
            pack_err = pack.stderr.read() if pack.stderr else b""
            if pack.wait() != 0 or unpack.returncode != 0:
                stderr = pack_err.decode(errors="replace") + unpack_err.text()
                if unpack.returncode == 255:
                    raise self._connection_error(stderr)
                raise RemoteCommandError(f"tar upload failed: {stderr.strip()[-500:]}", stderr=stderr)
        return sent

    def download(
        self, remote_path: str, local_path: Path, *, on_progress: ProgressCallback | None = None
    ) -> TransferResult:
        """Copy ``remote_path`` (a file or a dir) to ``local_path``, path-safely."""
        started = time.monotonic()
        local_path = Path(local_path)
        quoted = shlex.quote(remote_path)
        remote = (
            f"if [ -d {quoted} ]; then printf 'D\\n'; exec tar -C {quoted} -cf - .; "
            f'elif [ -e {quoted} ]; then printf \'F\\n\'; cd "$(dirname {quoted})" && exec tar -cf - "$(basename {quoted})"; '
            f"else echo 'no such file or directory: {remote_path}' >&2; exit 2; fi"
        )
        process = subprocess.Popen(self._ssh_argv(remote), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert process.stdout is not None and process.stderr is not None
        err = _Capture(process.stderr, "stderr", None, self.max_capture_bytes)
        kind = process.stdout.readline().strip()
        counter = _CountingReader(process.stdout, on_progress)
        files = 0
        try:
            if kind in (b"D", b"F"):
                files = extract_safely(counter, local_path, single_file=kind == b"F")
        finally:
            process.stdout.close()
            code = process.wait()
        stderr = err.text()
        if code != 0 or kind not in (b"D", b"F"):
            if code == 255:
                raise self._connection_error(stderr)
            raise RemoteCommandError(
                f"download of {remote_path} failed: {stderr.strip()[-500:]}", exit_code=code, stderr=stderr
            )
        return TransferResult("tar", files, counter.count, round(time.monotonic() - started, 3))


def _with_timeout(script: str, timeout_s: float | None) -> str:
    """``script`` as one sh command, killed on the pod (with its process group) after ``timeout_s``."""
    quoted = shlex.quote(script)
    if timeout_s is None:
        return f"exec sh -c {quoted}"
    seconds = max(1, int(timeout_s + 0.999))
    return (
        f"if command -v timeout >/dev/null 2>&1; then exec timeout -k 5 {seconds} sh -c {quoted}; "
        f"else exec sh -c {quoted}; fi"
    )


def _exec_result(
    exit_code: int,
    out: BoundedOutput,
    err: BoundedOutput,
    duration_s: float,
    *,
    killed: bool,
    timeout_s: float | None,
) -> ExecResult:
    timed_out = killed or (timeout_s is not None and exit_code in (124, 137) and duration_s >= timeout_s)
    return ExecResult(
        exit_code, out.text(), err.text(), round(duration_s, 3), timed_out, out.truncated, err.truncated
    )


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


def _rsync_literal(path: str) -> str:
    """An rsync exclude pattern matching exactly ``path`` (wildcard characters escaped)."""
    if any(c in path for c in "*?["):
        return re.sub(r"([*?\[\\])", r"\\\1", path)
    return path


def _manifest(root: Path, included: list[str]) -> dict[str, str]:
    """rel path -> "type<TAB>size<TAB>mtime_ns<TAB>mode[<TAB>link target]" for change detection."""
    entries: dict[str, str] = {}
    for rel in included:
        info = (root / rel).lstat()
        if os.path.islink(root / rel):
            entries[rel] = f"l\t0\t{info.st_mtime_ns}\t0\t{os.readlink(root / rel)}"
        elif (root / rel).is_dir():
            entries[rel] = f"d\t0\t0\t{info.st_mode & 0o7777}"
        else:
            entries[rel] = f"f\t{info.st_size}\t{info.st_mtime_ns}\t{info.st_mode & 0o7777}"
    return entries


class _CountingReader:
    def __init__(self, raw: IO[bytes], on_progress: ProgressCallback | None) -> None:
        self._raw = raw
        self._on_progress = on_progress
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        self.count += len(data)
        if self._on_progress and data:
            self._on_progress(self.count, None)
        return data


def extract_safely(stream: object, target: Path, *, single_file: bool = False) -> int:
    """Extract a tar stream into ``target`` through a staging dir beside it, with tarfile's ``data`` filter:
    absolute paths, ``..``, links pointing outside, and device files are refused before anything reaches
    ``target``. ``single_file`` means the archive holds one file that becomes ``target`` itself."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".rph-download-", dir=target.parent))
    try:
        files = 0
        try:
            with tarfile.open(fileobj=stream, mode="r|") as archive:  # type: ignore[call-overload]
                for member in archive:
                    archive.extract(member, staging, filter="data")
                    files += member.isfile()
        except (tarfile.FilterError, tarfile.ReadError) as exc:
            raise UnsafeArchiveError(
                f"Refused the download into {target}: {exc}. Nothing was written there.", stderr=str(exc)
            ) from exc
        if single_file:
            [only] = list(staging.iterdir())
            os.replace(only, target)
        else:
            _merge_into(staging, target)
        return files
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _merge_into(source: Path, target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for entry in source.iterdir():
        dest = target / entry.name
        if entry.is_dir() and not entry.is_symlink() and dest.is_dir() and not dest.is_symlink():
            _merge_into(entry, dest)
        else:
            if dest.is_dir() and not dest.is_symlink():
                shutil.rmtree(dest)
            os.replace(entry, dest)
