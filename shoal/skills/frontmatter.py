"""Split a SKILL.md into its YAML frontmatter and its markdown body.

PyYAML is not a direct dependency: ray and litellm both require it, so it is
always installed with shoal. It is imported on first use only.
"""

from __future__ import annotations

from typing import Any


class FrontmatterError(Exception):
    """The file has no usable frontmatter; the message says what is wrong, in one line."""


def split_frontmatter(text: str) -> tuple[dict[str, Any], str]:
    """The frontmatter mapping and the body after it.

    The file must start with a ``---`` line; the frontmatter ends at the next
    ``---`` (or ``...``) line.
    """
    import yaml

    lines = text.removeprefix("\ufeff").splitlines(keepends=True)
    if not lines or lines[0].strip() != "---":
        raise FrontmatterError("no YAML frontmatter: the file must start with a '---' line")
    end = next((i for i, line in enumerate(lines[1:], 1) if line.strip() in ("---", "...")), None)
    if end is None:
        raise FrontmatterError("the frontmatter has no closing '---' line")
    try:
        data = yaml.safe_load("".join(lines[1:end]))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 2}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise FrontmatterError(f"invalid YAML in the frontmatter{where}: {problem}") from None
    if not isinstance(data, dict):
        raise FrontmatterError("the frontmatter is not a mapping of keys to values")
    return data, "".join(lines[end + 1 :])
