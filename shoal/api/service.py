"""The API as the orchestrator owns it: serving on request, and again after a restart.

``shoal serve`` writes ``api.json`` (and ``api.token``) and sends ``api.serve``;
the orchestrator reads the files and listens. Because the files stay until
``shoal serve`` ends (or ``--stop``), an orchestrator started later serves the
API again by itself. Webhooks from config.toml are delivered whether or not
the API is served.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import Any

from shoal.api import settings as api_settings
from shoal.api.bridge import Bridge
from shoal.api.http import App, HttpServer
from shoal.api.models import ApiView
from shoal.api.routes import Endpoints
from shoal.api.settings import ServeSettings, WebhookConfig, is_loopback
from shoal.api.webhooks import Dispatcher
from shoal.mailbox.envelope import ApiServing
from shoal.paths import Home
from shoal.settings import SettingsError

log = logging.getLogger(__name__)


class ApiService:
    def __init__(self, home: Home, record: Callable[[str, list[Any]], None]) -> None:
        self.home = home
        self.webhooks = Dispatcher(home.events_endpoint, record)
        self._lock = threading.Lock()
        self._http: HttpServer | None = None
        self._bridge: Bridge | None = None
        self._document: dict[str, Any] | None = None

    @property
    def serving(self) -> bool:
        return self._http is not None

    def boot(self, configured: list[WebhookConfig]) -> None:
        """At orchestrator start: config.toml's webhooks, and the API if ``shoal serve`` asked."""
        self.webhooks.configure(configured=configured)
        try:
            loaded = api_settings.load(self.home)
            if loaded is not None:
                self._serve(*loaded)
        except (SettingsError, ValueError) as exc:
            log.error("not serving the HTTP API: %s", exc)

    def serve(self) -> ApiServing:
        """(Re)start serving as api.json says now."""
        try:
            loaded = api_settings.load(self.home)
        except SettingsError as exc:
            raise ValueError(str(exc)) from None
        if loaded is None:
            raise LookupError(f"no {self.home.root / 'api.json'}; `shoal serve` writes it")
        return self._serve(*loaded)

    def _serve(self, settings: ServeSettings, token: str | None) -> ApiServing:
        if token is None and not is_loopback(settings.host):
            raise ValueError(f"serving on {settings.host} needs a bearer token")
        for hook in settings.webhooks:
            try:
                hook.key()
            except SettingsError as exc:
                raise ValueError(str(exc)) from None
        with self._lock:
            self._close_http()
            if self._bridge is None:
                self._bridge = Bridge(self.home.mailbox_endpoint, f"api-{os.getpid()}")
            endpoints = Endpoints(self.home, self._bridge, self.view, self.document)
            try:
                self._http = HttpServer(settings.host, settings.port, App(endpoints, token))
            except OSError as exc:
                reason = exc.strerror or str(exc)
                raise ValueError(
                    f"cannot listen on {settings.host}:{settings.port}: {reason}"
                ) from None
            self._document = None
            self.webhooks.configure(served=settings.webhooks)
            url = self._http.url
        view = self.view()
        log.info(
            "serving the HTTP API at %s (%s); %d webhook(s)",
            url,
            "bearer token required" if view.auth else "no token",
            view.webhooks,
        )
        return ApiServing(url=url, auth=view.auth, webhooks=view.webhooks)

    def view(self) -> ApiView:
        http = self._http
        return ApiView(
            url=http.url if http else "",
            auth=bool(http and http.app.auth),
            webhooks=len(self.webhooks.hooks),
        )

    def document(self) -> dict[str, Any]:
        if self._document is None:
            from shoal.api.openapi import document

            self._document = document(self._http.url if self._http else None)
        return self._document

    def stop(self) -> None:
        """Stop serving (``shoal serve`` ended); config.toml's webhooks go on."""
        with self._lock:
            self._close_http()
            self.webhooks.configure(served=[])
        log.info("stopped serving the HTTP API")

    def close(self) -> None:
        """At orchestrator shutdown."""
        with self._lock:
            self._close_http()
            if self._bridge is not None:
                self._bridge.close()
                self._bridge = None
        self.webhooks.close()

    def _close_http(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None
