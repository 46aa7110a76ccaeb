#!/usr/bin/env bash
# Install everything the tests need on a fresh machine, then run every check. `.ci/run` calls this.
# Usage: bash scripts/test.sh [extra pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

# System tools the tests drive for real: OpenSSH's sshd plays a pod, rsync moves files.
need=()
command -v sshd >/dev/null 2>&1 || [ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v ssh >/dev/null 2>&1 || need+=(openssh-client)
command -v rsync >/dev/null 2>&1 || need+=(rsync)
command -v npx >/dev/null 2>&1 || need+=(nodejs npm)
if [ ${#need[@]} -gt 0 ]; then
  step "installing ${need[*]}"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  step "creating .venv"
  "$PY" -m venv .venv
fi
step "installing runpod-hybrid with its dev extra"
pip_quiet() {
  # pip's own failure fails the script; the noise of unreachable extra indexes is dropped.
  log=$(mktemp)
  if ! .venv/bin/python -m pip install -q "$@" >"$log" 2>&1; then
    grep -v '^WARNING: Location' "$log" >&2
    rm -f "$log"
    return 1
  fi
  rm -f "$log"
}
pip_quiet --upgrade pip
# A strict editable install (a link tree) so mypy can follow the package-dir mapping.
pip_quiet -e '.[dev]' --config-settings editable_mode=strict
.venv/bin/python -c 'import runpod_hybrid, runpod_hybrid_mcp, runpod_hybrid_worker'

step "ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .

step "mypy (strict)"
.venv/bin/mypy -p runpod_hybrid -p runpod_hybrid_mcp -p runpod_hybrid_worker

step "wheel: build, install into a fresh venv, import the three packages"
wheel_dir=$(mktemp -d)
wheel_venv=$(mktemp -d)
trap 'rm -rf "$wheel_dir" "$wheel_venv"' EXIT
.venv/bin/python -m build --wheel --outdir "$wheel_dir" . >"$wheel_dir/build.log" 2>&1 || { cat "$wheel_dir/build.log"; exit 1; }
"$PY" -m venv "$wheel_venv"
"$wheel_venv/bin/python" -m pip install -q --no-deps "$wheel_dir"/*.whl >"$wheel_dir/pip.log" 2>&1 \
  || { cat "$wheel_dir/pip.log"; exit 1; }
(cd "$wheel_dir" && "$wheel_venv/bin/python" -c '
import sys, runpod_hybrid, runpod_hybrid_mcp, runpod_hybrid_worker
from importlib.resources import files
assert files("runpod_hybrid").joinpath("py.typed").is_file(), "py.typed missing from the wheel"
assert files("runpod_hybrid.data").joinpath("serverless-flex-prices.json").is_file()
assert files("runpod_hybrid").joinpath("jobs", "runner.sh").is_file(), "the job runner is missing from the wheel"
assert files("runpod_hybrid").joinpath("pods", "watchdog.sh").is_file(), "the pod watchdog is missing from the wheel"
assert not {"runpod", "mcp", "requests", "structlog"} & set(sys.modules), "import runpod_hybrid is not light"
print("wheel ok:", runpod_hybrid.__file__)')

step "serverless worker image: its install steps in a fresh venv, its test input (no container runtime here)"
.venv/bin/python scripts/check_worker_image.py >"$wheel_dir/worker-image.log" 2>&1 || { cat "$wheel_dir/worker-image.log"; exit 1; }
tail -1 "$wheel_dir/worker-image.log"

step "the README's quick start in a fresh virtualenv, then its rph-mcp answers an MCP client"
quick_home=$(mktemp -d)
HOME="$quick_home" RPH_VENV="$quick_home/venv" bash scripts/quickstart.sh >"$quick_home/quickstart.log" 2>&1 \
  || { cat "$quick_home/quickstart.log"; exit 1; }
grep -q "outputs (verified)" "$quick_home/quickstart.log" || { cat "$quick_home/quickstart.log"; exit 1; }
HOME="$quick_home" "$quick_home/venv/bin/python" scripts/mcp_smoke.py "$quick_home/venv/bin/rph-mcp"
rm -rf "$quick_home"

step "MCP Inspector CLI (a real MCP client from npm) against rph-mcp"
.venv/bin/python scripts/inspector_check.py

step "MCP conformance suite (streamable HTTP)"
bash scripts/conformance_check.sh

step "pytest"
set +e
.venv/bin/python -m pytest "$@"
status=$?
set -e
if [ $status -eq 5 ]; then
  echo "pytest collected no tests: the test set-up is broken" >&2
  exit 1
fi
exit $status
