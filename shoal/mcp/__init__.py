"""MCP: servers the executor can use (client), and shoal as an MCP server (``shoal mcp serve``).

``config`` (server lists and approvals) is light; ``host``, ``tools`` and
``serve`` import the MCP SDK and are only imported where they run.
"""
