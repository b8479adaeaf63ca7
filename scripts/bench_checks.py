"""Benchmark what finding a project's checks costs on top of running them, and print it.

Run it from the repository root (shoal importable, e.g. ``pip install -e .``)::

    python3 scripts/bench_checks.py           # a table
    python3 scripts/bench_checks.py --json    # one JSON object

A temporary git repository of ``--files`` files (default 5,000: a package of
modules, data files and a small ``tests/`` directory) gets a ``.venv`` made with
``python -m venv --without-pip`` that reaches pytest through a ``.pth`` file, as
a project's own environment would have it (pytest plugin autoloading is off, to
keep the check's own time steady). For each case, median of ``--runs``:

* **shoal**: ``checks.find`` (detection: config files, test layout, the venv,
  the interpreter probe) and then ``checks.run`` of the first check, end to end;
* **by hand**: the same command (the check's argv, cwd and environment) run with
  ``subprocess.run``, as a developer would type it.

The overhead is shoal minus by hand (target: under 200 ms), and the ratio is
shoal / by hand. Cases: the project's venv with pytest; the same project without
a venv (``python3`` on PATH, probed); a unittest project in its venv; a
configured command (``[checks] test = ...``, no detection of its kind).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TARGET_OVERHEAD_S = 0.2


def make_repo(root: Path, files: int, *, unittest: bool = False) -> Path:
    """``files`` files: modules in packages, data, and ten tests (pytest or unittest)."""
    root.mkdir(parents=True)
    test = (
        "import unittest\n\n\nclass T(unittest.TestCase):\n    def test_a(self):\n"
        "        self.assertEqual(1 + 1, 2)\n"
        if unittest
        else "def test_a():\n    assert 1 + 1 == 2\n"
    )
    pyproject = "[project]\nname = 'bench'\n"
    if not unittest:
        pyproject += "\n[tool.pytest.ini_options]\ntestpaths = ['tests']\n"
    (root / "pyproject.toml").write_text(pyproject)
    (root / ".gitignore").write_text(".venv/\n")
    (root / "tests").mkdir()
    for i in range(10):
        (root / "tests" / f"test_{i}.py").write_text(test)
    made = 13
    for i in range(files - made):
        package = root / "src" / "bench" / f"part{i // 100}"
        package.mkdir(parents=True, exist_ok=True)
        suffix = ".py" if i % 2 else ".txt"
        (package / f"mod{i}{suffix}").write_text(f"VALUE = {i}\n")
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    subprocess.run(["git", "-C", str(root), "add", "-A"], check=True)
    ident = ["-c", "user.name=b", "-c", "user.email=b@b"]
    subprocess.run(["git", "-C", str(root), *ident, "commit", "-qm", "bench"], check=True)
    return root


def make_venv(repo: Path, *, with_pytest: bool) -> None:
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(repo / ".venv")], check=True)
    if with_pytest:
        import pytest

        site = next((repo / ".venv").glob("lib/python3*/site-packages"))
        (site / "deps.pth").write_text(str(Path(pytest.__file__).parent.parent) + "\n")


def measure(repo: Path, runs: int, settings: list[Any]) -> dict[str, Any]:
    from shoal.evaluation import checks

    shoal_s, by_hand_s, detect_s = [], [], []
    check = None
    for _ in range(runs):
        start = time.perf_counter()
        found = checks.find(repo, settings=settings)
        detected = time.perf_counter()
        check = found[0]
        result = checks.run(check, timeout=120)
        shoal_s.append(time.perf_counter() - start)
        detect_s.append(detected - start)
        assert result.status == "passed", result.output[-2000:]
        env = checks._environment(check)  # the very environment the check ran with
        start = time.perf_counter()
        by_hand = subprocess.run(
            check.command,
            cwd=check.cwd,
            shell=isinstance(check.command, str),
            env=env,
            capture_output=True,
            stdin=subprocess.DEVNULL,
        )
        by_hand_s.append(time.perf_counter() - start)
        assert by_hand.returncode == 0, by_hand.stdout[-2000:]
    assert check is not None
    shoal_median, hand_median = statistics.median(shoal_s), statistics.median(by_hand_s)
    return {
        "check": check.name,
        "runner": check.runner,
        "command": check.command_text,
        "detect_s": statistics.median(detect_s),
        "shoal_s": shoal_median,
        "by_hand_s": hand_median,
        "overhead_s": shoal_median - hand_median,
        "ratio": shoal_median / hand_median,
    }


def cases(root: Path, files: int) -> dict[str, tuple[Path, list[Any]]]:
    from shoal.messages.tasks import CheckSetting

    venv = make_repo(root / "venv", files)
    make_venv(venv, with_pytest=True)
    on_path = make_repo(root / "path", files)
    unit = make_repo(root / "unittest", files, unittest=True)
    make_venv(unit, with_pytest=False)
    configured = [CheckSetting(name="test", command="python -m unittest discover -s tests")]
    return {
        "pytest in the project's .venv": (venv, []),
        "pytest, python3 on PATH (probed)": (on_path, []),
        "unittest in the project's .venv": (unit, []),
        "[checks] test command": (unit, configured),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--files", type=int, default=5000, help="files in the repository")
    parser.add_argument("--runs", type=int, default=9, help="measured runs per case")
    args = parser.parse_args(argv)
    # pytest's plugins (this interpreter's: xdist, timeout, ...) add hundreds of ms of
    # variance to every run of the check itself, which is not what is measured here.
    os.environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    root = Path(tempfile.mkdtemp(prefix="shoal-bench-checks-"))
    try:
        figures = {
            name: measure(repo, args.runs, settings)
            for name, (repo, settings) in cases(root, args.files).items()
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if args.json:
        print(json.dumps({"files": args.files, "runs": args.runs, "cases": figures}))
        return 0
    print(f"shoal checks benchmark: {args.files} files, median of {args.runs} runs")
    print(f"{'case':<34} {'detect':>8} {'shoal':>8} {'by hand':>8} {'overhead':>9} {'ratio':>6}")
    for name, f in figures.items():
        print(
            f"{name:<34} {f['detect_s'] * 1000:7.1f}ms {f['shoal_s'] * 1000:7.1f}ms "
            f"{f['by_hand_s'] * 1000:7.1f}ms {f['overhead_s'] * 1000:8.1f}ms {f['ratio']:6.2f}"
        )
    worst = max(f["overhead_s"] for f in figures.values())
    verdict = "within" if worst < TARGET_OVERHEAD_S else "OVER"
    print(f"largest overhead {worst * 1000:.1f} ms: {verdict} the 200 ms target")
    return 0


if __name__ == "__main__":
    sys.exit(main())
