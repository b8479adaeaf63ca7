"""``shoal export`` and ``shoal import``: what shoal recorded and learned, out and back in.

An export holds tables (tasks and their iterations, findings, costs and tool calls;
learnings; chat sessions and their messages; skill effectiveness) and the user's skill
files (``$SHOAL_HOME/skills/NAME/`` and the pattern-miner's ``skills/proposed/NAME/``,
as rows of ``skill_files``). The database part is written by DuckDB's COPY where the
database is (:func:`shoal.client.dump_tables`: by the orchestrator when it runs), as
Parquet; here, in an in-memory DuckDB of this process, values of secret-looking
environment variables (``*_KEY``, ``*_TOKEN``, ``*SECRET*``, ``*PASSWORD*``, ...) are
replaced by ``[redacted]`` wherever they appear (a key pasted into a chat, say), and the
result is written as one JSON document, JSON lines, or a folder of Parquet files.

An import reads any of the three and brings back what shoal learned: learnings (through
the orchestrator, under their own ids and times, embedded again by this home's embedder;
ones already here are skipped) and skill files (a skill already here with other content
is kept as it is, and said so). Tasks and sessions are records of what happened here:
they are exported, never imported.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shoal.paths import Home
from shoal.store import exports

if TYPE_CHECKING:
    import duckdb

WHAT = ("all", "tasks", "memory", "sessions", "skills")
FORMATS = ("json", "jsonl", "parquet")
VERSION = 1
REDACTED = "[redacted]"
SKILL_STATES = {"active": "", "proposed": "proposed"}
"""A skill file's state, and its folder under ``$SHOAL_HOME/skills``."""
_SECRET_NAME = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|AUTH)", re.I)
_SKILL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class BackupError(Exception):
    """An export or import cannot go on; the message is one line."""


def tables_for(what: str) -> list[str]:
    from shoal.store.dump import GROUPS

    groups = list(GROUPS) if what == "all" else [what]
    return [t for g in groups for t in GROUPS[g]]


def secrets(environ: dict[str, str] | None = None) -> list[str]:
    """Values of the environment that look like credentials (8 characters or more)."""
    env = os.environ if environ is None else environ
    found = {v for k, v in env.items() if _SECRET_NAME.search(k) and len(v) >= 8}
    return sorted(found, key=len, reverse=True)  # a key containing another goes first


# --- export ----------------------------------------------------------------------------------


@dataclass
class Exported:
    path: str
    rows: dict[str, int] = field(default_factory=dict)
    redacted: int = 0
    """Values replaced because they held a secret."""


def export(home: Home, what: str, fmt: str, out: str | None) -> Exported:
    """Write the export; ``out`` is a file (json, jsonl), a folder (parquet) or ``-``."""
    import duckdb

    from shoal import client
    from shoal.ids import new_id

    target = out or default_name(what, fmt)
    if fmt == "parquet" and (
        target == "-" or (Path(target).exists() and any(Path(target).iterdir()))
    ):
        raise BackupError(f"{target}: parquet needs a new or empty folder (-o DIR)")
    home.ensure()
    work = home.run / f"export-{new_id()}"
    try:
        tables = tables_for(what)
        client.dump_tables(home, tables, work)
        con = duckdb.connect()
        try:
            for table in tables:
                exports.load(con, table, work / f"{table}.parquet")
            if what in ("all", "skills"):
                exports.skill_files(con, skill_files(home))
            names = [*tables, *(["skill_files"] if what in ("all", "skills") else [])]
            done = Exported(target, redacted=_redact(con, names, secrets()))
            done.rows = {n: exports.count(con, n) for n in names}
            _write(con, names, what, fmt, target)
        finally:
            con.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return done


def default_name(what: str, fmt: str) -> str:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return f"shoal-export-{what}-{stamp}" + ("" if fmt == "parquet" else f".{fmt}")


def skill_files(home: Home) -> list[tuple[str, str, str, str, str]]:
    """``(skill, state, path in its folder, content, encoding)`` of the user's skills."""
    found = []
    for state, sub in SKILL_STATES.items():
        base = home.root / "skills" / sub if sub else home.root / "skills"
        if not base.is_dir():
            continue
        for folder in sorted(base.iterdir()):
            if not (folder / "SKILL.md").is_file() or folder.name in SKILL_STATES.values():
                continue
            for path in sorted(p for p in folder.rglob("*") if p.is_file() and not p.is_symlink()):
                data = path.read_bytes()
                try:
                    content, encoding = data.decode("utf-8"), "utf-8"
                except UnicodeDecodeError:
                    content, encoding = base64.b64encode(data).decode(), "base64"
                found.append((folder.name, state, str(path.relative_to(folder)), content, encoding))
    return found


def _redact(con: duckdb.DuckDBPyConnection, tables: list[str], found: list[str]) -> int:
    """Replace every secret in every text column; how many values changed."""
    changed = 0
    for table in tables if found else []:
        for column, kind in exports.text_columns(con, table):
            for secret in found:
                changed += exports.replace_text(con, table, column, kind, secret, REDACTED)
    return changed


def _write(
    con: duckdb.DuckDBPyConnection, tables: list[str], what: str, fmt: str, out: str
) -> None:
    header = {
        "shoal_export": VERSION,
        "what": what,
        "exported_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "tables": tables,
    }
    if fmt == "parquet":
        folder = Path(out)
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        for table in tables:
            exports.write_parquet(con, table, folder / f"{table}.parquet")
            os.chmod(folder / f"{table}.parquet", 0o600)
        _private_write(folder / "export.json", json.dumps(header, indent=2) + "\n")
        return
    rows = {t: exports.rows(con, t) for t in tables}
    if fmt == "json":
        text = json.dumps({**header, "data": rows}, ensure_ascii=False, default=str) + "\n"
    else:
        lines = [json.dumps(header)]
        lines += [
            json.dumps({"table": t, "row": r}, ensure_ascii=False, default=str)
            for t in tables
            for r in rows[t]
        ]
        text = "\n".join(lines) + "\n"
    if out == "-":
        import sys

        sys.stdout.write(text)
    else:
        _private_write(Path(out), text)


