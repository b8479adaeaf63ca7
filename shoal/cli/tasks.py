"""``shoal tasks``, ``shoal show TASK_ID``, ``shoal status [--costs]``: what ran, what it cost."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import typer

from shoal.cli.output import console, fail, print_json


def _rows(name: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    from shoal.client import query as read
    from shoal.paths import Home
    from shoal.store.queries import QueryError

    try:
        reply = read(Home.resolve(), name, params or {})
    except QueryError as exc:
        if "no database yet" in str(exc):
            return []
        raise
    return [dict(zip(reply.columns, row, strict=True)) for row in reply.rows]


def _score(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def tasks(
    limit: int = typer.Option(20, "--limit", "-n", min=1, max=10_000),
    background: bool = typer.Option(
        False, "--background", "-b", help="Delegated subagents and team-run subtasks."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print JSON lines."),
) -> None:
    """List recent tasks."""
    if background:
        _list(
            _rows("tasks.background", {"limit": limit}),
            json_out,
            "no background tasks yet",
            ("task", "parent", "kind", "status", "phase", "score", "description"),
            lambda r: (r["id"], r["parent"], r["kind"], r["status"], r["phase"],
                       _score(r["score"]), r["description"][:50]),
        )  # fmt: skip
        return
    _list(
        _rows("tasks.recent", {"limit": limit}),
        json_out,
        "no tasks yet",
        ("task", "status", "score", "iter", "tokens", "cost", "description"),
        lambda r: (r["id"], r["status"], _score(r["score"]), str(r["iterations"]),
                   str(r["tokens"]), f"${r['cost_usd']:.4f}", r["description"][:60]),
    )  # fmt: skip


def _list(
    rows: list[dict[str, Any]],
    json_out: bool,
    empty: str,
    columns: tuple[str, ...],
    cells: Callable[[dict[str, Any]], tuple[str, ...]],
) -> None:
    """Rows as JSON lines, or a table (a line saying there are none)."""
    from rich.table import Table

    if json_out:
        for row in rows:
            print_json(row)
        return
    if not rows:
        console().print(empty)
        return
    table = Table(box=None, pad_edge=False)
    for column in columns:
        table.add_column(column)
    for r in rows:
        table.add_row(*cells(r))
    console().print(table)


def show(
    task_id: str = typer.Argument(..., help="Task id (or a unique prefix)."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Show one task: plan, iterations, scores, findings and tool calls."""
    found = _rows("task.get", {"task_id": task_id})
    if not found:
        fail(f"no task {task_id!r}; `shoal tasks` lists them", code=1)
    if len(found) > 1:
        fail(f"{task_id!r} matches more than one task; give more of the id", code=2)
    task = found[0]
    full_id = task["id"]
    task["plan"] = json.loads(task["plan"]) if task["plan"] else None
    task["files_changed"] = json.loads(task["files_changed"]) if task["files_changed"] else []
    task["subtasks"] = json.loads(task["subtasks"]) if task["subtasks"] else []
    task["iterations_detail"] = _rows("task.iterations", {"task_id": full_id})
    for it in task["iterations_detail"]:
        it["dimensions"] = json.loads(it["dimensions"] or "{}")
        it["checks"] = json.loads(it["checks"] or "[]")
    best = [i for i in task["iterations_detail"] if i["n"] == task["best_iteration"]]
    task["checks"] = [
        {k: v for k, v in c.items() if k != "output"} for i in best for c in i["checks"]
    ]
    task["findings"] = _rows("task.findings", {"task_id": full_id})
    task["tool_calls"] = _rows("task.tool_calls", {"task_id": full_id})
    if json_out:
        print_json(task)
        return
    _print_task(task)


