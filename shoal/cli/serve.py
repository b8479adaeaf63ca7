"""``shoal serve``: the HTTP API, served by the orchestrator.

The command writes what it was asked for to ``$SHOAL_HOME/api.json`` (and the
token to ``api.token``, both 0600), starts the orchestrator if needed and asks
it to serve (``api.serve``: the message carries no secret, every message is
recorded). In the foreground it keeps the orchestrator up until Ctrl-C, then
stops serving; with ``--detach`` it returns and the API stays, also across
orchestrator restarts, until ``shoal serve --stop``.
"""

from __future__ import annotations

import itertools
import os
import re
import secrets
import signal
import sys
import time
from typing import TYPE_CHECKING

import typer

from shoal.cli.output import fail

if TYPE_CHECKING:
    from shoal.api.settings import WebhookConfig
    from shoal.messages.actors import ApiServeResult
    from shoal.paths import Home


def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (loopback)."),
    port: int = typer.Option(9742, "--port", min=0, max=65535, help="Port (0: any free one)."),
    token: str | None = typer.Option(
        None,
        "--token",
        envvar="SHOAL_API_TOKEN",
        show_envvar=True,
        help="Bearer token every endpoint but /health needs (default: a new random one, "
        "written to $SHOAL_HOME/api.token; required off loopback).",
    ),
    no_token: bool = typer.Option(
        False,
        "--no-token",
        help="Serve without a token, on loopback only: anyone on this machine can then use it.",
    ),
    webhook: list[str] = typer.Option(
        [],
        "--webhook",
        help="POST task.complete, task.failed and budget.warning events to this URL, "
        "signed with $SHOAL_WEBHOOK_SECRET (repeatable).",
    ),
    detach: bool = typer.Option(
        False, "--detach", "-d", help="Return once serving; `shoal serve --stop` stops it."
    ),
    stop: bool = typer.Option(False, "--stop", help="Stop serving (a detached server)."),
) -> None:
    """Serve the HTTP API (/api/v1) and webhooks from the orchestrator."""
    from shoal.api import settings as api_settings
    from shoal.paths import Home

    home = Home.resolve()
    if stop:
        _stop_serving(home)
        sys.stdout.write("stopped serving the HTTP API\n")
        return
    token = _token(host, token, no_token)
    settings = api_settings.ServeSettings(host=host, port=port, webhooks=_webhooks(webhook))
    api_settings.save(home, settings, token)
    serving = _start(home)
    out = sys.stdout
    out.write(f"serving {serving.url}\n")
    if serving.auth:
        out.write(f"token: in {api_settings.token_file(home)} (Authorization: Bearer <token>)\n")
    else:
        out.write("no token (--no-token): anyone on this machine can use it\n")
    if serving.webhooks:
        out.write(f"webhooks: {serving.webhooks}\n")
    if detach:
        out.write("detached; `shoal serve --stop` stops it\n")
        return
    out.write("Ctrl-C stops it\n")
    out.flush()
    _foreground(home)


def _token(host: str, token: str | None, no_token: bool) -> str | None:
    """The token to serve with: the one given, else a new one (None with --no-token)."""
    from shoal.api import settings as api_settings

    loopback = api_settings.is_loopback(host)
    if no_token and token:
        fail("--no-token and a token (--token or SHOAL_API_TOKEN) were both given; drop one", 2)
    if no_token and not loopback:
        fail(f"--no-token: --host {host} is not a loopback address; serve it with a token", 2)
    if not token and not loopback:
        # Off loopback the token is for clients on other machines: the person serving
        # chooses it and hands it on, rather than fish a made-up one out of api.token.
        fail(
            f"--host {host} is not a loopback address: serving there needs a bearer token "
            "(--token T, or SHOAL_API_TOKEN)",
            code=2,
        )
    return None if no_token else token or secrets.token_urlsafe(32)


def _webhooks(urls: list[str]) -> list[WebhookConfig]:
    from pydantic import ValidationError

    from shoal.api.settings import WebhookConfig

    if not urls:
        return []
    secret = os.environ.get("SHOAL_WEBHOOK_SECRET")
    if not secret:
        fail(
            "--webhook needs SHOAL_WEBHOOK_SECRET: the key receivers check X-Shoal-Signature with",
            code=2,
        )
    hooks = []
    for url in urls:
        try:
            hooks.append(WebhookConfig.model_validate({"url": url, "secret": secret}))
        except ValidationError:
            fail(f"--webhook {url}: must be an http:// or https:// URL with a host", code=2)
    return hooks


def _start(home: Home) -> ApiServeResult:
    from shoal.api import settings as api_settings
    from shoal.client import Client
    from shoal.mailbox.errors import RemoteError
    from shoal.messages.actors import ApiServe, ApiServeResult

    client = Client(home)
    client.start()
    try:
        serving = client.request(ApiServe(), timeout=15)
    except RemoteError as exc:
        api_settings.forget(home)
        fail(exc.message)
    assert isinstance(serving, ApiServeResult)
    return serving


