"""Work a request hands off the broker's thread: DuckDB queries, embedding, tmux.

Each job gets a cursor of its own from the database's writer (the orchestrator's one
connection, so the single-writer rule holds) and its result is posted as the reply.
Most jobs get a thread of their own, so a slow query never stalls routing or another
request; ``serial`` jobs share one thread and run in the order they came, so a team
task list's claim can never interleave with another claim, nor two imports of
learnings with each other.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from shoal.messages.actors import ErrorReply
from shoal.messages.base import Payload

if TYPE_CHECKING:
    from shoal.mailbox.envelope import Envelope
    from shoal.orchestrator.router import Post
    from shoal.store.database import Writer

log = logging.getLogger(__name__)

Job = Callable[[Any], Payload]
"""Work on a cursor; its result is the reply."""


class Workers:
    def __init__(self, db: Writer, post: Post) -> None:
        self._db = db
        self._post = post
        self._serial = ThreadPoolExecutor(1, thread_name_prefix="serial")

    def run(self, env: Envelope, job: Job, *, serial: bool = False) -> None:
        """Do ``job`` off the broker's thread and reply to ``env`` with what it returns.

        A ``LookupError`` or ``ValueError`` is a ``refused`` reply; anything else is
        logged and replied as ``handler_failed``.
        """

        def work() -> None:
            cur = self._db.cursor()
            try:
                reply: Payload = job(cur)
            except (LookupError, ValueError) as exc:
                reply = ErrorReply(code="refused", message=str(exc.args[0] if exc.args else exc))
            except Exception as exc:
                log.exception("%s failed", env.kind)
                reply = ErrorReply(code="handler_failed", message=f"{type(exc).__name__}: {exc}")
            finally:
                cur.close()
            self._post(reply, env.sender, reply_to=env.id, task_id=env.task_id)

        if serial:
            self._serial.submit(work)
        else:
            threading.Thread(target=work, name=env.kind, daemon=True).start()
