"""Entry point of ``rph-mcp``."""

from __future__ import annotations

import sys


def main() -> int:
    # Logs and messages go to stderr only: stdout is the MCP protocol channel.
    sys.stderr.write("rph-mcp: the MCP tools are not built yet (tracked in the MCP server issue).\n")
    return 2
