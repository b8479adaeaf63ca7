"""MCP servers whose tools an agent can use: their configuration, approval and sessions.

``config`` (server lists and approvals) is light; ``host`` and ``tools`` import
the MCP SDK and are only imported where they run. shoal as an MCP server
(``shoal mcp serve``) is a client of shoal and lives with the CLI
(:mod:`shoal.cli.mcp_serve`).
"""
