from __future__ import annotations

import os
import tomllib
from pathlib import Path

import pytest

from runpod_hybrid.config import Settings, load_config, settings_template
from runpod_hybrid.errors import ConfigError, MissingApiKeyError

from conftest import SENTINEL_KEY


def write_runpod_config(home: Path, text: str, mode: int = 0o600) -> Path:
    path = home / ".runpod" / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return path


def test_key_precedence_argument_then_env_then_file(isolated_home: Path) -> None:
    write_runpod_config(isolated_home, '[default]\napi_key = "rpa_FILEKEY000000000000000000"\n')
    env = {"RUNPOD_API_KEY": "rpa_ENVKEY0000000000000000000"}
    assert load_config(
        "rpa_ARGKEY0000000000000000000", env=env, home=isolated_home
    ).require_key().reveal() == ("rpa_ARGKEY0000000000000000000")
    from_env = load_config(env=env, home=isolated_home).require_key()
    assert from_env.reveal() == "rpa_ENVKEY0000000000000000000"
    assert from_env.source == "env:RUNPOD_API_KEY"
    from_file = load_config(env={}, home=isolated_home).require_key()
    assert from_file.reveal() == "rpa_FILEKEY000000000000000000"
    assert "[default] api_key" in from_file.source


def test_profile_from_env_and_runpodctl_top_level_key(isolated_home: Path) -> None:
    write_runpod_config(
        isolated_home,
        'apiKey = "rpa_CTLKEY0000000000000000000"\n[work]\napi_key = "rpa_WORKKEY000000000000000000"\n',
    )
    assert load_config(env={"RUNPOD_PROFILE": "work"}, home=isolated_home).require_key().reveal() == (
        "rpa_WORKKEY000000000000000000"
    )
    # The default profile has no section: runpodctl's top-level apiKey is used.
    key = load_config(env={}, home=isolated_home).require_key()
    assert key.reveal() == "rpa_CTLKEY0000000000000000000"
    assert key.source.endswith("apiKey")


def test_missing_key_error_lists_the_three_ways(isolated_home: Path) -> None:
    config = load_config(env={}, home=isolated_home)
    assert config.api_key is None
    with pytest.raises(MissingApiKeyError) as info:
        config.require_key()
    text = str(info.value)
    assert "api_key=" in text and "RUNPOD_API_KEY" in text and ".runpod/config.toml" in text
    assert "offline" in text


@pytest.mark.parametrize(
    ("explicit", "env", "where"),
    [("  ", {}, "argument"), (None, {"RUNPOD_API_KEY": ""}, "RUNPOD_API_KEY")],
)
def test_empty_key_is_an_error(
    isolated_home: Path, explicit: str | None, env: dict[str, str], where: str
) -> None:
    with pytest.raises(ConfigError, match=f"{where}.*empty"):
        load_config(explicit, env=env, home=isolated_home)


def test_empty_key_in_file_names_the_file(isolated_home: Path) -> None:
    path = write_runpod_config(isolated_home, '[default]\napi_key = ""\n')
    with pytest.raises(ConfigError) as info:
        load_config(env={}, home=isolated_home)
    assert str(path) in str(info.value)


def test_malformed_key_file_names_file_and_problem(isolated_home: Path) -> None:
    path = write_runpod_config(isolated_home, "[default\napi_key = 'x'\n")
    with pytest.raises(ConfigError) as info:
        load_config(env={}, home=isolated_home)
    assert str(path) in str(info.value)
    assert "not valid TOML" in str(info.value)


def test_world_readable_key_file_warns(isolated_home: Path) -> None:
    write_runpod_config(isolated_home, f'[default]\napi_key = "{SENTINEL_KEY}"\n', mode=0o644)
    config = load_config(env={}, home=isolated_home)
    assert config.api_key is not None
    assert any("chmod 600" in w for w in config.warnings)
    private = write_runpod_config(isolated_home, f'[default]\napi_key = "{SENTINEL_KEY}"\n', mode=0o600)
    assert private.exists()
    assert load_config(env={}, home=isolated_home).warnings == ()


