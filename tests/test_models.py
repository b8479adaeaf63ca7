"""Models with no configuration: picked from the keys present, listed, and typos refused."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from shoal import daemon
from shoal.llm.script import Script
from shoal.llm.scripted import ScriptedModelServer
from shoal.paths import Home
from shoal.providers import choice as providers
from shoal.submission import SubmitError, submission
from tests.conftest import places_holding, shoal
from tests.test_loop import call, make_repo, plan, verdict

MODEL_VARS = [
    name
    for name in os.environ
    if (name.startswith("SHOAL_") and name.endswith(("MODEL", "BASE_URL", "API_KEY")))
    or name.startswith(tuple(k for p in providers.PROVIDERS for k in (*p.keys, *p.base_env)))
]


@pytest.fixture(autouse=True)
def no_model_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test says exactly which keys and servers exist."""
    for name in MODEL_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("SHOAL_MODEL_CHECK", raising=False)


def openai_script() -> Script:
    return Script.model_validate(
        {
            "models": {
                # planner, executor, evaluator in turn: one strong model for the three
                "gpt-4o": [
                    plan(),
                    call("read_file", path="calc.py"),
                    call("edit_file", path="calc.py", old_string="a - b", new_string="a + b"),
                    call("finish", summary="add adds"),
                    verdict(0.95),
                ],
                "gpt-4o-mini": ["[]"],
            }
        }
    )


def test_only_an_openai_key_and_a_server_run_a_task_and_models_lists_them(
    home: Home, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path)
    key = f"sk-{os.urandom(12).hex()}"
    with ScriptedModelServer(openai_script()) as server:
        env = {"OPENAI_API_KEY": key, "OPENAI_BASE_URL": server.base_url}
        ran = shoal("run", "fix the add function", "-C", str(repo), "--json", env=env, timeout=120)
        listed = shoal("models", "--json", env=env, check=True)
        strong = len(server.requests_for("gpt-4o"))
        sent = server.api_keys
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout)["status"] == "accepted"
    line = next(x for x in ran.stderr.splitlines() if "no model set" in x)
    assert "openai/gpt-4o (planner, executor, evaluator)" in line
    assert "openai/gpt-4o-mini (learner and summaries)" in line
    assert "OPENAI_API_KEY is set" in line and server.base_url in line
    assert strong == 5 and key in sent  # plan, execution, judge: all on the picked model
    out = json.loads(listed.stdout)
    names = {m["model"]: m for m in out["models"]}
    assert {"openai/gpt-4o", "openai/gpt-4o-mini"} <= set(names)
    assert names["openai/gpt-4o"]["source"] == "server"
    assert out["servers"][0]["endpoint"] == server.base_url and out["servers"][0]["error"] is None
    assert out["configured"]["roles"]["executor"]["model"] == "openai/gpt-4o"
    assert out["configured"]["roles"]["small"]["source"] == "auto"
    # The key went to the server and nowhere else: not the records, logs, or model caches.
    assert shoal("orchestrator", "stop").returncode == 0
    assert places_holding(home, key) == []
    cached = [p for p in (home.root / "models").rglob("*") if p.is_file()]
    assert cached and not any(key.encode() in p.read_bytes() for p in cached)
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in cached)


