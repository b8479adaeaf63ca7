"""git: a fixed set of git subcommands in the workspace root, never interactive.

Only status, diff, log, show, add, commit, restore, rev-parse and branch (to list)
run. Branches, remotes, history rewriting beyond commit, and everything that
could reach outside the workspace (``--output``, ``diff --no-index``) are the
orchestrator's business or simply not needed by an executor.
"""

from __future__ import annotations

import os
import shlex

from pydantic import Field, field_validator

from shoal import process
from shoal.tools.base import ToolArgs, ToolError, ToolOutput
from shoal.tools.shell import status
from shoal.tools.workspace import Workspace
from shoal.workspace.git import without_redirects

ALLOWED = ("status", "diff", "log", "show", "add", "commit", "restore", "rev-parse", "branch")
WRITES = frozenset({"add", "commit", "restore"})
TIMEOUT = 120.0

# git branch: flags that only list or filter, and those of them that take a value.
_BRANCH_LIST_FLAGS = frozenset(
    {"-a", "--all", "-r", "--remotes", "-v", "-vv", "--verbose", "--list", "-l",
     "--show-current", "--no-color", "--color", "--no-column", "--column", "-i",
     "--ignore-case", "--omit-empty", "--abbrev", "--no-abbrev"}
)  # fmt: skip
_BRANCH_VALUE_FLAGS = frozenset(
    {"--contains", "--no-contains", "--merged", "--no-merged", "--points-at", "--sort",
     "--format"}
)  # fmt: skip
# Arguments that would make git write or read files outside the repository.
_ESCAPES = ("--output", "--no-index")

ENV = {
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_PAGER": "cat",
    "PAGER": "cat",
    # A commit without -m must not wait for an editor: "true" leaves the message as is.
    "GIT_EDITOR": "true",
    "GIT_SEQUENCE_EDITOR": "true",
    # status refreshes the index under a lock by default; skip it so it never blocks others.
    "GIT_OPTIONAL_LOCKS": "0",
}


class GitArgs(ToolArgs):
    args: list[str] = Field(min_length=1)
    """The git arguments as a list, subcommand first, e.g. ["diff", "--stat"] or
    ["commit", "-m", "Fix parser"]."""

    @field_validator("args", mode="before")
    @classmethod
    def _split_string(cls, value: object) -> object:
        # Models often send "status --short" as one string; split it like a shell would.
        return shlex.split(value) if isinstance(value, str) else value


GIT = f"""\
Run git in the workspace root. `args` is the argument list with the subcommand first. \
Allowed subcommands: {", ".join(ALLOWED)} (branch only lists branches). Runs without a \
pager or prompts; `commit` needs -m. Use shell for anything else git-related only if \
the user asked for it."""


def is_write(args: list[str]) -> bool:
    """Whether these git arguments change the index, the work tree or history."""
    return bool(args) and args[0] in WRITES


def check(args: list[str]) -> None:
    """ToolError unless ``args`` is an allowed, contained git command."""
    sub = args[0]
    if sub not in ALLOWED:
        raise ToolError(
            f"git {sub} is not allowed; the subcommand must come first and be one of: "
            f"{', '.join(ALLOWED)}"
        )
    for arg in args[1:]:
        if arg.split("=", 1)[0] in _ESCAPES:
            raise ToolError(f"git {sub} {arg} is not allowed: it reaches outside the workspace")
    if sub == "branch":
        _check_branch(args[1:])


def git(ws: Workspace, args: GitArgs) -> ToolOutput:
    check(args.args)
    if not ws.root.is_dir():
        raise ToolError(f"the workspace root {ws.root} no longer exists")
    try:
        done = process.run(
            ["git", "--no-pager", *args.args],
            cwd=ws.root,
            env={**without_redirects(os.environ), **ENV},
            timeout=TIMEOUT,
        )
    except FileNotFoundError:
        raise ToolError("git is not installed or not on PATH") from None
    footer = "" if done.exit_code == 0 else status(done, TIMEOUT)
    return ToolOutput(
        done.output or "(no output)",
        footer=footer,
        keep="ends" if is_write(args.args) else "head",
        ok=done.exit_code == 0,
        exit_code=done.exit_code,
    )


def _check_branch(rest: list[str]) -> None:
    listing = False
    expect_value = False
    positional = []
    for arg in rest:
        if expect_value:
            expect_value = False
            continue
        name = arg.split("=", 1)[0]
        if name in _BRANCH_VALUE_FLAGS:
            expect_value = "=" not in arg
        elif name in _BRANCH_LIST_FLAGS:
            listing = listing or name in ("--list", "-l")
        elif arg.startswith("-") and not arg.startswith("--") and set(arg[1:]) <= set("arvli"):
            # Bundled short flags such as -av or -rl.
            listing = listing or "l" in arg
        else:
            if arg.startswith("-"):
                _refuse_branch(arg)
            positional.append(arg)
    if positional and not listing:
        _refuse_branch(positional[0])


def _refuse_branch(arg: str) -> None:
    raise ToolError(
        f"git branch {arg} is not allowed: git branch may only list branches here "
        "(e.g. --show-current, -a, --list 'feat*'); creating, renaming or deleting branches "
        "is not allowed"
    )
