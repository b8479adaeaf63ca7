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

app = typer.Typer(
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


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the version and exit."
    ),
) -> None:
    """shoal: a local-first AI coding agent for the terminal, built as a team of actors.

    State lives under $SHOAL_HOME (default ~/.shoal).
    """


def _register() -> None:
    from shoal.cli import (
        batch,
        chat,
        config,
        demo,
        doctor,
        learn,
        mcp,
        memory,
        messages,
        orchestrator,
        replay,
        run,
        runtime_demo,
        serve,
        skills,
        sql,
        stats,
        tasks,
        team,
        team_run,
    )

    app.command("run")(run.run)
    app.command("tasks")(tasks.tasks)
    app.command("show")(tasks.show)
    app.command("status")(tasks.status)
    app.command("sql")(sql.sql)
    app.command("stats")(stats.stats)
    app.command("replay")(replay.replay)
    _register_workflows()
    orchestrator.app.command("demo")(runtime_demo.runtime_demo)
    app.add_typer(orchestrator.app, name="orchestrator")
    app.add_typer(memory.app, name="memory")
    app.add_typer(learn.app, name="learn")
    app.add_typer(mcp.app, name="mcp")
    app.add_typer(config.app, name="config")
    app.add_typer(team.app, name="team")
    skills_app = typer.Typer(
        help="Skills shoal can use: bundled, yours, the project's.",
        no_args_is_help=True,
        rich_markup_mode=None,
    )
    skills_app.command("list")(skills.skills_list)
    skills_app.command("show")(skills.skills_show)
    app.add_typer(skills_app, name="skills")
    team.app.command("run")(team_run.team_run)
    app.command("messages")(messages.messages)
    app.command("doctor")(doctor.doctor)
    app.add_typer(batch.app, name="batch")
    app.command("demo")(demo.demo)
    app.command("serve")(serve.serve)
    app.command("dashboard")(serve.dashboard)
    app.command("webhooks")(serve.webhooks)
    app.command("chat")(chat.chat)
    app.add_typer(chat.sessions_app, name="sessions")


def _register_workflows() -> None:
    """Reviews of a diff, agent definitions, rewinds."""
    from shoal.cli import agents, review, rewind

    app.command("review")(review.review)
    app.command("commit-check")(review.commit_check)
    app.command("release-notes")(review.release_notes)
    app.command("rewind")(rewind.rewind)
    app.command("undo")(rewind.undo)
    app.add_typer(agents.app, name="agents")


def _register_more() -> None:
    """Models, plugins, export and import (kept apart: _register stays readable)."""
    from shoal.cli import export, models, plugin

    app.command("models")(models.models)
    app.add_typer(plugin.app, name="plugin")
    app.command("export")(export.export)
    app.command("import")(export.import_)


_register()
_register_more()


def main() -> None:
    from shoal.cli.errors import known_errors, one_line

    if len(sys.argv) == 1 and sys.stdin.isatty() and sys.stdout.isatty():
        sys.argv.append("chat")  # bare `shoal` in a terminal chats; elsewhere it prints help
    try:
        app()
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
