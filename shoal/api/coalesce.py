"""One call in flight for many callers: what a dashboard or a script polls.

``GET /api/v1/status`` under polling is many threads asking the orchestrator the
same question at once; each asked it over the mailbox and the orchestrator (one
process, one GIL) answered each. Callers that arrive while a call is in flight now
wait for it and share its answer (or its error), so the orchestrator answers once
per round trip however many poll. An answer is at most one round trip older than
the request it answers (it began before the request came), never cached beyond.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Generic, TypeVar

T = TypeVar("T")


class Coalesced(Generic[T]):
    def __init__(self, call: Callable[[], T]) -> None:
        self._call = call
        self._lock = threading.Lock()
        self._flight: Future[T] | None = None

    def __call__(self) -> T:
        with self._lock:
            flight = self._flight
            leads = flight is None
            if flight is None:
                flight = self._flight = Future()
        if not leads:
            return flight.result()
        try:
            flight.set_result(self._call())
        except BaseException as exc:  # every waiter gets the leader's error, as it did
            flight.set_exception(exc)
        finally:
            with self._lock:
                self._flight = None
        return flight.result()
