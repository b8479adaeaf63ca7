"""The project's own toolchain: which interpreter, runner or package manager its checks use.

shoal is installed as a tool in an environment of its own, so nothing here looks
at ``sys.executable``: a project's tests run the way its developers run them.

Python, first found wins:

1. the virtual environment of the shell that submitted the task (its
   ``VIRTUAL_ENV``, which travels in the task), when it lies inside the repository;
2. the repository's ``.venv`` or ``venv``; for a git worktree (team subtasks run in
   worktrees under ``$SHOAL_HOME/worktrees``) the main work tree's too;
3. ``uv run`` where ``uv.lock`` exists and uv is installed; ``poetry run`` for
   ``poetry.lock``; ``hatch run`` where ``[tool.hatch.envs]`` is configured;
4. ``python3`` on PATH.

Node: the package manager the lockfile names (pnpm, yarn, bun, else npm), with
``node_modules/.bin`` first on PATH. A toolchain that is found but cannot run (a
venv whose base interpreter is gone, a lockfile's manager not installed) comes
back with a one-line ``problem`` that says how to fix it, never as "no checks".
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

VENV_NAMES = (".venv", "venv")
PROBE_TIMEOUT = 15.0
"""Seconds an interpreter may take to say which modules it has (a cold disk, a slow NFS)."""


@dataclass(frozen=True)
class Python:
    """How the project's Python code runs."""

    argv: tuple[str, ...]
    """The command that starts its interpreter: ``(".venv/bin/python",)``, ``("uv", "run", …)``."""
    runner: str
    """What a check records as its runner: the interpreter (``.venv/bin/python``, relative
    to the repository when inside it, ``/usr/bin/python3``) or the tool (``uv run``)."""
    venv: Path | None = None
    """The virtual environment, whose ``bin`` goes first on PATH (like activating it)."""
    manager: str | None = None
    """``uv``, ``poetry`` or ``hatch`` when such a tool runs it (then nothing is probed)."""
    problem: str | None = None
    """Why it cannot run, and the fix, in one line; None: it can."""
    modules: frozenset[str] = field(default_factory=frozenset)
    """Of the modules probed for (pytest), those it has; only for a plain interpreter."""


@dataclass(frozen=True)
class Node:
    """How the project's package.json scripts run."""

    manager: str
    """npm, pnpm, yarn or bun: the one its lockfile names."""
    test: tuple[str, ...]
    """The command that runs its ``test`` script."""
    bin_dir: Path
    """``node_modules/.bin``, first on PATH."""
    problem: str | None = None


def project_roots(root: Path) -> list[Path]:
    """``root``, then the work tree whose environment it may borrow: the main work tree
    of a linked git worktree, or the repository a ``git clone --shared`` (a batch unit's
    copy) borrows its objects from."""
    dotgit = root / ".git"
    if dotgit.is_file():
        return list(_main_work_tree(root))
    try:
        alternates = (dotgit / "objects" / "info" / "alternates").read_text().split()
    except OSError:
        return [root]
    source = Path(alternates[0]).parent.parent if alternates else None
    if source is None or Path(alternates[0]).parent.name != ".git" or source == root:
        return [root]
    return [root, source]


@functools.lru_cache(maxsize=64)
def _main_work_tree(root: Path) -> tuple[Path, ...]:
    # Asked once per worktree: the evaluator detects its checks every iteration.
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--path-format=absolute", "--git-common-dir"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
            env=_git_env(),
        )
    except (OSError, subprocess.TimeoutExpired):
        return (root,)
    common = Path(out.stdout.strip()) if out.returncode == 0 else None
    if common is None or common.name != ".git" or common.parent == root:
        return (root,)
    return (root, common.parent)


def find_python(root: Path, virtual_env: str | None = None, *, probe: bool = True) -> Python:
    """The project's Python (see the module's docstring for the order)."""
    roots = project_roots(root)
    chosen = _submitted_venv(roots, virtual_env) or _repo_venv(roots)
    if chosen is not None:
        return _with_modules(chosen) if probe else chosen
    managed = _managed(root)
    if managed is not None:
        return managed
    python3 = shutil.which("python3")
    if python3 is None:
        return Python(
            argv=("python3",),
            runner="python3",
            problem="no .venv in the repository and no python3 on PATH; "
            "make one: python3 -m venv .venv && .venv/bin/pip install -e .",
        )
    found = Python(argv=(python3,), runner=python3)
    return _with_modules(found) if probe else found


def find_venv(root: Path, virtual_env: str | None = None) -> Python | None:
    """Only a virtual environment (for commands that are not Python: make, a configured one)."""
    roots = project_roots(root)
    return _submitted_venv(roots, virtual_env) or _repo_venv(roots)


