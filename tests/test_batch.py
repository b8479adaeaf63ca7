"""Batch refactors end to end through the CLI: scripted model, real git, real DuckDB rows.

The Ray tests share one private local Ray (num_cpus=2) started by shoal's own
code in a helper process (module fixture): each batch joins it with
``--ray-address`` instead of paying Ray's start-up again.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shoal.batch.units import unit_id
from shoal.client import query as read
from shoal.llm.script import ModelScript, Script
from shoal.llm.scripted import ScriptedModelServer
from shoal.paths import Home
from shoal.settings import OrchestratorSettings
from shoal.store.queries import QueryError
from tests.conftest import REPO, SESSION_PREFIX, shoal, wait_for

CHECK = """import importlib, os, sys
name = os.environ["SHOAL_UNIT"].removesuffix(".py")
sys.path.insert(0, ".")
assert importlib.import_module(name).value() == 1, name
"""
INSTRUCTION = "make value() return 1 instead of 0"


def make_repo(root: Path, n: int) -> tuple[Path, list[str]]:
    repo = root / "repo"
    repo.mkdir(parents=True)
    names = [f"m{i:02d}.py" for i in range(n)]
    for name in names:
        (repo / name).write_text("def value():\n    return 0\n")
    (repo / "check.py").write_text(CHECK)
    for cmd in (
        ["init", "-q", "-b", "main"],
        ["add", "-A"],
        ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "start"],
    ):
        subprocess.run(["git", "-C", str(repo), *cmd], check=True)
    return repo, names


def edit(
    name: str, delay: float = 0.0, to: str = "return 1", also: tuple[str, str, str] | None = None
) -> dict[str, Any]:
    """One reply doing the whole unit (read, edit, finish): a retried unit gets it again.

    ``also`` is one more ``(path, old, new)`` edit, outside the unit's own file.
    """
    edits = [(name, "return 0", to), *([also] if also else [])]
    calls = [
        *({"name": "read_file", "arguments": {"path": p}} for p, _, _ in edits),
        *(
            {"name": "edit_file", "arguments": {"path": p, "old_string": o, "new_string": n}}
            for p, o, n in edits
        ),
        {"name": "finish", "arguments": {"summary": f"{name}: {to}"}},
    ]
    return {"tool_calls": calls, "delay": delay}


def script(
    names: list[str],
    delays: dict[str, float] | None = None,
    judge: bool = False,
    slow_once: str | None = None,
) -> Script:
    """Per-unit routes; ``slow_once``'s first answer waits 2 s (a retry is answered at once)."""
    delays = delays or {}
    routes = {f"unit: {n})": [edit(n, delays.get(n, 0.0))] for n in names}
    if slow_once is not None:
        routes[f"unit: {slow_once})"] = [edit(slow_once, 2.0), edit(slow_once)]
    models: dict[str, Any] = {
        "scripted-executor": {
            "routes": routes,
            "replies": ["no route matched"],
        }
    }
    if judge:
        verdict = {"score": 0.9, "dimensions": {"correctness": 0.9}, "findings": []}
        models["scripted-evaluator"] = [
            {"tool_calls": [{"name": "submit_evaluation", "arguments": verdict}]}
        ]
    return Script.model_validate({"models": models})


def env_for(server: ScriptedModelServer, judge: bool = False) -> dict[str, str]:
    env = {
        "SHOAL_EXECUTOR_MODEL": "openai/scripted-executor",
        "SHOAL_BASE_URL": server.base_url,
        # The default preload: litellm and what its first call imports, once per pool.
        "SHOAL_PRELOAD": ",".join(OrchestratorSettings.model_fields["preload"].default_factory()),
    }
    if judge:
        env["SHOAL_EVALUATOR_MODEL"] = "openai/scripted-evaluator"
    return env


