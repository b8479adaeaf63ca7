"""Actors as Ray actors on a private local Ray that the orchestrator starts and stops."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from shoal.launchers import pid_alive
from shoal.mailbox.client import MailboxClient
from shoal.mailbox.envelope import EchoReply, EchoRequest, SpawnRequest
from shoal.orchestrator import daemon
from shoal.paths import Home
from tests.conftest import processes_with_home, wait_for

pytestmark = pytest.mark.timeout(180)


class _Recorder(BaseHTTPRequestHandler):
    def _any(self) -> None:
        self.server.seen.append(f"{self.command} {self.path}")  # type: ignore[attr-defined]
        self.send_response(404)
        self.end_headers()

    do_GET = do_POST = do_PUT = do_CONNECT = _any

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def proxy() -> Iterator[ThreadingHTTPServer]:
    """An HTTP proxy on loopback that records what would have left the machine."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    server.seen = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_the_ray_backend_runs_actors_on_a_private_local_ray_that_asks_nothing_outside(
    home: Home, tmp_path: Path, proxy: ThreadingHTTPServer
) -> None:
    user_home = tmp_path / "user"
    user_home.mkdir()
    url = f"http://127.0.0.1:{proxy.server_address[1]}"
    env = {
        "SHOAL_BACKEND": "ray",
        "SHOAL_RAY_NUM_CPUS": "2",
        "HOME": str(user_home),
        # Ray's metadata probes use requests, which honours these: a probe of
        # 169.254.169.254 or metadata.google.internal would arrive at the recorder.
        "HTTP_PROXY": url,
        "http_proxy": url,
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    }
    daemon.start(home, env=env)
    reply = daemon.request(home, SpawnRequest(role="echo"), timeout=30)
    name = reply.names[0]
    with MailboxClient(home.mailbox_endpoint) as client:
        answer = client.request(name, EchoRequest(text="over ray"), timeout=120).parse_payload()
    assert isinstance(answer, EchoReply) and answer.handled_by == name
    actor = next(a for a in daemon.status(home).actors if a.name == name)
    assert actor.launcher == "ray" and actor.state == "ready" and actor.pid
    cmdline = Path(f"/proc/{actor.pid}/cmdline").read_bytes()
    assert b"shoal.launchers.ray" in cmdline  # the actor runtime, started by its Ray host
    sessions = list((home.root / "ray").glob("session_*"))
    assert sessions, "Ray's temp dir is not under SHOAL_HOME"
    ray_pids = processes_with_home(str(home.root))
    assert any(b"raylet" in Path(f"/proc/{p}/cmdline").read_bytes() for p in ray_pids)

    daemon.stop(home)
    wait_for(lambda: not pid_alive(actor.pid), timeout=20, what="the Ray actor to stop")
    wait_for(lambda: not processes_with_home(str(home.root)), timeout=30, what="Ray to stop")
    assert list(user_home.iterdir()) == []  # no ~/.ray token, no bootstrap file
    assert proxy.seen == []  # type: ignore[attr-defined]
