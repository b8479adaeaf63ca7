"""The HTTP API and webhooks, served by the orchestrator (``shoal serve``).

- ``models``: the pydantic request and response bodies (the OpenAPI document is made from them).
- ``routes``: the endpoints, one table (``ROUTES``) and what each does (``Endpoints``).
- ``http``: ``App``: who may call the API (token, session cookie, Origin/Host); answers.
- ``app``: the FastAPI application made from the table: validation, the OpenAPI
  document, JSON errors, the access check, the event stream and the dashboard's pages.
- ``asgi``: what comes before it: body framing and limits, HEAD, the request log.
- ``server``: uvicorn on a thread of the orchestrator, behind shoal's accept step (the
  connection cap, head timeouts, EMFILE); the endpoints' bounded thread pool.
- ``limits``: ``[api]`` settings and the cap derived from the fd limit; what was refused.
- ``bridge``: the API's one mailbox connection to the broker.
- ``webhooks``: webhook settings, signing, delivery with retries, delivery records.
- ``service``: what the orchestrator owns: serving on request, and again after a restart.

Nothing here is imported by the CLI at start-up; only the orchestrator loads it, and
FastAPI (with Starlette) and uvicorn only once it serves.
"""
