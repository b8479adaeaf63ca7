"""CurveZMQ for the mailbox on TCP: keys under ``$SHOAL_HOME/keys``, and who may connect.

The orchestrator's ROUTER is also bound on TCP when actors run on other hosts,
and then always as a CURVE server. Encryption alone would let anyone who knows
the server's public key in, so a ZAP handler admits only clients whose public
key is the team's: workers are handed the team's client keys, a peer without
them is refused before any frame reaches the broker. Loopback stays ipc.

Keys are made once per home, z85 text in files readable by the owner only.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, SecretStr

if TYPE_CHECKING:
    import zmq

    from shoal.paths import Home


class CurveClientKeys(BaseModel):
    """What a client needs to reach a CURVE mailbox: the server's public key and its own pair."""

    server_public: str
    public: str
    secret: SecretStr


class MailboxAddress(BaseModel):
    """Where a mailbox client connects, and with which keys (none for ipc)."""

    endpoint: str
    curve: CurveClientKeys | None = None


def tcp_file(home: Home) -> Path:
    """Where the running orchestrator notes its TCP mailbox endpoint (``run/``, mode 0700)."""
    return home.run / "mailbox.tcp"


def keys_dir(home: Home) -> Path:
    return home.root / "keys"


def _load_or_make(path: Path) -> tuple[str, str]:
    """(public, secret) z85 keys from ``path``, made (0600) on first use."""
    import zmq

    if path.exists():
        data = json.loads(path.read_text())
        return data["public"], data["secret"]
    public, secret = (k.decode() for k in zmq.curve_keypair())
    path.parent.mkdir(mode=0o700, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"public": public, "secret": secret}, f)
    os.replace(tmp, path)
    return public, secret


def server_keys(home: Home) -> tuple[str, str]:
    return _load_or_make(keys_dir(home) / "mailbox-server.json")


def client_keys(home: Home) -> CurveClientKeys:
    """The team's client keys: what workers on other hosts are handed."""
    server_public, _ = server_keys(home)
    public, secret = _load_or_make(keys_dir(home) / "mailbox-client.json")
    return CurveClientKeys(server_public=server_public, public=public, secret=SecretStr(secret))


class _TeamOnly:
    """ZAP callback: only the team's client public key gets in."""

    def __init__(self, allowed: bytes) -> None:
        self.allowed = allowed

    def callback(self, domain: str, key: bytes) -> bool:
        import hmac

        return hmac.compare_digest(key, self.allowed)  # z85 text of the client's public key


def bind_tcp(ctx: zmq.Context, sock: zmq.Socket, home: Home, address: str) -> tuple[str, Any]:
    """Bind ``sock`` on ``tcp://address`` as a CURVE server; returns (endpoint, authenticator).

    Call after the socket's ipc binds: ZeroMQ copies security options into each
    listener when it binds, so the ipc endpoints stay plain.
    """
    from zmq.auth.thread import ThreadAuthenticator

    public, secret = server_keys(home)
    team = client_keys(home)
    auth = ThreadAuthenticator(ctx)
    auth.start()
    auth.configure_curve_callback(domain="*", credentials_provider=_TeamOnly(team.public.encode()))
    sock.curve_secretkey = secret.encode()
    sock.curve_publickey = public.encode()
    sock.curve_server = True
    sock.bind(f"tcp://{address}")
    import zmq

    # Later binds of this socket would be CURVE too; none are made.
    return sock.get(zmq.LAST_ENDPOINT).decode(), auth


def secure_client(sock: zmq.Socket, keys: CurveClientKeys) -> None:
    """Make ``sock`` a CURVE client of the server ``keys`` names (before connecting)."""
    sock.curve_serverkey = keys.server_public.encode()
    sock.curve_publickey = keys.public.encode()
    sock.curve_secretkey = keys.secret.get_secret_value().encode()
