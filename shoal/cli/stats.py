"""``shoal stats``: what your tasks came to, over a period and grouped one way.

Figures come from the named ``stats.*`` queries (shoal/store/stats.py), which
say exactly what is counted. In a terminal they are rich tables with inline
bars and sparklines; piped, plain aligned text; ``--json`` for programs.
"""

from __future__ import annotations

import datetime as dt
import re
import sys
from typing import Any

import typer

from shoal.cli.output import fail, print_json

GROUPINGS = ("model", "role", "day", "repo", "category")
_SPARKS = "▁▂▃▄▅▆▇█"
_SINCE = re.compile(r"^(\d+)([hdw])$")


def parse_since(text: str, now: dt.datetime | None = None) -> str | None:
    """``30d``, ``12h``, ``2w``, ``all``, or a date/time (UTC) -> ISO time, None for all."""
    text = text.strip().lower()
    if text in ("all", ""):
        return None
    now = now or dt.datetime.now(dt.UTC).replace(tzinfo=None)
    match = _SINCE.match(text)
    if match:
        hours = int(match[1]) * {"h": 1, "d": 24, "w": 24 * 7}[match[2]]
        return (now - dt.timedelta(hours=hours)).isoformat(sep=" ", timespec="seconds")
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        fail(f"--since {text!r}: use 30d, 12h, 2w, all, or a date like 2025-01-31", code=2)
    if when.tzinfo is not None:
        when = when.astimezone(dt.UTC).replace(tzinfo=None)
    return when.isoformat(sep=" ", timespec="seconds")


