"""The SSH key runpod-hybrid uses for pods: generated once (ed25519, 0600) when none exists."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from runpod_hybrid.errors import ConfigError

if TYPE_CHECKING:
    from runpod_hybrid.controlplane import PodApi


def key_path(configured: str) -> Path:
    return Path(configured).expanduser()


def public_key(private_key: Path) -> str | None:
    """The public half (``<key>.pub``), or None when the key does not exist yet."""
    pub = private_key.with_name(private_key.name + ".pub")
    try:
        return pub.read_text(encoding="utf-8").strip() or None
    except FileNotFoundError:
        return None


def ensure_keypair(private_key: Path) -> str:
    """Return the public key, generating the pair with ssh-keygen first if it is missing."""
    existing = public_key(private_key)
    if existing:
        return existing
    if private_key.exists():
        raise ConfigError(
            f"{private_key} exists but {private_key}.pub does not; recreate it with: "
            f"ssh-keygen -y -f {private_key} > {private_key}.pub"
        )
    private_key.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "runpod-hybrid", "-f", str(private_key)],
            check=True,
            capture_output=True,
            text=True,
        )
    except FileNotFoundError as exc:
        raise ConfigError(
            "ssh-keygen was not found: install OpenSSH (e.g. apt-get install openssh-client)."
        ) from exc
    except subprocess.CalledProcessError as exc:
        raise ConfigError(f"ssh-keygen failed to create {private_key}: {exc.stderr.strip()}") from exc
    private_key.chmod(0o600)
    key = public_key(private_key)
    assert key is not None
    return key


def authorize_on_account(api: PodApi, key: str) -> bool:
    """Add ``key`` to the account's SSH keys (RunPod writes them into new pods). RunPod's mutation replaces
    the whole list, so the user's existing keys are read first and kept. False when it was there already."""
    current = api.account_ssh_keys()
    material = key.split()[:2]
    if any(line.split()[:2] == material for line in current.splitlines()):
        return False
    api.set_account_ssh_keys(
        (current.rstrip("\n") + "\n" + key).strip("\n") + "\n" if current.strip() else key + "\n"
    )
    return True
