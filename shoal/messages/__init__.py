"""Every message kind's payload, by domain, each class named after its kind.

Reply kinds end in ``.result`` (``echo.reply``, the test role's, and ``mailbox.error``
aside). Importing this package registers every kind (see :mod:`shoal.messages.base`).
"""

from shoal.messages import actors, batch, chat, memory, store, tasks, teams

__all__ = ["actors", "batch", "chat", "memory", "store", "tasks", "teams"]
