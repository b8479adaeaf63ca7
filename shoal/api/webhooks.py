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
broker's. A connection error, a timeout, 408, 429 or 5xx is retried after
``backoff * 2^(attempt-1)`` seconds (jittered, at most ``max_attempts``);
other answers are final. Each attempt is a ``webhook_deliveries`` row with the
receiver's scheme, host and port only: URLs and secrets are never recorded.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import hmac
import http.client
import json
import logging
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

from shoal import __version__
from shoal.api.settings import WebhookConfig
from shoal.ids import new_id
from shoal.mailbox.envelope import BudgetWarning, Envelope, TaskDone

log = logging.getLogger(__name__)

TOPICS = [TaskDone.kind, BudgetWarning.kind]
_RETRY_STATUS = frozenset({408, 425, 429})
_INSERT = "INSERT INTO webhook_deliveries VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"


def sign(key: bytes, body: bytes) -> str:
    """The ``X-Shoal-Signature`` value of ``body``."""
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


def event_of(env: Envelope) -> tuple[str, dict[str, Any]] | None:
    """The webhook event name and data of a bus message, or None if it is not one."""
    if env.kind == TaskDone.kind:
        done = TaskDone.model_validate(env.payload)
        name = "task.complete" if done.status in ("accepted", "unaccepted") else "task.failed"
        return name, done.model_dump(mode="json")
    if env.kind == BudgetWarning.kind:
        return "budget.warning", BudgetWarning.model_validate(env.payload).model_dump(mode="json")
    return None


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

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
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
            self._pool.submit(self._deliver, hook, body)
        return len(hooks)

    def _deliver(self, hook: WebhookConfig, event: dict[str, Any]) -> None:
        raw = json.dumps(event, separators=(",", ":")).encode()
        try:
            signature = sign(hook.key(), raw)
        except Exception as exc:  # the secret_env went away: record why, never guess
            self._note(hook, event, 1, None, f"not signed: {exc}", 0.0, None)
            return
        for attempt in range(1, hook.max_attempts + 1):
            started = time.monotonic()
            status, error = self._post(hook, raw, signature, event, attempt)
            took = (time.monotonic() - started) * 1000
            ok = status is not None and 200 <= status < 300
            retry = not ok and attempt < hook.max_attempts and _retryable(status)
            delay = hook.backoff * 2 ** (attempt - 1) * random.uniform(0.8, 1.2) if retry else 0
            self._note(
                hook, event, attempt, status, error, took, time.time() + delay if retry else None
            )
            if not retry or self._stop.wait(delay):
                if not ok:
                    log.warning(
                        "webhook %s: %s not delivered after %d attempt(s): %s",
                        hook.label,
                        event["event"],
                        attempt,
                        error or f"HTTP {status}",
                    )
                return

    def _post(
        self, hook: WebhookConfig, raw: bytes, signature: str, event: dict[str, Any], attempt: int
    ) -> tuple[int | None, str | None]:
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
            "X-Shoal-Signature": signature,
        }
        try:
            conn.request("POST", path, body=raw, headers=headers)
            response = conn.getresponse()
            response.read(64 * 1024)
            return response.status, None if response.status < 300 else response.reason
        except (OSError, http.client.HTTPException) as exc:
            return None, f"{type(exc).__name__}: {exc}"[:300]
        finally:
            with contextlib.suppress(Exception):
                conn.close()

    def _note(
        self,
        hook: WebhookConfig,
        event: dict[str, Any],
        attempt: int,
        status: int | None,
        error: str | None,
        took_ms: float,
        retry_at: float | None,
    ) -> None:
        ok = status is not None and 200 <= status < 300
        self._record(
            _INSERT,
            [
                event["id"],
                attempt,
                event["event"],
                event["task_id"],
                hook.label,
                hook.target,
                status,
                ok,
                error,
                took_ms,
                _utc(time.time()),
                _utc(retry_at) if retry_at is not None else None,
            ],
        )


def _retryable(status: int | None) -> bool:
    return status is None or status in _RETRY_STATUS or status >= 500
