"""Benchmark shoal's task loop with a 0 ms scripted model, and print the figures.

Run it from the repository root (shoal installed, e.g. ``pip install -e .``)::

    python3 scripts/bench_loop.py           # a table (progress on stderr)
    python3 scripts/bench_loop.py --json    # one JSON object

What it measures, in one run, under a fresh temporary ``SHOAL_HOME``:

1. **Per-turn overhead of the loop.** A small git repository and a scripted,
   OpenAI-compatible model server (``shoal.llm.scripted``, no delay) whose executor
   makes ``--turns - 1`` ``read_file`` calls and then calls ``finish``; planner and
   evaluator answer once each (the evaluator accepts with 0.95). The task goes
   through ``submit_and_follow`` (what ``shoal run`` calls) against a warm
   orchestrator: the same task runs once first to start it and spawn its actors.
   The benchmark's server subclass stamps every request's arrival and the end of
   its answer. The executing phase is delimited two ways:

   a. by request arrivals, first executor request -> last executor request: the
      loop's turns alone; overhead per turn = (wall - model time) / (requests - 1);
   b. by the task's ``task.progress`` events, ``executing`` -> ``evaluating``: the
      same plus handing the step to the executor, its git snapshots and the reply;
      overhead per turn = (wall - model time) / requests.

   For reference it also times, in this process, what one turn does besides the
   model (litellm's client work around one request, one ``read_file`` call), and
   what a new actor pays once: ``import shoal.llm.warm`` (the forkserver's preload:
   litellm and what its first call would import), then the first completion's own
   imports, counted per package.

2. **Time from ``shoal run`` to the first model request**: from launching the
   installed ``shoal`` entry point as a subprocess (as a user would; the one next to
   this interpreter, not a pyenv shim) to the arrival of the planner's first chat
   request at the scripted server. Models come from ``SHOAL_<ROLE>_MODEL`` and
   ``SHOAL_BASE_URL``, exactly as a user would set them.

   * warm: the orchestrator already runs with its actors spawned (median of
     ``--warm`` runs; target <= 0.5 s);
   * cold: no orchestrator (the warm one is stopped first) and a fresh
     ``SHOAL_HOME`` per run: includes starting the orchestrator, the actor
     forkserver importing litellm, and spawning the actors (``--cold`` runs).

   Then the same command is run through an instrumented copy of the CLI's entry
   point (the real code, with timing wrappers around its steps) to show where the
   warm and the cold time go.

Every orchestrator started is stopped, every temporary directory removed, at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shoal.llm.scripted import ScriptedModelServer
    from shoal.paths import Home

ROLES = ("planner", "executor", "evaluator")
TASK = "Read notes.txt and report what it says."
NOTES = "".join(f"line {i}: shoal benchmark notes\n" for i in range(1, 21))
TARGET_WARM_FIRST_REQUEST_S = 0.5
CLI_TIMEOUT_S = 180.0

# The instrumented ``shoal run``: the real entry point, with timing wrappers around the
# steps it takes before the first model request. Its marks go to the file named in
# SHOAL_BENCH_PROBE_OUT, as time.monotonic() values (the clock every process shares).
PROBE = r"""
import json, os, sys, time
marks = [("interpreter start (launch -> first line of the probe)", time.monotonic())]
spans = []
import shoal.cli.app as app
marks.append(("import shoal.cli.app (typer)", time.monotonic()))
import shoal.config, shoal.mailbox.envelope
marks.append(("import shoal.config (pydantic, envelope)", time.monotonic()))
import shoal.mailbox.client, shoal.mailbox.events
marks.append(("import mailbox client, events (zmq)", time.monotonic()))
import shoal.daemon
marks.append(("import daemon", time.monotonic()))
import rich.console
marks.append(("import rich.console (progress lines)", time.monotonic()))
import shoal.cli.run as run

def timed(owner, attr, label):
    original = getattr(owner, attr, None)
    if original is None:  # renamed since: that step is simply not shown
        return
    def wrapper(*args, **kwargs):
        name = label
        if callable(label):
            name = label(*args, **kwargs)
        t = time.monotonic()
        try:
            return original(*args, **kwargs)
        finally:
            spans.append((name, t, time.monotonic()))
    setattr(owner, attr, wrapper)

