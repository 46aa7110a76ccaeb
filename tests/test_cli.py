from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from runpod_hybrid import __version__
from runpod_hybrid.cli import main

from conftest import SENTINEL_KEY


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_version_via_the_installed_script() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "runpod_hybrid.cli", "--version"], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == f"rph {__version__}"


def test_config_show_json_masks_key_and_names_sources(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUNPOD_API_KEY", SENTINEL_KEY)
    code, out, err = run_cli(capsys, "config", "show", "--json")
    assert code == 0
    assert SENTINEL_KEY not in out + err
    payload = json.loads(out)
    assert payload["api_key"] == {
        "set": True,
        "masked": "…" + SENTINEL_KEY[-4:],
        "source": "env:RUNPOD_API_KEY",
    }
    assert payload["settings"]["max_pod_hours"] == {"value": 24.0, "source": "default"}


def test_global_options_before_the_command(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "--json", "--log-level", "error", "config", "show")
    assert code == 0
    assert json.loads(out)["api_key"]["set"] is False


def test_config_show_human_says_no_key(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "config", "show")
    assert code == 0
    assert "not set (local backend only)" in out


def test_config_init_writes_loadable_file_and_refuses_overwrite(
    capsys: pytest.CaptureFixture[str], isolated_home: Path
) -> None:
    code, out, _ = run_cli(capsys, "config", "init")
    path = isolated_home / ".config" / "runpod-hybrid" / "config.toml"
    assert code == 0 and str(path) in out and path.exists()
    assert run_cli(capsys, "config", "show")[0] == 0
    code, _, err = run_cli(capsys, "config", "init")
    assert code == 1 and "--force" in err
    assert run_cli(capsys, "config", "init", "--force")[0] == 0


def test_broken_settings_file_is_a_clear_error(
    capsys: pytest.CaptureFixture[str], isolated_home: Path
) -> None:
    path = isolated_home / ".config" / "runpod-hybrid" / "config.toml"
    path.parent.mkdir(parents=True)
    path.write_text("cloud_type = [\n")
    code, out, err = run_cli(capsys, "--json", "config", "show")
    assert code == 1
    assert str(path) in err
    assert json.loads(out)["error"]["type"] == "ConfigError"


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys)
    assert code == 2 and "config" in err


def test_pods_create_dry_run_prints_variables_without_key(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUNPOD_API_KEY", SENTINEL_KEY)
    code, out, err = run_cli(
        capsys,
        "pods",
        "create",
        "--dry-run",
        "--gpu",
        "NVIDIA GeForce RTX 4090",
        "--image",
        "runpod/pytorch:2.4.0",
        "--json",
    )
    assert code == 0, err
    assert SENTINEL_KEY not in out + err
    payload = json.loads(out)
    [attempt] = payload["attempts_in_order"]
    variables = attempt["variables"]["input"]
    assert attempt["operation"] == "podFindAndDeployOnDemand"
    assert variables["terminateAfter"].endswith("Z")
    assert variables["ports"] == "22/tcp"
    assert "PUBLIC_KEY" in {e["key"] for e in variables["env"]}
    assert variables["imageName"] == "runpod/pytorch:2.4.0"
    assert payload["max_usd_per_hour"] == 5.0
    # The deadline (24 h by default) is ours to enforce, and the dry run says by what and what it may cost.
    assert payload["deadline"] == variables["terminateAfter"].replace("Z", "+00:00")
    assert variables["name"].endswith(variables["terminateAfter"].replace("-", "").replace(":", ""))
    assert payload["guards"] == ["pod watchdog", "client reaper"]
    assert payload["watchdog_armed_at"] == "first SSH contact"
    assert payload["projected_max_usd"] == 5.0 * 24


def test_pods_create_dry_run_hides_user_env_and_honours_no_deadline(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run_cli(
        capsys,
        "pods",
        "create",
        "--dry-run",
        "--gpu",
        "NVIDIA A40",
        "--max-hours",
        "0",
        "--env",
        "HF_TOKEN=hf_very_secret",
        "--json",
    )
    assert code == 0
    assert "hf_very_secret" not in out
    payload = json.loads(out)
    assert "terminateAfter" not in payload["attempts_in_order"][0]["variables"]["input"]
    assert (payload["deadline"], payload["guards"], payload["projected_max_usd"]) == (None, [], None)
    human_code, human, _ = run_cli(
        capsys, "pods", "create", "--dry-run", "--gpu", "NVIDIA A40", "--max-hours", "2"
    )
    assert human_code == 0
    assert "by the pod watchdog and the client reaper" in human and "at most $10.00 until then" in human


def test_pods_list_without_key_says_how_to_provide_one(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "pods", "list")
    assert code == 1
    assert "RUNPOD_API_KEY" in err and "--dry-run" in err


def test_terminate_needs_confirmation_when_not_a_tty(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    code, _, err = run_cli(capsys, "pods", "terminate", "abc123")
    assert code == 1 and "--yes" in err