def start_local_batch(repo: Path, server: ScriptedModelServer) -> subprocess.Popen[str]:
    """``shoal batch`` over ``repo``'s m*.py on three local workers, left running."""
    return subprocess.Popen(
        [sys.executable, "-m", "shoal", "batch", INSTRUCTION, "--files", "m*.py", "-C",
         str(repo), "--backend", "local", "--workers", "3", "--json"],
        env={**os.environ, **env_for(server)}, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def units_of(home: Home, batch_id: str) -> dict[str, dict[str, Any]]:
    reply = read(home, "batch.units", {"batch_id": batch_id})
    return {r[1]: dict(zip(reply.columns, r, strict=True)) for r in reply.rows}


def branch_file(repo: Path, branch: str, name: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), "show", f"{branch}:{name}"], capture_output=True, text=True
    ).stdout


def executor_requests(server: ScriptedModelServer) -> Counter[str]:
    """Model requests per unit name (the unit is named in the first user message)."""
    counts: Counter[str] = Counter()
    for body in server.requests_for("scripted-executor"):
        first = next(m["content"] for m in body["messages"] if m["role"] == "user")
        counts[first.split("(unit: ", 1)[1].split(")", 1)[0]] += 1
    return counts


def status_of(batch_id: str) -> dict[str, Any]:
    status = shoal("batch", "status", batch_id, "--json", check=True)
    return json.loads(status.stdout)


def refs(repo: Path) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), "for-each-ref", "--format=%(refname) %(objectname)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


# --- on a shared private local Ray (num_cpus=2) ------------------------------------


