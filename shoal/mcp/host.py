"""MCP server sessions, each owned by one long-lived asyncio task on the host's own thread.

The SDK's clients are async context managers whose cancel scopes must be entered
and left by the same task (its stdio client breaks otherwise), so each server
gets exactly one task on the host's event-loop thread. That task connects,
lists the tools, then runs the calls handed to it through a queue until it is
told to stop, and leaves the client itself (closing stdin, then killing the
server's process group if it lingers). The caller's thread waits on
``concurrent.futures`` with timeouts, so a hung server costs one timeout, not
the iteration.

A stdio server is started through ``/bin/sh`` that writes its pid (which is
also its process group: the SDK starts it in a new session) to a file before
``exec``-ing the command, so :meth:`McpHost.close` can kill the whole group as
a fallback when the orderly shutdown did not finish or left children behind.
Being in its own session, a server is out of reach of the supervisor's kill of
its actor's group; it normally exits when its stdin closes with the actor, and
the next host started under the same home kills the groups of pid files whose
owner died (checking the server's environment, so a reused pid is never hit).
Server stderr goes to ``$SHOAL_HOME/logs/mcp/<server>.log``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import secrets as random_tokens
import shutil
import signal
import threading
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from shoal.mcp.config import ServerConfig

if TYPE_CHECKING:
    from mcp import Client
    from mcp_types import CallToolResult

log = logging.getLogger(__name__)

STARTUP_TIMEOUT = 30.0
"""Seconds a server may take to start and list its tools."""
CLOSE_TIMEOUT = 8.0
"""Seconds the orderly shutdown of all servers may take before their groups are killed."""

# $0 is the pid file, "$@" the server's command: the pid written is the one exec keeps.
_WRAPPER = 'echo $$ > "$0" && exec "$@"'
_MARK = "SHOAL_MCP_PID_FILE"
"""Set in each stdio server's environment: which pid file is its own."""


class ServerError(Exception):
    """A server could not be started or used; the message says which and why, in one line."""


@dataclass(frozen=True)
class RemoteTool:
    """One tool as a server lists it."""

    server: str
    name: str
    description: str
    input_schema: dict[str, Any]
    read_only: bool
    """The server marked it ``readOnlyHint`` (it only reads)."""


@dataclass
class _Session:
    name: str
    server: ServerConfig
    ready: concurrent.futures.Future[list[RemoteTool]] = field(
        default_factory=concurrent.futures.Future
    )
    queue: asyncio.Queue[_Job | None] | None = None
    task: asyncio.Task[None] | None = None
    alive: bool = False
    pid_file: Path | None = None
    errlog: IO[str] | None = None

    def pgid(self) -> int | None:
        if self.pid_file is None:
            return None
        try:
            return int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None


@dataclass(frozen=True)
class _Job:
    tool: str
    arguments: dict[str, Any]
    done: concurrent.futures.Future[CallToolResult]


