"""shell: one bash command in the workspace root, with a timeout that kills its process group."""

from __future__ import annotations

import os
import signal

from pydantic import Field

from shoal import process
from shoal.tools.base import ToolArgs, ToolError, ToolOutput
from shoal.tools.workspace import Workspace
from shoal.workspace.git import without_redirects

DEFAULT_TIMEOUT = 120.0
MAX_TIMEOUT = 600.0

# Nothing may wait for a terminal: no pagers, no credential prompts.
QUIET_ENV = {"PAGER": "cat", "GIT_PAGER": "cat", "GIT_TERMINAL_PROMPT": "0"}


class ShellArgs(ToolArgs):
    command: str = Field(min_length=1)
    """The bash command line to run (pipes, &&, redirections allowed)."""
    timeout: float = Field(DEFAULT_TIMEOUT, gt=0, le=MAX_TIMEOUT)
    """Seconds before the command and everything it started are killed (default 120,
    at most 600)."""


SHELL = f"""\
Run a command with `bash -c` in the workspace root and return its exit code and \
combined stdout/stderr. stdin is empty (/dev/null), so nothing interactive works; \
pass flags such as --yes or --no-pager instead. The command is killed with all its \
child processes after `timeout` seconds (default {DEFAULT_TIMEOUT:g}, max \
{MAX_TIMEOUT:g}); background processes still running when it exits are stopped. Use \
read_file, write_file, edit_file, glob and grep for files rather than cat, sed or find."""


def shell(ws: Workspace, args: ShellArgs) -> ToolOutput:
    if not ws.root.is_dir():
        raise ToolError(f"the workspace root {ws.root} no longer exists")
    try:
        done = process.run(
            ["bash", "-c", args.command],
            cwd=ws.root,
            # A GIT_DIR or GIT_WORK_TREE from the user's shell would point the model's
            # git at another repository than the workspace.
            env={**without_redirects(os.environ), **QUIET_ENV},
            timeout=args.timeout,
        )
    except FileNotFoundError:
        raise ToolError("bash is not installed or not on PATH; shell cannot run") from None
    return ToolOutput(
        done.output or "(no output)",
        footer=status(done, args.timeout),
        keep="ends",
        ok=done.exit_code == 0,
        exit_code=done.exit_code,
    )


def status(done: process.Completed, timeout: float) -> str:
    """The line(s) after a command's output saying how it ended."""
    if done.timed_out:
        lines = [
            f"timed out after {timeout:g} s: the command and all its child processes were "
            f"killed (SIGTERM, then SIGKILL). Pass a larger timeout (at most {MAX_TIMEOUT:g}) "
            "or split the work into shorter commands."
        ]
    elif done.exit_code is not None and done.exit_code < 0:
        lines = [f"killed by signal {_signal_name(-done.exit_code)}"]
    else:
        lines = [f"exit code: {done.exit_code}"]
    if done.stray_stopped:
        lines.append(
            "note: background processes still running when the command exited were stopped"
        )
    return "\n".join(lines)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)
