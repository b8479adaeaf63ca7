"""The chat's slash commands. Each takes the REPL and the text after the command."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.markup import escape

if TYPE_CHECKING:
    from shoal.chat.repl import Repl

PERMISSION_MODES = ("default", "plan", "accept-edits", "bypass")
# Tools whose ``path`` argument names a file the session touched.
_FILE_TOOLS = {"read_file": "read", "write_file": "written", "edit_file": "edited"}


class ExitChat(Exception):
    pass


def _help(repl: Repl, arg: str) -> None:
    from rich.table import Table

    table = Table(box=None, show_header=False, pad_edge=False)
    for name, (_, text) in COMMANDS.items():
        table.add_row(name, text)
    repl.console.print(table)
    repl.console.print(
        "Enter sends; Esc then Enter, or a line ending in \\, starts a new line. "
        "@path attaches a file; !cmd runs a shell command in the repository. Ctrl-R searches "
        "the history; Ctrl-C stops a turn, twice at an empty prompt (or Ctrl-D) leaves.",
        soft_wrap=True,
    )


def _status(repl: Repl, arg: str) -> None:
    status = repl.client.status()
    s = repl.client.session
    assert s is not None
    out = repl.console
    out.print(f"session {s.id}" + (f" ({s.name})" if s.name else "") + f" in {s.cwd}")
    out.print(
        f"model {repl.settings.model.model} · permissions {repl.settings.permission_mode}"
        + (
            f" · summaries by {repl.settings.small_model.model}"
            if repl.settings.small_model
            else ""
        )
    )
    out.print(
        f"orchestrator pid {status.pid} · {len(status.actors)} actors · "
        f"{status.running_tasks} running tasks · {status.messages.routed:,} messages routed"
    )
    for a in status.actors:
        out.print(f"  {a.name:<24} {a.role:<16} {a.state}")


def _model(repl: Repl, arg: str) -> None:
    from shoal.messages.tasks import ModelChoice

    if arg:
        repl.settings.model = ModelChoice(model=arg, base_url=repl.settings.model.base_url)
        repl.console.print(f"model: {arg} (from the next turn)", markup=False)
        return
    repl.console.print(f"model: {repl.settings.model.model}")
    if repl.settings.model.base_url:
        repl.console.print(f"base url: {repl.settings.model.base_url}")
    small = repl.settings.small_model
    repl.console.print(f"summaries: {small.model if small else 'a digest (no small model set)'}")


def _cost(repl: Repl, arg: str) -> None:
    row = repl.session_row()
    u = repl.run_usage
    repl.console.print(
        f"this session: {row['tokens']:,} tokens, ${row['cost_usd']:.4f} over {row['turns']} "
        + ("turn" if row["turns"] == 1 else "turns")
    )
    repl.console.print(
        f"since this chat started: {u.prompt_tokens:,} in · {u.completion_tokens:,} out · "
        f"{u.calls} model calls · ${u.cost_usd:.4f}"
    )


def _files(repl: Repl, arg: str) -> None:
    touched: dict[str, set[str]] = {}
    for m in repl.session_messages():
        meta = json.loads(m["meta"]) if m["meta"] else {}
        for path in meta.get("files", []):
            touched.setdefault(path, set()).add("attached")
        for call in json.loads(m["tool_calls"]) if m["tool_calls"] else []:
            function = call.get("function") or {}
            how = _FILE_TOOLS.get(function.get("name", ""))
            if how is None:
                continue
            try:
                path = json.loads(function.get("arguments") or "{}").get("path")
            except (ValueError, AttributeError):
                continue
            if path:
                touched.setdefault(str(path), set()).add(how)
    if not touched:
        repl.console.print("no files touched or attached in this session yet")
        return
    for path in sorted(touched):
        repl.console.print(f"{escape(path)}  [dim]{', '.join(sorted(touched[path]))}[/dim]")


def _diff(repl: Repl, arg: str) -> None:
    cwd = repl.settings.cwd
    args = arg.split() if arg else []
    stat = _git(cwd, ["diff", "--stat", *args])
    if stat is None:
        repl.console.print(f"{cwd} is not a git repository")
        return
    diff = _git(cwd, ["diff", *args]) or ""
    if not diff.strip():
        repl.console.print("no changes (git diff is empty)")
        return
    if repl.interactive:
        from rich.syntax import Syntax

        repl.console.print(Syntax(diff, "diff", theme="ansi_dark", background_color="default"))
    else:
        repl.console.out(diff, highlight=False)
    repl.console.print(stat.rstrip(), highlight=False)


def _git(cwd: str, args: list[str]) -> str | None:
    result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    return result.stdout if result.returncode == 0 else None


def _compact(repl: Repl, arg: str) -> None:
    keep = int(arg) if arg.isdigit() else 1
    with repl.console.status("compacting…") if repl.interactive else _nothing():
        done = repl.client.compact(keep_turns=keep)
    if not done.summarized:
        repl.console.print("nothing to compact: the conversation is only the latest turns")
        return
    repl.console.print(
        f"compacted {done.summarized} messages into a summary: about {done.tokens_before:,} → "
        f"{done.tokens_after:,} tokens (the latest {keep} turn(s) kept)"
    )


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _clear(repl: Repl, arg: str) -> None:
    repl.client.clear()
    repl.console.print("the conversation starts fresh (the transcript keeps the old one)")


def _sessions(repl: Repl, arg: str) -> None:
    rows = repl.rows("sessions.list", {"limit": 20})
    if not rows:
        repl.console.print("no sessions yet")
        return
    current = repl.client.session.id if repl.client.session else None
    for r in rows:
        mark = "*" if r["id"] == current else " "
        repl.console.print(session_line(r, mark), highlight=False, markup=False)


def session_line(r: dict[str, Any], mark: str = " ") -> str:
    name = r["name"] or "-"
    when = str(r["updated_at"])[:16].replace("T", " ")
    title = r["title"] or ""
    turns = f"{r['turns']:>3} turn" + ("" if r["turns"] == 1 else "s")
    return f"{mark} {r['id']}  {name:<14} {when}  {turns}  {r['cwd']}  {title[:40]}"


def _resume(repl: Repl, arg: str) -> None:
    session_id = arg.strip() or repl.pick_session()
    if session_id:
        repl.open(session_id=session_id)


def _team(repl: Repl, arg: str) -> None:
    from shoal.actors.registry import base_role, team_of

    teams: dict[str, list[str]] = {}
    for a in repl.client.status().actors:
        team = team_of(a.role)
        if team:
            teams.setdefault(team, []).append(f"{a.name} ({base_role(a.role)}, {a.state})")
    if not teams:
        repl.console.print("no team is running (team members are actors with a role ROLE@TEAM)")
        return
    for team, members in sorted(teams.items()):
        repl.console.print(f"{team}: " + ", ".join(members), highlight=False, markup=False)


def _tasks(repl: Repl, arg: str) -> None:
    rows = repl.rows("tasks.recent", {"limit": 10})
    if not rows:
        repl.console.print('no tasks yet (`shoal "task"` runs one through the loop)')
        return
    for r in rows:
        score = "-" if r["score"] is None else f"{r['score']:.2f}"
        repl.console.print(
            f"{r['id']}  {r['status']:<10} {score:>5}  {r['description'][:60]}",
            highlight=False,
            markup=False,
        )


def _skills(repl: Repl, arg: str) -> None:
    from shoal.skills.catalog import discover_skills

    catalog = discover_skills(repl.home.root / "skills", Path(repl.settings.cwd))
    skills = catalog.of_kind("skill")
    if not skills:
        repl.console.print("no skills")
        return
    for skill in skills:
        about = " ".join(skill.description.split())
        about = about if len(about) <= 90 else about[:89] + "…"
        repl.console.print(f"{skill.name}  [dim]{escape(about)}[/dim]")


def _commands(repl: Repl, arg: str) -> None:
    found = prompt_commands(repl)
    if not found.listed():
        repl.console.print(
            "no prompt commands here (commands/*.md of a plugin, .claude/commands, .shoal/commands)"
        )
        return
    for command in found.listed():
        hint = f" {command.argument_hint}" if command.argument_hint else ""
        origin = f" ({command.plugin})" if command.plugin else ""
        repl.console.print(
            f"/{command.name}{escape(hint)}{origin}  [dim]{escape(command.description)}[/dim]"
        )


def prompt_commands(repl: Repl) -> Any:
    from shoal.skills.commands import discover_commands

    return discover_commands(repl.home, Path(repl.settings.cwd))


def template(repl: Repl, name: str, arg: str) -> str | None:
    """A prompt command's message (``/review src/x.py``), or None if there is no such command."""
    found = prompt_commands(repl).get(name)
    return found.render(arg) if found is not None else None


