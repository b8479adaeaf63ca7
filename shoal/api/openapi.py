"""The OpenAPI 3.1 document of /api/v1, generated from the route table and its models."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from shoal import __version__
from shoal.api.models import ErrorBody
from shoal.api.routes import PREFIX, ROUTES, Route

_REF = "#/components/schemas/{model}"
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


def _models() -> list[type[BaseModel]]:
    found: list[type[BaseModel]] = [ErrorBody]
    for route in ROUTES:
        found += [m for m in (route.response, route.body) if m is not None]
    return list(dict.fromkeys(found))


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _error(status: int) -> dict[str, Any]:
    return {
        "description": _REASONS[status],
        "content": _json({"$ref": _REF.format(model="ErrorBody")}),
    }


def _operation(route: Route, refs: dict[str, Any]) -> dict[str, Any]:
    op: dict[str, Any] = {"operationId": route.handler, "summary": route.summary}
    params = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in route.pattern.groupindex
    ]
    if route.query is not None:
        schema = route.query.model_json_schema()
        for name, prop in schema.get("properties", {}).items():
            params.append(
                {
                    "name": name,
                    "in": "query",
                    "required": name in schema.get("required", []),
                    "schema": prop,
                }
            )
    if params:
        op["parameters"] = params
    if route.body is not None:
        op["requestBody"] = {"required": True, "content": _json(refs[route.body.__name__])}
    ok: dict[str, Any] = {"description": "OK" if route.status == 200 else "Accepted"}
    if route.stream:
        ok["content"] = {"text/event-stream": {"schema": {"type": "string"}}}
    else:
        ok["content"] = _json(
            refs[route.response.__name__] if route.response is not None else {"type": "object"}
        )
    responses: dict[str, Any] = {str(route.status): ok}
    framing = (408, 411, 413) if route.body else (411,) if route.method == "POST" else ()
    for status in sorted({*route.errors, *framing, 503, *((401,) if route.auth else ())}):
        responses[str(status)] = _error(status)
    op["responses"] = responses
    if not route.auth:
        op["security"] = []
    return op


def document(server_url: str | None = None) -> dict[str, Any]:
    """The whole document; ``server_url`` is the API's base URL when known."""
    models = _models()
    refs, top = models_json_schema(
        [(m, "serialization" if m not in _bodies() else "validation") for m in models],
        ref_template=_REF,
    )
    refs_by_name = {m.__name__: schema for (m, _mode), schema in refs.items()}
    paths: dict[str, dict[str, Any]] = {}
    for route in ROUTES:
        paths.setdefault(PREFIX + route.path, {})[route.method.lower()] = _operation(
            route, refs_by_name
        )
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "shoal",
            "version": __version__,
            "description": "Run and follow shoal tasks over HTTP. Served by the orchestrator "
            "(`shoal serve`). When the server has a token, every endpoint but /health needs "
            "`Authorization: Bearer <token>`.",
        },
        "paths": paths,
        "components": {
            "schemas": top.get("$defs", {}),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }
    if server_url:
        doc["servers"] = [{"url": server_url.removesuffix(PREFIX) or "/"}]
    return doc


def _bodies() -> set[type[BaseModel]]:
    return {r.body for r in ROUTES if r.body is not None}
