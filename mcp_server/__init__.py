"""runpod-hybrid's MCP server (``rph-mcp``): a thin adapter exposing the ``runpod_hybrid`` SDK as tools."""

from __future__ import annotations