@pytest.fixture(scope="module")
def ray_address() -> Iterator[str]:
    """A private local Ray started by shoal's own code; the module's batches join it."""
    import shutil

    from tests.conftest import processes_with_home

    root = tempfile.mkdtemp(prefix=SESSION_PREFIX)
    env = {
        **os.environ,
        "SHOAL_HOME": root,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "shoal.cluster.ray_runtime", "--home", root, "--num-cpus", "2"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        assert line.startswith("address "), f"local Ray did not start: {line!r}"
        yield line.split()[1]
    finally:
        if proc.stdin:
            proc.stdin.close()  # the helper stops Ray and exits
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        wait_for(lambda: not processes_with_home(root), timeout=20, what="Ray to stop")
        shutil.rmtree(root, ignore_errors=True)


def unit_workers(unit: str) -> list[int]:
    """Pids of the Ray workers running ``unit`` now (Ray titles a busy worker by its task)."""
    needle = f"shoal-unit-{unit_id(unit)}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if needle in Path(f"/proc/{entry}/cmdline").read_bytes():
                    found.append(int(entry))
            except OSError:
                continue
    return found


def batch_cmd(repo: Path, address: str, *extra: str) -> list[str]:
    return [
        "batch", INSTRUCTION, "--files", "m*.py", "-C", str(repo), "--backend", "ray",
        "--ray-address", address, "--verify", "python check.py", "--json", *extra,
    ]  # fmt: skip


@pytest.mark.timeout(240)
def test_a_ray_batch_over_20_files_edits_all_retries_a_killed_worker_and_records_every_unit(
    home: Home, tmp_path: Path, ray_address: str
) -> None:
    repo, names = make_repo(tmp_path, 20)
    slow = names[5]
    with ScriptedModelServer(script(names, slow_once=slow)) as server:
        proc = subprocess.Popen(
            [sys.executable, "-m", "shoal", *batch_cmd(repo, ray_address, "--workers", "2")],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            env={**os.environ, **env_for(server)},
        )
        # Kill the Ray worker process running one unit while its model call is pending.
        wait_for(lambda: executor_requests(server)[slow] >= 1, timeout=150, what="its model call")
        pids = unit_workers(slow)
        assert pids, "no Ray worker is running the slow unit"
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        stdout, stderr = proc.communicate(timeout=180)
        requests = executor_requests(server)
    assert proc.returncode == 0, stderr[-3000:]
    out = json.loads(stdout)
    assert out["backend"] == "ray" and out["status"] == "done"
    assert out["accepted"] == 20 and out["ran"] == 21
    assert requests == Counter({n: 2 if n == slow else 1 for n in names})
    branch = out["branches"][str(repo)]
    subprocess.run(["git", "-C", str(repo), "checkout", "-q", branch], check=True)
    for name in names:
        assert (repo / name).read_text() == "def value():\n    return 1\n"
        check = subprocess.run(
            [sys.executable, "check.py"], cwd=repo, env={**os.environ, "SHOAL_UNIT": name}
        )
        assert check.returncode == 0, name
    rows = units_of(home, out["batch_id"])
    assert set(rows) == set(names)
    by_name = {u["name"]: u for u in out["unit_results"]}
    for name, row in rows.items():
        assert row["status"] == "accepted" and row["verify_passed"] is True
        assert row["attempts"] == by_name[name]["attempts"] == (2 if name == slow else 1)
        assert json.loads(row["files_changed"]) == [name]
        assert row["tokens"] == by_name[name]["tokens"] > 0
        assert f"+++ b/{name}" in row["diff"] and "+    return 1" in row["diff"]
    batch = read(home, "batch.get", {"batch_id": out["batch_id"]})
    got = dict(zip(batch.columns, batch.rows[0], strict=True))
    assert got["status"] == "done" and got["units"] == 20 and got["backend"] == "ray"
    assert json.loads(got["applied"]) == {str(repo): branch}


@pytest.mark.timeout(240)
@pytest.mark.timeout(240)
def test_a_batch_on_its_own_private_ray_stops_it_after_ctrl_c_of_the_terminal(
    home: Home, tmp_path: Path
) -> None:
    from tests.conftest import processes_with_home

    def ray_processes() -> list[int]:
        marks = (b"raylet", b"gcs_server", b"shoal.cluster.ray_runtime")
        found = []
        for pid in processes_with_home(str(home.root)):
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if any(mark in cmdline for mark in marks):
                found.append(pid)
        return found

    repo, names = make_repo(tmp_path, 4)
    with ScriptedModelServer(script(names, delays=dict.fromkeys(names, 0.8))) as server:
        command = [
            *("batch", INSTRUCTION, "--files", "m*.py", "-C", str(repo)),
            *("--backend", "ray", "--workers", "1", "--dry-run", "--json"),
        ]
        # Its own session, like a terminal's foreground job: Ctrl-C reaches every process.
        proc = subprocess.Popen(
            [sys.executable, "-m", "shoal", *command],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            env={**os.environ, **env_for(server), "SHOAL_RAY_NUM_CPUS": "1"},
            start_new_session=True,
        )
        try:
            wait_for(
                lambda: server.requests_for("scripted-executor"),
                timeout=150,
                what="a unit at work on the private Ray",
            )
            assert ray_processes(), "no private Ray"
            os.killpg(proc.pid, signal.SIGINT)
            _, stderr = proc.communicate(timeout=90)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, stderr[-3000:]
    wait_for(lambda: not ray_processes(), timeout=60, what="the private Ray to stop")
    assert "KeyboardInterrupt" not in (home.logs / "ray.log").read_text()


def test_an_interrupted_batch_resumes_with_only_its_unfinished_units(
    home: Home, tmp_path: Path, ray_address: str
) -> None:
    repo, names = make_repo(tmp_path, 6)
    refs_before = refs(repo)
    delays = dict.fromkeys(names, 0.6)
    with ScriptedModelServer(script(names, delays=delays)) as server:
        proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "shoal"),
                *batch_cmd(repo, ray_address, "--workers", "2", "--dry-run"),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            env={**os.environ, **env_for(server)},
        )

        def finished() -> dict[str, dict[str, Any]] | None:
            try:
                recent = read(home, "batches.recent", {"limit": 1})
            except QueryError:  # the orchestrator is not up yet
                return None
            if not recent.rows:
                return None
            rows = units_of(home, recent.rows[0][0])
            done = {n: r for n, r in rows.items() if r["status"] != "pending"}
            return done if len(done) >= 2 else None

        wait_for(finished, timeout=150, interval=0.2, what="two units to finish")
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 130, stderr[-3000:]
        assert "shoal batch resume" in stderr
        # The units in flight stopped with the driver (Ray ends a gone driver's workers).
        wait_for(
            lambda: not any(unit_workers(n) for n in names), timeout=30, what="no unit running"
        )
        batch_id = read(home, "batches.recent", {"limit": 1}).rows[0][0]
        before = units_of(home, batch_id)
        done_before = {n for n, r in before.items() if r["status"] != "pending"}
        assert 2 <= len(done_before) < 6
        assert read(home, "batch.get", {"batch_id": batch_id}).rows[0][3] == "interrupted"
        asked_before = executor_requests(server)

        result = shoal(
            "batch", "resume", batch_id, "--ray-address", ray_address, "--backend", "ray",
            "--json", env=env_for(server), timeout=200,
        )  # fmt: skip
        asked_after = executor_requests(server)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout)
    assert out["status"] == "done" and out["accepted"] == 6
    assert out["ran"] == 6 - len(done_before)
    for name in done_before:  # finished units were not run again
        assert asked_after[name] == asked_before[name]
    for name in set(names) - done_before:
        assert asked_after[name] > asked_before[name]
    after = units_of(home, batch_id)
    assert all(r["status"] == "accepted" for r in after.values())
    for name in done_before:
        assert after[name]["finished_at"] == before[name]["finished_at"]
    # A dry run (as asked when it started): patch files only, no branch nor any other ref.
    assert out["branches"] == {} and status_of(batch_id)["applied"] == {}
    assert refs(repo) == refs_before
    patches = {p.name: p for p in Path(out["patches"]).iterdir()}
    assert set(patches) == {f"{n}.patch" for n in names}
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in patches.values())
    assert all("+    return 1" in p.read_text() for p in patches.values())


