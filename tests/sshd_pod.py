"""A real OpenSSH sshd on 127.0.0.1 playing a pod's SSH side (Debian openssh-server, installed by .ci/run)."""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from runpod_hybrid.remote import ContainerEnv, SshRunner, SshTarget

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)


@dataclass
class SshdPod:
    base: Path
    port: int = field(default_factory=_free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def client_key(self) -> Path:
        return self.base / "client_ed25519"

    @property
    def workspace(self) -> Path:
        """A temp dir that plays /workspace."""
        return self.base / "workspace"

    @property
    def container_env(self) -> ContainerEnv:
        return ContainerEnv(str(self.base / "rp_environment"), str(self.base / "proc1_environ"))

    def setup(self) -> SshdPod:
        self.base.mkdir(parents=True, exist_ok=True)
        self.workspace.mkdir(exist_ok=True)
        _keygen(self.client_key)
        (self.base / "authorized_keys").write_text((self.base / "client_ed25519.pub").read_text())
        self.new_host_key()
        if os.getuid() == 0:
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation dir
        self.start()
        return self

    def new_host_key(self) -> None:
        for suffix in ("", ".pub"):
            (self.base / f"host_ed25519{suffix}").unlink(missing_ok=True)
        _keygen(self.base / "host_ed25519")

    def start(self) -> None:
        config = self.base / "sshd_config"
        config.write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {self.base / 'host_ed25519'}\n"
            f"PidFile {self.base / 'sshd.pid'}\nAuthorizedKeysFile {self.base / 'authorized_keys'}\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
            "PermitRootLogin yes\nMaxSessions 100\nMaxStartups 100:30:200\nLogLevel ERROR\n"
            "Subsystem sftp internal-sftp\n"
        )
        with open(self.base / "sshd.log", "ab") as log:
            self.process = subprocess.Popen(
                [SSHD, "-D", "-e", "-f", str(config)], start_new_session=True, stderr=log
            )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.02)  # waiting for a real daemon to listen, not pacing a test
        raise RuntimeError(f"sshd did not start: {(self.base / 'sshd.log').read_text()}")

    def stop(self) -> None:
        """Stop sshd and every session it serves: connections drop. (Per-connection sshd processes run in
        sessions of their own, so killing the listener's process group alone would leave them serving.)"""
        if self.process is not None:
            self.drop_connections()
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
            self.process = None

    def drop_connections(self) -> None:
        """Kill the per-connection sshd processes, as a network drop would, keeping the listener."""
        assert self.process is not None
        subprocess.run(["pkill", "-KILL", "-P", str(self.process.pid)], check=False)

    def runner(self, pod_id: str = "sshdpod", **kwargs: object) -> SshRunner:
        target = SshTarget("127.0.0.1", self.port, pod_id, user=getpass.getuser())
        return SshRunner(
            target, self.client_key, self.base / "known_hosts", container_env=self.container_env, **kwargs
        )  # type: ignore[arg-type]
