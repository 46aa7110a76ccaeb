"""Raw MCP protocol messages shared by the tests and bench/mcp_startup.py."""

from __future__ import annotations

from typing import Any

# The JSON-RPC `initialize` request a 2025-06-18 MCP client sends first (raw-protocol tests of rph-mcp).
MCP_INITIALIZE: dict[str, Any] = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "test", "version": "1"},
    },
}