def test_units_by_directory_take_committed_files_only(tmp_path: Path) -> None:
    from shoal.batch.units import file_units

    repo, _ = make_repo(tmp_path, 2)
    (repo / "pkg").mkdir()
    (repo / "pkg" / "a.py").write_text("x = 1\n")
    (repo / "pkg" / "b.py").write_text("y = 2\n")
    subprocess.run(["git", "-C", str(repo), "add", "pkg"], check=True)
    subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "p"],
        check=True,
    )
    (repo / "pkg" / "untracked.py").write_text("z = 3\n")
    units = file_units(repo, "**/*.py", "dir")
    assert units == [
        ("(root)", ["check.py", "m00.py", "m01.py"]),
        ("pkg", ["pkg/a.py", "pkg/b.py"]),
    ]
    assert [name for name, _ in file_units(repo, "pkg/*.py", "file")] == ["pkg/a.py", "pkg/b.py"]


def test_local_pool_over_repositories_judges_verifies_and_commits_to_a_branch(
    home: Home, tmp_path: Path
) -> None:
    first, _ = make_repo(tmp_path / "one", 1)
    second, _ = make_repo(tmp_path / "two", 1)
    listing = tmp_path / "repos.txt"
    listing.write_text(
        f"# two repositories: a path (relative to this file) and a URL\none/repo\nfile://{second}\n"
    )
    units = (str(first), f"file://{second}")
    server_script = script([], judge=True)
    server_script.models["scripted-executor"] = ModelScript.model_validate(
        {"routes": {f"unit: {u})": [edit("m00.py")] for u in units}}
    )
    with ScriptedModelServer(server_script) as server:
        result = shoal(
            "batch", INSTRUCTION, "--repos", str(listing), "--backend", "local", "--workers", "2",
            "--verify", "SHOAL_UNIT=m00.py python check.py", "--json",
            env=env_for(server, judge=True), timeout=120,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        out = json.loads(result.stdout)
        assert out["status"] == "done" and out["accepted"] == 2 and out["backend"] == "local"
        assert {u["name"] for u in out["unit_results"]} == set(units)
        assert all(u["score"] == pytest.approx(0.9) for u in out["unit_results"])
        assert len(server.requests_for("scripted-evaluator")) == 2  # judged, each unit once
        # The path's accepted patch is committed on a branch; a URL's stays a patch file.
        assert out["branches"] == {str(first): f"shoal/batch-{out['batch_id']}"}
        assert out["left_out"] == [f"file://{second}"]
        assert "return 1" in branch_file(first, out["branches"][str(first)], "m00.py")
        for repo in (first, second):
            assert "return 0" in (repo / "m00.py").read_text()  # checkouts untouched
        patches = sorted(Path(out["patches"]).iterdir())
        assert len(patches) == 2 and all(p.stat().st_mode & 0o777 == 0o600 for p in patches)
        rows = units_of(home, out["batch_id"])
        assert set(rows) == set(units)
        for row in rows.values():
            assert row["status"] == "accepted" and row["verify_passed"] is True
            assert row["score"] == pytest.approx(0.9) and row["tokens"] > 0
        status = json.loads(shoal("batch", "status", out["batch_id"][:10], "--json").stdout)
        assert status["status"] == "done" and status["counts"] == {"accepted": 2}
        assert status["spec"]["unit"] == "repo" and status["spec"]["judge"] is True
        listed = [json.loads(line) for line in shoal("batch", "list", "--json").stdout.splitlines()]
        assert listed[0]["id"] == out["batch_id"] and listed[0]["units"] == 2


# --- on the local pool: what the README promises about outcomes ----------------------


def local_batch(
    repo: Path,
    server: ScriptedModelServer,
    *extra: str,
    env: dict[str, str] | None = None,
    judge: bool = False,
) -> subprocess.CompletedProcess[str]:
    return shoal(
        "batch", INSTRUCTION, "--files", "m*.py", "-C", str(repo), "--backend", "local",
        "--workers", "2", "--json", *extra,
        env={**env_for(server, judge), **(env or {})}, timeout=120,
    )  # fmt: skip


def test_no_judge_skips_the_judge_and_without_json_a_table_and_progress_are_shown(
    home: Home, tmp_path: Path
) -> None:
    repo, names = make_repo(tmp_path, 2)
    with ScriptedModelServer(script(names, judge=True)) as server:
        result = shoal(
            "batch", INSTRUCTION, "--files", "m*.py", "-C", str(repo), "--backend", "local",
            "--workers", "2", "--no-judge",
            env=env_for(server, judge=True), timeout=120,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert not server.requests_for("scripted-evaluator")  # configured, but not asked
    header = next(line for line in result.stdout.splitlines() if line.startswith("unit"))
    assert header.split()[:5] == ["unit", "status", "score", "verify", "tries"]
    lines = result.stdout.splitlines()
    for name in names:
        assert any(line.startswith(name) and "accepted" in line for line in lines), name
    assert "2 accepted, 0 rejected, 0 failed" in result.stdout
    assert "batch ✓2" in result.stderr and "2/2" in result.stderr  # the progress bar's last state


# A unit whose verify kills its own worker (its parent) dies every time it runs; the
# clone's parent directory is noted so the test can remove what the dead worker left.
KILLER_VERIFY = (
    'if [ "$SHOAL_UNIT" = m02.py ]; then dirname "$PWD" >> "$LEFT_BEHIND"; kill -9 $PPID; '
    "exit 1; fi; python check.py"
)


def verdict(score: float) -> dict[str, Any]:
    judged = {"score": score, "dimensions": {"correctness": score}, "findings": []}
    return {"tool_calls": [{"name": "submit_evaluation", "arguments": judged}]}


def test_rejected_units_and_a_lost_one_are_recorded_the_rest_applied_and_exit_is_1(
    home: Home, tmp_path: Path
) -> None:
    import shutil

    repo, names = make_repo(tmp_path, 4)
    left_behind = tmp_path / "left-behind"
    routes = {f"unit: {n})": [edit(n)] for n in names}
    routes["unit: m01.py)"] = [edit("m01.py", to="return 2")]  # check.py fails on it
    model = Script.model_validate(
        {
            "models": {
                "scripted-executor": {"routes": routes},
                # The judge scores m03 below the quality bar, every other unit above it.
                "scripted-evaluator": {
                    "routes": {"unit: m03.py)": [verdict(0.3)]},
                    "replies": [verdict(0.9)],
                },
            }
        }
    )
    try:
        with ScriptedModelServer(model) as server:
            result = local_batch(
                repo, server, "--verify", KILLER_VERIFY, "--retries", "1",
                env={"LEFT_BEHIND": str(left_behind)}, judge=True,
            )  # fmt: skip
            requests = executor_requests(server)
    finally:
        for scratch in set(left_behind.read_text().split()) if left_behind.exists() else ():
            assert Path(scratch).name.startswith("shoal-unit-")
            shutil.rmtree(scratch, ignore_errors=True)
    assert result.returncode == 1, result.stderr[-3000:]
    out = json.loads(result.stdout)
    assert out["status"] == "done"
    assert (out["accepted"], out["rejected"], out["lost"]) == (1, 2, 1)
    # The lost unit ran once more than --retries 1 allows again; nothing else was re-run.
    assert requests == Counter({"m00.py": 1, "m01.py": 1, "m02.py": 2, "m03.py": 1})
    units = {u["name"]: u for u in status_of(out["batch_id"])["unit_results"]}
    accepted = units["m00.py"]
    assert accepted["status"] == "accepted" and accepted["verify_passed"] is True
    assert accepted["score"] == pytest.approx(0.9)
    failed_verify = units["m01.py"]
    assert failed_verify["status"] == "rejected" and failed_verify["verify_passed"] is False
    assert failed_verify["attempts"] == 1 and failed_verify["files_changed"] == ["m01.py"]
    assert failed_verify["score"] is None  # not judged after its verify failed
    judged_low = units["m03.py"]
    assert judged_low["status"] == "rejected" and judged_low["verify_passed"] is True
    assert judged_low["score"] == pytest.approx(0.3) and judged_low["attempts"] == 1
    lost = units["m02.py"]
    assert lost["status"] == "lost" and lost["attempts"] == 2
    assert "worker died" in lost["error"]
    branch = out["branches"][str(repo)]
    assert "return 1" in branch_file(repo, branch, "m00.py")
    for name in ("m01.py", "m02.py", "m03.py"):  # no patch but the accepted one is on it
        assert "return 0" in branch_file(repo, branch, name)
    patches = Path(out["patches"])
    assert "return 2" in (patches / "m01.py.patch").read_text()
    assert "return 1" in (patches / "m03.py.patch").read_text()


def test_overlapping_units_the_later_patch_is_a_conflict_kept_as_a_patch_file(
    home: Home, tmp_path: Path
) -> None:
    repo, names = make_repo(tmp_path, 2)
    (repo / "owner.txt").write_text("owner = nobody\n")
    subprocess.run(["git", "-C", str(repo), "add", "owner.txt"], check=True)
    subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "o"],
        check=True,
    )
    # Both units also change the same line of owner.txt: each is fine on its own.
    routes = {
        f"unit: {n})": [edit(n, also=("owner.txt", "owner = nobody", f"owner = {n}"))]
        for n in names
    }
    model = Script.model_validate({"models": {"scripted-executor": {"routes": routes}}})
    with ScriptedModelServer(model) as server:
        result = local_batch(repo, server, "--verify", "python check.py")
    assert result.returncode == 1, result.stderr[-3000:]
    out = json.loads(result.stdout)
    assert (out["accepted"], out["conflict"]) == (1, 1)
    assert out["left_out"] == ["m01.py"]
    units = {u["name"]: u for u in status_of(out["batch_id"])["unit_results"]}
    assert units["m00.py"]["status"] == "accepted"
    conflict = units["m01.py"]
    assert conflict["status"] == "conflict" and conflict["verify_passed"] is True
    assert "owner.txt" in conflict["error"] and "m01.py.patch" in conflict["error"]
    branch = out["branches"][str(repo)]
    assert branch_file(repo, branch, "owner.txt") == "owner = m00.py\n"
    assert "return 1" in branch_file(repo, branch, "m00.py")
    assert "return 0" in branch_file(repo, branch, "m01.py")
    kept = (Path(out["patches"]) / "m01.py.patch").read_text()
    assert "+owner = m01.py" in kept and "+    return 1" in kept
    # The kept patch is whole: it applies to the batch's base commit.
    check = subprocess.run(["git", "-C", str(repo), "apply", "--check", "-"], input=kept, text=True)
    assert check.returncode == 0


