"""One short check on a real GPU machine (the device tool): the pod job runner, as the local backend runs
it, starts a CUDA workload detached, reports real nvidia-smi telemetry through `status()` while it runs,
and its output is fetched and verified. Prints a JSON summary (and writes it to $OUT when set).

    python3 scripts/device_gpu_check.py
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

from runpod_hybrid.localrunner import LocalRunner
from runpod_hybrid.podjobs import PodJobs, PodJobSpec

WORKLOAD = r"""
import json, os, time, torch
a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
torch.cuda.synchronize(); start = time.time(); n = 0
while time.time() - start < 12:
    for _ in range(20):
        c = a @ b
    torch.cuda.synchronize(); n += 20
elapsed = time.time() - start
os.makedirs("out", exist_ok=True)
json.dump({"device": torch.cuda.get_device_name(), "matmuls": n,
           "tflops": round(2 * 8192**3 * n / elapsed / 1e12, 1), "attempt": os.environ["RPH_ATTEMPT"]},
          open("out/result.json", "w"))
print("done", n, flush=True)
"""


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="rph-gpu-"))
    work = root / "work"
    work.mkdir()
    (work / "load.py").write_text(WORKLOAD)
    jobs = PodJobs(LocalRunner(), str(root))
    jobs.start(PodJobSpec("gpu-check", ["python3", "load.py"], str(work), outputs=("out",), heartbeat_s=1))
    samples = []
    deadline = time.monotonic() + 120
    while not (status := jobs.status("gpu-check")).finished and time.monotonic() < deadline:
        samples.append(
            [
                {
                    "util": g.util_percent,
                    "mem_used_mib": g.memory_used_mib,
                    "power_w": g.power_w,
                    "temp_c": g.temperature_c,
                    "name": g.name,
                }
                for g in status.gpus
            ]
        )
        time.sleep(1)
    fetch_error = None
    try:
        fetched = jobs.fetch("gpu-check", ["out"], str(work), root / "fetched")
    except Exception as exc:  # any failure is reported in the summary
        fetched, fetch_error = [], str(exc)
    summary = {
        "state": status.state,
        "exit_code": status.exit_code,
        "attempt": status.attempt,
        "telemetry_samples": len(samples),
        "peak_util_percent": max((g["util"] or 0 for s in samples for g in s), default=None),
        "peak_power_w": max((g["power_w"] or 0 for s in samples for g in s), default=None),
        "gpu_names": sorted({g["name"] for s in samples for g in s}),
        "result": json.loads(fetched[0].read_text()) if fetched else None,
        "fetch_error": fetch_error,
        "log_tail": jobs.logs("gpu-check", tail_lines=3),
    }
    text = json.dumps(summary, indent=2)
    print(text)
    if os.environ.get("OUT"):
        Path(os.environ["OUT"], "gpu_check.json").write_text(text)


if __name__ == "__main__":
    main()
