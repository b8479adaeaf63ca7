"""The API as a FastAPI application, made from the route table (``routes.ROUTES``).

Each entry becomes a FastAPI route with a generated signature: its path
parameters, ``body`` (the request body's model), ``query`` (a model of the
query parameters), its answer model, status, summary and the error codes it
may answer. FastAPI validates requests against those models and generates the
OpenAPI document from them (``GET /api/v1/openapi.json``; its own /docs, /redoc
and /openapi.json are off). Around that:

- ``Access``, a middleware before routing and before any body is read: the token,
  the dashboard's session cookie, the ``Origin``/``Host`` checks (``http.App``);
- the handlers (``Endpoints``) are plain functions that block on the mailbox:
  FastAPI runs them on its thread pool, bounded by ``[api] workers`` (``server``);
- the event stream (``stream=True``) is served on the event loop by
  ``events.serve_stream``, never on a thread;
- every refusal, FastAPI's and Starlette's included (404, 405, 422, a body that
  is not JSON), is the API's JSON error with one line saying what was wrong;
- the dashboard's pages (``pages``) are routes too, left out of the document.
"""

from __future__ import annotations

import inspect
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from fastapi.telemetry import TelemetryConfig
from pydantic import BaseModel
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from shoal import __version__
from shoal.api import pages
from shoal.api.events import Filter, Hub, Stream, serve_stream
from shoal.api.http import Answer, App, error_body, refusal
from shoal.api.models import ErrorBody
from shoal.api.routes import PREFIX, ROUTES, ApiError, Route
from shoal.mailbox.errors import MailboxError

log = logging.getLogger(__name__)

METHOD = "shoal.method"
"""The request's method as sent, kept in the ASGI scope: the app is handed a HEAD as a
GET (``asgi``), so it answers exactly as GET would."""
_PARAM = re.compile(r"\{(\w+)\}")
_DESCRIPTION = (
    "Run and follow shoal tasks over HTTP. Served by the orchestrator (`shoal serve`). "
    "When the server has a token, every endpoint but /health needs "
    "`Authorization: Bearer <token>`."
)
_REASONS = {
    400: "Malformed request (not JSON, ambiguous id)",
    401: "Missing or wrong bearer token",
    404: "No such resource",
    405: "Method not allowed here",
    408: "The body did not arrive in time",
    409: "Conflicts with the current state (a task not running, a member that reads no "
    "steering, a skill already installed)",
    411: "Neither a Content-Length nor a chunked body",
    413: "Body too large",
    422: "The request does not validate (the message names the field)",
    503: "The orchestrator did not answer in time, or the API holds as many connections as "
    "it may (then with Retry-After)",
    507: "The disk holding shoal's records is full: no new work until there is room",
}
_CODES = {400: "bad_request", 404: "not_found", 408: "timeout", 413: "too_large"}
_NO_TELEMETRY: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False,
                                   "operation_spans": False, "auto_configure": False}  # fmt: skip
"""FastAPI's OpenTelemetry would record requests (bodies, on a validation failure) for
whatever exporter the environment names: nothing of a request leaves the process."""


@dataclass(frozen=True)
class Served:
    """What the routes need at run time (``app.state.shoal``; absent from a document-only
    application)."""

    app: App
    hub: Hub
    heartbeat: float


class Refused(HTTPException):
    """An ApiError raised where FastAPI expects an HTTPException: while it reads a body."""

    def __init__(self, error: ApiError) -> None:
        super().__init__(error.status, error.message)
        self.error = error


def build(server_url: str | None = None) -> FastAPI:
    """The application: every route of the table, the pages, the access check, the JSON
    errors. ``server_url`` (the API's base URL) goes in the document's ``servers``."""
    servers = [{"url": server_url.removesuffix(PREFIX) or "/"}] if server_url else None
    api = FastAPI(title="shoal", version=__version__, description=_DESCRIPTION,
                  servers=servers, openapi_url=None, docs_url=None, redoc_url=None,
                  redirect_slashes=False, telemetry=_NO_TELEMETRY)  # fmt: skip
    for route in ROUTES:
        _add(api, route)
    for path in pages.PATHS:
        api.add_api_route(path, _page, methods=["GET"], include_in_schema=False)
    api.add_middleware(Access)
    api.add_exception_handler(ApiError, _refused)
    api.add_exception_handler(MailboxError, _unanswered)
    api.add_exception_handler(HTTPException, _http_error)
    api.add_exception_handler(RequestValidationError, _invalid)
    api.add_exception_handler(Exception, _internal)
    api.openapi = lambda: _document(api)  # type: ignore[method-assign]
    return api


