"""Benchmark the event stream and the HTTP API under load: 100 streams, 1,000 GET /status a second.

Run it from the repository root (shoal installed, e.g. ``pip install -e .``)::

    python3 scripts/bench_events.py           # a table
    python3 scripts/bench_events.py --json    # one JSON object

What it does, in one run, under a temporary ``SHOAL_HOME``:

1. starts a scripted model server (``shoal.llm.scripted``; each executor turn takes
   ``--turn-delay`` seconds) and ``shoal serve --port 0 --detach --token T``, with the
   models pointed at it, and runs one warm-up task through ``POST /api/v1/tasks``
   (so the actors are up before anything is measured);
2. opens ``--streams`` (100) ``GET /api/v1/events`` streams, each on its own socket,
   read continuously (a stream that ends is counted as a disconnect and reopened, as a
   browser would);
3. for ``--duration`` (10) seconds, a load generator in a process of its own sends
   ``--rate`` (1,000) ``GET /api/v1/status`` (``--path``) a second over ``--connections`` (32)
   kept-alive connections: request *i* is due at start + *i* / rate; a connection
   sends the next due request as soon as its last one is answered, so when the server
   is slower than the target the rate achieved is what it could serve. Meanwhile
   ``--tasks`` (3) scripted tasks, in repositories of their own, are submitted two
   seconds apart, so events flow on the streams;
4. waits for the tasks to end, lets the streams drain, and closes everything.

It prints requests sent, answered, refused (by status) and failed (no status: reset,
timeout), latency p50/p99 (from sending a request to the last byte of its answer),
the rate achieved; per stream, the events received (min/median/max, against the
number of distinct events any stream saw) and disconnects; the orchestrator's RSS and
PSS (``/proc/PID/smaps_rollup``) at rest, before the load, every two seconds during
it, and at the end, and its open file descriptors. Target (issue 16): no error, every
stream gets every event, memory flat. Every process it started is ended by its pid and
the temporary home removed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TIMEOUT = 30.0
SAMPLE_EVERY = 2.0


# --- the orchestrator's memory and fds -----------------------------------------------


def memory_mb(pid: int) -> tuple[float, float]:
    """(RSS, PSS) of ``pid`` in MB."""
    kb: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
            name, value = line.split(":", 1)
            kb[name] = int(value.split()[0])
    return kb.get("Rss", 0) / 1024, kb.get("Pss", 0) / 1024


def fd_count(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


def cpu_seconds(pid: int) -> float:
    """User + system CPU time ``pid`` has used."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def sample(pid: int, label: str) -> dict[str, Any]:
    rss, pss = memory_mb(pid)
    return {"at": label, "rss_mb": round(rss, 1), "pss_mb": round(pss, 1), "fds": fd_count(pid)}


# --- HTTP/1.1 on asyncio streams -------------------------------------------------------


async def read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    """The status and headers of an answer (raises on a malformed or missing one)."""
    line = await reader.readline()
    found = re.match(rb"HTTP/1\.[01] (\d{3}) ", line)
    if not found:
        raise ConnectionError(f"no status line: {line[:60]!r}")
    headers: dict[str, str] = {}
    while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(found.group(1)), headers


async def read_chunk(reader: asyncio.StreamReader) -> bytes:
    """One chunk of a chunked body (b"" at its end)."""
    size = int((await reader.readline()).split(b";")[0].strip() or b"0", 16)
    data = await reader.readexactly(size + 2)
    return data[:-2]


async def read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
    if "content-length" in headers:
        return await reader.readexactly(int(headers["content-length"]))
    if headers.get("transfer-encoding", "").lower() == "chunked":
        parts = []
        while chunk := await read_chunk(reader):
            parts.append(chunk)
        await reader.readline()  # the empty trailer
        return b"".join(parts)
    return await reader.read()


# --- the event streams -----------------------------------------------------------------


@dataclass
class Stream:
    """One SSE client: the events it got (ids) and how often its stream ended."""

    ids: list[str] = field(default_factory=list)
    heartbeats: int = 0
    disconnects: int = 0
    refused: dict[int, int] = field(default_factory=dict)
    connected: asyncio.Event = field(default_factory=asyncio.Event)


