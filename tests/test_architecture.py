"""The shape of the code: packages depend one way (DESIGN.md §6), and functions stay readable.

Imports are read from the source (not executed). An import inside ``if
TYPE_CHECKING:`` is for the type checker only and does not count; an import
inside a function does: it runs when the function does.
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "shoal"

# Lowest first: a package may import from its own layer and the ones before it.
# DESIGN.md §6: cli -> client -> (orchestrator | actors) -> agent -> tools / llm / mcp /
# evaluation -> messages / mailbox / store.
LAYERS: list[tuple[str, ...]] = [
    ("ids", "paths", "process", "background", "trust", "messages"),
    ("mailbox", "settings", "approvals"),
    ("store", "workspace"),
    ("llm", "tools", "learning", "evaluation", "providers", "plugins", "cluster"),
    ("memory", "skills", "mcp", "config", "submission"),
    ("daemon", "client"),
    ("agent",),
    ("actors",),
    ("tmux", "launchers"),
    ("api",),
    ("orchestrator",),
    ("replay", "backup"),
    ("batch", "chat"),
    ("cli",),
    ("__main__", "__init__"),
]
RANK = {name: n for n, layer in enumerate(LAYERS) for name in layer}
LONGEST_FUNCTION = 60
SQL_HOME = ROOT / "store"
"""The one package that holds SQL statements (DESIGN.md §6)."""
# A statement's shape, in the upper case shoal writes SQL in: prose that names a keyword
# ("one SELECT over the views") has no FROM, INTO, SET or TABLE after it.
_SQL = re.compile(
    r"\bSELECT\s[\s\S]{0,400}?\bFROM\b"
    r"|\bINSERT\s+(?:OR\s+(?:REPLACE|IGNORE)\s+)?INTO\s"
    r"|\bUPDATE\s+\"?\w+\"?\s+SET\s"
    r"|\bDELETE\s+FROM\s"
    r"|\bCREATE\s+(?:OR\s+REPLACE\s+)?(?:TEMP\s+|TEMPORARY\s+)?"
    r"(?:TABLE|VIEW|INDEX|SEQUENCE|SCHEMA|MACRO)\s"
    r"|\b(?:ALTER|DROP)\s+(?:TABLE|VIEW|INDEX|SCHEMA)\s"
    r"|\bCOPY\s[\s\S]{1,200}?\bTO\s"
)
_RUNS_SQL = ("execute", "executemany")


def _unit(path: Path) -> str:
    """The package (or top-level module) a file belongs to."""
    parts = path.relative_to(ROOT).parts
    return parts[0].removesuffix(".py")


def _is_unit(name: str) -> bool:
    """A package or module of shoal (not a name like ``__version__``)."""
    return (ROOT / name).is_dir() or (ROOT / f"{name}.py").is_file()


def _imports(tree: ast.Module) -> list[tuple[str, int]]:
    """(unit imported, line) for each runtime import of shoal's own code."""
    typing_only = {
        id(node)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
        for node in ast.walk(block)
    }
    found = []
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
            if node.module == "shoal":  # from shoal import config, paths
                names = [f"shoal.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "shoal" and len(parts) > 1 and _is_unit(parts[1]):
                found.append((parts[1], node.lineno))
    return found


def _graph() -> tuple[dict[str, set[str]], dict[tuple[str, str], str]]:
    edges: dict[str, set[str]] = defaultdict(set)
    where: dict[tuple[str, str], str] = {}
    for path in sorted(ROOT.rglob("*.py")):
        unit = _unit(path)
        for target, line in _imports(ast.parse(path.read_text())):
            if target != unit:
                edges[unit].add(target)
                where.setdefault((unit, target), f"{path.relative_to(ROOT.parent)}:{line}")
    return edges, where


def test_every_package_has_a_layer() -> None:
    units = {_unit(p) for p in ROOT.rglob("*.py")}
    assert units - set(RANK) == set(), "add the new package to LAYERS"


def test_imports_point_down_the_layers() -> None:
    edges, where = _graph()
    upward = [
        f"{where[(a, b)]}: {a} imports {b}, which is above it"
        for a, targets in edges.items()
        for b in targets
        if RANK[b] > RANK[a]
    ]
    assert upward == []


def test_no_packages_import_each_other_in_a_cycle() -> None:
    edges, where = _graph()
    cycles = []
    for start in sorted(edges):
        path = _cycle_from(start, edges)
        if path:
            cycles.append(" -> ".join(path) + f" (first edge at {where[(path[0], path[1])]})")
    assert cycles == []


def _cycle_from(start: str, edges: dict[str, set[str]]) -> list[str] | None:
    """A path of imports from ``start`` back to it, if there is one."""
    stack = [(start, [start])]
    seen: set[str] = set()
    while stack:
        node, path = stack.pop()
        for nxt in sorted(edges.get(node, ())):
            if nxt == start:
                return [*path, start]
            if nxt not in seen:
                seen.add(nxt)
                stack.append((nxt, [*path, nxt]))
    return None


def test_every_function_can_be_read_at_once() -> None:
    long = []
    for path in sorted(ROOT.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                size = (node.end_lineno or node.lineno) - node.lineno + 1
                if size > LONGEST_FUNCTION:
                    long.append(f"{path.relative_to(ROOT.parent)}:{node.lineno} {node.name} {size}")
    assert long == []


def _mapped() -> set[str]:
    """The modules docs/architecture.md's module map names (``a/b.py``, ``c.py`` in one cell
    means a/b.py and a/c.py; ``shoal/cli/`` with its list names each of them)."""
    text = (ROOT.parent / "docs" / "architecture.md").read_text()
    table = text.split("## Module map", 1)[1].split("\n## ", 1)[0]
    found: set[str] = set()
    for row in table.splitlines():
        cells = row.split(" | ")
        if not row.startswith("| `shoal/") or len(cells) < 2:
            continue
        names = [n.strip("` ") for n in cells[0].lstrip("| ").split(",")]
        base = names[0].rsplit("/", 1)[0]
        found |= {n if n.startswith("shoal/") else f"{base}/{n}" for n in names}
        if names[0].endswith("/"):  # a package whose modules the second cell lists
            found |= {f"{names[0]}{m}" for m in _ticked(cells[1]) if m.endswith(".py")}
    return found


def _ticked(cell: str) -> list[str]:
    return [part.split("`")[0] for part in cell.split("`")[1::2]]


def test_the_module_map_names_every_module_there_is() -> None:
    modules = {
        str(p.relative_to(ROOT.parent))
        for p in ROOT.rglob("*.py")
        if p.name not in ("__init__.py", "__main__.py")
    }
    # A package's __init__ is named where it holds more than imports (launchers' protocols).
    mapped = {m for m in _mapped() if m.endswith(".py") and not m.endswith("/__init__.py")}
    assert sorted(modules - mapped) == [], "add them to docs/architecture.md's module map"
    assert sorted(mapped - modules) == [], "the module map names modules that do not exist"


# Who may open a connection to the orchestrator of their own: the client library, the
# orchestrator's own lifecycle module, the transport, and the actor side (actors, their
# panes, the orchestrator and what it hosts).
_OWN_CONNECTIONS = ("client.py", "daemon.py", "mailbox/", "actors/", "tmux/", "orchestrator/")
_CONNECTING = re.compile(
    r"\bdaemon\.(request|status|query|connect)\(|\bMailboxClient\(|\b(Async)?Subscriber\("
)


def test_clients_talk_to_the_orchestrator_through_the_client_library() -> None:
    found = []
    for path in sorted(ROOT.rglob("*.py")):
        where = str(path.relative_to(ROOT))
        if where.startswith(_OWN_CONNECTIONS) or where == "api/webhooks.py":
            continue  # webhooks: the orchestrator's own subscriber, in its process
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if _CONNECTING.search(line):
                found.append(f"shoal/{where}:{number}: {line.strip()}")
    assert found == [], "use shoal.client (Client, Channel) instead"


def _prose(tree: ast.Module) -> set[int]:
    """Ids of the string constants that are documentation: docstrings, and the strings
    standing alone after an attribute (``x = 1`` then ``\"\"\"what x is\"\"\"``)."""
    found = set()
    for node in ast.walk(tree):
        for field in ("body", "orelse", "finalbody"):
            block = getattr(node, field, None)
            for statement in block if isinstance(block, list) else []:
                if isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant):
                    found.add(id(statement.value))
    return found


def _sql_outside_store() -> list[str]:
    found = []
    for path in sorted(ROOT.rglob("*.py")):
        if path.is_relative_to(SQL_HOME):
            continue
        tree = ast.parse(path.read_text())
        prose = _prose(tree)
        where = path.relative_to(ROOT.parent)
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                match = _SQL.search(node.value)
                if match and id(node) not in prose:
                    found.append(f"{where}:{node.lineno} {match.group(0)[:40]!r}")
            elif (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in _RUNS_SQL
            ):
                found.append(f"{where}:{node.lineno} .{node.func.attr}(...)")
    return found


def test_every_sql_statement_is_in_the_store() -> None:
    """SQL lives in shoal/store/, one module per group of tables; the rest of the code calls
    its named functions (a statement found elsewhere fails here, with where it is).

    No module is excused. The one place that must run SQL it did not write, ``shoal sql``
    (the user's own SELECT), hands the text as a value to store/usersql.py, which runs it
    read-only inside the store: the CLI, the client and the orchestrator's Records service
    only pass it through, and a variable holding it is no statement to this check."""
    assert _sql_outside_store() == [], "move the statement into a function of shoal/store/"


def test_the_sql_check_sees_a_statement() -> None:
    tree = ast.parse('q = "SELECT id FROM tasks"\ncur.execute(q)\n"""One SELECT, in prose."""')
    prose = _prose(tree)
    strings = [n for n in ast.walk(tree) if isinstance(n, ast.Constant) and id(n) not in prose]
    assert [bool(_SQL.search(n.value)) for n in strings] == [True]
    assert not _SQL.search("One SELECT over the views (tasks, iterations, ...; see --schema).")
    assert _SQL.search("INSERT OR REPLACE INTO tasks VALUES (?)")
    assert _SQL.search("UPDATE team_tasks SET status = ?")


def test_only_the_daemon_s_assembly_knows_the_broker() -> None:
    """The broker takes its services (through their router); none of them takes the broker,
    not even for a type: what they send goes through the outbox."""
    knows = []
    for path in sorted((ROOT / "orchestrator").rglob("*.py")):
        if path.name in ("broker.py", "server.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom):
                continue
            names = [f"{node.module}.{alias.name}" for alias in node.names]
            if node.module == "shoal.orchestrator.broker" or "shoal.orchestrator.broker" in names:
                knows.append(f"{path.relative_to(ROOT.parent)}:{node.lineno}")
    assert knows == []
