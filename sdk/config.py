"""Settings and API-key resolution.

The key comes from, in order: an explicit argument, ``RUNPOD_API_KEY``, then ``~/.runpod/config.toml``
(the ``runpod`` CLI writes ``[<profile>] api_key``; runpodctl writes a top-level ``apiKey``; the profile
is ``RUNPOD_PROFILE`` or ``default``). Our own defaults live in ``$XDG_CONFIG_HOME/runpod-hybrid/config.toml``.
Nothing here reads a file at import time; callers build a :class:`Config` with :func:`load_config`.
"""

from __future__ import annotations

import os
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, get_args

from ._logging import register_secret
from .errors import ConfigError, MissingApiKeyError

CloudType = Literal["SECURE", "COMMUNITY", "ALL"]
CLOUD_TYPES: tuple[str, ...] = get_args(CloudType)
ControlPlaneSetting = Literal["auto", "graphql", "rest"]
CONTROL_PLANE_SETTINGS: tuple[str, ...] = get_args(ControlPlaneSetting)

DEFAULT_IMAGE = "runpod/pytorch:2.4.0-py3.11-cuda12.4.1-devel-ubuntu22.04"


@dataclass(frozen=True)
class ApiKey:
    """A RunPod API key that never shows itself in ``repr``/``str``; ``reveal()`` is for the auth header only."""

    _value: str = field(repr=False)
    source: str

    def __post_init__(self) -> None:
        register_secret(self._value)

    def reveal(self) -> str:
        return self._value

    @property
    def masked(self) -> str:
        return f"…{self._value[-4:]}" if len(self._value) > 12 else "…"

    def __repr__(self) -> str:
        return f"ApiKey(source={self.source!r}, value={self.masked!r})"

    __str__ = __repr__


@dataclass(frozen=True)
class SettingDoc:
    """How one setting is documented in ``rph config init`` and ``rph config show``."""

    name: str
    doc: str


@dataclass(frozen=True)
class Settings:
    """Defaults from our settings file. Every field is a setting of the same name in the TOML file."""

    gpu_types: tuple[str, ...] = ()
    min_vram_gb: int = 0
    max_gpu_usd_per_hour: float = 0.0
    cloud_type: CloudType = "SECURE"
    fallback_cloud_types: tuple[CloudType, ...] = ()
    image: str = DEFAULT_IMAGE
    container_disk_gb: int = 20
    volume_gb: int = 20
    max_pod_hours: float = 24.0
    max_pod_usd_per_hour: float = 5.0
    max_total_usd_per_hour: float = 20.0
    ssh_key_path: str = "~/.runpod/ssh/rph_ed25519"
    serverless_prices_path: str = ""
    control_plane: ControlPlaneSetting = "auto"
    endpoints: Mapping[str, str] = field(default_factory=dict)


SETTING_DOCS: tuple[SettingDoc, ...] = (
    SettingDoc(
        "gpu_types",
        'GPU type ids to try, in order (e.g. ["NVIDIA GeForce RTX 4090"]); empty: choose by price',
    ),
    SettingDoc("min_vram_gb", "smallest GPU memory to consider when gpu_types is empty (0: any)"),
    SettingDoc(
        "max_gpu_usd_per_hour", "skip GPU offers dearer than this per GPU-hour when choosing (0: no limit)"
    ),
    SettingDoc("cloud_type", "SECURE (always a public IP, needed for direct SSH), COMMUNITY or ALL"),
    SettingDoc(
        "fallback_cloud_types", 'cloud types to try after cloud_type when no GPU is free, e.g. ["COMMUNITY"]'
    ),
    SettingDoc("image", "container image for new pods"),
    SettingDoc("container_disk_gb", "container disk of new pods (wiped on stop)"),
    SettingDoc("volume_gb", "volume disk at /workspace of new pods (kept on stop, billed while stopped)"),
    SettingDoc(
        "max_pod_hours",
        "new pods are stopped this many hours after creation, by a watchdog on the pod and by every rph/MCP "
        "call that lists pods (RunPod itself enforces no deadline); 0: no deadline",
    ),
    SettingDoc("max_pod_usd_per_hour", "refuse to create a pod costing more than this per hour (0: no cap)"),
    SettingDoc(
        "max_total_usd_per_hour", "refuse a create that takes running pods over this per hour (0: no cap)"
    ),
    SettingDoc("ssh_key_path", "private key used for pods (generated on first use when missing)"),
    SettingDoc("serverless_prices_path", "JSON price table overriding the bundled serverless list prices"),
    SettingDoc(
        "control_plane",
        "RunPod API for pods and endpoints: auto (GraphQL, then REST v2 once GraphQL is gone), graphql or rest",
    ),
    SettingDoc("endpoints", '[endpoints] table: name = "endpoint id" of your serverless endpoints'),
)