def _permissions(repl: Repl, arg: str) -> None:
    if not arg:
        repl.console.print(
            f"permissions: {repl.settings.permission_mode} (modes: {', '.join(PERMISSION_MODES)})"
        )
        return
    if arg not in PERMISSION_MODES:
        repl.console.print(f"unknown mode {arg!r}; the modes are {', '.join(PERMISSION_MODES)}")
        return
    repl.settings.permission_mode = arg
    repl.console.print(f"permissions: {arg} (from the next turn)")


def _rewind(repl: Repl, arg: str) -> None:
    """/rewind: the turns and the files each changed; /rewind N [--files-only] [--force]:
    back to before turn N (files and conversation)."""
    from shoal.chat import rewind
    from shoal.client import query
    from shoal.mailbox.envelope import ORCHESTRATOR
    from shoal.messages.chat import SessionAppend
    from shoal.workspace.git import WorkspaceError

    words = arg.split()
    infos = rewind.turns(query(repl.home, "session.live", {"session_id": repl.client.session_id}))
    if not words:
        for i in infos:
            files = ", ".join(i.paths) or "no files"
            repl.console.print(f"{i.turn:>3}  {escape(i.text[:60])}  [dim]{escape(files)}[/dim]")
        if not infos:
            repl.console.print("no turns yet")
        else:
            repl.console.print("[dim]/rewind N goes back to before turn N[/dim]")
        return
    unknown = [w for w in words[1:] if w not in ("--files-only", "--force")]
    if not words[0].isdigit() or unknown:
        repl.console.print("usage: /rewind [N [--files-only] [--force]]")
        return
    turn = int(words[0])
    problem = rewind.check_turn(infos, turn)
    if problem:
        repl.console.print(problem, markup=False)
        return
    try:
        done = rewind.rewind_files(
            repl.settings.cwd, repl.client.session_id, infos, turn, force="--force" in words
        )
    except WorkspaceError as exc:
        repl.console.print(f"[red]{escape(str(exc))}[/red]")
        return
    repl.console.print(f"files: {rewind.summary(done)}", markup=False)
    if "--files-only" not in words:
        append = SessionAppend(
            session_id=repl.client.session_id, messages=[rewind.marker(turn)], new_turn=False
        )
        repl.client.request(ORCHESTRATOR, append)
        repl.console.print(f"the conversation goes back to before turn {turn}")