def test_a_branch_that_cannot_be_written_makes_its_units_conflicts_not_losses(
    tmp_path: Path,
) -> None:
    from shoal.batch.driver import BatchSpec, Outcome, apply_accepted
    from shoal.messages.batch import BatchUnitRow
    from shoal.messages.tasks import ModelChoice

    repo, _ = make_repo(tmp_path, 1)
    # A branch named "shoal" leaves no room for refs/heads/shoal/batch-...
    subprocess.run(["git", "-C", str(repo), "branch", "shoal"], check=True)
    base = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    (repo / "m00.py").write_text("def value():\n    return 1\n")
    diff = subprocess.run(
        ["git", "-C", str(repo), "diff", "--binary"], capture_output=True, text=True, check=True
    ).stdout
    subprocess.run(["git", "-C", str(repo), "checkout", "-q", "--", "m00.py"], check=True)
    spec = BatchSpec(
        instruction=INSTRUCTION,
        models={"executor": ModelChoice(model="openai/x")},
        bases={str(repo): base},
    )
    row = BatchUnitRow(unit_id=unit_id("m00.py"), name="m00.py", source=str(repo))
    outcome = Outcome(row, status="accepted", attempts=1, diff=diff)
    branches, unapplied = apply_accepted("B1234", spec, [outcome], tmp_path / "patches")
    assert branches == {} and unapplied == [outcome]
    assert outcome.status == "conflict" and "refs/heads/shoal" in (outcome.error or "")
    assert "shoal/batch-B1234" not in refs(repo)


