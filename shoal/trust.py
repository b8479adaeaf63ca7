"""What a repository's own ``.shoal/config.toml`` may set without the user's approval.

A repository comes with whoever wrote it (and the agent itself can write into
it), so until the user approves that exact file its settings may only narrow
what the user allows, never widen it:

- ``permission_mode`` applies when it is no wider than the user's
  (``plan`` < ``default`` < ``accept-edits`` < ``bypass``);
- ``deny`` and ``ask`` rules apply (they only take away); ``allow`` rules do not;
- ``iterations``, ``budget_usd``, ``budget_tokens`` and ``timeout`` apply when
  they are no higher than the user's;
- ``quality`` applies: it is a bar, and the budgets bound what reaching it costs;
- everything else is ignored: ``model`` and ``<role>_model`` (which provider gets
  the task), ``base_url`` and ``<role>_base_url`` (the server named there would
  receive the user's API key), and any setting not named above, so one added
  later (environment, webhooks…) stays ignored until it is placed here.

"The user's" value is the one the project file would replace: ``$SHOAL_HOME``'s
``config.toml`` or the default. The environment and flags still win over both.
``shoal config approve`` trusts the file as it is (its content hash, see
:mod:`shoal.approvals`); then all of it applies, until it changes. Other tables
of the file (the project's ``[checks]``: its own test and lint commands) are
not settings of this kind and are never filtered here.
"""

from __future__ import annotations

import json
from typing import Any

MODES = ("plan", "default", "accept-edits", "bypass")
"""Permission modes from the narrowest to the widest."""

_LOWER_IS_STRICTER = ("iterations", "budget_usd", "budget_tokens", "timeout")
_ALWAYS = ("deny", "ask", "quality")


def narrow(values: dict[str, Any], user: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The settings of an unapproved project file that apply, and one phrase per one ignored.

    ``user`` holds the values the project's would replace (the user's file over the
    defaults). A value of the wrong type is kept, so validation names it as it would.
    """
    kept: dict[str, Any] = {}
    ignored: list[str] = []
    for name, value in values.items():
        if name in _ALWAYS or value == [] or _no_wider(name, value, user.get(name)):
            kept[name] = value
        else:
            ignored.append(_phrase(name, value))
    return kept, ignored


def _no_wider(name: str, value: Any, user: Any) -> bool:
    if name == "permission_mode":
        if value not in MODES or user not in MODES:
            return value not in MODES
        return MODES.index(value) <= MODES.index(user)
    if name in _LOWER_IS_STRICTER:
        if not isinstance(value, int | float) or isinstance(value, bool):
            return True
        return not isinstance(user, int | float) or value <= user
    return False


def _phrase(name: str, value: Any) -> str:
    if name == "allow":
        return "allow rules"
    if name == "permission_mode" or name in _LOWER_IS_STRICTER:
        return f"{name} = {json.dumps(value)}"
    return name  # a URL or model is named, not shown: the line stays one line
