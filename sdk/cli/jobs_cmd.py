"""``rph plan``, ``rph run``, ``rph pods run`` and ``rph jobs ...``: jobs on whichever backend fits."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .common import EXIT_ERROR, EXIT_INTERRUPTED, Commands, as_json, client, emit

BACKENDS = ("auto", "serverless", "pod", "local")


def _plan_text(plan: Any) -> str:
    if plan.estimated_cost_usd == 0:
        cost = "free"
    elif plan.estimated_cost_usd is None:
        cost = "unknown (no live price)"
    else:
        cost = f"${plan.estimated_cost_usd:.4f}"
    lines = [f"backend: {plan.backend}   estimated cost: {cost}   start in ~{plan.estimated_start_s:.0f}s"]
    lines += [f"  because {reason}" for reason in plan.reasons]
    for alt in plan.alternatives:
        alt_cost = "?" if alt.estimated_cost_usd is None else f"${alt.estimated_cost_usd:.4f}"
        lines.append(f"  instead of {alt.backend} ({alt_cost}): {alt.why_not}")
    lines.append(f"  prices: {plan.price_source}")
    if plan.refused:
        lines.append(f"REFUSED: {plan.refused}")
    return "\n".join(lines)


def _job_file(args: argparse.Namespace) -> Any:
    from runpod_hybrid import load_job_file

    return load_job_file(Path(args.job_file))


def _plan(args: argparse.Namespace) -> int:
    plan = client(args).jobs.plan(_job_file(args), backend=args.backend, pod=args.pod)
    emit(args, plan, _plan_text(plan))
    return EXIT_ERROR if plan.refused else 0


def _run(args: argparse.Namespace) -> int:
    return _run_job(args, _job_file(args))


def _pods_run(args: argparse.Namespace) -> int:
    from runpod_hybrid import JobSpec
    from runpod_hybrid.errors import ConfigError

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
    jobs = client(args).jobs

    def show(text: str) -> None:
        if not args.json:
            sys.stdout.write(text)
            sys.stdout.flush()

    pod = getattr(args, "pod", None)  # `rph pods run` makes a new pod: it has no --pod
    plan = jobs.plan(job, backend=args.backend, pod=pod)
    if not args.json:
        sys.stderr.write(_plan_text(plan) + "\n")
    handle = jobs.submit(job, plan=plan, pod=pod)
    payload: dict[str, Any] = {"job_id": handle.id, "backend": handle.backend, "plan": plan}
    if args.detach:
        payload["state"] = handle.status()
        emit(
            args,
            payload,
            f"job {handle.id}: {payload['state']}\nfollow with: rph jobs logs {handle.id}; "
            f"results: rph jobs fetch {handle.id}",
        )
        return 0
    try:
        state = handle.wait(show)
    except KeyboardInterrupt:
        return _interrupted(args, handle)
    payload["state"] = state
    human = f"job {handle.id}: {state}"
    if state == "SUCCEEDED" and handle.kind == "task":
        payload["results"] = handle.result()
        human += "\n" + "\n".join(json.dumps(r) for r in payload["results"])
    elif state == "SUCCEEDED":
        outputs = handle.record.result.get("outputs", []) if isinstance(handle.record.result, dict) else []
        payload["outputs"] = outputs
        if outputs:
            human += "\noutputs (verified): " + ", ".join(outputs)
    else:
        payload["error"] = handle.record.error
        if isinstance(handle.record.result, dict):
            payload["exit_code"] = handle.record.result.get("exit_code")
        human += f"\n{handle.record.error or ''}\nsee: rph jobs logs {handle.id}"
    emit(args, payload, human)
    return 0 if state == "SUCCEEDED" else EXIT_ERROR


def _interrupted(args: argparse.Namespace, handle: Any) -> int:
    """Ctrl-C while following a job. A task batch runs in this process, so it is cancelled (and can be
    resumed); a command job runs detached, so it goes on, and we say how to reach it."""
    if handle.kind == "task":
        state = handle.cancel(reason="interrupted with Ctrl-C")
        human = f"job {handle.id}: {state} (interrupted)"
        if handle.backend == "serverless":
            human += f"; finish it with: rph batch resume {handle.id}-batch"
    else:
        state = handle.status()
        human = (
            f"job {handle.id} is still {state} (it runs detached, on {handle.backend}).\n"
            f"  follow:  rph jobs logs {handle.id} --follow\n  cancel:  rph jobs cancel {handle.id}"
        )
    emit(args, {"job_id": handle.id, "backend": handle.backend, "state": state, "interrupted": True}, "")
    sys.stderr.write(human + "\n")
    return EXIT_INTERRUPTED


def _row(handle: Any) -> dict[str, Any]:
    record = handle.record
    return {
        "id": handle.id,
        "backend": handle.backend,
        "kind": handle.kind,
        "name": record.name,
        "state": record.state,
        "pod_id": record.pod_id,
    }


def _jobs(args: argparse.Namespace) -> int:
    jobs = client(args).jobs
    action = args.jobs_action
    if action == "list":
        rows = [_row(h) for h in jobs.list(args.limit)]
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
        emit(args, {**_row(handle), "state": state, "error": handle.record.error}, f"{handle.id}: {state}")
    elif action == "logs" and args.follow:

        def show(text: str) -> None:
            sys.stdout.write(text)
            sys.stdout.flush()

        try:
            state = handle.wait(None if args.json else show)
        except KeyboardInterrupt:
            return EXIT_INTERRUPTED
        emit(
            args,
            {"job_id": handle.id, "state": state, "logs": handle.logs(args.tail)},
            f"job {handle.id}: {state}",
        )
    elif action == "logs":
        text = handle.logs(args.tail)
        emit(args, {"job_id": handle.id, "logs": text}, text)
    elif action == "fetch":
        paths = [str(p) for p in handle.fetch(Path(args.dest) if args.dest else None)]
        emit(args, {"job_id": handle.id, "outputs": paths}, "\n".join(paths))
    elif action == "result":
        results = handle.result()
        emit(
            args,
            {"job_id": handle.id, "results": as_json(results)},
            "\n".join(json.dumps(r) for r in results),
        )
    else:
        state = handle.cancel()
        emit(args, {"job_id": handle.id, "state": state}, f"{handle.id}: {state}")
    return 0


def add_commands(commands: Commands, pods: Commands) -> None:
    for name, handler, help_text in (
        ("plan", _plan, "where a job would run, why, and what it would cost"),
        ("run", _run, "run a job file (local without a RunPod key)"),
    ):
        parser = commands.command(name, help_text, handler)
        parser.add_argument("job_file", help="a TOML job file (see examples/)")
        parser.add_argument("--backend", choices=BACKENDS, default="auto")
        parser.add_argument("--pod", help="run on this running pod of yours (it stays up afterwards)")
        if name == "run":
            parser.add_argument("--detach", action="store_true", help="start and return (command jobs)")
    jobs = commands.group("jobs", "jobs started by `rph run`, on any backend")
    start = jobs.command("start", "start a job file and return (same as `rph run --detach`)", _run)
    start.add_argument("job_file")
    start.add_argument("--backend", choices=BACKENDS, default="auto")
    start.add_argument("--pod", help="run on this running pod of yours (it stays up afterwards)")
    start.set_defaults(detach=True)
    lister = jobs.command("list", "recent jobs", _jobs)
    lister.set_defaults(jobs_action="list")
    lister.add_argument("--limit", type=int, default=20)
    for action, help_text in (
        ("status", "a job's state"),
        ("logs", "a job's log tail"),
        ("fetch", "download a command job's outputs, verified"),
        ("result", "a finished task job's results"),
        ("cancel", "stop a job"),
    ):
        parser = jobs.command(action, help_text, _jobs)
        parser.set_defaults(jobs_action=action)
        parser.add_argument("job_id")
        if action == "logs":
            parser.add_argument("--tail", type=int, default=200)
            parser.add_argument("--follow", action="store_true", help="stream the log until the job ends")
        if action == "fetch":
            parser.add_argument("--dest", help="where to put them (default rph-outputs/<job>)")

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
