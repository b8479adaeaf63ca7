"""The executor's tools: read, write, exact-match edit, glob, grep, shell and git.

Everything acts inside a :class:`Workspace` and under :class:`Permissions`;
:class:`Toolbox` is the one entry point the executor uses::

    box = Toolbox(Workspace([repo], home.root / "outputs"), Permissions(mode="accept-edits"))
    tools = box.schemas()                      # for the model
    result = box.call("read_file", '{"path": "README.md"}')
"""

from shoal.tools.base import ToolError
from shoal.tools.permissions import (
    Asker,
    Decision,
    PermissionMode,
    PermissionRequest,
    Permissions,
    Rule,
    ToolKind,
)
from shoal.tools.registry import TOOLS, Tool, schemas
from shoal.tools.toolbox import Toolbox, ToolResult
from shoal.tools.workspace import Workspace

__all__ = [
    "TOOLS",
    "Asker",
    "Decision",
    "PermissionMode",
    "PermissionRequest",
    "Permissions",
    "Rule",
    "Tool",
    "ToolError",
    "ToolKind",
    "ToolResult",
    "Toolbox",
    "Workspace",
    "schemas",
]
