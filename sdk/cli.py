"""The ``rph`` command: the only module that prints. It parses, calls the SDK, and renders.

Imports of SDK modules happen inside command functions so ``rph --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from . import __version__

if TYPE_CHECKING:
    from .client import RunPod

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

    # Not load_config(): `init --force` must work when the existing file is the broken thing to replace.
    path = Paths.from_env(os.environ, Path.home()).settings_file
    if path.exists() and not args.force:
        raise ConfigError(f"{path} already exists; pass --force to overwrite it (your edits would be lost).")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".toml.tmp")
    tmp.write_text(settings_template(), encoding="utf-8")
    tmp.replace(path)
    emit(args, {"written": str(path)}, f"wrote {path}")
    return 0


# --- gpus and pods ---------------------------------------------------------------------------------------


def _client(args: argparse.Namespace) -> RunPod:
    from .client import RunPod

    return RunPod(config=_load_config(args))


def _as_json(value: Any) -> Any:
    from dataclasses import asdict, is_dataclass

    return asdict(value) if is_dataclass(value) and not isinstance(value, type) else value


def _money(value: float | None) -> str:
    return "-" if value is None else f"${value:.2f}"


def _gpus(args: argparse.Namespace) -> int:
    types = _client(args).gpus.list(
        gpu_count=args.count, min_vram_gb=args.min_vram, cloud_type=args.cloud.upper()
    )
    rows = [
        f"{'GPU TYPE ID':<34} {'NAME':<16} {'VRAM':>5}  {'SECURE':>8} {'STOCK':<6}  {'COMMUNITY':>9} {'STOCK':<6}  {'SPOT':>6}"
    ]
    for gpu in types:
        secure, community = gpu.offer("SECURE"), gpu.offer("COMMUNITY")
        rows.append(
            f"{gpu.id:<34} {gpu.display_name:<16} {gpu.memory_gb:>4}G  "
            f"{_money(secure.usd_per_gpu_hour if secure else None):>8} {(secure.stock_status if secure else None) or '-':<6}  "
            f"{_money(community.usd_per_gpu_hour if community else None):>9} {(community.stock_status if community else None) or '-':<6}  "
            f"{_money(gpu.secure_spot_usd_per_hour):>6}"
        )
    rows.append(f"prices per GPU-hour for {args.count} GPU(s); '-' means out of stock now")
    emit(args, [_as_json(g) for g in types], "\n".join(rows))
    return 0


def _pod_line(pod: Any) -> str:
    ssh = pod.ssh
    return (
        f"{pod.id:<16} {pod.status:<10} {_money(pod.usd_per_hour) + '/h':>9}  {pod.gpu_count}x "
        f"{pod.gpu_display_name or pod.gpu_type_id or '?':<14} {'spot' if pod.is_spot else '':<4} "
        f"{ssh.host + ':' + str(ssh.port) if ssh else '-':<22} {pod.name}"
    )


def _pods_list(args: argparse.Namespace) -> int:
    pods = _client(args).pods.list(status=args.status, name=args.name, ours_only=args.ours)
    total = sum(p.usd_per_hour for p in pods if p.status == "RUNNING")
    human = "\n".join(
        [_pod_line(p) for p in pods] + [f"{len(pods)} pod(s); running ones cost {_money(total)}/h"]
    )
    emit(args, [_as_json(p) for p in pods], human)
    return 0


def _pods_get(args: argparse.Namespace) -> int:
    pod = _client(args).pods.get(args.pod)
    emit(args, _as_json(pod), _pod_line(pod))
    return 0


def _spec_from_args(args: argparse.Namespace) -> Any:
    from .cli_env import parse_env
    from .pods import PodSpec

    env = parse_env(args.env)
    return PodSpec(
        name=args.name,
        gpu_types=tuple(args.gpu),
        gpu_count=args.count,
        min_vram_gb=args.min_vram,
        cloud_type=args.cloud,
        fallback_cloud_types=tuple(args.fallback_cloud) if args.fallback_cloud else None,
        image=args.image,
        container_disk_gb=args.disk_gb,
        volume_gb=args.volume_gb,
        network_volume_id=args.network_volume,
        env=env,
        extra_ports=tuple(args.port),
        spot=args.spot,
        bid_per_gpu_usd=args.bid,
        ttl_h=0.0 if args.no_ttl else args.ttl_h,
        docker_args=args.docker_args,
    )


def _pods_create(args: argparse.Namespace) -> int:
    spec = _spec_from_args(args)
    if args.dry_run:
        import secrets
        from datetime import UTC, datetime

        from .podapi import create_variables
        from .pods import preview_create
        from .redact import redact_value
        from .sshkeys import key_path, public_key

        config = _load_config(args)
        path = key_path(config.settings.ssh_key_path)
        preview = preview_create(
            spec,
            config.settings,
            public_key=public_key(path) or f"<generated at create: {path}.pub>",
            now=datetime.now(UTC),
            token=secrets.token_hex(4),
        )
        attempts = [
            {
                "operation": "podRentInterruptable" if r.spot else "podFindAndDeployOnDemand",
                "variables": redact_value(create_variables(r)),
            }
            for r in preview.requests
        ]
        payload = {
            "dry_run": True,
            "max_usd_per_hour": preview.max_usd_per_hour,
            "cost_note": "upper bound: create refuses any candidate over max_pod_usd_per_hour; live prices need the API",
            "attempts_in_order": attempts,
        }
        human = [
            f"dry run: {len(preview.requests)} create attempt(s) in order, at most "
            f"{_money(preview.max_usd_per_hour)}/h (env values hidden)"
        ]
        human += [f"  {a['operation']}: {json.dumps(a['variables'])}" for a in attempts]
        emit(args, payload, "\n".join(human))
        return 0
    client = _client(args)

    def on_attempt(attempt: Any) -> None:
        if not args.json:
            sys.stderr.write(
                f"  {attempt.gpu_type_id} ({attempt.cloud_type}, {_money(attempt.usd_per_hour)}/h): "
                f"{attempt.outcome}{' - ' + attempt.detail if attempt.detail else ''}\n"
            )

    result = client.pods.create(spec, on_attempt=on_attempt)
    pod = result.pod
    if args.wait:
        pod = client.pods.wait_until_ready(pod.id, on_progress=_progress_printer(args))
    payload = {
        "pod": _as_json(pod),
        "attempts": [_as_json(a) for a in result.attempts],
        "usd_per_hour": pod.usd_per_hour,
    }
    emit(args, payload, f"created {pod.id} at {_money(pod.usd_per_hour)}/h\n{_pod_line(pod)}")
    return 0


def _progress_printer(args: argparse.Namespace) -> Any:
    tty = sys.stderr.isatty() and not args.json

    def show(message: str) -> None:
        if tty:
            sys.stderr.write(f"\r\033[K{message}")
            sys.stderr.flush()

    return show


def _pods_start(args: argparse.Namespace) -> int:
    pod = _client(args).pods.start(args.pod, bid_per_gpu_usd=args.bid)
    emit(args, _as_json(pod), f"started {pod.id}: {_pod_line(pod)}")
    return 0


def _pods_stop(args: argparse.Namespace) -> int:
    pod = _client(args).pods.stop(args.pod)
    emit(args, _as_json(pod), f"stopped {pod.id} (its volume disk keeps billing until you terminate it)")
    return 0


def _pods_terminate(args: argparse.Namespace) -> int:
    from .errors import ConfigError

    if not args.yes:
        if not sys.stdin.isatty():
            raise ConfigError(f"Terminating deletes {args.pod} and its volume disk. Pass --yes to confirm.")
        answer = input(f"Terminate {args.pod}? Its volume disk is deleted. Type the pod id to confirm: ")
        if answer.strip() != args.pod:
            sys.stderr.write("not confirmed; nothing done\n")
            return EXIT_ERROR
    _client(args).pods.terminate(args.pod)
    emit(args, {"terminated": args.pod}, f"terminated {args.pod}")
    return 0


def _pods_wait(args: argparse.Namespace) -> int:
    progress = _progress_printer(args)
    pod = _client(args).pods.wait_until_ready(
        args.pod, timeout_s=args.timeout_s, need_ssh=not args.no_ssh, on_progress=progress
    )
    if sys.stderr.isatty() and not args.json:
        sys.stderr.write("\n")
    emit(args, _as_json(pod), f"ready: {_pod_line(pod)}")
    return 0


def _pods_telemetry(args: argparse.Namespace) -> int:
    t = _client(args).pods.telemetry(args.pod)
    lines = [
        f"{t.pod_id} {t.status}: up {t.uptime_s}s, {_money(t.usd_per_hour)}/h, {_money(t.cost_since_start_usd)} "
        f"since start; cpu {t.cpu_percent}% mem {t.memory_percent}%"
    ]
    lines += [
        f"  gpu {g.id}: util {g.util_percent}% mem {g.memory_util_percent}% "
        f"temp {g.temperature_c}C power {g.power_w}W"
        for g in t.gpus
    ]
    emit(args, _as_json(t), "\n".join(lines))
    return 0


def _pods_ssh_info(args: argparse.Namespace) -> int:
    client = _client(args)
    endpoint = client.pods.ssh_endpoint(args.pod)
    key = client.config.settings.ssh_key_path
    command = f"ssh {endpoint.user}@{endpoint.host} -p {endpoint.port} -i {key}"
    emit(args, {**_as_json(endpoint), "command": command}, command)
    return 0


def _add_pods_run(pods: _Commands) -> None:
    run = pods.command(
        "run", "one line: create a pod, wait, upload the work dir, run the command, follow", _pods_run
    )
    run.usage = "rph pods run --gpu GPU [options] -- COMMAND [ARG ...]"
    run.set_defaults(command_argv=[])
    run.add_argument("--gpu", action="append", default=[], help="GPU type; repeat to give fallbacks")
    run.add_argument("--count", type=int, default=1)
    run.add_argument("--workdir", default=".", help="uploaded to the pod (honouring .gitignore/.rphignore)")
    run.add_argument("--output", action="append", default=[], help="path in the work dir to fetch at the end")
    run.add_argument("--image")
    run.add_argument("--spot", action="store_true")
    run.add_argument("--on-finish", choices=("none", "stop", "terminate"), default="stop")
    run.add_argument("--detach", action="store_true", help="start and return; follow with rph jobs logs")


def _add_pod_commands(commands: _Commands) -> _Commands:
    gpus = commands.command("gpus", "GPU types with live stock and price per GPU-hour", _gpus)
    gpus.add_argument("--count", type=int, default=1, help="GPUs per pod (stock differs by count)")
    gpus.add_argument("--min-vram", type=int, default=0, metavar="GB")
    gpus.add_argument("--cloud", choices=("secure", "community", "all"), default="all")

    pods = commands.group("pods", "create, inspect and manage GPU pods")
    lister = pods.command("list", "your pods and what the running ones cost", _pods_list)
    lister.add_argument("--status", help="e.g. RUNNING or EXITED")
    lister.add_argument("--name", help="substring of the pod name")
    lister.add_argument("--ours", action="store_true", help="only pods created by runpod-hybrid")
    for name, help_text, handler in (
        ("get", "one pod", _pods_get),
        ("stop", "stop a pod (releases the GPU; the volume disk keeps billing)", _pods_stop),
        ("telemetry", "utilisation and cost so far", _pods_telemetry),
        ("ssh-info", "the direct SSH endpoint", _pods_ssh_info),
    ):
        pods.command(name, help_text, handler).add_argument("pod", help="pod id")
    start = pods.command("start", "resume a stopped pod (spot pods bid again)", _pods_start)
    start.add_argument("pod")
    start.add_argument("--bid", type=float, help="spot bid per GPU-hour (default: the pod's last price)")
    term = pods.command("terminate", "delete a pod and its volume disk", _pods_terminate)
    term.add_argument("pod")
    term.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    wait = pods.command("wait", "wait until a pod runs and accepts SSH", _pods_wait)
    wait.add_argument("pod")
    wait.add_argument("--timeout-s", type=float, default=900.0)
    wait.add_argument("--no-ssh", action="store_true", help="do not wait for SSH")

    create = pods.command("create", "create a pod (TTL, SSH and budget caps on by default)", _pods_create)
    create.add_argument(
        "--gpu", action="append", default=[], help="GPU type id or name; repeat to give fallbacks"
    )
    create.add_argument("--count", type=int, default=1, help="GPUs per pod")
    create.add_argument("--min-vram", type=int, default=None, metavar="GB")
    create.add_argument("--cloud", choices=("SECURE", "COMMUNITY", "ALL"), type=str.upper)
    create.add_argument("--fallback-cloud", action="append", type=str.upper, choices=("SECURE", "COMMUNITY"))
    create.add_argument("--image")
    create.add_argument("--name", default="pod", help="pod name (a client token is appended)")
    create.add_argument("--disk-gb", type=int, help="container disk (wiped on stop)")
    create.add_argument("--volume-gb", type=int, help="volume disk at /workspace (kept on stop)")
    create.add_argument("--network-volume", help="network volume id to attach")
    create.add_argument("--env", action="append", default=[], metavar="KEY=VALUE")
    create.add_argument("--port", action="append", default=[], help="extra port, e.g. 8888/http")
    create.add_argument("--docker-args", help="start command (replaces the image's /start.sh)")
    create.add_argument("--spot", action="store_true", help="interruptible pod at a bid price")
    create.add_argument("--bid", type=float, help="spot bid per GPU-hour (default: current minimum)")
    ttl = create.add_mutually_exclusive_group()
    ttl.add_argument("--ttl-h", type=float, help="RunPod terminates the pod after this many hours")
    ttl.add_argument(
        "--no-ttl", action="store_true", help="no server-side TTL (the pod runs until you stop it)"
    )
    create.add_argument("--dry-run", action="store_true", help="print the exact create calls; call nothing")
    create.add_argument("--wait", action="store_true", help="wait until the pod accepts SSH")

    _add_pods_run(pods)
    return pods


# --- commands and files on pods --------------------------------------------------------------------------


def _exec(args: argparse.Namespace) -> int:
    from .cli_env import parse_env

    command = args.command_argv
    if not command:
        from .errors import ConfigError

        raise ConfigError("Give the command after --, e.g. `rph exec POD -- nvidia-smi`.")
    runner = _client(args).remote(args.pod)

    def stream(name: str, chunk: bytes) -> None:
        if not args.json:
            target = sys.stdout.buffer if name == "stdout" else sys.stderr.buffer
            target.write(chunk)
            target.flush()

    result = runner.exec(
        command, env=parse_env(args.env), cwd=args.cwd, timeout_s=args.timeout_s, on_output=stream
    )
    if args.json:
        emit(args, _as_json(result), "")
    elif result.timed_out:
        sys.stderr.write(f"rph: timed out after {args.timeout_s:g}s; the remote command was killed\n")
    return result.exit_code


def _ssh(args: argparse.Namespace) -> int:
    import os

    runner = _client(args).remote(args.pod)
    argv = ["ssh", "-t", *runner.ssh_options(), runner.target.host]
    sys.stdout.flush()
    os.execvp("ssh", argv)  # noqa: S606 - an interactive shell replaces this process


def _transfer_progress(args: argparse.Namespace) -> Any:
    tty = sys.stderr.isatty() and not args.json

    def show(done: int, total: int | None) -> None:
        if not tty:
            return
        if total:
            filled = int(30 * min(done, total) / total)
            sys.stderr.write(
                f"\r[{'#' * filled}{'.' * (30 - filled)}] {100 * done / total:5.1f}% {done / 1e6:8.1f} MB"
            )
        else:
            sys.stderr.write(f"\r{done / 1e6:8.1f} MB")
        sys.stderr.flush()

    return show


def _transfer_done(args: argparse.Namespace, result: Any, verb: str) -> int:
    if sys.stderr.isatty() and not args.json:
        sys.stderr.write("\n")
    emit(
        args,
        _as_json(result),
        f"{verb} {result.files} file(s), {result.bytes_sent / 1e6:.1f} MB moved "
        f"via {result.method} in {result.duration_s:.1f}s",
    )
    return 0


def _upload(args: argparse.Namespace) -> int:
    from pathlib import Path

    runner = _client(args).remote(args.pod)
    result = runner.upload(
        Path(args.local),
        args.remote,
        exclude=tuple(args.exclude),
        delete=args.delete,
        on_progress=_transfer_progress(args),
    )
    return _transfer_done(args, result, "uploaded")


def _download(args: argparse.Namespace) -> int:
    from pathlib import Path

    runner = _client(args).remote(args.pod)
    result = runner.download(args.remote, Path(args.local), on_progress=_transfer_progress(args))
    return _transfer_done(args, result, "downloaded")


def _forget_host_key(args: argparse.Namespace) -> int:
    from .remote import forget_host_key

    removed = forget_host_key(_client(args).known_hosts, args.pod)
    emit(
        args,
        {"pod": args.pod, "removed": removed},
        f"forgot the pinned host key of {args.pod}" if removed else f"no host key was pinned for {args.pod}",
    )
    return 0


def _authorize_key(args: argparse.Namespace) -> int:
    from .sshkeys import authorize_on_account, ensure_keypair

    client = _client(args)
    key = ensure_keypair(client.ssh_key_path())
    added = authorize_on_account(client.pod_api, key)
    emit(
        args,
        {"added": added, "public_key": key},
        "added our key to your account's SSH keys (your other keys are kept)"
        if added
        else "our key is already in your account's SSH keys",
    )
    return 0


def _add_remote_commands(commands: _Commands, pods: _Commands) -> None:
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
    down = commands.command("download", "copy a file or dir from a pod (path-safe)", _download)
    down.add_argument("pod")
    down.add_argument("remote")
    down.add_argument("local")
    pods.command(
        "forget-host-key", "drop a pod's pinned SSH host key (after a restart)", _forget_host_key
    ).add_argument("pod")
    pods.command("authorize-key", "add our SSH key to your RunPod account keys (keeps yours)", _authorize_key)


# --- serverless ------------------------------------------------------------------------------------------


def _serve_local(args: argparse.Namespace) -> int:
    import signal
    import threading

    from .endpoint_emulator import LocalEndpoint

    endpoint = LocalEndpoint(
        args.tasks,
        workers=args.workers,
        slots_per_worker=args.slots,
        port=args.port,
        host=args.host,
        endpoint_id=args.endpoint_id,
    ).start()
    url = f"{endpoint.base_url}/{args.endpoint_id}"
    emit(
        args,
        {"url": url, "base_url": endpoint.base_url, "endpoint_id": args.endpoint_id, "workers": args.workers},
        f"serving {args.endpoint_id} at {url} with {args.workers} worker(s); Ctrl-C stops.\n"
        f'  rph sls run-sync {args.endpoint_id} --base-url {endpoint.base_url} \'{{"task": "...", "input": ...}}\'',
    )
    sys.stdout.flush()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        endpoint.stop()
    return 0


def _endpoint_of(args: argparse.Namespace) -> Any:
    return _client(args).endpoint(args.endpoint, base_url=args.base_url)


def _json_arg(text: str) -> Any:
    from .errors import ConfigError

    try:
        return json.loads(text)
    except ValueError as exc:
        raise ConfigError(
            f"Not valid JSON: {text!r} ({exc}). Quote it for your shell, e.g. '{{\"x\": 1}}'."
        ) from exc


def _sls(args: argparse.Namespace) -> int:
    endpoint = _endpoint_of(args)
    action = args.sls_action
    if action == "run":
        result: Any = {"id": endpoint.run(_json_arg(args.input), webhook=args.webhook)}
    elif action == "run-sync":
        result = {"output": endpoint.run_sync(_json_arg(args.input), wait_s=args.wait_s)}
    elif action == "stream":
        for chunk in endpoint.stream(args.job_id):
            sys.stdout.write(json.dumps(chunk) + "\n")
            sys.stdout.flush()
        return 0
    elif action == "status":
        result = endpoint.status(args.job_id)
    elif action == "cancel":
        result = endpoint.cancel(args.job_id)
    elif action == "retry":
        result = endpoint.retry(args.job_id)
    elif action == "health":
        result = endpoint.health()
    else:
        result = endpoint.purge_queue()
    emit(args, result, json.dumps(result, indent=2, default=str))
    return 0


def _batch(args: argparse.Namespace) -> int:
    from pathlib import Path

    client = _client(args)
    if args.batch_action == "status":
        records = client.job_store.batch_jobs(args.batch_id)
        counts: dict[str, int] = {}
        for record in records:
            counts[record.status] = counts.get(record.status, 0) + 1
        batch = client.job_store.get_batch(args.batch_id)
        payload = {
            "batch_id": args.batch_id,
            "inputs": len(batch.inputs) if batch else None,
            "jobs": len(records),
            "statuses": counts,
            "state": batch.status if batch else "UNKNOWN",
        }
        emit(args, payload, json.dumps(payload, indent=2))
        return 0
    if args.batch_action == "resume":
        batch = client.job_store.get_batch(args.batch_id)
        if batch is None:
            from .errors import NotFoundError

            raise NotFoundError(f"No batch {args.batch_id!r} in the local job store.")
        endpoint = client.endpoint(batch.endpoint_id, base_url=batch.base_url)
        results = list(endpoint.resume_batch(args.batch_id))
    else:
        inputs = [json.loads(line) for line in Path(args.inputs).read_text().splitlines() if line.strip()]
        endpoint = _endpoint_of(args)
        results = list(
            endpoint.map(
                args.task, inputs, concurrency=args.concurrency, retries=args.retries, batch_id=args.batch_id
            )
        )
    emit(args, {"results": results}, "\n".join(json.dumps(r, default=str) for r in results))
    return 0


def _endpoint_manage(args: argparse.Namespace) -> int:
    from .cli_env import parse_env

    endpoints = _client(args).endpoints
    action = args.manage_action
    if action == "deploy":
        info = endpoints.deploy(
            args.name,
            args.image,
            args.gpu.split(","),
            workers_max=args.workers_max,
            workers_min=args.workers_min,
            idle_timeout_s=args.idle_timeout,
            execution_timeout_s=args.execution_timeout,
            env=parse_env(args.env),
            network_volume_id=args.network_volume,
        )
        emit(
            args,
            _as_json(info),
            f"deployed {info.name}: id {info.id}\nadd to your settings: "
            f'[endpoints]\n{info.name} = "{info.id}"',
        )
    elif action == "list":
        infos = endpoints.list()
        emit(
            args,
            [_as_json(i) for i in infos],
            "\n".join(
                f"{i.id:<16} {i.name:<24} {','.join(i.gpu_pools):<24} workers {i.workers_min}-{i.workers_max}"
                for i in infos
            )
            or "no endpoints",
        )
    elif action == "get":
        info = endpoints.get(args.endpoint)
        emit(args, _as_json(info), json.dumps(_as_json(info), indent=2))
    else:
        endpoints.delete(args.endpoint)
        emit(args, {"deleted": args.endpoint}, f"deleted {args.endpoint} and its template")
    return 0


def _add_serverless_commands(commands: _Commands) -> None:
    endpoint = commands.group("endpoint", "serverless endpoints: deploy and manage, or serve one locally")
    deploy = endpoint.command(
        "deploy", "create a worker template and an endpoint that runs it", _endpoint_manage
    )
    deploy.set_defaults(manage_action="deploy")
    deploy.add_argument("--name", required=True)
    deploy.add_argument("--image", required=True, help="your worker image (see serverless_worker/README.md)")
    deploy.add_argument("--gpu", required=True, help="GPU pools, comma-separated, e.g. AMPERE_16,ADA_24")
    deploy.add_argument("--workers-max", type=int, required=True)
    deploy.add_argument("--workers-min", type=int, default=0, help="always-on workers (billed while idle)")
    deploy.add_argument("--idle-timeout", type=int, default=5, metavar="S")
    deploy.add_argument("--execution-timeout", type=int, default=600, metavar="S")
    deploy.add_argument("--env", action="append", default=[], metavar="K=V")
    deploy.add_argument("--network-volume")
    endpoint.command("list", "your endpoints", _endpoint_manage).set_defaults(manage_action="list")
    for action, help_text in (("get", "one endpoint"), ("delete", "delete an endpoint and its template")):
        parser = endpoint.command(action, help_text, _endpoint_manage)
        parser.set_defaults(manage_action=action)
        parser.add_argument("endpoint", help="endpoint id or name")
    serve = endpoint.command("serve-local", "serve a local endpoint with real worker processes", _serve_local)
    serve.add_argument("--tasks", action="append", required=True, help="module defining @task functions")
    serve.add_argument("--workers", type=int, default=1)
    serve.add_argument("--slots", type=int, default=1, help="tasks each worker runs at once")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--endpoint-id", default="local")

    sls = commands.group("sls", "jobs on a serverless endpoint")
    for action, help_text, takes in (
        ("run", "queue a job; prints its id", "input"),
        ("run-sync", "run and wait for the output", "input"),
        ("status", "a job's status", "job"),
        ("stream", "a job's streamed output, line by line", "job"),
        ("cancel", "cancel a job", "job"),
        ("retry", "retry a FAILED or TIMED_OUT job", "job"),
        ("health", "queue and worker counts", ""),
        ("purge", "drop every queued job", ""),
    ):
        parser = sls.command(action, help_text, _sls)
        parser.set_defaults(sls_action=action)
        parser.add_argument("endpoint", help="endpoint id, or its name in the settings' [endpoints]")
        if takes == "input":
            parser.add_argument(
                "input", help='the job input as JSON, e.g. \'{"task": "embed", "input": [...]}\''
            )
            parser.add_argument("--webhook")
            parser.add_argument("--wait-s", type=float, default=90.0)
        elif takes == "job":
            parser.add_argument("job_id")
        parser.add_argument("--base-url", help="e.g. http://127.0.0.1:8000/v2 for `rph endpoint serve-local`")

    batch = commands.group("batch", "many inputs through one @task, resumable after a crash")
    submit = batch.command("submit", "run a task over a JSON-lines file of inputs", _batch)
    submit.set_defaults(batch_action="submit")
    submit.add_argument("endpoint")
    submit.add_argument("task")
    submit.add_argument("inputs", help="file with one JSON input per line")
    submit.add_argument("--concurrency", type=int, default=8)
    submit.add_argument("--retries", type=int, default=2)
    submit.add_argument("--batch-id", help="name the batch (to resume it later)")
    submit.add_argument("--base-url")
    for action, help_text in (
        ("status", "what a batch has done"),
        ("resume", "finish a batch after a crash"),
    ):
        parser = batch.command(action, help_text, _batch)
        parser.set_defaults(batch_action=action)
        parser.add_argument("batch_id")


# --- hybrid jobs -----------------------------------------------------------------------------------------


def _hybrid(args: argparse.Namespace) -> Any:
    from .client import Hybrid

    return Hybrid(config=_load_config(args))


def _plan_text(plan: Any) -> str:
    cost = (
        "free"
        if plan.estimated_cost_usd == 0
        else (
            "unknown (no live price)"
            if plan.estimated_cost_usd is None
            else f"${plan.estimated_cost_usd:.4f}"
        )
    )
    lines = [f"backend: {plan.backend}   estimated cost: {cost}   start in ~{plan.estimated_start_s:.0f}s"]
    lines += [f"  because {reason}" for reason in plan.reasons]
    for alt in plan.alternatives:
        alt_cost = "?" if alt.estimated_cost_usd is None else f"${alt.estimated_cost_usd:.4f}"
        lines.append(f"  instead of {alt.backend} ({alt_cost}): {alt.why_not}")
    lines.append(f"  prices: {plan.price_source}")
    if plan.refused:
        lines.append(f"REFUSED: {plan.refused}")
    return "\n".join(lines)


def _plan(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .jobspec import load_job_file

    plan = _hybrid(args).plan(load_job_file(Path(args.job_file)), args.backend)
    emit(args, _as_json(plan), _plan_text(plan))
    return 1 if plan.refused else 0


def _run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .jobspec import load_job_file

    return _run_job(args, load_job_file(Path(args.job_file)))


def _pods_run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .errors import ConfigError
    from .jobspec import JobSpec

    if not args.command_argv:
        raise ConfigError("Give the command after --, e.g. `rph pods run --gpu A40 -- python train.py`.")
    job = JobSpec.for_command(
        list(args.command_argv),
        workdir=str(Path(args.workdir).resolve()),
        outputs=tuple(args.output),
        gpu_types=tuple(args.gpu),
        image=args.image,
        spot=args.spot,
        on_finish=args.on_finish,
        gpu_count=args.count,
    )
    args.backend = "pod"
    return _run_job(args, job)


def _run_job(args: argparse.Namespace, job: Any) -> int:
    hybrid = _hybrid(args)

    def show(text: str) -> None:
        if not args.json:
            sys.stdout.write(text)
            sys.stdout.flush()

    plan = hybrid.plan(job, args.backend)
    if not args.json:
        sys.stderr.write(_plan_text(plan) + "\n")
    plan, handle = hybrid.jobs.submit(
        job, backend=args.backend, detach=args.detach, on_text=show, planned=plan
    )
    state = handle.status()
    payload: dict[str, Any] = {
        "job_id": handle.id,
        "backend": handle.backend,
        "state": state,
        "plan": _as_json(plan),
    }
    human = f"job {handle.id}: {state}"
    if job.kind == "task" and state == "SUCCEEDED":
        payload["results"] = handle.result()
        human += "\n" + "\n".join(json.dumps(r) for r in payload["results"])
    elif job.kind == "command" and state == "SUCCEEDED" and job.outputs:
        paths = [str(p) for p in handle.fetch()]
        payload["outputs"] = paths
        human += "\noutputs (verified): " + ", ".join(paths)
    elif args.detach:
        human += f"\nfollow with: rph jobs logs {handle.id}; results: rph jobs fetch {handle.id}"
    emit(args, payload, human)
    return 0 if state in ("SUCCEEDED", "RUNNING") else 1


def _jobs(args: argparse.Namespace) -> int:
    from pathlib import Path

    jobs = _hybrid(args).jobs
    action = args.jobs_action
    if action == "list":
        handles = jobs.recent(args.limit)
        rows = [
            {
                "id": h.id,
                "backend": h.backend,
                "name": h.record.name,
                "state": h.record.status,
                "pod_id": h.record.pod_id,
            }
            for h in handles
        ]
        emit(
            args,
            rows,
            "\n".join(f"{r['id']:<12} {r['backend']:<10} {r['state']:<10} {r['name']}" for r in rows)
            or "no jobs yet",
        )
        return 0
    handle = jobs.get(args.job_id)
    if action == "status":
        state = handle.status()
        emit(args, {"job_id": handle.id, "backend": handle.backend, "state": state}, f"{handle.id}: {state}")
    elif action == "logs":
        text = handle.logs(args.tail)
        emit(args, {"job_id": handle.id, "logs": text}, text)
    elif action == "fetch":
        paths = [str(p) for p in handle.fetch(Path(args.dest) if args.dest else None)]
        emit(args, {"job_id": handle.id, "outputs": paths}, "\n".join(paths))
    else:
        state = handle.cancel()
        emit(args, {"job_id": handle.id, "state": state}, f"{handle.id}: {state}")
    return 0


def _add_job_commands(commands: _Commands) -> None:
    for name, handler, help_text in (
        ("plan", _plan, "where a job would run, why, and what it would cost"),
        ("run", _run, "run a job file (local without a RunPod key)"),
    ):
        parser = commands.command(name, help_text, handler)
        parser.add_argument("job_file", help="a TOML job file (see examples/)")
        parser.add_argument("--backend", choices=("auto", "serverless", "pod", "local"), default="auto")
        if name == "run":
            parser.add_argument("--detach", action="store_true", help="start and return (command jobs)")
    jobs = commands.group("jobs", "jobs started by `rph run`, on any backend")
    start = jobs.command("start", "start a job file and return (same as `rph run --detach`)", _run)
    start.add_argument("job_file")
    start.add_argument("--backend", choices=("auto", "serverless", "pod", "local"), default="auto")
    start.set_defaults(detach=True)
    lister = jobs.command("list", "recent jobs", _jobs)
    lister.set_defaults(jobs_action="list")
    lister.add_argument("--limit", type=int, default=20)
    for action, help_text in (
        ("status", "a job's state"),
        ("logs", "a job's log tail"),
        ("fetch", "download a job's outputs, verified"),
        ("cancel", "stop a job"),
    ):
        parser = jobs.command(action, help_text, _jobs)
        parser.set_defaults(jobs_action=action)
        parser.add_argument("job_id")
        if action == "logs":
            parser.add_argument("--tail", type=int, default=200)
        if action == "fetch":
            parser.add_argument("--dest", help="where to put them (default rph-outputs/<job>)")


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
    _add_remote_commands(commands, _add_pod_commands(commands))
    _add_serverless_commands(commands)
    _add_job_commands(commands)
    return parser


def _report_error(args: argparse.Namespace, exc: Exception) -> int:
    from .redact import redact_text

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
    from .errors import RunPodHybridError
    from .logs import configure_logging

    configure_logging(args.log_level, json_output=True if args.log_json else None)
    try:
        result: int = args.handler(args)
    except (RunPodHybridError, ValueError) as exc:  # ValueError: arguments the SDK refuses
        return _report_error(args, exc)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130
    return result


if __name__ == "__main__":
    sys.exit(main())
