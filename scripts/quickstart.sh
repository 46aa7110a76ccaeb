#!/usr/bin/env bash
# Set up runpod-hybrid (the SDK, `rph` and the MCP server `rph-mcp`) in a virtualenv and run the main job: a
# training-style command with checkpoints and an output file. With no RunPod key it runs on this machine;
# with RUNPOD_API_KEY set it runs on a GPU pod (created with a deadline we enforce, the job's max_runtime_s
# plus 30 min, and budget caps; stopped once its outputs are copied and verified). RPH_VENV picks the
# virtualenv (default: .venv in this checkout).
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${RPH_VENV:-.venv}
if [ ! -x "$venv/bin/python" ]; then python3 -m venv "$venv"; fi
log=$(mktemp)
if ! "$venv/bin/python" -m pip install -q -e '.[examples,mcp]' >"$log" 2>&1; then
  grep -v '^WARNING: Location' "$log" >&2
  rm -f "$log"
  exit 1
fi
rm -f "$log"
"$venv/bin/rph" plan examples/train/job.toml
"$venv/bin/rph" run examples/train/job.toml
bin=$(cd "$venv/bin" && pwd)
echo
echo "Ready: $bin/rph (the CLI) and $bin/rph-mcp (the MCP server; see the README's MCP section)."
