"""The ``rph`` command: the only module that prints. It parses, calls the SDK, and renders.

Imports of SDK modules happen inside command functions so ``rph --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

from . import __version__

EXIT_ERROR = 1
EXIT_USAGE = 2

Handler = Callable[[argparse.Namespace], int]


def _global_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
    # Sub-parsers repeat the global options with SUPPRESS defaults so they work on either side of the
    # sub-command (`rph --json config show` and `rph config show --json`) without overwriting each other.
    default: Any = None if top else argparse.SUPPRESS
    parser.add_argument(
        "--json",
        action="store_true",
        default=False if top else argparse.SUPPRESS,
        help="print machine-readable JSON on stdout",
    )
    parser.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        default=default,
        help="log verbosity on stderr (default: $RPH_LOG_LEVEL or warning)",
    )
    parser.add_argument(
        "--log-json",
        action="store_true",
        default=False if top else argparse.SUPPRESS,
        help="log as JSON lines even on a terminal",
    )
    parser.add_argument(
        "--profile",
        default=default,
        help="profile in ~/.runpod/config.toml (default: $RUNPOD_PROFILE or default)",
    )


class _Commands:
    """Helper that builds nested sub-commands sharing the global options."""

    def __init__(self, parser: argparse.ArgumentParser) -> None:
        self._subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")

    def group(self, name: str, help_text: str) -> _Commands:
        parser = self._subparsers.add_parser(name, help=help_text, description=help_text)
        parser.set_defaults(handler=lambda _args, p=parser: _print_help(p))
        return _Commands(parser)

    def command(self, name: str, help_text: str, handler: Handler) -> argparse.ArgumentParser:
        parser = self._subparsers.add_parser(name, help=help_text, description=help_text)
        _global_options(parser, top=False)
        parser.set_defaults(handler=handler)
        return parser


def _print_help(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return EXIT_USAGE


def emit(args: argparse.Namespace, payload: Any, human: str) -> None:
    """Print ``payload`` as JSON under ``--json``, else the human text."""
    if args.json:
        json.dump(payload, sys.stdout, indent=2, sort_keys=True, default=str)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(human.rstrip("\n") + "\n")


def _load_config(args: argparse.Namespace) -> Any:
    from .config import load_config

    return load_config(profile=args.profile)


# --- config ----------------------------------------------------------------------------------------------


def _config_show(args: argparse.Namespace) -> int:
    from dataclasses import fields

    config = _load_config(args)
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
                "value": list(v) if isinstance(v, tuple) else dict(v) if isinstance(v, dict) else v,
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
        f"{name:<{width}}  {payload['settings'][name]['value']!s:<40}  {config.sources[name]}"
        for name in settings
    ]
    lines += [f"warning: {w}" for w in config.warnings]
    emit(args, payload, "\n".join(lines))
    return 0


def _config_init(args: argparse.Namespace) -> int:
    import os
    from pathlib import Path

    from .config import Paths, settings_template
    from .errors import ConfigError

    path = Paths.from_env(os.environ, Path.home()).settings_file
    if path.exists() and not args.force:
        raise ConfigError(f"{path} already exists; pass --force to overwrite it (your edits would be lost).")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".toml.tmp")
    tmp.write_text(settings_template(), encoding="utf-8")
    tmp.replace(path)
    emit(args, {"written": str(path)}, f"wrote {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rph",
        description="runpod-hybrid: run jobs on RunPod Serverless, GPU pods, or locally, with one handle.",
    )
    parser.add_argument("--version", action="version", version=f"rph {__version__}")
    _global_options(parser, top=True)
    parser.set_defaults(handler=lambda _args: _print_help(parser))
    commands = _Commands(parser)

    config = commands.group("config", "show or create the settings file")
    config.command("show", "show every setting with its source (the key masked)", _config_show)
    init = config.command("init", "write a commented settings file", _config_init)
    init.add_argument("--force", action="store_true", help="overwrite an existing settings file")
    return parser


def _report_error(args: argparse.Namespace, exc: Exception) -> int:
    from .redact import redact_text

    message = redact_text(str(exc))
    if getattr(args, "json", False):
        emit(args, {"error": {"type": type(exc).__name__, "message": message}}, "")
    sys.stderr.write(f"error: {message}\n")
    return EXIT_ERROR


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from .errors import RunPodHybridError
    from .logs import configure_logging

    configure_logging(args.log_level, json_output=True if args.log_json else None)
    try:
        result: int = args.handler(args)
    except RunPodHybridError as exc:
        return _report_error(args, exc)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130
    return result


if __name__ == "__main__":
    sys.exit(main())
