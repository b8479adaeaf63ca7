"""The shoal command as a user runs it: output, exit codes, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from shoal.paths import Home
from tests.conftest import shoal, wait_for


def assert_one_line_error(result, *needles: str) -> None:
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("shoal: error: ") or lines[0].startswith("Usage"), lines
    for needle in needles:
        assert needle in lines[0]


def test_help_and_version() -> None:
    result = shoal("--help", check=True)
    for command in ("orchestrator", "doctor", "demo", "messages"):
        assert command in result.stdout
    assert shoal("--version", check=True).stdout.startswith("shoal ")


def test_the_cli_ends_without_teardown_but_runs_atexit_hooks_and_keeps_exit_codes(
    tmp_path: Path,
) -> None:
    import sys

    mark = tmp_path / "atexit-ran"
    script = (
        "import atexit, sys\n"
        f"atexit.register(lambda: open({str(mark)!r}, 'w').write('yes'))\n"
        "sys.argv = ['shoal', *sys.argv[1:]]\n"
        "from shoal.cli.app import main\n"
        "main()\n"
        "raise SystemExit('main() returned')\n"  # it must end the process itself
    )
    version = subprocess.run(
        [sys.executable, "-c", script, "--version"], capture_output=True, text=True, timeout=60
    )
    assert (version.returncode, version.stdout.startswith("shoal ")) == (0, True)
    assert mark.read_text() == "yes"
    usage = subprocess.run(
        [sys.executable, "-c", script, "run"], capture_output=True, text=True, timeout=60
    )
    assert usage.returncode == 2 and "Missing argument" in usage.stderr
    assert "main() returned" not in usage.stderr + version.stderr


def test_start_status_stop_through_the_cli(home: Home) -> None:
    started = shoal("orchestrator", "start", "--actors", "echo*2", check=True)
    assert "orchestrator started" in started.stdout and "echo-1, echo-2" in started.stdout
    status = json.loads(shoal("orchestrator", "status", "--json", check=True).stdout)
    assert set(status) >= {"pid", "home", "actors", "messages"}
    assert status["home"] == str(home.root)
    assert set(status["messages"]) >= {"routed", "recorded", "dropped"}
    assert {a["name"] for a in status["actors"]} == {"echo-1", "echo-2"}
    for actor in status["actors"]:
        assert set(actor) >= {"name", "role", "pid", "state", "restarts", "last_heartbeat"}
    human = shoal("orchestrator", "status", check=True).stdout
    assert "echo-1" in human and "messages:" in human
    spawned = shoal("orchestrator", "spawn", "echo", "--name", "helper", check=True)
    assert "helper" in spawned.stdout
    shoal("orchestrator", "spawn", "echo", "-n", "2", check=True)
    listed = json.loads(shoal("orchestrator", "status", "--json").stdout)["actors"]
    names = {a["name"] for a in listed}
    assert names == {"echo-1", "echo-2", "echo-3", "echo-4", "helper"}
    shoal("orchestrator", "retire", "helper", check=True)

    def retired() -> bool:
        actors = json.loads(shoal("orchestrator", "status", "--json").stdout)["actors"]
        return "helper" not in {a["name"] for a in actors if a["state"] != "stopped"}

    wait_for(retired, timeout=30, what="helper retired")
    log_lines = shoal("messages", "--json", "-n", "500").stdout.splitlines()
    logged = [json.loads(line) for line in log_lines]
    assert logged and {"kind", "sender", "recipient"} <= set(logged[0])
    stopped = shoal("orchestrator", "stop", check=True)
    assert f"orchestrator stopped (pid {status['pid']})" in stopped.stdout
    assert shoal("orchestrator", "status").returncode == 3


def test_unknown_role_is_a_usage_error(home: Home) -> None:
    result = shoal("orchestrator", "spawn", "wizard")
    assert result.returncode == 2
    assert_one_line_error(result, "unknown actor role 'wizard'", "echo")
    bad = shoal("orchestrator", "start", "--actors", "echo*x")
    assert bad.returncode == 2
    assert_one_line_error(bad, "bad count")


def test_bad_config_is_one_clear_line(home: Home) -> None:
    home.ensure()
    home.config_file.write_text("[orchestrator]\nflush_interval = 5\n")
    result = shoal("orchestrator", "start")
    assert result.returncode == 1
    assert_one_line_error(result, "flush_interval", "SHOAL_FLUSH_INTERVAL")
    home.config_file.write_text("not = [valid")
    assert_one_line_error(shoal("orchestrator", "start"), "config.toml")


def test_unusable_home_is_one_clear_line(home: Home) -> None:
    long_home = str(home.root / ("x" * 120))
    result = shoal("orchestrator", "start", env={"SHOAL_HOME": long_home})
    assert result.returncode == 1
    assert_one_line_error(result, "too long for a unix socket")


def test_doctor_reports_and_fails_on_missing_requirements(home: Home, tmp_path) -> None:
    ok = shoal("doctor", "--json")
    report = json.loads(ok.stdout)
    assert ok.returncode == 0 and report["ok"] is True
    assert {c["name"] for c in report["checks"]} >= {"python", "git", "tmux", "home", "model"}
    blocker = tmp_path / "file"
    blocker.write_text("")
    bad = shoal("doctor", "--json", env={"SHOAL_HOME": str(blocker / "home")})
    assert bad.returncode == 1 and json.loads(bad.stdout)["ok"] is False
    # With an orchestrator: its mailbox answers, the file's mode and schema version are shown.
    shoal("orchestrator", "start", check=True)
    rows = {
        c["name"]: c for c in json.loads(shoal("doctor", "--json", check=True).stdout)["checks"]
    }
    assert "mailbox answers" in rows["orchestrator"]["detail"]
    assert rows["database file"]["ok"] and "0o600" in rows["database file"]["detail"]
    assert rows["schema"]["ok"] and rows["schema"]["detail"].startswith("version ")
    assert rows["rg"]["detail"].startswith("ripgrep") or not rows["rg"]["required"]
    home.root.chmod(0o755)  # readable by others: refused
    try:
        loose = shoal("doctor", "--json")
        checks = {c["name"]: c for c in json.loads(loose.stdout)["checks"]}
        assert (
            loose.returncode == 1
            and not checks["home"]["ok"]
            and "0o755" in checks["home"]["detail"]
        )
    finally:
        home.root.chmod(0o700)


def test_demo_runs_the_runtime_end_to_end(home: Home) -> None:
    env = {k: v for k, v in os.environ.items() if k != "SHOAL_PRELOAD"}
    env["SHOAL_PRELOAD"] = "litellm"  # the real default: actors fork from a warm forkserver
    result = shoal("orchestrator", "demo", "-n", "200", env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "200 request/replies" in result.stdout
    assert "restarted as pid" in result.stdout and "(restarts 1)" in result.stdout
    assert "echo.request" in result.stdout


def test_permission_rules_add_up_across_config_layers_and_a_bad_rule_is_one_line(
    home: Home, tmp_path: Path
) -> None:
    from shoal import config
    from shoal.settings import SettingsError

    home.config_file.write_text('[shoal]\ndeny = ["shell:rm *"]\nallow = ["git"]\n')
    project = tmp_path / "proj"
    (project / ".shoal").mkdir(parents=True)
    (project / ".shoal" / "config.toml").write_text('[shoal]\nask = ["write_file:*.lock"]\n')
    rules = config.load(home, project, {"deny": ["shell:curl *"]}).task_options()
    got = [(r.action, r.tool, r.pattern) for r in rules.permission_rules]
    assert got == [
        ("deny", "shell", "rm *"),
        ("deny", "shell", "curl *"),
        ("ask", "write_file", "*.lock"),
        ("allow", "git", None),
    ]
    with pytest.raises(SettingsError, match="names no tool"):
        config.load(home, project, {"deny": ["shel:rm *"]}).task_options()
    subprocess.run(["git", "init", "-q", str(project)], check=True)
    result = shoal("run", "x", "-C", str(project), "--deny", "shel:rm", env={"SHOAL_MODEL": "m/x"})
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        "shoal: error: deny rule 'shel:rm' names no tool; the tools are "
        + result.stderr.split("the tools are ")[1].strip()
    ]


def test_budgets_are_always_on_and_cannot_be_switched_off(home: Home, tmp_path) -> None:
    from shoal.config import LoopConfig

    options = LoopConfig().task_options()
    assert options.budget_tokens and options.budget_usd and options.timeout  # on by default
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    env = {"SHOAL_MODEL": "openai/scripted"}
    for flag in ("--budget-tokens", "--budget-usd", "--timeout"):
        result = shoal("run", "fix it", "-C", str(repo), flag, "0", env=env)
        assert result.returncode == 2, (flag, result.stderr)
        assert_one_line_error(result, "greater than 0")
    from_env = shoal("run", "fix it", "-C", str(repo), env={**env, "SHOAL_TIMEOUT": "0"})
    assert from_env.returncode == 2
    assert_one_line_error(from_env, "SHOAL_TIMEOUT")
    # An unknown mode is a usage error, never a traceback.
    for command in (("run", "fix it"), ("team", "run", "fix it"), ("chat",)):
        mode = shoal(*command, "-C", str(repo), "--permission-mode", "bogus", env=env)
        assert mode.returncode == 2, (command, mode.stderr)
        assert_one_line_error(mode, "permission_mode", "'plan'")


def test_shoal_with_a_task_means_run_whether_options_come_first_or_not(
    home: Home, tmp_path
) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    env = {"SHOAL_MODEL": ""}  # stops at the model check: proof that `run` took the arguments
    for args in (("fix it", "-C", str(repo)), ("-C", str(repo), "fix it"), ("--quiet", "fix it")):
        result = shoal(*args, env=env, cwd=repo)
        assert result.returncode == 2, (args, result.stderr)
        assert_one_line_error(result, "no model configured")
    assert shoal("--version").stdout.startswith("shoal ")
    assert "No such option: -x" in shoal("-x").stderr


def test_a_git_dir_in_the_environment_does_not_make_a_directory_a_repository(
    home: Home, tmp_path
) -> None:
    decoy = tmp_path / "decoy"
    subprocess.run(["git", "init", "-q", str(decoy)], check=True)
    plain = tmp_path / "plain"
    plain.mkdir()
    env = {"GIT_DIR": str(decoy / ".git"), "GIT_WORK_TREE": str(decoy), "SHOAL_MODEL": "x/y"}
    result = shoal("run", "fix it", "-C", str(plain), env=env)
    assert result.returncode == 2
    assert_one_line_error(result, "is not a git repository")


def test_loop_settings_flags_beat_environment_beats_project_beats_home(
    home: Home, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from shoal.config import load
    from shoal.settings import OrchestratorSettings

    project = tmp_path / "proj"
    (project / ".shoal").mkdir(parents=True)
    home.ensure()
    home.config_file.write_text(
        '[shoal]\nmodel = "home/m"\niterations = 2\nquality = 0.5\npermission_mode = "plan"\n'
        "[orchestrator]\nidle_timeout = 100\n"
    )
    (project / ".shoal" / "config.toml").write_text(
        '[shoal]\nmodel = "project/m"\niterations = 4\nplanner_base_url = "http://p"\n'
    )
    # Its model and URL would be ignored unapproved (tests/test_trust.py); the user trusts it.
    approve = shoal("config", "approve", str(project))
    assert approve.returncode == 0, approve.stderr
    monkeypatch.setenv("SHOAL_ITERATIONS", "6")
    monkeypatch.setenv("SHOAL_IDLE_TIMEOUT", "7")
    for name in ("SHOAL_MODEL", "SHOAL_QUALITY", "SHOAL_PERMISSION_MODE"):
        monkeypatch.delenv(name, raising=False)
    loaded = load(home, project, {"model": None, "quality": 0.9})
    assert loaded.model == "project/m"  # project over home
    assert loaded.iterations == 6  # environment over both files
    assert loaded.quality == 0.9  # a flag over everything
    assert loaded.permission_mode == "plan"  # home, where nothing else says otherwise
    models = loaded.models()
    assert models["planner"].base_url == "http://p" and models["executor"].base_url is None
    assert load(home, project, {"iterations": 1}).iterations == 1
    assert OrchestratorSettings.load(home).idle_timeout == 7  # the environment wins
