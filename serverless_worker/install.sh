#!/bin/sh
# The worker image's install steps: the Dockerfile runs this, and scripts/check_worker_image.py runs it in a
# fresh venv. Usage: install.sh SRC APP
#   SRC  runpod-hybrid's sources (pyproject.toml, sdk/, mcp_server/, serverless_worker/)
#   APP  the project whose @task modules the worker serves (RPH_TASKS names them)
set -eu
src=$1
app=$2
python -m pip install --no-cache-dir "$src[worker]"
if [ -f "$app/requirements.txt" ]; then
  python -m pip install --no-cache-dir -r "$app/requirements.txt"
fi
# RunPod's local test input: the project's own, else the one for the bundled example.
if [ ! -f "$app/test_input.json" ]; then
  cp "$src/serverless_worker/test_input.json" "$app/test_input.json"
fi
# The runtime would prefer a baked key over the one RunPod gives each worker.
rm -rf "${HOME:-/root}/.runpod"
# Fail the build, not the first job, when the task modules cannot be imported.
cd "$app"
python -c 'import os; from runpod_hybrid.serverless import load_task_modules; print(sorted(load_task_modules(os.environ["RPH_TASKS"].split(","))))'
