"""A scripted, OpenAI-compatible model server on loopback.

It stands in for a model provider wherever no real one may be used: the test
suite (DESIGN.md §7) and ``shoal demo``, which runs without an API key.
litellm talks to it through ``api_base`` exactly as it would to a provider, so
everything above the HTTP socket is the real code path. What it answers is a
:class:`~shoal.llm.script.Script`; everything it receives is recorded.

    with ScriptedModelServer(script) as server:
        complete(ModelConfig(model="openai/scripted-executor", base_url=server.base_url), ...)
        assert "fix the bug" in json.dumps(server.requests[-1]["messages"])

As a process (for tests that need it in another process, or the demo)::

    python -m shoal.llm.scripted --script FILE.json [--port 0] [--requests-log FILE]

prints the base URL on its first stdout line, then serves until SIGTERM.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import signal
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from shoal.llm import wire
from shoal.llm.script import ErrorSpec, Reply, Script

log = logging.getLogger(__name__)

# Largest request body accepted; a bigger one is refused with 413.
MAX_BODY_BYTES = 64 * 1024 * 1024


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default backlog of 5 makes a burst of concurrent clients (a
    # team of actors) wait a second for SYN retransmits.
    request_queue_size = 128
    # Connections are closed by ScriptedModelServer.close(), not joined one by one.
    block_on_close = False
    owner: ScriptedModelServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up mid-answer is normal (timeouts, close()); anything
        # else is a bug in the server worth a traceback in the log.
        if isinstance(sys.exc_info()[1], OSError):
            return
        log.exception("scripted model server: error handling a request from %s", client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; with Nagle's algorithm on, a
    # keep-alive client waits out a delayed ACK (~40 ms) for every answer.
    disable_nagle_algorithm = True
    server: _HTTPServer
    server_version = "shoal-scripted-model"

    def setup(self) -> None:
        super().setup()
        self.server.owner._track(self.connection, add=True)

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()
        self.server.owner._track(self.connection, add=False)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("scripted model server: " + format, *args)

    # --- routing ---------------------------------------------------------------

    def _route(self) -> str:
        path = self.path.split("?", 1)[0].rstrip("/")
        # Clients configured with or without the /v1 suffix both find the endpoints.
        return path.removeprefix("/v1") or "/"

    def do_GET(self) -> None:
        owner = self.server.owner
        route = self._route()
        if route == "/models":
            names = [*owner.script.models, *owner.script.embeddings.models]
            data = [{"id": n, "object": "model", "created": 0, "owned_by": "shoal"} for n in names]
            self._send_json(200, {"object": "list", "data": data})
        elif route.startswith("/models/") and route[8:] in owner._known_models():
            self._send_json(
                200, {"id": route[8:], "object": "model", "created": 0, "owned_by": "shoal"}
            )
        elif route.startswith("/models/"):
            self._send_model_not_found(route[8:])
        else:
            self._send_error(404, f"Unknown endpoint GET {self.path}", "not_found")

    def do_POST(self) -> None:
        body = self._read_body()
        if body is None:
            return
        owner = self.server.owner
        owner._record(body, self.headers.get("Authorization", ""))
        route = self._route()
        if route == "/chat/completions":
            self._chat(body)
        elif route == "/embeddings":
            self._embeddings(body)
        else:
            self._send_error(404, f"Unknown endpoint POST {self.path}", "not_found")

    # --- endpoints -------------------------------------------------------------

    def _chat(self, body: dict[str, Any]) -> None:
        owner = self.server.owner
        model = str(body.get("model", ""))
        if model not in owner.script.models:
            self._send_model_not_found(model)
            return
        picked = owner._next_reply(model, body)
        if picked is None:
            self._send_error(
                400,
                f"The script of model {model!r} has no reply left "
                f"({len(owner.script.models[model].replies)} scripted, repeat_last is false)",
                "script_exhausted",
            )
            return
        reply, seq = picked
        if reply.delay and owner._closing.wait(reply.delay):
            self.close_connection = True  # shutting down: hang up without an answer
            return
        if reply.hang_up_after is not None and not body.get("stream"):
            self.close_connection = True
            return
        if reply.is_error:
            self._send_json(reply.status, wire.error_body(reply.status, reply.error), reply.headers)
            return
        ids = {"response_id": f"chatcmpl-{model}-{seq}", "call_prefix": f"call_{model}_{seq}"}
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            self._stream(reply, body, model=model, include_usage=include_usage, **ids)
        else:
            self._send_json(
                reply.status, wire.completion(reply, body, model=model, **ids), reply.headers
            )

    def _stream(self, reply: Reply, body: dict[str, Any], **kwargs: Any) -> None:
        self.send_response(reply.status)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        # No length is known up front: the end of the stream is the end of the connection.
        self.send_header("Connection", "close")
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.close_connection = True
        closing = self.server.owner._closing
        for sent, chunk in enumerate(wire.chunks(reply, body, **kwargs)):
            if sent == reply.hang_up_after:
                return  # close_connection is set: the client sees the stream end early
            self.wfile.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
            self.wfile.flush()
            if reply.chunk_delay and closing.wait(reply.chunk_delay):
                return
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()

    def _embeddings(self, body: dict[str, Any]) -> None:
        spec = self.server.owner.script.embeddings
        model = str(body.get("model", ""))
        if model not in spec.models:
            self._send_model_not_found(model)
            return
        self._send_json(200, wire.embeddings(body, model=model, dimensions=spec.dimensions))

    # --- plumbing --------------------------------------------------------------

    def _read_body(self) -> dict[str, Any] | None:
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            self._send_error(411, "A Content-Length header is required", "length_required")
            return None
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            self._send_error(413, f"Request body over {MAX_BODY_BYTES} bytes", "too_large")
            return None
        raw = self.rfile.read(length)
        try:
            body = json.loads(raw)
        except ValueError as exc:
            self._send_error(400, f"Request body is not JSON: {exc}", "invalid_json")
            return None
        if not isinstance(body, dict):
            self._send_error(400, "Request body is not a JSON object", "invalid_json")
            return None
        return body

    def _send_model_not_found(self, model: str) -> None:
        self._send_error(
            404,
            f"The model `{model}` does not exist or you do not have access to it.",
            "model_not_found",
        )

    def _send_error(self, status: int, message: str, code: str) -> None:
        spec = ErrorSpec(message=message, type="invalid_request_error", code=code)
        self._send_json(status, wire.error_body(status, spec))

    def _send_json(
        self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()


class ScriptedModelServer:
    """An OpenAI-compatible server answering from a script, on 127.0.0.1, in a daemon thread.

    Serving starts on construction; :meth:`close` (or leaving the ``with``
    block) stops it, hangs up open connections and cuts scripted delays short.
    """

    def __init__(
        self,
        script: Script | dict[str, Any],
        *,
        port: int = 0,
        requests_log: str | Path | None = None,
    ) -> None:
        self.script = script if isinstance(script, Script) else Script.model_validate(script)
        self.requests_log = Path(requests_log) if requests_log is not None else None
        self._lock = threading.Lock()
        self._requests: list[dict[str, Any]] = []
        self._keys: set[str] = set()
        self._served: dict[str, int] = {}
        self._connections: set[socket.socket] = set()
        self._closing = threading.Event()
        self._httpd = _HTTPServer(("127.0.0.1", port), _Handler)
        self._httpd.owner = self
        self.port: int = self._httpd.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"scripted-model-server:{self.port}",
            daemon=True,
        )
        self._thread.start()

    @property
    def requests(self) -> list[dict[str, Any]]:
        """Every request body received so far, in arrival order (a copy of the list)."""
        with self._lock:
            return list(self._requests)

    def requests_for(self, model: str) -> list[dict[str, Any]]:
        """The request bodies that named ``model``."""
        return [r for r in self.requests if r.get("model") == model]

    @property
    def api_keys(self) -> set[str]:
        """The bearer keys clients sent (kept in memory only, never in ``requests_log``)."""
        with self._lock:
            return set(self._keys)

    def close(self) -> None:
        if self._closing.is_set():
            return
        self._closing.set()
        self._httpd.shutdown()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            # Wakes handler threads blocked on an idle keep-alive connection.
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> ScriptedModelServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ScriptedModelServer({self.base_url}, models={sorted(self.script.models)})"

    # --- called by handler threads -----------------------------------------------

    def _known_models(self) -> set[str]:
        return {*self.script.models, *self.script.embeddings.models}

    def _track(self, conn: socket.socket, *, add: bool) -> None:
        with self._lock:
            if add:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)

    def _record(self, body: dict[str, Any], authorization: str) -> None:
        with self._lock:
            self._requests.append(body)
            if authorization.startswith("Bearer "):
                self._keys.add(authorization.removeprefix("Bearer "))
            if self.requests_log is not None:
                # One JSON line per request, appended and closed at once, so another
                # process can read the file while the server runs.
                with self.requests_log.open("a", encoding="utf-8") as f:
                    f.write(json.dumps(body) + "\n")

    def rewind(self) -> None:
        """Start every model's script (and every route's) from its first reply again."""
        with self._lock:
            self._served.clear()

    def _next_reply(self, model: str, body: dict[str, Any]) -> tuple[Reply, int] | None:
        """The reply to this request for ``model`` and its 0-based number; None if exhausted."""
        entry = self.script.models[model]
        key = model
        route = entry.route_for(_first_user_text(body)) if entry.routes else None
        if route is not None:
            entry, key = entry.routes[route], f"{model}\0{route}"
        with self._lock:
            seq = self._served.get(key, 0)
            self._served[key] = seq + 1
        if not entry.replies or (seq >= len(entry.replies) and not entry.repeat_last):
            return None
        return entry.replies[min(seq, len(entry.replies) - 1)], seq


def _first_user_text(body: dict[str, Any]) -> str:
    for message in body.get("messages") or []:
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):  # content parts
                return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
            return str(content or "")
    return ""


def read_requests_log(path: str | Path) -> list[dict[str, Any]]:
    """The request bodies a server wrote to its ``requests_log``, in order."""
    p = Path(path)
    if not p.exists():
        return []
    # The last line may still be being written: only newline-terminated lines count.
    lines = p.read_text(encoding="utf-8").split("\n")[:-1]
    return [json.loads(line) for line in lines if line]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m shoal.llm.scripted",
        description="Serve a scripted OpenAI-compatible model on 127.0.0.1 until SIGTERM.",
    )
    parser.add_argument("--script", required=True, type=Path, help="script JSON file")
    parser.add_argument("--port", type=int, default=0, help="port (0: any free port)")
    parser.add_argument("--requests-log", type=Path, help="append each request body here")
    args = parser.parse_args(argv)
    try:
        script = Script.load(args.script)
    except (OSError, ValueError) as exc:
        print(f"error: {args.script}: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    with ScriptedModelServer(script, port=args.port, requests_log=args.requests_log) as server:
        print(server.base_url, flush=True)
        while not stop.wait(0.5):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