def _exit(repl: Repl, arg: str) -> None:
    raise ExitChat


COMMANDS: dict[str, tuple[Callable[[Repl, str], None], str]] = {
    "/help": (_help, "these commands and the keys"),
    "/status": (_status, "the session, model and orchestrator"),
    "/model": (_model, "show the model, or /model NAME to switch"),
    "/cost": (_cost, "tokens and cost of this session"),
    "/files": (_files, "files this session read, changed or attached"),
    "/diff": (_diff, "git diff of the repository"),
    "/compact": (_compact, "summarize older turns now (/compact N keeps N turns)"),
    "/clear": (_clear, "start a fresh conversation in this session"),
    "/sessions": (_sessions, "recent sessions"),
    "/resume": (_resume, "switch to another session (/resume ID, or pick one)"),
    "/team": (_team, "teams and their members"),
    "/tasks": (_tasks, "recent tasks of the loop"),
    "/skills": (_skills, "skills this directory would use"),
    "/commands": (_commands, "prompt commands (plugins', .claude/commands): /NAME ARGS runs one"),
    "/permissions": (_permissions, "show, or /permissions MODE to set"),
    "/rewind": (_rewind, "turns and their file changes; /rewind N: back to before turn N"),
    "/exit": (_exit, "leave (also /quit, Ctrl-D)"),
}
ALIASES = {"/quit": "/exit", "/q": "/exit", "/?": "/help"}
