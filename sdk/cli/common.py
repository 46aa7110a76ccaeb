"""What every command group of ``rph`` shares: the global options, sub-command building, output (JSON or
text), progress bars on a terminal, and the client. SDK imports happen inside functions, so building the
parser (``rph --help``) imports nothing heavy."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, is_dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runpod_hybrid import Config, RunPod

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

Handler = Callable[[argparse.Namespace], int]


def global_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
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


class Commands:
    """Builds nested sub-commands that share the global options."""

    def __init__(self, parser: argparse.ArgumentParser) -> None:
        self._subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")

    def group(self, name: str, help_text: str) -> Commands:
        parser = self._subparsers.add_parser(name, help=help_text, description=help_text)
        parser.set_defaults(handler=lambda _args, p=parser: print_help(p))
        return Commands(parser)

    def command(self, name: str, help_text: str, handler: Handler) -> argparse.ArgumentParser:
        parser = self._subparsers.add_parser(name, help=help_text, description=help_text)
        global_options(parser, top=False)
        parser.set_defaults(handler=handler)
        return parser


def print_help(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return EXIT_USAGE


def emit(args: argparse.Namespace, payload: Any, human: str) -> None:
    """Print ``payload`` as JSON under ``--json``, else the human text."""
    if args.json:
        json.dump(as_json(payload), sys.stdout, indent=2, sort_keys=True, default=_json_default)
        sys.stdout.write("\n")
    elif human:
        sys.stdout.write(human.rstrip("\n") + "\n")
    sys.stdout.flush()


def as_json(value: Any) -> Any:
    """Dataclasses (and lists of them) as plain data."""
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    if isinstance(value, list | tuple):
        return [as_json(v) for v in value]
    if isinstance(value, dict):
        return {k: as_json(v) for k, v in value.items()}
    return value


def _json_default(value: Any) -> str:
    """Times as ISO 8601 (what the MCP server gives too); anything else as its text."""
    return value.isoformat() if isinstance(value, datetime) else str(value)


def money(value: float | None) -> str:
    return "-" if value is None else f"${value:.2f}"


def load_config(args: argparse.Namespace) -> Config:
    from runpod_hybrid import load_config

    return load_config(profile=args.profile)


def client(args: argparse.Namespace) -> RunPod:
    """The SDK client for this invocation (one per process)."""
    cached = getattr(args, "_client", None)
    if cached is None:
        from runpod_hybrid import RunPod

        cached = RunPod(config=load_config(args))
        args._client = cached
    return cached


def on_a_terminal(args: argparse.Namespace) -> bool:
    return sys.stderr.isatty() and not args.json


def status_line(args: argparse.Namespace) -> Callable[[str], None]:
    """A one-line status on stderr, rewritten in place on a terminal (nothing otherwise)."""
    tty = on_a_terminal(args)

    def show(message: str) -> None:
        if tty:
            sys.stderr.write(f"\r\033[K{message}")
            sys.stderr.flush()

    return show


class ProgressBar:
    """A progress bar on stderr (tqdm) when stderr is a terminal and ``--json`` is off; silent otherwise."""

    def __init__(self, args: argparse.Namespace, description: str, *, unit: str = "it", scale: bool = False):
        self._bar: Any = None
        if on_a_terminal(args):
            from tqdm import tqdm

            self._bar = tqdm(desc=description, unit=unit, unit_scale=scale, file=sys.stderr, leave=True)

    def update(self, done: int, total: int | None, postfix: str = "") -> None:
        if self._bar is None:
            return
        if total is not None and self._bar.total != total:
            self._bar.total = total
        self._bar.n = done
        if postfix:
            self._bar.set_postfix_str(postfix, refresh=False)
        self._bar.refresh()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def parse_env(items: Sequence[str]) -> dict[str, str]:
    """``--env KEY=VALUE`` options as a dict."""
    from runpod_hybrid.errors import ConfigError

    env: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--env takes KEY=VALUE, got {item!r}.")
        env[key] = value
    return env


def json_arg(text: str, what: str = "the input") -> Any:
    from runpod_hybrid.errors import ConfigError

    try:
        return json.loads(text)
    except ValueError as exc:
        raise ConfigError(
            f"Not valid JSON for {what}: {text!r} ({exc}). Quote it for your shell, e.g. '{{\"x\": 1}}'."
        ) from exc


def confirmed(args: argparse.Namespace, *, refusal: str, prompt: str, expected: str) -> bool:
    """Before destroying something: ``--yes``, or ``expected`` typed on a terminal. Without a terminal and
    without ``--yes``, ``refusal`` is raised (as a ConfigError); a wrong answer returns False."""
    from runpod_hybrid.errors import ConfigError

    if args.yes:
        return True
    if not sys.stdin.isatty():
        raise ConfigError(f"{refusal} Pass --yes to confirm.")
    if input(prompt).strip() == expected:
        return True
    sys.stderr.write("not confirmed; nothing done\n")
    return False
