"""A real OpenSSH sshd on 127.0.0.1 playing a pod's SSH side (Debian openssh-server, installed by .ci/run).

Beside sshd, the "pod" has what a RunPod container gives: a container env (``proc1_environ``, what PID 1's env
is on a pod), a ``runpodctl`` stand-in on its PATH that calls the API stand-in with the pod's own key, and a
container restart: every process of the container dies at once, files on the workspace stay, and the start
command runs again."""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runpod_hybrid.remote import ContainerEnv, SshRunner, SshTarget

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"

# `runpodctl stop pod ID`, as the real one does it on a pod: RunPod's API, with the pod's key from its env.
RUNPODCTL = """#!{python}
import json, os, sys, urllib.request
if sys.argv[1:3] != ["stop", "pod"] or len(sys.argv) != 4:
    sys.exit("runpodctl stand-in: only `runpodctl stop pod POD_ID`")
query = "mutation StopPod($input: PodStopInput!) {{ podStop(input: $input) {{ id desiredStatus }} }}"
body = {{"operationName": "StopPod", "query": query, "variables": {{"input": {{"podId": sys.argv[3]}}}}}}
request = urllib.request.Request(
    os.environ["RPH_GRAPHQL_URL"],
    data=json.dumps(body).encode(),
    headers={{"Authorization": "Bearer " + os.environ["RUNPOD_API_KEY"], "Content-Type": "application/json"}},
)
try:
    answer = json.load(urllib.request.urlopen(request, timeout=30))
except OSError as exc:
    sys.exit(f"Error: {{exc}}")
if answer.get("errors"):
    sys.exit("Error: " + answer["errors"][0]["message"])
print('pod "' + sys.argv[3] + '" stopped')
"""


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
        sessions of their own, so killing the listener's process group alone would leave them serving.)
        Container processes (a watchdog) end too."""
        self.kill_container_processes()
        if self.process is not None:
            self.drop_connections()
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
            self.process = None

    def drop_connections(self) -> None:
        """Kill the per-connection sshd processes, as a network drop would, keeping the listener."""
        assert self.process is not None
        subprocess.run(["pkill", "-KILL", "-P", str(self.process.pid)], check=False)

    # --- the container around sshd ---

    def pod_runtime(self) -> dict[str, Any]:
        """The ``runtime`` RunPod reports for a pod whose port 22 this sshd is (a stand-in pod it plays)."""
        port = {
            "ip": "127.0.0.1",
            "isIpPublic": True,
            "privatePort": 22,
            "publicPort": self.port,
            "type": "tcp",
        }
        return {"uptimeInSeconds": 5, "gpus": [], "container": None, "ports": [port]}

    def set_container_env(self, env: Mapping[str, str]) -> None:
        """PID 1's env, which commands over SSH get back (RUNPOD_POD_ID, RUNPOD_API_KEY, PATH...)."""
        (self.base / "proc1_environ").write_bytes(
            b"".join(f"{k}={v}".encode() + b"\0" for k, v in env.items())
        )

    def container_variables(self) -> dict[str, str]:
        raw = (self.base / "proc1_environ").read_bytes()
        return dict(item.decode().split("=", 1) for item in raw.split(b"\0") if b"=" in item)

    def install_runpodctl(self) -> Path:
        """A `runpodctl` stand-in; returns the dir to put on the pod's PATH."""
        bin_dir = self.base / "bin"
        bin_dir.mkdir(exist_ok=True)
        tool = bin_dir / "runpodctl"
        tool.write_text(RUNPODCTL.format(python=sys.executable))
        tool.chmod(0o755)
        return bin_dir

    def container_processes(self) -> list[int]:
        """Processes of the container: those whose command line names this pod's dir, sshd aside."""
        listener = self.process.pid if self.process else None
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) in (listener, os.getpid()):
                continue
            with contextlib.suppress(OSError):
                if str(self.base).encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
        return found

    def kill_container_processes(self) -> None:
        """Every container process and its process group (a watchdog's sleep) dies at once."""
        for pid in self.container_processes():
            with contextlib.suppress(ProcessLookupError):
                group = os.getpgid(pid)
                if group != os.getpgrp():
                    os.killpg(group, signal.SIGKILL)
                else:
                    os.kill(pid, signal.SIGKILL)

    def restart_container(self, start_command: str | None = None) -> None:
        """A container restart: its processes die, the workspace stays, then ``start_command`` (what RunPod
        runs as the container's command) runs again with the container env."""
        self.kill_container_processes()
        if start_command is not None:
            subprocess.run(
                ["sh", "-c", start_command],
                env={**os.environ, **self.container_variables()},
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                check=True,
                timeout=60,
            )

    def runner(self, pod_id: str = "sshdpod", **kwargs: object) -> SshRunner:
        target = SshTarget("127.0.0.1", self.port, pod_id, user=getpass.getuser())
        return SshRunner(
            target, self.client_key, self.base / "known_hosts", container_env=self.container_env, **kwargs
        )  # type: ignore[arg-type]
