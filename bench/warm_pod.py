"""Time to a job's first log line on a fresh pod against a warm one, in one run: the API stand-in with a
simulated boot (a new pod has no container for --boot-s seconds) and a real sshd playing the pod.

    .venv/bin/python bench/warm_pod.py [--boot-s 10] [--files 300] [--total-mb 30]

Each run is what `rph run job.toml` does, in process (the SDK's ``jobs.run``): plan (with the GPU query and
the warm-pod probe), create or reuse, wait, sync the work dir, start the runner, follow the log. The first
run makes a pod and keeps it warm (``on_finish = "keep"``); the second changes one file and runs again
(the planner finds the warm pod); the third changes nothing.

Targets (issue "Iterate on a warm pod"): our overhead above the simulated boot on a fresh pod at most 2 s;
a second run on a warm pod with unchanged files under 1.5 s.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from runpod_hybrid import RunPod  # noqa: E402
from runpod_hybrid._http import HttpTransport  # noqa: E402
from runpod_hybrid.config import ApiKey, Settings, load_config  # noqa: E402
from runpod_hybrid.controlplane import GraphQLClient, GraphQLPodApi, SshEndpoint  # noqa: E402
from runpod_hybrid.jobs import Jobs, JobSpec, PodCommandBackend  # noqa: E402
from runpod_hybrid.pods import Pods  # noqa: E402
from runpod_hybrid.remote import CommandRunner, SshRunner  # noqa: E402

from runpod_standin import start_standin  # noqa: E402
from sshd_pod import SshdPod  # noqa: E402

KEY = "rpa_BENCHKEY0000000000000000000000000000"
POD_ID = "benchpod000001"
GPU = "NVIDIA RTX A4000"


def wire(graphql_url: str, pod: SshdPod, home: Path) -> Jobs:
    """Jobs as the client wires them (GPU offers, warm pods, the pod backend), with SSH that sees the sshd
    pod's container env, as SSH on a real pod sees RunPod's."""
    config = load_config(KEY, env={}, home=home)
    client = RunPod(config=config, graphql_url=graphql_url)

    def open_runner(pod_id: str, _endpoint: SshEndpoint) -> SshRunner:
        return pod.runner(pod_id)

    api = GraphQLPodApi(GraphQLClient(HttpTransport(ApiKey(KEY, "bench")), graphql_url))
    pods = Pods(api, Settings(), public_key=lambda: "ssh-ed25519 AAAA bench", open_runner=open_runner)

    def remote(pod_id: str) -> CommandRunner:
        pods.ssh_endpoint(
            pod_id
        )  # the SSH contact that (re-)arms the watchdog, as the client's remote() does
        return pod.runner(pod_id)

    return Jobs(
        client.job_store,
        config.settings,
        has_api_key=True,
        backends={("command", "pod"): PodCommandBackend(pods, remote, root=str(pod.workspace), poll_s=2.0)},
        pod_offers=client._pod_offers,
        warm_pods=lambda job: pods.warm(job.pod),
    )


def first_line_s(jobs: Jobs, job: JobSpec) -> float:
    """Seconds from the call to the job's first log line (the job then runs to its end)."""
    started = time.perf_counter()
    first: list[float] = []

    def on_text(_text: str) -> None:
        if not first:
            first.append(time.perf_counter() - started)

    jobs.run(job, on_text=on_text)
    return first[0]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--boot-s", type=float, default=10.0, help="simulated image pull and container start")
    parser.add_argument("--files", type=int, default=300)
    parser.add_argument("--total-mb", type=float, default=30)
    args = parser.parse_args()

    base = Path(tempfile.mkdtemp(prefix="rph-bench-warm-"))
    os.environ["XDG_STATE_HOME"] = str(base / "state")  # the bench's job store, not the user's
    graphql, stop_graphql = start_standin(KEY)
    pod = SshdPod(base / "pod").setup()
    try:
        graphql.state.boot_s = args.boot_s
        graphql.state.next_pod_ids.append(POD_ID)
        graphql.state.new_pod_runtime = pod.pod_runtime()
        pod.set_container_env({"RUNPOD_POD_ID": POD_ID, "PATH": os.environ["PATH"]})
        work = base / "project"
        for i in range(args.files):
            (work / f"d{i % 20:02d}").mkdir(parents=True, exist_ok=True)
            (work / f"d{i % 20:02d}" / f"f{i}.bin").write_bytes(
                os.urandom(int(args.total_mb * 1e6 / args.files))
            )
        (work / "train.sh").write_text('echo "step 1 on $RPH_JOB_ID"\n')
        home = base / "home"
        home.mkdir()
        os.chdir(base)
        jobs = wire(graphql.url, pod, home)
        job = JobSpec.for_command(
            ["sh", "train.sh"], workdir=str(work), gpu_types=(GPU,), on_finish="keep", idle_stop_min=5
        )

        fresh = first_line_s(jobs, job)
        (work / "d00" / "f0.bin").write_bytes(os.urandom(1000))
        warm_changed = first_line_s(jobs, job)
        warm_unchanged = first_line_s(jobs, job)
        creates = len(graphql.state.calls_of("CreateOnDemandPod"))
    finally:
        pod.stop()
        stop_graphql()
        shutil.rmtree(base, ignore_errors=True)

    overhead = fresh - args.boot_s
    print(
        f"{args.files} files, {args.total_mb:g} MB; simulated boot {args.boot_s:g} s; pods created: {creates}"
    )
    print(f"fresh pod:                first log line after {fresh:6.2f} s (our overhead {overhead:.2f} s)")
    print(
        f"warm pod, 1 file changed: first log line after {warm_changed:6.2f} s ({fresh / warm_changed:.1f}x sooner)"
    )
    print(
        f"warm pod, nothing changed: first log line after {warm_unchanged:6.2f} s ({fresh / warm_unchanged:.1f}x sooner)"
    )
    print(
        f"targets: overhead <= 2 s: {'met' if overhead <= 2 else 'MISSED'}; "
        f"unchanged warm run < 1.5 s: {'met' if warm_unchanged < 1.5 else 'MISSED'}"
    )


if __name__ == "__main__":
    main()
