"""The README's first command, verbatim, on a fresh machine: Debian's python3, no pytest.

Debian's ``/usr/bin/python3`` refuses ``pip install`` outside a virtual
environment (PEP 668), so the quick start makes its own venv. The test copies
this checkout, runs the command from README.md with ``/usr/bin:/bin`` as PATH
(python3 is Debian's, without pytest) and pip offline, from the wheelhouse that
``scripts/test`` fetched before the suite entered its network namespace.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from shoal.paths import Home
from tests.conftest import REPO

DEBIAN_PYTHON = Path("/usr/bin/python3")


def readme_first_command() -> str:
    """The first line of the quick start's first code block, without its comment."""
    text = (REPO / "README.md").read_text()
    block = text.split("## Quick start", 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
    return block.splitlines()[0].split("  #", 1)[0].strip()


def copy_checkout(dest: Path) -> Path:
    listed = subprocess.run(
        ["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, (n.decode() for n in listed)):
        source = REPO / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    return dest


@pytest.mark.timeout(900)
def test_the_readme_first_command_runs_the_demo_on_debians_python_without_pytest(
    home: Home, tmp_path: Path
) -> None:
    if not DEBIAN_PYTHON.is_file():
        pytest.skip("no /usr/bin/python3 here (a Debian machine has one)")
    wheelhouse = os.environ.get("SHOAL_TEST_WHEELHOUSE")
    if not wheelhouse:
        pytest.skip("run through scripts/test, which fetches the wheelhouse this test needs")
    probe = subprocess.run([str(DEBIAN_PYTHON), "-c", "import pytest"], capture_output=True)
    assert probe.returncode != 0, "this machine's /usr/bin/python3 has pytest"
    command = readme_first_command()
    assert "shoal demo" in command
    checkout = copy_checkout(tmp_path / "shoal")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PIP_", "PYTHON", "VIRTUAL_ENV")) and k != "PATH"
    }
    env.update(
        PATH="/usr/bin:/bin",  # python3 is Debian's, without pytest
        HOME=str(tmp_path / "home"),
        PIP_NO_INDEX="1",
        PIP_FIND_LINKS=wheelhouse,
        PIP_CONFIG_FILE=os.devnull,  # a fresh machine: no pip configuration of this one's
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        TMPDIR=str(tmp_path),
    )
    result = subprocess.run(
        ["sh", "-c", command],
        cwd=checkout,
        env=env,
        capture_output=True,
        text=True,
        timeout=840,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    assert "tests pass now: True" in result.stderr
    assert "its tests now: test unittest with /usr/bin/python3: passed" in result.stderr
    assert (checkout / ".venv" / "bin" / "shoal").is_file()
