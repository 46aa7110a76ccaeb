"""A batch of 200,000 inputs from a JSON-lines file through `rph batch submit`, against the local endpoint
with real workers: the client's peak memory, the time to its first job, progress while it runs, a crash
and a resume. The same for a tenth of the inputs, in the same run, shows the memory does not grow with
the batch.

    .venv/bin/python bench/batch_scale.py [--inputs 200000] [--workers 4]

Prints, for each size: seconds from the command's start to its first /run, the peak RSS of the `rph`
process (the resumed one's too), `rph batch status` while it runs, and the results' count after the
resume. No timed target but the issue's: the first job within 2 s.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from local_endpoint import local_endpoint

HERE = Path(__file__).resolve().parent
KEY = "bench-key"


def stats(base_url: str) -> dict[str, Any]:
    url = f"{base_url}/local/emulator-stats"
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {KEY}"})  # noqa: S310 - loopback
    with urllib.request.urlopen(request) as response:  # noqa: S310 - loopback
        answer: dict[str, Any] = json.loads(response.read())
    return answer


def rph(*argv: str, env: dict[str, str], stdout: Any = subprocess.PIPE) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "runpod_hybrid.cli", *argv],
        env=env,
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
    )


def reap(process: subprocess.Popen[str]) -> tuple[int, float]:
    """Wait for a child; its exit status and its own peak RSS in MB (wait4's rusage, Linux kB)."""
    _pid, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return process.returncode, usage.ru_maxrss / 1024


def run_batch(size: int, base_url: str, env: dict[str, str], work: Path) -> None:
    inputs = work / f"inputs-{size}.jsonl"
    with inputs.open("w") as out:
        for i in range(size):
            out.write(json.dumps({"n": i, "text": f"input number {i}"}) + "\n")
    batch_id = f"scale-{size}"
    results = work / f"results-{size}.jsonl"
    runs_before = stats(base_url)["runs_submitted"]
    started = time.perf_counter()
    with results.open("w") as sink:
        submit = rph(
            "batch",
            "submit",
            "local",
            "identity",
            str(inputs),
            "--base-url",
            base_url,
            "--batch-id",
            batch_id,
            env=env,
            stdout=sink,
        )
        while stats(base_url)["runs_submitted"] == runs_before:
            time.sleep(0.01)
        first_run_s = time.perf_counter() - started
        # Let it get going, look at its progress from another process, then crash it.
        while stats(base_url)["runs_submitted"] - runs_before < 12:
            time.sleep(0.05)
        status = subprocess.run(
            [sys.executable, "-m", "runpod_hybrid.cli", "batch", "status", batch_id],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        submit.send_signal(signal.SIGKILL)
        _code, crashed_rss_mb = reap(submit)
    with results.open("w") as sink:
        resume = rph("batch", "resume", batch_id, env=env, stdout=sink)
        code, resumed_rss_mb = reap(resume)
    total_s = time.perf_counter() - started
    assert code == 0, resume.stderr.read() if resume.stderr else code
    count = sum(1 for _ in results.open())
    final = json.loads(
        subprocess.run(
            [sys.executable, "-m", "runpod_hybrid.cli", "--json", "batch", "status", batch_id],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    print(f"{size:>7} inputs ({inputs.stat().st_size / 1e6:.1f} MB file):")
    print(f"  first /run {first_run_s:.2f} s after `rph batch submit` started (target <= 2 s)")
    print(f"  progress from another process while it ran: {status.stdout.strip()}")
    print(
        f"  peak RSS: {crashed_rss_mb:.0f} MB until killed, {resumed_rss_mb:.0f} MB for the resume to the end"
    )
    print(
        f"  after the resume: {count} results printed, state {final['state']}, {final['inputs_by_state']}, "
        f"possibly submitted twice: {final['possibly_submitted_twice']}; {total_s:.1f} s in all"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--inputs", type=int, default=200_000)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="rph-bench-scale-"))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(HERE), *sys.path]),
        "XDG_STATE_HOME": str(work / "state"),
        "RUNPOD_API_KEY": KEY,
    }
    with local_endpoint(args.workers, env) as base_url:
        for size in (args.inputs // 10, args.inputs):
            run_batch(size, base_url, env, work)


if __name__ == "__main__":
    main()
