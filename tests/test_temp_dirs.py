"""shoal's processes leave nothing under TMPDIR: multiprocessing's ``pymp-*`` directories go.

The orchestrator and the CLI end with ``os._exit`` (skipping interpreter teardown),
which also skips multiprocessing's clean-up; every orchestrator used to leave one.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from shoal import daemon
from shoal.llm.scripted import ScriptedModelServer
from shoal.paths import Home
from tests.conftest import shoal, wait_for
from tests.test_batch import INSTRUCTION, env_for, make_repo, script


@pytest.fixture
def tmpdir_of_children(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private TMPDIR for every process the test starts: short, since a forkserver's
    socket lives in it (a unix socket's path has 107 bytes at most)."""
    private = Path(tempfile.mkdtemp(prefix="shTmp", dir="/tmp"))
    monkeypatch.setenv("TMPDIR", str(private))
    yield private
    shutil.rmtree(private, ignore_errors=True)


def test_an_orchestrator_with_actors_leaves_no_temp_dir(
    home: Home, tmpdir_of_children: Path
) -> None:
    shoal("orchestrator", "start", "--actors", "echo*2", check=True)
    # The forkserver's socket lives in multiprocessing's directory while it runs.
    assert [p.name[:5] for p in tmpdir_of_children.iterdir()] == ["pymp-"]
    shoal("orchestrator", "stop", check=True)
    assert daemon.running_pid(home) is None
    assert list(tmpdir_of_children.iterdir()) == []


def test_a_local_batch_and_its_orchestrator_leave_no_temp_dir(
    home: Home, tmp_path: Path, tmpdir_of_children: Path
) -> None:
    repo, names = make_repo(tmp_path, 1)
    with ScriptedModelServer(script(names)) as server:
        result = shoal(
            "batch", INSTRUCTION, "--files", "m*.py", "-C", str(repo), "--backend", "local",
            "--workers", "1", "--json", env=env_for(server), timeout=120,
        )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["accepted"] == 1
    # The CLI is gone; its forkserver's directory with it. The orchestrator it started
    # runs on: stopping it removes the last one.
    shoal("orchestrator", "stop", check=True)
    wait_for(lambda: daemon.running_pid(home) is None, what="the orchestrator to stop")
    assert list(tmpdir_of_children.iterdir()) == []
