"""Cold start of `rph-mcp` and of the official `@runpod/mcp-server` (npm), side by side in the same run:
spawn to the `initialize` answer, and to the first `tools/list` answer, over stdio. Every launch is a cold
one (nothing is cached between launches), as an assistant meets it once per session.

    .venv/bin/python bench/mcp_startup.py [--runs 5]

Installs @runpod/mcp-server@4.0.0 into .node/ on first use (its listing needs no network). Also printed:
the time to import the MCP Python SDK alone, the floor of any server built on it. No target: this is a
one-off cost per assistant session, printed so a change that makes it worse is seen.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from mcp_messages import MCP_INITIALIZE  # noqa: E402

NODE_DIR = ROOT / ".node"
MESSAGES = [
    MCP_INITIALIZE,
    {"jsonrpc": "2.0", "method": "notifications/initialized"},
    {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
]


def timed_session(argv: list[str], env: dict[str, str]) -> tuple[float, float, int]:
    started = time.perf_counter()
    process = subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env
    )
    assert process.stdin is not None and process.stdout is not None
    process.stdin.write(json.dumps(MESSAGES[0]) + "\n")
    process.stdin.flush()
    process.stdout.readline()
    initialized = time.perf_counter() - started
    process.stdin.write(json.dumps(MESSAGES[1]) + "\n" + json.dumps(MESSAGES[2]) + "\n")
    process.stdin.flush()
    listed = json.loads(process.stdout.readline())
    total = time.perf_counter() - started
    process.kill()
    process.wait()
    return initialized, total, len(listed["result"]["tools"])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    theirs_entry = NODE_DIR / "node_modules" / "@runpod" / "mcp-server" / "dist" / "stdio.mjs"
    if not theirs_entry.exists():
        NODE_DIR.mkdir(exist_ok=True)
        subprocess.run(
            ["npm", "install", "--silent", "--no-audit", "--no-fund", "@runpod/mcp-server@4.0.0"],
            cwd=NODE_DIR,
            check=True,
        )
    env = {**os.environ, "RUNPOD_API_KEY": "rpa_BENCHMARKNOTAREALKEY000000000"}
    rph_mcp = [str(Path(sys.executable).parent / "rph-mcp")]
    with tempfile.TemporaryDirectory() as home:
        ours = [timed_session(rph_mcp, {**env, "HOME": home}) for _ in range(args.runs)]
    theirs = [timed_session(["node", str(theirs_entry)], env) for _ in range(args.runs)]
    floor = statistics.median(
        [
            float(
                subprocess.run(
                    [
                        sys.executable,
                        "-c",
                        "import time; t=time.perf_counter(); import mcp.server; print(time.perf_counter()-t)",
                    ],
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout
            )
            for _ in range(args.runs)
        ]
    )

    def med(rows: list[tuple[float, float, int]], i: int) -> float:
        return statistics.median(r[i] for r in rows)

    print(f"cold start, median of {args.runs} runs, stdio")
    print(
        f"rph-mcp            : initialize {med(ours, 0):.3f}s, tools/list {med(ours, 1):.3f}s ({ours[0][2]} tools)"
    )
    print(
        f"@runpod/mcp-server : initialize {med(theirs, 0):.3f}s, tools/list {med(theirs, 1):.3f}s ({theirs[0][2]} tools)"
    )
    print(f"import mcp.server alone (the floor of rph-mcp): {floor:.3f}s")
    print(f"ratio rph-mcp / @runpod/mcp-server to tools/list: {med(ours, 1) / med(theirs, 1):.2f}")


if __name__ == "__main__":
    main()
