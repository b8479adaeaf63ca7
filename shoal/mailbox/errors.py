"""Errors a mailbox client raises."""

from __future__ import annotations


class MailboxError(Exception):
    """Base of mailbox client errors."""


class MailboxTimeout(MailboxError):
    """No reply arrived in time."""


class RemoteError(MailboxError):
    """The recipient (or the broker) answered with a ``mailbox.error``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