def stats(
    since: str = typer.Option(
        "30d", "--since", help="Period: 30d, 12h, 2w, all, or a date (UTC). Default 30d."
    ),
    by: str | None = typer.Option(
        None, "--by", help="Group by model (executor's), role, day, repo or category."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Tasks, acceptance, iterations, time to accept, tokens and cost; findings and tools."""
    if by is not None and by not in GROUPINGS:
        fail(f"--by {by!r}: use one of {', '.join(GROUPINGS)}", code=2)
    figures = gather(parse_since(since), by)
    if json_out:
        print_json(figures)
    elif sys.stdout.isatty():
        _render_rich(figures, since)
    else:
        _render_plain(figures, since)


def gather(since: str | None, by: str | None) -> dict[str, Any]:
    """Every figure ``shoal stats`` shows, as its JSON prints them."""
    from shoal.client import query_many as read_many
    from shoal.paths import Home
    from shoal.store.queries import QueryError

    base = {"since": since, "categories": _category_words() if by == "category" else []}
    grouped = {**base, "by": by or "all"}
    asked = [
        ("stats.groups", {**base, "by": "all"}),
        ("stats.groups", grouped),
        ("stats.daily", grouped),
        ("stats.findings", base),
        ("stats.tools", base),
    ]
    try:
        replies = read_many(Home.resolve(), asked)
    except QueryError as exc:
        if "no database yet" not in str(exc):
            raise
        replies = []
    totals, groups, daily, findings, tools = [
        [dict(zip(r.columns, row, strict=True)) for row in r.rows] for r in replies
    ] or [[], [], [], [], []]
    total = totals[0] if totals else dict(_NOTHING)
    total.pop("key", None)
    return {
        "since": since,
        "by": by,
        "totals": total,
        "groups": groups if by else [],
        "daily": [{k: v for k, v in d.items() if by or k != "key"} for d in daily],
        "findings": findings,
        "tools": tools,
    }


_NOTHING: dict[str, Any] = {
    "tasks": 0, "accepted": 0, "unaccepted": 0, "failed": 0, "cancelled": 0, "running": 0,
    "acceptance_rate": None, "iterations_per_task": None, "mean_time_to_accept_s": None,
    "calls": 0, "tokens": 0, "cost_usd": 0.0,
}  # fmt: skip


def _category_words() -> list[dict[str, Any]]:
    """The words that make a task's category, as the evaluator picks a rubric by them."""
    from shoal.actors.evaluator import _CATEGORIES

    return [
        {"category": name, "word": word, "rank": rank}
        for rank, (name, words) in enumerate(_CATEGORIES.items())
        for word in words
    ]


# --- rendering -----------------------------------------------------------------------


def _period(since_text: str, figures: dict[str, Any]) -> str:
    if figures["since"] is None:
        return "all recorded tasks"
    return f"since {figures['since']} UTC ({since_text})"


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"


def bar(fraction: float | None, width: int = 10) -> str:
    """``███░░░░░░░`` for 0.3: an inline bar for a share."""
    if fraction is None:
        return " " * width
    filled = round(max(0.0, min(1.0, fraction)) * width)
    return "█" * filled + "░" * (width - filled)


def sparkline(values: list[float]) -> str:
    """One character per value, from ▁ (the smallest) to █ (the largest)."""
    if not values:
        return ""
    top = max(values)
    if top <= 0:
        return _SPARKS[0] * len(values)
    return "".join(_SPARKS[min(7, int(v / top * 7.999))] for v in values)


def _series(figures: dict[str, Any], key: str | None) -> list[float]:
    """Tasks per day for one group (None: all), every day from the first to the last."""
    days = sorted({d["day"] for d in figures["daily"]})
    if not days:
        return []
    counts: dict[str, float] = {}
    for d in figures["daily"]:
        if key is None or d.get("key") == key:
            counts[d["day"]] = counts.get(d["day"], 0) + d["tasks"]
    first, last = dt.date.fromisoformat(days[0]), dt.date.fromisoformat(days[-1])
    span = [(first + dt.timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]
    return [counts.get(day, 0) for day in span[-60:]]


def _rows(figures: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    rows = [(str(g["key"]), g) for g in figures["groups"]]
    return [*rows, ("all", figures["totals"])]


def _render_rich(figures: dict[str, Any], since_text: str) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    out = Console(highlight=False)
    by = figures["by"]
    out.print(f"[bold]shoal stats[/bold] · {_period(since_text, figures)}"
              + (f" · by {by}" if by else ""))  # fmt: skip
    if not figures["totals"]["tasks"]:
        out.print("no tasks in this period")
        return
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column, justify in (
        (by or "", "left"), ("tasks", "right"), ("accepted", "left"), ("iter/task", "right"),
        ("time to accept", "right"), ("tokens", "right"), ("cost", "right"),
        ("share of cost", "left"), ("tasks per day", "left"),
    ):  # fmt: skip
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    total_cost = figures["totals"]["cost_usd"] or 0.0
    for name, g in _rows(figures):
        share = (g["cost_usd"] or 0.0) / total_cost if total_cost else None
        table.add_row(
            escape(name) if name != "all" else "[bold]all[/bold]",
            str(g["tasks"]),
            f"{_rate(g['acceptance_rate']):>4} [green]{bar(g['acceptance_rate'])}[/green]",
            _num(g["iterations_per_task"]),
            _duration(g["mean_time_to_accept_s"]),
            f"{g['tokens']:,}",
            f"${g['cost_usd']:.4f}",
            f"[cyan]{bar(share, 8)}[/cyan]",
            sparkline(_series(figures, None if name == "all" else name)),
            style="dim" if name == "all" and figures["groups"] else None,
        )
    out.print(table)
    _render_lists_rich(out, figures)


def _render_lists_rich(out: Any, figures: dict[str, Any]) -> None:
    from rich.markup import escape

    if figures["findings"]:
        out.print("\n[bold]most frequent findings[/bold]")
        for f in figures["findings"]:
            label = escape(f"[{f['severity']}] {f['title']}")
            out.print(f"  {f['times']:>4}x  {label}  [dim]({f['tasks']} tasks)[/dim]")
    if figures["tools"]:
        out.print("\n[bold]tools that fail most[/bold]")
        for t in figures["tools"]:
            out.print(f"  {escape(t['name']):<16} [red]{bar(t['failure_rate'], 8)}[/red] "
                      f"{t['failed']} of {t['calls']} calls failed "
                      f"({_rate(t['failure_rate'])})")  # fmt: skip


def _render_plain(figures: dict[str, Any], since_text: str) -> None:
    by = figures["by"]
    lines = [f"shoal stats: {_period(since_text, figures)}" + (f", by {by}" if by else "")]
    if not figures["totals"]["tasks"]:
        sys.stdout.write(lines[0] + "\nno tasks in this period\n")
        return
    header = (by or "", "tasks", "accepted", "rate", "iter/task", "to accept", "tokens", "cost")
    table = [header]
    for name, g in _rows(figures):
        table.append((name, str(g["tasks"]), str(g["accepted"]), _rate(g["acceptance_rate"]),
                      _num(g["iterations_per_task"]), _duration(g["mean_time_to_accept_s"]),
                      str(g["tokens"]), f"${g['cost_usd']:.4f}"))  # fmt: skip
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        cells = [row[0].ljust(widths[0])]
        cells += [c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)]
        lines.append("  ".join(cells).rstrip())
    if figures["findings"]:
        lines.append("most frequent findings:")
        lines += [f"  {f['times']}x [{f['severity']}] {f['title']} ({f['tasks']} tasks)"
                  for f in figures["findings"]]  # fmt: skip
    if figures["tools"]:
        lines.append("tools that fail most:")
        lines += [f"  {t['name']}: {t['failed']} of {t['calls']} calls failed "
                  f"({_rate(t['failure_rate'])})" for t in figures["tools"]]  # fmt: skip
    sys.stdout.write("\n".join(lines) + "\n")
