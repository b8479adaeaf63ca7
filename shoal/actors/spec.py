"""What an actor process is started from: its spec, the same for every launcher."""

from __future__ import annotations

from pydantic import BaseModel

from shoal.mailbox.curve import MailboxAddress


class ActorSpec(BaseModel):
    """Everything an actor process needs to start; it travels as JSON."""

    name: str
    """The actor's address (its DEALER identity); stable across restarts."""
    role: str
    """Role in :mod:`shoal.actors.registry`."""
    home: str
    """SHOAL_HOME of the orchestrator it belongs to."""
    launcher: str = "local"
    heartbeat_interval: float = 1.0
    orphan_timeout: float = 30.0
    mailbox: MailboxAddress | None = None
    """Where to reach the mailbox when not through ``home``'s ipc socket (another host:
    TCP with CurveZMQ keys)."""

    def mailbox_address(self) -> MailboxAddress:
        from shoal.paths import Home

        return self.mailbox or MailboxAddress(endpoint=Home.resolve(self.home).mailbox_endpoint)
