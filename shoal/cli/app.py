"""The ``shoal`` command line. Sub-command groups live in their own modules."""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import threading
from typing import NoReturn

import typer

from shoal import __version__
from shoal.cli.groups import RunByDefault

_app = typer.Typer(
    name="shoal",
    cls=RunByDefault,
    help="shoal: a local-first AI coding agent for the terminal, built as a team of actors.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain click help: rich help formatting costs ~70 ms of imports on every --help.
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"shoal {__version__}")
        raise typer.Exit()


@_app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the version and exit."
    ),
) -> None:
    """shoal: a local-first AI coding agent for the terminal, built as a team of actors.

    State lives under $SHOAL_HOME (default ~/.shoal).
    """


# Every command, in the order help lists them: name -> (module, attribute, a group?).
# Only the command being run is imported and built (typer makes a click command of
# each registered one on every call: all of them cost ~25 ms of every start).
_ENTRIES: dict[str, tuple[str, str, bool]] = {
    "run": ("shoal.cli.run", "run", False),
    "tasks": ("shoal.cli.tasks", "tasks", False),
    "show": ("shoal.cli.tasks", "show", False),
    "status": ("shoal.cli.tasks", "status", False),
    "sql": ("shoal.cli.sql", "sql", False),
    "stats": ("shoal.cli.stats", "stats", False),
    "replay": ("shoal.cli.replay", "replay", False),
    "review": ("shoal.cli.review", "review", False),
    "commit-check": ("shoal.cli.review", "commit_check", False),
    "release-notes": ("shoal.cli.review", "release_notes", False),
    "rewind": ("shoal.cli.rewind", "rewind", False),
    "undo": ("shoal.cli.rewind", "undo", False),
    "agents": ("shoal.cli.agents", "app", True),
    "orchestrator": ("shoal.cli.app", "_orchestrator_app", True),
    "memory": ("shoal.cli.memory", "app", True),
    "learn": ("shoal.cli.learn", "app", True),
    "mcp": ("shoal.cli.mcp", "app", True),
    "config": ("shoal.cli.config", "app", True),
    "team": ("shoal.cli.app", "_team_app", True),
    "skills": ("shoal.cli.app", "_skills_app", True),
    "messages": ("shoal.cli.messages", "messages", False),
    "doctor": ("shoal.cli.doctor", "doctor", False),
    "batch": ("shoal.cli.batch", "app", True),
    "demo": ("shoal.cli.demo", "demo", False),
    "serve": ("shoal.cli.serve", "serve", False),
    "dashboard": ("shoal.cli.serve", "dashboard", False),
    "webhooks": ("shoal.cli.serve", "webhooks", False),
    "chat": ("shoal.cli.chat", "chat", False),
    "sessions": ("shoal.cli.chat", "sessions_app", True),
    "models": ("shoal.cli.models", "models", False),
    "plugin": ("shoal.cli.plugin", "app", True),
    "export": ("shoal.cli.export", "export", False),
    "import": ("shoal.cli.export", "import_", False),
}
_registered: set[str] = set()


def register(*names: str) -> typer.Typer:
    """Add these commands (all of them when none is named) to the app, once each."""
    import importlib

    for name in names or tuple(_ENTRIES):
        if name in _registered:
            continue
        _registered.add(name)
        module, attr, group = _ENTRIES[name]
        target = getattr(importlib.import_module(module), attr)
        if module == __name__:
            target = target()  # a group put together here
        if group:
            _app.add_typer(target, name=name)
        else:
            _app.command(name)(target)
    return _app


def _orchestrator_app() -> typer.Typer:
    from shoal.cli import orchestrator, runtime_demo

    orchestrator.app.command("demo")(runtime_demo.runtime_demo)
    return orchestrator.app


def _team_app() -> typer.Typer:
    from shoal.cli import team, team_run

    team.app.command("run")(team_run.team_run)
    return team.app


def _skills_app() -> typer.Typer:
    from shoal.cli import skills

    skills_app = typer.Typer(
        help="Skills shoal can use: bundled, yours, the project's.",
        no_args_is_help=True,
        rich_markup_mode=None,
    )
    skills_app.command("list")(skills.skills_list)
    skills_app.command("show")(skills.skills_show)
    return skills_app


def invoked(args: list[str]) -> str | None:
    """The command ``args`` run (``run`` for a bare task), None when it needs them all
    (help, the version, no command)."""
    if not args or args[0] in ("-h", "--help", "--version"):
        return None
    if args[0].startswith("-") or args[0] not in _ENTRIES:
        return "run"  # `shoal -C repo "fix it"`, `shoal "fix it"`: the run command's
    return args[0]


def __getattr__(name: str) -> typer.Typer:
    """``shoal.cli.app.app``: the whole command line (tests, documentation)."""
    if name == "app":
        return register()
    raise AttributeError(name)


def main() -> None:
    from shoal.cli.errors import known_errors, one_line

    if len(sys.argv) == 1 and sys.stdin.isatty() and sys.stdout.isatty():
        sys.argv.append("chat")  # bare `shoal` in a terminal chats; elsewhere it prints help
    command = invoked(sys.argv[1:])
    try:
        register(*(() if command is None else (command,)))()
    except SystemExit as exc:
        _exit_now(exc.code)
    except known_errors() as exc:
        sys.stderr.write(f"shoal: error: {one_line(exc)}\n")
        _exit_now(1)
    except KeyboardInterrupt:
        sys.stderr.write("shoal: interrupted\n")
        _exit_now(130)


def _exit_now(code: object) -> NoReturn:
    """Exit without the interpreter's teardown.

    Freeing every module and model at exit takes 40-60 ms that a user waits for at
    the end of each command; nothing of shoal's needs it (sockets and files are
    closed where they are used). What an exit does first still happens: waiting
    for non-daemon threads (and thread pools' own exit hooks), then the atexit
    hooks; the streams are flushed.
    """
    if code is None:
        code = 0
    elif not isinstance(code, int):
        sys.stderr.write(f"{code}\n")  # what `sys.exit("message")` prints
        code = 1
    wait_for_threads = getattr(threading, "_shutdown", None)  # what Py_Finalize calls first
    if wait_for_threads is not None:
        wait_for_threads()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)
