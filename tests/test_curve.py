"""The mailbox on TCP is CurveZMQ-only: the team's keys get in, anyone else is refused."""

from __future__ import annotations

import pytest
import zmq

from shoal import daemon
from shoal.client import query as read
from shoal.mailbox import curve, sockets
from shoal.mailbox.client import MailboxClient
from shoal.mailbox.envelope import ORCHESTRATOR
from shoal.mailbox.errors import MailboxTimeout
from shoal.messages.actors import EchoRequest, OrchestratorStatus, OrchestratorStatusResult
from shoal.paths import Home

pytestmark = pytest.mark.timeout(60)


def test_a_tcp_client_without_the_curve_key_cannot_send_or_receive(home: Home) -> None:
    daemon.start(home, env={"SHOAL_MAILBOX_TCP": "127.0.0.1:0"})
    endpoint = curve.tcp_file(home).read_text().strip()
    assert endpoint.startswith("tcp://127.0.0.1:")
    keys = curve.client_keys(home)
    for path in curve.keys_dir(home).iterdir():
        assert path.stat().st_mode & 0o777 == 0o600
    assert curve.keys_dir(home).stat().st_mode & 0o777 == 0o700

    with MailboxClient(endpoint, "team-member", keys) as member:
        reply = member.request(ORCHESTRATOR, OrchestratorStatus(), timeout=10).parse_payload()
        assert isinstance(reply, OrchestratorStatusResult)

        # No keys at all, then a key pair of its own with the server's public key:
        # neither handshake completes, so nothing it sends arrives and nothing reaches it.
        public, secret = (k.decode() for k in zmq.curve_keypair())
        strangers = {
            "no-keys": None,
            "own-keys": curve.CurveClientKeys(
                server_public=keys.server_public, public=public, secret=secret
            ),
        }
        for name, stranger_keys in strangers.items():
            with MailboxClient(endpoint, name, stranger_keys) as stranger:
                with pytest.raises(MailboxTimeout):
                    stranger.request(ORCHESTRATOR, OrchestratorStatus(), timeout=1.0)
                member.send(name, EchoRequest(text="for you"))
                assert stranger.recv(timeout=0.5) is None

    # ipc on this host stays plain and works alongside.
    assert daemon.status(home).pid > 0
    senders = {row[2] for row in read(home, "messages.recent", {"limit": 1000}).rows}
    assert "team-member" in senders
    assert not senders & set(strangers)


def test_frames_of_a_peer_without_the_key_never_reach_the_broker(home: Home) -> None:
    """A frame that reached the broker would be routed (and recorded) or counted as
    dropped; the same frames from a member with the key are counted, so the counter
    would see them. From peers without the key, neither happens."""
    import zmq

    from shoal.mailbox import wire
    from shoal.mailbox.envelope import Envelope
    from tests.conftest import wait_for

    daemon.start(home, env={"SHOAL_MAILBOX_TCP": "127.0.0.1:0"})
    endpoint = curve.tcp_file(home).read_text().strip()
    keys = curve.client_keys(home)
    public, secret = (k.decode() for k in zmq.curve_keypair())
    garbage = [[b"Z", b"{}"], [wire.MSG, b"not json"], [wire.ACK, b"[1, 2"]]

    def frames(identity: str) -> list[list[bytes]]:
        valid = Envelope.of(EchoRequest(text="hi"), sender=identity, recipient=ORCHESTRATOR)
        return [*garbage, [wire.MSG, valid.encode()]]

    ctx = zmq.Context()
    peers = {
        "no-keys": sockets.dealer(ctx, "no-keys", endpoint),
        "own-keys": sockets.dealer(
            ctx, "own-keys", endpoint,
            curve.CurveClientKeys(server_public=keys.server_public, public=public, secret=secret),
        ),
        "member": sockets.dealer(ctx, "member", endpoint, keys),
    }  # fmt: skip
    try:
        for name in ("no-keys", "own-keys"):
            for _ in range(20):
                for frame in frames(name):
                    peers[name].send_multipart(frame)
        for frame in frames("member"):  # the control: a peer with the key
            peers["member"].send_multipart(frame)
        wait_for(lambda: daemon.status(home).messages.dropped >= 3, what="the member's drops")
        counters = daemon.status(home).messages
    finally:
        for sock in peers.values():
            sock.close(0)
        ctx.term()
    assert counters.dropped == len(garbage)  # the member's garbage only
    senders = {row[2] for row in read(home, "messages.recent", {"limit": 1000}).rows}
    assert "member" in senders and not senders & {"no-keys", "own-keys"}
