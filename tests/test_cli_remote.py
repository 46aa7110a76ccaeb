"""`rph exec|upload|download` end to end: the CLI resolves the pod through the (stand-in) API and reaches
a real sshd on loopback through the SSH mapping the API reports."""

from __future__ import annotations

import getpass
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from runpod_hybrid.cli import main

from conftest import SENTINEL_KEY
from runpod_standin import StandinServer
from sshd_pod import SshdPod

pytestmark = pytest.mark.skipif(getpass.getuser() != "root", reason="RunPod pods are entered as root")


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshdPod]:
    pod = SshdPod(tmp_path_factory.mktemp("clipod")).setup()
    yield pod
    pod.stop()


@pytest.fixture
def pod_id(standin: StandinServer, sshd: SshdPod, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    runtime = {
        "uptimeInSeconds": 10,
        "gpus": [],
        "container": None,
        "ports": [
            {"ip": "127.0.0.1", "isIpPublic": True, "privatePort": 22, "publicPort": sshd.port, "type": "tcp"}
        ],
    }
    pod = standin.state.add_pod(id="clipod0000001", runtime=runtime, ports="22/tcp")
    settings = tmp_path / "settings.toml"
    settings.write_text(f'ssh_key_path = "{sshd.client_key}"\n')
    monkeypatch.setenv("RPH_CONFIG", str(settings))
    monkeypatch.setenv("RPH_GRAPHQL_URL", standin.url)
    monkeypatch.setenv("RUNPOD_API_KEY", SENTINEL_KEY)
    return str(pod["id"])


def test_exec_streams_and_exits_with_the_remote_code(pod_id: str, capfd: pytest.CaptureFixture[str]) -> None:
    code = main(["exec", pod_id, "--", "sh", "-c", "echo hello; echo oops >&2; exit 7"])
    out, err = capfd.readouterr()
    assert code == 7
    assert out == "hello\n" and "oops" in err
    assert SENTINEL_KEY not in out + err


def test_exec_json_summary(pod_id: str, capfd: pytest.CaptureFixture[str]) -> None:
    code = main(
        ["exec", pod_id, "--json", "--env", "GREETING=hi there", "--", "sh", "-c", 'echo "$GREETING"']
    )
    out, _ = capfd.readouterr()
    assert code == 0
    assert json.loads(out)["stdout"] == "hi there\n"


def test_upload_then_download(
    pod_id: str, sshd: SshdPod, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "project"
    (source / "src").mkdir(parents=True)
    (source / "src" / "train.py").write_text("print('train')\n")
    (source / ".gitignore").write_text("*.ckpt\n")
    (source / "big.ckpt").write_text("skip me")
    remote = str(sshd.workspace / "project")
    assert main(["upload", pod_id, str(source), remote, "--json"]) == 0
    summary = json.loads(capfd.readouterr().out)
    assert summary["files"] == 3 and summary["method"] == "rsync"  # both ends have rsync
    assert not (Path(remote) / "big.ckpt").exists()
    assert main(["download", pod_id, f"{remote}/src", str(tmp_path / "back")]) == 0
    assert (tmp_path / "back" / "train.py").read_text() == "print('train')\n"
    assert "downloaded 1 file(s)" in capfd.readouterr().out


def test_exec_on_a_pod_without_ssh_mapping(
    standin: StandinServer, pod_id: str, capfd: pytest.CaptureFixture[str]
) -> None:
    standin.state.add_pod(id="nosshpod000001", runtime=None)
    code = main(["exec", "nosshpod000001", "--", "true"])
    assert code == 1
    assert "rph pods wait" in capfd.readouterr().err


def test_plain_http_api_url_is_refused(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RUNPOD_API_KEY", SENTINEL_KEY)
    monkeypatch.setenv("RPH_GRAPHQL_URL", "http://api.example.com/graphql")
    assert main(["pods", "list"]) == 1
    assert "unencrypted" in capfd.readouterr().err


def test_endpoint_deploy_list_delete(
    standin: StandinServer, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RPH_GRAPHQL_URL", standin.url)
    monkeypatch.setenv("RUNPOD_API_KEY", SENTINEL_KEY)
    assert (
        main(
            [
                "--json",
                "endpoint",
                "deploy",
                "--name",
                "emb",
                "--image",
                "me/w:1",
                "--gpu",
                "AMPERE_16",
                "--workers-max",
                "2",
                "--env",
                "RPH_TASKS=my_tasks",
            ]
        )
        == 0
    )
    deployed = json.loads(capfd.readouterr().out)
    assert deployed["name"] == "emb" and deployed["gpu_pools"] == ["AMPERE_16"]
    assert main(["endpoint", "list"]) == 0
    assert "emb" in capfd.readouterr().out
    assert main(["endpoint", "delete", "emb"]) == 0
    assert standin.state.endpoints == {} and standin.state.templates == {}
    assert (
        main(["endpoint", "deploy", "--name", "x", "--image", "i", "--gpu", "RTX_4090", "--workers-max", "1"])
        == 1
    )
    assert "GPU pools must be among" in capfd.readouterr().err
