"""Local actor processes, forked from a forkserver that has pre-imported heavy libraries.

DESIGN.md §1: never fork a process that holds ZeroMQ sockets or threads. The
forkserver is a fresh interpreter that only imports libraries (litellm costs
about 3 s), so a new actor starts in tens of milliseconds and makes its own
ZeroMQ context after the fork.
"""

from __future__ import annotations

from multiprocessing.process import BaseProcess

from shoal.launchers import ActorSpec, signal_group
from shoal.launchers.forkserver import Forkserver


class ProcessHandle:
    def __init__(self, proc: BaseProcess) -> None:
        self._proc = proc
        self.pid: int | None = proc.pid

    def alive(self) -> bool:
        return self._proc.is_alive()

    def signal(self, sig: int) -> None:
        if self.pid is not None and self._proc.exitcode is None:
            signal_group(self.pid, sig)


class LocalLauncher:
    name = "local"

    def __init__(self, preload: list[str]) -> None:
        self.forkserver = Forkserver(["shoal.actors.runtime", *preload])

    def warm(self) -> None:
        """Start the forkserver now, so its imports overlap with other start-up work."""
        self.forkserver.warm()

    def launch(self, spec: ActorSpec) -> ProcessHandle:
        from shoal.actors.runtime import run_actor

        proc = self.forkserver.start(run_actor, (spec.model_dump_json(),), f"shoal-{spec.name}")
        return ProcessHandle(proc)

    def close(self) -> None:
        self.forkserver.close()


def remove_temp_dir() -> None:
    """Run multiprocessing's exit clean-up: it removes the ``pymp-*`` directory it made
    under TMPDIR (for the forkserver's socket). A process that ends with ``os._exit``
    skips it, and every orchestrator left one behind."""
    import sys

    util = sys.modules.get("multiprocessing.util")
    if util is not None:  # not imported: no directory was made
        util._run_finalizers()
