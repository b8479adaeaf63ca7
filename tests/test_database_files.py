"""The database file gone wrong: busy, corrupt, truncated or deleted, each said in one line.

Every read command, the orchestrator's start and ``shoal doctor`` tell the user
what happened to ``shoal.duckdb`` and what to do; none of them deletes,
overwrites or silently replaces it.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from shoal import daemon
from shoal.client import query as read
from shoal.mailbox.envelope import Envelope
from shoal.messages.actors import EchoRequest
from shoal.paths import Home
from shoal.store.database import marker
from shoal.store.journal import Journal, message_record
from tests.conftest import shoal


def used_home(home: Home) -> Path:
    """A home whose orchestrator has run and stopped: a database and its marker."""
    shoal("orchestrator", "start", check=True)
    shoal("orchestrator", "stop", check=True)
    assert home.database.exists() and marker(home.database).exists()
    return home.database


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("shoal: error: "), result.stderr
    return lines[0].removeprefix("shoal: error: ")


def doctor_database(home: Home, name: str = "database") -> dict[str, object]:
    result = shoal("doctor", "--json")
    assert result.returncode == 1, result.stdout
    found = json.loads(result.stdout)
    assert not found["ok"]
    (check,) = [c for c in found["checks"] if c["name"] == name]
    return check


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda data: data[:5000], id="truncated"),
        pytest.param(lambda data: os.urandom(len(data)), id="garbage"),
        pytest.param(lambda data: b"", id="empty"),
    ],
)
def test_a_damaged_database_is_named_with_what_to_do_and_left_as_it_is(home: Home, damage) -> None:
    db = used_home(home)
    db.write_bytes(damage(db.read_bytes()))
    before = digest(db)
    said = f"{db} is not a database shoal can read ("
    what_to_do = f"move it aside (mv {db} {db}.broken) and remove {marker(db)}"
    for command in (("tasks",), ("show", "abcd"), ("status",)):
        line = error_line(shoal(*command))
        assert line.startswith(said) and what_to_do in line, line
        assert "busy" not in line
    start = error_line(shoal("orchestrator", "start"))
    assert start.startswith(f"the orchestrator did not start: {said}"), start
    assert "Error:" not in start.split("(", 1)[0]  # no exception class before the line
    assert daemon.running_pid(home) is None
    check = doctor_database(home)
    assert str(check["detail"]).startswith(said) and check["status"] == "MISSING"
    assert digest(db) == before  # never deleted, repaired or overwritten

    # What a crashed orchestrator journaled but never wrote waits in the journal...
    sent = Envelope.of(EchoRequest(text="journaled"), sender="c", recipient="echo-1")
    journal = Journal(home.journal)
    journal.append([message_record(True, 2.0, sent.encode())])
    journal.close()

    # ...and doing what the line says gives a new database with it in.
    db.rename(db.with_name(db.name + ".broken"))
    marker(db).unlink()
    assert shoal("tasks", check=True).stdout.strip() == "no tasks yet"
    shoal("orchestrator", "start", check=True)
    assert shoal("tasks", check=True).stdout.strip() == "no tasks yet"
    recorded = read(home, "messages.recent", {"kind": "echo.request"})
    assert [row[0] for row in recorded.rows] == [sent.id]
    assert digest(db.with_name(db.name + ".broken")) == before


def test_a_database_held_by_another_process_is_busy_not_damaged(home: Home) -> None:
    db = used_home(home)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys; c = duckdb.connect(sys.argv[1]); print('held', flush=True); "
            "sys.stdin.read()",
            str(db),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        line = error_line(shoal("tasks"))
        assert line == f"{db} is busy; try again", line
        assert str(doctor_database(home, "schema")["detail"]).endswith("is busy; try again")
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(10)
    assert shoal("tasks", check=True).stdout.strip() == "no tasks yet"


def test_a_deleted_database_of_a_used_home_is_reported_not_shown_as_no_tasks(
    home: Home,
) -> None:
    db = used_home(home)
    db.unlink()
    said = f"{db} is missing, though this home has had a database since "
    for command in (("tasks",), ("show", "abcd"), ("status",)):
        line = error_line(shoal(*command))
        assert line.startswith(said) and f"remove {marker(db)}" in line, line
        assert "gone unless you restore the file" in line
    # The orchestrator does not start an empty one in its place (shoal run would start it).
    start = error_line(shoal("orchestrator", "start"))
    assert start.startswith(f"the orchestrator did not start: {said}"), start
    assert not db.exists() and daemon.running_pid(home) is None
    assert str(doctor_database(home)["detail"]).startswith(said)

    # The user says so by removing the marker: a new database, marked again.
    marker(db).unlink()
    shoal("orchestrator", "start", check=True)
    assert db.exists() and marker(db).exists()
    assert shoal("tasks", check=True).stdout.strip() == "no tasks yet"


def test_a_new_home_just_works_and_a_database_from_before_markers_gets_one(
    home: Home,
) -> None:
    assert shoal("tasks", check=True).stdout.strip() == "no tasks yet"
    doctor = json.loads(shoal("doctor", "--json", check=True).stdout)
    (check,) = [c for c in doctor["checks"] if c["name"] == "database"]
    assert check["ok"] and "not created yet" in check["detail"]
    db = used_home(home)
    marker(db).unlink()  # as a home made before markers existed
    shoal("orchestrator", "start", check=True)
    assert marker(db).exists()
    assert (marker(db).stat().st_mode & 0o777) == 0o600
