"""``[checks]``: the commands that check a project, when detection is not what it wants.

In ``$SHOAL_HOME/config.toml`` and the project's ``.shoal/config.toml`` (the
project's wins, name by name), each entry is a command or a table::

    [checks]
    test = "pytest -q tests/unit"
    lint = "ruff check ."

    [checks.typecheck]
    command = "mypy ."
    kind = "lint"          # test (the default, but for a check named lint) or lint
    timeout = 300          # seconds (default 600)

``--check CMD`` (repeatable) names them on the command line instead, and then
the files' are not used. A configured check replaces the detected checks of its
kind. The project's own ``[checks]`` are trusted like its Makefile: they are its
toolchain, run in its repository.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shoal.messages.base import InvalidMessage, from_dict
from shoal.messages.tasks import CheckSetting
from shoal.settings import SettingsError, config_file


def load_checks(
    home_config: Path, project_config: Path, flags: list[str] | None = None
) -> list[CheckSetting]:
    """The configured checks: ``--check`` commands if any, else both files' ``[checks]``."""
    if flags:
        return from_flags(flags)
    merged: dict[str, CheckSetting] = {}
    for path in (home_config, project_config):
        for check in parse_table(_table(path), str(path)):
            merged[check.name] = check
    return list(merged.values())


def from_flags(commands: list[str]) -> list[CheckSetting]:
    """``--check`` commands: test checks named ``check``, ``check-2``, ... in order."""
    checks = []
    for i, command in enumerate(commands, 1):
        if not command.strip():
            raise SettingsError("--check needs a command, e.g. --check 'pytest -q'")
        checks.append(CheckSetting(name="check" if i == 1 else f"check-{i}", command=command))
    return checks


def parse_table(table: dict[str, Any], where: str) -> list[CheckSetting]:
    """``[checks]`` entries as settings; a bad one is a SettingsError naming it and ``where``."""
    checks = []
    for name, value in table.items():
        fields = {"command": value} if isinstance(value, str) else value
        if not isinstance(fields, dict):
            raise SettingsError(
                f"[checks] {name} in {where}: give a command string or a table "
                "with command, kind and timeout"
            )
        fields = {"kind": "lint" if name == "lint" else "test", **fields, "name": name}
        try:
            checks.append(from_dict(CheckSetting, fields))
        except InvalidMessage as exc:
            raise SettingsError(f"[checks] {name} in {where}: {exc}") from None
    return checks


def _table(path: Path) -> dict[str, Any]:
    return config_file(path).table("checks")
