"""Cutting long tool output to what fits a model's context, keeping the full text on disk.

Output over :data:`MAX_LINES` lines or :data:`MAX_BYTES` bytes is cut; the full
text goes to ``<outputs_dir>/<tool>-<id>.txt`` (0600, in a 0700 directory) and
the returned text ends with a note saying where it is and how to read on.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from shoal.ids import new_id
from shoal.tools.base import ToolOutput

MAX_LINES = 2000
MAX_BYTES = 50 * 1024


@dataclass(frozen=True)
class Fitted:
    """Output ready for the model."""

    text: str
    saved: Path | None
    """Where the full output was saved, when it had to be cut."""


def fit(
    output: ToolOutput,
    outputs_dir: Path | None,
    tool: str,
    *,
    max_lines: int = MAX_LINES,
    max_bytes: int = MAX_BYTES,
) -> Fitted:
    """``output`` as the model sees it: cut if too long (full text saved), footer appended.

    ``outputs_dir`` is created (0700) only when something must be saved; with None
    nothing is saved and the note says so.
    """
    text = output.text
    lines = _lines(text)
    size = len(text.encode())
    if len(lines) <= max_lines and size <= max_bytes:
        return Fitted(_join(text, output.footer), None)
    saved, failure = None, ""
    if outputs_dir is not None:
        try:
            saved = _save(text, outputs_dir, tool)
        except OSError as exc:
            failure = f" The full output could not be saved ({exc.strerror or exc})."
    if output.keep == "ends":
        head = _take(lines, max_lines // 2, max_bytes // 2)
        tail = _take(lines[::-1], max_lines // 2, max_bytes // 2, from_end=True)
        omitted = len(lines) - head.count - tail.count
        if omitted > 0:
            body = f"{head.text}[... {omitted} lines omitted ...]\n{tail.text}"
        else:  # one line too long for either half: its middle goes
            body = f"{head.text}[... part of a long line omitted ...]\n{tail.text}"
        first_tail = len(lines) - tail.count + 1
        shown = f"lines 1-{head.count} and {first_tail}-{len(lines)} of {len(lines)}"
        next_line = head.count + 1
        kept = len(head.text.encode()) + len(tail.text.encode())
    else:
        head = _take(lines, max_lines, max_bytes)
        body = head.text
        shown = f"lines 1-{head.count} of {len(lines)}"
        # A line cut in the middle is shown again from its start.
        next_line = head.count + 1 if not head.partial else max(head.count, 1)
        if head.partial:
            shown = f"lines 1-{head.count} of {len(lines)} (the last one cut)"
        kept = len(body.encode())
    note = f"[output cut: showing {shown}, {_kb(kept)} of {_kb(size)}."
    if saved is not None:
        note += (
            f" Full output saved to {saved}; read the rest with "
            f'read_file(path="{saved}", offset={next_line}) or search it with '
            f'grep(pattern="...", path="{saved}").]'
        )
    else:
        note += f"{failure} Narrow the request to see the rest.]"
    return Fitted(_join(body.rstrip("\n") + "\n" + note, output.footer), saved)


@dataclass(frozen=True)
class _Part:
    text: str
    count: int
    """Lines included (a cut line counts)."""
    partial: bool = False


def _take(lines: list[str], max_lines: int, max_bytes: int, *, from_end: bool = False) -> _Part:
    """As many whole lines as fit; a single over-long first line is cut to the byte budget."""
    taken: list[str] = []
    used = 0
    for line in lines[:max_lines]:
        n = len(line.encode())
        if used + n > max_bytes:
            if not taken:
                cut = line.encode()[:max_bytes]
                if from_end:
                    cut = line.encode()[-max_bytes:]
                taken.append(cut.decode(errors="ignore") + "\n")
                return _Part("".join(taken), 1, partial=True)
            break
        taken.append(line)
        used += n
    if from_end:
        taken.reverse()
    return _Part("".join(taken), len(taken))


def _lines(text: str) -> list[str]:
    """Lines with their ends, split on LF only: read_file numbers the saved file the same way."""
    parts = text.split("\n")
    lines = [part + "\n" for part in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    return lines


def _save(text: str, outputs_dir: Path, tool: str) -> Path:
    outputs_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(outputs_dir, 0o700)
    path = outputs_dir / f"{tool}-{new_id()}.txt"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8", errors="replace") as out:
        out.write(text)
    return path


def _join(text: str, footer: str) -> str:
    text = text.rstrip("\n")
    if not footer:
        return text
    return f"{text}\n{footer}" if text else footer


def _kb(n: int) -> str:
    return f"{n} bytes" if n < 1024 else f"{n / 1024:.1f} KB"