daemon = shoal.daemon
timed(shoal.config, "load", "config.load")
timed(run, "_is_git_repo", "git rev-parse (is it a repository)")
timed(daemon, "start", "daemon.start (is one running; start it if not)")
timed(daemon, "status", "daemon.status (for the model-settings fingerprint)")
timed(shoal.config, "model_env_fingerprint", "model_env_fingerprint")
timed(run._Progress, "__init__", "progress console (rich)")
timed(shoal.mailbox.events.Subscriber, "__init__", "event subscriber connect")
timed(shoal.mailbox.client.MailboxClient, "__init__", "mailbox client connect")
timed(
    shoal.mailbox.client.MailboxClient,
    "request",
    lambda self, to, payload, *a, **k: f"request {payload.kind} -> reply",
)
sys.argv = ["shoal", *sys.argv[1:]]

def write_marks():
    with open(os.environ["SHOAL_BENCH_PROBE_OUT"], "w") as f:
        json.dump({"marks": marks, "spans": spans}, f)

# app.main() ends the process itself (os._exit after the atexit hooks).
import atexit
atexit.register(write_marks)
app.main()
"""


class BenchError(RuntimeError):
    """The benchmark could not measure what it meant to (a task failed, a count is off)."""


# --- the scripted model, with arrival times -------------------------------------------


@dataclass(frozen=True)
class Hit:
    """One chat request the scripted server received."""

    model: str
    arrived: float
    """time.monotonic() when its request line and headers had been read."""
    answered: float
    """time.monotonic() when its answer had been written."""

    @property
    def handling_s(self) -> float:
        return self.answered - self.arrived


class HitLog:
    """The chat requests a server received, in arrival order (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._hits: list[Hit] = []

    def add(self, hit: Hit) -> None:
        with self._lock:
            self._hits.append(hit)

    def wait_since(self, t: float, model: str, timeout: float = 2.0) -> Hit:
        """The first request for ``model`` that arrived at ``t`` or later, once it is answered.

        A client may have its answer before the handler thread has stamped it.
        """
        deadline = time.monotonic() + timeout
        while True:
            found = self.since(t, model)
            if found:
                return found[0]
            if time.monotonic() > deadline:
                raise BenchError(f"no request for {model} arrived")
            time.sleep(0.001)

    def since(self, t: float, model: str | None = None) -> list[Hit]:
        with self._lock:
            hits = list(self._hits)
        return sorted(
            (h for h in hits if h.arrived >= t and (model is None or h.model == model)),
            key=lambda h: h.arrived,
        )


def start_server(script: dict[str, Any], hits: HitLog) -> ScriptedModelServer:
    """The scripted model server, its handler subclassed to stamp every chat request.

    ``ScriptedModelServer`` records request bodies but no times; the subclass wraps
    ``do_POST`` (arrival, end of answer) and ``_chat`` (which model was asked).
    """
    from shoal.llm.scripted import ScriptedModelServer, _Handler

    class TimedHandler(_Handler):
        bench_model = ""

        def do_POST(self) -> None:
            arrived = time.monotonic()
            self.bench_model = ""
            try:
                super().do_POST()
            finally:
                if self.bench_model:
                    hits.add(Hit(self.bench_model, arrived, time.monotonic()))

        def _chat(self, body: dict[str, Any]) -> None:
            self.bench_model = str(body.get("model", ""))
            super()._chat(body)

    server = ScriptedModelServer(script)
    # Before anyone knows the port, so every request goes through the subclass.
    server._httpd.RequestHandlerClass = TimedHandler
    return server


def _call(name: str, **arguments: Any) -> dict[str, Any]:
    return {"tool_calls": [{"name": name, "arguments": arguments}]}


def loop_script(tasks: int, turns: int) -> dict[str, Any]:
    """Replies for ``tasks`` runs of the task, one after another (the executor's in order)."""
    one_task = [_call("read_file", path="notes.txt")] * (turns - 1)
    one_task.append(_call("finish", summary="Read notes.txt; nothing to change."))
    plan = _call("submit_plan", steps=[{"title": "Read notes.txt", "detail": "Report it."}])
    judged = _call("submit_evaluation", score=0.95, findings=[])
    return {
        "models": {
            "scripted-planner": [plan],
            "scripted-executor": {"replies": one_task * tasks, "repeat_last": False},
            "scripted-evaluator": [judged],
        }
    }


def make_repo(root: Path) -> Path:
    """A git repository with a small file and no tests or linters (the evaluator runs none)."""
    repo = root / "repo"
    repo.mkdir()
    (repo / "notes.txt").write_text(NOTES)
    (repo / "README.md").write_text("# bench\n\nA repository for scripts/bench_loop.py.\n")
    git = ["git", "-C", str(repo), "-c", "user.name=shoal bench", "-c", "user.email=bench@shoal"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "notes"]):
        subprocess.run([*git, *args], check=True, capture_output=True)
    return repo


