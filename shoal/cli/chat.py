"""``shoal chat`` (and bare ``shoal`` in a terminal), ``shoal sessions list|export``."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from shoal.cli.output import console, fail, print_json

if TYPE_CHECKING:
    from shoal.chat.client import ChatSettings
    from shoal.paths import Home

_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_ID = re.compile(r"[0-9A-Za-z]{4,64}")


def chat(
    session_id: str | None = typer.Argument(
        None, metavar="[ID]", help="With --resume: the session to resume (id or unique prefix)."
    ),
    name: str | None = typer.Option(
        None, "--session", "-s", help="A named session: resumed if it exists, made if not."
    ),
    continue_last: bool = typer.Option(
        False, "--continue", "-c", help="Continue the last session in this directory."
    ),
    resume: bool = typer.Option(
        False, "--resume", "-r", help="Resume a session: --resume ID, or pick one."
    ),
    cwd: Path | None = typer.Option(None, "--cwd", "-C", help="Repository to work in."),
    model: str | None = typer.Option(None, "--model", "-m", help="litellm model for the chat."),
    permission_mode: str | None = typer.Option(
        None, "--permission-mode", help="default, plan (read-only), accept-edits, bypass."
    ),
) -> None:
    """Chat with shoal in this repository: a REPL with tools, sessions and slash commands."""
    from shoal.chat.client import ChatClient
    from shoal.chat.repl import Repl, pick
    from shoal.client import Client
    from shoal.paths import Home

    interactive = sys.stdin.isatty() and sys.stdout.isatty()
    home = Home.resolve()
    workdir = (cwd or Path.cwd()).resolve()
    if not workdir.is_dir():
        fail(f"--cwd {workdir} is not a directory", code=2)
    _check_session_choice(session_id, name, continue_last, resume, interactive)
    settings = _settings(home, workdir, model, permission_mode, interactive)
    Client(home).start()
    out = console()
    with ChatClient(home, settings) as client:
        repl = Repl(home, client, interactive=interactive, console=out)
        if resume and session_id is None:
            rows = repl.rows("sessions.list", {"limit": 15})
            if not rows:
                fail("no sessions to resume yet; start one with shoal chat")
            session_id = pick(rows, out)
            if session_id is None:
                raise typer.Exit(0)
        repl.open(session_id=session_id, name=name, continue_last=continue_last)
        raise typer.Exit(repl.loop())


def _check_session_choice(
    session_id: str | None, name: str | None, continue_last: bool, resume: bool, interactive: bool
) -> None:
    if session_id is not None and not resume:
        fail(f"to resume session {session_id!r} write shoal chat --resume {session_id}", code=2)
    if session_id is not None and not _ID.fullmatch(session_id):
        fail(f"{session_id!r} is not a session id", code=2)
    if name is not None and not _NAME.fullmatch(name):
        fail(f"-s {name!r}: a session name is letters, digits, '.', '-' and '_'", code=2)
    if sum([name is not None, continue_last, resume]) > 1:
        fail("give one of -s NAME, --continue and --resume", code=2)
    if resume and session_id is None and not interactive:
        fail("--resume without an id needs a terminal to pick in; give the session id", code=2)


def _settings(
    home: Home, workdir: Path, model: str | None, permission_mode: str | None, interactive: bool
) -> ChatSettings:
    """The chat's model, permissions and context window, from the flags and the settings."""
    from shoal import config
    from shoal.chat.client import ChatSettings
    from shoal.messages.tasks import ModelChoice
    from shoal.settings import SettingsError

    try:
        resolved = config.resolve(
            home, workdir, {"model": model, "permission_mode": permission_mode}
        )
    except SettingsError as exc:  # a bad option or setting: a usage error
        fail(str(exc), code=2)
    notice = resolved.notice(Path.cwd())
    if notice:  # what the repository's unapproved .shoal/config.toml could not set
        sys.stderr.write(notice + "\n")
    loop = resolved.config
    models = loop.models()
    chosen = models.get("executor")
    if model is not None:  # the chat's model, over SHOAL_EXECUTOR_MODEL too
        chosen = ModelChoice(model=model, base_url=loop.executor_base_url or loop.base_url)
    if chosen is None:
        fail(
            "no model configured: set SHOAL_MODEL (e.g. openai/gpt-4o) and its provider key, "
            "or pass -m",
            code=2,
        )
    window = os.environ.get("SHOAL_CHAT_CONTEXT_WINDOW")
    if window is not None and not (window.isdigit() and int(window) >= 256):
        fail(f"SHOAL_CHAT_CONTEXT_WINDOW={window!r} is not a number of tokens (256 or more)")
    return ChatSettings(
        cwd=str(workdir),
        model=chosen,
        # Only a small model of its own: the main model would make summaries as dear as turns.
        small_model=models.get("small") if loop.small_model else None,
        permission_mode=loop.permission_mode,
        permission_rules=loop.rules(),
        context_window=int(window) if window else None,
        can_ask=interactive,
    )


