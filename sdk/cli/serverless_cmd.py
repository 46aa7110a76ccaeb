"""``rph endpoint ...``, ``rph sls ...`` and ``rph batch ...``: serverless endpoints, their jobs, and batches
of many inputs through one ``@task``."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any

from .common import EXIT_ERROR, Commands, ProgressBar, as_json, client, emit, json_arg, load_config, parse_env


def _serve_local(args: argparse.Namespace) -> int:
    from runpod_hybrid.serverless import LocalEndpoint

    # The key clients must send: --api-key, else the one `rph sls` would send (RUNPOD_API_KEY or the runpod
    # CLI's file), else a new one, printed, since nobody knows it yet.
    configured = load_config(args).api_key
    given = args.api_key or (configured.reveal() if configured else None)
    endpoint = LocalEndpoint(
        args.tasks,
        workers=args.workers,
        slots_per_worker=args.slots,
        port=args.port,
        host=args.host,
        endpoint_id=args.endpoint_id,
        api_key=given,
    ).start()
    url = f"{endpoint.base_url}/{args.endpoint_id}"
    banner: dict[str, Any] = {
        "url": url,
        "base_url": endpoint.base_url,
        "endpoint_id": args.endpoint_id,
        "workers": args.workers,
    }
    key_line = "  clients send the API key you gave (Authorization: Bearer ...)"
    if given is None:
        banner["api_key"] = endpoint.api_key
        key_line = f"  clients send this key: export RUNPOD_API_KEY={endpoint.api_key}"
    emit(
        args,
        banner,
        f"serving {args.endpoint_id} at {url} with {args.workers} worker(s); Ctrl-C stops.\n{key_line}\n"
        f'  rph sls run-sync {args.endpoint_id} --base-url {endpoint.base_url} \'{{"task": "...", "value": ...}}\'',
    )
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
    return client(args).endpoint(args.endpoint, base_url=args.base_url)


def _sls(args: argparse.Namespace) -> int:
    endpoint = _endpoint_of(args)
    action = args.sls_action
    if action == "run":
        result: Any = {"id": endpoint.run(json_arg(args.input), webhook=args.webhook)}
    elif action == "run-sync":
        result = {"output": endpoint.run_sync(json_arg(args.input), wait_s=args.wait_s)}
    elif action == "stream":
        for chunk in endpoint.stream(args.job_id):
            sys.stdout.write(json.dumps(chunk) + "\n")
            sys.stdout.flush()
        return 0
    elif action == "status" and args.wait is not None:
        final = endpoint.wait_status(args.job_id, timeout_s=args.wait)
        emit(args, final.raw, json.dumps(final.raw, indent=2, default=str))
        return 0 if final.status == "COMPLETED" else EXIT_ERROR
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


def _batch_size(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        size = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a positive integer or auto, not {text!r}") from None
    if size < 1:
        raise argparse.ArgumentTypeError("a positive integer or auto")
    return size


def _write_results(args: argparse.Namespace, batch_id: str, results: Iterator[Any]) -> None:
    """Each result as it comes (one JSON line each; under --json one object, written as it grows), so a
    batch of any size never waits in memory to be printed."""
    out = sys.stdout
    if args.json:
        out.write(json.dumps({"batch_id": batch_id})[:-1] + ', "results": [')
    for number, result in enumerate(results):
        text = json.dumps(as_json(result), default=str)
        out.write(("," if number else "") + text if args.json else text + "\n")
        out.flush()
    if args.json:
        out.write("]}\n")
    out.flush()


def _batch(args: argparse.Namespace) -> int:
    rp = client(args)
    if args.batch_action == "status":
        summary = rp.batch_summary(args.batch_id)
        emit(
            args,
            summary,
            json.dumps(
                {
                    "state": summary.state,
                    "inputs": summary.inputs,
                    **summary.inputs_by_state,
                    "possibly_submitted_twice": summary.possibly_submitted_twice,
                }
            ),
        )
        return 0
    # The bar shows from the first moment (tqdm draws on creation), before the inputs are even read.
    with ProgressBar(args, "batch", unit="input") as bar:

        def progress(p: Any) -> None:
            twice = (
                f", {p.possibly_submitted_twice} possibly submitted twice"
                if p.possibly_submitted_twice
                else ""
            )
            bar.update(p.done, p.total, f"{p.running} running, {p.retried} retried, {p.failed} failed{twice}")

        if args.batch_action == "resume":
            batch_id = args.batch_id
            results = rp.resume_batch(batch_id, on_progress=progress)
        else:
            from runpod_hybrid.serverless import InputsFile

            endpoint = _endpoint_of(args)
            results = endpoint.map(
                args.task,
                InputsFile(args.inputs),
                batch_size=args.batch_size,
                concurrency=args.concurrency,
                retries=args.retries,
                job_timeout_s=args.job_timeout,
                timeout_s=args.timeout,
                batch_id=args.batch_id,
                on_progress=progress,
            )
            batch_id = endpoint.last_batch_id
            sys.stderr.write(f"batch {batch_id} (`rph batch resume {batch_id}` finishes it if stopped)\n")
        _write_results(args, batch_id, results)
    return 0


def _endpoint_manage(args: argparse.Namespace) -> int:
    endpoints = client(args).endpoints
    action = args.manage_action
    if action == "deploy":
        info = endpoints.deploy(
            args.name,
            image=args.image,
            gpu_pools=args.gpu.split(","),
            workers_max=args.workers_max,
            workers_min=args.workers_min,
            idle_timeout_s=args.idle_timeout,
            execution_timeout_s=args.execution_timeout,
            env=parse_env(args.env),
            network_volume_id=args.network_volume,
        )
        emit(
            args,
            info,
            f'deployed {info.name}: id {info.id}\nadd to your settings: [endpoints]\n{info.name} = "{info.id}"',
        )
    elif action == "list":
        infos = endpoints.list()
        emit(
            args,
            infos,
            "\n".join(
                f"{i.id:<16} {i.name:<24} {','.join(i.gpu_pools):<24} workers {i.workers_min}-{i.workers_max}"
                for i in infos
            )
            or "no endpoints",
        )
    elif action == "get":
        info = endpoints.get(args.endpoint)
        emit(args, info, "\n".join(f"{k}: {v}" for k, v in vars(info).items()))
    else:
        endpoints.delete(args.endpoint)
        emit(args, {"deleted": args.endpoint}, f"deleted {args.endpoint} and its template")
    return 0


def add_commands(commands: Commands) -> None:
    _endpoint_commands(commands)
    _sls_commands(commands)
    _batch_commands(commands)


def _endpoint_commands(commands: Commands) -> None:
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
    serve.add_argument(
        "--api-key",
        help="the key clients must send (default: RUNPOD_API_KEY or ~/.runpod/config.toml, else a new one, printed)",
    )


def _sls_commands(commands: Commands) -> None:
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
                "input", help='the job input as JSON, e.g. \'{"task": "embed", "value": "some text"}\''
            )
            parser.add_argument("--webhook")
            parser.add_argument(
                "--wait-s", type=float, default=90.0, help="give up after this long in all (default 90)"
            )
        elif takes == "job":
            parser.add_argument("job_id")
        if action == "status":
            parser.add_argument(
                "--wait",
                type=float,
                nargs="?",
                const=90.0,
                metavar="S",
                help="wait until the job ends, at most S seconds (default 90); exit 1 unless it COMPLETED",
            )
        parser.add_argument("--base-url", help="e.g. http://127.0.0.1:8000/v2 for `rph endpoint serve-local`")


def _batch_commands(commands: Commands) -> None:
    batch = commands.group("batch", "many inputs through one @task, resumable after a crash")
    submit = batch.command("submit", "run a task over a JSON-lines file of inputs", _batch)
    submit.set_defaults(batch_action="submit")
    submit.add_argument("endpoint")
    submit.add_argument("task")
    submit.add_argument("inputs", help="file with one JSON input per line")
    submit.add_argument("--concurrency", type=int, default=8, help="jobs in flight at once")
    submit.add_argument(
        "--batch-size", type=_batch_size, default="auto", help="inputs per job, or auto (about 10 s of work)"
    )
    submit.add_argument("--retries", type=int, default=2)
    submit.add_argument(
        "--job-timeout", type=float, default=600.0, metavar="S", help="cancel and retry a job running longer"
    )
    submit.add_argument(
        "--timeout", type=float, metavar="S", help="give up on the whole batch after S seconds"
    )
    submit.add_argument(
        "--batch-id", help="name the batch (to resume it later); reused only for the same inputs"
    )
    submit.add_argument("--base-url")
    for action, help_text in (
        ("status", "what a batch has done"),
        ("resume", "finish a batch after a crash"),
    ):
        parser = batch.command(action, help_text, _batch)
        parser.set_defaults(batch_action=action)
        parser.add_argument("batch_id")
