"""edit_file: exact-match replacement in a file the model has read and that has not changed.

The model sees files with LF line ends (read_file drops the CR), so in a CRLF
file its ``old_string``/``new_string`` are matched and written with CRLF: the
file keeps its line ends. Bytes that are not UTF-8 survive an edit unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator

from pydantic import Field

from shoal.tools.base import ToolArgs, ToolError, ToolOutput
from shoal.tools.files import atomic_write, is_binary, read_regular, split_lines
from shoal.tools.workspace import Workspace

# Lines of context shown around an edit, so the model can check it without re-reading.
CONTEXT_LINES = 3
MAX_SNIPPET_LINES = 40


class EditFileArgs(ToolArgs):
    path: str = Field(min_length=1)
    """The file to change, relative to the workspace root."""
    old_string: str
    """The exact text to replace, including indentation; must occur exactly once unless
    replace_all is true. Do not include read_file's line-number prefixes."""
    new_string: str
    """The text to put in its place (may be empty to delete old_string)."""
    replace_all: bool = False
    """Replace every occurrence of old_string instead of requiring exactly one."""


EDIT_FILE = """\
Replace exact text in a file. `old_string` must match the file exactly (whitespace and \
indentation included) and occur exactly once, unless `replace_all` is true; include a few \
surrounding lines to make it unique. The file must have been read with read_file (or \
written with write_file) first and not changed since; if it changed, read it again. The \
file keeps its line endings and permissions. To create a file or replace all of it, use \
write_file."""


def edit_file(ws: Workspace, args: EditFileArgs) -> ToolOutput:
    if not args.old_string:
        raise ToolError(
            "old_string is empty; give the exact text to replace (to create a file or "
            "replace all of it, use write_file)"
        )
    if args.old_string == args.new_string:
        raise ToolError("old_string and new_string are identical; the edit would change nothing")
    path = ws.resolve(args.path, write=True)
    shown = ws.display(path)
    data, _ = read_regular(path, shown)
    if is_binary(data):
        raise ToolError(f"{shown} is a binary file; edit_file changes text files only")
    if ws.reads.get(path) is None:
        raise ToolError(f"you have not read {shown} yet; read_file it before editing")
    if not ws.reads.unchanged(path, data):
        raise ToolError(f"{shown} changed since you read it; read_file it again before editing")

    # surrogateescape carries bytes that are not UTF-8 through unchanged.
    text = data.decode("utf-8", errors="surrogateescape")
    old, new, count = _find(text, args.old_string, args.new_string)
    if count == 0:
        raise ToolError(
            f"old_string was not found in {shown}; read_file it again and copy the text "
            "exactly, including indentation and whitespace, without line-number prefixes"
        )
    if count > 1 and not args.replace_all:
        at = ", ".join(str(n) for n in _line_numbers(text, old)[:10])
        raise ToolError(
            f"old_string occurs {count} times in {shown} (at lines {at}); add surrounding "
            "lines to make it unique or pass replace_all=true"
        )
    first = text.index(old)
    result = text.replace(old, new) if args.replace_all else text.replace(old, new, 1)
    out = result.encode("utf-8", errors="surrogateescape")
    st = atomic_write(path, out)
    ws.reads.record(path, out, st)

    replaced = f"{count} occurrences" if count > 1 else "1 occurrence"
    start = text.count("\n", 0, first) + 1
    end = start + new.count("\n")
    where = "the first one" if count > 1 else "it"
    return ToolOutput(
        f"edited {shown}: replaced {replaced}. The file around {where} now reads:\n"
        + _snippet(out.decode("utf-8", errors="replace"), start, end)
    )


def _find(text: str, old: str, new: str) -> tuple[str, str, int]:
    """The forms of old/new to use in ``text`` and how often old occurs there."""
    for o, n in _forms(text, old, new):
        count = text.count(o)
        if count:
            return o, n, count
    return old, new, 0


def _forms(text: str, old: str, new: str) -> Iterator[tuple[str, str]]:
    # First in the file's dominant line ending, then exactly as given (a file
    # with mixed endings may hold old_string as given).
    eol = _dominant_eol(text)
    yield _with_eol(old, eol), _with_eol(new, eol)
    yield old, new


def _dominant_eol(text: str) -> str:
    crlf = text.count("\r\n")
    return "\r\n" if crlf > text.count("\n") - crlf else "\n"


def _with_eol(s: str, eol: str) -> str:
    lf = s.replace("\r\n", "\n")
    return lf if eol == "\n" else lf.replace("\n", eol)


def _line_numbers(text: str, needle: str) -> list[int]:
    numbers, pos = [], text.find(needle)
    while pos != -1:
        numbers.append(text.count("\n", 0, pos) + 1)
        pos = text.find(needle, pos + len(needle))
    return numbers


def _snippet(text: str, start: int, end: int) -> str:
    lines = split_lines(text)
    first = max(1, start - CONTEXT_LINES)
    last = min(len(lines), end + CONTEXT_LINES, first + MAX_SNIPPET_LINES - 1)
    if not lines:
        return "(the file is now empty)"
    return "\n".join(f"{n:>6}\t{lines[n - 1]}" for n in range(first, last + 1))