def find_node(root: Path) -> Node:
    """The package manager of ``root``'s package.json, by its lockfile."""
    manager, test = "npm", ("npm", "test")
    for lockfile, name, command in (
        ("pnpm-lock.yaml", "pnpm", ("pnpm", "test")),
        ("yarn.lock", "yarn", ("yarn", "test")),
        ("bun.lockb", "bun", ("bun", "run", "test")),  # `bun test` is bun's own runner
        ("bun.lock", "bun", ("bun", "run", "test")),
    ):
        if (root / lockfile).is_file():
            manager, test = name, command
            break
    node = Node(manager=manager, test=test, bin_dir=root / "node_modules" / ".bin")
    if shutil.which(manager) is None:
        why = f"{lockfile} names {manager}" if manager != "npm" else "package.json has a test"
        fix = "npm install -g " + manager if manager != "npm" else "install Node.js with npm"
        return _replace(node, problem=f"{why} and {manager} is not on PATH; {fix}")
    if _has_dependencies(root) and not (root / "node_modules").is_dir():
        install = f"{manager} install"
        return _replace(node, problem=f"node_modules is missing; run `{install}` in {root}")
    return node


def run_environment(
    base: dict[str, str], path: list[str], venv: str | None, pythonpath: list[str] | None = None
) -> dict[str, str]:
    """``base`` as a check runs in: ``path`` first on PATH, ``VIRTUAL_ENV`` the project's own,
    ``pythonpath`` first on PYTHONPATH."""
    env = dict(base)
    # shoal's own environment must not leak into the project's: an activated venv of
    # shoal's would make `poetry run` use it, and PYTHONHOME would move the stdlib.
    env.pop("VIRTUAL_ENV", None)
    env.pop("PYTHONHOME", None)
    if venv is not None:
        env["VIRTUAL_ENV"] = venv
    if path:
        env["PATH"] = os.pathsep.join([*path, env.get("PATH", os.defpath)])
    if pythonpath:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [*pythonpath, env.get("PYTHONPATH")]))
    return env


def own_code_first(root: Path, python: Python) -> list[str]:
    """PYTHONPATH entries that make a borrowed venv import ``root``'s code.

    A venv borrowed from the main work tree (or a clone's source) may hold an editable
    install of *that* tree; the checks must test this one's files.
    """
    if python.venv is None or python.venv.is_relative_to(root):
        return []
    return [str(p) for p in (root / "src", root) if p.is_dir()]


def _submitted_venv(roots: list[Path], virtual_env: str | None) -> Python | None:
    if not virtual_env:
        return None
    venv = Path(os.path.abspath(virtual_env))
    if not any(v == r or r in v.parents for v in (venv, venv.resolve()) for r in roots):
        return None  # another project's environment, or shoal's own
    return _venv(venv, roots[0])


def _repo_venv(roots: list[Path]) -> Python | None:
    for where in roots:
        for name in VENV_NAMES:
            venv = where / name
            if (venv / "pyvenv.cfg").is_file():
                return _venv(venv, roots[0])
    return None


def _venv(venv: Path, root: Path) -> Python:
    python = venv / "bin" / "python"
    found = Python(argv=(str(python),), runner=shown_path(python, root), venv=venv)
    if not python.exists():  # also a symlink whose base interpreter is gone
        why = "has no bin/python" if not python.is_symlink() else "points to a missing interpreter"
        return _replace(
            found,
            problem=f"{venv} {why}; recreate it: python3 -m venv --clear {venv} "
            "and install the project into it again",
        )
    return found


def _managed(root: Path) -> Python | None:
    if (root / "uv.lock").is_file() and shutil.which("uv"):
        return Python(argv=("uv", "run", "--frozen", "python"), runner="uv run", manager="uv")
    if (root / "poetry.lock").is_file() and shutil.which("poetry"):
        return Python(argv=("poetry", "run", "python"), runner="poetry run", manager="poetry")
    if "envs" in pyproject(root).get("tool", {}).get("hatch", {}) and shutil.which("hatch"):
        return Python(argv=("hatch", "run", "python"), runner="hatch run", manager="hatch")
    return None


_PROBE = (
    "import importlib.util as u, sys\n"
    "print(' '.join(m for m in sys.argv[1:] if u.find_spec(m) is not None))\n"
)


def _with_modules(python: Python, wanted: tuple[str, ...] = ("pytest",)) -> Python:
    """Ask the interpreter which of ``wanted`` it can import; a broken one gets a problem."""
    if python.problem is not None:
        return python
    try:
        out = subprocess.run(
            [*python.argv, "-c", _PROBE, *wanted],
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT,
            stdin=subprocess.DEVNULL,
            env=run_environment(dict(os.environ), [], None),
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return _replace(python, problem=f"{python.runner} does not start: {exc}")
    if out.returncode != 0:
        last = (out.stderr.strip().splitlines() or ["no output"])[-1]
        return _replace(python, problem=f"{python.runner} does not start: {last}")
    return _replace(python, modules=frozenset(out.stdout.split()))


def _has_dependencies(root: Path) -> bool:
    import json

    try:
        package = json.loads((root / "package.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(package, dict) and any(
        package.get(k) for k in ("dependencies", "devDependencies")
    )


def shown_path(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` when inside it, else absolute: how results name it."""
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def pyproject(root: Path) -> dict[str, Any]:
    """The project's pyproject.toml as parsed ({} if it has none, or it does not parse)."""
    try:
        return tomllib.loads((root / "pyproject.toml").read_text())
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return {}


def _git_env() -> dict[str, str]:
    from shoal.workspace.git import without_redirects

    return without_redirects(os.environ)


def _replace(obj, **changes):
    import dataclasses

    return dataclasses.replace(obj, **changes)
