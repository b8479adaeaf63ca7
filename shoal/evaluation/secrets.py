"""Secrets in a diff's added lines: keys and tokens that must not be committed.

Patterns for the common providers' key formats, private key blocks, and
assignments of a literal to a name that says it is secret (``password = "..."``).
Each hit names its file and line in the new version and shows the value
masked: the report itself must not spread the secret.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("AWS access key id", re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")),
    ("GitHub token", re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_\w{40,})")),
    ("Anthropic API key", re.compile(r"\bsk-ant-[A-Za-z0-9_-]{20,}")),
    ("OpenAI API key", re.compile(r"\bsk-(?:proj-)?[A-Za-z0-9_-]{20,}")),
    ("Slack token", re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}")),
    ("Google API key", re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b")),
    ("Stripe secret key", re.compile(r"\b[rs]k_live_[0-9A-Za-z]{16,}")),
    ("private key", re.compile(r"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----")),
    (
        "hard-coded secret",
        re.compile(
            r"""(?i)\b[\w.-]*(?:password|passwd|secret|api[_-]?key|access[_-]?token|auth[_-]?token)"""
            r"""[\w.-]*["']?\s*[:=]\s*["']([^"'\s]{8,})["']"""
        ),
    ),
]
# A value that is a placeholder, not a secret.
_PLACEHOLDER = re.compile(r"(?i)^(?:x+|\*+|<[^>]*>|\$\{?\w+\}?|changeme|example\w*|your[_-]\w*)$")


@dataclass(frozen=True)
class Secret:
    file: str
    line: int
    kind: str
    preview: str
    """The value masked: its first four characters, then asterisks."""


def scan(diff: str) -> list[Secret]:
    """The secrets in the lines ``diff`` (unified, ``a/``/``b/`` prefixes) adds."""
    found: list[Secret] = []
    for path, line, text in added_lines(diff):
        for kind, pattern in PATTERNS:
            match = pattern.search(text)
            if match is None:
                continue
            value = match.group(match.lastindex or 0)
            if _PLACEHOLDER.match(value):
                continue
            found.append(Secret(path, line, kind, mask(value)))
            break  # one report per line
    return found


def added_lines(diff: str) -> list[tuple[str, int, str]]:
    """(path, line in the new version, text) of every added line of a unified diff."""
    out: list[tuple[str, int, str]] = []
    path: str | None = None
    line = 0
    for raw in diff.splitlines():
        if raw.startswith("+++ "):
            name = raw[4:].strip()
            path = None if name == "/dev/null" else name.removeprefix("b/")
        elif raw.startswith("@@"):
            hunk = re.match(r"@@ -\d+(?:,\d+)? \+(\d+)(?:,\d+)? @@", raw)
            line = int(hunk.group(1)) if hunk else 0
        elif path is not None and line:
            if raw.startswith("+"):
                out.append((path, line, raw[1:]))
                line += 1
            elif raw.startswith(" "):
                line += 1
    return out


def mask(value: str) -> str:
    return value[:4] + "*" * min(12, max(4, len(value) - 4))
