from __future__ import annotations

import stat
from pathlib import Path

import pytest

from runpod_hybrid.pods import authorize_on_account, ensure_keypair, public_key

from conftest import ApiTarget, FakeTime

OURS = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOurTestKeyOurTestKeyOurTestKeyOurTestKey runpod-hybrid"
THEIRS = (
    "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQTheirLaptopKey user@laptop\nssh-ed25519 AAAAC3Second other@box"
)


def test_generates_a_private_ed25519_key_once(tmp_path: Path) -> None:
    key = tmp_path / "ssh" / "rph_ed25519"
    assert public_key(key) is None
    first = ensure_keypair(key)
    assert first.startswith("ssh-ed25519 ")
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(key.parent.stat().st_mode) == 0o700
    assert ensure_keypair(key) == first  # reused, not regenerated


def test_private_key_without_public_half_is_explained(tmp_path: Path) -> None:
    key = tmp_path / "rph_ed25519"
    key.write_text("not really a key")
    with pytest.raises(Exception, match="ssh-keygen -y"):
        ensure_keypair(key)


@pytest.mark.vcr
@pytest.mark.both_control_planes
def test_authorize_appends_and_keeps_existing_keys(runpod_api: ApiTarget, fake_time: FakeTime) -> None:
    state = runpod_api.seed()
    if state is not None:
        state.pub_key = THEIRS
    api = runpod_api.pod_api(fake_time)
    assert authorize_on_account(api, OURS) is True
    keys = api.account_ssh_keys()
    assert keys.splitlines() == [*THEIRS.splitlines(), OURS]
    assert authorize_on_account(api, OURS) is False  # already there: no second write
    if runpod_api.backend == "rest":
        [update] = runpod_api.sent_calls("PUT", "/account/ssh-keys")
        assert update["keys"] == [*THEIRS.splitlines(), OURS]
    else:
        [update] = runpod_api.sent_bodies("UpdateAccountSshKeys")
        assert update["variables"]["input"]["pubKey"].splitlines() == [*THEIRS.splitlines(), OURS]