# --- 1. per-turn overhead -------------------------------------------------------------


class ProgressLog:
    """``task.progress`` events as they arrive, on a thread of its own."""

    def __init__(self, home: Home) -> None:
        self.events: list[tuple[float, str, str]] = []  # (monotonic, task_id, phase)
        self._home = home
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-progress", daemon=True)

    def __enter__(self) -> ProgressLog:
        self._thread.start()
        self._ready.wait(5)
        time.sleep(0.3)  # a SUB socket misses what is published before it has joined
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        from shoal.mailbox.events import Subscriber

        with Subscriber(self._home.events_endpoint, ["task.progress"]) as sub:
            self._ready.set()
            while not self._stop.is_set():
                env = sub.recv(timeout=0.1)
                if env is not None:
                    self.events.append((time.monotonic(), env.task_id or "", env.payload["phase"]))

    def phase_start(self, task_id: str, phase: str) -> float | None:
        return next((t for t, tid, p in self.events if tid == task_id and p == phase), None)


@dataclass
class LoopRun:
    requests: int
    arrivals_wall_s: float
    arrivals_model_s: float
    arrivals_overhead_per_turn_s: float
    early_turns_overhead_s: float = 0.0
    """Mean overhead of the first 5 turns (the conversation is short)."""
    late_turns_overhead_s: float = 0.0
    """Mean overhead of the last 5 turns (the conversation is long)."""
    phase_wall_s: float | None = None
    phase_model_s: float | None = None
    phase_overhead_per_turn_s: float | None = None
    phase_setup_s: float | None = None
    """From the ``executing`` event to the first executor request."""
    phase_teardown_s: float | None = None
    """From the last executor answer to the ``evaluating`` event."""
    task_s: float = 0.0


def run_loop_task(
    home: Home, repo: Path, hits: HitLog, turns: int, progress: ProgressLog | None
) -> LoopRun:
    """One task through ``submit_and_follow``; its executing phase, measured."""
    from shoal import config
    from shoal.cli.run import submit_and_follow
    from shoal.messages.tasks import TaskSubmit

    options = config.load(home, repo).task_options()
    submit = TaskSubmit(description=TASK, cwd=str(repo), options=options)
    t0 = time.monotonic()
    done = submit_and_follow(home, submit, quiet=True)
    task_s = time.monotonic() - t0
    execs = hits.since(t0, "scripted-executor")
    if done.status != "accepted" or len(execs) != turns:
        raise BenchError(
            f"task {done.task_id} ended {done.status} ({done.decision}: {done.summary[:200]}) "
            f"with {len(execs)} executor requests, {turns} expected; see "
            f"{home.logs / 'actors'}"
        )
    wall = execs[-1].arrived - execs[0].arrived
    model = sum(h.handling_s for h in execs[:-1])
    gaps = [b.arrived - a.answered for a, b in itertools.pairwise(execs)]
    n = min(5, len(gaps))
    run = LoopRun(
        early_turns_overhead_s=statistics.mean(gaps[:n]),
        late_turns_overhead_s=statistics.mean(gaps[-n:]),
        requests=len(execs),
        arrivals_wall_s=wall,
        arrivals_model_s=model,
        arrivals_overhead_per_turn_s=(wall - model) / (len(execs) - 1),
        task_s=task_s,
    )
    if progress is not None:
        deadline = time.monotonic() + 2
        start = end = None
        while time.monotonic() < deadline:
            start = progress.phase_start(done.task_id, "executing")
            end = progress.phase_start(done.task_id, "evaluating")
            if start is not None and end is not None:
                break
            time.sleep(0.02)
        if start is not None and end is not None:
            model_all = sum(h.handling_s for h in execs)
            run.phase_wall_s = end - start
            run.phase_model_s = model_all
            run.phase_overhead_per_turn_s = (end - start - model_all) / len(execs)
            run.phase_setup_s = execs[0].arrived - start
            run.phase_teardown_s = end - execs[-1].answered
    return run