sessions_app = typer.Typer(
    help="Chat sessions: list them, export a transcript.",
    no_args_is_help=True,
    rich_markup_mode=None,
)


def _rows(name: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    from shoal.cli.tasks import _rows as rows

    return rows(name, params)


@sessions_app.command("list")
def sessions_list(
    limit: int = typer.Option(20, "--limit", "-n", min=1, max=10_000),
    here: bool = typer.Option(
        False, "--here", help="Only sessions started in this directory (or -C DIR)."
    ),
    cwd: Path | None = typer.Option(
        None, "--cwd", "-C", help="With --here: this directory instead of the current one."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print JSON lines."),
) -> None:
    """List chat sessions, most recent first."""
    if cwd is not None and not here:
        fail("-C selects the directory of --here; give --here too", code=2)
    params: dict[str, Any] = {"limit": limit}
    if here:
        # Sessions record the resolved directory `shoal chat` ran in (or its -C).
        params["cwd"] = str((cwd or Path.cwd()).resolve())
    rows = _rows("sessions.list", params)
    if json_out:
        for row in rows:
            print_json(row)
        return
    if not rows:
        console().print("no sessions yet (shoal chat starts one)")
        return
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    table.add_column("session", no_wrap=True, min_width=26)
    for column in ("name", "turns", "tokens", "cost", "updated", "cwd", "title"):
        table.add_column(column, overflow="fold")
    for r in rows:
        table.add_row(
            r["id"],
            r["name"] or "-",
            str(r["turns"]),
            str(r["tokens"]),
            f"${r['cost_usd']:.4f}",
            str(r["updated_at"])[:19].replace("T", " "),
            r["cwd"],
            (r["title"] or "")[:40],
        )
    console().print(table)


@sessions_app.command("export")
def sessions_export(
    session_id: str = typer.Argument(..., help="Session id (or a unique prefix)."),
    fmt: str = typer.Option("md", "--format", "-f", help="md or json."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Write here, not stdout."),
) -> None:
    """Export a session's whole transcript as Markdown or JSON."""
    if fmt not in ("md", "json"):
        fail(f"--format {fmt!r}: use md or json", code=2)
    if not _ID.fullmatch(session_id):
        fail(f"{session_id!r} is not a session id", code=2)
    found = _rows("session.get", {"session_id": session_id})
    if not found:
        fail(f"no session {session_id!r}; `shoal sessions list` shows them")
    if len(found) > 1:
        fail(f"{session_id!r} matches more than one session; give more of the id", code=2)
    session = found[0]
    messages = _rows("session.messages", {"session_id": session["id"]})
    for m in messages:
        m["tool_calls"] = json.loads(m["tool_calls"]) if m["tool_calls"] else None
        m["meta"] = json.loads(m["meta"]) if m["meta"] else {}
    if fmt == "json":
        text = json.dumps({"session": session, "messages": messages}, default=str, indent=2)
    else:
        text = _markdown(session, messages)
    if output is None:
        sys.stdout.write(text.rstrip("\n") + "\n")
    else:
        output.write_text(text.rstrip("\n") + "\n")


def _markdown(session: dict[str, Any], messages: list[dict[str, Any]]) -> str:
    title = session["name"] or session["title"] or session["id"]
    lines = [
        f"# {title}",
        "",
        f"- session: `{session['id']}`",
        f"- directory: `{session['cwd']}`",
        f"- model: {session['model'] or '-'}",
        f"- turns: {session['turns']}, tokens: {session['tokens']}, "
        f"cost: ${session['cost_usd']:.4f}",
        f"- started: {session['created_at']}, last: {session['updated_at']}",
        "",
    ]
    for m in messages:
        role = m["role"]
        if role == "clear":
            lines += ["---", "", "*(conversation cleared)*", ""]
        elif role == "summary":
            lines += ["### summary of the earlier turns", "", m["content"] or "", ""]
        elif role == "user":
            lines += [f"## you (turn {m['turn']})", "", m["content"] or "", ""]
        elif role == "assistant":
            if m["content"]:
                lines += ["## shoal", "", m["content"], ""]
            for call in m["tool_calls"] or []:
                function = call.get("function") or {}
                lines.append(f"- `{function.get('name')}` `{function.get('arguments')}`")
            if m["tool_calls"]:
                lines.append("")
        elif role == "tool":
            content = m["content"] or ""
            if len(content) > 2000:
                content = content[:2000] + f"\n[... {len(content) - 2000} more characters]"
            lines += [
                "<details><summary>tool result</summary>",
                "",
                "```",
                content,
                "```",
                "",
                "</details>",
                "",
            ]
    return "\n".join(lines)