HOOK = '#!/bin/sh\necho "$0" >> "{marker}"\nexit 1\n'


def test_git_dir_in_the_environment_and_repository_hooks_cannot_redirect_or_stop_a_batch(
    home: Home, tmp_path: Path
) -> None:
    repo, names = make_repo(tmp_path / "work", 2)
    decoy, _ = make_repo(tmp_path / "decoy", 1)
    marker = tmp_path / "hooks-ran"
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    for hook_dir in (hooks, repo / ".git" / "hooks"):
        for name in ("pre-commit", "post-commit", "post-checkout", "reference-transaction"):
            (hook_dir / name).write_text(HOOK.format(marker=marker))
            (hook_dir / name).chmod(0o755)
    # A global config whose hooksPath a clone of the repository would pick up, too.
    (tmp_path / "gitconfig").write_text(f"[core]\n\thooksPath = {hooks}\n")
    decoy_refs = refs(decoy)
    hostile = {
        "GIT_DIR": str(decoy / ".git"),
        "GIT_WORK_TREE": str(decoy),
        "GIT_INDEX_FILE": str(decoy / ".git" / "index"),
        "GIT_CONFIG_GLOBAL": str(tmp_path / "gitconfig"),
    }
    with ScriptedModelServer(script(names)) as server:
        result = local_batch(repo, server, "--verify", "python check.py", env=hostile)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout)
    assert out["accepted"] == 2, out["unit_results"]
    branch = out["branches"][str(repo)]
    for name in names:
        assert "return 1" in branch_file(repo, branch, name)
    assert not marker.exists(), marker.read_text()
    assert refs(decoy) == decoy_refs  # the repository GIT_DIR named was not touched
    assert "return 0" in (decoy / "m00.py").read_text()


def test_a_unit_whose_tests_could_not_run_is_not_accepted_on_the_judge_alone(
    home: Home, tmp_path: Path
) -> None:
    repo, names = make_repo(tmp_path, 2)
    with ScriptedModelServer(script(names, judge=True)) as server:
        result = local_batch(repo, server, "--check", "no-such-runner -q", judge=True)
        assert len(server.requests_for("scripted-evaluator")) == 2  # judged 0.9 each
    assert result.returncode == 1, result.stderr
    out = json.loads(result.stdout)
    assert out["accepted"] == 0 and len(out["unit_results"]) == 2
    for unit in out["unit_results"]:
        assert unit["status"] == "rejected" and unit["score"] == pytest.approx(0.9)
        assert "unverified: the tests could not run" in unit["error"]
        assert "no-such-runner: not found" in unit["error"]
    both = local_batch(repo, server, "--check", "x", "--no-checks")
    assert both.returncode == 2 and "contradict" in both.stderr
