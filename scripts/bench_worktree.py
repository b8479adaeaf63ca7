"""What sharing the work tree with a person costs: probing commands, scoped snapshots, restore.

Run it from the repository root (shoal installed)::

    python3 scripts/bench_worktree.py            # a table
    python3 scripts/bench_worktree.py --json     # one JSON object

For a small (100 files) and a large (5,000 files) repository, each committed and
then with a few files changed, it times (median of ``--runs``):

* ``shell true`` through the Toolbox without and with the change watch a task's
  executor puts around it (a probe of the work tree before and after: what a
  shell command costs more because a person may be editing too), and the
  difference per call;
* a snapshot of the whole work tree (what an iteration cost before) against a
  snapshot of only the task's paths on top of the previous one (what it costs now);
* the three-way restore from one snapshot to another (``snapshots.apply``) against
  the old whole-tree ``restore``.

Everything runs in a temporary directory, removed at the end.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from shoal.tools import Permissions, Toolbox, Workspace
from shoal.workspace import snapshots
from shoal.workspace.changes import TaskChanges


def _repo(root: Path, files: int) -> Path:
    repo = root / f"repo{files}"
    for i in range(files):
        path = repo / f"pkg{i % 50}" / f"mod{i}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"value = {i}\n" * 20)
    env = ["-c", "user.name=b", "-c", "user.email=b@b"]
    for args in (["init", "-q"], ["add", "-A"], [*env, "commit", "-qm", "start"]):
        subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)
    for i in range(5):  # a person's uncommitted work, as a work tree usually has
        (repo / f"pkg{i}" / f"mod{i}.py").write_text("changed = True\n")
    return repo


def _median(fn: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _measure(root: Path, files: int, runs: int) -> dict[str, Any]:
    repo = _repo(root, files)
    outputs = root / "outputs"
    outputs.mkdir(exist_ok=True)
    workspace = Workspace([repo], outputs)
    permissions = Permissions(mode="bypass")
    plain = Toolbox(workspace, permissions)
    changes = TaskChanges(repo, "bench", 1)
    watched = Toolbox(workspace, permissions, watch=lambda _request: changes.probing())
    shell = {"command": "true"}
    plain.call("shell", shell), watched.call("shell", shell)  # warm: seeds the probe's index
    shell_plain = _median(lambda: plain.call("shell", shell), runs)
    shell_watched = _median(lambda: watched.call("shell", shell), runs)
    changes.close()

    base = snapshots.base_snapshot(repo, "bench")
    (repo / "pkg0" / "mod0.py").write_text("the task's change\n")
    paths = ["pkg0/mod0.py"]
    counter = iter(range(1, 10_000))
    whole = _median(lambda: snapshots.snapshot(repo, "bench", next(counter)), runs)
    scoped = _median(lambda: snapshots.snapshot_paths(repo, "bench", 1, base, paths), runs)
    last = snapshots.snapshot_paths(repo, "bench", 1, base, paths)

    def apply_back_and_forth() -> None:
        snapshots.apply(repo, last, base)
        snapshots.apply(repo, base, last)

    def restore_back_and_forth() -> None:
        snapshots.restore(repo, base)
        snapshots.restore(repo, last)

    apply = _median(apply_back_and_forth, runs) / 2
    restore = _median(restore_back_and_forth, runs) / 2
    return {
        "files": files,
        "shell_true_ms": round(shell_plain * 1000, 1),
        "shell_true_watched_ms": round(shell_watched * 1000, 1),
        "probe_cost_per_call_ms": round((shell_watched - shell_plain) * 1000, 1),
        "snapshot_whole_tree_ms": round(whole * 1000, 1),
        "snapshot_task_paths_ms": round(scoped * 1000, 1),
        "restore_whole_tree_ms": round(restore * 1000, 1),
        "apply_three_way_ms": round(apply * 1000, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="shoal-bench-wt-") as tmp:
        rows = [_measure(Path(tmp), files, args.runs) for files in (100, 5000)]
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    keys = list(rows[0])
    print(f"{'':30}" + "".join(f"{r['files']:>10} files" for r in rows))
    for key in keys[1:]:
        print(f"{key:30}" + "".join(f"{r[key]:>16}" for r in rows))


if __name__ == "__main__":
    main()
