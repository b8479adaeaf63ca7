"""A full disk under SHOAL_HOME: the orchestrator lives through it and loses no record.

The disk is a real small tmpfs mounted over the test's home in a private mount
namespace (``unshare -m``, as root), so filling it fills nothing else; the
orchestrator, the CLI and the scripted model all run inside that namespace,
driven by tests/disk_full_driver.py. Elsewhere the tests are skipped, saying why.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from shoal.paths import Home
from tests.conftest import REPO


def _small_disks() -> str | None:
    """Why a private tmpfs cannot be mounted here, or None if it can."""
    if os.geteuid() != 0:
        return "needs root to mount a small tmpfs in a private mount namespace"
    if shutil.which("unshare") is None:
        return "needs unshare(1) for a private mount namespace"
    with tempfile.TemporaryDirectory() as probe:
        tried = subprocess.run(
            ["unshare", "-m", "sh", "-c", f"mount -t tmpfs -o size=1m tmpfs {probe}"],
            capture_output=True,
            text=True,
        )
    if tried.returncode != 0:
        return f"cannot mount a tmpfs in a private namespace: {tried.stderr.strip()}"
    return None


NO_SMALL_DISK = _small_disks()
needs_small_disk = pytest.mark.skipif(NO_SMALL_DISK is not None, reason=NO_SMALL_DISK or "")


def on_small_disk(mount: Path, size: str, *command: str) -> subprocess.CompletedProcess[str]:
    """Run ``command`` in a private mount namespace with a tmpfs of ``size`` at ``mount``."""
    return subprocess.run(
        [
            "unshare", "-m", "sh", "-c",
            f'mount -t tmpfs -o size={size},mode=0700 tmpfs "$0" && exec "$@"',
            str(mount), *command,
        ],
        capture_output=True, text=True, timeout=280, cwd=REPO,
    )  # fmt: skip


@needs_small_disk
@pytest.mark.timeout(300)
def test_the_orchestrator_outlives_a_full_disk_and_writes_every_record_once_space_is_back(
    home: Home, tmp_path: Path
) -> None:
    ran = on_small_disk(
        home.root, "16m", sys.executable, "-m", "tests.disk_full_driver", str(tmp_path)
    )
    assert ran.returncode == 0, ran.stderr[-4000:]
    seen = json.loads(ran.stdout)
    log = seen.pop("log")

    # It kept running through it all: one orchestrator, before, during and after.
    assert seen["pid_before"] == seen["pid_while_full"] == seen["pid_after"] is not None
    # A task submitted while the disk was full is refused in one line.
    assert seen["third"]["code"] == 1
    full = re.escape(f"the disk holding {home.root} is full (")
    assert re.fullmatch(
        f"shoal: error: {full}(No space left on device|\\d+ KiB left)\\); free space and retry\n",
        seen["third"]["stderr"],
    ), seen["third"]["stderr"]
    # The task running when the disk filled finished; its final state landed once space
    # was back, and nothing recorded before was lost.
    assert seen["second"]["code"] == 0, seen["second"]["stderr"]
    assert json.loads(seen["second"]["stdout"])["status"] == "accepted"
    after = seen["second_after"]
    assert (after["status"], after["phase"]) == ("accepted", "done") and after["finished_at"]
    assert seen["second_messages"] > 10
    assert seen["first_messages_after"] == seen["first_messages_before"] != []
    # New work is taken again, and every routed message was recorded before it stopped.
    assert seen["fourth"]["code"] == 0, seen["fourth"]["stderr"]
    stopped = re.findall(r"stopped; routed (\d+), recorded (\d+)", log)
    assert len(stopped) == 1 and stopped[0][0] == stopped[0][1], log
    assert seen["journal_bytes_after_stop"] == 0
    # One clear line in the log when it filled, one when space came back; no tracebacks.
    assert len(re.findall(f"ERROR {full}No space left on device", log)) == 1, log
    assert len(re.findall("space is back on the disk holding", log)) == 1, log
    assert "Traceback" not in log
    # An orchestrator starting on a full disk says so (the CLI's one line), then starts.
    assert seen["start_while_full"]["code"] == 1
    assert re.fullmatch(
        f"shoal: error: the orchestrator did not start: {full}No space left on device\\); "
        "free space and retry\n",
        seen["start_while_full"]["stderr"],
    ), seen["start_while_full"]["stderr"]
    assert seen["start_after"] == 0


JOURNAL_ON_A_FULL_DISK = """
import os, sys
from pathlib import Path
from shoal.store.journal import Journal, message_record
root = Path(sys.argv[1])
journal = Journal(root / "j.wal")
fd = os.open(root / "filler", os.O_WRONLY | os.O_CREAT)
try:
    while True:
        os.write(fd, b"x" * 4096)
except OSError:
    os.close(fd)
os.truncate(root / "filler", os.path.getsize(root / "filler") - 8192)  # room for a few
results = []
for i in range(100):  # 51 KB: far more than there is room for until the filler goes
    results.append(journal.append([message_record(True, float(i), b"{" + b"x" * 500 + b"}")]))
