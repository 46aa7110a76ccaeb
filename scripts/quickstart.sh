#!/usr/bin/env bash
# Set up runpod-hybrid in .venv and run the main job. Works with no RunPod key.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then python3 -m venv .venv; fi
.venv/bin/python -m pip install -q -e . 2>&1 | grep -v '^WARNING: Location' || true
.venv/bin/rph --version
.venv/bin/rph config show
