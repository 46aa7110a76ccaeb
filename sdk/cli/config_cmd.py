"""``rph config show|init``: every setting with its source, and a commented settings file."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import fields

from .common import Commands, emit, load_config


def _show(args: argparse.Namespace) -> int:
    config = load_config(args)
    settings = {f.name: getattr(config.settings, f.name) for f in fields(config.settings)}
    key = config.api_key
    payload = {
        "profile": config.profile,
        "api_key": {
            "set": key is not None,
            "masked": key.masked if key else None,
            "source": key.source if key else None,
        },
        "settings": {
            name: {
                "value": list(v) if isinstance(v, tuple) else dict(v) if isinstance(v, Mapping) else v,
                "source": config.sources[name],
            }
            for name, v in settings.items()
        },
        "paths": {
            "settings_file": str(config.paths.settings_file),
            "runpod_config": str(config.paths.runpod_config),
            "state_dir": str(config.paths.state_dir),
        },
        "warnings": list(config.warnings),
    }
    width = max(len(n) for n in settings)
    lines = [
        f"profile:  {config.profile}",
        f"api key:  {key.masked + '  (from ' + key.source + ')' if key else 'not set (local backend only)'}",
        f"settings: {config.paths.settings_file}",
        "",
    ]
    lines += [
        f"{name:<{width}}  {payload['settings'][name]['value']!s:<40}  {config.sources[name]}"  # type: ignore[index]
        for name in settings
    ]
    lines += [f"warning: {w}" for w in config.warnings]
    emit(args, payload, "\n".join(lines))
    return 0


def _init(args: argparse.Namespace) -> int:
    from runpod_hybrid.config import write_settings_template

    # Not load_config(): `init --force` must work when the existing file is the broken thing to replace.
    path = write_settings_template(force=args.force)
    emit(args, {"written": str(path)}, f"wrote {path}")
    return 0


def add_commands(commands: Commands) -> None:
    config = commands.group("config", "show or create the settings file")
    config.command("show", "show every setting with its source (the key masked)", _show)
    init = config.command("init", "write a commented settings file", _init)
    init.add_argument("--force", action="store_true", help="overwrite an existing settings file")
