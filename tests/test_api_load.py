"""The HTTP API under hostile clients: idle and half-sent connections, a lowered fd limit,
bodies without a length, HEAD and OPTIONS, and a ``--port 0`` server across a kill -9.

Real orchestrators under temp homes; their fd limit is lowered for the process they are
started from (as ``ulimit -n`` would); clients are raw sockets, so every byte is ours.
"""

from __future__ import annotations

import json
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from http import HTTPStatus
from typing import Any

from shoal import __version__, daemon
from shoal.paths import Home
from tests.conftest import shoal, wait_for
from tests.test_api import request

TOKEN = "tok-" + os.urandom(8).hex()
LIMITED = (
    "import os, resource, sys; soft, _, hard = sys.argv[1].partition(':'); "
    "resource.setrlimit(resource.RLIMIT_NOFILE, (int(soft), int(hard or soft))); "
    "os.execv(sys.argv[2], sys.argv[2:])"
)


def serve_limited(nofile: int | str | None, *args: str, env: dict[str, str] | None = None) -> int:
    """``shoal serve --port 0 --detach``, its orchestrator under ``nofile`` fds: the port."""
    tokenless = "SHOAL_API_TOKEN" not in (env or {}) and "--token" not in args
    command = [sys.executable, "-m", "shoal", "serve", "--port", "0", "--detach", *args]
    command += ["--no-token"] * tokenless
    if nofile is not None:  # as `ulimit -n N` before it: the orchestrator inherits the limit
        command = [sys.executable, "-c", LIMITED, str(nofile), *command]
    served = subprocess.run(
        command, capture_output=True, text=True, timeout=90, env={**os.environ, **(env or {})}
    )
    assert served.returncode == 0, served.stderr
    found = re.search(r"^serving http://127\.0\.0\.1:(\d+)/api/v1$", served.stdout, re.M)
    assert found, served.stdout
    return int(found.group(1))