@dataclass
class TurnParts:
    """What one turn does besides the model, timed in this process."""

    litellm_before_s: float
    """From calling complete() to the request's arrival at the server (median)."""
    litellm_after_s: float
    """From the end of the answer to complete() returning (median)."""
    read_file_s: float
    """One Toolbox.call("read_file") (median)."""
    litellm_import_s: float
    """``import shoal.llm.warm`` (what the actor forkserver preloads)."""
    first_call_before_request_s: float
    """The first complete() after the forkserver's preload, to its request's arrival (what
    a new actor pays)."""
    first_call_imports: dict[str, int]
    """Modules that first call imported, per top-level package (the five biggest)."""


def turn_parts(repo: Path, base_url: str, hits: HitLog, turns: int) -> TurnParts:
    """complete() against the scripted server with the executor's tools, as a tool loop does."""
    from shoal.llm.client import ModelConfig, complete
    from shoal.tools import Permissions, Toolbox, Workspace

    outputs = Path(tempfile.mkdtemp(prefix="sbout", dir="/tmp"))
    try:
        toolbox = Toolbox(Workspace([repo], outputs), Permissions(mode="accept-edits"))
        tools = toolbox.schemas()
        config = ModelConfig(model="openai/scripted-evaluator", base_url=base_url)
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": "You are the executor of shoal. " * 20},
            {"role": "user", "content": f"Task: {TASK}"},
        ]
        before: list[float] = []
        after: list[float] = []
        reads: list[float] = []
        # What the orchestrator's forkserver imports before it forks any actor.
        t0 = time.monotonic()
        importlib.import_module("shoal.llm.warm")
        litellm_import = time.monotonic() - t0
        loaded = set(sys.modules)
        t0 = time.monotonic()
        complete(config, messages, tools)
        first_call = hits.wait_since(t0, "scripted-evaluator").arrived - t0
        packages = Counter(m.split(".")[0] for m in set(sys.modules) - loaded)
        for i in range(turns):
            t0 = time.monotonic()
            completion = complete(config, messages, tools)
            t1 = time.monotonic()
            hit = hits.wait_since(t0, "scripted-evaluator")
            before.append(hit.arrived - t0)
            after.append(t1 - hit.answered)
            t2 = time.monotonic()
            result = toolbox.call("read_file", {"path": "notes.txt"})
            reads.append(time.monotonic() - t2)
            messages.append(completion.to_message())
            messages.append({"role": "tool", "tool_call_id": f"call_{i}", "content": result.output})
        return TurnParts(
            litellm_before_s=statistics.median(before),
            litellm_after_s=statistics.median(after),
            read_file_s=statistics.median(reads),
            litellm_import_s=litellm_import,
            first_call_before_request_s=first_call,
            first_call_imports=dict(packages.most_common(5)),
        )
    finally:
        shutil.rmtree(outputs, ignore_errors=True)


# --- 2. shoal run -> first model request ------------------------------------------------


def shoal_command() -> list[str]:
    """The installed entry point next to this interpreter (PATH may start with a pyenv shim)."""
    direct = Path(sys.executable).parent / "shoal"
    if direct.exists():
        return [str(direct)]
    found = shutil.which("shoal")
    return [found] if found else [sys.executable, "-m", "shoal"]


