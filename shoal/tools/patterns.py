"""Glob patterns as regular expressions over ``/``-separated relative paths.

``*`` and ``?`` stay within one path component, ``**/`` spans any number of
directories (including none), a trailing ``**`` matches everything below,
``[abc]``/``[!abc]`` are classes and ``{a,b}`` alternatives. Dotfiles match like
any other name: hidden files matter in a repository (``.github``, ``.env.example``).
"""

from __future__ import annotations

import re

_SPECIAL = frozenset("*?[{")


def compile_glob(pattern: str) -> re.Pattern[str]:
    return re.compile(f"(?s:{_translate(pattern)})\\Z")


def has_magic(part: str) -> bool:
    return any(c in _SPECIAL for c in part)


def literal_prefix(pattern: str) -> str:
    """The leading directories of ``pattern`` that contain no wildcard ('' if none)."""
    parts = pattern.split("/")[:-1]
    prefix = []
    for part in parts:
        if has_magic(part):
            break
        prefix.append(part)
    return "/".join(prefix)


def _translate(pattern: str) -> str:
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "*":
            if pattern.startswith("**", i):
                at_start = i == 0 or pattern[i - 1] == "/"
                after = i + 2
                if at_start and pattern.startswith("/", after):
                    out.append("(?:[^/]*/)*")
                    i = after + 1
                    continue
                if at_start and after == n:
                    out.append(".*")
                    i = after
                    continue
                i = after  # "a**b" is just "a*b"
            else:
                i += 1
            out.append("[^/]*")
            continue
        if c == "?":
            out.append("[^/]")
        elif c == "[":
            end = _class_end(pattern, i)
            if end == -1:
                out.append(re.escape(c))
            else:
                body = pattern[i + 1 : end]
                negate = body.startswith("!")
                body = body[1:] if negate else body
                body = body.replace("\\", "\\\\").replace("^", "\\^")
                out.append(f"[{'^/' if negate else ''}{body}]")
                i = end + 1
                continue
        elif c == "{":
            end = _brace_end(pattern, i)
            if end == -1:
                out.append(re.escape(c))
            else:
                options = _split_top(pattern[i + 1 : end])
                out.append("(?:" + "|".join(_translate(o) for o in options) + ")")
                i = end + 1
                continue
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


def _class_end(pattern: str, start: int) -> int:
    j = start + 1
    if j < len(pattern) and pattern[j] == "!":
        j += 1
    if j < len(pattern) and pattern[j] == "]":
        j += 1  # a "]" first in the class is literal
    end = pattern.find("]", j)
    return end


def _brace_end(pattern: str, start: int) -> int:
    depth = 0
    for j in range(start, len(pattern)):
        if pattern[j] == "{":
            depth += 1
        elif pattern[j] == "}":
            depth -= 1
            if depth == 0:
                return j
    return -1


def _split_top(body: str) -> list[str]:
    options, depth, current = [], 0, []
    for c in body:
        if c == "," and depth == 0:
            options.append("".join(current))
            current = []
            continue
        depth += (c == "{") - (c == "}")
        current.append(c)
    options.append("".join(current))
    return options
