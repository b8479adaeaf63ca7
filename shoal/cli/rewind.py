"""``shoal rewind`` and ``shoal undo``: the work tree back to an earlier snapshot of a task or chat.

A task's files go to an iteration's snapshot (0: before the task ran); a chat
session goes back to before one of its turns, files and conversation (files
only with ``--files-only``). Only the paths the task or turns changed are
touched, never a branch, the index or the stash; a path changed since is
refused unless ``--force``. See ``shoal.workspace.rewind``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from shoal.cli import loop_options as lo
from shoal.cli.output import fail, print_json

if TYPE_CHECKING:
    from shoal.paths import Home
    from shoal.workspace.rewind import Rewound


def rewind(
    target: str = typer.Argument(..., metavar="ID", help="A task's id, or a chat session's."),
    iteration: int = typer.Option(
        0, "--iteration", "-n", min=0, help="A task's iteration to go to (0: before the task)."
    ),
    turn: int | None = typer.Option(
        None, "--turn", min=1, help="A chat: go back to before this turn (default: the last)."
    ),
    files_only: bool = typer.Option(
        False, "--files-only", help="A chat: the files only; the conversation stays."
    ),
    force: bool = typer.Option(
        False, "--force", help="Rewind files changed since too (your versions are kept in a ref)."
    ),
    json_out: lo.JsonOut = False,
) -> None:
    """Put the files of a task (or a chat session) back to an earlier snapshot."""
    from shoal.client import query
    from shoal.paths import Home

    home = Home.resolve()
    task = _one(query(home, "task.get", {"task_id": _id(target)}))
    if task is not None:
        if turn is not None or files_only:
            fail("--turn and --files-only are for a chat session; a task has files only", code=2)
        _rewind_task(task, iteration, force, json_out)
        return
    session = _one(query(home, "session.get", {"session_id": _id(target)}))
    if session is None:
        fail(
            f"no task or chat session {target!r}; `shoal tasks` and `shoal sessions list` show them"
        )
    _rewind_session(home, session, turn, files_only, force, json_out)


def undo(
    cwd: lo.Cwd = None,
    force: bool = typer.Option(False, "--force", help="Undo files changed since too."),
    json_out: lo.JsonOut = False,
) -> None:
    """Undo the last task run in this repository: its files as they were before it."""
    from shoal.client import query
    from shoal.paths import Home
    from shoal.workspace.git import WorkspaceError, toplevel

    try:
        root = toplevel(cwd or Path.cwd())
    except WorkspaceError as exc:
        fail(str(exc), code=2)
    found = query(Home.resolve(), "tasks.last_here", {"repo": str(root)})
    if not found.rows:
        fail(f"no finished task has run in {root}")
    task = _one(query(Home.resolve(), "task.get", {"task_id": found.rows[0][0]}))
    assert task is not None
    _rewind_task(task, 0, force, json_out)


def _id(text: str) -> str:
    if not text.isalnum() or len(text) < 4:
        fail(f"{text!r} is not an id (letters and digits, at least 4 of them)", code=2)
    return text


def _one(reply: Any) -> dict[str, Any] | None:
    rows = [dict(zip(reply.columns, row, strict=True)) for row in reply.rows]
    if len(rows) > 1:
        fail("that id prefix matches more than one; give more of it", code=2)
    return rows[0] if rows else None


def _rewind_task(task: dict[str, Any], iteration: int, force: bool, json_out: bool) -> None:
    from shoal.workspace.rewind import rewind_task

    if task["status"] in ("running", "queued") or task["finished_at"] is None:
        fail(f"task {task['id']} is still running; cancel it (Ctrl-C) or wait for it first")
    done = rewind_task(task["cwd"], task["id"], iteration, force=force)
    where = "before it ran" if iteration == 0 else f"iteration {iteration}"
    _show(
        done,
        {"task_id": task["id"], "iteration": iteration},
        f"task {task['id']} to {where}",
        json_out,
    )


def _rewind_session(
    home: Home,
    session: dict[str, Any],
    turn: int | None,
    files_only: bool,
    force: bool,
    json_out: bool,
) -> None:
    from shoal.chat import rewind
    from shoal.client import Client, query
    from shoal.messages.chat import SessionAppend

    infos = rewind.turns(query(home, "session.live", {"session_id": session["id"]}))
    turn = turn if turn is not None else (infos[-1].turn if infos else 1)
    problem = rewind.check_turn(infos, turn)
    if problem:
        fail(problem)
    done = rewind.rewind_files(session["cwd"], session["id"], infos, turn, force=force)
    if not files_only:
        append = SessionAppend(
            session_id=session["id"], messages=[rewind.marker(turn)], new_turn=False
        )
        client = Client(home)
        client.start(same_settings=False)
        client.request(append, timeout=30)
    fields = {"session_id": session["id"], "turn": turn, "conversation": not files_only}
    _show(done, fields, f"session {session['id']} to before turn {turn}", json_out)


def _show(done: Rewound, fields: dict[str, Any], what: str, json_out: bool) -> None:
    from shoal.chat.rewind import summary

    if json_out:
        print_json({**fields, **done.as_json()})
        return
    sys.stdout.write(f"rewound {what}: {summary(done)}\n")
