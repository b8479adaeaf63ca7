"""The web dashboard: its one-time login, and the page in a real headless browser
(Debian's chromium driven by Playwright) against a real orchestrator and the scripted model."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from shoal import daemon
from shoal.llm.script import Script
from shoal.llm.scripted import ScriptedModelServer
from shoal.paths import Home
from tests.conftest import shoal, wait_for
from tests.test_api import TOKEN, bare_repo, request
from tests.test_api_events import one_iteration_script, used
from tests.test_loop import call, plan, verdict

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def login_url(env: dict[str, str] | None = None) -> str:
    result = shoal("dashboard", "--no-open", "--port", "0", env=env, timeout=90)
    assert result.returncode == 0, result.stderr
    found = re.search(r"^dashboard: (http://\S+/login\?code=\S+)$", result.stdout, re.M)
    assert found, result.stdout
    return found.group(1)


def get(url: str, headers: dict[str, str] | None = None) -> http.client.HTTPResponse:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
    conn.request("GET", parts.path + (f"?{parts.query}" if parts.query else ""),
                 headers=headers or {})  # fmt: skip
    response = conn.getresponse()
    response.read()
    conn.close()
    return response


def test_the_login_link_works_once_and_its_cookie_stands_for_the_token(home: Home) -> None:
    link = login_url({"SHOAL_API_TOKEN": TOKEN})
    base = link.split("/login", 1)[0]
    api = f"{base}/api/v1"
    page = get(f"{base}/")
    assert page.status == 200 and page.getheader("Content-Type").startswith("text/html")
    assert "frame-ancestors 'none'" in page.getheader("Content-Security-Policy")
    assert get(f"{base}/static/app.js").status == 200
    assert get(f"{base}/static/../session.py").status == 404
    assert get(f"{base}/login?code=guessed").status == 401

    first = get(link)
    assert first.status == 303 and first.getheader("Location") == "/"
    cookie = first.getheader("Set-Cookie")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    assert get(link).status == 401  # used up
    session = cookie.split(";", 1)[0]
    assert request("GET", f"{api}/tasks", headers={"Cookie": session}) == (200, {"tasks": []})
    assert request("GET", f"{api}/tasks", headers={"Cookie": session + "x"})[0] == 401
    # The page's own POSTs say where they come from; another origin's are refused.
    origin = {"Cookie": session, "Origin": "https://evil.example"}
    status, body = request("POST", f"{api}/tasks", body={}, headers=origin)
    assert status == 403 and "cross-origin" in body["error"]["message"]
    mine = {"Cookie": session, "Origin": base}
    assert request("POST", f"{api}/tasks", body={}, headers=mine)[0] == 422  # in, then invalid
    # The session outlives the orchestrator (the key is in the home); the code is never logged.
    shoal("orchestrator", "stop", check=True, timeout=60)
    assert login_url({"SHOAL_API_TOKEN": TOKEN}).startswith(base)  # serves again, same port
    assert request("GET", f"{api}/tasks", headers={"Cookie": session})[0] == 200
    code = link.rsplit("=", 1)[1]
    assert code not in (home.logs / "orchestrator.log").read_text()
    assert (home.root / "api.session-key").stat().st_mode & 0o777 == 0o600


@pytest.fixture
def browser():  # type: ignore[no-untyped-def]
    if not Path(CHROMIUM).exists():
        pytest.skip("no /usr/bin/chromium: scripts/test installs Debian's chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def test_a_task_submitted_from_the_page_finishes_there_with_its_score(
    home: Home, tmp_path: Path, browser
) -> None:  # type: ignore[no-untyped-def]
    repo = bare_repo(tmp_path)
    with ScriptedModelServer(one_iteration_script()) as server:
        env = {"SHOAL_BASE_URL": server.base_url, "SHOAL_SMALL_MODEL": "openai/scripted-small"}
        link = login_url(env)
        # Served by `shoal dashboard` with no token given: it made one, so only the page
        # (by its link) and holders of api.token get in.
        assert request("GET", link.split("/login", 1)[0] + "/api/v1/tasks")[0] == 401
        page = browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(link)  # the login redirects to the dashboard with the cookie set
        page.wait_for_selector("#live.on", timeout=15_000)
        page.fill("textarea[name=description]", "fix the add function")
        page.fill("input[name=cwd]", str(repo))
        page.fill("input[name=model]", "openai/scripted-any")
        page.fill("input[name=iterations]", "1")
        page.click("button[type=submit]")
        row = page.wait_for_selector("#tasks tbody tr", timeout=15_000)
        finished = "#tasks tbody tr[data-status=accepted]"
        row = page.wait_for_selector(finished, timeout=90_000)  # updated by the event stream
        assert row.query_selector(".score").inner_text() == "0.90"
        page.wait_for_selector("#iterations tbody tr.iteration", timeout=10_000)
        scores = [c.inner_text() for c in page.query_selector_all("#iterations .score")]
        assert scores == ["0.90"]
        assert page.query_selector_all("#actors tbody tr"), "the orchestrator's actors"
        page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
        assert (tmp_path / "dashboard.png").stat().st_size > 0
        assert errors == []


def open_dashboard(browser, env: dict[str, str]):  # type: ignore[no-untyped-def]
    """A signed-in page on the dashboard, live; and the list its script errors go to."""
    link = login_url(env)
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(link)  # the login redirects to the dashboard with the cookie set
    page.wait_for_selector("#live.on", timeout=15_000)
    return link.split("/login", 1)[0], page, errors


def slow_script() -> Script:
    """A task that reads a file every second until it is stopped."""
    slow = {**call("read_file", path="calc.py"), **used(), "delay": 1.0}
    return Script.model_validate({"models": {"scripted-any": [{**plan(), **used()}, *[slow] * 60]}})


def test_cancel_on_the_page_cancels_the_running_task(home: Home, tmp_path: Path, browser) -> None:  # type: ignore[no-untyped-def]
    repo = bare_repo(tmp_path)
    with ScriptedModelServer(slow_script()) as server:
        env = {"SHOAL_BASE_URL": server.base_url, "SHOAL_API_TOKEN": TOKEN}
        base, page, errors = open_dashboard(browser, env)
        body = {"description": "fix it slowly", "cwd": str(repo), "model": "openai/scripted-any"}
        status, task = request("POST", f"{base}/api/v1/tasks", token=TOKEN, body=body)
        assert status == 202, task
        wait_for(lambda: len(server.requests_for("scripted-any")) >= 2, timeout=60,
                 what="the executor's first slow turn")  # fmt: skip
        button = f"#task-{task['id']} button.cancel"
        page.click(button, timeout=15_000)
        page.wait_for_selector(f"#task-{task['id']}[data-status=cancelled]", timeout=60_000)
        assert page.query_selector(button) is None  # an ended task has no cancel button
        shown = request("GET", f"{base}/api/v1/tasks/{task['id']}", token=TOKEN)[1]
        assert (shown["status"], shown["decision"]) == ("cancelled", "cancelled")
        assert len(server.requests_for("scripted-any")) < 20  # it stopped, not ran out
        shot = tmp_path / "screenshots" / "cancelled.png"
        print(f"screenshots: {shot.parent}")
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
        assert errors == []


def test_the_page_reconnects_after_a_kill_9_of_the_orchestrator(
    home: Home, tmp_path: Path, browser
) -> None:  # type: ignore[no-untyped-def]
    repo = bare_repo(tmp_path)
    with ScriptedModelServer(one_iteration_script()) as server:
        env = {"SHOAL_BASE_URL": server.base_url, "SHOAL_SMALL_MODEL": "openai/scripted-small",
               "SHOAL_API_TOKEN": TOKEN}  # fmt: skip
        base, page, errors = open_dashboard(browser, env)
        page.evaluate("window.mark = 1")
        before = daemon.running_pid(home)
        assert before is not None
        os.kill(before, signal.SIGKILL)
        page.wait_for_selector("#live.off", timeout=30_000)
        shot = tmp_path / "screenshots" / "reconnecting.png"
        print(f"screenshots: {shot.parent}")
        page.screenshot(path=str(shot))
        assert shot.stat().st_size > 10_000
        shoal("orchestrator", "start", env=env, check=True, timeout=90)
        assert daemon.running_pid(home) not in (None, before)
        page.wait_for_selector("#live.on", timeout=60_000)  # the same cookie, a new server
        body = {"description": "after the restart", "cwd": str(repo),
                "model": "openai/scripted-any", "iterations": 1}  # fmt: skip
        created = wait_for(
            lambda: (r := request("POST", f"{base}/api/v1/tasks", token=TOKEN, body=body))[0]
            == 202 and r, timeout=30, what="the API to take tasks again")  # fmt: skip
        task = created[1]  # type: ignore[index]
        page.wait_for_selector(f"#task-{task['id']}[data-status=accepted]", timeout=90_000)
        assert page.evaluate("window.mark") == 1  # the same document: never reloaded
        assert errors == []


def two_iteration_script() -> Script:
    blocker = {"severity": "blocker", "title": "add(2, 3) is still wrong", "detail": "-1"}
    return Script.model_validate(
        {
            "models": {
                "scripted-any": [
                    {**plan(), **used()},
                    # iteration 1: a wrong fix, scored below the threshold
                    {**call("read_file", path="calc.py"), **used()},
                    {
                        **call("edit_file", path="calc.py", old_string="a - b", new_string="a * b"),
                        **used(),
                    },
                    {**call("finish", summary="tried multiplication"), **used()},
                    {**verdict(0.4, blocker), **used()},
                    # iteration 2: the right fix
                    {**call("read_file", path="calc.py"), **used()},
                    {
                        **call("edit_file", path="calc.py", old_string="a * b", new_string=FIXED),
                        **used(),
                    },
                    {**call("finish", summary="add now adds"), **used()},
                    {**verdict(0.95), **used()},
                ],
                "scripted-small": ["nothing to learn"],
            }
        }
    )


FIXED = "a + b  # <b>sum</b>"
"""The right fix, with markup in it: the page must show it as text."""


def test_a_two_iteration_task_from_the_page_shows_both_scores_and_the_best_diff(
    home: Home, tmp_path: Path, browser
) -> None:  # type: ignore[no-untyped-def]
    repo = bare_repo(tmp_path)
    shots = tmp_path / "screenshots"
    shots.mkdir()
    print(f"screenshots: {shots}")
    with ScriptedModelServer(two_iteration_script()) as server:
        env = {"SHOAL_BASE_URL": server.base_url, "SHOAL_SMALL_MODEL": "openai/scripted-small",
               "SHOAL_API_TOKEN": TOKEN}  # fmt: skip
        base, page, errors = open_dashboard(browser, env)
        page.fill("textarea[name=description]", "fix the add function")
        page.fill("input[name=cwd]", str(repo))
        page.fill("input[name=model]", "openai/scripted-any")
        page.fill("input[name=iterations]", "2")
        page.click("button[type=submit]")
        row = page.wait_for_selector("#tasks tbody tr[data-status=accepted]", timeout=120_000)
        task_id = row.get_attribute("id").removeprefix("task-")
        page.wait_for_selector("#iterations tbody tr.iteration:nth-child(2)", timeout=10_000)
        scores = [c.inner_text() for c in page.query_selector_all("#iterations .score")]
        assert scores == ["0.40", "0.95"]
        assert "add(2, 3) is still wrong" in page.inner_text("#findings")
        page.wait_for_selector("#diff:has-text('+++')", timeout=10_000)  # (CSP: no eval)
        assert page.inner_text("#diff-title") == "Diff of iteration 2 (the best)"
        shown = page.eval_on_selector("#diff", "e => e.textContent")
        assert "-    return a - b" in shown and f"+    return {FIXED}" in shown
        assert page.eval_on_selector("#diff", "e => e.childElementCount") == 0  # text only
        assert FIXED in (repo / "calc.py").read_text()
        diff_url = f"{base}/api/v1/tasks/{task_id}/diff"
        assert request("GET", diff_url)[0] == 401  # the token or the session, like the rest
        served = request("GET", diff_url, token=TOKEN)[1]
        assert (served["iteration"], served["best"], served["diff"]) == (2, True, shown)
        assert request("GET", f"{base}/api/v1/tasks/0000000000/diff", token=TOKEN)[0] == 404
        paths = request("GET", f"{base}/api/v1/openapi.json", token=TOKEN)[1]["paths"]
        assert "TaskDiff" in json.dumps(paths["/api/v1/tasks/{task_id}/diff"])
        # What the task cost, per role, as the task route gives it.
        page.wait_for_selector("#task-costs tr[data-role=executor]", timeout=10_000)
        roles = [c.inner_text() for c in page.query_selector_all("#task-costs .role")]
        detail = request("GET", f"{base}/api/v1/tasks/{task_id}", token=TOKEN)[1]
        assert roles == [c["role"] for c in detail["cost_by_role"]]
        assert {"planner", "executor", "evaluator"} <= set(roles), roles
        page.screenshot(path=str(shots / "task.png"), full_page=True)
        page.screenshot(path=str(shots / "overview.png"))
        page.locator("#detail").screenshot(path=str(shots / "task-detail.png"))  # docs/
        page.locator("#actors").screenshot(path=str(shots / "actors.png"))
        assert all((shots / n).stat().st_size > 10_000 for n in ("task.png", "overview.png"))
        assert errors == []


def test_a_team_members_transcript_grows_on_the_page_and_a_line_steered_there_reaches_it(
    home: Home, tmp_path: Path, browser
) -> None:  # type: ignore[no-untyped-def]
    from tests.test_api_teams import STEER, team_env, team_up, text_of
    from tests.test_api_teams import slow_script as slow_team_script

    repo = bare_repo(tmp_path)
    shots = tmp_path / "screenshots"
    shots.mkdir()
    print(f"screenshots: {shots}")
    with ScriptedModelServer(slow_team_script(slow=6.0)) as server:
        env = team_env(server)
        base, page, errors = open_dashboard(browser, env)
        team_up(env)
        member = "#member-executor_red-1"
        # The team shows up from the event stream (its members starting), idle.
        page.wait_for_selector(f"{member} .doing:has-text('idle')", timeout=30_000)
        body = {"description": "fix the add function", "cwd": str(repo), "iterations": 1,
                "team": "red"}  # fmt: skip
        status, task = request("POST", f"{base}/api/v1/tasks", token=TOKEN, body=body)
        assert status == 202, task

        def shown() -> str:
            return page.eval_on_selector(f"{member} .transcript", "e => e.textContent")

        page.wait_for_selector(f"{member} .transcript:has-text('▶ task')", timeout=60_000)
        first = shown()
        assert "fix the add function" in first, first
        # While its second model call waits, type a line into its steering input.
        wait_for(lambda: len(server.requests_for("scripted-executor")) >= 2, 60,
                 what="the executor's second model turn")  # fmt: skip
        page.wait_for_selector(f"{member} .doing:has-text('busy')", timeout=15_000)
        page.fill(f"{member} .steer input", STEER)
        page.click(f"{member} .steer button")
        page.wait_for_selector(f"{member} .steer output:has-text('sent')", timeout=15_000)
        wait_for(lambda: len(server.requests_for("scripted-executor")) >= 3, 60,
                 what="the executor's third model turn")  # fmt: skip
        turns = [text_of(r) for r in server.requests_for("scripted-executor")]
        assert STEER not in turns[1] and STEER in turns[2]
        page.wait_for_selector(f"{member} .transcript:has-text('iteration 1 done')",
                               timeout=60_000)  # fmt: skip
        grown = shown()
        assert grown.startswith(first.rstrip()[:40]) and len(grown) > len(first), grown
        assert f"✉ the dashboard (person): {STEER}" in grown and "│ +a + b" in grown
        assert page.eval_on_selector(f"{member} .transcript", "e => e.childElementCount") == 0
        assert page.query_selector("#member-lead_red-1 .transcript") is not None
        page.locator("#teams-view").screenshot(path=str(shots / "team.png"))
        page.screenshot(path=str(shots / "team-page.png"), full_page=True)
        assert (shots / "team.png").stat().st_size > 10_000
        assert errors == []


def test_approving_a_proposed_skill_on_the_page_installs_it_and_takes_it_off_the_list(
    home: Home, tmp_path: Path, browser
) -> None:  # type: ignore[no-untyped-def]
    from shoal.messages.memory import MemoryRemember, NewLearning
    from tests.test_api_learning import propose

    shots = tmp_path / "screenshots"
    shots.mkdir()
    print(f"screenshots: {shots}")
    propose(home, "fix-add-functions", "Recurring task: <b>fix</b> add")
    propose(home, "rename-things")
    _base, page, errors = open_dashboard(browser, {"SHOAL_API_TOKEN": TOKEN})
    learnt = "Run pytest with -x in <i>this</i> repository."
    remembered = NewLearning(kind="convention", content=learnt, confidence=0.8)
    daemon.request(home, MemoryRemember(learnings=[remembered]))
    page.reload()  # the learning was remembered after the page loaded
    page.wait_for_selector("#live.on", timeout=15_000)
    page.wait_for_selector("#learnings td.content", timeout=15_000)
    assert page.inner_text("#learnings td.content") == learnt  # text, not markup
    item = "#proposal-fix-add-functions"
    page.wait_for_selector(f"{item} button.approve", timeout=15_000)
    assert "Recurring task: <b>fix</b> add" in page.inner_text(item)
    assert page.query_selector("#proposal-rename-things button.dismiss") is not None
    page.locator("#learning-view").screenshot(path=str(shots / "learning.png"))
    page.click(f"{item} button.approve")
    page.wait_for_selector(item, state="detached", timeout=15_000)
    installed = home.root / "skills" / "fix-add-functions" / "SKILL.md"
    assert installed.is_file()
    assert not (home.root / "skills" / "proposed" / "fix-add-functions").exists()
    assert "approved" in page.inner_text("#proposal-said")
    assert page.query_selector("#proposal-rename-things") is not None  # the other one stays
    page.click("#proposal-rename-things button.dismiss")
    page.wait_for_selector("#no-proposals:not([hidden])", timeout=15_000)
    assert (home.root / "skills" / "dismissed" / "rename-things" / "SKILL.md").is_file()
    page.screenshot(path=str(shots / "learning-page.png"), full_page=True)
    assert (shots / "learning.png").stat().st_size > 5_000
    assert errors == []
