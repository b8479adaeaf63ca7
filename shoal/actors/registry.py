"""The role registry: role name -> actor class, by import path so nothing loads early.

Only roles that really work are listed here; the planner, executor, evaluator,
learner and pattern-miner join when their behaviour exists.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from shoal.actors.base import Actor

ROLES: dict[str, str] = {
    "echo": "shoal.actors.echo:EchoActor",
}


class UnknownRole(LookupError):
    def __init__(self, role: str) -> None:
        super().__init__(f"unknown actor role {role!r}; known roles: {', '.join(sorted(ROLES))}")


def check(role: str) -> None:
    if role not in ROLES:
        raise UnknownRole(role)


def load(role: str) -> type[Actor]:
    check(role)
    module, _, attr = ROLES[role].partition(":")
    return getattr(importlib.import_module(module), attr)
