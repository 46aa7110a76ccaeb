"""The sync loop over a real sshd: a first pass, then a pass per burst of saves; ignored files cause none."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from runpod_hybrid.errors import LocalPathError
from runpod_hybrid.remote import TransferResult, sync_tree

from conftest import eventually
from sshd_pod import SshdPod


@pytest.fixture(scope="module")
def pod(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshdPod]:
    sshd = SshdPod(tmp_path_factory.mktemp("syncpod")).setup()
    yield sshd
    sshd.stop()


def test_watch_pushes_saves_and_skips_ignored_files(pod: SshdPod, tmp_path: Path) -> None:
    local = tmp_path / "project"
    local.mkdir()
    (local / ".gitignore").write_text("*.ckpt\n")
    (local / "train.py").write_text("v1")
    remote = pod.workspace / "project"
    runner = pod.runner()
    passes: list[Sequence[str]] = []
    stop = threading.Event()

    def on_sync(_result: TransferResult, changed: Sequence[str]) -> None:
        passes.append(changed)

    thread = threading.Thread(
        target=sync_tree,
        args=(runner, local, str(remote)),
        kwargs={"watch": True, "on_sync": on_sync, "stop": stop, "quiet_ms": 50},
    )
    thread.start()
    try:
        eventually(lambda: passes)
        assert passes[0] == () and (remote / "train.py").read_text() == "v1"
        (local / "big.ckpt").write_text("never uploaded")
        (local / "train.py").write_text("v2")
        eventually(lambda: (remote / "train.py").read_text() == "v2")
        (local / "data").mkdir()
        (local / "data" / "new.txt").write_text("new")
        eventually((remote / "data" / "new.txt").exists)
        assert not (remote / "big.ckpt").exists()
        assert all("big.ckpt" not in changed for changed in passes)
    finally:
        stop.set()
        thread.join(timeout=30)
        runner.close()
    assert not thread.is_alive()


def test_one_pass_without_watch_and_a_missing_dir(pod: SshdPod, tmp_path: Path) -> None:
    local = tmp_path / "once"
    local.mkdir()
    (local / "a.txt").write_text("a")
    runner = pod.runner()
    try:
        result = sync_tree(runner, local, str(pod.workspace / "once"))
        assert result.files == 1 and (pod.workspace / "once" / "a.txt").read_text() == "a"
        with pytest.raises(LocalPathError, match="not a directory"):
            sync_tree(runner, tmp_path / "nope", str(pod.workspace / "x"))
    finally:
        runner.close()
