"""The ``rph`` command: the only code that prints. Each command group is a module here; a command parses,
makes one SDK call (or a few), and renders. SDK imports happen inside commands, so ``rph --help`` is fast.

Exit codes: 0 success, 1 failure (one line on stderr says what to do), 2 usage, 130 interrupted.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
from collections.abc import Sequence

from runpod_hybrid import __version__

from . import config_cmd, jobs_cmd, pods_cmd, remote_cmd, serverless_cmd, volumes_cmd
from .common import EXIT_ERROR, EXIT_INTERRUPTED, Commands, emit, global_options, print_help


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rph",
        description="runpod-hybrid: run jobs on RunPod Serverless, GPU pods, or locally, with one handle.",
    )
    parser.add_argument("--version", action="version", version=f"rph {__version__}")
    global_options(parser, top=True)
    parser.set_defaults(handler=lambda _args: print_help(parser))
    commands = Commands(parser)
    config_cmd.add_commands(commands)
    pods = pods_cmd.add_commands(commands)
    remote_cmd.add_commands(commands)
    serverless_cmd.add_commands(commands)
    volumes_cmd.add_commands(commands)
    jobs_cmd.add_commands(commands, pods)
    return parser


def _report_error(args: argparse.Namespace, exc: BaseException) -> int:
    from runpod_hybrid import redact_text

    message = redact_text("\n".join([str(exc), *getattr(exc, "__notes__", [])]))
    if getattr(args, "json", False):
        emit(args, {"error": {"type": type(exc).__name__, "message": message}}, "")
    sys.stderr.write(f"error: {message}\n")
    return EXIT_ERROR


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    words = list(sys.argv[1:] if argv is None else argv)
    # Everything after the first `--` is a command to run on a pod, never options of ours.
    trailing: list[str] | None = None
    if "--" in words:
        split = words.index("--")
        words, trailing = words[:split], words[split + 1 :]
    args = parser.parse_args(words)
    if trailing is not None:
        if not hasattr(args, "command_argv"):
            parser.error("`--` is only for commands that run something on a pod (rph exec POD -- CMD)")
        args.command_argv = trailing
    from runpod_hybrid import RunPodHybridError, configure_logging

    configure_logging(args.log_level, json_output=True if args.log_json else None)
    try:
        result: int = args.handler(args)
    except (RunPodHybridError, ValueError) as exc:  # ValueError: arguments the SDK refuses
        return _report_error(args, exc)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`rph ... | head`): nothing more to say to it, and no traceback.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_ERROR
    except OSError as exc:  # the machine's own trouble: a port in use, a file we may not write...
        what = f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else "")
        hint = " (pick another with --port)" if exc.errno == errno.EADDRINUSE else ""
        return _report_error(args, OSError(f"{what}{hint}"))
    return result
