"""The API as the orchestrator owns it: serving on request, and again after a restart.

``shoal serve`` writes ``api.json`` (and ``api.token``) and sends ``api.serve``;
the orchestrator reads the files and listens. Because the files stay until
``shoal serve`` ends (or ``--stop``), an orchestrator started later serves the
API again by itself, on the same port: the port a ``--port 0`` server got is
written back to api.json. A port taken by then is reported (log, ``shoal
status``), never silently swapped for another. Webhooks from config.toml are
delivered whether or not the API is served.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from shoal.api import settings as api_settings
from shoal.api.bridge import Bridge
from shoal.api.http import App
from shoal.api.limits import ApiLimits
from shoal.api.models import ApiView
from shoal.api.routes import PREFIX, Endpoints
from shoal.api.session import Sessions
from shoal.api.settings import ServeSettings, WebhookConfig, is_loopback
from shoal.api.webhooks import Dispatcher
from shoal.client import Client
from shoal.messages.actors import ApiLoginResult, ApiServeResult
from shoal.paths import Home
from shoal.settings import SettingsError

if TYPE_CHECKING:
    from shoal.api.server import HttpServer

log = logging.getLogger(__name__)


class ApiService:
    def __init__(self, home: Home, record: Callable[[str, list[Any]], None]) -> None:
        self.home = home
        self.webhooks = Dispatcher(home.events_endpoint, record)
        self._lock = threading.Lock()
        self._http: HttpServer | None = None
        self._bridge: Bridge | None = None
        self._sessions: Sessions | None = None
        self._not_serving = ""
        """Why api.json asks for the API and it is not served (a taken port), or ""."""

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
            self._not_serving = f"not serving the HTTP API: {exc}"
            log.error("%s", self._not_serving)

    def problems(self) -> list[str]:
        """What ``shoal status`` and ``shoal serve`` should tell a person about the API."""
        http = self._http
        found = [self._not_serving] if self._not_serving else []
        return found + (http.pressure.problems() if http else [])

    def serve(self) -> ApiServeResult:
        """(Re)start serving as api.json says now."""
        try:
            loaded = api_settings.load(self.home)
        except SettingsError as exc:
            raise ValueError(str(exc)) from None
        if loaded is None:
            raise LookupError(f"no {self.home.root / 'api.json'}; `shoal serve` writes it")
        return self._serve(*loaded)

    def _serve(self, settings: ServeSettings, token: str | None) -> ApiServeResult:
        if token is None and not is_loopback(settings.host):
            raise ValueError(f"serving on {settings.host} needs a bearer token")
        for hook in settings.webhooks:
            try:
                hook.key()
            except SettingsError as exc:
                raise ValueError(str(exc)) from None
        try:
            limits = ApiLimits.load(self.home)
        except SettingsError as exc:
            raise ValueError(str(exc)) from None
        with self._lock:
            self._close_http()
            if self._bridge is None:
                self._bridge = Bridge(self.home.mailbox_endpoint, f"api-{os.getpid()}")
            if self._sessions is None:
                self._sessions = Sessions(self.home)
            client = Client(self.home, via=self._bridge)  # the orchestrator is this process
            endpoints = Endpoints(self.home, client, self.view, self.document)
            self._http = _listen(settings, App(endpoints, token, self._sessions), limits)
            self._not_serving = ""
            if settings.port == 0:
                api_settings.remember_port(self.home, settings, self._http.port)
            self.webhooks.configure(served=settings.webhooks)
            url, cap = self._http.url, self._http.cap
        view = self.view()
        log.info(
            "serving the HTTP API at %s (%s); %d webhook(s); at most %d connections",
            url,
            "bearer token required" if view.auth else "no token",
            view.webhooks,
            cap,
        )
        return ApiServeResult(url=url, auth=view.auth, webhooks=view.webhooks)

    def login(self, digest: str) -> ApiLoginResult:
        """Take a one-time login code for the dashboard (``shoal dashboard``)."""
        with self._lock:
            if self._http is None or self._sessions is None:
                raise LookupError("the HTTP API is not served; `shoal dashboard` serves it")
            self._sessions.add_code(digest)
            return ApiLoginResult(url=self._http.url.removesuffix(PREFIX))

    def view(self) -> ApiView:
        http = self._http
        return ApiView(
            url=http.url if http else "",
            auth=bool(http and http.app.auth),
            webhooks=len(self.webhooks.hooks),
        )

    def document(self) -> dict[str, Any]:
        """The OpenAPI document of the API as served (FastAPI's, from the route table)."""
        http = self._http
        if http is not None:
            return http.openapi()
        from shoal.api.app import document  # FastAPI: only in a serving orchestrator

        return document(None)

    def stop(self) -> None:
        """Stop serving (``shoal serve`` ended); config.toml's webhooks go on."""
        with self._lock:
            self._close_http()
            self._not_serving = ""
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


def _listen(settings: ServeSettings, app: App, limits: ApiLimits) -> HttpServer:
    from shoal.api.server import HttpServer  # uvicorn: only in a serving orchestrator

    try:
        return HttpServer(settings.host, settings.port, app, limits)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        hint = ""
        if exc.errno == errno.EADDRINUSE:
            hint = " (another program holds it: stop that, or `shoal serve --port` another)"
        where = f"{settings.host}:{settings.port}"
        raise ValueError(f"cannot listen on {where}: {reason}{hint}") from None
