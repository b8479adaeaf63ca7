"""Actors as Ray actors on a private local Ray that the orchestrator starts and stops."""

from __future__ import annotations

import ipaddress
import os
import signal
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from shoal import daemon
from shoal.launchers import pid_alive
from shoal.mailbox.client import MailboxClient
from shoal.messages.actors import ActorSpawn, EchoReply, EchoRequest
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
    reply = daemon.request(home, ActorSpawn(role="echo"), timeout=30)
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
    # Ray runs without authentication here: every port it listens on is on loopback.
    listening = _listening_addresses(ray_pids)
    assert listening and all(ipaddress.ip_address(a).is_loopback for a in listening), listening

    daemon.stop(home)
    wait_for(lambda: not pid_alive(actor.pid), timeout=20, what="the Ray actor to stop")
    wait_for(lambda: not processes_with_home(str(home.root)), timeout=30, what="Ray to stop")
    assert list(user_home.iterdir()) == []  # no ~/.ray token, no bootstrap file
    assert proxy.seen == []  # type: ignore[attr-defined]


def test_a_killed_ray_actor_is_restarted_and_ray_ends_with_a_killed_orchestrator(
    home: Home,
) -> None:
    env = {"SHOAL_BACKEND": "ray", "SHOAL_RAY_NUM_CPUS": "1"}
    daemon.start(home, env=env)
    name = daemon.request(home, ActorSpawn(role="echo"), timeout=30).names[0]
    with MailboxClient(home.mailbox_endpoint) as client:
        client.request(name, EchoRequest(text="up"), timeout=120)
        first = next(a for a in daemon.status(home).actors if a.name == name)
        assert first.pid is not None
        os.kill(first.pid, signal.SIGKILL)

        def restarted() -> bool:
            actor = next(a for a in daemon.status(home).actors if a.name == name)
            return actor.restarts == 1 and actor.state == "ready" and actor.pid != first.pid

        wait_for(restarted, timeout=60, what="the killed Ray actor to be restarted")
        answer = client.request(name, EchoRequest(text="again"), timeout=60).parse_payload()
        assert isinstance(answer, EchoReply) and answer.text == "again"
    status = daemon.status(home)
    ray_pids = [
        p
        for p in processes_with_home(str(home.root))
        if b"raylet" in Path(f"/proc/{p}/cmdline").read_bytes()
    ]
    assert ray_pids
    # Ray's own processes run with the stand-in HOME; the orchestrator never had it.
    raylet_env = Path(f"/proc/{ray_pids[0]}/environ").read_bytes().split(b"\0")
    assert f"HOME={home.root / 'ray' / 'home'}".encode() in raylet_env
    os.kill(status.pid, signal.SIGKILL)
    # The child serving Ray sees its stdin close and stops it; the Ray actor goes with it.
    wait_for(lambda: not processes_with_home(str(home.root)), timeout=60, what="Ray to stop")


def _listening_addresses(pids: list[int]) -> list[str]:
    """The local addresses of the TCP sockets ``pids`` listen on (from /proc/net)."""
    inodes = set()
    for pid in pids:
        try:
            fds = list(Path(f"/proc/{pid}/fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    found = []
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A" or fields[9] not in inodes:  # 0A: LISTEN
                continue
            raw = bytes.fromhex(fields[1].split(":")[0])
            # /proc/net shows each 32-bit word in host (little-endian) order.
            words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
            address = ipaddress.ip_address(words)
            if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
                address = address.ipv4_mapped
            found.append(str(address))
    return found
