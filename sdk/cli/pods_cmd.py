"""``rph gpus``, ``rph pods ...`` and ``rph spend``: GPU types with live stock and price, the pod lifecycle
with each pod's deadline and guards, and what is billing now."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .common import (
    EXIT_ERROR,
    Commands,
    as_json,
    client,
    confirmed,
    emit,
    money,
    on_a_terminal,
    parse_env,
    status_line,
)


def _gpus(args: argparse.Namespace) -> int:
    types = client(args).gpus.list(
        gpu_count=args.count,
        min_vram_gb=args.min_vram,
        cloud_type=args.cloud.upper(),
        data_center_id=args.data_center,
    )
    rows = [
        f"{'GPU TYPE ID':<34} {'NAME':<16} {'VRAM':>5}  {'SECURE':>8} {'STOCK':<6}  {'COMMUNITY':>9} {'STOCK':<6}  {'SPOT':>6}"
    ]
    for gpu in types:
        secure, community = gpu.offer("SECURE"), gpu.offer("COMMUNITY")
        rows.append(
            f"{gpu.id:<34} {gpu.display_name:<16} {gpu.memory_gb:>4}G  "
            f"{money(secure.usd_per_gpu_hour if secure else None):>8} {(secure.stock_status if secure else None) or '-':<6}  "
            f"{money(community.usd_per_gpu_hour if community else None):>9} {(community.stock_status if community else None) or '-':<6}  "
            f"{money(gpu.secure_spot_usd_per_hour):>6}"
        )
    rows.append(f"prices per GPU-hour for {args.count} GPU(s); '-' means out of stock now")
    rows += sorted({f"note: {m}" for gpu in types for m in gpu.missing})
    emit(args, types, "\n".join(rows))
    return 0


def pod_line(pod: Any) -> str:
    ssh = pod.ssh
    return (
        f"{pod.id:<16} {pod.status:<10} {money(pod.usd_per_hour) + '/h':>9}  {pod.gpu_count}x "
        f"{pod.gpu_display_name or pod.gpu_type_id or '?':<14} {'spot' if pod.is_spot else '':<4} "
        f"{ssh.host + ':' + str(ssh.port) if ssh else '-':<22} {pod.name}"
    )


def deadline_text(deadline: Any, hours_left: float | None, projected_usd: float | None) -> str:
    """``stops 11-27 12:00Z (in 5.2h, $3.59 more)``, or what stands for it."""
    if deadline is None:
        return "no deadline"
    left = f"in {hours_left:.1f}h" if hours_left else "past"
    more = f", {money(projected_usd)} more" if projected_usd is not None else ""
    return f"stops {deadline:%m-%d %H:%M}Z ({left}{more})"


def guard_line(guard: Any) -> str:
    """One pod and its guards: the pod line, then its deadline, the guards that hold it, and what happened."""
    holds = " + ".join(guard.guards) if guard.guards else "nothing of ours"
    stopped = "  STOPPED NOW: past its deadline" if guard.stopped_now else ""
    return (
        f"{pod_line(guard.pod)}\n    {deadline_text(guard.deadline, guard.hours_left, guard.projected_usd)}; "
        f"held by {holds}{stopped}"
    )


def overview_text(overview: Any, empty: str) -> str:
    lines = [guard_line(g) for g in overview.pods] or [empty]
    lines += [f"stopped (past its deadline): {pod_id}" for pod_id in overview.stopped]
    lines += [f"warning: {w}" for w in overview.warnings]
    return "\n".join(lines)


def _list(args: argparse.Namespace) -> int:
    overview = client(args).pods.overview(status=args.status, name=args.name, ours_only=args.ours)
    human = overview_text(overview, "no pods")
    human += f"\n{len(overview.pods)} pod(s); running ones cost {money(overview.running_usd_per_hour)}/h"
    emit(args, overview, human)
    return 0


def _get(args: argparse.Namespace) -> int:
    guard = client(args).pods.guard(args.pod)
    emit(args, guard, guard_line(guard) + (f"\nwarning: {guard.warning}" if guard.warning else ""))
    return 0


def _reap(args: argparse.Namespace) -> int:
    overview = client(args).pods.overview(ours_only=True)
    emit(args, overview, overview_text(overview, "no pods of ours") + f"\n{len(overview.stopped)} stopped")
    return 0


def _extend(args: argparse.Namespace) -> int:
    guard = client(args).pods.extend(args.pod, hours=args.hours)
    emit(args, guard, guard_line(guard) + (f"\nwarning: {guard.warning}" if guard.warning else ""))
    return 0


def _spend(args: argparse.Namespace) -> int:
    spend = client(args).pods.spend()
    lines = [
        f"{g.pod.id:<16} {money(g.usd_per_hour) + '/h':>9}  up {(g.pod.runtime.uptime_s if g.pod.runtime else 0) / 3600:.1f}h  "
        f"{deadline_text(g.deadline, g.hours_left, g.projected_usd)}; held by "
        f"{' + '.join(g.guards) if g.guards else 'nothing of ours'}  {g.pod.name}"
        for g in spend.running
    ] or ["nothing is billing for a GPU"]
    lines += [
        f"total {money(spend.usd_per_hour)}/h for GPUs; RunPod reports the account spending "
        f"{money(spend.account_usd_per_hour)}/h with a balance of {money(spend.balance_usd)}",
        f"caps: {money(spend.max_pod_usd_per_hour)}/h per pod, {money(spend.max_total_usd_per_hour)}/h in all "
        f"(0: none); new pods stop after {spend.max_pod_hours:g}h (max_pod_hours; 0: no deadline)",
    ]
    lines += [f"stopped (past its deadline): {pod_id}" for pod_id in spend.stopped]
    lines += [f"warning: {w}" for w in spend.warnings]
    emit(args, spend, "\n".join(lines))
    return 0


def _spec_from_args(args: argparse.Namespace) -> Any:
    from runpod_hybrid import PodSpec

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
        env=parse_env(args.env),
        extra_ports=tuple(args.port),
        spot=args.spot,
        bid_per_gpu_usd=args.bid,
        max_hours=args.max_hours,
        docker_args=args.docker_args,
        data_center_id=args.data_center,
    )


def _create(args: argparse.Namespace) -> int:
    spec = _spec_from_args(args)
    pods = client(args).pods
    if args.dry_run:
        preview = pods.preview(spec)
        payload = {
            "dry_run": True,
            "max_usd_per_hour": preview.max_usd_per_hour,
            "cost_note": "upper bound: create refuses any candidate over max_pod_usd_per_hour; live prices need the API",
            "deadline": preview.deadline,
            "guards": preview.guards,
            "watchdog_armed_at": preview.watchdog_armed_at,
            "projected_max_usd": preview.projected_max_usd,
            "attempts_in_order": [
                {"operation": c.operation, "variables": c.arguments} for c in preview.calls
            ],
        }
        guards = (
            f"stopped at {preview.deadline:%Y-%m-%d %H:%M}Z by the {' and the '.join(preview.guards)} (the "
            f"watchdog is armed at the {preview.watchdog_armed_at}), so at most {money(preview.projected_max_usd)} "
            "until then"
            if preview.deadline
            else "no deadline: it runs and bills until someone stops it"
        )
        human = [
            f"dry run: {len(preview.calls)} create attempt(s) in order, at most "
            f"{money(preview.max_usd_per_hour)}/h (env values hidden); {guards}"
        ]
        human += [f"  {c.operation}: {json.dumps(c.arguments)}" for c in preview.calls]
        emit(args, payload, "\n".join(human))
        return 0

    def on_attempt(attempt: Any) -> None:
        if not args.json:
            sys.stderr.write(
                f"  {attempt.gpu_type_id} ({attempt.cloud_type}, {money(attempt.usd_per_hour)}/h): "
                f"{attempt.outcome}{' - ' + attempt.detail if attempt.detail else ''}\n"
            )

    result = pods.create(spec, on_attempt=on_attempt)
    pod = result.pod
    if args.wait:
        pod = pods.wait_until_ready(pod.id, on_progress=status_line(args))
    guard = pods.guard(pod.id)
    created: dict[str, Any] = {
        "pod": guard.pod,
        "attempts": result.attempts,
        "usd_per_hour": guard.pod.usd_per_hour,
        "deadline": guard.deadline,
        "guards": guard.guards,
        "projected_usd": guard.projected_usd,
        "warning": guard.warning,
    }
    text = f"created {pod.id} at {money(pod.usd_per_hour)}/h\n{guard_line(guard)}"
    emit(args, created, text + (f"\nwarning: {guard.warning}" if guard.warning else ""))
    return 0


def _start(args: argparse.Namespace) -> int:
    pod = client(args).pods.start(args.pod, bid_per_gpu_usd=args.bid)
    emit(args, pod, f"started {pod.id}: {pod_line(pod)}")
    return 0


def _restart(args: argparse.Namespace) -> int:
    pod = client(args).pods.restart(args.pod)
    emit(args, pod, f"restarted {pod.id} (container disk wiped, /workspace kept): {pod_line(pod)}")
    return 0


def _stop(args: argparse.Namespace) -> int:
    pod = client(args).pods.stop(args.pod)
    emit(args, pod, f"stopped {pod.id} (its volume disk keeps billing until you terminate it)")
    return 0


def _terminate(args: argparse.Namespace) -> int:
    if not confirmed(
        args,
        refusal=f"Terminating deletes {args.pod} and its volume disk.",
        prompt=f"Terminate {args.pod}? Its volume disk is deleted. Type the pod id to confirm: ",
        expected=args.pod,
    ):
        return EXIT_ERROR
    client(args).pods.terminate(args.pod)
    emit(args, {"terminated": args.pod}, f"terminated {args.pod}")
    return 0


def _wait(args: argparse.Namespace) -> int:
    pod = client(args).pods.wait_until_ready(
        args.pod, timeout_s=args.timeout_s, need_ssh=not args.no_ssh, on_progress=status_line(args)
    )
    if on_a_terminal(args):
        sys.stderr.write("\n")
    emit(args, pod, f"ready: {pod_line(pod)}")
    return 0


def _telemetry(args: argparse.Namespace) -> int:
    t = client(args).pods.telemetry(args.pod)
    lines = [
        f"{t.pod_id} {t.status}: up {t.uptime_s}s, {money(t.usd_per_hour)}/h, {money(t.cost_since_start_usd)} "
        f"since start; cpu {t.cpu_percent}% mem {t.memory_percent}%"
    ]
    lines += [
        f"  gpu {g.id}: util {g.util_percent}% mem {g.memory_util_percent}% "
        f"temp {g.temperature_c}C power {g.power_w}W"
        for g in t.gpus
    ]
    lines += [f"  not reported: {m}" for m in t.missing]
    emit(args, t, "\n".join(lines))
    return 0


def _ssh_info(args: argparse.Namespace) -> int:
    rp = client(args)
    endpoint = rp.pods.ssh_endpoint(args.pod)
    command = f"ssh {endpoint.user}@{endpoint.host} -p {endpoint.port} -i {rp.ssh_key_path}"
    emit(args, {**as_json(endpoint), "command": command}, command)
    return 0


def _forget_host_key(args: argparse.Namespace) -> int:
    removed = client(args).forget_host_key(args.pod)
    emit(
        args,
        {"pod": args.pod, "removed": removed},
        f"forgot the pinned host key of {args.pod}" if removed else f"no host key was pinned for {args.pod}",
    )
    return 0


def _authorize_key(args: argparse.Namespace) -> int:
    added, key = client(args).pods.authorize_ssh_key()
    emit(
        args,
        {"added": added, "public_key": key},
        "added our key to your account's SSH keys (your other keys are kept)"
        if added
        else "our key is already in your account's SSH keys",
    )
    return 0


def _warm(args: argparse.Namespace) -> int:
    warm = client(args).pods.warm()
    rows = []
    for w in warm:
        busy = {True: "a job runs", False: "idle", None: "?"}[w.busy]
        idle = "-" if w.idle_left_s is None else f"{w.idle_left_s / 60:.0f} min"
        rows.append(f"{pod_line(w.pod)}\n    {busy}; idle stop in {idle}; deadline {w.guard.deadline or '-'}")
    payload = [
        {"pod": w.pod, "busy": w.busy, "idle_left_s": w.idle_left_s, "deadline": w.guard.deadline}
        for w in warm
    ]
    emit(args, payload, "\n".join(rows) or "no running pods of ours: `rph pods create` or a job makes one")
    return 0


def add_commands(commands: Commands) -> Commands:
    """``rph gpus`` and the ``rph pods`` group (returned, so other groups can add to it)."""
    gpus = commands.command("gpus", "GPU types with live stock and price per GPU-hour", _gpus)
    gpus.add_argument("--count", type=int, default=1, help="GPUs per pod (stock differs by count)")
    gpus.add_argument("--min-vram", type=int, default=0, metavar="GB")
    gpus.add_argument("--cloud", choices=("secure", "community", "all"), default="all")
    gpus.add_argument("--data-center", help="stock in one data centre, e.g. EU-RO-1")

    pods = commands.group("pods", "create, inspect and manage GPU pods")
    lister = pods.command(
        "list",
        "your pods with their deadlines, guards and cost; ours past their deadline are stopped first",
        _list,
    )
    lister.add_argument("--status", help="e.g. RUNNING or EXITED")
    lister.add_argument("--name", help="substring of the pod name")
    lister.add_argument("--ours", action="store_true", help="only pods created by runpod-hybrid")
    for name, help_text, handler in (
        ("get", "one pod, its deadline and the guards that hold it", _get),
        ("stop", "stop a pod (releases the GPU; the volume disk keeps billing)", _stop),
        ("restart", "restart a running pod's container (REST v2; container disk wiped)", _restart),
        ("telemetry", "utilisation and cost so far", _telemetry),
        ("ssh-info", "the direct SSH endpoint", _ssh_info),
        ("forget-host-key", "drop a pod's pinned SSH host key (after a restart)", _forget_host_key),
    ):
        pods.command(name, help_text, handler).add_argument("pod", help="pod id")
    start = pods.command("start", "resume a stopped pod (spot pods bid again)", _start)
    start.add_argument("pod")
    start.add_argument("--bid", type=float, help="spot bid per GPU-hour (default: the pod's last price)")
    term = pods.command("terminate", "delete a pod and its volume disk", _terminate)
    term.add_argument("pod")
    term.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    wait = pods.command("wait", "wait until a pod runs and accepts SSH", _wait)
    wait.add_argument("pod")
    wait.add_argument("--timeout-s", type=float, default=900.0)
    wait.add_argument("--no-ssh", action="store_true", help="do not wait for SSH")
    pods.command("authorize-key", "add our SSH key to your RunPod account keys (keeps yours)", _authorize_key)
    pods.command(
        "reap",
        "stop our pods that are past their deadline, and name ours whose watchdog was never armed "
        "(every command that lists pods does this too)",
        _reap,
    )
    pods.command("warm", "running pods of ours a job could use now, with their idle-stop time", _warm)
    extend = pods.command("extend", "move a pod's deadline later, for every guard", _extend)
    extend.add_argument("pod")
    extend.add_argument(
        "--hours", type=float, required=True, help="hours to add (from now, if the deadline has passed)"
    )
    commands.command(
        "spend",
        "what is billing now: running pods with $/h, age, deadline and guards, the total, the account's "
        "balance, and the caps in force",
        _spend,
    )

    create = pods.command("create", "create a pod (a deadline, SSH and budget caps on by default)", _create)
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
    create.add_argument(
        "--network-volume", help="network volume id or name to attach (the pod runs in its data centre)"
    )
    create.add_argument("--data-center", help="data centre id to place the pod in, e.g. EU-RO-1")
    create.add_argument("--env", action="append", default=[], metavar="KEY=VALUE")
    create.add_argument("--port", action="append", default=[], help="extra port, e.g. 8888/http")
    create.add_argument("--docker-args", help="start command (replaces the image's /start.sh)")
    create.add_argument("--spot", action="store_true", help="interruptible pod at a bid price")
    create.add_argument("--bid", type=float, help="spot bid per GPU-hour (default: current minimum)")
    create.add_argument(
        "--max-hours",
        type=float,
        help="stop the pod this many hours after creation (default: max_pod_hours, 24; 0: no deadline). "
        "A watchdog on the pod and every rph/MCP call that lists pods enforce it; RunPod itself does not",
    )
    create.add_argument("--dry-run", action="store_true", help="print the exact create calls; call nothing")
    create.add_argument("--wait", action="store_true", help="wait until the pod accepts SSH")
    return pods
