"""Skills the pattern-miner proposed: list them, approve or dismiss one.

Proposals are SKILL.md folders under ``$SHOAL_HOME/skills/proposed/``. Approving
moves one to ``$SHOAL_HOME/skills/`` (the user layer, so every later task may
select it); dismissing moves it to ``skills/dismissed/`` so it is never proposed
again. ``shoal learn`` and the HTTP API both decide through here.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class ProposalError(Exception):
    """A decision that cannot be taken; ``missing``: there is no such proposal."""

    def __init__(self, message: str, missing: bool) -> None:
        super().__init__(message)
        self.missing = missing


def listed(skills: Path) -> list[tuple[str, str]]:
    """(name, description) of each proposal under ``skills/proposed``, by name."""
    folder = skills / "proposed"
    found = []
    for skill in sorted(folder.glob("*/SKILL.md")) if folder.is_dir() else []:
        description = next(
            (
                line.split(":", 1)[1].strip()
                for line in skill.read_text().splitlines()
                if line.startswith("description:")
            ),
            "",
        )
        found.append((skill.parent.name, description))
    return found


def approve(skills: Path, name: str) -> Path:
    """Install proposal ``name`` for every later task; the folder it went to."""
    return _move(skills, name, skills / name)


def dismiss(skills: Path, name: str) -> Path:
    """Drop proposal ``name`` for good; the folder it went to."""
    return _move(skills, name, skills / "dismissed" / name)


def _move(skills: Path, name: str, target: Path) -> Path:
    source = skills / "proposed" / name
    if not _NAME.match(name) or not (source / "SKILL.md").is_file():
        raise ProposalError(f"no proposed skill {name!r}; `shoal learn list` shows them", True)
    if target.exists():
        raise ProposalError(f"{target} already exists; remove it first", False)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(source), str(target))
    return target
