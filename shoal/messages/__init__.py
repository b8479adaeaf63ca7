"""Every message kind's payload, by domain, each class named after its kind.

Reply kinds end in ``.result`` (``echo.reply``, the test role's, and ``mailbox.error``
aside). The domain modules are imported where they are used; looking a payload class
up by kind (:func:`shoal.messages.base.payload_type`) imports them all first.
"""

DOMAINS = ("actors", "batch", "chat", "memory", "store", "tasks", "teams")
"""The modules of :mod:`shoal.messages`, one per domain."""