def raw(port: int, data: bytes, *, wait: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    """Send ``data`` as is and read the whole answer (the server closes, or Content-Length)."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as sock:
        sock.sendall(data)
        got = b""
        while b"\r\n\r\n" not in got:
            chunk = sock.recv(65536)
            assert chunk, f"closed without an answer: {got!r}"
            got += chunk
        head, _, body = got.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        # A HEAD's Content-Length is what a GET would get; no body follows.
        length = 0 if data.startswith(b"HEAD ") else int(headers.get("content-length", "0"))
        while len(body) < length:
            chunk = sock.recv(65536)
            assert chunk, "closed mid-body"
            body += chunk
        return int(lines[0].split()[1]), headers, body


def closed_by_server(sock: socket.socket, seen: dict[socket.socket, bytes] | None = None) -> bool:
    """Whether the server has closed ``sock``; what it sent first goes to ``seen``."""
    sock.setblocking(False)
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return True
            if seen is not None:
                seen[sock] = seen.get(sock, b"") + chunk
    except BlockingIOError:
        return False
    except OSError:
        return True


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def log_text(home: Home) -> str:
    return (home.logs / "orchestrator.log").read_text()


def test_idle_connections_over_the_cap_get_503_and_are_closed_and_the_orchestrator_lives(
    home: Home,
) -> None:
    # 256 fds: the cap derived from it is 16, and 400 connections would be far past the
    # limit itself (the old server held each one open with a thread until the process died).
    env = {"SHOAL_API_HEAD_TIMEOUT": "2", "SHOAL_API_KEEPALIVE_TIMEOUT": "1"}
    port = serve_limited(256, env=env)
    pid = daemon.running_pid(home)
    assert pid is not None
    assert resource.prlimit(pid, resource.RLIMIT_NOFILE) == (256, 256)
    assert "at most 16 connections" in log_text(home)

    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(400)]
    most = 0
    sent: dict[socket.socket, bytes] = {}
    try:

        def over_the_cap_closed() -> bool:
            nonlocal most
            most = max(most, fd_count(pid))
            return sum(1 for s in idle if closed_by_server(s, sent)) >= 400 - 16

        wait_for(over_the_cap_closed, 15, what="the connections over the cap to be closed")
        # Answered first: 503, Retry-After, JSON (some may have made room for later ones
        # instead, had they waited over a second; the rest were refused).
        refused = [b for b in sent.values() if b.startswith(b"HTTP/1.1 503 Service Unavailable")]
        assert len(refused) >= 100 and all(b"retry-after: 1\r\n" in b for b in refused)
        assert json.loads(refused[0].partition(b"\r\n\r\n")[2])["error"]["code"] == "unavailable"
        # A request now gets a status: 503 while the cap is full, 200 once an idle one
        # has waited long enough to make room; never a reset or a hang.
        status, headers, body = raw(port, b"GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert status in (200, 503), body
        if status == 503:
            assert headers["retry-after"] == "1" and headers["connection"] == "close"
            assert json.loads(body)["error"]["code"] == "unavailable"
        # The head timeout closes the ones held without a byte sent.
        wait_for(lambda: all(closed_by_server(s) for s in idle), 20, what="the head timeout")
        most = max(most, fd_count(pid))
    finally:
        for s in idle:
            s.close()
    assert most < 256
    assert daemon.running_pid(home) == pid
    assert request("GET", f"http://127.0.0.1:{port}/api/v1/health") == (
        200,
        {"status": "ok", "version": __version__, "pid": pid},
    )
    status = shoal("status", env={"COLUMNS": "300"}, check=True).stdout
    assert "warning: the HTTP API refused" in status and "over its limit of 16" in status
    assert log_text(home).count("is at its limit of 16 open connections") == 1

    # A head sent a byte at a time is closed at the head timeout all the same.
    with socket.create_connection(("127.0.0.1", port)) as slow:
        slow.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n")

        def trickled_until_closed() -> bool:
            try:
                slow.sendall(b"X")
            except OSError:
                return True
            return closed_by_server(slow)

        wait_for(trickled_until_closed, 20, interval=0.3, what="the trickled head to be closed")
    # An idle kept-alive connection is closed too, after one answer.
    with socket.create_connection(("127.0.0.1", port), timeout=10) as kept:
        kept.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert kept.recv(65536).startswith(b"HTTP/1.1 200 ")
        wait_for(lambda: closed_by_server(kept), 20, what="the keep-alive timeout")
    assert daemon.running_pid(home) == pid


def test_the_orchestrator_takes_its_hard_fd_limit_and_caps_the_api_at_half_of_it(
    home: Home,
) -> None:
    serve_limited("256:1024")  # soft 256, hard 1024
    pid = daemon.running_pid(home)
    assert pid is not None
    assert resource.prlimit(pid, resource.RLIMIT_NOFILE) == (1024, 1024)
    assert "at most 512 connections" in log_text(home)
    # The knobs are checked when serving starts: a bad one is one line, and nothing served.
    home.config_file.write_text("[api]\nworkers = 0\n")
    bad = shoal("serve", "--port", "0", "--detach")
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert f"setting 'workers' (SHOAL_API_WORKERS or [api] in {home.config_file}): " in bad.stderr
    assert not (home.root / "api.json").exists()


def test_out_of_file_descriptors_on_accept_pauses_the_api_and_the_orchestrator_goes_on(
    home: Home,
) -> None:
    # A cap set by hand far past what 128 fds allow: accept itself fails (EMFILE).
    env = {"SHOAL_API_MAX_CONNECTIONS": "1000", "SHOAL_API_HEAD_TIMEOUT": "60"}
    port = serve_limited(128, env=env)
    pid = daemon.running_pid(home)
    assert pid is not None
    # Warm first: the recorder and the queries import pyarrow on first use, and an import
    # needs a file descriptor too (why the cap leaves half of them to the rest).
    assert request("GET", f"http://127.0.0.1:{port}/api/v1/status")[0] == 200
    idle = []
    try:
        for _ in range(200):  # the backlog takes what the server cannot accept
            idle.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        wait_for(
            lambda: "could not accept a connection: Too many open files" in log_text(home),
            15,
            what="the EMFILE line",
        )
        assert daemon.running_pid(home) == pid
    finally:
        for s in idle:
            s.close()
    wait_for(lambda: _answers(port), 20, what="the API to accept again")
    status = shoal("status", env={"COLUMNS": "300"}, check=True).stdout
    assert "warning: the HTTP API ran out of file descriptors" in status, status
    assert "raise `ulimit -n`" in status
    lines = [line for line in log_text(home).splitlines() if "Too many open files" in line]
    assert len(lines) == 1, "\n".join(lines)  # once a minute at most, not per attempt
    assert "Traceback" not in log_text(home)


def _answers(port: int) -> bool:
    try:
        return request("GET", f"http://127.0.0.1:{port}/api/v1/health")[0] == 200
    except OSError:
        return False


def test_bodies_need_a_length_head_answers_like_get_and_options_opens_nothing(
    home: Home,
) -> None:
    port = serve_limited(None, env={"SHOAL_API_BODY_TIMEOUT": "1"})
    host = b"Host: 127.0.0.1\r\n"

    def send(head: str, body: bytes = b"") -> tuple[int, dict[str, str], bytes]:
        return raw(port, head.encode() + host + b"\r\n" + body)

    # POST without Content-Length (and not chunked): 411, whatever the route.
    for path in ("/api/v1/tasks", "/api/v1/tasks/0000000000/cancel", "/api/v1/nothing"):
        status, headers, body = send(f"POST {path} HTTP/1.1\r\n")
        assert status == 411 and headers["connection"] == "close", body
        assert json.loads(body)["error"]["code"] == "length_required"
    # A chunked body is read (and validated), and held to 1 MiB like any other.
    chunk = b'{"description": "x"}'
    status, _, body = send(
        "POST /api/v1/tasks HTTP/1.1\r\nTransfer-Encoding: chunked\r\n",
        b"%x\r\n%s\r\n0\r\n\r\n" % (len(chunk), chunk),
    )
    assert status == 422 and "cwd: Field required" in json.loads(body)["error"]["message"]
    big = b"x" * (1024 * 1024)
    status, _, body = send(
        "POST /api/v1/tasks HTTP/1.1\r\nTransfer-Encoding: chunked\r\n",
        b"%x\r\n%s\r\n1\r\nx\r\n0\r\n\r\n" % (len(big), big),
    )
    assert status == 413 and json.loads(body)["error"]["code"] == "too_large"
    status, _, body = send("POST /api/v1/tasks HTTP/1.1\r\nContent-Length: 2000000\r\n")
    assert status == 413
    # A body that stops arriving: 408 after the body timeout, not a held connection.
    status, _, body = send("POST /api/v1/tasks HTTP/1.1\r\nContent-Length: 50\r\n", b'{"de')
    assert status == 408 and json.loads(body)["error"]["code"] == "timeout"

    # HEAD: GET's status and headers, no body.
    get_status, get_headers, get_body = send("GET /api/v1/tasks HTTP/1.1\r\nConnection: close\r\n")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"HEAD /api/v1/tasks HTTP/1.1\r\n" + host + b"Connection: close\r\n\r\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, rest = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and rest == b""
    assert f"content-length: {len(get_body)}".encode() in head.lower()
    assert get_status == 200 and get_headers["content-type"] == "application/json"
    status, headers, _ = send("HEAD /api/v1/tasks/0000000000/cancel HTTP/1.1\r\n")
    assert status == 405 and headers["allow"] == "POST, OPTIONS"

    # OPTIONS: 204 with Allow, and no CORS header that would let a page in.
    status, headers, body = send("OPTIONS /api/v1/tasks HTTP/1.1\r\n")
    assert (status, body) == (204, b"") and headers["allow"] == "POST, GET, HEAD, OPTIONS"
    assert not [h for h in headers if h.startswith("access-control-")]
    preflight = (
        "OPTIONS /api/v1/tasks HTTP/1.1\r\nOrigin: https://evil.example\r\n"
        "Access-Control-Request-Method: POST\r\n"
    )
    status, headers, _ = send(preflight)
    assert status == 403 and not [h for h in headers if h.startswith("access-control-")]
    assert send("OPTIONS /api/v1/nothing HTTP/1.1\r\n")[0] == 404
    # No 501 anywhere: an unknown method is a 405 naming what the path takes.
    status, headers, body = send("BREW /api/v1/tasks HTTP/1.1\r\n")
    assert status == 405 and headers["allow"] == "POST, GET, HEAD, OPTIONS", body
    # Bytes that are not HTTP: a JSON 400.
    status, _, body = raw(port, b"GARBAGE\r\n\r\n")
    assert status == 400 and json.loads(body)["error"]["code"] == "bad_request"
    # Refusals are logged, but a flood of them is not logged line for line.
    for _ in range(200):
        assert send("GET /api/v1/flood HTTP/1.1\r\n")[0] == 404
    time.sleep(1.0)  # the count of what was left out comes with the next second's first line
    assert send("GET /api/v1/after-a-second HTTP/1.1\r\n")[0] == 404
    logged = log_text(home).count("'GET /api/v1/flood' 404")
    assert 0 < logged < 200 and "more refused request(s) in that second" in log_text(home)

    # With a token, a preflight (which never carries one) is refused too.
    assert shoal("serve", "--stop").returncode == 0
    port = serve_limited(None, env={"SHOAL_API_TOKEN": TOKEN})
    status, headers, _ = send(preflight)
    assert status == 401 and not [h for h in headers if h.startswith("access-control-")]
    status, headers, _ = send(
        f"OPTIONS /api/v1/tasks HTTP/1.1\r\nAuthorization: Bearer {TOKEN}\r\n"
    )
    assert status == 204 and "POST" in headers["allow"]


def refused(port: int, head: bytes, body: bytes = b"") -> tuple[str, dict[str, str], Any]:
    """Send ``head`` and ``body`` (all the client will ever send) and read the answer to the
    end: its status line, headers and JSON body. The connection must close after it. The
    socket's 5 s timeout is well under the server's body timeout (60 s here): a server that
    waits for bytes which never come fails on the timeout instead of answering 408."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(head + b"\r\n" + body)
        got = b""
        while chunk := sock.recv(65536):  # to the end: the server closes
            got += chunk
    top, _, rest = got.partition(b"\r\n\r\n")
    lines = top.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    assert len(rest) == int(headers["content-length"]), got
    return lines[0], headers, json.loads(rest)


def test_411_and_413_end_to_end_refuse_in_json_close_and_the_orchestrator_answers_after(
    home: Home,
) -> None:
    # Each assertion below was checked to fail with its behaviour removed from
    # shoal/api/asgi.py: without the 411 in _framing, the POST without a length is a 422
    # (an empty body validated); without the declared-length check, the 2 MiB POST waits
    # for its body (the socket times out); without the size check in _read, the chunked
    # body that grows past 1 MiB waits for its last chunk (the socket times out).
    port = serve_limited(None, env={"SHOAL_API_TOKEN": TOKEN, "SHOAL_API_BODY_TIMEOUT": "60"})
    pid = daemon.running_pid(home)
    token = (home.root / "api.token").read_text().strip()
    assert pid is not None and token == TOKEN
    head = (
        f"POST /api/v1/tasks HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
        "Content-Type: application/json\r\n"
    ).encode()
    task = json.dumps({"description": "x", "cwd": str(home.root)}).encode()
    too_large = {
        "error": {"code": "too_large", "message": f"the body may be at most {1024 * 1024} bytes"}
    }

    def orchestrator_answers() -> None:
        status, view = request("GET", f"http://127.0.0.1:{port}/api/v1/status", token=token)
        assert status == 200 and view["orchestrator"]["pid"] == pid, view
        assert request("GET", f"http://127.0.0.1:{port}/api/v1/tasks", token=token) == (
            200,
            {"tasks": []},  # none of the refused bodies became a task
        )

    # 411: a POST that says neither how long its body is nor that it is chunked. What
    # follows its head cannot be told from a next request, so none of it is read.
    line, headers, body = refused(port, head, task)
    assert line == f"HTTP/1.1 411 {HTTPStatus(411).phrase}"
    assert headers["content-type"] == "application/json" and headers["connection"] == "close"
    assert body == {
        "error": {
            "code": "length_required",
            "message": "a POST needs a Content-Length (0 for no body) or a chunked body",
        }
    }
    orchestrator_answers()

    # 413 on the declared length alone: answered before a byte of the body is sent.
    line, headers, body = refused(port, head + b"Content-Length: %d\r\n" % (2 * 1024 * 1024))
    assert line == f"HTTP/1.1 413 {HTTPStatus(413).phrase}"
    assert headers["content-type"] == "application/json" and headers["connection"] == "close"
    assert body == too_large
    orchestrator_answers()

    # 413 on a chunked body once it has grown past 1 MiB: 1 MiB and one more byte are
    # sent, the last chunk never is; the server stops reading there.
    mib = b"x" * (1024 * 1024)
    chunked = head + b"Transfer-Encoding: chunked\r\n"
    line, headers, body = refused(port, chunked, b"%x\r\n%s\r\n1\r\nx\r\n" % (len(mib), mib))
    assert line == f"HTTP/1.1 413 {HTTPStatus(413).phrase}"
    assert headers["content-type"] == "application/json" and headers["connection"] == "close"
    assert body == too_large
    orchestrator_answers()

    # The limit is 1 MiB, not less: a body of exactly 1 MiB, declared or chunked, is read
    # and validated (422: the JSON is not a task).
    exact = b" " * (1024 * 1024 - 2) + b"{}"
    for framed in (
        head + b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(exact), exact),
        chunked + b"Connection: close\r\n\r\n%x\r\n%s\r\n0\r\n\r\n" % (len(exact), exact),
    ):
        status, _, answer = raw(port, framed)
        assert status == 422 and json.loads(answer)["error"]["code"] != "too_large", answer
    orchestrator_answers()
    assert daemon.running_pid(home) == pid