def document(server_url: str | None = None) -> dict[str, Any]:
    """The OpenAPI document, as ``GET /api/v1/openapi.json`` serves it."""
    return build(server_url).openapi()


def _document(api: FastAPI) -> dict[str, Any]:
    """FastAPI's document, with the bearer token it cannot see (``Access`` checks it)."""
    if not api.openapi_schema:
        doc = FastAPI.openapi(api)
        scheme = {"bearer": {"type": "http", "scheme": "bearer"}}
        doc.setdefault("components", {})["securitySchemes"] = scheme
        doc["security"] = [{"bearer": []}]
    return api.openapi_schema


def _add(api: FastAPI, route: Route) -> None:
    params = _PARAM.findall(route.path)
    endpoint = _stream(route) if route.stream else _endpoint(route)
    endpoint.__signature__ = _signature(route, params)  # type: ignore[attr-defined]
    api.add_api_route(
        PREFIX + route.path,
        endpoint,
        methods=[route.method],
        response_model=route.response,
        status_code=route.status,
        summary=route.summary,
        operation_id=route.handler,
        response_description="OK" if route.status == 200 else "Accepted",
        responses=_errors(route, bool(params)),
        response_class=EventStream if route.stream else JSONResponse,  # for the document
        openapi_extra=None if route.auth else {"security": []},
    )


def _signature(route: Route, params: list[str]) -> inspect.Signature:
    """What FastAPI reads to know the route's parameters: the request, the path's
    parameters (text), ``body`` (a JSON body) and ``query`` (the query parameters)."""
    keyword = inspect.Parameter.KEYWORD_ONLY
    found = [inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD,
                               annotation=Request)]  # fmt: skip
    found += [inspect.Parameter(name, keyword, annotation=str) for name in params]
    if route.body is not None:
        found.append(inspect.Parameter("body", keyword, annotation=route.body))
    if route.query is not None:
        query = Annotated[route.query, Query()]
        found.append(inspect.Parameter("query", keyword, annotation=query))
    return inspect.Signature(found)


def _errors(route: Route, params: bool) -> dict[int | str, dict[str, Any]]:
    """The refusals a route documents, each with the error body."""
    framing = (400, 408, 411, 413) if route.body else (411,) if route.method == "POST" else ()
    validated = (422,) if params or route.body or route.query else ()
    auth = (401,) if route.auth else ()
    codes = sorted({*route.errors, *framing, *validated, *auth, 503})
    if route.stream:  # FastAPI would give its refusals the events' type; they are JSON
        schema = {"$ref": "#/components/schemas/ErrorBody"}  # the other routes' "model"
        content = {"application/json": {"schema": schema}}
        return {code: {"description": _REASONS[code], "content": content} for code in codes}
    return {code: {"model": ErrorBody, "description": _REASONS[code]} for code in codes}


def _endpoint(route: Route) -> Callable[..., Response]:
    """A plain function (FastAPI runs it on its thread pool) calling the route's handler.

    It answers with the model's JSON itself: FastAPI would validate the answer against
    ``response_model`` again, on a second trip through the thread pool."""

    def call(request: Request, **kwargs: Any) -> Response:
        served: Served = request.app.state.shoal
        result = getattr(served.app.endpoints, route.handler)(**kwargs)
        if isinstance(result, BaseModel):
            body = result.model_dump_json().encode()
        else:
            body = json.dumps(result, default=str).encode()
        url = getattr(result, "url", None) if route.status == 202 else None
        headers = {"Location": url} if isinstance(url, str) else None
        return Response(body, route.status, headers, JSONResponse.media_type)

    call.__name__ = call.__qualname__ = route.handler
    return call


class EventStream(Response):
    """An open event stream: ``events.serve_stream`` sends it until the client goes."""

    media_type = "text/event-stream"

    def __init__(self, hub: Hub, stream: Stream, heartbeat: float) -> None:
        super().__init__()
        self.hub, self.stream, self.heartbeat = hub, stream, heartbeat

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await serve_stream(self.hub, self.stream, self.heartbeat, receive, send)