@dataclass
class CliRun:
    first_request_s: float
    total_s: float
    exit_code: int
    steps: list[tuple[str, float, float]] = field(default_factory=list)
    """For probe runs: (step, start, end), seconds from the launch."""


def run_cli(
    argv: list[str], repo: Path, hits: HitLog, env: dict[str, str], probe_out: Path | None = None
) -> CliRun:
    """Launch ``shoal run`` and wait for it; the time to the planner's first request."""
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [*argv, "run", TASK, "-C", str(repo)],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = proc.communicate(timeout=CLI_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise BenchError(f"`shoal run` did not finish in {CLI_TIMEOUT_S:g}s") from None
    total = time.monotonic() - t0
    planner = hits.since(t0, "scripted-planner")
    if proc.returncode != 0 or not planner:
        raise BenchError(
            f"`shoal run` exited {proc.returncode} after {len(planner)} planner requests:\n"
            f"{out[-1000:]}{err[-2000:]}"
        )
    run = CliRun(first_request_s=planner[0].arrived - t0, total_s=total, exit_code=proc.returncode)
    if probe_out is not None:
        data = json.loads(probe_out.read_text())
        steps: list[tuple[str, float, float]] = []
        previous = t0
        for name, t in data["marks"]:
            steps.append((name, previous - t0, t - t0))
            previous = t
        seen: dict[str, int] = {}
        for name, a, b in data["spans"]:
            seen[name] = seen.get(name, 0) + 1
            label = name if seen[name] == 1 else f"{name} (#{seen[name]})"
            steps.append((label, a - t0, b - t0))
        steps.append(("(first model request arrives)", run.first_request_s, run.first_request_s))
        run.steps = sorted(steps, key=lambda s: (s[1], -s[2]))
    return run


def summarize(run: CliRun) -> list[tuple[str, float]]:
    """A probe run's launch-to-first-request time cut into consecutive parts."""
    submit = next(((a, b) for name, a, b in run.steps if name.startswith("request task.")), None)
    imports = [b for name, _, b in run.steps if name.startswith(("interpreter", "import "))]
    if submit is None or not imports:
        return []
    return [
        ("interpreter start and imports", max(imports)),
        ("CLI steps before task.submit", submit[0] - max(imports)),
        ("task.submit round trip (until task.submit.result)", submit[1] - submit[0]),
        ("task.submit.result -> the planner's first request", run.first_request_s - submit[1]),
    ]


def probe_argv(workdir: Path) -> tuple[list[str], Path]:
    """A ``python -c PROBE`` command line standing in for ``shoal``, and its output file."""
    out = workdir / "probe.json"
    return [sys.executable, "-c", PROBE], out


def actor_timeline(home: Home, t_launch_wall: float) -> list[tuple[str, float]]:
    """What the cold orchestrator's actors did, as seconds from the launch (wall clock).

    ``started`` (DuckDB ``actor_events``) is when the forkserver handed back the
    actor's pid; ``ready`` (the actor's log, millisecond stamps) is when its runtime
    runs and can take messages.
    """
    import duckdb

    con = duckdb.connect(str(home.root / "shoal.duckdb"), read_only=True)
    try:
        rows = con.execute(
            "SELECT epoch_ms(happened_at) / 1000.0, name, event FROM actor_events "
            "ORDER BY happened_at"
        ).fetchall()
    finally:
        con.close()
    events = [(f"actor {name} {event}", float(ts) - t_launch_wall) for ts, name, event in rows]
    for log in sorted((home.logs / "actors").glob("*.log")):
        for line in log.read_text(errors="replace").splitlines():
            if " ready, instance " in line:
                stamp, _, millis = line[:23].partition(",")
                ts = time.mktime(time.strptime(stamp, "%Y-%m-%d %H:%M:%S")) + int(millis) / 1000
                events.append((f"actor {log.stem} ready (its log)", ts - t_launch_wall))
    return sorted(events, key=lambda e: e[1])


# --- main -------------------------------------------------------------------------------


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f} ms"


