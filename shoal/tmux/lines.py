"""What a member's pane shows for each message and event: lines of rich markup.

Pure functions of the message and a label for its task (``fix-add (task 06H2RI9FAU)``
for a team run's subtask), so every line says which work it is about. The
:mod:`.transcript` thread decides which messages reach here and keeps the labels.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.markup import escape

if TYPE_CHECKING:
    from shoal.mailbox.envelope import Envelope

# Bookkeeping that says nothing to a person watching (replies to the member's own asks,
# the lead's task-list updates) or that another part draws (approval questions).
QUIET = frozenset(
    {
        "orchestrator.ok",
        "task.submit.result",
        "task.done",
        "task.submit",
        "store.query",
        "store.query.result",
        "context.request",
        "context.result",
        "memory.remember",
        "memory.remember.result",
        "team.tasks.create",
        "team.task.update",
        "team.task.claim",
        "team.task.claim.result",
        "team.ask",
        "team.answer",
        "team.progress",
    }
)


def short(text: str, limit: int) -> str:
    text = " ".join(str(text).split())
    return escape(text if len(text) <= limit else text[: limit - 1] + "…")


def incoming(env: Envelope, label: str) -> list[str]:
    """Lines for a message the member takes."""
    p = env.payload
    again = " [yellow](redelivered)[/yellow]" if env.attempt > 1 else ""
    if env.kind == "exec.request":
        lines = [
            f"[bold cyan]▶ {label} iteration {p.get('iteration')}[/bold cyan]{again}: "
            f"{short(p.get('description', ''), 300)}"
        ]
        for finding in p.get("findings") or []:
            lines.append(
                f"  [yellow]finding[/yellow] [{escape(str(finding.get('severity')))}] "
                f"{short(finding.get('title', ''), 160)}"
            )
        return lines
    if env.kind == "plan.request":
        team = f" for {p['team_size']} executors" if p.get("team_size") else ""
        return [
            f"[bold cyan]▶ plan {label}{team}[/bold cyan]{again}: {short(p['description'], 300)}"
        ]
    if env.kind == "eval.request":
        return [
            f"[bold cyan]▶ evaluate {label} iteration {p.get('iteration')}[/bold cyan]{again}: "
            f"{short(p.get('description', ''), 200)}"
        ]
    if env.kind == "workspace.restore":
        return [f"[cyan]▶ {label}: putting back the best iteration's files[/cyan]{again}"]
    if env.kind == "team.message":
        return [message(p)]
    if env.kind == "task.cancel":
        return [f"[red]■ {label} cancelled[/red]"]
    if env.kind in ("team.prepare", "team.run"):
        return team_request(env, label)
    if env.kind in QUIET or env.reply_to is not None:
        return []
    return [f"[dim]▶ {escape(env.kind)} from {escape(env.sender)}[/dim]"]


def message(p: dict[str, Any]) -> str:
    """A message for the member: from a person, a teammate, a subagent; to the lead."""
    sender = escape(p.get("sender", "?"))
    about = f" ({escape(p['subtask'])})" if p.get("subtask") else ""
    if p.get("source") == "lead":  # a member writing to the lead
        head = f"✉ {sender} → lead{about}"
    else:
        head = f"✉ {sender} ({p.get('source')}){about}"
    return f"[bold magenta]{head}[/bold magenta]: {short(p.get('text', ''), 500)}"


def team_request(env: Envelope, label: str) -> list[str]:
    """The lead's work: a team run's preparation, and the run with its plan."""
    p = env.payload
    if env.kind == "team.prepare":
        return [
            f"[bold cyan]▶ {label}[/bold cyan]: snapshotting the work tree and running the "
            "project's checks while the plan is made"
        ]
    subtasks = (p.get("plan") or {}).get("subtasks") or []
    size = (p.get("options") or {}).get("team_size") or 1
    lines = [
        f"[bold cyan]▶ {label}[/bold cyan]: {short(p.get('description', ''), 300)}",
        f"  plan: {len(subtasks)} subtask(s), up to {size} at once",
    ]
    return lines + [f"    {subtask_line(s)}" for s in subtasks]


def subtask_line(s: dict[str, Any]) -> str:
    files = f" [dim]\\[{escape(', '.join(s.get('files') or []))}][/dim]" if s.get("files") else ""
    deps = s.get("depends_on") or []
    after = f" (after {escape(', '.join(deps))})" if deps else ""
    return (
        f"[bold]{escape(s.get('id', '?'))}[/bold]: {short(s.get('title', ''), 160)}{files}{after}"
    )


def outgoing(env: Envelope, label: str) -> list[str]:
    """Lines for a message the member sends (its tool calls, results and replies)."""
    p = env.payload
    if env.kind == "exec.event":
        return exec_event(p)
    if env.kind == "exec.result":
        usage = p.get("usage") or {}
        tokens = usage.get("prompt_tokens", 0) + usage.get("completion_tokens", 0)
        error = f" [red]error: {short(p['error'], 300)}[/red]" if p.get("error") else ""
        return [
            f"[bold green]◀ {label} iteration {p.get('iteration')} done[/bold green]: "
            f"{short(p.get('summary', ''), 300)} · {p.get('turns')} turns · "
            f"{tokens} tokens · ${usage.get('cost_usd', 0.0):.4f}{error}"
        ]
    if env.kind == "plan.result":
        return plan_lines(p.get("plan") or {})
    if env.kind == "eval.checks":
        return [f"  check {escape(c.get('name', ''))}: {c.get('status')}" for c in p["checks"]]
    if env.kind == "eval.result":
        return [
            f"[bold green]◀ {label} iteration {p.get('iteration')}: score "
            f"{p.get('score', 0):.2f}[/bold green]"
        ]
    if env.kind == "workspace.restore.result":
        files = ", ".join(p.get("files_changed") or []) or "no files"
        return [f"[green]◀ {label} restored[/green]: {escape(files)}"]
    if env.kind == "team.run.result":
        error = f" [red]error: {short(p['error'], 300)}[/red]" if p.get("error") else ""
        return [f"[bold green]◀ {label}[/bold green]: {short(p.get('summary', ''), 400)}{error}"]
    if env.kind == "mailbox.error":
        return [f"[red]✗ {escape(p.get('code', ''))}: {short(p.get('message', ''), 300)}[/red]"]
    if env.kind in QUIET or env.recipient == "orchestrator":
        return []
    return [f"[dim]◀ {escape(env.kind)} to {escape(env.recipient)}[/dim]"]


def exec_event(p: dict[str, Any]) -> list[str]:
    if p.get("type") == "text":
        return [f"  [italic]{short(p.get('detail', ''), 600)}[/italic]"]
    if p.get("type") != "tool_call":
        return []
    mark = "[green]✓[/green]" if p.get("ok", True) else "[red]✗[/red]"
    why = f" [red]{short(p['error'], 300)}[/red]" if p.get("error") else ""
    lines = [
        f"  [bold]{escape(p.get('name', ''))}[/bold] {short(p.get('detail', ''), 160)} {mark}{why}"
    ]
    for line in (p.get("preview") or "").splitlines():
        style = {"+": "green", "-": "red"}.get(line[:1], "dim")
        lines.append(f"    [{style}]│ {escape(line)}[/{style}]")
    return lines


def plan_lines(plan: dict[str, Any]) -> list[str]:
    steps = plan.get("steps") or []
    subtasks = plan.get("subtasks") or []
    more = f", {len(subtasks)} subtask(s)" if subtasks else ""
    lines = [f"[bold green]◀ plan[/bold green]: {len(steps)} step(s){more}"]
    lines += [f"  - {short(step.get('title', ''), 160)}" for step in steps]
    return lines + [f"  · {subtask_line(s)}" for s in subtasks]


def progress(env: Envelope, label: str) -> list[str]:
    """A task's phase, from the event bus."""
    p = env.payload
    score = "" if p.get("score") is None else f" · score {p['score']:.2f}"
    return [
        f"[dim]· {label} {p.get('phase')} (iteration {p.get('iteration')}){score} · "
        f"{p.get('tokens')} tokens · ${p.get('cost_usd', 0.0):.4f}[/dim]"
    ]


