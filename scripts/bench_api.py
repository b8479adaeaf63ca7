"""Benchmark the HTTP API under idle connections, with the orchestrator's fd limit lowered.

Run it from the repository root (shoal installed, e.g. ``pip install -e .``)::

    python3 scripts/bench_api.py           # a table
    python3 scripts/bench_api.py --json    # one JSON object

What it does, in one run, under a temporary ``SHOAL_HOME``:

1. starts the orchestrator with ``RLIMIT_NOFILE`` ``--nofile`` (1024, soft and hard,
   set for the ``shoal serve`` process it is started from, so the orchestrator's raise
   to the hard limit changes nothing) and ``shoal serve --port 0 --detach``;
2. baseline: ``--requests`` (200) concurrent ``GET /api/v1/status``, each on its own
   connection, with no other connection open;
3. under load: ``--idle`` (1,000) TCP connections opened and held without a byte sent
   (as a slowloris client would), then, after ``--settle`` seconds, the same 200
   concurrent requests.

Each request counts as answered (2xx), refused with a status (any other HTTP status,
e.g. 503 with Retry-After), or failed without a status (reset, timeout, no status
line); latency is from connecting to the last byte of the answer. It prints p50/p99,
whether the orchestrator is alive and answers ``shoal status`` afterwards, its open
file descriptors (most seen while loaded), and what became of the idle connections.
Target: every request answered or refused with a status, p99 under 2 s, orchestrator
up. The orchestrator is stopped and the temporary home removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TIMEOUT = 30.0


@dataclass
class Round:
    """What one round of concurrent requests got."""

    statuses: list[int | None] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)

    @property
    def answered(self) -> int:
        return sum(1 for s in self.statuses if s is not None and 200 <= s < 300)

    @property
    def refused(self) -> dict[int, int]:
        codes = [s for s in self.statuses if s is not None and not 200 <= s < 300]
        return {code: codes.count(code) for code in sorted(set(codes))}

    @property
    def failed(self) -> int:
        return sum(1 for s in self.statuses if s is None)

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[max(0, -(-len(ordered) * p // 100) - 1)] if ordered else float("nan")

    def figures(self) -> dict[str, Any]:
        return {
            "requests": len(self.statuses),
            "answered": self.answered,
            "refused": self.refused,
            "failed": self.failed,
            "p50_s": round(self.percentile(50), 3),
            "p99_s": round(self.percentile(99), 3),
        }


async def fetch(host: str, port: int, path: str) -> tuple[int | None, float]:
    """One GET on a connection of its own: (status or None, seconds)."""
    start = time.perf_counter()
    status: int | None = None
    writer = None
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), TIMEOUT)
        request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n"
        writer.write(request.encode())
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), TIMEOUT)
        found = re.match(rb"HTTP/1\.[01] (\d{3}) ", line)
        if found:
            await asyncio.wait_for(reader.read(), TIMEOUT)  # to the end: Connection: close
            status = int(found.group(1))
    except (OSError, TimeoutError, asyncio.IncompleteReadError):
        status = None
    finally:
        if writer is not None:
            writer.close()
    return status, time.perf_counter() - start


async def burst(host: str, port: int, n: int) -> Round:
    results = await asyncio.gather(*(fetch(host, port, "/api/v1/status") for _ in range(n)))
    got = Round()
    for status, seconds in results:
        got.statuses.append(status)
        got.latencies.append(seconds)
    return got


@dataclass
class Idle:
    """Connections held open without a byte sent, and what the server did with them."""

    writers: list[asyncio.StreamWriter] = field(default_factory=list)
    outcomes: list[str] = field(default_factory=list)
    """Per connection that ended: ``503`` (refused at once), ``closed``, or ``error``."""
    failed_to_open: int = 0

    async def open(self, host: str, port: int, n: int) -> None:
        async def one() -> None:
            try:
                reader, writer = await asyncio.open_connection(host, port)
            except OSError:
                self.failed_to_open += 1
                return
            self.writers.append(writer)
            asyncio.get_running_loop().create_task(self._watch(reader))

        for start in range(0, n, 100):
            await asyncio.gather(*(one() for _ in range(min(100, n - start))))

    async def _watch(self, reader: asyncio.StreamReader) -> None:
        try:
            data = await reader.read(64)
        except OSError:
            self.outcomes.append("error")
            return
        self.outcomes.append("503" if data.startswith(b"HTTP/1.1 503") else "closed")

    def close(self) -> None:
        for writer in self.writers:
            writer.close()


def fd_count(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


async def sample_fds(pid: int, most: list[int], stop: asyncio.Event) -> None:
    while not stop.is_set():
        most[0] = max(most[0], fd_count(pid))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.05)


async def measure(host: str, port: int, pid: int, args: argparse.Namespace) -> dict[str, Any]:
    figures: dict[str, Any] = {"fds_at_rest": fd_count(pid)}
    await burst(host, port, 10)  # warm: the endpoints' threads, the first queries
    figures["baseline"] = (await burst(host, port, args.requests)).figures()
    idle = Idle()
    most = [0]
    stop = asyncio.Event()
    sampler = asyncio.get_running_loop().create_task(sample_fds(pid, most, stop))
    await idle.open(host, port, args.idle)
    await asyncio.sleep(args.settle)
    ended_before = list(idle.outcomes)
    loaded = await burst(host, port, args.requests)
    stop.set()
    await sampler
    figures["loaded"] = loaded.figures()
    figures["fds_most"] = most[0]
    figures["alive"] = alive(pid)
    figures["idle"] = {
        "opened": len(idle.writers),
        "failed_to_open": idle.failed_to_open,
        "refused_503": ended_before.count("503"),
        "closed_by_server_before_burst": ended_before.count("closed"),
        "closed_by_server_by_end": idle.outcomes.count("closed"),
    }
    idle.close()
    return figures


def start(home: Path, nofile: int) -> tuple[str, int, int]:
    """``shoal serve --port 0 --detach`` under the fd limit: (host, port, orchestrator pid)."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

    served = subprocess.run(
        [sys.executable, "-m", "shoal", "serve", "--port", "0", "--detach"],
        capture_output=True, text=True, timeout=120, preexec_fn=limit, check=False,
    )  # fmt: skip
    found = re.search(r"^serving http://([\d.]+):(\d+)/api/v1$", served.stdout, re.M)
    if served.returncode != 0 or not found:
        raise SystemExit(f"shoal serve failed: {served.stderr.strip() or served.stdout}")
    pid = int((home / "run" / "orchestrator.pid").read_text())
    return found.group(1), int(found.group(2)), pid


