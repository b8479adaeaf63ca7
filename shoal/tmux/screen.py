"""A pane's terminal: the transcript scrolls above, one input line stays at the bottom.

Transcript lines are written into a scroll region of every row but the last, so
what scrolls off its top goes into the pane's history as usual (tmux keeps the
top line of a region that starts at the first row) and the pane's scrollback is
the transcript. The last row is the input line: a prompt and what the person has
typed so far (or a dim hint of what typing does), redrawn after every transcript
line. Keys are read in cbreak mode with signals off, so Ctrl-C clears the line
instead of stopping the member.

Every write takes one lock: the transcript thread, the key thread and a handler
asking a question all draw here.
"""

from __future__ import annotations

import codecs
import contextlib
import io
import os
import select
import sys
import threading
from collections.abc import Callable
from typing import TextIO

ESC = "\x1b"
_MAX_TYPED = 20_000
_POLL = 0.25  # seconds between checks of the pane's size while no key comes


class Screen:
    def __init__(self, out: TextIO | None = None, fd_in: int = 0) -> None:
        self.out = out or sys.stdout
        self.fd_in = fd_in
        self.tty = self.out.isatty()
        self._lock = threading.RLock()
        self._prompt = ""
        """Shown before what is typed; "" for a pane that takes no input."""
        self._hint = ""
        """Shown dim in the input line while nothing is typed."""
        self._typed = ""
        self._used = 0  # rows of the region holding lines since the screen was cleared
        self._scrolled = 0  # rows this screen pushed into the history (tmux gives them back)
        self._cols, self._rows = self._size()
        self._saved: list[object] | None = None  # the terminal's modes before start()
        self._closed = False
        self._render_console = self._console(self._cols)

    # --- drawing -------------------------------------------------------------------

    def start(self) -> None:
        """Take the terminal: clear it, set the region, draw the input line."""
        if not self.tty:
            return
        with self._lock:
            self._write(f"{ESC}[H{ESC}[2J")
            self._used = 0
            self._region()
            self._draw_input()

    def line(self, markup: str) -> None:
        """One transcript line (rich markup), above the input line."""
        with self._lock:
            if self._closed:
                return
            text, cells = self._render(markup)
            self._put(text, cells)

    def plain(self, text: str) -> None:
        """Lines as they are (a stored transcript replayed after a restart)."""
        with self._lock:
            for raw in text.rstrip("\n").split("\n"):
                clean = "".join(c for c in raw if c >= " " or c == "\t").expandtabs(4)
                self._put(clean, len(clean))

    def prompt(self, prompt: str, hint: str = "") -> None:
        """What the input line shows before the typed text (and while nothing is typed)."""
        with self._lock:
            self._prompt, self._hint = prompt, hint
            if self.tty and not self._closed:
                self._draw_input()

    def bell(self) -> None:
        """Something needs the person: tmux flags the window in its status line."""
        if self.tty:
            with self._lock:
                self._write("\a")
                self.out.flush()

    def title(self, text: str) -> None:
        """The pane's title (tmux shows it in the pane's border)."""
        if self.tty:
            with self._lock:
                self._write(f"{ESC}]2;{''.join(c for c in text if c >= ' ')[:200]}{ESC}\\")

    def close(self, last: str | None = None) -> None:
        """Give the terminal back: no region, no input line; ``last`` as the final line."""
        with self._lock:
            if self._closed:
                return
            self._closed = True  # no input line from here on
            if self.tty:
                self._write(f"{ESC}[{self._rows};1H{ESC}[2K")
            if last is not None:
                text, cells = self._render(last)
                self._put(text, cells)
            if self.tty:
                self._write(f"{ESC}[r{ESC}[{min(self._used + 1, self._rows)};1H")
                self._restore_keys()
            with contextlib.suppress(OSError, ValueError):
                self.out.flush()

    # --- keys ------------------------------------------------------------------------

    def read_lines(self, on_line: Callable[[str], None]) -> None:
        """Read keys until input ends; each line typed (Enter) goes to ``on_line``."""
        if not os.isatty(self.fd_in):
            for raw in sys.stdin:
                if raw.strip():
                    on_line(raw.strip())
            return
        self._take_keys()
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        while not self._closed:
            ready, _, _ = select.select([self.fd_in], [], [], _POLL)
            self._follow_size()
            if not ready:
                continue
            data = os.read(self.fd_in, 4096)
            if not data:
                return
            for line in self._keys(decoder.decode(data)):
                on_line(line)

    def _keys(self, chunk: str) -> list[str]:
        """Apply the keys in ``chunk`` to the typed text; the lines finished by Enter."""
        done = []
        with self._lock:
            i = 0
            while i < len(chunk):
                c = chunk[i]
                i += 1
                if c in "\r\n":
                    if self._typed.strip():
                        done.append(self._typed.strip())
                    self._typed = ""
                elif c in "\x7f\x08":
                    self._typed = self._typed[:-1]
                elif c in "\x03\x15":  # Ctrl-C, Ctrl-U: start the line over
                    self._typed = ""
                elif c == ESC:
                    i = _skip_sequence(chunk, i)
                elif c >= " " and len(self._typed) < _MAX_TYPED:
                    self._typed += c
            if not self._closed:
                self._draw_input()
        return done

    def _take_keys(self) -> None:
        import termios
        import tty

        with contextlib.suppress(termios.error):
            self._saved = termios.tcgetattr(self.fd_in)
            tty.setcbreak(self.fd_in)
            modes = termios.tcgetattr(self.fd_in)
            modes[3] &= ~termios.ISIG  # Ctrl-C is a key here, not a signal to the member
            termios.tcsetattr(self.fd_in, termios.TCSANOW, modes)

    def _restore_keys(self) -> None:
        import termios

        if self._saved is not None:
            with contextlib.suppress(termios.error):
                termios.tcsetattr(self.fd_in, termios.TCSANOW, self._saved)

    # --- the terminal ------------------------------------------------------------------

    def _put(self, text: str, cells: int) -> None:
        """Write a line at the region's next row, scrolling the region when it is full."""
        if not self.tty:
            self._write(text + "\n")
            return
        self._follow_size()
        region = max(1, self._rows - 1)
        rows = max(1, -(-cells // max(1, self._cols)))
        if self._used < region:
            self._write(f"{ESC}[{self._used + 1};1H{ESC}[2K{text}")
            self._scrolled += max(0, self._used + rows - region)  # a long line wraps past it
        else:
            self._write(f"{ESC}[{region};1H\n{ESC}[2K{text}")
            self._scrolled += rows
        self._used = min(region, self._used + rows)
        if not self._closed:
            self._draw_input()
        self.out.flush()

    def _draw_input(self) -> None:
        if not self.tty:
            return
        room = max(1, self._cols - len(self._prompt) - 1)
        typed = self._typed[-room:]
        shown = f"{self._prompt}{typed}"
        if not typed and self._hint:
            hint = self._hint[: max(0, self._cols - len(self._prompt) - 1)]
            shown += f"{ESC}[2m{hint}{ESC}[0m"
        self._write(f"{ESC}[{self._rows};1H{ESC}[2K{shown}")
        if not typed and self._hint:
            self._write(f"{ESC}[{self._rows};{len(self._prompt) + 1}H")
        self.out.flush()

    def _region(self) -> None:
        self._write(f"{ESC}[1;{max(1, self._rows - 1)}r")

    def _follow_size(self) -> None:
        """The pane was resized: a new region and input line, where tmux left the lines."""
        cols, rows = self._size()
        if (cols, rows) == (self._cols, self._rows) or not self.tty:
            return
        with self._lock:
            old = self._rows
            self._cols, self._rows = cols, rows
            self._render_console = self._console(cols)
            if rows > old:
                # tmux pulls lines back from the history (those we pushed there) at the top;
                # the rest of the growth is blank rows under the old input line.
                pulled = min(self._scrolled, rows - old)
                self._scrolled -= pulled
                stale = old + pulled
                if stale < rows:
                    self._write(f"{ESC}[{stale};1H{ESC}[2K")
                self._used = min(rows - 1, stale - 1)
            else:
                self._scrolled += old - rows
                self._used = rows - 1
            self._region()
            self._draw_input()

    def _size(self) -> tuple[int, int]:
        try:
            size = os.get_terminal_size(self.out.fileno())
        except (OSError, ValueError, io.UnsupportedOperation):
            return 80, 24
        return max(10, size.columns), max(2, size.lines)

    def _console(self, width: int):  # type: ignore[no-untyped-def]
        from rich.console import Console

        return Console(
            file=io.StringIO(),
            force_terminal=self.tty,
            color_system="256" if self.tty else None,
            width=width,
            soft_wrap=True,
            highlight=False,
            emoji=False,
        )

    def _render(self, markup: str) -> tuple[str, int]:
        """ANSI text for one line of markup, and how many cells it takes."""
        from rich.cells import cell_len
        from rich.text import Text

        console = self._render_console
        console.file = io.StringIO()
        try:
            text = Text.from_markup(markup)
        except Exception:  # markup from a message that is not markup: show it as it is
            text = Text(markup)
        console.print(text, end="")
        return console.file.getvalue(), cell_len(text.plain)  # type: ignore[attr-defined]

    def _write(self, data: str) -> None:
        try:
            self.out.write(data)
        except (OSError, ValueError):  # the pane is gone: nothing to draw on
            self._closed = True


def _skip_sequence(chunk: str, i: int) -> int:
    """Where an escape sequence starting before ``i`` ends (arrow keys and the like)."""
    if i < len(chunk) and chunk[i] == "[":
        i += 1
        while i < len(chunk) and not ("@" <= chunk[i] <= "~"):
            i += 1
        return i + 1
    if i < len(chunk) and chunk[i] == "O":
        return i + 2
    return i + 1 if i < len(chunk) else i
