"""grep: regex search over file contents, printed as ``path:line:text``.

ripgrep does the work when it is on PATH; otherwise a pure-Python search gives
the same output: paths relative to the workspace root, sorted by path, hidden
files searched, ``.git`` skipped, .gitignored files skipped (the fallback asks
``git ls-files`` for them), binary files skipped, long lines cut alike.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pydantic import Field

from shoal.tools.base import ToolArgs, ToolError, ToolOutput
from shoal.tools.files import BINARY_SNIFF, MAX_FILE_BYTES
from shoal.tools.patterns import compile_glob
from shoal.tools.workspace import Workspace
from shoal.workspace.git import without_redirects

MAX_MATCHES = 5000
MAX_COLUMNS = 500
TIMEOUT = 60.0
_LONG_LINE = " [... omitted end of long line]"  # ripgrep's own marker, for identical output


class GrepArgs(ToolArgs):
    pattern: str = Field(min_length=1)
    """Regular expression to search for; prefix with (?i) to ignore case."""
    path: str | None = None
    """File or directory to search (default: the whole workspace)."""
    glob: str | None = None
    """Only search files matching this glob: "*.py" matches the name at any depth;
    a glob with "/" matches the path from the workspace root, e.g. "src/**/*.ts"."""


GREP = f"""\
Search file contents with a regular expression (ripgrep syntax, close to Python's). \
Returns matching lines as `path:line:text`, sorted by path, at most {MAX_MATCHES}. \
Searches the whole workspace unless `path` names a file or directory; `glob` limits \
which files are searched. Hidden files are searched; .git, .gitignored and binary \
files are not."""


@dataclass(frozen=True)
class _Search:
    regex: str
    targets: list[Path]
    file_glob: str | None


def grep(ws: Workspace, args: GrepArgs) -> ToolOutput:
    targets = [ws.resolve(args.path)] if args.path else list(ws.roots)
    for target in targets:
        if not target.exists():
            raise ToolError(f"{args.path} does not exist; check it with glob")
    search = _Search(args.pattern, targets, args.glob)
    rg = shutil.which("rg") if ws.ripgrep else None
    matches, capped = _ripgrep(ws, rg, search) if rg else _python(ws, search)
    where = args.path or "the workspace"
    if not matches:
        return ToolOutput(f"no matches for {args.pattern} in {where}")
    footer = ""
    if capped:
        footer = (
            f"(stopped after {MAX_MATCHES} matches; narrow the pattern, path or glob to "
            "see the rest)"
        )
    return ToolOutput("\n".join(matches), footer=footer)


def _line(shown: str, number: int | str, text: str) -> str:
    return f"{shown}:{number}:{text.removesuffix(chr(13))}"


# --- ripgrep -----------------------------------------------------------------


def _ripgrep(ws: Workspace, rg: str, search: _Search) -> tuple[list[str], bool]:
    # rg runs in the root and prints paths as given: relative under the root, absolute
    # elsewhere. The root alone is searched with no path, so no "./" prefix appears.
    strip_dot = search.targets != [ws.root]
    proc = subprocess.Popen(
        _rg_argv(ws, rg, search, strip_dot),
        cwd=ws.root,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    assert proc.stdout is not None and proc.stderr is not None
    timer = threading.Timer(TIMEOUT, _kill, args=(proc,))
    timer.start()
    errors: list[bytes] = []
    err_reader = threading.Thread(target=lambda: errors.append(proc.stderr.read()), daemon=True)
    err_reader.start()
    matches: list[str] = []
    capped = False
    try:
        for raw in proc.stdout:
            path, _, rest = raw.rstrip(b"\n").partition(b"\0")
            number, _, text = rest.partition(b":")
            if not rest:
                continue  # not a match line (e.g. a note about a binary file)
            if strip_dot and path.startswith(b"./"):
                path = path[2:]
            shown = path.decode(errors="replace")
            matches.append(_line(shown, number.decode(), text.decode(errors="replace")))
            if len(matches) > MAX_MATCHES:
                matches.pop()
                capped = True
                _kill(proc)
                break
    finally:
        proc.stdout.close()
        code = proc.wait()
        timer.cancel()
        err_reader.join(5)
    if code == 2 and not matches:
        message = b"".join(errors).decode(errors="replace").strip()
        if "regex" in message:
            raise ToolError(f"invalid regular expression {search.regex}: {message}")
    if code < 0 and not capped:
        raise ToolError(f"grep took longer than {TIMEOUT:g} s; narrow the path or glob")
    return matches, capped


def _rg_argv(ws: Workspace, rg: str, search: _Search, with_paths: bool) -> list[str]:
    argv = [
        rg,
        "--no-config",
        "--line-number",
        "--with-filename",
        "--no-heading",
        "--null",  # path, NUL, line: paths may contain ":"
        "--color=never",
        "--hidden",
        "--glob=!.git",
        f"--max-columns={MAX_COLUMNS}",
        "--max-columns-preview",
        "--sort=path",
        "--regexp",
        search.regex,
    ]
    if search.file_glob:
        argv += ["--glob", search.file_glob]
    if with_paths:
        argv += ["--", *(ws.display(t) for t in search.targets)]
    return argv


def _kill(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


# --- pure-Python fallback ----------------------------------------------------


def _python(ws: Workspace, search: _Search) -> tuple[list[str], bool]:
    try:
        regex = re.compile(search.regex)
    except re.error as exc:
        raise ToolError(f"invalid regular expression {search.regex}: {exc}") from None
    name_glob = compile_glob(search.file_glob) if search.file_glob else None
    path_glob = search.file_glob is not None and "/" in search.file_glob
    matches: list[str] = []
    for target in search.targets:
        for path in _files(target):
            shown = ws.display(path)
            if name_glob is not None and not name_glob.match(shown if path_glob else path.name):
                continue
            for number, line in _matching_lines(path, regex):
                if len(matches) == MAX_MATCHES:
                    return matches, True
                matches.append(_line(shown, number, _clip(line)))
    return matches, False


def _files(target: Path) -> list[Path]:
    """The files under ``target`` that ripgrep would search, sorted the way it sorts them."""
    if target.is_file():
        return [target]
    listed = _git_listed(target)
    if listed is None:
        listed = []
        for dirpath, dirnames, filenames in os.walk(target):
            dirnames[:] = [d for d in dirnames if d != ".git"]
            listed += [Path(dirpath) / name for name in filenames]
    files = [p for p in listed if not p.is_symlink() and p.is_file()]
    # Component-wise, like ripgrep's --sort=path ("a/x" before "a-b/x").
    return sorted(files, key=lambda p: p.relative_to(target).parts)


def _git_listed(directory: Path) -> list[Path] | None:
    """Files git tracks or would track under ``directory``; None outside a git work tree."""
    try:
        done = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=directory,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=TIMEOUT,
            env={**without_redirects(os.environ), "GIT_OPTIONAL_LOCKS": "0"},
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    names = {n for n in done.stdout.decode(errors="surrogateescape").split("\0") if n}
    return [directory / n for n in names]


def _matching_lines(path: Path, regex: re.Pattern[str]) -> Iterator[tuple[int, str]]:
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            return
        data = path.read_bytes()
    except OSError:
        return  # unreadable files are skipped, as ripgrep does
    if b"\0" in data[:BINARY_SNIFF]:
        return
    lines = data.decode("utf-8", errors="replace").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    for number, line in enumerate(lines, start=1):
        if regex.search(line.removesuffix("\r")):
            yield number, line


def _clip(line: str) -> str:
    if len(line.encode()) <= MAX_COLUMNS:
        return line
    return line.encode()[:MAX_COLUMNS].decode(errors="ignore") + _LONG_LINE
