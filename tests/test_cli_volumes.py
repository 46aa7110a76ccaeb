"""`rph volumes`, placement beside a volume from the CLI, and `rph config show` naming the API of each operation,
against the live stand-ins."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runpod_hybrid.cli import main

from conftest import SENTINEL_KEY
from rest_standin import RestStandinServer
from runpod_standin import StandinServer


@pytest.fixture
def keyed_cli(
    standin: StandinServer, rest_standin: RestStandinServer, monkeypatch: pytest.MonkeyPatch
) -> StandinServer:
    monkeypatch.setenv("RUNPOD_API_KEY", SENTINEL_KEY)
    monkeypatch.setenv("RPH_GRAPHQL_URL", standin.url)
    monkeypatch.setenv("RPH_REST_URL", rest_standin.url)
    return standin


def rph(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_volumes_create_list_place_and_delete(
    keyed_cli: StandinServer, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = rph(
        capsys, "--json", "volumes", "create", "data", "--size-gb", "20", "--data-center", "US-KS-2"
    )
    assert code == 0
    volume = json.loads(out)
    assert (volume["size_gb"], volume["data_center_id"]) == (20, "US-KS-2")
    code, out, _ = rph(capsys, "volumes", "list")
    assert code == 0 and volume["id"] in out and "US-KS-2" in out
    code, _, err = rph(
        capsys,
        "pods",
        "create",
        "--gpu",
        "NVIDIA GeForce RTX 4090",
        "--network-volume",
        "data",
        "--data-center",
        "EU-RO-1",
    )
    assert code == 1 and "in US-KS-2" in err and "Your network volumes" in err
    assert keyed_cli.state.calls_of("CreateOnDemandPod") == []
    code, _, err = rph(capsys, "volumes", "delete", "data")
    assert code == 1 and "--yes" in err and keyed_cli.state.network_volumes
    code, out, _ = rph(capsys, "volumes", "delete", "data", "--yes")
    assert code == 0 and keyed_cli.state.network_volumes == {}


def test_a_pod_on_a_volume_from_the_cli_lands_in_its_data_centre(
    keyed_cli: StandinServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert rph(capsys, "volumes", "create", "ckpt", "--size-gb", "10", "--data-center", "US-KS-2")[0] == 0
    code, out, _ = rph(
        capsys, "--json", "pods", "create", "--gpu", "NVIDIA GeForce RTX 4090", "--network-volume", "ckpt"
    )
    assert code == 0
    assert json.loads(out)["pod"]["data_center_id"] == "US-KS-2"
    [sent] = keyed_cli.state.calls_of("CreateOnDemandPod")
    volume_id = next(iter(keyed_cli.state.network_volumes))
    assert sent["input"]["dataCenterId"] == "US-KS-2" and sent["input"]["networkVolumeId"] == volume_id


def test_config_show_says_which_api_each_operation_uses(
    capsys: pytest.CaptureFixture[str], isolated_home: Path
) -> None:
    code, out, _ = rph(capsys, "--json", "config", "show")
    plane = json.loads(out)["control_plane"]
    assert code == 0 and plane["mode"] == "auto" and plane["graphql_gone"] is None
    assert plane["routes"]["create_pod"] == "graphql" and plane["routes"]["restart_pod"] == "rest"
    assert "temperature" in plane["lost_without_graphql"]["pod_telemetry"]
    settings = isolated_home / ".config" / "runpod-hybrid" / "config.toml"
    settings.parent.mkdir(parents=True)
    settings.write_text('control_plane = "rest"\n')
    code, out, _ = rph(capsys, "config", "show")
    assert code == 0 and "control plane: rest" in out
    assert [line.split() for line in out.splitlines() if "create_spot_pod" in line] == [
        ["create_spot_pod", "unavailable", "(needs", "GraphQL)"]
    ]
    settings.write_text('control_plane = "soap"\n')
    code, _, err = rph(capsys, "config", "show")
    assert code == 1 and "auto, graphql, rest" in err
