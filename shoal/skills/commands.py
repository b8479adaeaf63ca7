"""Commands: Markdown prompt templates a person runs by name (Claude Code's ``commands/``).

``review.md`` is the command ``review``: its body, with ``$ARGUMENTS`` replaced by what
follows the name (``$1`` ... ``$9`` by its words), becomes the message sent: ``/review
src/app.py`` in ``shoal chat``, or ``shoal run --command review src/app.py`` as a task.
Arguments given to a template with no ``$ARGUMENTS`` or ``$N`` are added after it. An optional
frontmatter gives ``description`` and ``argument-hint`` (``allowed-tools`` and
``model`` are shown, not applied: the run's permissions and models decide).
Claude Code's ``!`command``` lines are not run: they stay text.

Where they come from, later ones replacing earlier ones of the same name: the user's
plugins, ``$SHOAL_HOME/commands/``, the project's approved plugins, then the project's
``.claude/commands/`` and ``.shoal/commands/``. A plugin's command is also
``PLUGIN:NAME``.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path

from shoal.paths import Home
from shoal.skills.frontmatter import FrontmatterError, split_frontmatter

PROJECT_DIRS = (".claude/commands", ".shoal/commands")


@dataclass(frozen=True)
class Command:
    name: str
    description: str
    body: str
    source: str
    plugin: str | None = None
    argument_hint: str | None = None

    def render(self, arguments: str = "") -> str:
        """The message to send: the body with the arguments in place."""
        text = self.body
        words = _words(arguments)
        placed = "$ARGUMENTS" in text or any(f"${n}" in text for n in range(1, 10))
        for n in range(9, 0, -1):
            text = text.replace(f"${n}", words[n - 1] if n <= len(words) else "")
        text = text.replace("$ARGUMENTS", arguments).strip()
        return text if placed or not arguments.strip() else f"{text}\n\n{arguments.strip()}"


@dataclass
class Commands:
    by_name: dict[str, Command] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def get(self, name: str) -> Command | None:
        return self.by_name.get(name.strip().lstrip("/"))

    def listed(self) -> list[Command]:
        """Each command once (under its plain name), by name."""
        seen = {id(c): c for n, c in self.by_name.items() if ":" not in n}
        return sorted(seen.values(), key=lambda c: c.name)


def discover_commands(home: Home, cwd: Path) -> Commands:
    """Every command ``cwd`` can run (see the module docstring for the order)."""
    from shoal.plugins.store import command_dirs, project_root

    found = Commands()
    plugins = command_dirs(home, cwd)
    layers: list[tuple[Path, str | None]] = []
    layers += [(d, p.name) for p, d in plugins if p.scope == "user"]
    layers.append((home.root / "commands", None))
    layers += [(d, p.name) for p, d in plugins if p.scope == "project"]
    root = project_root(cwd)
    layers += [(root / sub, None) for sub in PROJECT_DIRS]
    for where, plugin in layers:
        for path in _files(where):
            try:
                command = parse(path, plugin)
            except (OSError, UnicodeDecodeError, FrontmatterError) as exc:
                found.warnings.append(f"{path}: {exc}; skipped")
                continue
            found.by_name[command.name] = command
            if plugin:
                found.by_name[f"{plugin}:{command.name}"] = command
    return found


def _files(where: Path) -> list[Path]:
    if where.is_file():
        return [where] if where.suffix == ".md" else []
    return sorted(p for p in where.rglob("*.md") if p.is_file()) if where.is_dir() else []


def parse(path: Path, plugin: str | None = None) -> Command:
    """The command a Markdown file defines; the frontmatter is optional."""
    text = path.read_text(encoding="utf-8")
    meta: dict[str, object] = {}
    body = text
    if text.lstrip("\ufeff").startswith("---"):
        meta, body = split_frontmatter(text)
    body = body.strip()
    first = next((line.strip("# ").strip() for line in body.splitlines() if line.strip()), "")
    description = meta.get("description")
    hint = meta.get("argument-hint")
    return Command(
        name=path.stem,
        description=" ".join(str(description).split()) if description else first[:100],
        body=body,
        source=str(path),
        plugin=plugin,
        argument_hint=str(hint) if hint else None,
    )


def _words(arguments: str) -> list[str]:
    try:
        return shlex.split(arguments)
    except ValueError:
        return arguments.split()
