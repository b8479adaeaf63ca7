"""``shoal chat``: the REPL in a real tmux pane, sessions and compaction, with a scripted model.

The REPL tests drive a pane on a private tmux socket (send-keys, capture-pane)
and read what the scripted model server received; the session tests pipe
lines into ``shoal chat`` (no terminal: plain output), as scripts would.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shoal.llm.scripted import ScriptedModelServer
from shoal.paths import Home
from tests.conftest import shoal
from tests.test_loop import call, make_repo

STREAMED = "Streaming works: every word of this answer arrives on its own."
LONG = " ".join(f"word{i}" for i in range(60))


def chat_env(server: ScriptedModelServer, **extra: str) -> dict[str, str]:
    return {
        "SHOAL_EXECUTOR_MODEL": "openai/scripted-chat",
        "SHOAL_BASE_URL": server.base_url,
        "SHOAL_PRELOAD": "litellm",
        **extra,
    }


def texts(request: dict[str, Any]) -> str:
    return json.dumps(request["messages"])


class Pane:
    """One tmux pane on a private server; killed (only that server) at the end."""

    def __init__(self, env: dict[str, str]) -> None:
        self.tmux = ["tmux", "-L", f"shoal-test-{uuid.uuid4().hex[:8]}"]
        self.env = env
        self.started = False

    def run(self, *args: str, cwd: Path) -> None:
        keep = {k: os.environ[k] for k in os.environ if k.startswith("SHOAL_") or k == "PYTHONPATH"}
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in {**keep, **self.env}.items())
        line = " ".join(shlex.quote(a) for a in (sys.executable, "-m", "shoal", *args))
        command = f"cd {shlex.quote(str(cwd))} && env {env} {line}; echo CHAT-EXITED $?; sleep 60"
        if self.started:
            subprocess.run([*self.tmux, "respawn-pane", "-k", command], check=True)
        else:
            size = ["-x", "120", "-y", "50"]
            subprocess.run([*self.tmux, "new-session", "-d", *size, command], check=True)
            self.started = True

    def screen(self) -> str:
        return subprocess.run(
            [*self.tmux, "capture-pane", "-p", "-S", "-200"], capture_output=True, text=True
        ).stdout

    def wait(self, text: str, timeout: float = 30, after: int = 0) -> str:
        """The screen once ``text`` appears on it (``after``: more often than that many times)."""
        deadline = time.monotonic() + timeout
        screen = ""
        while time.monotonic() < deadline:
            screen = self.screen()
            if screen.count(text) > after:
                return screen
            time.sleep(0.1)
        raise AssertionError(f"{text!r} did not appear; the screen:\n{screen}")

    def prompt(self, count: int, timeout: float = 30) -> str:
        return self.wait("shoal>", timeout, after=count - 1)

    def send(self, *keys: str) -> None:
        subprocess.run([*self.tmux, "send-keys", *keys], check=True)

    def type(self, text: str) -> None:
        subprocess.run([*self.tmux, "send-keys", "-l", text], check=True)
        self.send("Enter")

    def kill(self) -> None:
        subprocess.run([*self.tmux, "kill-server"], capture_output=True)


@pytest.fixture
def pane() -> Iterator[Pane]:
    if shutil.which("tmux") is None:
        pytest.skip("needs tmux")
    p = Pane({})
    yield p
    p.kill()


@pytest.mark.timeout(240)
def test_the_repl_streams_attaches_runs_commands_interrupts_and_continues(
    home: Home, tmp_path: Path, pane: Pane
) -> None:
    repo = make_repo(tmp_path)
    script = {
        "models": {
            "scripted-chat": {
                "replies": [
                    {"content": STREAMED, "chunk_delay": 0.15},
                    {"content": "calc.add subtracts; it should add.", "chunk_delay": 0.01},
                    call("shell", command="echo from-$((2*3))-shell"),
                    call("shell", command="echo again-$((3*3))"),
                    "Ran it.",
                    {"content": LONG, "chunk_delay": 0.4},
                    {"content": "You first said hello there."},
                ],
                "repeat_last": False,
            }
        }
    }
    with ScriptedModelServer(script) as server:
        pane.env = chat_env(server)
        pane.run(cwd=repo)  # bare `shoal` in a terminal chats
        pane.prompt(1)

        # The answer streams: part of it is on screen before the rest has arrived.
        pane.type("hello there")
        partial = pane.wait("Streaming works")
        assert "on its own." not in partial
        pane.wait("on its own.")
        pane.prompt(2)
        assert " in · " in pane.wait(" out · ")  # the token/cost footer

        pane.type("/cost")
        assert "tokens" in pane.wait("this session:")
        pane.prompt(3)

        # Tab completes @cal to @calc.py; a trailing backslash and Esc-Enter start new
        # lines; @calc.py attaches the file: the model gets its content.
        # Counted before typing: the menu may be up before a count taken after it.
        before = pane.screen().count("calc.py")
        pane.send("-l", "what does @cal")
        pane.wait("calc.py", after=before)  # the completion menu
        pane.send("Tab")
        pane.send("-l", " do?\\")
        pane.send("Enter")
        pane.send("-l", "answer")
        pane.send("Escape", "Enter")
        pane.type("briefly")
        pane.wait("calc.add subtracts")
        pane.prompt(4)
        sent = server.requests[1]["messages"][-1]["content"]
        assert sent.startswith("what does @calc.py do?\nanswer\nbriefly")
        assert "return a - b" in sent and "attached calc.py" in pane.screen()

        # shell asks in accept-edits mode: the person approves it in the chat, for the
        # rest of the session (the second call does not ask).
        pane.type("run the echo")
        pane.wait("allow? (y)es, (n)o, (a)lways this session:")
        assert "echo from-$((2*3))-shell" in pane.screen()
        pane.type("a")
        screen = pane.wait("Ran it.")
        assert screen.count("allow? (y)es") == 1
        assert "from-6-shell" in texts(server.requests[3])  # the tool's output reached the model
        assert "again-9" in texts(server.requests[4])
        pane.prompt(5)

        pane.type("!echo hi-$((6*7))")
        pane.wait("hi-42")
        pane.prompt(6)

        # Ctrl-C mid-turn stops the turn, not the REPL.
        pane.type("count slowly")
        pane.wait("word2 ")
        pane.send("C-c")
        pane.wait("interrupted", timeout=15)
        pane.prompt(7, timeout=15)
        assert "word59" not in pane.screen()

        # Ctrl-C twice at an empty prompt leaves.
        pane.send("C-c")
        pane.wait("(Ctrl-C again, Ctrl-D or /exit to leave)")
        pane.send("C-c")
        pane.wait("CHAT-EXITED 0")

        # --continue: the next request carries the earlier turns.
        pane.run("chat", "--continue", cwd=repo)
        screen = pane.wait("session resumed")
        assert "you: count slowly" in screen and "[interrupted by the user]" in screen
        pane.prompt(1)
        # Ctrl-R finds an earlier input in the history (kept across runs).
        pane.send("C-r")
        pane.send("-l", "slowl")
        pane.wait("I-search backward: slowl")
        pane.send("C-g")
        pane.send("C-u")
        pane.type("what did I say first?")
        pane.wait("You first said hello there.")
        last = texts(server.requests[-1])
        assert len(server.requests) == 7
        for earlier in ("hello there", STREAMED, "return a - b", "interrupted by the user"):
            assert earlier in last, earlier
        # The interrupted answer keeps what had streamed, not what never came.
        assert "word1 " in last and "word59" not in last
        assert (home.root / "chat_history").stat().st_mode & 0o777 == 0o600
        assert "count slowly" in (home.root / "chat_history").read_text()

        # /resume picks a session from a list.
        pane.type("/resume")
        pane.wait("resume which?")
        pane.send("Enter")
        pane.prompt(3)
        pane.send("C-d")
        pane.wait("CHAT-EXITED 0")


def chat_lines(
    repo: Path, lines: list[str], env: dict[str, str], *args: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shoal", "chat", "-C", str(repo), *args],
        input="".join(line + "\n" for line in lines),
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
    )


@pytest.mark.timeout(180)
def test_sessions_are_listed_exported_cleared_and_compacted(home: Home, tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    first, second, third = ("alpha " * 500, "bravo " * 500, "charlie " * 500)
    script = {
        "models": {
            "scripted-chat": [
                call("read_file", path="calc.py"),
                "It subtracts.",
                "Noted alpha.",
                "Noted bravo.",
                "Noted charlie.",
                "Fresh start.",
            ],
            "scripted-small": ["SUMMARY: the user sent a long run of alphas."],
            "scripted-other": [
                call("write_file", path="new.txt", content="x"),
                "I may not write files in plan mode.",
            ],
            "scripted-ruled": [
                call("write_file", path="ruled.txt", content="x"),
                "A rule refused it.",
            ],
            "scripted-asker": [
                call("shell", command="touch asked.txt"),
                "Nobody could approve it.",
            ],
            "scripted-flags": [
                call("write_file", path="flag.txt", content="x"),
                "Plan mode: I only read.",
            ],
        }
    }
    with ScriptedModelServer(script) as server:
        # A window this small fills after two long turns: the third compacts the first.
        env = chat_env(
            server,
            SHOAL_CHAT_CONTEXT_WINDOW="3000",
            SHOAL_SMALL_MODEL="openai/scripted-small",  # writes the summaries
        )
        out = chat_lines(repo, ["what does calc.py do?", first, second, third], env, "-s", "demo")
        assert out.returncode == 0, out.stderr
        assert "read_file calc.py" in out.stdout and "It subtracts." in out.stdout
        assert "older turns compacted" in out.stdout
        compacted = texts(server.requests[-1])
        assert first not in compacted and "SUMMARY: the user sent" in compacted
        asked = texts(server.requests_for("scripted-small")[0])
        assert first in asked and second not in asked  # the older turn, not the kept one
        assert second in compacted and third in compacted

        # A named session is resumed by name; /clear starts the conversation over.
        (repo / "calc.py").write_text("def add(a, b):\n    return a - b  # touched\n")
        lines = [
            "/compact",
            "/files",
            "/diff",
            "/status",
            "/sessions",
            "/tasks",
            "/skills",
            "/team",
            "/help",
            "/clear",
            "anything new?",
            "/model openai/scripted-other",
            "/permissions plan",
            "write new.txt",
        ]
        out = chat_lines(repo, lines, env, "-s", "demo")
        assert out.returncode == 0, out.stderr
        assert "compacted 2 messages" in out.stdout and "Fresh start." in out.stdout
        fresh = texts(server.requests_for("scripted-chat")[-1])
        assert second not in fresh and "alpha" not in fresh and "anything new?" in fresh
        assert "calc.py  read" in out.stdout  # /files
        assert "+    return a - b  # touched" in out.stdout  # /diff
        assert "orchestrator pid" in out.stdout and "chat-1" in out.stdout  # /status
        current = [line for line in out.stdout.splitlines() if line.startswith("* ")]
        assert len(current) == 1 and "demo" in current[0]  # /sessions marks this one
        assert "no tasks yet" in out.stdout and "python-testing" in out.stdout
        assert "no team is running" in out.stdout and "/permissions" in out.stdout
        # /model switched the model; /permissions plan made the turn read-only.
        assert len(server.requests_for("scripted-other")) == 2
        assert "write_file new.txt  denied" in out.stdout and not (repo / "new.txt").exists()

        bare = shoal()  # bare `shoal` without a terminal: help, not a chat
        assert "Usage" in bare.stderr and "chat" in bare.stderr and "shoal>" not in bare.stdout
        listed = [
            json.loads(line) for line in shoal("sessions", "list", "--json").stdout.splitlines()
        ]
        assert [(s["name"], s["turns"], s["cwd"]) for s in listed] == [("demo", 6, str(repo))]
        assert listed[0]["model"] == "openai/scripted-other"
        assert listed[0]["tokens"] > 0 and listed[0]["title"] == "what does calc.py do?"
        session_id = listed[0]["id"]

        md = shoal("sessions", "export", session_id[:10], check=True).stdout
        assert md.startswith("# demo") and "what does calc.py do?" in md
        assert "`read_file`" in md and "It subtracts." in md
        assert "summary of the earlier turns" in md and "(conversation cleared)" in md
        target = tmp_path / "demo.json"
        shoal("sessions", "export", session_id, "--format", "json", "-o", str(target), check=True)
        exported = json.loads(target.read_text())
        roles = [m["role"] for m in exported["messages"]]
        assert roles[:4] == ["user", "assistant", "tool", "assistant"]
        assert (
            roles.count("summary") == 2 and roles.count("clear") == 1 and roles[-1] == "assistant"
        )
        assert exported["session"]["permission_mode"] == "plan"

        assert exported["session"]["id"] == session_id

        # Same server, same settings: the orchestrator (and its chat actor) carries on.
        resumed = chat_lines(repo, ["/cost"], env, "--resume", session_id[:12])
        assert resumed.returncode == 0, resumed.stderr
        assert f"session resumed (6 turns) “demo” {session_id}" in resumed.stdout
        assert "over 6 turns" in resumed.stdout

        bad = shoal("sessions", "export", "ZZZZZZ")
        assert bad.returncode == 1 and bad.stderr.startswith("shoal: error: no session")
        assert "Traceback" not in bad.stderr

        # The project's permission rules hold in chat as in `shoal run`.
        (repo / ".shoal").mkdir(exist_ok=True)
        (repo / ".shoal" / "config.toml").write_text('[shoal]\ndeny = ["write_file:ruled*"]\n')
        out = chat_lines(repo, ["/model openai/scripted-ruled", "write ruled.txt"], env)
        assert out.returncode == 0, out.stderr
        assert "write_file ruled.txt  denied" in out.stdout and not (repo / "ruled.txt").exists()
        # Without a terminal, a call that would ask is refused (shell asks in accept-edits).
        out = chat_lines(repo, ["/model openai/scripted-asker", "touch asked.txt"], env)
        assert out.returncode == 0, out.stderr
        assert "shell touch asked.txt  denied" in out.stdout and not (repo / "asked.txt").exists()
        assert "no terminal" in texts(server.requests_for("scripted-asker")[-1])
        # -m and --permission-mode on the command line, as /model and /permissions do.
        flags = ("-m", "openai/scripted-flags", "--permission-mode", "plan")
        out = chat_lines(repo, ["write flag.txt"], env, *flags)
        assert out.returncode == 0, out.stderr
        assert len(server.requests_for("scripted-flags")) == 2, out.stdout
        assert "write_file flag.txt  denied" in out.stdout and not (repo / "flag.txt").exists()


def test_a_digest_summarizes_without_a_model_and_markers_rebuild_the_conversation() -> None:
    from shoal.actors import conversation
    from shoal.actors.conversation import Record

    calls = [
        {
            "id": "c1",
            "type": "function",
            "function": {"name": "read_file", "arguments": '{"path": "calc.py"}'},
        }
    ]
    rows = [
        Record(1, 1, "user", "what does calc.py do?"),
        Record(2, 1, "assistant", None, tool_calls=calls),
        Record(3, 1, "tool", "def add(a, b): ...", tool_call_id="c1"),
        Record(4, 1, "assistant", "It subtracts."),
        Record(5, 2, "user", "fix it"),
        Record(6, 2, "assistant", "Fixed."),
    ]
    old, kept = conversation.split(rows, keep_turns=1, keep_tokens=0)
    assert [r.seq for r in old] == [1, 2, 3, 4] and [r.seq for r in kept] == [5, 6]
    digest = conversation.digest(None, old, 2_000)
    assert "The user asked: what does calc.py do?" in digest
    assert "read_file(calc.py)" in digest and "You answered: It subtracts." in digest
    summary = Record(7, 2, "summary", digest, meta={"through": 4})
    rebuilt = conversation.history([*rows, summary, Record(8, 3, "user", "and now?")])
    assert rebuilt.summary == digest and [r.seq for r in rebuilt.live] == [5, 6, 8]
    cleared = conversation.history([*rows, summary, Record(9, 3, "clear")])
    assert cleared.summary is None and cleared.live == []
    assert conversation.context_window("openai/gpt-4o") > 100_000  # litellm's model info
    assert conversation.context_window("openai/unknown-x") == conversation.DEFAULT_WINDOW


@pytest.mark.timeout(120)
def test_sessions_list_here_shows_the_sessions_of_this_directory(
    home: Home, tmp_path: Path
) -> None:
    one, two = make_repo(tmp_path / "one"), make_repo(tmp_path / "two")
    env = {"SHOAL_EXECUTOR_MODEL": "openai/unused", "SHOAL_BASE_URL": "http://127.0.0.1:9/v1"}
    for repo, name in ((one, "first"), (two, "second"), (one, "third")):
        out = chat_lines(repo, ["/exit"], env, "-s", name)  # a named session, no turn
        assert out.returncode == 0, out.stderr

    def listed(*args: str, cwd: Path) -> list[str]:
        return shoal("sessions", "list", *args, cwd=cwd, check=True).stdout.splitlines()

    def names(*args: str, cwd: Path) -> list[tuple[str, str]]:
        rows = [json.loads(line) for line in listed("--json", *args, cwd=cwd)]
        return [(r["name"], r["cwd"]) for r in rows]

    assert names("--here", cwd=one) == [("third", str(one)), ("first", str(one))]
    assert names("--here", "-C", str(two), cwd=one) == [("second", str(two))]
    assert names("--here", cwd=tmp_path) == []
    assert [n for n, _ in names(cwd=tmp_path)] == ["third", "second", "first"]
    table = "\n".join(listed("--here", cwd=two))
    assert "second" in table and "first" not in table and "third" not in table
    bad = shoal("sessions", "list", "-C", str(one))
    assert bad.returncode == 2 and "give --here too" in bad.stderr


def test_compact_n_keeps_the_latest_n_turns(home: Home, tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    script = {
        "models": {
            "scripted-chat": ["one noted", "two noted", "three noted", "what was first?"],
            "scripted-small": ["SUMMARY: the user said one."],
        }
    }
    with ScriptedModelServer(script) as server:
        env = chat_env(server, SHOAL_SMALL_MODEL="openai/scripted-small")
        lines = ["one", "two", "three", "/compact 2", "/compact 2", "and now?"]
        out = chat_lines(repo, lines, env)
        assert out.returncode == 0, out.stderr
        assert "compacted 2 messages" in out.stdout and "(the latest 2" in out.stdout, out.stdout
        assert "nothing to compact" in out.stdout  # the second time: only the latest 2 are left
        last = texts(server.requests_for("scripted-chat")[-1])
        assert "SUMMARY: the user said one." in last and '"one"' not in last
        assert "two" in last and "three" in last
