"""The dashboard's message flow, batches and costs over time, in Debian's headless chromium
(Playwright) against a real orchestrator: a priced scripted task, a local batch pool.
Screenshots of each view go to the test's ``screenshots/`` folder."""

from __future__ import annotations

from pathlib import Path

from shoal.batch.units import unit_id
from shoal.llm.scripted import ScriptedModelServer
from shoal.paths import Home
from tests.conftest import wait_for
from tests.test_api import TOKEN, bare_repo, request
from tests.test_api_views import priced_env, priced_script, run_priced_task
from tests.test_dashboard import browser, open_dashboard  # noqa: F401  (the fixture)

LOOP = ("plan", "exec", "eval")


def screenshots(tmp_path: Path) -> Path:
    shots = tmp_path / "screenshots"
    shots.mkdir()
    print(f"screenshots: {shots}")
    return shots


def test_a_tasks_message_flow_and_its_costs_show_on_the_page_as_it_runs(
    home: Home,
    tmp_path: Path,
    browser,  # noqa: F811
) -> None:  # type: ignore[no-untyped-def]
    repo = bare_repo(tmp_path)
    shots = screenshots(tmp_path)
    with ScriptedModelServer(priced_script()) as server:
        base, page, errors = open_dashboard(browser, priced_env(server))
        api = f"{base}/api/v1"
        page.evaluate("window.mark = 1")
        page.wait_for_selector("#cost-chart text.axis", timeout=15_000)  # drawn, no bars yet
        assert page.query_selector_all("#cost-chart rect.bar") == []
        task_id = run_priced_task(api, repo)
        for step in LOOP:
            for kind in (f"{step}.request", f"{step}.result"):
                page.wait_for_selector(f"#flow-table tr[data-kind='{kind}']", timeout=90_000)
        for step, actor in zip(LOOP, ("planner", "executor", "evaluator"), strict=True):
            sent = page.eval_on_selector_all(
                f"#flow-table tr[data-kind='{step}.request']",
                "rows => rows.map(r => [r.dataset.sender, r.dataset.recipient])",
            )
            # To the actor the broker picked, not to the role.
            assert sent and all(s == "orchestrator" and r.startswith(f"{actor}-") for s, r in sent)
        names = page.eval_on_selector_all("#flow-graph .node", "ns => ns.map(n => n.dataset.name)")
        assert "orchestrator" in names and "*" in names, names
        assert {n.split("-")[0] for n in names} >= {"planner", "executor", "evaluator"}, names
        assert len(page.query_selector_all("#flow-graph path.arrow")) >= 6
        page.wait_for_selector(f"#task-{task_id}[data-status=accepted]", timeout=90_000)

        # The counts on the page are the broker's (the summaries added up as they came).
        def shown(kind: str) -> int:
            counts = page.eval_on_selector_all(
                f"#flow-table tr[data-kind='{kind}'] .count", "cs => cs.map(c => +c.textContent)"
            )
            return sum(counts)

        def served(kind: str) -> int:
            flow = request("GET", f"{api}/flow", token=TOKEN)[1]
            return sum(e["count"] for e in flow["edges"] if e["kind"] == kind)

        assert served("exec.event") > 0
        wait_for(lambda: shown("exec.event") == served("exec.event"), 5,
                 what="the page's counts to be the broker's")  # fmt: skip
        page.locator("#flow-view").screenshot(path=str(shots / "flow.png"))

        # The cost chart grew from the usage.recorded events: one bar per role this hour.
        page.wait_for_function(
            "document.querySelectorAll('#cost-chart rect.bar').length >= 3", timeout=15_000
        )
        keys = page.eval_on_selector_all("#cost-chart rect.bar", "bs => bs.map(b => b.dataset.key)")
        assert set(keys) == {"planner", "executor", "evaluator"}, keys
        series = request("GET", f"{api}/cost/series", token=TOKEN)[1]
        assert series["total_usd"] > 0
        said = f"${series['total_usd']:.4f} and 4400 tokens"
        page.wait_for_selector(f"#cost-total:has-text('{said}')", timeout=5_000)
        page.locator("#cost-view").screenshot(path=str(shots / "costs.png"))
        # Per model and per minute, read again from the series.
        page.select_option("#cost-form select[name=by]", "model")
        page.wait_for_selector("#cost-chart rect.bar[data-key='openai/gpt-4o']", timeout=15_000)
        page.select_option("#cost-form select[name=bucket]", "minute")
        page.wait_for_selector("#cost-total:has-text('60 minutes')", timeout=15_000)
        bars = page.eval_on_selector_all("#cost-chart rect.bar", "bs => bs.map(b => b.dataset.key)")
        assert bars and set(bars) == {"openai/gpt-4o"}, bars
        assert page.evaluate("window.mark") == 1  # all of it live: the page never reloaded
        page.screenshot(path=str(shots / "views-page.png"), full_page=True)
        assert all((shots / n).stat().st_size > 5_000 for n in ("flow.png", "costs.png"))
        assert errors == []


def test_a_batchs_units_show_running_then_done_on_the_page(
    home: Home,
    tmp_path: Path,
    browser,  # noqa: F811
) -> None:  # type: ignore[no-untyped-def]
    from tests.test_batch import make_repo, script, start_local_batch

    repo, names = make_repo(tmp_path, 3)
    shots = screenshots(tmp_path)
    with ScriptedModelServer(script(names, delays={"m00.py": 4.0})) as server:
        _base, page, errors = open_dashboard(browser, {"SHOAL_API_TOKEN": TOKEN})
        assert page.is_visible("#no-batches") and not page.is_visible("#batch-detail")
        batch = start_local_batch(repo, server)
        try:
            slow = f"#unit-{unit_id('m00.py')}"
            # m00's model call waits 4 s: running on the page while the others end.
            page.wait_for_selector(f"{slow}[data-status=running]", timeout=60_000)
            page.wait_for_selector("#batches tr[data-status=running]", timeout=5_000)
            page.locator("#batches-view").screenshot(path=str(shots / "batch-running.png"))
            page.wait_for_selector("#batches tr[data-status=done]", timeout=120_000)
            _, err = batch.communicate(timeout=60)
        finally:
            if batch.poll() is None:
                batch.kill()
                batch.wait()
        assert batch.returncode == 0, err[-3000:]
        for name in names:
            page.wait_for_selector(f"#unit-{unit_id(name)}[data-status=accepted]", timeout=10_000)
        assert "3 of 3 units done, 3 accepted" in page.inner_text("#batch-title")
        assert page.inner_text("#batches tr[data-status=done] td.done") == "3/3"
        assert not page.is_visible("#no-batches")
        page.locator("#batches-view").screenshot(path=str(shots / "batch.png"))
        assert (shots / "batch.png").stat().st_size > 5_000
        assert errors == []
