"""``rph exec|ssh|upload|download``: commands and files on a running pod, over SSH."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, NoReturn

from .common import Commands, ProgressBar, client, emit, parse_env


def _exec(args: argparse.Namespace) -> int:
    from runpod_hybrid.errors import ConfigError

    if not args.command_argv:
        raise ConfigError("Give the command after --, e.g. `rph exec POD -- nvidia-smi`.")
    runner = client(args).remote(args.pod)

    def stream(name: str, chunk: bytes) -> None:
        if not args.json:
            target = sys.stdout.buffer if name == "stdout" else sys.stderr.buffer
            target.write(chunk)
            target.flush()

    result = runner.exec(
        args.command_argv, env=parse_env(args.env), cwd=args.cwd, timeout_s=args.timeout_s, on_output=stream
    )
    if args.json:
        emit(args, result, "")
    elif result.timed_out:
        sys.stderr.write(f"rph: timed out after {args.timeout_s:g}s; the remote command was killed\n")
    return result.exit_code


def _ssh(args: argparse.Namespace) -> NoReturn:
    runner = client(args).remote(args.pod)
    sys.stdout.flush()
    os.execvp("ssh", ["ssh", "-t", *runner.ssh_options(), runner.target.host])  # noqa: S606 - replaces rph


def _transferred(args: argparse.Namespace, result: Any, verb: str) -> int:
    emit(
        args,
        result,
        f"{verb} {result.files} file(s), {result.bytes_sent / 1e6:.1f} MB moved "
        f"via {result.method} in {result.duration_s:.1f}s",
    )
    return 0


def _upload(args: argparse.Namespace) -> int:
    runner = client(args).remote(args.pod)
    with ProgressBar(args, "upload", unit="B", scale=True) as bar:
        result = runner.upload(
            Path(args.local),
            args.remote,
            exclude=tuple(args.exclude),
            delete=args.delete,
            on_progress=bar.update,
        )
    return _transferred(args, result, "uploaded")


def _download(args: argparse.Namespace) -> int:
    runner = client(args).remote(args.pod)
    with ProgressBar(args, "download", unit="B", scale=True) as bar:
        result = runner.download(args.remote, Path(args.local), on_progress=bar.update)
    return _transferred(args, result, "downloaded")


def _sync(args: argparse.Namespace) -> int:
    from runpod_hybrid.remote import sync_tree

    runner = client(args).remote(args.pod)
    passes: list[dict[str, Any]] = []

    def synced(result: Any, changed: Any) -> None:
        passes.append({"changed": list(changed), "transfer": result})
        if not args.json:
            what = f"{len(changed)} change(s)" if changed else "first pass"
            sys.stderr.write(
                f"synced ({what}): {result.bytes_sent / 1e6:.2f} MB via {result.method} in {result.duration_s:.1f}s\n"
            )
            if args.watch and not changed:
                sys.stderr.write(f"watching {args.local} for changes; Ctrl-C stops\n")

    sync_tree(
        runner,
        Path(args.local),
        args.remote,
        watch=args.watch,
        delete=args.delete,
        exclude=tuple(args.exclude),
        on_sync=synced,
    )
    emit(args, {"pod": args.pod, "remote": args.remote, "passes": passes}, "")
    return 0


def add_commands(commands: Commands) -> None:
    run = commands.command("exec", "run a command on a pod (streams output, exits with its exit code)", _exec)
    run.add_argument("pod")
    # The command comes after `--` (split off in main), so it can never be taken for our options.
    run.set_defaults(command_argv=[])
    run.usage = "rph exec [options] POD -- COMMAND [ARG ...]"
    run.add_argument("--cwd", help="working directory on the pod")
    run.add_argument("--env", action="append", default=[], metavar="KEY=VALUE")
    run.add_argument("--timeout-s", type=float, help="kill the command on the pod after this long")
    commands.command("ssh", "open an interactive shell on a pod", _ssh).add_argument("pod")
    up = commands.command(
        "upload", "copy a local dir or file to a pod (rsync, else tar; .gitignore honoured)", _upload
    )
    up.add_argument("pod")
    up.add_argument("local")
    up.add_argument("remote")
    up.add_argument("--exclude", action="append", default=[], help="gitignore-style pattern to skip")
    up.add_argument("--delete", action="store_true", help="remove files on the pod that are gone locally")
    sync = commands.command(
        "sync", "upload a dir to a pod, and with --watch again on every save (.gitignore honoured)", _sync
    )
    sync.add_argument("pod")
    sync.add_argument("local")
    sync.add_argument("remote")
    sync.add_argument("--watch", action="store_true", help="keep syncing as files change, until Ctrl-C")
    sync.add_argument("--delete", action="store_true", help="remove files on the pod that are gone locally")
    sync.add_argument("--exclude", action="append", default=[], help="gitignore-style pattern to skip")
    down = commands.command("download", "copy a file or dir from a pod (path-safe)", _download)
    down.add_argument("pod")
    down.add_argument("remote")
    down.add_argument("local")