def team_progress(p: dict[str, Any]) -> list[str]:
    """A team run's milestone (``team.progress``): who took which subtask, merges, messages."""
    sub = escape(p.get("subtask") or "")
    who = escape(p.get("member") or "")
    text = short(p.get("text", ""), 400)
    score = "" if p.get("score") is None else f", score {p['score']:.2f}"
    # The plan came with the run's request and each message to the lead as itself: shown
    # from there (``team run``'s output has only these events).
    line = {
        "start": f"[cyan]→ {sub}[/cyan] taken by [bold]{who}[/bold] ({text})",
        "refused": f"[red]✗ {sub}: {who}: {text}[/red]",
        "result": f"[bold]◀ {sub}[/bold] {text}{score}",
        "merge": f"[green]⇉ {sub} merged[/green] ({text})",
        "resolve": f"[yellow]⚠ {sub}: {text}[/yellow]; an executor resolves them",
        "conflict": f"[red]✗ {sub} conflict[/red]: {text}",
    }.get(p.get("event", ""))
    return [line] if line else []


def done(p: dict[str, Any], label: str) -> list[str]:
    """A task ended; for a team run, the verdict on the merged result."""
    score = "-" if p.get("score") is None else f"{p['score']:.2f}"
    subtasks = p.get("subtasks") or []
    if not subtasks:
        return [f"[bold]■ {label} {p.get('status')}[/bold], score {score} ({p.get('decision')})"]
    merged = sum(1 for s in subtasks if s.get("status") in ("accepted", "unaccepted"))
    style = "green" if p.get("status") == "accepted" else "red"
    return [
        f"[bold {style}]■ verdict on {label}: {p.get('status')}[/bold {style}], score {score} "
        f"({p.get('decision')}); {merged} of {len(subtasks)} subtask(s) merged"
    ]
