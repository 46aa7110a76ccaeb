"""CI step: the MCP Inspector CLI (a real client from npm) lists our tools and calls read-only ones over
stdio. Asserts on the JSON it prints, not on its exit code (an isError result still exits 0)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

INSPECTOR = ["npx", "-y", "@modelcontextprotocol/inspector@0.15.0", "--cli"]


def inspect(*args: str, home: str) -> dict:
    server = [os.path.join(os.path.dirname(sys.executable), "rph-mcp")]
    out = subprocess.run(
        [*INSPECTOR, *server, "-e", f"HOME={home}", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    try:
        return json.loads(out.stdout)
    except ValueError:
        raise SystemExit(
            f"inspector printed no JSON (exit {out.returncode}):\n{out.stdout}\n{out.stderr}"
        ) from None


def main() -> None:
    home = tempfile.mkdtemp(prefix="rph-inspector-")
    tools = {t["name"] for t in inspect("--method", "tools/list", home=home)["tools"]}
    assert len(tools) == 28 and {"plan_job", "create_pod", "terminate_pod"} <= tools, sorted(tools)
    jobs = inspect("--method", "tools/call", "--tool-name", "list_jobs", home=home)
    assert not jobs.get("isError") and json.loads(jobs["content"][0]["text"])["jobs"] == [], jobs
    plan = inspect(
        "--method",
        "tools/call",
        "--tool-name",
        "plan_job",
        "--tool-arg",
        "job_file=examples/train/job.toml",
        home=home,
    )
    assert json.loads(plan["content"][0]["text"])["plan"]["backend"] == "local", plan
    pods = inspect("--method", "tools/call", "--tool-name", "list_pods", home=home)
    assert pods.get("isError") and "RUNPOD_API_KEY" in pods["content"][0]["text"], pods
    print(f"inspector: {len(tools)} tools listed; list_jobs, plan_job and list_pods answered as expected")


if __name__ == "__main__":
    main()
