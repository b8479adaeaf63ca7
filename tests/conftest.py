"""Shared fixtures: a private SHOAL_HOME per test, orchestrators the test owns, leak checks.

Every test gets a short temp home (unix socket paths are limited to 107
bytes) and fast supervision settings. Whatever a test starts is stopped by
pid at teardown, and a test fails if any process with its SHOAL_HOME is left.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from shoal import daemon
from shoal.paths import Home

# pytest-xdist workers inherit a fixed terminal size in COLUMNS/LINES; programs the
# tests start in their own tmux panes must size themselves from the pane instead.
for _size in ("COLUMNS", "LINES"):
    os.environ.pop(_size, None)

# A test project without a virtual environment runs its checks with `python3` on PATH
# (never shoal's own interpreter): make that the interpreter running the tests, which
# has pytest, whatever PATH the suite was started with.
os.environ["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), os.environ["PATH"]])

REPO = Path(__file__).resolve().parent.parent
SESSION_PREFIX = f"/tmp/shT{os.getpid()}-"


def wait_for(
    predicate: Callable[[], object],
    timeout: float = 15.0,
    interval: float = 0.05,
    what: str = "condition",
) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:120]
    except OSError:
        return "?"


def processes_with_home(prefix: str) -> list[int]:
    """Pids of processes whose environment has SHOAL_HOME under ``prefix``."""
    found = []
    needle = f"SHOAL_HOME={prefix}".encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes()
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and any(v.startswith(needle) for v in environ.split(b"\0")):
            found.append(int(entry))
    return found


def shoal(
    *args: str,
    timeout: float = 60.0,
    check: bool = False,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run the real CLI in a subprocess, as a user would (in ``cwd`` if given)."""
    result = subprocess.run(
        [sys.executable, "-m", "shoal", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
        cwd=cwd,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"shoal {' '.join(args)} -> {result.returncode}\n{result.stderr}")
    return result


def places_holding(home: Home, *secrets: str) -> list[str]:
    """Where under ``home`` any of ``secrets`` was written: DuckDB text columns, logs, run/.

    Call it once the orchestrator is stopped (the database is read directly). Also
    asserts the database had plenty of text columns, so an empty scan cannot pass.
    """
    import duckdb

    found = [
        str(path)
        for folder in (home.logs, home.run)
        for path in folder.rglob("*")
        if path.is_file() and any(s.encode() in path.read_bytes() for s in secrets)
    ]
    con = duckdb.connect(str(home.database), read_only=True)
    try:
        columns = con.execute(
            "SELECT table_name, column_name FROM information_schema.columns "
            # The tables; the public views (schema records) only show what they hold.
            "WHERE data_type IN ('VARCHAR', 'JSON') AND table_schema = 'main'"
        ).fetchall()
        for table, column in columns:
            for secret in secrets:
                hits = con.execute(
                    f'SELECT count(*) FROM "{table}" WHERE CAST("{column}" AS VARCHAR) LIKE ?',
                    [f"%{secret}%"],
                ).fetchall()[0][0]
                if hits:
                    found.append(f"{table}.{column}")
    finally:
        con.close()
    assert len(columns) > 20, columns
    return found


@pytest.fixture
def home(monkeypatch: pytest.MonkeyPatch) -> Iterator[Home]:
    root = tempfile.mkdtemp(prefix=SESSION_PREFIX)
    monkeypatch.setenv("SHOAL_HOME", root)
    monkeypatch.setenv("SHOAL_HEARTBEAT_INTERVAL", "0.2")
    monkeypatch.setenv("SHOAL_HEARTBEAT_TIMEOUT", "2")
    monkeypatch.setenv("SHOAL_IDLE_TIMEOUT", "0")
    monkeypatch.setenv("SHOAL_ORPHAN_TIMEOUT", "10")
    monkeypatch.setenv("SHOAL_RESTART_BACKOFF_MAX", "0.5")
    # Tests skip the litellm preload (3 s per orchestrator); the CLI demo test keeps it.
    monkeypatch.setenv("SHOAL_PRELOAD", "")
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    )
    h = Home.resolve(root)
    yield h
    with contextlib.suppress(Exception):
        daemon.stop(h, timeout=15)
    with contextlib.suppress(AssertionError):
        wait_for(lambda: not processes_with_home(root), timeout=5, what="processes to exit")
    left = {pid: _cmdline(pid) for pid in processes_with_home(root)}
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    shutil.rmtree(root, ignore_errors=True)
    assert not left, f"processes left behind under {root}: {left}"


@pytest.fixture
def orchestrator(home: Home) -> Home:
    """A running orchestrator under ``home`` (stopped by the ``home`` fixture)."""
    daemon.start(home)
    return home


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    left = processes_with_home(SESSION_PREFIX)
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    if left:
        sys.stderr.write(f"\nFAIL: test processes left behind and killed: {left}\n")
        session.exitstatus = 1
