"""Actors as Ray actors: the same actor runtime, placed by Ray on any node of the cluster.

Each shoal actor gets a small Ray actor (:class:`ActorHost`) on the node Ray
picks; the host starts the normal actor runtime (:func:`run_actor`) as a child
process in a session of its own and reports when it exits. The runtime reaches
the mailbox over ipc when the host is on this machine (the same kernel and the
socket is there), and otherwise over TCP with the team's CurveZMQ keys, with a
scratch SHOAL_HOME of its own for logs and outputs. Ray starts lazily: on the
first launch, or at start-up when the backend is ``ray``; it stops with the
orchestrator. Ray's own restarts are off: the supervisor restarts actors.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
from typing import TYPE_CHECKING, Any

from shoal.launchers import ActorSpec

if TYPE_CHECKING:
    from shoal.paths import Home
    from shoal.settings import OrchestratorSettings

log = logging.getLogger(__name__)

_START_TIMEOUT = 120.0
# A token share of a CPU, not none: a head started with `--num-cpus 0`, as Ray advises for
# a cluster, then takes no actor hosts, while a CPU still holds a hundred of them.
HOST_CPUS = 0.01


def boot_id() -> str:
    """Names this kernel: a host with the same boot id shares our unix sockets."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        import socket

        return socket.gethostname()


class ActorHost:
    """Runs inside a Ray worker: starts one actor process and watches it (a Ray actor class)."""

    def __init__(self) -> None:
        from shoal.cluster.ray_runtime import restore_home

        restore_home()
        self.proc: subprocess.Popen[bytes] | None = None
        self._scratch: str | None = None
        self._started = threading.Event()

    def start(self, spec_json: str, origin_boot_id: str, tcp_json: str | None) -> dict[str, Any]:
        from shoal.mailbox.curve import MailboxAddress
        from shoal.paths import Home

        spec = ActorSpec.model_validate_json(spec_json)
        here = Home.resolve(spec.home)
        local = boot_id() == origin_boot_id and here.mailbox_socket.exists()
        if not local:
            if tcp_json is None:
                raise RuntimeError(
                    "this actor runs on another host, but the orchestrator has no TCP "
                    "mailbox (set mailbox_tcp, or use backend ray with ray_address)"
                )
            self._scratch = tempfile.mkdtemp(prefix=f"shoal-{spec.name}-")
            spec = spec.model_copy(
                update={
                    "home": self._scratch,
                    "mailbox": MailboxAddress.model_validate_json(tcp_json),
                }
            )
            Home.resolve(self._scratch).ensure()
        env = {**os.environ, "SHOAL_HOME": spec.home}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "shoal.launchers.ray"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            env=env,
        )
        assert self.proc.stdin is not None
        # The spec (with keys, for another host) goes through a pipe, never the command line.
        self.proc.stdin.write(_dump(spec))
        self.proc.stdin.close()
        self._started.set()
        return {"pid": self.proc.pid, "local": local}

    def wait(self) -> int:
        self._started.wait()
        assert self.proc is not None
        code = self.proc.wait()
        if self._scratch is not None:  # the scratch home of an actor on another host
            import shutil

            shutil.rmtree(self._scratch, ignore_errors=True)
        return code

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, sig)


def _dump(spec: ActorSpec) -> bytes:
    """The spec as JSON with the secret key in it (pydantic masks SecretStr otherwise)."""
    import json

    data = spec.model_dump(mode="json")
    if spec.mailbox is not None and spec.mailbox.curve is not None:
        data["mailbox"]["curve"]["secret"] = spec.mailbox.curve.secret.get_secret_value()
    return json.dumps(data).encode()


class RayHandle:
    """An actor process on a Ray node, seen through its host's Ray actor.

    The supervisor asks ``alive()`` of every member many times a second while it
    holds its lock, so the answer comes from futures Ray completes in the
    background, not from a call into Ray.
    """

    def __init__(self, host: Any, started: Any) -> None:
        import ray

        self._host = host
        self._started = started.future()
        self._exited = host.wait.remote().future()
        self._ray = ray
        self.pid: int | None = None

    def alive(self) -> bool:
        if self._exited.done():
            return False
        if self.pid is None and self._started.done():
            try:
                self.pid = self._started.result()["pid"]
            except Exception as exc:  # the host could not start the actor
                log.warning("ray actor host failed: %s", exc)
                return False
        return True

    def signal(self, sig: int) -> None:
        if sig == signal.SIGKILL:
            # The actor process watches its host and exits when it goes.
            with contextlib.suppress(Exception):
                self._ray.kill(self._host, no_restart=True)
        else:
            self._host.signal.remote(int(sig))


class RayLauncher:
    name = "ray"

    def __init__(
        self, home: Home, settings: OrchestratorSettings, tcp_endpoint: str | None
    ) -> None:
        self.home = home
        self.settings = settings
        self.tcp_endpoint = tcp_endpoint
        self._host_cls: Any = None
        self._started = False
        self._lock = threading.Lock()

    def warm(self) -> None:
        """Start Ray now when it is the backend (called once the supervisor runs)."""
        if self.settings.backend == "ray":
            try:
                self._ensure()
            except Exception:
                log.exception("starting Ray failed; it is tried again on the first launch")

    def _ensure(self) -> Any:
        with self._lock:
            if self._host_cls is None:
                from shoal.cluster import ray_runtime

                ray_runtime.start(
                    self.home, self.settings.ray_address or None, self.settings.ray_num_cpus
                )
                self._started = True
                import ray

                self._host_cls = ray.remote(num_cpus=HOST_CPUS, max_restarts=0, max_concurrency=4)(
                    ActorHost
                )
            return self._host_cls

    def _tcp(self) -> str | None:
        """The TCP mailbox as a host elsewhere reaches it, with the team's keys (JSON)."""
        if self.tcp_endpoint is None:
            return None
        from shoal.mailbox.curve import MailboxAddress, client_keys

        endpoint = self.tcp_endpoint
        host = endpoint.removeprefix("tcp://").rsplit(":", 1)[0]
        if host in ("0.0.0.0", "*", "[::]"):
            import ray

            endpoint = endpoint.replace(host, ray.util.get_node_ip_address(), 1)
        address = MailboxAddress(endpoint=endpoint, curve=client_keys(self.home))
        return _dump_address(address)

    def launch(self, spec: ActorSpec) -> RayHandle:
        host_cls = self._ensure()
        host = host_cls.options(scheduling_strategy="SPREAD").remote()
        started = host.start.remote(spec.model_dump_json(), boot_id(), self._tcp())
        return RayHandle(host, started)

    def close(self) -> None:
        if self._started:
            from shoal.cluster import ray_runtime

            ray_runtime.stop()


def _dump_address(address: Any) -> str:
    import json

    data = address.model_dump(mode="json")
    if address.curve is not None:
        data["curve"]["secret"] = address.curve.secret.get_secret_value()
    return json.dumps(data)


def _child() -> None:
    """The actor process a host starts: spec from stdin; exits if its host goes away."""
    import time

    from shoal.actors.runtime import run_actor

    spec_json = sys.stdin.read()
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="host-watch", daemon=True).start()
    run_actor(spec_json)


if __name__ == "__main__":
    _child()