def _foreground(home: Home) -> None:
    """Keep the API up (restarting a lost orchestrator) until Ctrl-C or SIGTERM."""
    from shoal import daemon

    def interrupt(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGHUP, interrupt)  # the terminal closed
    told: set[str] = set()
    try:
        for second in itertools.count():
            if second % 30 == 0:  # a status request is a recorded message: not every second
                told = _tell_problems(home, told)
            time.sleep(1.0)
            if daemon.running_pid(home) is None:
                sys.stderr.write("shoal: the orchestrator stopped; restarting it (the API too)\n")
                daemon.ensure(home)
                told = _tell_problems(home, told)
    except KeyboardInterrupt:
        pass
    finally:
        # Whatever ended the loop, the API must not outlive this command.
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the cleanup
        _stop_serving(home)
        sys.stderr.write("stopped serving the HTTP API\n")


def _tell_problems(home: Home, told: set[str]) -> set[str]:
    """Print what the orchestrator reports about the API (a taken port, refusals, out of
    file descriptors) once per condition: a line again only when it went away and came back.
    """
    from shoal import daemon
    from shoal.client import Client, ClientError
    from shoal.mailbox.errors import MailboxError

    try:
        problems = Client(home).status(timeout=5).problems
    except (daemon.OrchestratorError, ClientError, MailboxError):  # restarting, or busy
        return told
    kinds = {re.sub(r"[\d:]+", "#", line): line for line in problems}
    for kind, line in kinds.items():
        if kind not in told:
            sys.stderr.write(f"shoal: {line}\n")
    return set(kinds)


def _stop_serving(home: Home) -> None:
    from shoal.api import settings as api_settings
    from shoal.client import Client
    from shoal.messages.actors import ApiStop

    api_settings.forget(home)  # first: a restart meanwhile must not serve again
    client = Client(home)
    if client.running():
        client.request(ApiStop(), timeout=15)


def webhooks(
    limit: int = typer.Option(20, "--limit", "-n", min=1, max=10_000),
    task: str | None = typer.Option(None, "--task", help="Only this task id."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON lines."),
) -> None:
    """Recent webhook delivery attempts (status, error, when the next retry is due)."""
    from shoal.cli.output import console, print_json
    from shoal.client import query as read
    from shoal.paths import Home
    from shoal.store.queries import QueryError

    try:
        reply = read(Home.resolve(), "webhooks.deliveries", {"limit": limit, "task_id": task})
    except QueryError as exc:
        if "no database yet" not in str(exc):
            raise
        reply = None
    rows = [dict(zip(reply.columns, r, strict=True)) for r in reply.rows] if reply else []
    if json_out:
        for row in rows:
            print_json(row)
        return
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    for column in ("attempted_at", "event", "webhook", "attempt", "result", "task"):
        table.add_column(column)
    for r in reversed(rows):
        result = str(r["status_code"] or "-") + ("" if r["ok"] else f" {r['error'] or 'failed'}")
        if r["retry_at"]:
            result += f" (retry at {r['retry_at']})"
        table.add_row(
            str(r["attempted_at"]),
            r["event"],
            f"{r['webhook']} {r['target']}",
            str(r["attempt"]),
            result,
            r["task_id"] or "-",
        )
    console().print(table if rows else "no webhook deliveries recorded")


def dashboard(
    port: int = typer.Option(
        9742, "--port", min=0, max=65535, help="Port, when the API is not served yet."
    ),
    no_open: bool = typer.Option(False, "--no-open", help="Print the login URL only."),
) -> None:
    """Open the web dashboard: serve the API if it is not, print a one-time login URL."""
    from shoal.api import settings as api_settings
    from shoal.api.session import code_digest, new_code
    from shoal.client import Client
    from shoal.mailbox.errors import RemoteError
    from shoal.messages.actors import ApiLogin, ApiLoginResult
    from shoal.paths import Home

    home = Home.resolve()
    if api_settings.load(home) is None:  # as `shoal serve --detach --port P` on loopback
        # Always with a token: the page signs in by its link, and nobody else on this
        # machine reaches the API without the token (in api.token, 0600).
        token = os.environ.get("SHOAL_API_TOKEN") or secrets.token_urlsafe(32)
        api_settings.save(home, api_settings.ServeSettings(port=port), token)
    _start(home)
    code = new_code()
    try:
        reply = Client(home).request(ApiLogin(code_sha256=code_digest(code)), timeout=15)
    except RemoteError as exc:
        fail(exc.message)
    assert isinstance(reply, ApiLoginResult)
    url = f"{reply.url}/login?code={code}"
    sys.stdout.write(f"dashboard: {url}\n(the link works once, for 2 minutes)\n")
    sys.stdout.flush()
    if not no_open:
        import webbrowser

        webbrowser.open(url)
