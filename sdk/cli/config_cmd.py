"""``rph config show|init``: every setting with its source, which RunPod API each operation uses now, and a
commented settings file."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import fields

from .common import Commands, client, emit, load_config


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
        "control_plane": _control_plane(args),
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
    lines += _control_plane_lines(payload["control_plane"])  # type: ignore[arg-type]
    emit(args, payload, "\n".join(lines))
    return 0


def _control_plane(args: argparse.Namespace) -> dict[str, object]:
    """Which RunPod API each operation uses now (no call is made to find out)."""
    plane = client(args).pod_api
    return {
        "mode": plane.mode,
        "graphql_gone": plane.graphql_gone,
        "routes": {r.operation: r.api or "unavailable" for r in plane.routes()},
        "lost_without_graphql": {
            r.operation: r.lost_without_graphql for r in plane.routes() if r.lost_without_graphql
        },
    }


def _control_plane_lines(info: dict[str, object]) -> list[str]:
    routes: dict[str, str] = info["routes"]  # type: ignore[assignment]
    lines = [
        "",
        f"control plane: {info['mode']}"
        + (f" (GraphQL gone: {info['graphql_gone']})" if info["graphql_gone"] else ""),
    ]
    width = max(len(op) for op in routes)
    names = {"graphql": "GraphQL", "rest": "REST v2", "unavailable": "unavailable (needs GraphQL)"}
    lines += [f"  {op:<{width}}  {names[api]}" for op, api in routes.items()]
    return lines


def _init(args: argparse.Namespace) -> int:
    from runpod_hybrid.config import write_settings_template

    # Not load_config(): `init --force` must work when the existing file is the broken thing to replace.
    path = write_settings_template(force=args.force)
    emit(args, {"written": str(path)}, f"wrote {path}")
    return 0


def add_commands(commands: Commands) -> None:
    config = commands.group("config", "show or create the settings file")
    config.command(
        "show",
        "show every setting with its source (the key masked) and which RunPod API each operation uses",
        _show,
    )
    init = config.command("init", "write a commented settings file", _init)
    init.add_argument("--force", action="store_true", help="overwrite an existing settings file")
