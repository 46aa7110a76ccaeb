"""Start-up of `rph-mcp` against the official `@runpod/mcp-server` (npm), in the same run: spawn to the
`initialize` answer, and to the first `tools/list` answer, over stdio.

    .venv/bin/python bench/mcp_startup.py [--runs 5]

Installs @runpod/mcp-server@4.0.0 into .node/ on first use (its listing needs no network). Target (issue
"MCP server"): add nothing to the ~0.5 s floor of importing mcp.server; tools/list within 1.5x of theirs.
rph-mcp is measured twice: on a first launch (no recorded answers: the SDK answers once it has loaded, the
floor plus our registration) and on later launches, which answer from the SDK's recorded answers while it
loads (mcp_server/fast_start.py). The ratio is for later launches, the case a client meets every day.
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
    with tempfile.TemporaryDirectory() as scratch:
        # First launch: no recorded answers yet, so both come from the SDK once it has loaded.
        first = [
            timed_session(rph_mcp, {**env, "XDG_CACHE_HOME": f"{scratch}/first-{i}"})
            for i in range(args.runs)
        ]
        # Later launches of the same install answer from the record while the SDK loads.
        ours = [
            timed_session(rph_mcp, {**env, "XDG_CACHE_HOME": f"{scratch}/later"}) for _ in range(args.runs)
        ]
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

    print(f"median of {args.runs} runs, stdio")
    print(
        f"rph-mcp, first launch: initialize {med(first, 0):.3f}s, tools/list {med(first, 1):.3f}s "
        f"({first[0][2]} tools)"
    )
    print(
        f"rph-mcp, later       : initialize {med(ours, 0):.3f}s, tools/list {med(ours, 1):.3f}s ({ours[0][2]} tools)"
    )
    print(
        f"@runpod/mcp-server   : initialize {med(theirs, 0):.3f}s, tools/list {med(theirs, 1):.3f}s ({theirs[0][2]} tools)"
    )
    print(f"import mcp.server alone: {floor:.3f}s")
    print(
        f"tools/list ratio ours/theirs = {med(ours, 1) / med(theirs, 1):.2f} (target <= 1.5); "
        f"first launch {med(first, 1) / med(theirs, 1):.2f}"
    )


if __name__ == "__main__":
    main()
