"""The HTTP API and webhooks, served by the orchestrator (``shoal serve``).

- ``models``: the pydantic request and response bodies (the OpenAPI document is made from them).
- ``routes``: the endpoints, one table that both dispatches and documents.
- ``http``: ``App``: bearer-token check, routing, validation, JSON errors (no sockets).
- ``asgi``: the ASGI adapter: body framing and limits, HEAD, endpoints on a bounded pool.
- ``server``: uvicorn on a thread of the orchestrator, behind shoal's accept step (the
  connection cap, head timeouts, EMFILE).
- ``limits``: ``[api]`` settings and the cap derived from the fd limit; what was refused.
- ``bridge``: the API's one mailbox connection to the broker.
- ``webhooks``: webhook settings, signing, delivery with retries, delivery records.
- ``service``: what the orchestrator owns: serving on request, and again after a restart.

Nothing here is imported by the CLI at start-up; only the orchestrator loads it, and
uvicorn only once it serves.
"""
