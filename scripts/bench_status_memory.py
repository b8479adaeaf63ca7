"""Where the orchestrator's memory and CPU go under ``GET /api/v1/status``, request by request.

Run it from the repository root (shoal installed, e.g. ``pip install -e .``)::

    python3 scripts/bench_status_memory.py                      # 1k, 5k, 20k requests
    python3 scripts/bench_status_memory.py --at 1000,40000 --path /api/v1/health

It starts an orchestrator under a temporary ``SHOAL_HOME`` as this script's own child
(``--as-orchestrator``: the orchestrator's ``main`` with a ``SIGUSR1`` handler that writes
what the process holds), serves the API with a token, and sends ``GET --path`` on
``--connections`` kept-alive connections until the total reaches each ``--at``; after
each, it asks the orchestrator for, and prints: RSS; the Python objects the collector
tracks; threads; glibc's heap (in use / held); DuckDB's own memory (``duckdb_memory()``)
and the rows of the ``messages`` table; the CPU seconds of each thread by name. A
leak grows with the number of requests; a cache or a warm-up levels off. Every process
it started is ended by its pid and the temporary home removed.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import http.client
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

# --- in the orchestrator's process ---------------------------------------------------


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd",
            "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost",
        )
    ]  # fmt: skip


def _thread_cpu() -> dict[str, float]:
    """CPU seconds of each live thread, summed by name (digits and '_' stripped), and of
    the whole process (threads that ended included: DuckDB's, and any started per job)."""
    tick = os.sysconf("SC_CLK_TCK")
    cpu: dict[str, float] = {}
    for thread in threading.enumerate():
        with contextlib.suppress(OSError):
            stat = Path(f"/proc/self/task/{thread.native_id}/stat").read_text()
            fields = stat.rsplit(")", 1)[1].split()
            name = thread.name.rstrip("0123456789_-") or thread.name
            cpu[name] = cpu.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
    cpu["process"] = (int(fields[11]) + int(fields[12])) / tick  # ended threads' too
    return cpu


def _duckdb_figures() -> dict[str, Any]:
    from shoal.store.database import Writer

    writers = [o for o in gc.get_objects() if type(o) is Writer]
    if not writers:
        return {}
    cur = writers[0].cursor()
    try:
        held = cur.execute("SELECT sum(memory_usage_bytes) FROM duckdb_memory()").fetchone()
        rows = cur.execute("SELECT count(*) FROM messages").fetchone()
    finally:
        cur.close()
    return {"duckdb_mb": (held[0] or 0) / 2**20, "messages_rows": rows[0]}


def _dump(out: Path) -> None:
    gc.collect()
    status = Path("/proc/self/status").read_text()
    rss_kb = int(re.search(r"VmRSS:\s+(\d+)", status).group(1))  # type: ignore[union-attr]
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = _MallInfo2
    heap = libc.mallinfo2()
    figures = {
        "rss_mb": rss_kb / 1024,
        "gc_objects": len(gc.get_objects()),
        "threads": threading.active_count(),
        "malloc_in_use_mb": heap.uordblks / 2**20,
        "malloc_held_mb": (heap.arena + heap.hblkhd) / 2**20,
        **_duckdb_figures(),
        "cpu_s": _thread_cpu(),
    }
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(figures))
    tmp.replace(out)


def as_orchestrator(argv: list[str]) -> int:
    out = Path(os.environ["BENCH_DUMP"])
    signal.signal(signal.SIGUSR1, lambda *_: _dump(out))
    from shoal.orchestrator.server import main as orchestrator

    return orchestrator(argv)


# --- the driver ------------------------------------------------------------------------