def _private_write(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)


# --- import ----------------------------------------------------------------------------------


@dataclass
class Imported:
    learnings: int = 0
    learnings_skipped: int = 0
    skills: list[str] = field(default_factory=list)
    skills_same: list[str] = field(default_factory=list)
    skills_kept: list[str] = field(default_factory=list)
    """Here already with other content: left as they are."""
    not_imported: list[str] = field(default_factory=list)
    """Tables of the export that are records, not what shoal learned."""


def read(path: Path) -> dict[str, list[dict[str, Any]]]:
    """The tables of an export (a JSON file, JSON lines, or a folder of Parquet files)."""
    if path.is_dir():
        return _read_parquet(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BackupError(f"{path}: cannot read it ({exc})") from None
    try:
        first = json.loads(text.split("\n", 1)[0]) if text.lstrip().startswith("{") else None
        if isinstance(first, dict) and "data" not in first and "shoal_export" in first:
            return _read_lines(text, path)
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BackupError(
            f"{path}: not a shoal export (not JSON: {exc.msg} at line {exc.lineno})"
        ) from None
    if (
        not isinstance(data, dict)
        or data.get("shoal_export") != VERSION
        or not isinstance(data.get("data"), dict)
    ):
        raise BackupError(f"{path}: not a shoal export (no shoal_export {VERSION} header)")
    return data["data"]


def _read_lines(text: str, path: Path) -> dict[str, list[dict[str, Any]]]:
    lines = [line for line in text.splitlines() if line.strip()]
    header = json.loads(lines[0])
    if header.get("shoal_export") != VERSION:
        raise BackupError(f"{path}: not a shoal export (no shoal_export {VERSION} header)")
    tables: dict[str, list[dict[str, Any]]] = {t: [] for t in header.get("tables", [])}
    for n, line in enumerate(lines[1:], 2):
        try:
            item = json.loads(line)
            tables.setdefault(item["table"], []).append(item["row"])
        except (ValueError, KeyError, TypeError):
            raise BackupError(f"{path}: line {n} is not a row of the export") from None
    return tables


def _read_parquet(folder: Path) -> dict[str, list[dict[str, Any]]]:
    import duckdb

    try:
        header = json.loads((folder / "export.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        header = {}
    if header.get("shoal_export") != VERSION:
        raise BackupError(
            f"{folder}: not a shoal export (no export.json with shoal_export {VERSION})"
        )
    con = duckdb.connect()
    try:
        tables = {}
        for table in header.get("tables", []):
            exports.load(con, table, folder / f"{table}.parquet")
            tables[table] = exports.rows(con, table)
        return tables
    except duckdb.Error as exc:
        raise BackupError(f"{folder}: {str(exc).splitlines()[0]}") from None
    finally:
        con.close()


def restore(home: Home, tables: dict[str, list[dict[str, Any]]], only: str | None) -> Imported:
    """Learnings and skills of an export into ``home``; ``only``: memory or skills."""
    from shoal import client
    from shoal.messages.base import InvalidMessage, from_dict
    from shoal.messages.memory import ExportedLearning

    done = Imported()
    done.not_imported = sorted(
        t for t, rows in tables.items() if rows and t not in ("learnings", "skill_files")
    )
    if only in (None, "memory") and tables.get("learnings"):
        try:
            learnings = [
                from_dict(ExportedLearning, {"id": r["learning_id"], **_learning(r)})
                for r in tables["learnings"]
            ]
        except (InvalidMessage, KeyError, TypeError) as exc:
            raise BackupError(
                f"the export's learnings are not valid: {str(exc).splitlines()[0]}"
            ) from None
        done.learnings, done.learnings_skipped = client.import_learnings(home, learnings)
    if only in (None, "skills"):
        _restore_skills(home, tables.get("skill_files", []), done)
    return done


def _learning(row: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "kind",
        "content",
        "confidence",
        "uses",
        "source_task",
        "team",
        "created_at",
        "last_used_at",
        "forgotten",
    )
    return {k: row.get(k) for k in keys if row.get(k) is not None}


def _restore_skills(home: Home, rows: list[dict[str, Any]], done: Imported) -> None:
    by_skill: dict[tuple[str, str], dict[str, bytes]] = {}
    for row in rows:
        skill, state, relative = str(row.get("skill")), str(row.get("state")), str(row.get("path"))
        if not _SKILL_NAME.match(skill) or state not in SKILL_STATES or not _safe(relative):
            raise BackupError(
                f"the export's skill file {skill}/{relative} ({state}) is not a safe path"
            )
        content = str(row.get("content") or "")
        data = base64.b64decode(content) if row.get("encoding") == "base64" else content.encode()
        by_skill.setdefault((state, skill), {})[relative] = data
    for (state, skill), files in sorted(by_skill.items()):
        sub = SKILL_STATES[state]
        folder = home.root / "skills" / sub / skill if sub else home.root / "skills" / skill
        if folder.exists():
            same = all(
                (folder / r).is_file() and (folder / r).read_bytes() == d for r, d in files.items()
            )
            (done.skills_same if same else done.skills_kept).append(skill)
            continue
        for relative, data in files.items():
            (folder / relative).parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            (folder / relative).write_bytes(data)
        done.skills.append(skill)


def _safe(relative: str) -> bool:
    parts = Path(relative).parts
    return bool(parts) and not Path(relative).is_absolute() and ".." not in parts
