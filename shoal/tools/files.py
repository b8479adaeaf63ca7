"""read_file and write_file, and the atomic write edit_file shares.

Writes go to a temporary file in the same directory, are fsynced, then
``os.replace``d over the target: a reader (or a crash) sees the old or the new
file, never half of one. An existing file keeps its mode.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

from pydantic import Field

from shoal.ids import new_id
from shoal.tools.base import ToolArgs, ToolError, ToolOutput
from shoal.tools.workspace import Workspace

DEFAULT_LIMIT = 2000
MAX_LINE_CHARS = 2000
# Larger files are paged with grep or shell tools; reading them whole wastes memory and context.
MAX_FILE_BYTES = 32 * 1024 * 1024
# Same heuristic as git and ripgrep: a NUL byte near the start means binary.
BINARY_SNIFF = 8192


class ReadFileArgs(ToolArgs):
    path: str = Field(min_length=1)
    """The file to read: relative to the workspace root, or absolute inside it."""
    offset: int = Field(1, ge=1)
    """1-based line number to start at (default 1)."""
    limit: int = Field(DEFAULT_LIMIT, ge=1)
    """How many lines to return at most (default 2000)."""


READ_FILE = f"""\
Read a text file. Returns its lines numbered like `cat -n` (line number, tab, text), \
starting at line `offset` (1-based), at most `limit` lines (default {DEFAULT_LIMIT}); \
when more remain, the output says which offset to pass next. Lines longer than \
{MAX_LINE_CHARS} characters are cut. The line numbers and tab are not part of the file: \
never copy them into edit_file. Reading a file is required before edit_file can change it."""


class WriteFileArgs(ToolArgs):
    path: str = Field(min_length=1)
    """The file to create or overwrite, relative to the workspace root; parent
    directories are created."""
    content: str
    """The complete new content of the file."""


WRITE_FILE = """\
Create a file, or replace an existing file's whole content. Parent directories are \
created. The write is atomic and an existing file keeps its permissions. Prefer \
edit_file for changing part of an existing file."""


def read_file(ws: Workspace, args: ReadFileArgs) -> ToolOutput:
    path = ws.resolve(args.path)
    shown = ws.display(path)
    data, st = read_regular(path, shown)
    if is_binary(data):
        raise ToolError(f"{shown} is a binary file ({len(data)} bytes); read_file shows text only")
    ws.reads.record(path, data, st)
    if not data:
        return ToolOutput(f"{shown} is empty (0 bytes)")
    lines = split_lines(data.decode("utf-8", errors="replace"))
    total = len(lines)
    if args.offset > total:
        raise ToolError(
            f"offset {args.offset} is past the end of {shown}, which has {total} lines; "
            f"pass an offset from 1 to {total}"
        )
    chunk = lines[args.offset - 1 : args.offset - 1 + args.limit]
    body = "\n".join(
        f"{number:>6}\t{_clip(line)}" for number, line in enumerate(chunk, start=args.offset)
    )
    last = args.offset + len(chunk) - 1
    footer = ""
    if last < total:
        footer = f"(lines {args.offset}-{last} of {total}; pass offset={last + 1} to read on)"
    return ToolOutput(body, footer=footer)


def write_file(ws: Workspace, args: WriteFileArgs) -> ToolOutput:
    path = ws.resolve(args.path, write=True)
    shown = ws.display(path)
    try:
        data = args.content.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ToolError(
            f"content has a character that is not valid UTF-8 at position {exc.start}; "
            "remove it and write again"
        ) from None
    if path.is_dir():
        raise ToolError(f"{shown} is a directory; give the path of a file")
    existed = path.exists()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise ToolError(
            f"cannot create {shown}: a parent of it is a file, not a directory"
        ) from None
    st = atomic_write(path, data)
    ws.reads.record(path, data, st)
    lines = len(split_lines(args.content)) if args.content else 0
    verb = "updated" if existed else "created"
    return ToolOutput(f"{verb} {shown} ({lines} lines, {len(data)} bytes)")


def read_regular(path: Path, shown: str) -> tuple[bytes, os.stat_result]:
    """The bytes of a regular file, and its stat, or ToolError saying why not."""
    try:
        # O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise ToolError(
            f'{shown} does not exist; find it with glob(pattern="**/{path.name}")'
        ) from None
    except IsADirectoryError:
        raise ToolError(f'{shown} is a directory; list it with glob(pattern="{shown}/*")') from None
    except PermissionError:
        raise ToolError(f"{shown} is not readable (permission denied)") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise ToolError(f'{shown} is a directory; list it with glob(pattern="{shown}/*")')
        if not stat.S_ISREG(st.st_mode):
            raise ToolError(f"{shown} is not a regular file (a device, FIFO or socket)")
        if st.st_size > MAX_FILE_BYTES:
            raise ToolError(
                f"{shown} is too large for read_file ({st.st_size // (1024 * 1024)} MB); "
                "find what you need with grep, or use shell with head/sed"
            )
        return f.read(), st


def atomic_write(path: Path, data: bytes) -> os.stat_result:
    """Replace ``path`` with ``data`` atomically, keeping an existing file's mode."""
    try:
        mode: int | None = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        mode = None
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
    while True:
        tmp = path.with_name(f".{path.name}.{new_id()[-8:]}.tmp")
        try:
            # 0o666 lets the umask decide a new file's mode, as any editor would.
            fd = os.open(tmp, flags, 0o666)
            break
        except FileExistsError:
            continue
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            if mode is not None:
                os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return os.stat(path)


def is_binary(data: bytes) -> bool:
    return b"\0" in data[:BINARY_SNIFF]


def split_lines(text: str) -> list[str]:
    """Lines split on LF only (CR before it dropped), as grep and editors number them."""
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line.removesuffix("\r") for line in lines]


def _clip(line: str) -> str:
    if len(line) <= MAX_LINE_CHARS:
        return line
    return f"{line[:MAX_LINE_CHARS]} [... {len(line) - MAX_LINE_CHARS} more characters]"