@dataclass(frozen=True)
class Paths:
    """Where configuration and state live for one user."""

    runpod_config: Path
    settings_file: Path
    state_dir: Path

    @classmethod
    def from_env(cls, env: Mapping[str, str], home: Path) -> Paths:
        config_home = Path(env["XDG_CONFIG_HOME"]) if env.get("XDG_CONFIG_HOME") else home / ".config"
        state_home = Path(env["XDG_STATE_HOME"]) if env.get("XDG_STATE_HOME") else home / ".local" / "state"
        settings = (
            Path(env["RPH_CONFIG"])
            if env.get("RPH_CONFIG")
            else config_home / "runpod-hybrid" / "config.toml"
        )
        return cls(
            runpod_config=home / ".runpod" / "config.toml",
            settings_file=settings,
            state_dir=state_home / "runpod-hybrid",
        )


@dataclass(frozen=True)
class Config:
    """Everything resolved for one process: settings (with where each came from), the key, paths."""

    settings: Settings
    sources: Mapping[str, str]
    api_key: ApiKey | None
    profile: str
    paths: Paths
    warnings: tuple[str, ...] = ()

    def require_key(self) -> ApiKey:
        if self.api_key is None:
            raise MissingApiKeyError(self.profile, str(self.paths.runpod_config))
        return self.api_key


def _read_toml(path: Path) -> dict[str, Any] | None:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"Cannot read {path}: {exc.strerror}. Check the file's permissions.") from exc
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}. Fix or delete the file.") from exc


def _key_file_warning(path: Path) -> str | None:
    try:
        mode = path.stat().st_mode
    except OSError:
        return None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        return f"{path} holds an API key but is readable by other users (mode {stat.S_IMODE(mode):o}); run: chmod 600 {path}"
    return None


def _nonempty_key(value: str, where: str) -> str:
    value = value.strip()
    if not value:
        raise ConfigError(
            f"The API key from {where} is empty. Set a real key there, or remove the empty entry."
        )
    return value


def resolve_api_key(
    explicit: str | None, env: Mapping[str, str], paths: Paths, profile: str
) -> tuple[ApiKey | None, tuple[str, ...]]:
    """Find the key in the documented order; returns it (or None) and any warnings about where it was."""
    if explicit is not None:
        return ApiKey(_nonempty_key(explicit, "the api_key argument"), "argument"), ()
    if "RUNPOD_API_KEY" in env:
        return ApiKey(_nonempty_key(env["RUNPOD_API_KEY"], "RUNPOD_API_KEY"), "env:RUNPOD_API_KEY"), ()
    path = paths.runpod_config
    data = _read_toml(path)
    if data is None:
        return None, ()
    section = data.get(profile)
    candidates: list[tuple[Any, str]] = []
    if isinstance(section, Mapping) and "api_key" in section:
        candidates.append((section["api_key"], f"{path} [{profile}] api_key"))
    if "apiKey" in data:
        candidates.append((data["apiKey"], f"{path} apiKey"))
    if not candidates:
        return None, ()
    value, where = candidates[0]
    if not isinstance(value, str):
        raise ConfigError(f"{where} must be a string, got {type(value).__name__}.")
    warning = _key_file_warning(path)
    return ApiKey(_nonempty_key(value, where), where), (warning,) if warning else ()