def _s(seconds: float) -> str:
    return f"{seconds:.3f} s"


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def _temp_dir(made: list[Path]) -> Path:
    """A new short temporary directory, noted in ``made`` for removal."""
    path = Path(tempfile.mkdtemp(prefix="sb", dir="/tmp"))
    made.append(path)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--turns", type=int, default=20, help="executor requests per task")
    parser.add_argument("--runs", type=int, default=3, help="measured loop tasks (after 1 warm-up)")
    parser.add_argument("--warm", type=int, default=5, help="warm `shoal run` launches")
    parser.add_argument("--cold", type=int, default=2, help="cold `shoal run` launches")
    parser.add_argument("--probes", type=int, default=3, help="instrumented warm launches")
    args = parser.parse_args(argv)
    if args.turns < 2 or args.runs < 1 or args.warm < 1 or args.cold < 0 or args.probes < 0:
        parser.error("--turns must be >= 2, --runs and --warm >= 1, --cold and --probes >= 0")

    def say(line: str) -> None:
        if not args.json:
            print(line, file=sys.stderr, flush=True)

    # Short: ipc socket paths are limited to 107 bytes. Set before shoal is imported.
    home_dir = Path(tempfile.mkdtemp(prefix="sb", dir="/tmp"))
    os.environ["SHOAL_HOME"] = str(home_dir)
    # A safety net: an orchestrator this script somehow leaves behind exits on its own.
    os.environ["SHOAL_IDLE_TIMEOUT"] = "600"
    os.environ.pop("SHOAL_MODEL", None)

    from shoal import daemon
    from shoal.paths import Home

    home = Home.resolve()
    temps: list[Path] = [home_dir]
    homes: list[Home] = [home]
    server: ScriptedModelServer | None = None
    tasks = 1 + args.runs + args.warm + args.probes + args.cold + 1
    hits = HitLog()
    try:
        work = _temp_dir(temps)
        repo = make_repo(work)
        server = start_server(loop_script(tasks, args.turns), hits)
        for role in ROLES:
            os.environ[f"SHOAL_{role.upper()}_MODEL"] = f"openai/scripted-{role}"
        os.environ["SHOAL_BASE_URL"] = server.base_url
        env = dict(os.environ)
        command = shoal_command()

        say(f"1. loop: warm-up task ({args.turns} executor turns; starts the orchestrator) ...")
        warmup = run_loop_task(home, repo, hits, args.turns, None)
        loop_runs: list[LoopRun] = []
        with ProgressLog(home) as progress:
            for i in range(args.runs):
                say(f"   measured task {i + 1}/{args.runs} ...")
                loop_runs.append(run_loop_task(home, repo, hits, args.turns, progress))

        say(f"2. warm `{' '.join(command)} run`: {args.warm} launches ...")
        warm = [run_cli(command, repo, hits, env) for _ in range(args.warm)]
        probes = []
        for i in range(args.probes):
            say(f"   instrumented warm launch {i + 1}/{args.probes} ...")
            probe, out = probe_argv(work)
            probes.append(
                run_cli(probe, repo, hits, {**env, "SHOAL_BENCH_PROBE_OUT": str(out)}, out)
            )

        say("   stopping the orchestrator (cold runs start their own) ...")
        daemon.stop(home)
        cold: list[CliRun] = []
        cold_probe: CliRun | None = None
        actors: list[tuple[str, float]] = []
        for i in range(args.cold + (1 if args.cold else 0)):
            instrumented = i == args.cold
            say(
                "   instrumented cold launch ..."
                if instrumented
                else f"   cold launch {i + 1}/{args.cold} (fresh SHOAL_HOME) ..."
            )
            cold_dir = _temp_dir(temps)
            cold_home = Home.resolve(cold_dir)
            homes.append(cold_home)
            cold_env = {**env, "SHOAL_HOME": str(cold_dir)}
            wall_at_launch = time.time()
            if instrumented:
                probe, out = probe_argv(work)
                cold_env["SHOAL_BENCH_PROBE_OUT"] = str(out)
                cold_probe = run_cli(probe, repo, hits, cold_env, out)
            else:
                cold.append(run_cli(command, repo, hits, cold_env))
            daemon.stop(cold_home)
            if instrumented:
                with contextlib.suppress(Exception):
                    actors = actor_timeline(cold_home, wall_at_launch)

        say("3. one turn's parts, in this process (litellm client, read_file) ...")
        parts = turn_parts(repo, server.base_url, hits, args.turns)
    finally:
        for h in homes:
            with contextlib.suppress(Exception):
                daemon.stop(h)
        if server is not None:
            server.close()
        for path in temps:
            shutil.rmtree(path, ignore_errors=True)

    warm_first = statistics.median(r.first_request_s for r in warm)
    cold_first = statistics.median(r.first_request_s for r in cold) if cold else None
    per_turn = statistics.median(r.arrivals_overhead_per_turn_s for r in loop_runs)
    figures: dict[str, Any] = {
        "turns": args.turns,
        "loop_runs": [asdict(r) for r in loop_runs],
        "warmup_task_s": warmup.task_s,
        "loop_overhead_per_turn_s": per_turn,
        "loop_wall_s": statistics.median(r.arrivals_wall_s for r in loop_runs),
        "loop_model_s": statistics.median(r.arrivals_model_s for r in loop_runs),
        "early_turns_overhead_s": statistics.median(r.early_turns_overhead_s for r in loop_runs),
        "late_turns_overhead_s": statistics.median(r.late_turns_overhead_s for r in loop_runs),
        "phase_overhead_per_turn_s": _median([r.phase_overhead_per_turn_s for r in loop_runs]),
        "phase_wall_s": _median([r.phase_wall_s for r in loop_runs]),
        "phase_setup_s": _median([r.phase_setup_s for r in loop_runs]),
        "phase_teardown_s": _median([r.phase_teardown_s for r in loop_runs]),
        "turn_parts": asdict(parts),
        "shoal_command": command,
        "warm_first_request_s": warm_first,
        "warm_first_request_runs_s": [r.first_request_s for r in warm],
        "warm_task_total_runs_s": [r.total_s for r in warm],
        "cold_first_request_s": cold_first,
        "cold_first_request_runs_s": [r.first_request_s for r in cold],
        "warm_parts": _median_parts([summarize(p) for p in probes]),
        "cold_parts": _split_cold(summarize(cold_probe), actors) if cold_probe else [],
        "warm_steps": _median_steps(probes),
        "cold_steps": cold_probe.steps if cold_probe else [],
        "cold_probe_first_request_s": cold_probe.first_request_s if cold_probe else None,
        "cold_actor_events": actors,
        "targets": {"warm_first_request_s_max": TARGET_WARM_FIRST_REQUEST_S},
        "warm_target_met": warm_first <= TARGET_WARM_FIRST_REQUEST_S,
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
    }
    if args.json:
        print(json.dumps(figures))
        return 0
    _print_table(figures, args)
    return 0


