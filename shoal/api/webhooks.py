"""Webhooks: events from the bus, POSTed signed to receivers, retried, every attempt recorded.

Events: ``task.complete`` (a task ended accepted or unaccepted), ``task.failed``
(it failed or was cancelled; ``status`` says which) and ``budget.warning`` (a
task passed 80% of a token, cost or time budget). The body is JSON:
``{"id", "event", "created_at", "task_id", "data"}``; ``data`` is the task's
``task.done`` or the ``budget.warning`` payload.

Headers: ``X-Shoal-Signature: sha256=<hex HMAC-SHA256 of the raw body>``,
``X-Shoal-Event``, ``X-Shoal-Delivery`` (the same on every attempt: receivers
deduplicate by it), ``X-Shoal-Timestamp`` and ``X-Shoal-Attempt``.

Delivery runs on worker threads fed by a subscriber thread, never on the
broker's. A connection error, a timeout, 408, 425, 429 or 5xx is retried (at
most ``max_attempts`` attempts in all) after the model calls' backoff
(:func:`shoal.llm.retry.backoff`: full jitter below ``backoff * 2^(attempt-1)``,
capped at ``backoff_cap``), or after the receiver's ``Retry-After`` on 429 and
503 (up to ``max_retry_after``; asking for longer ends the delivery). A retry
waits in a timer heap, not in a worker: a slow receiver never holds up the
others. Other answers are final. Each attempt is a ``webhook_deliveries`` row
with the receiver's scheme, host and port only: URLs and secrets are never
recorded.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import hashlib
import heapq
import hmac
import http.client
import itertools
import json
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from shoal import __version__
from shoal.api.settings import WebhookConfig
from shoal.ids import new_id
from shoal.llm.retry import backoff, retry_after
from shoal.mailbox.envelope import Envelope
from shoal.messages.base import from_dict, to_dict
from shoal.messages.tasks import BudgetWarning, TaskDone
from shoal.store import webhooks as deliveries

log = logging.getLogger(__name__)

TOPICS = [TaskDone.kind, BudgetWarning.kind]
_RETRY_STATUS = frozenset({408, 425, 429})
_ASKS_TO_WAIT = frozenset({429, 503})
"""Answers whose ``Retry-After`` is honoured."""


def sign(key: bytes, body: bytes) -> str:
    """The ``X-Shoal-Signature`` value of ``body``."""
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


def event_of(env: Envelope) -> tuple[str, dict[str, Any]] | None:
    """The webhook event name and data of a bus message, or None if it is not one."""
    if env.kind == TaskDone.kind:
        done = from_dict(TaskDone, env.payload)
        name = "task.complete" if done.status in ("accepted", "unaccepted") else "task.failed"
        return name, to_dict(done)
    if env.kind == BudgetWarning.kind:
        return "budget.warning", to_dict(from_dict(BudgetWarning, env.payload))
    return None


def retry_wait(
    hook: WebhookConfig, attempt: int, status: int | None, asked: float | None
) -> tuple[float | None, str | None]:
    """Seconds before attempt ``attempt + 1``, or None and why not, after a retryable failure."""
    if attempt >= hook.max_attempts:
        return None, None
    if asked is not None and status in _ASKS_TO_WAIT:
        if asked > hook.max_retry_after:
            return None, f"Retry-After {asked:.0f}s is longer than max_retry_after"
        return asked, None
    return backoff(attempt, base=hook.backoff, cap=hook.backoff_cap), None


@dataclass(frozen=True)
class _Delivery:
    """One event for one webhook: the same body and signature on every attempt."""

    hook: WebhookConfig
    event: dict[str, Any]
    raw: bytes
    signature: str


@dataclass(frozen=True)
class _Answer:
    status: int | None
    error: str | None
    retry_after: float | None
    """Seconds the receiver asked to wait (``Retry-After``), if it did."""

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def _utc(seconds: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).replace(tzinfo=None)


class Dispatcher:
    """Follows the event bus and delivers matching events to each webhook."""

    def __init__(self, events_endpoint: str, record: Callable[[str, list[Any]], None]) -> None:
        self._endpoint = events_endpoint
        self._record = record
        self._configured: list[WebhookConfig] = []
        self._served: list[WebhookConfig] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="webhook")
        # Retries due later: (monotonic due time, tie-break, job), released to the pool by
        # one timer thread, so waiting for a retry never occupies a worker.
        self._due: list[tuple[float, int, Callable[[], None]]] = []
        self._order = itertools.count()
        self._wake = threading.Condition()
        self._timer: threading.Thread | None = None

    @property
    def hooks(self) -> list[WebhookConfig]:
        with self._lock:
            return self._configured + self._served

    def configure(
        self,
        configured: list[WebhookConfig] | None = None,
        served: list[WebhookConfig] | None = None,
    ) -> None:
        """Set config.toml's webhooks and/or ``shoal serve``'s; follow the bus once any exist."""
        with self._lock:
            if configured is not None:
                self._configured = list(configured)
            if served is not None:
                self._served = list(served)
            start = self._thread is None and bool(self._configured or self._served)
            if start:
                self._thread = threading.Thread(target=self._follow, name="webhooks", daemon=True)
        if start:
            assert self._thread is not None
            self._thread.start()

    def waiting(self) -> int:
        """Retries not yet due (an idle orchestrator stays up for them)."""
        with self._wake:
            return len(self._due)

    def close(self) -> None:
        self._stop.set()
        with self._wake:
            left, self._due = self._due, []
            self._wake.notify_all()
        for _, _, job in left:  # each is ``_attempt(delivery, attempt)``
            delivery, attempt = job.args
            stopped = _Answer(None, "not delivered: the orchestrator stopped before it", None)
            self._note(delivery.hook, delivery.event, attempt, stopped, 0.0, None)
        for thread in (self._thread, self._timer):
            if thread is not None:
                thread.join(5)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _follow(self) -> None:
        from shoal.mailbox.events import Subscriber

        with Subscriber(self._endpoint, TOPICS) as bus:
            while not self._stop.is_set():
                try:
                    env = bus.recv(timeout=0.5)
                    if env is not None:
                        self.dispatch(env)
                except Exception:  # one bad event must not end webhook delivery
                    log.exception("webhook dispatch failed")

    def dispatch(self, env: Envelope) -> int:
        """Queue deliveries of one bus message; how many were queued."""
        found = event_of(env)
        if found is None:
            return 0
        name, data = found
        hooks = [h for h in self.hooks if name in h.events]
        for hook in hooks:
            body = {
                "id": new_id(),
                "event": name,
                "created_at": time.time(),
                "task_id": env.task_id or data.get("task_id"),
                "data": {k: v for k, v in data.items() if k != "kind"},
            }
            self._pool.submit(self._start, hook, body)
        return len(hooks)

    def _start(self, hook: WebhookConfig, event: dict[str, Any]) -> None:
        raw = json.dumps(event, separators=(",", ":")).encode()
        try:
            signature = sign(hook.key(), raw)
        except Exception as exc:  # the secret_env went away: record why, never guess
            self._note(hook, event, 1, _Answer(None, f"not signed: {exc}", None), 0.0, None)
            return
        self._attempt(_Delivery(hook, event, raw, signature), 1)

    def _attempt(self, delivery: _Delivery, attempt: int) -> None:
        """POST once; record it; schedule the next attempt if this one may be retried."""
        if self._stop.is_set():
            return
        hook, event = delivery.hook, delivery.event
        started = time.monotonic()
        answer = self._post(delivery, attempt)
        took = (time.monotonic() - started) * 1000
        wait, refused = None, None
        if not answer.ok and _retryable(answer.status):
            wait, refused = retry_wait(hook, attempt, answer.status, answer.retry_after)
        if refused:
            answer = _Answer(answer.status, f"{answer.error}; {refused}", answer.retry_after)
        retry_at = None if wait is None else time.time() + wait
        self._note(hook, event, attempt, answer, took, retry_at)
        if wait is not None:
            self._later(wait, functools.partial(self._attempt, delivery, attempt + 1))
        elif not answer.ok:
            log.warning(
                "webhook %s: %s not delivered after %d attempt(s): %s",
                hook.label,
                event["event"],
                attempt,
                answer.error or f"HTTP {answer.status}",
            )

    def _later(self, delay: float, job: Callable[[], None]) -> None:
        with self._wake:
            heapq.heappush(self._due, (time.monotonic() + delay, next(self._order), job))
            if self._timer is None:
                self._timer = threading.Thread(
                    target=self._release, name="webhook-retries", daemon=True
                )
                self._timer.start()
            self._wake.notify()

    def _release(self) -> None:
        """Hand each retry to the pool when it is due (the timer thread)."""
        with self._wake:
            while not self._stop.is_set():
                if not self._due:
                    self._wake.wait()
                    continue
                left = self._due[0][0] - time.monotonic()
                if left > 0:
                    self._wake.wait(left)
                    continue
                job = heapq.heappop(self._due)[2]
                with contextlib.suppress(RuntimeError):  # the pool is shut down: we are closing
                    self._pool.submit(job)

    def _post(self, delivery: _Delivery, attempt: int) -> _Answer:
        hook, event = delivery.hook, delivery.event
        parts = urlsplit(hook.url)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        conn = cls(parts.hostname or "", parts.port, timeout=hook.timeout)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": f"shoal/{__version__}",
            "X-Shoal-Event": event["event"],
            "X-Shoal-Delivery": event["id"],
            "X-Shoal-Timestamp": str(int(time.time())),
            "X-Shoal-Attempt": str(attempt),
            "X-Shoal-Signature": delivery.signature,
        }
        try:
            conn.request("POST", path, body=delivery.raw, headers=headers)
            response = conn.getresponse()
            response.read(64 * 1024)
            status = response.status
            return _Answer(
                status,
                None if status < 300 else response.reason,
                retry_after(dict(response.getheaders())),
            )
        except (OSError, http.client.HTTPException) as exc:
            return _Answer(None, f"{type(exc).__name__}: {exc}"[:300], None)
        finally:
            with contextlib.suppress(Exception):
                conn.close()

    def _note(
        self,
        hook: WebhookConfig,
        event: dict[str, Any],
        attempt: int,
        answer: _Answer,
        took_ms: float,
        retry_at: float | None,
    ) -> None:
        self._record(
            *deliveries.attempt(
                event["id"],
                attempt,
                event["event"],
                event["task_id"],
                hook.label,
                hook.target,
                answer.status,
                answer.ok,
                answer.error,
                took_ms,
                _utc(time.time()),
                _utc(retry_at) if retry_at is not None else None,
            )
        )


def _retryable(status: int | None) -> bool:
    return status is None or status in _RETRY_STATUS or status >= 500
