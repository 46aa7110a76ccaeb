"""CI step: an installed `rph-mcp` (given as the argument) starts and lists its tools to the `mcp` library's
stdio client, as an assistant's configuration would start it."""

from __future__ import annotations

import sys

import anyio
from mcp import Client, StdioServerParameters


async def main(command: str) -> None:
    async with Client(StdioServerParameters(command=command, args=[])) as client:
        tools = (await client.list_tools()).tools
    names = {tool.name for tool in tools}
    assert {"plan_job", "submit_job", "list_pods"} <= names, names
    print(f"rph-mcp from the quick start: {len(tools)} tools listed")


if __name__ == "__main__":
    anyio.run(main, sys.argv[1])