def test_a_misspelt_model_is_refused_in_one_line_before_anything_starts(
    home: Home, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path)
    with ScriptedModelServer(openai_script()) as server:
        env = {"OPENAI_API_KEY": "sk-test", "OPENAI_BASE_URL": server.base_url}
        typo = shoal("run", "x", "-C", str(repo), env={**env, "SHOAL_MODEL": "openai/gtp-4o"})
        chats = len(server.requests)
    assert typo.returncode == 2
    assert typo.stderr.count("\n") == 1 and "Traceback" not in typo.stderr
    assert "unknown model openai/gtp-4o (SHOAL_MODEL)" in typo.stderr
    assert "did you mean openai/gpt-4o?" in typo.stderr
    assert chats == 0 and daemon.running_pid(home) is None and not home.database.exists()
    # Without a server, litellm's own list decides (read without importing litellm).
    flag = shoal("run", "x", "-C", str(repo), "-m", "anthropic/claude-sonet-4-5")
    assert flag.returncode == 2, flag.stderr
    assert "unknown model anthropic/claude-sonet-4-5 (-m)" in flag.stderr
    assert "did you mean anthropic/claude-sonnet-4-5?" in flag.stderr
    bare = shoal("run", "x", "-C", str(repo), env={"SHOAL_MODEL": "gtp-4o"})
    assert bare.returncode == 2 and "did you mean openai/gpt-4o?" in bare.stderr
    assert daemon.running_pid(home) is None
    # A name nothing on the list resembles (a model newer than the list) is tried, with a note.
    done = submission(home, "x", repo, {"model": "openai/qqzzx-preview"}, no_model="-")
    assert done.model_notes == [
        "shoal: unknown model openai/qqzzx-preview (-m): not in litellm's list of openai models; "
        "trying it anyway"
    ]
    with pytest.raises(SubmitError, match="did you mean openai/gpt-4o-mini"):
        submission(home, "x", repo, {"model": "openai/gpt-4o-minii"}, no_model="-")
    # The way out for a model newer than the list, and names nothing can check.
    assert providers.check(home, "openai/gpt-4o", None) is None
    assert providers.check(home, "azure/my-deployment", None) is None
    os.environ["SHOAL_MODEL_CHECK"] = "off"
    try:
        assert providers.check(home, "openai/gtp-4o", None) is None
    finally:
        del os.environ["SHOAL_MODEL_CHECK"]


def test_a_server_model_passes_from_the_cache_and_a_dead_server_is_not_a_reason(
    home: Home,
) -> None:
    with ScriptedModelServer(openai_script()) as server:
        base = server.base_url
        assert providers.check(home, "openai/gpt-4o", base) is None  # asked, and remembered
        unknown = providers.check(home, "openai/gpt-5o", base)
    assert unknown is not None and unknown.suggestions[0] == "openai/gpt-4o"
    # The server is gone: the remembered list still knows gpt-4o, and a name it does not
    # know is let through (nothing can tell), never refused on an old list alone.
    assert providers.check(home, "openai/gpt-4o", base) is None
    assert providers.check(home, "openai/gpt-5o", base) is None
    listed = json.loads(shoal("models", "--json", env={"SHOAL_BASE_URL": base}, check=True).stdout)
    assert {m["model"] for m in listed["models"]} >= {"openai/gpt-4o", "openai/gpt-4o-mini"}
    assert listed["servers"][0]["age_s"] >= 0 and listed["servers"][0]["error"] is not None
    text = shoal("models", "--refresh", env={"SHOAL_BASE_URL": base}, check=True).stdout
    assert "listed" in text and "ago" in text and "last ask failed" in text