def _print_task(task: dict[str, Any]) -> None:
    from shoal.cli.check_view import check_line

    out = console()
    out.print(
        f"[bold]{task['id']}[/bold] {task['status']} ({task['decision']}), "
        f"score {_score(task['score'])}, best iteration {task['best_iteration']}, "
        f"{task['tokens']} tokens, ${task['cost_usd']:.4f}"
    )
    out.print(f"task: {task['description']}\nin: {task['cwd']}")
    if task["plan"]:
        out.print("[bold]plan[/bold]")
        for i, step in enumerate(task["plan"]["steps"], 1):
            out.print(f"  {i}. {step['title']}")
    for it in task["iterations_detail"]:
        dims = ", ".join(f"{k} {v:.2f}" for k, v in it["dimensions"].items())
        out.print(
            f"[bold]iteration {it['n']}[/bold] score {_score(it['score'])} "
            f"(judge {_score(it['judge_score'])}{'; ' + dims if dims else ''}) "
            f"→ {it['decision']}; {it['tool_calls']} tool calls"
        )
        for check in it["checks"]:
            out.print(f"  {check_line(check)}", markup=False, highlight=False)
        for f in (f for f in task["findings"] if f["iteration"] == it["n"]):
            out.print(f"  [{f['severity']}] {f['title']}")
    if task["tool_calls"]:
        out.print(f"[bold]tool calls[/bold] ({len(task['tool_calls'])})")
        for call in task["tool_calls"][:50]:
            out.print(f"  #{call['iteration']} {call['name']} {str(call['detail'])[:90]}")
    if task["files_changed"]:
        out.print("files changed: " + ", ".join(task["files_changed"]))
    if task["summary"]:
        out.print(f"[bold]summary[/bold]\n{task['summary']}")


def status(
    costs: bool = typer.Option(False, "--costs", help="Add token and cost totals per role."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object."),
    live: bool = typer.Option(
        False, "--live", help="Follow running tasks and teams as they change (Ctrl-C ends)."
    ),
) -> None:
    """The orchestrator, running tasks, and (with --costs) what the models cost."""
    from shoal.paths import Home

    home = Home.resolve()
    if live:
        if costs or json_out:
            fail("--live shows running tasks as they change; drop --costs and --json", code=2)
        from shoal.cli import live as live_view

        live_view.run(home)
        return
    state = _status_state(home, costs)
    if json_out:
        print_json(state)
        return
    out = console()
    orch = state["orchestrator"]
    running = "not running" if orch is None else f"pid {orch['pid']}, {orch['actors']} actors"
    out.print(f"orchestrator: {running} (home {home.root})")
    for problem in orch["problems"] if orch else []:
        out.print(f"warning: {problem}", markup=False, highlight=False)
    out.print(f"running tasks: {len(state['tasks'])}")
    for t in state["tasks"]:
        out.print(f"  {t['id']} iteration {t['iterations']} · {t['description'][:60]}")
    if costs:
        _print_costs(out, state["costs"])


def _status_state(home: Any, costs: bool) -> dict[str, Any]:
    from shoal import daemon
    from shoal.client import Client

    state: dict[str, Any] = {"home": str(home.root), "orchestrator": None}
    if daemon.running_pid(home) is not None:
        reply = Client(home).status()
        state["orchestrator"] = {
            "pid": reply.pid,
            "actors": len(reply.actors),
            "running_tasks": reply.running_tasks,
            "problems": reply.problems,
        }
    state["tasks"] = _rows("tasks.recent", {"limit": 10, "kind": "running"})
    if costs:
        state["costs"] = _rows("costs.summary")
    return state


def _print_costs(out: Any, rows: list[dict[str, Any]]) -> None:
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    for column in ("role", "model", "calls", "prompt", "completion", "cost"):
        table.add_column(column)
    total = 0.0
    for c in rows:
        total += c["cost_usd"] or 0.0
        table.add_row(
            c["role"],
            c["model"] or "-",
            str(c["calls"]),
            str(c["prompt_tokens"]),
            str(c["completion_tokens"]),
            f"${c['cost_usd']:.4f}",
        )
    out.print(table if rows else "no model calls recorded")
    out.print(f"total: ${total:.4f}")