class McpHost:
    """The MCP servers of one executor iteration: start them, call their tools, stop them."""

    def __init__(
        self,
        run_dir: Path,
        log_dir: Path,
        cwd: Path,
        tag: str = "",
        secrets: Collection[str] = (),
    ) -> None:
        """``run_dir`` holds pid files, ``log_dir`` the servers' stderr; servers run in ``cwd``.

        ``secrets`` are cut out of every failure message (an HTTP error may quote a URL
        with a token in it) before it reaches a log, the model or the recorded events.
        """
        self.secrets = sorted(secrets, key=len, reverse=True)
        self.run_dir = run_dir
        self.log_dir = log_dir
        self.cwd = cwd
        # The owner's pid comes first so a later host can tell a dead owner's files.
        self.tag = f"{os.getpid()}-{tag or 'host'}-{random_tokens.token_hex(3)}"
        sweep(run_dir)
        self.sessions: dict[str, _Session] = {}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="shoal-mcp", daemon=True
        )
        self._thread.start()
        self._closed = False

    # --- the caller's side (any thread but the host's) ---------------------------------

    def start(
        self, servers: dict[str, ServerConfig], timeout: float = STARTUP_TIMEOUT
    ) -> tuple[list[RemoteTool], dict[str, str]]:
        """Start every server at once; their tools, and a one-line reason for each that failed."""
        for name, server in servers.items():
            session = _Session(name, server)
            self.sessions[name] = session
            asyncio.run_coroutine_threadsafe(self._begin(session), self._loop)
        tools: list[RemoteTool] = []
        failures: dict[str, str] = {}
        wait = concurrent.futures.wait([s.ready for s in self.sessions.values()], timeout=timeout)
        for name, session in self.sessions.items():
            if session.ready not in wait.done:
                failures[name] = f"it did not start within {timeout:g}s"
                self._loop.call_soon_threadsafe(self._cancel, session)
                continue
            try:
                tools += session.ready.result()
            except Exception as exc:
                failures[name] = str(exc)
        return tools, failures

    def call(self, server: str, tool: str, arguments: dict[str, Any]) -> CallToolResult:
        """Run one tool call on its server's task; ServerError or TimeoutError if it cannot."""
        session = self.sessions.get(server)
        if session is None or self._closed:
            raise ServerError(f"MCP server {server} is not running")
        job = _Job(tool, arguments, concurrent.futures.Future())
        self._loop.call_soon_threadsafe(self._enqueue, session, job)
        # The server has its own timeout per call; this one only guards a stuck session.
        limit = session.server.timeout + 10
        try:
            return job.done.result(timeout=limit)
        except concurrent.futures.TimeoutError:
            job.done.cancel()
            raise TimeoutError(f"no answer within {session.server.timeout:g}s") from None

    def close(self, timeout: float = CLOSE_TIMEOUT) -> None:
        """Stop every server (each task leaves its own client), then kill leftover groups."""
        if self._closed:
            return
        self._closed = True
        tasks = [s for s in self.sessions.values() if s.task is not None]
        if tasks:
            future = asyncio.run_coroutine_threadsafe(self._stop_all(timeout), self._loop)
            with contextlib.suppress(Exception):
                future.result(timeout + 5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        if not self._thread.is_alive():
            self._loop.close()
        for session in self.sessions.values():
            _kill_group(session)
            if session.pid_file is not None:
                session.pid_file.unlink(missing_ok=True)
            if session.errlog is not None:
                session.errlog.close()

    # --- the host's event-loop thread ----------------------------------------------------

    async def _begin(self, session: _Session) -> None:
        session.queue = asyncio.Queue()
        session.task = asyncio.current_task()
        try:
            await self._own(session)
        except asyncio.CancelledError:
            _settle(session.ready, ServerError("it did not start in time"))
        except BaseException as exc:  # the reason goes to the caller
            _settle(session.ready, ServerError(self.reason(exc)))
            log.info("MCP server %s ended: %s", session.name, self.reason(exc))
        finally:
            session.alive = False
            while not session.queue.empty():
                job = session.queue.get_nowait()
                if job is not None:
                    _settle(job.done, ServerError(f"MCP server {session.name} has stopped"))

    async def _own(self, session: _Session) -> None:
        """The one task that enters, uses and leaves this server's client."""
        async with contextlib.AsyncExitStack() as stack:
            client = await self._connect(session, stack)
            tools = await _list_tools(session.name, client)
            session.alive = True
            _settle(session.ready, tools)
            assert session.queue is not None
            while (job := await session.queue.get()) is not None:
                if job.done.cancelled():
                    continue
                try:
                    result = await client.call_tool(
                        job.tool, job.arguments, read_timeout_seconds=session.server.timeout
                    )
                except Exception as exc:
                    _settle(job.done, ServerError(self.reason(exc)))
                else:
                    _settle(job.done, result)

    async def _connect(self, session: _Session, stack: contextlib.AsyncExitStack) -> Client:
        from mcp import Client
        from mcp_types import Implementation

        from shoal import __version__

        server = session.server
        info = Implementation(name="shoal", version=__version__)
        if server.type == "http":
            import httpx2
            from mcp.client.streamable_http import streamable_http_client

            http = await stack.enter_async_context(
                httpx2.AsyncClient(headers=server.headers, timeout=httpx2.Timeout(30, read=300))
            )
            transport: Any = streamable_http_client(server.url or "", http_client=http)
        else:
            transport = self._stdio(session)
        client = Client(transport, read_timeout_seconds=server.timeout, client_info=info)
        return await stack.enter_async_context(client)

    def _stdio(self, session: _Session) -> Any:
        from mcp import StdioServerParameters
        from mcp.client.stdio import stdio_client

        server = session.server
        command = server.command or ""
        search = (server.env.get("PATH") or os.environ.get("PATH")) if "/" not in command else None
        if shutil.which(command, path=search) is None:
            raise ServerError(f"command {command!r} was not found or is not executable")
        self.run_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.log_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        session.pid_file = self.run_dir / f"{self.tag}-{session.name}.pid"
        log_path = self.log_dir / f"{session.name}.log"
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        session.errlog = os.fdopen(fd, "a", encoding="utf-8")
        params = StdioServerParameters(
            command="/bin/sh",
            args=["-c", _WRAPPER, str(session.pid_file), command, *server.args],
            env={**server.env, _MARK: str(session.pid_file)},
            cwd=self.cwd,
        )
        return stdio_client(params, errlog=session.errlog)

    def reason(self, exc: BaseException) -> str:
        text = reason(exc)
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text

    def _enqueue(self, session: _Session, job: _Job) -> None:
        if session.alive and session.queue is not None:
            session.queue.put_nowait(job)
        else:
            _settle(job.done, ServerError(f"MCP server {session.name} is not running"))

    def _cancel(self, session: _Session) -> None:
        if session.task is not None and not session.task.done():
            session.task.cancel()

    async def _stop_all(self, timeout: float) -> None:
        tasks = [s.task for s in self.sessions.values() if s.task and not s.task.done()]
        for session in self.sessions.values():
            if session.queue is not None:
                session.queue.put_nowait(None)
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=timeout)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=2)


