"""Where units run: Ray tasks, or local workers forked from the forkserver actors come from
(:class:`shoal.launchers.forkserver.Forkserver`). Both bound concurrency the same way.

The driver keeps at most ``workers`` units in flight and asks :meth:`wait` for
what finished. A unit whose worker died (killed, out of memory, its node lost)
comes back as ``died`` and the driver runs it again; a unit's own failure is a
``failed`` result, never a death.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from shoal.batch.units import UnitResult, UnitSpec
from shoal.llm.env import set_litellm_env
from shoal.messages.base import from_json, to_json

if TYPE_CHECKING:
    from shoal.paths import Home

log = logging.getLogger(__name__)


@dataclass
class Finished:
    spec: UnitSpec
    result: UnitResult | None = None
    died: str | None = None
    """Why the worker running the unit is gone (the unit may run again)."""


class Backend(Protocol):
    name: str

    def start(self) -> float:
        """Get ready to run units; returns the seconds that took."""
        ...

    def submit(self, spec: UnitSpec) -> None: ...

    def wait(self, timeout: float) -> list[Finished]:
        """Units finished since the last call, waiting up to ``timeout`` for the first."""
        ...

    def cancel_all(self) -> None:
        """Stop every unit in flight now (their units stay unfinished)."""
        ...

    def close(self) -> None: ...


# --- Ray -------------------------------------------------------------------------


class RayBackend:
    """Each unit is a Ray task (one CPU); Ray's own retries are off: the driver counts them."""

    name = "ray"

    def __init__(self, home: Home, address: str | None, num_cpus: int | None) -> None:
        self.home = home
        self.address = address
        self.num_cpus = num_cpus
        self._refs: dict[Any, UnitSpec] = {}
        self._task: Any = None
        self.info: Any = None

    def start(self) -> float:
        from shoal.cluster import ray_runtime

        self.info = ray_runtime.start(self.home, self.address, self.num_cpus)
        import ray

        from shoal.batch.work import run_unit

        self._task = ray.remote(num_cpus=1, max_retries=0)(run_unit)
        return self.info.start_seconds

    def submit(self, spec: UnitSpec) -> None:
        ref = self._task.options(name=f"shoal-unit-{spec.unit_id}").remote(to_json(spec).decode())
        self._refs[ref] = spec

    def wait(self, timeout: float) -> list[Finished]:
        import ray

        if not self._refs:
            time.sleep(timeout)
            return []
        ready, _ = ray.wait(list(self._refs), num_returns=1, timeout=timeout)
        if ready:
            rest = [r for r in self._refs if r not in ready]
            if rest:
                more, _ = ray.wait(rest, num_returns=len(rest), timeout=0)
                ready += more
        return [self._outcome(ref, self._refs.pop(ref)) for ref in ready]

    def _outcome(self, ref: Any, spec: UnitSpec) -> Finished:
        import ray
        from ray import exceptions as rex

        try:
            return Finished(spec, from_json(UnitResult, ray.get(ref)))
        except rex.RayTaskError as exc:
            # run_unit catches the unit's own errors: this is the worker unable to run
            # it at all (shoal missing on that node, ...). Running it again would not help.
            reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else repr(exc)
            error = f"the worker could not run the unit: {reason}"
            return Finished(spec, UnitResult(unit_id=spec.unit_id, status="failed", error=error))
        except rex.RayError as exc:  # worker crashed or killed, node died, object lost
            first = str(exc).strip().splitlines()
            return Finished(spec, died=f"{type(exc).__name__}: {first[0] if first else ''}")

    def cancel_all(self) -> None:
        # Not ray.cancel(force=True): a unit finishing while it is force-cancelled
        # aborts the driver inside Ray's core worker ("Tried to complete task that was
        # not pending", exit 1 on a Ctrl-C). close() disconnects the driver, and Ray
        # kills the workers of a job whose driver is gone: the same end, no race.
        self._refs.clear()

    def close(self) -> None:
        from shoal.cluster import ray_runtime

        ray_runtime.stop()


# --- local process pool --------------------------------------------------------------