def test_the_pick_follows_the_keys_present_and_says_why_when_there_is_none(
    home: Home, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path)
    shown = json.loads(
        shoal(
            "config", "show", "-C", str(repo), "--json", env={"ANTHROPIC_API_KEY": "sk-ant-x"}
        ).stdout
    )["settings"]
    assert shown["model"] == {"value": "anthropic/claude-sonnet-4-5", "source": "auto"}
    assert shown["small_model"] == {"value": "anthropic/claude-haiku-4-5", "source": "auto"}
    both = {"ANTHROPIC_API_KEY": "a", "GEMINI_API_KEY": "g"}
    settings = json.loads(shoal("config", "show", "-C", str(repo), "--json", env=both).stdout)
    assert settings["settings"]["model"]["value"].startswith("anthropic/")  # PROVIDERS order
    # A role set by hand means someone chose: the others are not filled behind their back.
    env = {**both, "SHOAL_EXECUTOR_MODEL": "gemini/x"}
    chosen = json.loads(shoal("config", "show", "-C", str(repo), "--json", env=env).stdout)
    assert chosen["settings"]["executor_model"] == {"value": "gemini/x", "source": "environment"}
    assert chosen["settings"]["model"]["value"] is None
    assert chosen["settings"]["small_model"]["value"] is None
    none = shoal("run", "x", "-C", str(repo))
    assert none.returncode == 2 and "no model configured" in none.stderr
    dead = shoal("run", "x", "-C", str(repo), env={"SHOAL_BASE_URL": "http://127.0.0.1:9/v1"})
    assert dead.returncode == 2
    assert "SHOAL_BASE_URL http://127.0.0.1:9/v1: its model list could not be read" in dead.stderr
    # An Ollama server (its OpenAI-compatible list at /v1/models) when OLLAMA_API_BASE names it.
    with ScriptedModelServer(openai_script()) as server:
        ollama = {"OLLAMA_API_BASE": server.base_url.removesuffix("/v1")}
        shown = json.loads(shoal("config", "show", "--json", env=ollama, cwd=repo).stdout)
        listed = json.loads(shoal("models", "--json", env=ollama, check=True).stdout)
    assert shown["settings"]["model"]["value"] == "ollama_chat/gpt-4o"
    assert shown["settings"]["small_model"]["value"] == "ollama_chat/gpt-4o-mini"
    assert "ollama_chat/gpt-4o" in {m["model"] for m in listed["models"]}
    unknown = shoal("models", "--provider", "nosuch")
    assert unknown.returncode == 2 and "no provider 'nosuch'" in unknown.stderr
    anthropic = shoal("models", "--provider", "anthropic", "--json", check=True).stdout
    assert "anthropic/claude-sonnet-4-5" in {m["model"] for m in json.loads(anthropic)["models"]}
    no_tty = shoal("run", "x", "-C", str(repo), "-m", "?")
    assert no_tty.returncode == 2 and "-m ? picks a model in a terminal" in no_tty.stderr


@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")
def test_dash_m_question_mark_picks_a_model_in_a_terminal(home: Home, tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    out = tmp_path / "result.json"
    script = openai_script()
    script.models["gpt-4o-mini"] = script.models["gpt-4o"]
    with ScriptedModelServer(script) as server:
        socket = f"shoal-test-{uuid.uuid4().hex[:8]}"
        tmux = ["tmux", "-L", socket]
        env = (
            f"SHOAL_HOME={home.root} PYTHONPATH={os.environ['PYTHONPATH']} "
            f"OPENAI_API_KEY=sk-test OPENAI_BASE_URL={server.base_url} SHOAL_PRELOAD="
        )
        command = (
            f"{env} {sys.executable} -m shoal run 'fix the add function' -C {repo} -m '?' --json "
            f"> {out}; sleep 30"
        )
        subprocess.run([*tmux, "new-session", "-d", "-x", "150", "-y", "40", command], check=True)
        try:
            screen = _wait_for_screen(tmux, "model (number")
            assert "1. openai/gpt-4o\n" in screen and "2. openai/gpt-4o-mini" in screen
            subprocess.run([*tmux, "send-keys", "mini", "Enter"], check=True)
            screen = _wait_for_screen(tmux, "model (number", count=2)  # the narrowed list
            assert "1. openai/gpt-4o-mini" in screen.rpartition("? mini")[2]
            subprocess.run([*tmux, "send-keys", "1", "Enter"], check=True)
            deadline = time.monotonic() + 90
            while not (out.exists() and out.read_text().strip()):
                assert time.monotonic() < deadline, _screen(tmux)
                time.sleep(0.3)
        finally:
            subprocess.run([*tmux, "kill-server"], capture_output=True)
        used = {r["model"] for r in server.requests}
    assert json.loads(out.read_text())["task_id"]
    assert used == {"gpt-4o-mini"}  # the picked model, for every role


def _screen(tmux: list[str]) -> str:
    return subprocess.run([*tmux, "capture-pane", "-p"], capture_output=True, text=True).stdout


def _wait_for_screen(tmux: list[str], text: str, count: int = 1) -> str:
    deadline = time.monotonic() + 30
    screen = ""
    while screen.count(text) < count:
        assert time.monotonic() < deadline, screen
        time.sleep(0.2)
        screen = _screen(tmux)
    return screen
