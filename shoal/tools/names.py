"""How MCP tools are named for the model and in permission rules: ``server__tool``.

Part of the tools layer, which permission rules belong to; the MCP package
(its SDK, configuration and servers) builds on it, never the other way.
"""

from __future__ import annotations

import re

SERVER = r"[A-Za-z0-9](?:_?[A-Za-z0-9-])*"
"""A server's name: letters, digits, ``-`` and inner single ``_`` (``__`` ends it)."""
TOOL = r"[A-Za-z0-9_-]+"
"""A tool's name as the model sees it, after the ``server__`` prefix."""


def is_mcp_name(tool: str) -> bool:
    """Whether ``tool`` names an MCP server's tool (``server__tool``) or all its tools."""
    return re.fullmatch(rf"{SERVER}__(\*|{TOOL})", tool) is not None
