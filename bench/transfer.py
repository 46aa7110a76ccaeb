"""Transfer and exec speed over a loopback sshd, against raw rsync and scp measured in the same run.

    .venv/bin/python bench/transfer.py [--files 5000] [--total-mb 100] [--base-dir DIR]

Targets (issue "Commands and files on pods"): first upload within 1.2x of raw rsync, at least 2x faster than
`scp -r`, unchanged re-upload under 1 s, and a command over the warm multiplexed connection (what every
`rph exec` and MCP call after the first one gets) at most 0.3x a fresh `ssh host true`.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from sshd_pod import SshdPod


def timed(action: Callable[[], object]) -> float:
    # Flush what earlier steps wrote, so one contender does not pay for another's disk writeback.
    os.sync()
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--files", type=int, default=5000)
    parser.add_argument("--total-mb", type=float, default=100)
    parser.add_argument(
        "--base-dir",
        default="/dev/shm" if os.access("/dev/shm", os.W_OK) else None,  # noqa: S108 - mkdtemp makes a private dir in it
        help="where the trees go (default: tmpfs when there is one, so disk writeback is not measured)",
    )
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="rph-bench-", dir=args.base_dir))
    pod = SshdPod(base / "pod").setup()
    try:
        source = base / "src"
        size = int(args.total_mb * 1e6 / args.files)
        for i in range(args.files):
            sub = source / f"d{i % 50:02d}"
            sub.mkdir(parents=True, exist_ok=True)
            (sub / f"f{i}.bin").write_bytes(os.urandom(size))
        runner = pod.runner(pod_id="bench")
        raw_ssh = [
            "ssh",
            "-i",
            str(pod.client_key),
            "-p",
            str(pod.port),
            "-o",
            "BatchMode=yes",
            "-o",
            f"UserKnownHostsFile={base / 'raw_known_hosts'}",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "LogLevel=ERROR",
        ]
        user_host = f"{runner.target.user}@127.0.0.1"
        subprocess.run([*raw_ssh, user_host, "true"], check=True)  # accept the host key once

        ours = timed(lambda: runner.upload(source, str(pod.workspace / "ours")))
        rsync = timed(
            lambda: subprocess.run(
                [
                    "rsync",
                    "-a",
                    "-e",
                    shlex.join(raw_ssh),
                    f"{source}/",
                    f"{user_host}:{pod.workspace / 'rsync'}",
                ],
                check=True,
            )
        )
        scp = timed(
            lambda: subprocess.run(
                [
                    "scp",
                    "-q",
                    "-r",
                    "-P",
                    str(pod.port),
                    *raw_ssh[1:2],
                    str(pod.client_key),
                    "-o",
                    "BatchMode=yes",
                    "-o",
                    f"UserKnownHostsFile={base / 'raw_known_hosts'}",
                    "-o",
                    "LogLevel=ERROR",
                    str(source),
                    f"{user_host}:{pod.workspace / 'scp'}",
                ],
                check=True,
            )
        )
        again = timed(lambda: runner.upload(source, str(pod.workspace / "ours")))

        runner.exec(["true"])  # the master connection is warm now
        warm = statistics.median(timed(lambda: runner.exec(["true"])) for _ in range(15))
        fresh = statistics.median(
            timed(lambda: subprocess.run([*raw_ssh, user_host, "true"], check=True)) for _ in range(15)
        )

        print(f"files: {args.files}, total: {args.total_mb:g} MB, over loopback sshd")
        print(f"first upload  ours {ours:6.2f}s  rsync {rsync:6.2f}s  scp -r {scp:6.2f}s")
        print(f"  ours/rsync = {ours / rsync:.2f}  (target <= 1.2)")
        print(f"  scp/ours   = {scp / ours:.2f}  (target >= 2)")
        print(f"unchanged re-upload: {again:.2f}s  (target < 1 s)")
        print(
            f"exec: warm {warm * 1000:.1f} ms, fresh ssh {fresh * 1000:.1f} ms, ratio {warm / fresh:.2f} "
            "(target <= 0.3)"
        )
        runner.close()
    finally:
        pod.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
