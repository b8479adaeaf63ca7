"""Printing for the CLI: rich on a terminal, plain text otherwise, errors as one line."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    from rich.console import Console


def console(stderr: bool = False) -> Console:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=False)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=None, default=str) + "\n")


def fail(message: str, code: int = 1) -> NoReturn:
    """Print ``shoal: error: ...`` (one line) and exit."""
    import typer

    first = str(message).strip().splitlines()[0] if str(message).strip() else "failed"
    sys.stderr.write(f"shoal: error: {first}\n")
    raise typer.Exit(code)
