"""``shoal doctor``: is this machine and SHOAL_HOME ready for shoal?"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from shoal.cli.output import console, print_json

if TYPE_CHECKING:
    from shoal.paths import Home


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    required: bool = True

    @property
    def mark(self) -> str:
        if self.ok:
            return "ok"
        return "MISSING" if self.required else "warn"


def _tool(name: str, args: list[str], required: bool, why: str) -> Check:
    path = shutil.which(name)
    if path is None:
        return Check(name, False, f"not found on PATH ({why})", required)
    try:
        out = subprocess.run([path, *args], capture_output=True, text=True, timeout=5)
        version = (out.stdout or out.stderr).strip().splitlines()[0]
    except (OSError, subprocess.TimeoutExpired, IndexError):
        version = path
    return Check(name, True, version, required)


def _mode(path: os.PathLike[str], want: int) -> tuple[bool, str]:
    mode = stat.S_IMODE(os.stat(path).st_mode)
    return mode & ~want == 0, f"{oct(mode)} (want {oct(want)} or stricter)"


def _home_checks() -> list[Check]:
    from shoal.paths import Home, HomeError

    home = Home.resolve()
    try:
        home.ensure()
    except HomeError as exc:
        return [Check("home", False, str(exc))]
    checks = []
    for label, path, want in (("home", home.root, 0o700), ("run dir", home.run, 0o700)):
        ok, detail = _mode(path, want)
        checks.append(Check(label, ok, f"{path} {detail}"))
    return checks


def _orchestrator_checks() -> list[Check]:
    from shoal import daemon
    from shoal.client import Client
    from shoal.paths import Home

    home = Home.resolve()
    pid = daemon.running_pid(home)
    checks = []
    if pid is None:
        stale = [p.name for p in (home.mailbox_socket, home.events_socket) if p.exists()]
        detail = (
            f"not running; stale sockets {stale} are cleaned at next start"
            if stale
            else "not running"
        )
        checks.append(Check("orchestrator", True, detail, required=False))
    else:
        try:
            reply = Client(home).status(timeout=5)
            checks.append(
                Check(
                    "orchestrator",
                    True,
                    f"pid {pid}, {len(reply.actors)} actors, mailbox answers",
                    required=False,
                )
            )
        except Exception as exc:
            checks.append(
                Check(
                    "orchestrator",
                    False,
                    f"pid {pid} holds the lock but the mailbox does not answer: {exc}",
                )
            )
    return checks + _database_checks(home)


def _database_checks(home: Home) -> list[Check]:
    """The file is there if the home has had one, DuckDB reads it, its schema is current."""
    from shoal.client import query as read
    from shoal.store.database import DatabaseError, missing
    from shoal.store.migrations import LATEST

    if not home.database.exists():
        lost = missing(home.database)
        if lost is not None:
            return [Check("database", False, str(lost))]
        return [Check("database", True, f"{home.database} not created yet", required=False)]
    ok, detail = _mode(home.database, 0o600)
    checks = [Check("database file", ok, f"{home.database} {detail}")]
    try:
        version = read(home, "schema.version").rows[0][0]
    except DatabaseError as exc:  # corrupt, truncated, another version: the line says what to do
        return [*checks, Check("database", False, str(exc))]
    except Exception as exc:
        return [*checks, Check("schema", False, f"cannot read: {str(exc).splitlines()[0]}")]
    checks.append(Check("schema", version == LATEST, f"version {version} (code expects {LATEST})"))
    return checks


def _model_check() -> Check:
    model = os.environ.get("SHOAL_MODEL")
    keys = [
        k
        for k in (
            "SHOAL_API_KEY",
            "OPENAI_API_KEY",
            "ANTHROPIC_API_KEY",
            "GEMINI_API_KEY",
            "OPENROUTER_API_KEY",
        )
        if os.environ.get(k)
    ]
    if model or keys:
        detail = f"model {model or '(default)'}; keys set: {', '.join(keys) or 'none'}"
        return Check("model", True, detail, required=False)
    return Check(
        "model", False, "no SHOAL_MODEL or provider key set (shoal demo needs none)", required=False
    )


def _project_checks(cwd: Path) -> list[Check]:
    """The checks a task in ``cwd`` would run, and with what (when ``cwd`` is a repository)."""
    from shoal.evaluation import checks
    from shoal.evaluation.settings import load_checks
    from shoal.paths import Home
    from shoal.settings import SettingsError
    from shoal.submission import SubmitError, is_git_repo

    try:
        if not is_git_repo(cwd):
            return []
        settings = load_checks(Home.resolve().config_file, cwd / ".shoal" / "config.toml")
    except (SubmitError, SettingsError) as exc:
        return [Check("project checks", False, str(exc), required=False)]
    found = checks.find(cwd, settings=settings, virtual_env=os.environ.get("VIRTUAL_ENV"))
    if not any(c.kind == "test" for c in found):
        none = Check("tests", True, "no tests found here: the judge alone decides", False)
        return [none, *(_shown_check(c) for c in found)]
    return [_shown_check(c) for c in found]


def _shown_check(check: Any) -> Check:
    if check.problem is not None:
        return Check(f"{check.kind} {check.name}", False, f"cannot run: {check.problem}", False)
    detail = check.command_text
    if check.runner and not detail.startswith(check.runner):
        detail += f" (with {check.runner})"
    return Check(f"{check.kind} {check.name}", True, detail, required=False)


def doctor(
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
    cwd: Path | None = typer.Option(
        None, "--cwd", "-C", help="Repository whose checks to show (default: here)."
    ),
) -> None:
    """Check Python, tools, SHOAL_HOME, sockets, the database, model configuration, and
    the project checks a task here would run (and with which interpreter or tool)."""
    py_ok = sys.version_info >= (3, 11)
    home_checks = _home_checks()
    home_ok = all(c.ok for c in home_checks)
    checks = [
        Check("python", py_ok, f"{sys.version.split()[0]} (need 3.11 or newer)"),
        _tool("git", ["--version"], True, "workspaces and diffs need it"),
        _tool("tmux", ["-V"], False, "needed for teammates in tmux panes"),
        _tool("rg", ["--version"], False, "grep falls back to Python without it"),
        *home_checks,
        *(_orchestrator_checks() if home_ok else []),
        _model_check(),
        *_project_checks((cwd or Path.cwd()).absolute()),
    ]
    failed = [c for c in checks if c.required and not c.ok]
    if json_out:
        print_json({"ok": not failed, "checks": [c.__dict__ | {"status": c.mark} for c in checks]})
    else:
        from rich.table import Table

        table = Table(box=None, pad_edge=False)
        for column in ("check", "status", "detail"):
            table.add_column(column)
        for c in checks:
            colour = "green" if c.ok else ("red" if c.required else "yellow")
            table.add_row(c.name, f"[{colour}]{c.mark}[/{colour}]", c.detail)
        console().print(table)
    if failed:
        raise typer.Exit(1)
