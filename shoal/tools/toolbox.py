"""Toolbox: one tool call from the model, checked, run and cut to size.

Every tool a run offers goes through here, the workspace tools and the rest
alike (``finish``, skills, team tools, ``delegate``, MCP servers' tools: see
:meth:`Toolbox.add`): permissions (mode, rules, a person's approval), the
change watch, output fitting and timing are done once, for all of them.
:meth:`Toolbox.call` never raises for anything the model sent or a tool hit:
bad JSON, unknown tools, invalid arguments, refusals and failures all come back
as a :class:`ToolResult` with ``ok=False`` and a message saying what to do next.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, ValidationError, computed_field

from shoal.tools.base import ToolError, ToolOutput
from shoal.tools.output import fit
from shoal.tools.permissions import Asker, PermissionRequest, Permissions, Rule
from shoal.tools.registry import TOOLS, Tool, known
from shoal.tools.workspace import Workspace

log = logging.getLogger(__name__)


Watch = Callable[[PermissionRequest], contextlib.AbstractContextManager[Any]]
"""Wraps the run of one allowed call, given what the call is."""


class CallHooks(Protocol):
    """Runs around each allowed call (plugins' hooks): may refuse it, may add to its result."""

    def before(self, name: str, args: Any, request: PermissionRequest) -> str | None: ...

    def after(
        self, name: str, args: Any, request: PermissionRequest, output: ToolOutput
    ) -> str | None: ...


class ToolResult(BaseModel):
    """The outcome of one tool call, as recorded and as given back to the model."""

    model_config = ConfigDict(frozen=True, use_attribute_docstrings=True)

    name: str
    """The tool called (as the model spelled it)."""
    ok: bool
    """False if the call was refused or failed, or its command exited non-zero."""
    output: str
    """The text for the model: output, or what went wrong and what to do next."""
    truncated_path: str | None = None
    """Where the full output was saved when ``output`` had to be cut."""
    duration_s: float = 0.0
    """Wall time of the call, in seconds."""
    exit_code: int | None = None
    """Exit code of the command run by shell or git (None if none ran or it timed out)."""
    denied: bool = False
    """True if permissions refused the call (nothing ran)."""
    final: str | None = None
    """Set when the call ends the agent's run (``finish``): its summary."""

    @computed_field  # type: ignore[prop-decorator]
    @property
    def is_error(self) -> bool:
        return not self.ok


class Toolbox:
    """The tools of one workspace under one set of permissions."""

    def __init__(
        self,
        workspace: Workspace,
        permissions: Permissions | None = None,
        *,
        asker: Asker | None = None,
        watch: Watch | None = None,
    ) -> None:
        """``asker`` decides calls that need approval; without one they are denied.
        ``watch`` wraps each call that runs (e.g. to learn which files it changed)."""
        self.workspace = workspace
        self.permissions = permissions or Permissions()
        self.asker = asker
        self.watch = watch
        self.hooks: CallHooks | None = None
        """Set by the run's owner when plugins' hooks apply (a refusal counts as denied)."""
        self.tools: dict[str, Tool] = dict(TOOLS)
        self.only: tuple[str, ...] | None = None
        """Names (``server__*`` patterns too) of the only tools offered and run; None: all."""
        self.only_for = ""
        unknown = sorted({r.tool for r in self.permissions.rules if not known(r.tool)} - {"*"})
        if unknown:
            # A typo in a deny rule must not silently let the call through.
            raise ValueError(
                f"permission rules name unknown tools {', '.join(unknown)}; "
                f"the tools are {', '.join(TOOLS)}"
            )

    @property
    def names(self) -> list[str]:
        return [name for name in self.tools if self.allows(name)]

    def restrict(self, names: list[str], who: str) -> None:
        """Offer and run only ``names`` (patterns such as ``server__*`` allowed), whatever is
        added later: ``who`` (an agent definition) may use nothing else."""
        self.only = tuple(names)
        self.only_for = who

    def allows(self, name: str) -> bool:
        from fnmatch import fnmatchcase

        return self.only is None or any(fnmatchcase(name, pattern) for pattern in self.only)

    def add(self, tools: list[Tool]) -> None:
        """Offer ``tools`` too (after the workspace tools, in order)."""
        preapproved = []
        for tool in tools:
            if tool.name in self.tools:
                raise ValueError(f"two tools are named {tool.name}")
            self.tools[tool.name] = tool
            if tool.preapproved:
                preapproved.append(Rule(action="allow", tool=tool.name))
        if preapproved:
            rules = [*self.permissions.rules, *preapproved]
            self.permissions = self.permissions.model_copy(update={"rules": rules})

    def schemas(self) -> list[dict[str, Any]]:
        return [tool.schema() for tool in self.tools.values() if self.allows(tool.name)]

    def close(self) -> None:
        """Close the tools that hold something (servers, handles), each once."""
        for tool in self.tools.values():
            if tool.close is not None:
                try:
                    tool.close()
                except Exception:
                    log.exception("closing tool %s failed", tool.name)

    def call(self, name: str, arguments: dict[str, Any] | str | None) -> ToolResult:
        started = time.monotonic()
        denied = False
        try:
            output, denied = self._call(name, arguments)
        except ToolError as exc:
            output = ToolOutput(str(exc), ok=False)
        except PermissionError as exc:
            output = ToolOutput(f"{name} failed: permission denied: {exc.filename}", ok=False)
        except OSError as exc:
            where = f": {exc.filename}" if exc.filename else ""
            output = ToolOutput(f"{name} failed: {exc.strerror or exc}{where}", ok=False)
        except Exception as exc:
            log.exception("tool %s failed", name)
            output = ToolOutput(f"{name} failed: {type(exc).__name__}: {exc}", ok=False)
        fitted = fit(output, self.workspace.outputs_dir, name)
        return ToolResult(
            name=name,
            ok=output.ok,
            output=fitted.text,
            truncated_path=str(fitted.saved) if fitted.saved else None,
            duration_s=round(time.monotonic() - started, 6),
            exit_code=output.exit_code,
            denied=denied,
            final=output.final,
        )

    def _call(self, name: str, arguments: dict[str, Any] | str | None) -> tuple[ToolOutput, bool]:
        tool = self.tools.get(name)
        if tool is not None and not self.allows(name):
            # Offered or not, a call by name outside the list never runs.
            names = ", ".join(self.names)
            refusal = f"{self.only_for} may not use {name}; its tools are {names}"
            return ToolOutput(refusal, ok=False), True
        if tool is None:
            names = ", ".join(self.names)
            raise ToolError(f"there is no tool named {name!r}; the tools are {names}")
        args: Any = _parse(tool, arguments)
        if tool.args is not None:
            try:
                args = tool.args.model_validate(args)
            except ValidationError as exc:
                raise ToolError(_invalid(tool, exc)) from None
        request = tool.request(self.workspace, args)
        decision = self.permissions.authorize(request, self.asker)
        if not decision.allowed:
            denied_by_rule = decision.rule is not None and decision.rule.action == "deny"
            reason = decision.reason + ("" if denied_by_rule else request.hint)
            return ToolOutput(reason, ok=False), True
        refusal = self.hooks.before(tool.name, args, request) if self.hooks else None
        if refusal is not None:
            return ToolOutput(refusal, ok=False), True
        with self.watch(request) if self.watch else contextlib.nullcontext():
            output = tool.run(self.workspace, args)
        note = self.hooks.after(tool.name, args, request, output) if self.hooks else None
        if note:
            output = dataclasses.replace(
                output, footer="\n".join(filter(None, [output.footer, note]))
            )
        return output, False


def _parse(tool: Tool, arguments: dict[str, Any] | str | None) -> dict[str, Any]:
    if arguments is None or (isinstance(arguments, str) and not arguments.strip()):
        arguments = {}
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError as exc:
            raise ToolError(
                f"the arguments for {tool.name} are not valid JSON ({exc.msg} at "
                f"character {exc.pos}); send a JSON object such as {_example(tool)}"
            ) from None
    if not isinstance(arguments, dict):
        raise ToolError(
            f"the arguments for {tool.name} must be a JSON object such as {_example(tool)}, "
            f"not {type(arguments).__name__}"
        )
    return arguments


def _invalid(tool: Tool, exc: ValidationError) -> str:
    problems = []
    for error in exc.errors():
        field = ".".join(str(p) for p in error["loc"]) or "arguments"
        if error["type"] == "missing":
            problems.append(f"{field} is required")
        elif error["type"] == "extra_forbidden":
            problems.append(f"{field} is not an argument of {tool.name}")
        else:
            problems.append(f"{field}: {error['msg']} (got {_short(error.get('input'))})")
    return (
        f"invalid arguments for {tool.name}: {'; '.join(problems)}. "
        f"{tool.name} takes {_signature(tool)}"
    )


def _signature(tool: Tool) -> str:
    parts = []
    assert tool.args is not None  # only a model's validation errors are explained
    for name, field in tool.args.model_fields.items():
        parts.append(name if field.is_required() else f"{name} (optional)")
    return ", ".join(parts)


def _example(tool: Tool) -> str:
    if tool.args is None:
        required = list((tool.parameters or {}).get("required", []))
    else:
        required = [n for n, f in tool.args.model_fields.items() if f.is_required()]
    return "{" + ", ".join(f'"{n}": ...' for n in required) + "}"


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."
