"""Accepted units' patches, committed to one branch per repository; the user's checkout untouched.

Each patch is applied with ``git apply --cached`` to a temporary index that
starts at the batch's base commit, and committed on top of the previous one
(one commit per unit), so the branch reads as the batch's history. A patch
that no longer applies (two units changed the same lines) is left out and
reported with git's reason; a branch that cannot be written raises. HEAD, the
user's index and work tree are never written.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from shoal.workspace.git import WorkspaceError, git


def branch_name(batch_id: str) -> str:
    return f"shoal/batch-{batch_id}"


def apply_patches(
    repo: Path, base: str, branch: str, patches: list[tuple[str, str]], message: str
) -> dict[str, str]:
    """Commit ``(name, patch)`` in order onto ``base`` as ``branch``.

    Returns the names left out, each with why. WorkspaceError: nothing could be
    committed (the base is gone, the branch name is taken by a ref, ...).
    """
    left_out = {}
    with tempfile.TemporaryDirectory(prefix="shoal-apply-") as tmp:
        index = Path(tmp) / "index"
        git(repo, "read-tree", base, index=index)
        parent = base
        for name, patch in patches:
            try:
                git(repo, "apply", "--cached", "--binary", "-", index=index, input=patch.encode())
            except WorkspaceError as exc:
                left_out[name] = str(exc)
                continue
            tree = git(repo, "write-tree", index=index).decode().strip()
            text = f"{message}: {name}\n".encode()
            parent = git(repo, "commit-tree", tree, "-p", parent, input=text).decode().strip()
        git(repo, "update-ref", "-m", message, f"refs/heads/{branch}", parent)
    return left_out
