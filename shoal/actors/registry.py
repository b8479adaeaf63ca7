"""The role registry: role name -> actor class, by import path so nothing loads early.

Only roles that really work are listed here. A role may also be
given as an import path, ``package.module:ActorClass`` (plugins and tests).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from shoal.actors.base import Actor

ROLES: dict[str, str] = {
    "echo": "shoal.actors.echo:EchoActor",
    "planner": "shoal.actors.planner:PlannerActor",
    "executor": "shoal.actors.executor:ExecutorActor",
    "evaluator": "shoal.actors.evaluator:EvaluatorActor",
    "learner": "shoal.actors.learner:LearnerActor",
    "pattern-miner": "shoal.actors.pattern_miner:PatternMinerActor",
    "lead": "shoal.actors.lead:LeadActor",
    "chat": "shoal.actors.chat:ChatActor",
}


class UnknownRole(LookupError):
    def __init__(self, role: str) -> None:
        super().__init__(f"unknown actor role {role!r}; known roles: {', '.join(sorted(ROLES))}")


def base_role(role: str) -> str:
    """``executor@red`` (an executor of team red) -> ``executor``."""
    return role.partition("@")[0]


def actor_role(role: str) -> str:
    """The role whose class runs ``role``: ``executor.reviewer@red`` (an executor acting as
    the agent definition ``reviewer``) -> ``executor``; an import path stays whole."""
    base = base_role(role)
    return base if ":" in base else base.partition(".")[0]


def team_of(role: str) -> str | None:
    return role.partition("@")[2] or None


def check(role: str) -> None:
    role = actor_role(role)
    if role not in ROLES and ":" not in role:
        raise UnknownRole(role)
    if ":" in role:
        load(role)


def load(role: str) -> type[Actor]:
    from shoal.actors.base import Actor

    role = actor_role(role)
    if role not in ROLES and ":" not in role:
        raise UnknownRole(role)
    module, _, attr = ROLES.get(role, role).partition(":")
    try:
        cls = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise UnknownRole(role) from exc
    if not (isinstance(cls, type) and issubclass(cls, Actor)):
        raise UnknownRole(role)
    return cls


def parse_members(text: str) -> list[tuple[str, int]]:
    """Parse ``"planner,executor*3"`` into ``[("planner", 1), ("executor", 3)]``."""
    members = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        role, _, count = part.partition("*")
        role = role.strip()
        check(role)
        try:
            n = int(count) if count else 1
        except ValueError:
            raise ValueError(f"bad count in {part!r}; write ROLE*N, e.g. echo*2") from None
        if not 1 <= n <= 64:
            raise ValueError(f"count in {part!r} must be between 1 and 64")
        members.append((role, n))
    return members