async def _list_tools(server: str, client: Client) -> list[RemoteTool]:
    tools: list[RemoteTool] = []
    cursor: str | None = None
    for _ in range(100):  # a server that pages forever must not hold the start
        page = await client.list_tools(cursor=cursor)
        for tool in page.tools:
            hints = tool.annotations
            tools.append(
                RemoteTool(
                    server=server,
                    name=tool.name,
                    description=tool.description or tool.title or "",
                    input_schema=dict(tool.input_schema or {}),
                    read_only=bool(hints and hints.read_only_hint),
                )
            )
        cursor = page.next_cursor
        if not cursor:
            break
    return tools


def _settle(future: concurrent.futures.Future[Any], value: Any) -> None:
    """Resolve ``future`` unless it already is (a caller may have given up on it)."""
    if future.done():
        return
    with contextlib.suppress(concurrent.futures.InvalidStateError):
        if isinstance(value, BaseException):
            future.set_exception(value)
        else:
            future.set_result(value)


def _kill_group(session: _Session) -> None:
    """SIGKILL what is left of a stdio server's process group (nothing, normally)."""
    pgid = session.pgid()
    if pgid is None or pgid <= 1:
        return
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        return
    log.warning("MCP server %s left processes behind; killed its process group", session.name)


def sweep(run_dir: Path) -> None:
    """Kill the servers of hosts whose process died before closing them, and drop their files."""
    for pid_file in run_dir.glob("*.pid"):
        owner = pid_file.name.split("-", 1)[0]
        if not owner.isdigit() or _exists(int(owner)):
            continue
        try:
            pgid = int(pid_file.read_text().strip())
            environ = Path(f"/proc/{pgid}/environ").read_bytes().split(b"\0")
        except (OSError, ValueError):
            environ = []
        if f"{_MARK}={pid_file}".encode() in environ:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
                log.warning("killed MCP server %s left by a dead actor", pid_file.name)
        pid_file.unlink(missing_ok=True)


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def reason(exc: BaseException) -> str:
    """One line for a failure, looking inside the SDK's exception groups."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    if isinstance(exc, ServerError):
        return str(exc)
    if type(exc).__name__ == "MCPError":  # the server's (or the session's) own words
        return str(getattr(exc, "message", exc))
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
