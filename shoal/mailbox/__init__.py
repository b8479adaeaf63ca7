"""Mailboxes: the envelope every message travels in, its wire frames, and the clients.

- :mod:`shoal.mailbox.envelope`: the envelope and every message kind's payload.
- :mod:`shoal.mailbox.wire`: the frames on the ZeroMQ sockets and their limits.
- :mod:`shoal.mailbox.sockets`: socket options shoal always sets.
- :mod:`shoal.mailbox.client`: a DEALER client for synchronous code.
- :mod:`shoal.mailbox.aio`: the same client for asyncio code.
- :mod:`shoal.mailbox.events`: subscribers to the event bus.
"""