def _median_steps(probes: list[CliRun]) -> list[tuple[str, float, float]]:
    """Per step name, the median start and end over the probe runs (in the first run's order)."""
    if not probes:
        return []
    merged = []
    for name, _, _ in probes[0].steps:
        rows = [s for p in probes for s in p.steps if s[0] == name]
        merged.append(
            (name, statistics.median(s[1] for s in rows), statistics.median(s[2] for s in rows))
        )
    return merged


def _split_cold(
    parts: list[tuple[str, float]], actors: list[tuple[str, float]]
) -> list[tuple[str, float]]:
    """Cut the cold run's last part where the planner actor became ready."""
    ready = next((t for name, t in actors if name.startswith("actor planner-1 ready")), None)
    if len(parts) != 4 or ready is None:
        return parts
    accepted = sum(t for _, t in parts[:3])
    last = parts[3][1]
    return [
        *parts,
        (
            "  of which task.submit.result -> planner actor ready (forkserver, fork)",
            ready - accepted,
        ),
        (
            "  of which planner ready -> its first request (first litellm call)",
            accepted + last - ready,
        ),
    ]


def _median_parts(runs: list[list[tuple[str, float]]]) -> list[tuple[str, float]]:
    runs = [r for r in runs if r]
    if not runs:
        return []
    return [(name, statistics.median(r[i][1] for r in runs)) for i, (name, _) in enumerate(runs[0])]


