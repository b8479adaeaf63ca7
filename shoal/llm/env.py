"""The environment litellm is imported under, wherever shoal imports it.

Set before the import (the orchestrator sets it for its actors' forkserver, a batch for
its workers, :func:`shoal.llm.client._litellm` for any other process); a value the user
set wins.
"""

from __future__ import annotations

import os

LITELLM_ENV = {
    # Without this litellm fetches its price list from GitHub at import, and on a
    # machine without network waits for that to fail.
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    # litellm's default ("DEV") loads the first .env found walking up from its own
    # install directory: for shoal installed in a project's .venv, that project's .env
    # (its secrets, or an OPENAI_BASE_URL sending the prompts elsewhere). No file of a
    # repository sets shoal's environment.
    "LITELLM_MODE": "PRODUCTION",
}


def set_litellm_env() -> None:
    for name, value in LITELLM_ENV.items():
        os.environ.setdefault(name, value)
