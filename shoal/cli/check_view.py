"""How a project's checks read in the terminal: progress, results and ``shoal show``.

Each check is one line: kind, name, runner, status, counts, time, and for one
that could not run the reason and the fix. Works on the JSON form of
``CheckReport`` (a dict), which is what records and events hold.
"""

from __future__ import annotations

from typing import Any

_TESTS = {
    "none_found": "no tests found: the judge alone decided",
    "off": "checks off (--no-checks): the judge alone decided",
    "could_not_run": "tests could not run: the result is unverified, never accepted on the "
    "judge alone",
}


def check_line(check: dict[str, Any]) -> str:
    """``test pytest with .venv/bin/python: passed, 3 passed, 0.41s``."""
    status = check.get("status") or ("passed" if check.get("passed") else "failed")
    runner = f" with {check['runner']}" if check.get("runner") else ""
    head = f"{check.get('kind', '?')} {check.get('name', '?')}{runner}"
    if status == "could_not_run":
        return f"{head}: COULD NOT RUN: {check.get('reason') or 'no reason given'}"
    parts = [status if status == "passed" else "FAILED"]
    counts = check.get("counts")
    if counts:
        parts.append(
            ", ".join(f"{counts[k]} {k}" for k in ("passed", "failed", "errors") if counts.get(k))
        )
    if check.get("duration_s"):
        parts.append(f"{check['duration_s']:.2f}s")
    return f"{head}: " + ", ".join(p for p in parts if p)


def tests_line(tests: str | None) -> str | None:
    """A line for what the tests came to, when it needs saying (None: passed or failed)."""
    return _TESTS.get(tests or "")