async def follow(host: str, port: int, token: str, stream: Stream, stop: asyncio.Event) -> None:
    """Read ``GET /events`` until ``stop``; reopen it whenever it ends."""
    while not stop.is_set():
        writer = None
        try:
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(
                f"GET /api/v1/events HTTP/1.1\r\nHost: {host}:{port}\r\n"
                f"Authorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n".encode()
            )
            status, headers = await asyncio.wait_for(read_head(reader), TIMEOUT)
            if status != 200:
                stream.refused[status] = stream.refused.get(status, 0) + 1
                await asyncio.sleep(1)
                continue
            stream.connected.set()
            await read_events(reader, headers, stream, stop)
        except (OSError, ConnectionError, asyncio.IncompleteReadError, TimeoutError, ValueError):
            pass
        finally:
            if writer is not None:
                writer.close()
        if not stop.is_set():
            stream.disconnects += 1
            await asyncio.sleep(0.1)


async def read_events(reader: asyncio.StreamReader, headers: dict[str, str], stream: Stream,
                      stop: asyncio.Event) -> None:  # fmt: skip
    chunked = headers.get("transfer-encoding", "").lower() == "chunked"
    pending = b""
    stopping = asyncio.ensure_future(stop.wait())
    try:
        while True:
            reading = asyncio.ensure_future(read_chunk(reader) if chunked else reader.read(65536))
            done, _ = await asyncio.wait({reading, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if reading not in done:
                reading.cancel()
                return
            data = reading.result()
            if not data:
                raise ConnectionError("the stream ended")
            pending += data
            *blocks, pending = pending.split(b"\n\n")
            for block in blocks:
                found = re.search(rb"^id: (\S+)$", block, re.M)
                if found and b"\ndata: " in b"\n" + block:
                    stream.ids.append(found.group(1).decode())
                elif block.startswith(b": heartbeat"):
                    stream.heartbeats += 1
    finally:
        stopping.cancel()


def stream_figures(streams: list[Stream]) -> dict[str, Any]:
    counts = [len(s.ids) for s in streams]
    distinct = set().union(*(s.ids for s in streams)) if streams else set()
    refused: dict[str, int] = {}
    for s in streams:
        for code, n in s.refused.items():
            refused[str(code)] = refused.get(str(code), 0) + n
    return {
        "streams": len(streams),
        "connected": sum(1 for s in streams if s.connected.is_set()),
        "events_distinct": len(distinct),
        "events_min": min(counts, default=0),
        "events_median": statistics.median(counts) if counts else 0,
        "events_max": max(counts, default=0),
        "streams_missing_events": sum(1 for s in streams if len(set(s.ids)) < len(distinct)),
        "disconnects": sum(s.disconnects for s in streams),
        "refused": refused,
        "heartbeats": sum(s.heartbeats for s in streams),
    }


# --- the load generator (a process of its own) ------------------------------------------


def load_process(host: str, port: int, token: str, path: str, rate: float, duration: float,
                 connections: int, out: Any) -> None:  # fmt: skip
    """Entry point of the load generator's process: its figures go to ``out`` (a queue)."""
    out.put(asyncio.run(generate(host, port, token, path, rate, duration, connections)))


async def generate(host: str, port: int, token: str, path: str, rate: float, duration: float,
                   connections: int) -> dict[str, Any]:  # fmt: skip
    total = int(rate * duration)
    statuses: dict[str, int] = {}
    latencies: list[float] = []
    state = {"next": 0, "sent": 0, "late": 0.0, "reconnects": 0}
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {token}\r\n\r\n"
    ).encode()
    start = time.perf_counter() + 0.05
    cpu = time.process_time()

    async def connection() -> None:
        reader = writer = None
        while state["next"] < total:
            i = state["next"]
            state["next"] += 1
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                state["late"] = max(state["late"], -delay)
            sent = time.perf_counter()
            state["sent"] += 1
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection(host, port)
                assert reader is not None
                writer.write(request)
                status, headers = await asyncio.wait_for(read_head(reader), TIMEOUT)
                await asyncio.wait_for(read_body(reader, headers), TIMEOUT)
                key = str(status)
                if headers.get("connection", "").lower() == "close":
                    writer.close()
                    reader = writer = None
                    state["reconnects"] += 1
            except (OSError, ConnectionError, asyncio.IncompleteReadError, TimeoutError) as e:
                key = f"error: {type(e).__name__}"
                if writer is not None:
                    writer.close()
                reader = writer = None
                state["reconnects"] += 1
            statuses[key] = statuses.get(key, 0) + 1
            latencies.append(time.perf_counter() - sent)
        if writer is not None:
            writer.close()

    await asyncio.gather(*(connection() for _ in range(connections)))
    elapsed = time.perf_counter() - start
    return {"cpu_s": time.process_time() - cpu, "asked": total, "sent": state["sent"],
            "statuses": statuses,
            "latencies": latencies, "elapsed_s": elapsed, "most_late_s": state["late"],
            "reconnects": state["reconnects"]}  # fmt: skip


def load_figures(got: dict[str, Any], rate: float, duration: float) -> dict[str, Any]:
    ordered = sorted(got["latencies"])

    def pct(p: float) -> float:
        return ordered[max(0, -(-len(ordered) * p // 100) - 1)] if ordered else float("nan")

    answered = sum(n for k, n in got["statuses"].items() if k.startswith("2"))
    return {
        "target_rate": rate,
        "duration_s": duration,
        "asked": got["asked"],
        "sent": got["sent"],
        "answered": answered,
        "statuses": dict(sorted(got["statuses"].items())),
        "errors": got["sent"] - answered,
        "p50_ms": round(pct(50) * 1000, 1),
        "p99_ms": round(pct(99) * 1000, 1),
        "max_ms": round(ordered[-1] * 1000, 1) if ordered else None,
        "elapsed_s": round(got["elapsed_s"], 2),
        "achieved_rate": round(answered / got["elapsed_s"], 1),
        "most_behind_schedule_s": round(got["most_late_s"], 2),
        "reconnects": got["reconnects"],
        "generator_cpu_s": round(got["cpu_s"], 2),
    }


# --- tasks, through the API ---------------------------------------------------------------


def api(base: str, token: str, method: str, path: str, body: Any = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method=method)
    req.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=TIMEOUT) as answer:
        return json.loads(answer.read())


def submit(base: str, token: str, repo: Path) -> str:
    body = {"description": "Read notes.txt and report it.", "cwd": str(repo), "iterations": 1}
    return str(api(base, token, "POST", "/tasks", body)["id"])


def wait_done(base: str, token: str, ids: list[str], timeout: float) -> dict[str, str]:
    """Each task's status once none is running (or at ``timeout``)."""
    end = time.monotonic() + timeout
    while True:
        found = {i: str(api(base, token, "GET", f"/tasks/{i}")["status"]) for i in ids}
        if all(s not in ("running", "queued", "pending") for s in found.values()):
            return found
        if time.monotonic() > end:
            return found
        time.sleep(0.5)


def make_repo(root: Path, name: str) -> Path:
    repo = root / name
    repo.mkdir()
    (repo / "notes.txt").write_text("Nothing to do here.\n")
    git = ["git", "-C", str(repo), "-c", "user.name=shoal bench", "-c", "user.email=bench@shoal"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "notes"]):
        subprocess.run([*git, *args], check=True, capture_output=True)
    return repo


def script(tasks: int, turns: int, delay: float) -> dict[str, Any]:
    """Replies for ``tasks`` tasks of ``turns`` executor turns, ``delay`` s each."""
    read = {"tool_calls": [{"name": "read_file", "arguments": {"path": "notes.txt"}}]}
    done = {"tool_calls": [{"name": "finish", "arguments": {"summary": "Read notes.txt."}}]}
    one = [{**read, "delay": delay}] * (turns - 1) + [{**done, "delay": delay}]
    plan = {"tool_calls": [{"name": "submit_plan", "arguments": {
        "steps": [{"title": "Read notes.txt", "detail": "Report it."}]}}]}  # fmt: skip
    judged = {"tool_calls": [{"name": "submit_evaluation",
                              "arguments": {"score": 0.95, "findings": []}}]}  # fmt: skip
    return {
        "models": {
            "scripted-planner": [plan],
            "scripted-executor": {"replies": one * tasks, "repeat_last": False},
            "scripted-evaluator": [judged],
        }
    }


# --- the run --------------------------------------------------------------------------------


async def measure(host: str, port: int, token: str, pid: int, repos: list[Path],
                  args: argparse.Namespace) -> dict[str, Any]:  # fmt: skip
    base = f"http://{host}:{port}/api/v1"
    figures: dict[str, Any] = {"memory": [sample(pid, "at rest")]}
    warm = await asyncio.to_thread(submit, base, token, repos[0])
    figures["warmup"] = await asyncio.to_thread(wait_done, base, token, [warm], 180)
    stop = asyncio.Event()
    streams = [Stream() for _ in range(args.streams)]
    followers = [asyncio.ensure_future(follow(host, port, token, s, stop)) for s in streams]
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.gather(*(s.connected.wait() for s in streams)), 30)
    figures["memory"].append(sample(pid, "streams open, before the load"))
    t0, cpu0 = time.monotonic(), cpu_seconds(pid)
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    loader = ctx.Process(target=load_process, name="bench-load", args=(
        host, port, token, args.path, args.rate, args.duration, args.connections, out))  # fmt: skip
    loader.start()
    ids: list[str] = []
    sampled = 1
    while out.empty():
        if not loader.is_alive() and out.empty():
            raise SystemExit(f"the load generator exited {loader.exitcode} with no figures")
        now = time.monotonic() - t0
        if len(ids) < args.tasks and now >= 2.0 * len(ids):
            ids.append(await asyncio.to_thread(submit, base, token, repos[1 + len(ids)]))
        if now >= SAMPLE_EVERY * sampled:
            figures["memory"].append(sample(pid, f"load +{SAMPLE_EVERY * sampled:g} s"))
            sampled += 1
        await asyncio.sleep(0.1)
    got = await asyncio.to_thread(out.get, True, 60)
    loader.join(10)
    figures["orchestrator_cpu_s"] = round(cpu_seconds(pid) - cpu0, 2)
    figures["memory"].append(sample(pid, "load over"))
    figures["load"] = load_figures(got, args.rate, args.duration)
    figures["tasks"] = await asyncio.to_thread(wait_done, base, token, ids, 180)
    await asyncio.sleep(2)  # the last events reach every stream
    stop.set()
    await asyncio.gather(*followers)
    figures["events"] = stream_figures(streams)
    figures["memory"].append(sample(pid, "tasks done, streams drained"))
    await asyncio.sleep(2)
    figures["memory"].append(sample(pid, "streams closed, +2 s"))
    return figures


def start(home: Path, token: str) -> tuple[str, int, int]:
    """``shoal serve --port 0 --detach``: (host, port, orchestrator pid)."""
    served = subprocess.run(
        [sys.executable, "-m", "shoal", "serve", "--port", "0", "--detach", "--token", token],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    found = re.search(r"^serving http://([\d.]+):(\d+)/api/v1$", served.stdout, re.M)
    if served.returncode != 0 or not found:
        raise SystemExit(f"shoal serve failed: {served.stderr.strip() or served.stdout}")
    pid = int((home / "run" / "orchestrator.pid").read_text())
    return found.group(1), int(found.group(2)), pid


def stop_orchestrator(pid: int | None) -> None:
    """Stop serving and the orchestrator; if its pid is still there after, end it."""
    for argv in (["serve", "--stop"], ["orchestrator", "stop"]):
        subprocess.run([sys.executable, "-m", "shoal", *argv], capture_output=True,
                       timeout=60, check=False)  # fmt: skip
    if pid is None:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if not Path(f"/proc/{pid}").exists():
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        time.sleep(2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--streams", type=int, default=100, help="event-stream clients")
    parser.add_argument("--rate", type=float, default=1000.0, help="GET /status a second")
    parser.add_argument("--path", default="/api/v1/status", help="what the load asks for")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of load")
    parser.add_argument("--connections", type=int, default=32, help="kept-alive connections")
    parser.add_argument("--tasks", type=int, default=3, help="scripted tasks during the load")
    parser.add_argument("--turns", type=int, default=8, help="executor turns per task")
    parser.add_argument("--turn-delay", type=float, default=0.3, help="seconds per model turn")
    args = parser.parse_args(argv)
    # Short: ipc socket paths are limited to 107 bytes. Set before shoal is imported.
    home = Path(tempfile.mkdtemp(prefix="sbe", dir="/tmp"))
    work = Path(tempfile.mkdtemp(prefix="shoal-bench-events-"))
    os.environ.update(SHOAL_HOME=str(home), SHOAL_IDLE_TIMEOUT="0", SHOAL_PRELOAD="")
    os.environ.pop("SHOAL_MODEL", None)
    from shoal.llm.scripted import ScriptedModelServer

    server = ScriptedModelServer(script(args.tasks + 1, args.turns, args.turn_delay))
    for role in ("planner", "executor", "evaluator"):
        os.environ[f"SHOAL_{role.upper()}_MODEL"] = f"openai/scripted-{role}"
    os.environ["SHOAL_BASE_URL"] = server.base_url
    token = secrets.token_hex(16)
    pid: int | None = None
    try:
        repos = [make_repo(work, f"repo{i}") for i in range(args.tasks + 1)]
        host, port, pid = start(home, token)
        figures = asyncio.run(measure(host, port, token, pid, repos, args))
    finally:
        stop_orchestrator(pid)
        server.close()
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    figures["settings"] = {k: v for k, v in vars(args).items() if k != "json"}
    if args.json:
        print(json.dumps(figures))
    else:
        report(figures)
    return 0


def report(f: dict[str, Any]) -> None:
    s, load, ev = f["settings"], f["load"], f["events"]
    print(
        f"shoal event stream + HTTP API under load ({os.cpu_count()} CPUs, python "
        f"{sys.version.split()[0]}): {s['streams']} SSE clients, {s['rate']:g} GET {s['path']}/s "
        f"for {s['duration']:g} s on {s['connections']} kept-alive connections, "
        f"{s['tasks']} scripted tasks"
    )
    codes = ", ".join(f"{n}x{code}" for code, n in load["statuses"].items())
    print(
        f"requests: {load['asked']} asked, {load['sent']} sent, {load['answered']} answered, "
        f"{load['errors']} not 2xx ({codes})"
    )
    print(
        f"  latency p50 {load['p50_ms']} ms, p99 {load['p99_ms']} ms, max {load['max_ms']} ms; "
        f"achieved {load['achieved_rate']} req/s over {load['elapsed_s']} s "
        f"(target {load['target_rate']:g}; at most {load['most_behind_schedule_s']} s behind)"
    )
    print(
        f"  CPU during the load: orchestrator {f['orchestrator_cpu_s']} s, load generator "
        f"{load['generator_cpu_s']} s, in {load['elapsed_s']} s on {os.cpu_count()} CPUs"
    )
    print(
        f"streams: {ev['connected']}/{ev['streams']} connected; events per client min "
        f"{ev['events_min']}, median {ev['events_median']}, max {ev['events_max']} "
        f"(distinct {ev['events_distinct']}); {ev['streams_missing_events']} missed some; "
        f"{ev['disconnects']} disconnects; refused {ev['refused'] or 0}"
    )
    print(f"tasks: {', '.join(f['tasks'].values())} (warm-up {', '.join(f['warmup'].values())})")
    print("orchestrator memory:")
    for m in f["memory"]:
        print(f"  {m['at']:<32} RSS {m['rss_mb']:7.1f} MB  PSS {m['pss_mb']:7.1f} MB  "
              f"fds {m['fds']}")  # fmt: skip
    loaded = [m for m in f["memory"] if m["at"].startswith("load") or "before" in m["at"]]
    growth = loaded[-1]["rss_mb"] - loaded[0]["rss_mb"] if loaded else 0.0
    ok = load["errors"] == 0 and ev["streams_missing_events"] == 0 and ev["disconnects"] == 0
    print(
        f"RSS growth during the load: {growth:+.1f} MB; target (no error, every stream every "
        f"event, rate {load['target_rate']:g}/s): "
        + ("ok" if ok and load["achieved_rate"] >= 0.95 * load["target_rate"] else "MISSED")
    )


if __name__ == "__main__":
    sys.exit(main())
