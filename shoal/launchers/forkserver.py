"""The process's forkserver: a fresh interpreter that imported the heavy libraries once.

DESIGN.md §1: never fork a process that holds ZeroMQ sockets or threads. The
forkserver only imports libraries (litellm costs about 3 s), so a child forked
from it starts in tens of milliseconds and makes its own ZeroMQ context. The
orchestrator forks its actors from one (:mod:`shoal.launchers.local`), a local
batch its unit workers (:mod:`shoal.batch.backends`): multiprocessing keeps one
forkserver per process, so there is one of these per process too.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.forkserver
import os
import signal
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any


class Forkserver:
    def __init__(self, preload: list[str]) -> None:
        self._ctx = multiprocessing.get_context("forkserver")
        self._ctx.set_forkserver_preload(preload)

    def warm(self) -> float:
        """Start the forkserver now (its imports overlap other work); the seconds it took."""
        t0 = time.monotonic()
        multiprocessing.forkserver.ensure_running()
        return time.monotonic() - t0

    def start(self, target: Callable[..., Any], args: tuple[Any, ...], name: str) -> BaseProcess:
        """A child running ``target(*args)``, forked from the forkserver and started."""
        proc = self._ctx.Process(target=target, args=args, name=name)
        proc.start()
        return proc

    def pipe(self) -> tuple[Connection, Connection]:
        return self._ctx.Pipe(duplex=True)

    def close(self) -> None:
        """Stop the forkserver (it would also exit on its own once we are gone)."""
        server = multiprocessing.forkserver._forkserver  # type: ignore[attr-defined]
        pid = getattr(server, "_forkserver_pid", None)
        if pid is not None:
            # CPython's way (below) closes a pipe the forkserver reads only once its
            # preloads are imported: a process stopped in its first seconds waited
            # for litellm's import. The forkserver holds nothing worth a clean exit.
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        stop = getattr(server, "_stop", None)  # CPython's own (private) shutdown hook
        if stop is not None:
            stop()
