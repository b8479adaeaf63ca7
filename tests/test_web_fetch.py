"""web_fetch against local servers only: text out of HTML, bounds, redirects and addresses."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from shoal.llm.script import Script
from shoal.llm.scripted import ScriptedModelServer
from shoal.paths import Home
from shoal.tools import Permissions, Toolbox, Workspace
from shoal.tools.permissions import Rule
from shoal.tools.web import public, web_fetch
from tests.conftest import shoal
from tests.test_loop import call, make_repo, model_env, plan, verdict

PAGE = (
    "<html><head><title>Release notes</title><style>p {color: red}</style>"
    "<script>var secret = 'do not show';</script></head><body>"
    "<h1>Version 2.0</h1><p>The <b>frobnicate</b> flag is gone; use "
    '<a href="/docs">--frob</a>.</p><ul><li>faster</li><li>smaller</li></ul></body></html>'
)
BIG = 50 * 1024 * 1024


class Site:
    """A local web server on ``host``; ``routes`` map paths to handlers."""

    def __init__(self, host: str) -> None:
        site = self
        self.hits: list[str] = []

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                site.hits.append(self.path)
                site.answer(self)

        self.httpd = ThreadingHTTPServer((host, 0), Handler)
        self.httpd.daemon_threads = True
        self.base = f"http://{host}:{self.httpd.server_address[1]}"
        self.redirects: dict[str, str] = {}
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def answer(self, h: BaseHTTPRequestHandler) -> None:
        if h.path in self.redirects:
            h.send_response(302)
            h.send_header("Location", self.redirects[h.path])
            h.send_header("Content-Length", "0")
            h.end_headers()
        elif h.path == "/page":
            self.send(h, "text/html; charset=utf-8", PAGE.encode())
        elif h.path == "/host":
            self.send(h, "text/plain", h.headers.get("Host", "").encode())
        elif h.path == "/binary":
            self.send(h, "application/octet-stream", b"\0\1\2")
        elif h.path == "/slow":
            time.sleep(4)
            self.send(h, "text/plain", b"late")
        elif h.path == "/big":
            h.send_response(200)
            h.send_header("Content-Type", "text/plain")
            h.send_header("Content-Length", str(BIG))
            h.end_headers()
            chunk = b"x" * (1024 * 1024)
            try:
                for _ in range(BIG // len(chunk)):
                    h.wfile.write(chunk)
            except OSError:
                pass  # the client stopped reading at its bound
        else:
            self.send(h, "text/plain", b"not here", status=404)

    @staticmethod
    def send(h: BaseHTTPRequestHandler, kind: str, body: bytes, status: int = 200) -> None:
        h.send_response(status)
        h.send_header("Content-Type", kind)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def site() -> Iterator[Site]:
    s = Site("127.0.0.2")  # loopback, but another address than 127.0.0.1
    yield s
    s.close()


def toolbox(tmp_path: Path, *rules: str, mode: str = "accept-edits") -> Toolbox:
    parsed = []
    for text in rules:
        action, _, rest = text.partition(" ")
        tool, _, pattern = rest.partition(":")
        parsed.append(Rule(action=action, tool=tool, pattern=pattern or None))
    box = Toolbox(Workspace([tmp_path], tmp_path / "out"), Permissions(mode=mode, rules=parsed))
    box.add([web_fetch(lambda: box.permissions)])
    return box


def fetch(box: Toolbox, url: str, **more: object) -> tuple[bool, str]:
    result = box.call("web_fetch", {"url": url, **more})
    return result.ok, result.output


def test_a_local_page_comes_back_as_markdown_text(site: Site, tmp_path: Path) -> None:
    box = toolbox(tmp_path, "allow web_fetch:127.0.0.2")
    ok, text = fetch(box, f"{site.base}/page")
    assert ok, text
    assert text.startswith("# Release notes\n\n# Version 2.0")
    assert "The **frobnicate** flag is gone; use [--frob](/docs)." in text
    assert "- faster\n- smaller" in text
    assert "do not show" not in text and "color: red" not in text
    assert f"[{site.base}/page: HTTP 200, text/html" in text
    ok, host = fetch(box, f"{site.base}/host")  # connected by address, asked by name
    assert ok and host.startswith(site.base.removeprefix("http://"))
    ok, binary = fetch(box, f"{site.base}/binary")
    assert not ok and "is application/octet-stream, not text" in binary
    ok, missing = fetch(box, f"{site.base}/nothing")
    assert not ok and "HTTP 404" in missing
    ok, scheme = fetch(box, "file:///etc/passwd")
    assert not ok and "is not an http:// or https:// URL" in scheme


def test_a_50_mb_page_is_cut_at_the_bound(site: Site, tmp_path: Path) -> None:
    box = toolbox(tmp_path, "allow web_fetch:127.0.0.2")
    started = time.monotonic()
    ok, text = fetch(box, f"{site.base}/big", max_bytes=300_000)
    assert ok, text[-300:]
    assert "300,000 bytes, cut at max_bytes=300,000" in text
    assert time.monotonic() - started < 20  # it did not read 50 MB first
    saved = box.call("web_fetch", {"url": f"{site.base}/big", "max_bytes": 300_000})
    assert saved.truncated_path  # past the model's output limit: the rest is in a file
    assert Path(saved.truncated_path).stat().st_size < 400_000


def test_redirects_to_non_public_addresses_are_refused(site: Site, tmp_path: Path) -> None:
    box = toolbox(tmp_path, "allow web_fetch:127.0.0.2")
    other = Site("127.0.0.1")
    try:
        site.redirects["/metadata"] = "http://169.254.169.254/latest/meta-data/"
        site.redirects["/loopback"] = f"{other.base}/page"
        site.redirects["/same"] = "/page"
        ok, text = fetch(box, f"{site.base}/metadata")
        assert not ok and "169.254.169.254 is at 169.254.169.254, which is not a public" in text
        ok, text = fetch(box, f"{site.base}/loopback")
        assert not ok and "127.0.0.1, which is not a public address" in text
        assert other.hits == []  # refused before any connection
        ok, text = fetch(box, f"{site.base}/same")
        assert ok and "Version 2.0" in text
        # Allowed by name, the loopback redirect goes through.
        both = toolbox(tmp_path, "allow web_fetch:127.0.0.2", "allow web_fetch:127.0.0.1")
        ok, text = fetch(both, f"{site.base}/loopback")
        assert ok and "Version 2.0" in text and other.hits == ["/page"]
        # A deny rule stops a hop too.
        denied = toolbox(
            tmp_path,
            "allow web_fetch:127.0.0.2",
            "allow web_fetch:127.0.0.1",
            "deny web_fetch:127.0.0.1",
        )
        ok, text = fetch(denied, f"{site.base}/loopback")
        assert not ok and "redirected to" in text and "denied by the permission rule" in text
    finally:
        other.close()


def test_names_and_patterns_do_not_open_private_addresses(site: Site, tmp_path: Path) -> None:
    port = site.base.rsplit(":", 1)[1]
    wildcard = toolbox(tmp_path, "allow web_fetch:*")
    ok, text = fetch(wildcard, f"{site.base}/page")
    assert not ok and "not a public address" in text and "--allow 'web_fetch:127.0.0.2'" in text
    local = Site("127.0.0.1")
    try:
        by_name = f"http://localhost:{local.base.rsplit(':', 1)[1]}/page"
        ok, text = fetch(toolbox(tmp_path, "allow web_fetch:localhost"), by_name)
        assert ok and "Version 2.0" in text
        ok, text = fetch(toolbox(tmp_path, "allow web_fetch:local*"), by_name)
        assert not ok and "localhost is at 127.0.0.1" in text
    finally:
        local.close()
    asks = toolbox(tmp_path)  # no rule: it would ask, and nobody is there to
    ok, text = fetch(asks, f"http://127.0.0.2:{port}/page")
    assert not ok and "web_fetch needs approval" in text and "--allow 'web_fetch:127.0.0.2'" in text
    plan = toolbox(tmp_path, "allow web_fetch:127.0.0.2", mode="plan")
    assert fetch(plan, f"{site.base}/page")[0]  # plan mode is read-only, not offline
    assert not public("10.1.2.3") and not public("fc00::1") and not public("::ffff:127.0.0.1")
    assert not public("100.64.0.1") and public("93.184.216.34")


def test_a_slow_server_times_out(site: Site, tmp_path: Path) -> None:
    box = toolbox(tmp_path, "allow web_fetch:127.0.0.2")
    started = time.monotonic()
    ok, text = fetch(box, f"{site.base}/slow", timeout=1)
    assert not ok and "did not answer within 1 s" in text
    assert time.monotonic() - started < 3


def test_the_executor_fetches_a_page_when_a_rule_allows_it(
    home: Home, tmp_path: Path, site: Site
) -> None:
    repo = make_repo(tmp_path)
    script = Script.model_validate(
        {
            "models": {
                "scripted-planner": [plan()],
                "scripted-executor": [
                    call("web_fetch", url=f"{site.base}/page"),
                    call("finish", summary="read the notes"),
                ],
                "scripted-evaluator": [verdict(0.3)],
            }
        }
    )
    with ScriptedModelServer(script) as server:
        ran = shoal(
            "run", "read the notes", "-C", str(repo), "--json", "-i", "1",
            "--allow", "web_fetch:127.0.0.2",
            env=model_env(server), timeout=120,
        )  # fmt: skip
        seen = server.requests_for("scripted-executor")[1]["messages"][-1]["content"]
    assert json.loads(ran.stdout)["task_id"], ran.stderr
    assert "The **frobnicate** flag is gone" in seen
    assert site.hits == ["/page"]


def test_the_chat_fetches_a_page_when_a_rule_allows_it(
    home: Home, tmp_path: Path, site: Site
) -> None:
    from tests.test_chat import chat_env, chat_lines

    repo = make_repo(tmp_path)
    home.ensure()
    home.config_file.write_text('[shoal]\nallow = ["web_fetch:127.0.0.2"]\n')
    script = {
        "models": {
            "scripted-chat": [call("web_fetch", url=f"{site.base}/page"), "Version 2.0 dropped it."]
        }
    }
    with ScriptedModelServer(script) as server:
        out = chat_lines(repo, ["what changed in 2.0?"], chat_env(server))
        seen = server.requests_for("scripted-chat")[1]["messages"][-1]["content"]
    assert out.returncode == 0, out.stderr
    assert "The **frobnicate** flag is gone" in seen and "Version 2.0 dropped it." in out.stdout
