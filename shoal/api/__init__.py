"""The HTTP API and webhooks, served by the orchestrator (``shoal serve``).

- ``models``: the pydantic request and response bodies (the OpenAPI document is made from them).
- ``routes``: the endpoints, one table that both dispatches and documents.
- ``http``: the stdlib HTTP server thread, bearer-token check, JSON errors.
- ``bridge``: the API's one mailbox connection to the broker.
- ``webhooks``: webhook settings, signing, delivery with retries, delivery records.
- ``service``: what the orchestrator owns: serving on request, and again after a restart.

Nothing here is imported by the CLI at start-up; only the orchestrator loads it.
"""
