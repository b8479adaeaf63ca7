"""Who may do what: permission rules and modes, and the decision for one tool call.

Order of precedence, first that applies wins:

1. a matching ``deny`` rule denies (in every mode);
2. plan mode denies anything that is not a read or a network call (it is read-only);
3. bypass mode allows;
4. a matching ``ask`` rule asks;
5. a matching ``allow`` rule allows;
6. the mode's default: reads are allowed; in ``accept-edits`` edits are too;
   everything else asks.

Writing configuration that decides what shoal or another agent may do in the
repository (:func:`protected`: ``.mcp.json``, and everything under ``.shoal/`` and
``.claude/`` but their ``skills/``; at any depth, in any letter case) is a call of kind
``config``: it asks in every mode but bypass, and allow rules do not allow it,
so one task cannot widen what the next one may do.

"Ask" goes to the injected asker (a terminal prompt, a teammate's pane); without one,
or when the asker has nobody to ask (:class:`NobodyToAsk`), it is a denial that tells
the user why and which flag or rule would allow the call. Nothing is ever approved
without a person's answer.

A rule names a built-in tool, ``*`` (every tool), an MCP server's tool
(``server__tool``) or all of a server's tools (``server__*``). MCP tools the
server marks read-only are reads; any other is of kind ``mcp``, which asks.

Patterns are :func:`fnmatch.fnmatchcase` patterns (``*`` also matches ``/``)
over a path for file tools (the workspace-relative and the absolute form), over
the command for shell, over the space-joined arguments for git, over the host for
``web_fetch``, and over the arguments as compact JSON with sorted keys for MCP tools. For shell,
a deny or ask rule matches if it matches the whole command or any part of it
split at ``;``, ``&&``, ``||``, ``|``, ``&`` or a newline, and allow rules only
allow a command if every such part (split outside quotes) is allowed, it has no
``$(...)``, backticks or process substitution that could hide another command,
and it redirects no output to a file: ``>``, ``>>``, ``>|``, ``&>``, ``<>`` or
``N>`` to anything but ``/dev/null`` falls through to the mode's default (it
asks), while ``2>&1``, ``>&2``, ``N>&M`` and redirections to ``/dev/null`` are
harmless (``pytest -k "a>b"`` is no redirection). A rule without a pattern
(``shell``) allows every command.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from enum import StrEnum
from fnmatch import fnmatchcase
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from shoal.tools.names import SERVER as MCP_SERVER
from shoal.tools.names import TOOL as MCP_TOOL
from shoal.tools.workspace import folded

PROTECTED_DIRS = (".shoal", ".claude")
"""Agent configuration folders: shoal's (settings, MCP servers) and Claude Code's (settings
with permissions, hooks and environment; agents; commands). Their ``skills/`` stay writable."""
PROTECTED_FILES = (".mcp.json",)
"""Agent configuration files outside those folders: MCP servers (Claude Code's format)."""
WRITABLE_BELOW = ("skills",)


class ToolKind(StrEnum):
    """What a tool call can do, which decides the default permission."""

    READ = "read"
    """Reads files or repository state (read_file, glob, grep, read-only git)."""
    EDIT = "edit"
    """Creates or changes files in the workspace (write_file, edit_file)."""
    EXEC = "exec"
    """Runs arbitrary commands (shell)."""
    GIT_WRITE = "git-write"
    """Changes the index, work tree or history through git (add, commit, restore)."""
    MCP = "mcp"
    """Calls an MCP server's tool that does not declare itself read-only (it may do anything)."""
    CONFIG = "config"
    """Writes agent configuration in the repository (:func:`protected`): asks even in
    accept-edits, and allow rules do not allow it."""
    AGENT = "agent"
    """Works with the run itself, not the workspace: finishing, loading a skill, messages
    and memory of a team, subagents. Allowed like a read (rules may still deny or ask)."""
    NETWORK = "network"
    """Reaches out of the machine (``web_fetch``): changes no file, so plan mode may run it,
    but asks in every mode but bypass; ``web_fetch:HOST`` rules decide it by host."""


_NO_CHANGE = frozenset({ToolKind.READ, ToolKind.AGENT})
"""Kinds that change nothing in the workspace: plan mode allows them, every mode does."""
_READ_ONLY = _NO_CHANGE | {ToolKind.NETWORK}
"""Kinds plan mode does not refuse (a network call still asks)."""


class PermissionMode(StrEnum):
    DEFAULT = "default"
    """Reads allowed; edits, shell and git writes ask."""
    PLAN = "plan"
    """Read-only: edits, shell and git writes are denied."""
    ACCEPT_EDITS = "accept-edits"
    """Reads and edits allowed; shell and git writes ask."""
    BYPASS = "bypass"
    """Everything allowed except what a deny rule denies."""


Action = Literal["allow", "deny", "ask"]


class Rule(BaseModel):
    """One permission rule, e.g. ``Rule(action="deny", tool="shell", pattern="rm -rf *")``."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    action: Action
    """What to do with a matching call."""
    tool: str = Field(pattern=rf"^(\*|[a-z][a-z_]*|{MCP_SERVER}__(\*|{MCP_TOOL}))$")
    """The tool name the rule applies to, ``*`` for every tool, ``server__*`` for every
    tool of an MCP server."""
    pattern: str | None = None
    """fnmatch pattern over the call's subject (path, command, git args); None matches all."""

    def describe(self) -> str:
        return f"{self.action} {self.tool}" + (f" {self.pattern!r}" if self.pattern else "")

    def applies_to(self, tool: str) -> bool:
        if self.tool in ("*", tool):
            return True
        return self.tool.endswith("__*") and tool.startswith(self.tool[:-1])


class Permissions(BaseModel):
    """The mode and the rules of a run."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    mode: PermissionMode = PermissionMode.DEFAULT
    """The permission mode (``--permission-mode``)."""
    rules: list[Rule] = Field(default_factory=list)
    """Rules in any order; deny beats ask beats allow."""

    def decide(self, request: PermissionRequest) -> Decision:
        """The decision before anyone is asked: allow, deny or ask."""
        rules = [r for r in self.rules if r.applies_to(request.tool)]
        for rule in rules:
            if rule.action == "deny" and _matches_any_part(rule, request):
                return Decision(
                    "deny",
                    f"{request.tool} {request.subject} is denied by the permission rule "
                    f"({rule.describe()}); it is not allowed here, so take another approach "
                    "that does not need it",
                    rule,
                )
        if self.mode is PermissionMode.PLAN and request.kind not in _READ_ONLY:
            return Decision(
                "deny",
                f"the run is in plan mode (read-only), so {request.tool} is not allowed; use "
                "read_file, glob, grep and read-only git to investigate and describe the "
                "changes in your plan instead",
            )
        # An ask rule is someone saying "ask me about this": bypass skips the mode's own
        # asks, not theirs (deny wins over ask, ask over allow, in every mode).
        for rule in rules:
            if rule.action == "ask" and _matches_any_part(rule, request):
                return Decision("ask", f"the rule {rule.describe()} asks", rule)
        if self.mode is PermissionMode.BYPASS:
            return Decision("allow", "bypass mode")
        if request.kind is ToolKind.CONFIG:
            return Decision("ask", f"{request.subject} is protected configuration")
        allows = [r for r in rules if r.action == "allow"]
        if allows and _allowed(allows, request):
            return Decision("allow", "an allow rule", allows[0])
        if request.kind in _NO_CHANGE or (
            request.kind is ToolKind.EDIT and self.mode is PermissionMode.ACCEPT_EDITS
        ):
            return Decision("allow", f"{self.mode} mode")
        return Decision("ask", f"{self.mode} mode asks before {request.kind} calls")

    def authorize(self, request: PermissionRequest, asker: Asker | None) -> Decision:
        """The final decision, allow or deny: an ``ask`` goes to ``asker`` if there is one."""
        decision = self.decide(request)
        if decision.action != "ask":
            return decision
        if asker is None:
            return Decision("deny", _no_terminal(request), decision.rule)
        try:
            approved = asker(request)
        except NobodyToAsk as exc:
            return Decision("deny", str(exc), decision.rule)
        except Exception as exc:
            return Decision("deny", f"could not ask for approval of {request.tool}: {exc}")
        if approved:
            return Decision("allow", "approved by the user", decision.rule)
        return Decision(
            "deny",
            f"the user declined {request.tool} {request.subject}; do not retry it, ask the "
            "user what they want instead or take another approach",
            decision.rule,
        )


@dataclass(frozen=True)
class PermissionRequest:
    """One tool call, as the permission rules and the asker see it."""

    tool: str
    kind: ToolKind
    subject: str
    """What the call acts on: a workspace-relative path, a command, or git's arguments."""
    aliases: tuple[str, ...] = ()
    """Other spellings of the subject that rules may match (e.g. the absolute path)."""
    summary: str = ""
    """A one-line description for a person approving the call."""
    hint: str = ""
    """Added to a refusal that no deny rule made: how the user could allow the call."""


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str
    """Why; for a denial, the message the model gets."""
    rule: Rule | None = None
    """The rule that decided, if one did."""

    @property
    def allowed(self) -> bool:
        return self.action == "allow"


Asker = Callable[[PermissionRequest], bool]
"""Asks a person whether a call may run; True allows it."""


class NobodyToAsk(Exception):
    """Raised by an asker that has nobody to ask right now (no one attached to the pane,
    no answer in time): the call is refused, and the message is the reason given."""


_SEPARATORS = re.compile(r"&&|\|\||[;|&\n]")
_HIDDEN_COMMAND = re.compile(r"\$\(|`|<\(|>\(")


def _subjects(request: PermissionRequest) -> tuple[str, ...]:
    return (request.subject, *request.aliases)


def _matches(rule: Rule, subjects: tuple[str, ...]) -> bool:
    return rule.pattern is None or any(fnmatchcase(s, rule.pattern) for s in subjects)


def _parts(command: str) -> list[str]:
    return [p.strip() for p in _SEPARATORS.split(command) if p.strip()]


def _matches_any_part(rule: Rule, request: PermissionRequest) -> bool:
    subjects = _subjects(request)
    if _matches(rule, subjects):
        return True
    return request.kind is ToolKind.EXEC and any(_matches(rule, (p,)) for p in _parts(subjects[0]))


def _allowed(allows: list[Rule], request: PermissionRequest) -> bool:
    if request.kind is not ToolKind.EXEC:
        return any(_matches(rule, _subjects(request)) for rule in allows)
    command = request.subject
    if any(rule.pattern is None for rule in allows):
        return True
    if _HIDDEN_COMMAND.search(command):
        return False
    split = split_command(command)
    if split is None or split.writes_file:
        return False
    parts = split.parts
    return bool(parts) and all(any(_matches(r, (p,)) for r in allows) for p in parts)


@dataclass(frozen=True)
class SplitCommand:
    parts: list[str]
    """The commands of a command line, split at ``;`` ``&&`` ``||`` ``|`` ``&`` and newlines
    outside quotes."""
    writes_file: bool
    """It redirects output to a file (anything but ``/dev/null`` or another descriptor)."""


_WORD_END = frozenset(" \t\n;&|<>()")


def split_command(command: str) -> SplitCommand | None:
    """The parts of a shell command line and whether it writes a file by redirection;
    None if a quote is left open (the shell would refuse it; so do allow rules)."""
    parts: list[str] = []
    writes = False
    start = i = 0
    quote = ""
    while i < len(command):
        c = command[i]
        if quote:
            i += 2 if c == "\\" and quote == '"' else 1
            quote = "" if c == quote else quote
        elif c == "\\":
            i += 2
        elif c in "'\"":
            quote, i = c, i + 1
        elif c in "<>" or command.startswith("&>", i):
            i, to_file = _redirection(command, i)
            writes = writes or to_file
        elif c in ";&|\n":
            parts.append(command[start:i])
            i += 2 if command[i : i + 2] in ("&&", "||") else 1
            start = i
        else:
            i += 1
    if quote:
        return None
    parts.append(command[start:])
    return SplitCommand([p.strip() for p in parts if p.strip()], writes)


def _redirection(command: str, i: int) -> tuple[int, bool]:
    """The redirection operator at ``i``: where its target ends, and whether it writes a file."""
    if command.startswith("<<", i) or (command[i] == "<" and command[i + 1 : i + 2] != ">"):
        j = i + 1
        while j < len(command) and command[j] in "<&":
            j += 1
        return j, False  # reads: a file, a here-document, a here-string, a descriptor
    for op in ("&>>", "&>", ">>", ">|", ">&", "<>", ">"):
        if command.startswith(op, i):
            break
    target, end = _word(command, i + len(op))
    if op == ">&" and (target.isdigit() or target == "-"):
        return end, False  # N>&M, >&2, N>&- (close)
    return end, target != "/dev/null"


def _word(command: str, j: int) -> tuple[str, int]:
    """The word starting at ``j`` (after blanks), unquoted, and where it ends; "" if a quote
    in it is left open."""
    while j < len(command) and command[j] in " \t":
        j += 1
    out: list[str] = []
    quote = ""
    while j < len(command):
        c = command[j]
        if quote and c == quote:
            quote = ""
        elif quote == '"' and c == "\\" and j + 1 < len(command):
            j += 1
            out.append(command[j])
        elif quote:
            out.append(c)
        elif c in _WORD_END:
            break
        elif c in "'\"":
            quote = c
        elif c == "\\" and j + 1 < len(command):
            j += 1
            out.append(command[j])
        else:
            out.append(c)
        j += 1
    return ("" if quote else "".join(out)), j


def covered_by_always(request: PermissionRequest, tools: Collection[str]) -> bool:
    """Whether a person's "always allow this tool" (for a chat session) covers ``request``:
    its ordinary calls, never protected configuration, which is asked about every time."""
    return request.tool in tools and request.kind is not ToolKind.CONFIG


def protected(parts: Sequence[str]) -> bool:
    """True if a path, given as its components below the workspace root, is protected agent
    configuration (see :data:`PROTECTED_DIRS`); names match in any letter case."""
    names = [folded(p) for p in parts]
    if names and names[-1] in PROTECTED_FILES:
        return True
    return any(
        name in PROTECTED_DIRS and names[i + 1] not in WRITABLE_BELOW
        for i, name in enumerate(names[:-1])
    )


def _no_terminal(request: PermissionRequest) -> str:
    if request.kind is ToolKind.CONFIG:
        return (
            f"{request.tool} {request.subject} needs approval and there is no terminal to ask: "
            "it is protected configuration (it decides what shoal and other agents may do in "
            "this repository), which a person approves in every mode but bypass. Do not retry "
            "it; say in your summary what should change in it, so the user can make the "
            "change or rerun with --permission-mode bypass"
        )
    return (
        f"{request.tool} needs approval and there is no terminal to ask; rerun with "
        f"{_hint(request.kind)} or add an allow rule for {request.tool}"
    )


def _hint(kind: ToolKind) -> str:
    # accept-edits only covers edits; shell, git writes and ask-ruled reads need bypass.
    if kind is ToolKind.EDIT:
        return "--permission-mode accept-edits (or bypass)"
    return "--permission-mode bypass"