def shoal_status_ok() -> tuple[bool, str]:
    done = subprocess.run(
        [sys.executable, "-m", "shoal", "status"],
        capture_output=True, text=True, timeout=60, env={**os.environ, "COLUMNS": "300"},
    )  # fmt: skip
    warnings = [line for line in done.stdout.splitlines() if line.startswith("warning:")]
    return done.returncode == 0, " ".join(warnings)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--idle", type=int, default=1000, help="idle connections held open")
    parser.add_argument("--requests", type=int, default=200, help="concurrent GET /status")
    parser.add_argument("--nofile", type=int, default=1024, help="the orchestrator's fd limit")
    parser.add_argument("--settle", type=float, default=1.5, help="seconds the idle ones wait")
    args = parser.parse_args(argv)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = args.idle + args.requests + 64
    if soft < need:  # this client holds every connection open at once
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(max(need, soft), hard), hard))
    home = Path(tempfile.mkdtemp(prefix="shoal-bench-api-"))
    os.environ.update(SHOAL_HOME=str(home), SHOAL_IDLE_TIMEOUT="0", SHOAL_PRELOAD="")
    try:
        host, port, pid = start(home, args.nofile)
        figures = asyncio.run(measure(host, port, pid, args))
        figures["status_ok"], figures["status_warnings"] = shoal_status_ok()
        figures["alive_after"] = alive(pid)
        log = (home / "logs" / "orchestrator.log").read_text()
        caps = re.findall(r"at most (\d+) connections", log)
        figures["cap"] = int(caps[-1]) if caps else None
    finally:
        subprocess.run([sys.executable, "-m", "shoal", "serve", "--stop"], capture_output=True,
                       timeout=60, check=False)  # fmt: skip
        subprocess.run([sys.executable, "-m", "shoal", "orchestrator", "stop"],
                       capture_output=True, timeout=60, check=False)  # fmt: skip
        shutil.rmtree(home, ignore_errors=True)
    figures.update(nofile=args.nofile, idle_asked=args.idle)
    if args.json:
        print(json.dumps(figures))
    else:
        report(figures)
    return 0


def _round(r: dict[str, Any]) -> str:
    refused = ", ".join(f"{n}x{code}" for code, n in r["refused"].items()) or "0"
    return (
        f"answered {r['answered']}/{r['requests']}, refused {refused}, failed {r['failed']}; "
        f"p50 {r['p50_s']:.3f} s, p99 {r['p99_s']:.3f} s"
    )


def report(f: dict[str, Any]) -> None:
    idle = f["idle"]
    print(
        f"shoal HTTP API benchmark ({os.cpu_count()} CPUs, python {sys.version.split()[0]}; "
        f"orchestrator RLIMIT_NOFILE {f['nofile']}, API connection cap {f['cap']})"
    )
    n = f["baseline"]["requests"]
    print(f"baseline: {n} concurrent GET /status          {_round(f['baseline'])}")
    print(f"{f['idle_asked']:,} idle + {n} concurrent GET /status  {_round(f['loaded'])}")
    print(
        f"idle connections: {idle['opened']} opened ({idle['failed_to_open']} failed to), "
        f"{idle['refused_503']} answered 503 at once, {idle['closed_by_server_before_burst']} "
        f"closed by the server before the burst, {idle['closed_by_server_by_end']} by its end"
    )
    state = "alive" if f["alive"] and f["alive_after"] else "DEAD"
    print(
        f"orchestrator: {state}; fds {f['fds_at_rest']} at rest, at most {f['fds_most']} "
        f"loaded (limit {f['nofile']}); `shoal status` {'ok' if f['status_ok'] else 'FAILED'}"
    )
    if f["status_warnings"]:
        print(f"  {f['status_warnings']}")
    loaded = f["loaded"]
    ok = loaded["failed"] == 0 and loaded["p99_s"] < 2.0 and state == "alive"
    print(
        "target: every request answered or refused with a status, p99 < 2 s, orchestrator up: "
        + ("ok" if ok else "MISSED")
    )


if __name__ == "__main__":
    sys.exit(main())