def _stream(route: Route) -> Callable[..., Any]:
    async def stream(request: Request, query: Any) -> Response:
        served: Served = request.app.state.shoal
        opened = served.hub.open(Filter(query.task or "", query.team or ""))  # 503 at the cap
        if request.scope.get(METHOD) == "HEAD":
            served.hub.close_stream(opened)
            return Response(media_type=EventStream.media_type)
        return EventStream(served.hub, opened, served.heartbeat)

    stream.__name__ = stream.__qualname__ = route.handler
    return stream


def _page(request: Request) -> Response:
    served: Served = request.app.state.shoal
    query = request.scope["query_string"].decode("latin-1")
    return answer(pages.page(request.scope["path"], query, served.app.sessions))


class Access:
    """Who may call the API (``http.App.admit``), before routing and any body is read."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(PREFIX + "/"):
            served: Served = scope["app"].state.shoal
            try:
                served.app.admit(scope["path"], Headers(scope=scope))
            except ApiError as exc:
                await answer(refusal(exc))(scope, receive, send)
                return
        await self.app(scope, receive, send)


def answer(sent: Answer) -> Response:
    """An Answer (a refusal, a page) as a Starlette response."""
    payload, media = sent.payload, None
    if payload is None:
        payload = b""
    elif not isinstance(payload, bytes):  # bytes: a page's file, its type in the headers
        payload, media = json.dumps(payload, default=str).encode(), "application/json"
    return Response(payload, sent.status, sent.headers, media)


async def _refused(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return answer(refusal(exc))


async def _unanswered(request: Request, exc: Exception) -> Response:
    log.warning("%s %s: the orchestrator did not answer: %s", _method(request),
                request.scope["path"], exc)  # fmt: skip
    return answer(Answer(503, error_body("unavailable", "the orchestrator did not answer; "
                                         "try again")))  # fmt: skip


async def _internal(request: Request, exc: Exception) -> Response:
    """Answered; Starlette then raises it on, and ``asgi`` logs it with its traceback."""
    return answer(Answer(500, error_body("internal", f"internal error ({type(exc).__name__})")))


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's and FastAPI's refusals (no route, no such method, a body that could
    not be read) in the API's words."""
    assert isinstance(exc, HTTPException)
    path = request.scope["path"]
    if isinstance(exc, Refused):
        return answer(refusal(exc.error))
    if exc.status_code == 404:
        hint = "" if path.startswith(PREFIX + "/") else f"; the API is under {PREFIX}"
        return answer(refusal(ApiError(404, "not_found", f"no endpoint {path}{hint}")))
    if exc.status_code == 405:
        return _not_allowed(request)
    code = _CODES.get(exc.status_code, "bad_request")
    return answer(Answer(exc.status_code, error_body(code, str(exc.detail)), exc.headers or {}))


def _not_allowed(request: Request) -> Response:
    """405 naming what the path takes (every route's method, HEAD with GET, OPTIONS), and
    OPTIONS answered with that alone: nothing a browser's CORS preflight takes as a yes."""
    path, method = request.scope["path"], _method(request)
    methods = [m for r in request.app.router.routes if isinstance(r, APIRoute)
               and r.path_regex.match(path) for m in sorted(r.methods)]  # fmt: skip
    allow = ", ".join(methods + (["HEAD"] if "GET" in methods else []) + ["OPTIONS"])
    if method == "OPTIONS":
        return Response(status_code=204, headers={"Allow": allow})
    message = f"{method} is not allowed on {path}; use {', '.join(methods)}"
    return answer(refusal(ApiError(405, "method_not_allowed", message, allow=allow)))


async def _invalid(request: Request, exc: Exception) -> Response:
    """The first thing that did not validate, named (``cwd: Field required``)."""
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    first = errors[0]
    where, *loc = first["loc"]
    if first["type"] == "json_invalid":
        error = ApiError(400, "bad_request", f"the body is not valid JSON "
                         f"({first['ctx']['error']} at character {loc[0]})")  # fmt: skip
    elif where == "body" and not loc:
        error = ApiError(422, "invalid", "the body must be a JSON object")
    else:
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        name = ".".join(str(p) for p in loc) or str(where)
        error = ApiError(422, "invalid", f"{name}: {first['msg']}{more}")
    return answer(refusal(error))


def _method(request: Request) -> str:
    return str(request.scope.get(METHOD, request.method))