def _serve(conn: Any, driver: int) -> None:
    """A pool process: units in, results out, until the driver closes the pipe."""
    os.setsid()  # its own group: cancelling kills the unit's commands with it
    _exit_with(driver)
    from shoal.batch.work import run_unit

    while True:
        try:
            spec_json = conn.recv_bytes().decode()
        except (EOFError, OSError):
            break
        conn.send_bytes(run_unit(spec_json).encode())
    os._exit(0)


def _exit_with(driver: int) -> None:
    """Stop at once when the driver dies (a ``kill -9``): nobody would take this unit's
    result, and ``shoal batch resume`` runs the unit again, so working on (and paying
    for its model calls) would be waste. Our parent is the forkserver, which outlives
    the driver while we run, so the driver itself is watched (a pidfd on Linux)."""
    import select
    import threading

    try:
        fd: int | None = os.pidfd_open(driver)
    except ProcessLookupError:
        os.killpg(0, signal.SIGKILL)
    except (AttributeError, OSError):  # no pidfds here: look every half second
        fd = None

    def watch() -> None:
        if fd is not None:
            select.select([fd], [], [])  # readable once the driver has exited
        else:
            while _running(driver):
                time.sleep(0.5)
        os.killpg(0, signal.SIGKILL)  # this process and what runs in its group

    threading.Thread(target=watch, name="driver-watch", daemon=True).start()


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# What a unit imports on its first run, imported once in the forkserver instead.
_UNIT_MODULES = [
    "shoal.batch.work",
    "shoal.actors.executor",
    "shoal.actors.evaluator",
    "shoal.llm.client",
    "shoal.tools",
    "shoal.workspace.snapshots",
    "shoal.evaluation.checks",
]


@dataclass
class _Worker:
    proc: Any
    conn: Any
    spec: UnitSpec | None = None


class LocalBackend:
    """Worker processes forked from a forkserver that imported the heavy modules once.

    A worker runs one unit at a time and stays for the next, so what a unit's
    first model call imports is paid once per worker, as in a Ray worker.
    """

    name = "local"

    def __init__(self, preload: list[str]) -> None:
        from shoal.launchers.forkserver import Forkserver

        self.forkserver = Forkserver([*_UNIT_MODULES, *preload])
        self._workers: list[_Worker] = []

    def start(self) -> float:
        set_litellm_env()  # before the forkserver imports litellm
        return self.forkserver.warm()

    def submit(self, spec: UnitSpec) -> None:
        worker = next((w for w in self._workers if w.spec is None), None)
        if worker is None:
            ours, theirs = self.forkserver.pipe()
            proc = self.forkserver.start(_serve, (theirs, os.getpid()), "shoal-batch-worker")
            theirs.close()
            worker = _Worker(proc, ours)
            self._workers.append(worker)
        worker.conn.send_bytes(to_json(spec))
        worker.spec = spec

    def wait(self, timeout: float) -> list[Finished]:
        from multiprocessing.connection import wait

        busy = [w for w in self._workers if w.spec is not None]
        if not busy:
            time.sleep(timeout)
            return []
        ready = set(wait([w.conn for w in busy] + [w.proc.sentinel for w in busy], timeout))
        done = []
        for w in busy:
            if w.conn not in ready and w.proc.sentinel not in ready:
                continue
            spec, w.spec = w.spec, None
            assert spec is not None
            try:
                done.append(Finished(spec, from_json(UnitResult, w.conn.recv_bytes())))
            except (EOFError, OSError):
                self._discard(w)
                done.append(Finished(spec, died=f"worker exited with code {w.proc.exitcode}"))
        return done

    def _discard(self, w: _Worker) -> None:
        if w.proc.pid is not None and w.proc.exitcode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(w.proc.pid, signal.SIGKILL)
        w.proc.join(5)
        w.conn.close()
        self._workers.remove(w)

    def cancel_all(self) -> None:
        for w in [w for w in self._workers if w.spec is not None]:
            self._discard(w)

    def close(self) -> None:
        for w in list(self._workers):
            w.conn.close()  # an idle worker reads EOF and exits
            w.proc.join(2)
            self._discard(w)
        self.forkserver.close()