def _coerce(name: str, value: Any, default: Any, where: str) -> Any:
    """Check one setting from the file against the type of its default, naming the file and key on error."""

    def bad(expected: str) -> ConfigError:
        return ConfigError(f"{where}: setting `{name}` must be {expected}, got {value!r}.")

    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise bad("true or false")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise bad("a non-negative number")
        return float(value)
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise bad("a non-negative integer")
        return value
    if isinstance(default, str):
        if not isinstance(value, str):
            raise bad("a string")
        if name == "cloud_type" and value.upper() not in CLOUD_TYPES:
            raise bad("one of " + ", ".join(CLOUD_TYPES))
        if name == "control_plane" and value not in CONTROL_PLANE_SETTINGS:
            raise bad("one of " + ", ".join(CONTROL_PLANE_SETTINGS))
        return value.upper() if name == "cloud_type" else value
    if isinstance(default, tuple):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise bad("a list of strings")
        if name == "fallback_cloud_types":
            if any(v.upper() not in CLOUD_TYPES for v in value):
                raise bad("a list of " + ", ".join(CLOUD_TYPES))
            return tuple(v.upper() for v in value)
        return tuple(value)
    if isinstance(default, Mapping):
        if not isinstance(value, Mapping) or not all(isinstance(v, str) for v in value.values()):
            raise bad('a table of name = "string"')
        return dict(value)
    raise AssertionError(f"unhandled setting type for {name}")


# Settings that were renamed, and why, so an old settings file fails with a message saying what to write.
_RENAMED = {
    "pod_ttl_h": "`pod_ttl_h` is now `max_pod_hours`: RunPod never enforced the TTL it accepted, so "
    "runpod-hybrid enforces the pod deadline itself. Rename the setting (same value, in hours).",
}


def load_settings(path: Path) -> tuple[Settings, dict[str, str]]:
    """Read our settings file (missing is fine) and return the settings and each one's source."""
    defaults = Settings()
    sources = {f.name: "default" for f in fields(Settings)}
    data = _read_toml(path)
    if data is None:
        return defaults, sources
    known = {f.name: getattr(defaults, f.name) for f in fields(Settings)}
    values: dict[str, Any] = {}
    for name, value in data.items():
        if name in _RENAMED:
            raise ConfigError(f"{path}: {_RENAMED[name]}")
        if name not in known:
            close = [k for k in known if k.split("_")[0] == name.split("_")[0]]
            hint = f" Did you mean {', '.join(close)}?" if close else f" Known settings: {', '.join(known)}."
            raise ConfigError(f"{path}: unknown setting `{name}`.{hint}")
        values[name] = _coerce(name, value, known[name], str(path))
        sources[name] = str(path)
    return Settings(**{**known, **values}), sources


def load_config(
    api_key: str | None = None,
    *,
    profile: str | None = None,
    env: Mapping[str, str] | None = None,
    home: Path | None = None,
) -> Config:
    """Resolve settings, paths and the key for this process. Reads files; never touches the network."""
    env = os.environ if env is None else env
    home = Path.home() if home is None else home
    paths = Paths.from_env(env, home)
    chosen_profile = profile or env.get("RUNPOD_PROFILE") or "default"
    settings, sources = load_settings(paths.settings_file)
    key, warnings = resolve_api_key(api_key, env, paths, chosen_profile)
    return Config(settings, sources, key, chosen_profile, paths, warnings)


def settings_template() -> str:
    """The commented settings file that ``rph config init`` writes."""
    defaults = Settings()
    lines = [
        "# runpod-hybrid settings (https://github.com/runpod-hybrid). Every line is optional;",
        "# a commented line shows the built-in default. The API key does NOT go here: use",
        "# RUNPOD_API_KEY or ~/.runpod/config.toml.",
        "",
    ]
    table_lines: list[str] = []
    for doc in SETTING_DOCS:
        value = getattr(defaults, doc.name)
        if isinstance(value, Mapping):
            table_lines += [f"# {doc.doc}", f"[{doc.name}]", '# my-endpoint = "abc123xyz"', ""]
            continue
        lines += [f"# {doc.doc}", f"# {doc.name} = {_toml_value(value)}", ""]
    return "\n".join(lines + table_lines)


def write_settings_template(*, force: bool = False, env: Mapping[str, str] | None = None) -> Path:
    """Write the commented settings file (``rph config init``) where settings are read from; refuses to
    overwrite an existing one unless ``force``. Returns its path."""
    env = os.environ if env is None else env
    path = Paths.from_env(env, Path.home()).settings_file
    if path.exists() and not force:
        raise ConfigError(f"{path} already exists; pass --force to overwrite it (your edits would be lost).")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".toml.tmp")
    tmp.write_text(settings_template(), encoding="utf-8")
    tmp.replace(path)
    return path


def _toml_value(value: Any) -> str:
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return repr(value)