def _depth(step: tuple[str, float, float], steps: list[tuple[str, float, float]]) -> int:
    """How many other steps enclose this one (a request inside daemon.status, ...)."""
    _, a, b = step
    return sum(1 for s in steps if s != step and s[1] <= a and b <= s[2] and s[2] - s[1] > b - a)


def _print_table(f: dict[str, Any], args: argparse.Namespace) -> None:
    turns = f["turns"]
    p = f["turn_parts"]
    verdict = "ok" if f["warm_target_met"] else "MISSED"
    lines = [
        f"shoal loop benchmark ({f['cpus']} CPUs, python {f['python']}, scripted model, 0 ms)",
        f"1. per-turn overhead, {turns}-turn task, warm orchestrator, median of {args.runs}",
        f"   executor requests, first -> last arrival   {_s(f['loop_wall_s'])}  "
        f"model {_ms(f['loop_model_s'])}",
        f"   loop overhead per turn                      {_ms(f['loop_overhead_per_turn_s'])}  "
        f"(wall - model) / {turns - 1} turns",
        f"   executing phase (task.progress events)      "
        f"{_s(f['phase_wall_s']) if f['phase_wall_s'] is not None else '-'}  "
        f"setup {_ms(f['phase_setup_s'])}, teardown {_ms(f['phase_teardown_s'])}",
        f"   phase overhead per turn                     {_ms(f['phase_overhead_per_turn_s'])}  "
        f"(wall - model) / {turns} requests",
        "   per run (loop per turn): "
        + ", ".join(_ms(r["arrivals_overhead_per_turn_s"]) for r in f["loop_runs"])
        + f"; first 5 turns {_ms(f['early_turns_overhead_s'])}, "
        f"last 5 {_ms(f['late_turns_overhead_s'])}",
        f"   in-process parts of a turn: litellm before request {_ms(p['litellm_before_s'])}, "
        f"after answer {_ms(p['litellm_after_s'])}, read_file {_ms(p['read_file_s'])}",
        "   the forkserver's preload (shoal.llm.warm) in this process: "
        f"{_s(p['litellm_import_s'])}; the first complete()",
        f"     after it reaches the server in {_s(p['first_call_before_request_s'])} "
        "(every new actor pays this once);",
        "     it imported "
        + ", ".join(f"{n} {pkg}" for pkg, n in p["first_call_imports"].items())
        + " modules",
        f"2. `shoal run` -> first model request ({' '.join(f['shoal_command'])})",
        f"   warm (median of {args.warm})                          "
        f"{_s(f['warm_first_request_s'])}  target <= {TARGET_WARM_FIRST_REQUEST_S:g} s {verdict}",
        "   warm runs: " + ", ".join(_s(t) for t in f["warm_first_request_runs_s"]),
    ]
    if f["cold_first_request_s"] is not None:
        lines.append(
            f"   cold (median of {args.cold}, fresh SHOAL_HOME)       "
            f"{_s(f['cold_first_request_s'])}  runs: "
            + ", ".join(_s(t) for t in f["cold_first_request_runs_s"])
        )
    for title, parts, steps, extra in (
        ("warm", f["warm_parts"], f["warm_steps"], []),
        ("cold", f["cold_parts"], f["cold_steps"], f["cold_actor_events"]),
    ):
        if not steps:
            continue
        runs = f"median of {args.probes}" if title == "warm" else "1 run"
        lines.append(f"   where the {title} time goes (instrumented entry point, {runs}):")
        lines.extend(f"     {_ms(t):>10}  {name}" for name, t in parts)
        lines.append("     steps: start .. end (duration), seconds from launch")
        rows = [
            (
                a,
                0,
                f"{a:6.3f} .. {b:6.3f} ({(b - a) * 1000:6.1f} ms) "
                f"{'  ' * _depth((n, a, b), steps)}{n}",
            )
            for n, a, b in steps
        ]
        rows += [(t, 1, f"{t:6.3f}                      {n}") for n, t in extra]
        lines.extend(f"     {text}" for _, _, text in sorted(rows, key=lambda r: (r[0], r[1])))
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