def start(home: Path) -> tuple[subprocess.Popen[bytes], str, int, str]:
    """The orchestrator (this script as it), serving: (process, host, port, token)."""
    read_fd, write_fd = os.pipe()
    with open(home / "orchestrator.out", "wb") as log:
        orch = subprocess.Popen(
            [sys.executable, __file__, "--as-orchestrator", "--home", str(home),
             "--ready-fd", str(write_fd)],
            pass_fds=[write_fd], stdout=log, stderr=log, start_new_session=True,
        )  # fmt: skip
    os.close(write_fd)
    with os.fdopen(read_fd) as ready:
        line = ready.readline()
    if not line.startswith("ready"):
        raise SystemExit(f"the orchestrator did not start: {line.strip() or 'no word'}")
    token = secrets.token_hex(16)
    served = subprocess.run(
        [sys.executable, "-m", "shoal", "serve", "--port", "0", "--detach", "--token", token],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    found = re.search(r"http://([\d.]+):(\d+)/api/v1", served.stdout)
    if served.returncode != 0 or not found:
        raise SystemExit(f"shoal serve failed: {served.stderr.strip() or served.stdout}")
    return orch, found.group(1), int(found.group(2)), token


class Load:
    """Kept-alive connections sending GET ``path`` until ``sent`` reaches the target."""

    def __init__(self, host: str, port: int, token: str, path: str) -> None:
        self.address, self.token, self.path = (host, port), token, path
        self.sent = self.failed = 0
        self._target = 0
        self._lock = threading.Lock()

    def until(self, target: int, connections: int) -> float:
        """Send until ``target`` requests in all; the rate achieved."""
        first, self._target = self.sent, target
        t0 = time.monotonic()
        threads = [threading.Thread(target=self._connection) for _ in range(connections)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return (self.sent - first) / (time.monotonic() - t0)

    def _connection(self) -> None:
        conn = http.client.HTTPConnection(*self.address, timeout=30)
        headers = {"Authorization": f"Bearer {self.token}"}
        while True:
            with self._lock:
                if self.sent >= self._target:
                    break
                self.sent += 1
            conn.request("GET", self.path, headers=headers)
            answer = conn.getresponse()
            answer.read()
            if answer.status != 200:
                self.failed += 1
        conn.close()


def ask(pid: int, out: Path, timeout: float = 60.0) -> dict[str, Any]:
    """What the orchestrator holds now (it writes ``out`` on SIGUSR1)."""
    out.unlink(missing_ok=True)
    os.kill(pid, signal.SIGUSR1)
    deadline = time.monotonic() + timeout
    while not out.exists():
        if time.monotonic() > deadline:
            raise SystemExit("the orchestrator did not answer SIGUSR1")
        time.sleep(0.1)
    return json.loads(out.read_text())


def line(label: str, f: dict[str, Any]) -> str:
    cpu = ", ".join(f"{k} {v:.2f}" for k, v in sorted(f["cpu_s"].items(), key=lambda kv: -kv[1]))
    return (
        f"{label:<14} RSS {f['rss_mb']:6.1f} MB  objects {f['gc_objects']:6d}  threads "
        f"{f['threads']:3d}  malloc {f['malloc_in_use_mb']:5.1f}/{f['malloc_held_mb']:5.1f} MB"
        f"  DuckDB {f.get('duckdb_mb', 0):5.1f} MB  messages {f.get('messages_rows', '-')}\n"
        f"{'':<14} CPU s: {cpu}"
    )


def stop(orch: subprocess.Popen[bytes]) -> None:
    for argv in (["serve", "--stop"], ["orchestrator", "stop"]):
        subprocess.run([sys.executable, "-m", "shoal", *argv], capture_output=True,
                       timeout=60, check=False)  # fmt: skip
    with contextlib.suppress(subprocess.TimeoutExpired):
        orch.wait(10)
    if orch.poll() is None:
        orch.kill()
        orch.wait(10)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--at", default="1000,5000,20000", help="totals to report at")
    parser.add_argument("--path", default="/api/v1/status", help="what the load asks for")
    parser.add_argument("--connections", type=int, default=32, help="kept-alive connections")
    args = parser.parse_args(argv)
    home = Path(tempfile.mkdtemp(prefix="sbs", dir="/tmp"))  # short: ipc paths <= 107 bytes
    out = home / "dump.json"
    os.environ.update(SHOAL_HOME=str(home), SHOAL_IDLE_TIMEOUT="0", SHOAL_PRELOAD="")
    os.environ["BENCH_DUMP"] = str(out)
    orch = None
    try:
        orch, host, port, token = start(home)
        load = Load(host, port, token, args.path)
        print(f"GET {args.path} on {args.connections} kept-alive connections, python "
              f"{sys.version.split()[0]}, {os.cpu_count()} CPUs")  # fmt: skip
        print(line("serving", ask(orch.pid, out)))
        for target in (int(n) for n in args.at.split(",")):
            rate = load.until(target, args.connections)
            time.sleep(1.0)  # the last replies' threads settle
            print(line(f"{target} sent", ask(orch.pid, out)) + f"; {rate:.0f} req/s")
        print(f"requests not answered 200: {load.failed}")
    finally:
        if orch is not None:
            stop(orch)
        shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--as-orchestrator"]:
        sys.exit(as_orchestrator(sys.argv[2:]))
    sys.exit(main())
