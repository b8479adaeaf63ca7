"""``shoal learn`` in a terminal: the picker, driven in a real tmux pane on a private socket."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import uuid

import pytest

from shoal.paths import Home

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")

SKILL = "---\nname: tidy-imports\ndescription: Sort and prune imports.\n---\n\n# Tidy imports\n"


def test_the_picker_approves_a_proposal(home: Home) -> None:
    proposed = home.root / "skills" / "proposed" / "tidy-imports"
    proposed.mkdir(parents=True)
    (proposed / "SKILL.md").write_text(SKILL)
    socket = f"shoal-test-{uuid.uuid4().hex[:8]}"
    tmux = ["tmux", "-L", socket]
    command = f"SHOAL_HOME={home.root} {sys.executable} -m shoal learn; sleep 30"
    subprocess.run([*tmux, "new-session", "-d", "-x", "120", "-y", "40", command], check=True)
    try:
        deadline = time.monotonic() + 30
        screen = ""
        while "approve, dismiss or skip" not in screen:
            assert time.monotonic() < deadline, screen
            time.sleep(0.2)
            screen = subprocess.run(
                [*tmux, "capture-pane", "-p"], capture_output=True, text=True
            ).stdout
        assert "tidy-imports" in screen and "Sort and prune imports." in screen
        subprocess.run([*tmux, "send-keys", "a", "Enter"], check=True)
        installed = home.root / "skills" / "tidy-imports" / "SKILL.md"
        while not installed.exists():
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert not proposed.exists()
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True)
