"""What a person sees of a tool call besides its one line: an edit's short diff, a command's
output tail. Shown by the chat, a teammate's pane and ``shoal run``'s progress; the model
gets the whole result, this is only a glimpse of it."""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shoal.tools.toolbox import ToolResult

LINES = 6
"""At most this many lines, then a line saying how many more there were."""
WIDTH = 160
"""Each line cut to this many characters."""


def preview(name: str, arguments: dict[str, Any], ok: bool, output: str) -> str:
    """A few lines for ``name`` called with ``arguments``; "" when there is nothing to add."""
    if name == "edit_file" and ok:
        return _diff(str(arguments.get("old_string", "")), str(arguments.get("new_string", "")))
    if name == "write_file" and ok:
        lines = str(arguments.get("content", "")).splitlines()
        return _cut([f"+{line}" for line in lines], what="lines")
    if name in ("shell", "git"):
        return tail(output)
    return ""


def failure(result: ToolResult) -> str:
    """Why a call failed, in a line: a refusal's reason or a tool's error, or the exit code
    of a command that ran (its output's tail is the preview); "" when it went well."""
    if result.ok:
        return ""
    if result.exit_code is not None and not result.denied:
        return f"exit code {result.exit_code}"
    return first_line(result.output)


def first_line(text: str, limit: int = 300) -> str:
    """The first non-empty line of ``text``, cut to ``limit`` characters (a refusal's reason)."""
    for line in text.splitlines():
        if line.strip():
            return _clip(line.strip(), limit)
    return ""


def tail(output: str, lines: int = LINES - 2) -> str:
    """The last ``lines`` non-empty lines of a command's output (its exit code is the last)."""
    kept = [line for line in output.splitlines() if line.strip()][-lines:]
    return "\n".join(_clip(line, WIDTH) for line in kept)


def _diff(old: str, new: str) -> str:
    changed = [
        line
        for line in difflib.unified_diff(old.splitlines(), new.splitlines(), lineterm="", n=0)
        if line[:1] in "+-" and not line.startswith(("---", "+++"))
    ]
    return _cut(changed, what="changed lines")


def _cut(lines: list[str], *, what: str) -> str:
    shown = [_clip(line, WIDTH) for line in lines[:LINES]]
    if len(lines) > LINES:
        shown.append(f"… {len(lines) - LINES} more {what}")
    return "\n".join(shown)


def _clip(text: str, limit: int) -> str:
    text = text.rstrip().expandtabs(4)
    return text if len(text) <= limit else text[: limit - 1] + "…"