def test_a_port_picked_with_port_0_is_kept_across_a_kill_9_and_a_taken_one_is_reported(
    home: Home,
) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "shoal", "serve", "--no-token", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "300"},
    )
    errors: list[str] = []
    assert proc.stdout is not None and proc.stderr is not None
    reader = threading.Thread(target=lambda: errors.extend(proc.stderr), daemon=True)  # type: ignore[arg-type]
    reader.start()
    blocker = socket.socket()
    try:
        found = re.match(r"serving http://127\.0\.0\.1:(\d+)/api/v1$", proc.stdout.readline())
        assert found, errors
        port = int(found.group(1))
        api_json = home.root / "api.json"
        assert json.loads(api_json.read_text())["port"] == port
        assert api_json.stat().st_mode & 0o777 == 0o600
        first = daemon.running_pid(home)
        assert first is not None

        # Killed: the foreground server starts another orchestrator, on the same port.
        os.kill(first, signal.SIGKILL)
        wait_for(lambda: _pid_on(port) not in (None, first), 60, what="the API back")
        second = _pid_on(port)

        # Killed again, and the port taken meanwhile: said, not moved.
        os.kill(second, signal.SIGKILL)  # type: ignore[arg-type]
        blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        wait_for(lambda: _bound(blocker, port), 10, interval=0.01, what="the port freed")
        blocker.listen()
        wait_for(lambda: daemon.running_pid(home) not in (None, second), 60, what="a restart")
        said = (
            f"not serving the HTTP API: cannot listen on 127.0.0.1:{port}: Address already in use"
        )
        wait_for(lambda: any(said in line for line in errors), 30, what="shoal serve to say so")
        status = shoal("status", env={"COLUMNS": "300"}, check=True).stdout
        assert f"warning: {said}" in status
        assert said in log_text(home)
        assert json.loads(api_json.read_text())["port"] == port
    finally:
        blocker.close()
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 0
    assert not (home.root / "api.json").exists()


def _pid_on(port: int) -> Any:
    try:
        status, body = request("GET", f"http://127.0.0.1:{port}/api/v1/health")
    except OSError:
        return None
    return body["pid"] if status == 200 else None


def _bound(sock: socket.socket, port: int) -> bool:
    try:
        sock.bind(("127.0.0.1", port))
    except OSError:
        return False
    return True


def test_the_cli_starts_without_importing_the_http_server() -> None:
    for args in (["--help"], ["serve", "--help"], ["dashboard", "--help"]):
        done = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "shoal", *args],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]
        imported = {line.split("|")[-1].strip() for line in done.stderr.splitlines()}
        assert "shoal.cli.app" in imported  # the import log is there to look at
        assert not {m for m in imported if m.split(".")[0] in ("uvicorn", "h11")}
        assert "shoal.api.server" not in imported
        web = ("fastapi", "starlette", "anyio", "opentelemetry")  # the orchestrator's only
        assert not {m for m in imported if m.split(".")[0] in web}