def test_key_never_in_repr_or_str(isolated_home: Path) -> None:
    config = load_config(SENTINEL_KEY, env={}, home=isolated_home)
    assert config.api_key is not None
    for text in (repr(config), str(config), repr(config.api_key), str(config.api_key), f"{config.api_key}"):
        assert SENTINEL_KEY not in text
    assert config.api_key.masked.endswith(SENTINEL_KEY[-4:])


def test_settings_file_values_and_sources(isolated_home: Path) -> None:
    path = isolated_home / ".config" / "runpod-hybrid" / "config.toml"
    path.parent.mkdir(parents=True)
    path.write_text(
        'gpu_types = ["NVIDIA GeForce RTX 4090"]\ncloud_type = "community"\nmax_pod_hours = 6\n'
        'max_pod_usd_per_hour = 1.5\n[endpoints]\nembed = "abc123"\n'
    )
    config = load_config(env={}, home=isolated_home)
    assert config.settings.gpu_types == ("NVIDIA GeForce RTX 4090",)
    assert config.settings.cloud_type == "COMMUNITY"
    assert config.settings.max_pod_hours == 6.0
    assert config.settings.endpoints == {"embed": "abc123"}
    assert config.sources["max_pod_hours"] == str(path)
    assert config.sources["image"] == "default"


def test_xdg_config_home_is_honoured(isolated_home: Path, tmp_path: Path) -> None:
    xdg = tmp_path / "xdg"
    (xdg / "runpod-hybrid").mkdir(parents=True)
    (xdg / "runpod-hybrid" / "config.toml").write_text("volume_gb = 50\n")
    config = load_config(env={"XDG_CONFIG_HOME": str(xdg)}, home=isolated_home)
    assert config.settings.volume_gb == 50
    assert config.paths.settings_file == xdg / "runpod-hybrid" / "config.toml"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("pod_ttl = 3\n", "unknown setting `pod_ttl`"),
        ('max_pod_hours = "long"\n', "`max_pod_hours` must be a non-negative number"),
        ("pod_ttl_h = 6\n", "`pod_ttl_h` is now `max_pod_hours`: RunPod never enforced"),
        ('cloud_type = "cheap"\n', "`cloud_type` must be one of SECURE, COMMUNITY, ALL"),
        ('gpu_types = "NVIDIA A40"\n', "`gpu_types` must be a list of strings"),
        ("volume_gb = -1\n", "`volume_gb` must be a non-negative integer"),
        ("[endpoints]\nx = 3\n", "`endpoints` must be a table"),
        ("volume_gb = \n", "not valid TOML"),
    ],
)
def test_bad_settings_name_file_and_key(isolated_home: Path, text: str, fragment: str) -> None:
    path = isolated_home / ".config" / "runpod-hybrid" / "config.toml"
    path.parent.mkdir(parents=True)
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(env={}, home=isolated_home)
    assert str(path) in str(info.value)
    assert fragment in str(info.value)


def test_template_is_valid_toml_with_every_setting_documented() -> None:
    text = settings_template()
    assert tomllib.loads(text) == {"endpoints": {}}
    for name in Settings.__dataclass_fields__:
        assert name in text
    # Uncommenting any default line gives back the default.
    for line in text.splitlines():
        if line.startswith("# ") and " = " in line and not line.startswith("# my-endpoint"):
            name = line[2:].split(" = ")[0]
            if name in Settings.__dataclass_fields__:
                value = tomllib.loads(line[2:])[name]
                default = getattr(Settings(), name)
                assert (tuple(value) if isinstance(value, list) else value) == default


def test_load_config_reads_process_env_by_default(
    isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUNPOD_API_KEY", SENTINEL_KEY)
    assert os.environ["HOME"] == str(isolated_home)
    assert load_config().require_key().reveal() == SENTINEL_KEY