held = len(journal.held)
on_disk = len(Journal.replay(root / "j.wal").messages)
assert journal.retry() is False  # still full
os.unlink(root / "filler")
assert journal.retry() is True
journal.close()
replayed = [m[1] for m in Journal.replay(root / "j.wal").messages]
print(results.count(True), held, on_disk, replayed == [float(i) for i in range(100)])
"""


@needs_small_disk
@pytest.mark.timeout(60)
def test_the_journal_holds_what_a_full_disk_refuses_and_writes_it_in_order_later(
    tmp_path: Path,
) -> None:
    mount = tmp_path / "disk"
    mount.mkdir()
    ran = on_small_disk(mount, "64k", sys.executable, "-c", JOURNAL_ON_A_FULL_DISK, str(mount))
    assert ran.returncode == 0, ran.stderr
    written, held, on_disk, in_order = ran.stdout.split()
    # Some went in before the disk was full, the rest were held, none was torn.
    assert int(written) + int(held) == 100 and int(written) > 0 and int(held) > 0
    assert int(on_disk) == int(written)
    assert in_order == "True"


RECORDER_ON_A_FULL_DISK = """
import json, logging, os, sys, time
from pathlib import Path
from shoal.mailbox.envelope import Envelope
from shoal.messages.actors import EchoRequest
from shoal.orchestrator.recorder import MessageRow, Recorder
from shoal.store.database import Writer
from shoal.store.space import Space

logging.basicConfig(level=logging.INFO, format="%(message)s")
root, leave = Path(sys.argv[1]), int(sys.argv[2])


def fill(path, leave):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    for size in (65536, 4096):
        try:
            while True:
                os.write(fd, b"x" * size)
        except OSError:
            pass
    os.close(fd)
    os.truncate(path, os.path.getsize(path) - leave)


def rows(tag):
    texts = [EchoRequest(text=f"{tag}{i}") for i in range(10)]
    envs = [Envelope.of(text, sender="a", recipient="b") for text in texts]
    return [MessageRow(e, e.encode(), time.time(), True) for e in envs]


def state():
    cur = db.cursor()  # as the orchestrator's queries take theirs
    try:
        counted = cur.execute("SELECT count(*), count(DISTINCT id) FROM messages").fetchall()[0]
    finally:
        cur.close()
    return [*counted, recorder.holding, space.full]


db = Writer(root / "shoal.duckdb")
db.con.execute("CHECKPOINT")
db.con.execute("SET checkpoint_threshold = '1KB'")  # a checkpoint after every commit
space = Space(root)
recorder = Recorder(db, 0.05, space)
recorder.start()
seen = {}
fill(root / "f1", leave)
recorder.submit(1, rows("a"))
recorder.barrier()
seen["first"] = state()
fill(root / "f2", 0)
recorder.submit(2, rows("b"))
recorder.barrier()
seen["full"] = state()
os.unlink(root / "f1")
os.unlink(root / "f2")
time.sleep(1.2)  # the recorder tries again every second
recorder.barrier()
seen["freed"] = state()
recorder.stop()
db.close()
print(json.dumps(seen))
"""


@needs_small_disk
@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("room", "reopened"),
    [
        # Room for the commit but not for the checkpoint after it: DuckDB invalidates the
        # database ("COMMIT succeeded and is durable, but the autocheckpoint failed").
        pytest.param(100_000, True, id="checkpoint-fails"),
        # Room for both; the next commit finds none (its WAL write fails, nothing written).
        pytest.param(300_000, False, id="commit-fails"),
    ],
)
def test_the_recorder_holds_what_a_full_disk_refuses_and_writes_it_once_without_duplicates(
    tmp_path: Path, room: int, reopened: bool
) -> None:
    mount = tmp_path / "disk"
    mount.mkdir()
    ran = on_small_disk(
        mount, "8m", sys.executable, "-c", RECORDER_ON_A_FULL_DISK, str(mount), str(room)
    )
    assert ran.returncode == 0, ran.stderr
    seen = json.loads(ran.stdout)
    assert seen["first"][:2] == [10, 10]  # the first ten are in (durably, either way)
    assert seen["full"] == [10, 10, True, True]  # the next ten are held; reads still work
    assert seen["freed"] == [20, 20, False, False]  # written once, none twice
    assert ("opened again after DuckDB invalidated it" in ran.stderr) is reopened
    assert ran.stderr.count("is full (No space left on device)") == 1, ran.stderr


LOG_ON_A_FULL_DISK = """
import json, logging, os, sys
from pathlib import Path
from shoal.orchestrator.logfile import LogFile

root = Path(sys.argv[1])
handler = LogFile(root / "o.log")
log = logging.getLogger("x")
log.addHandler(handler)
log.setLevel(logging.INFO)
log.info("before")
fd = os.open(root / "filler", os.O_WRONLY | os.O_CREAT)
try:
    while True:
        os.write(fd, b"x" * 4096)
except OSError:
    os.close(fd)
for i in range(500):  # 30 KB: more than the log file's last page holds
    log.info("during %03d", i)
size_while_full = os.path.getsize(root / "o.log")
os.unlink(root / "filler")
log.info("after")
handler.close()
lines = (root / "o.log").read_text().splitlines()
print(json.dumps({"size_while_full": size_while_full, "lines": lines}))
"""


@needs_small_disk
@pytest.mark.timeout(60)
def test_the_log_keeps_the_lines_a_full_disk_refuses_and_writes_them_in_order(
    tmp_path: Path,
) -> None:
    mount = tmp_path / "disk"
    mount.mkdir()
    ran = on_small_disk(mount, "64k", sys.executable, "-c", LOG_ON_A_FULL_DISK, str(mount))
    assert ran.returncode == 0, ran.stderr
    assert ran.stderr == ""  # no "--- Logging error ---" either
    seen = json.loads(ran.stdout)
    assert seen["size_while_full"] <= 4096  # only what fitted in the file's one page
    assert seen["lines"] == ["before", *(f"during {i:03d}" for i in range(500)), "after"]
