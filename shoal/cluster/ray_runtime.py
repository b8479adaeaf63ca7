"""Start a private local Ray, or join a cluster, from the process that drives the work.

A private local Ray (no address given) is made safe for a developer machine:

- no dashboard, usage statistics off (``RAY_USAGE_STATS_ENABLED=0``), and
  ``RAY_AUTH_MODE=disabled`` unless the user set a mode: otherwise ``ray.init``
  turns token authentication on and writes a token into ``~/.ray``;
- everything on loopback: ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` makes Ray use
  127.0.0.1 as the node address instead of finding a "remotely reachable" one by
  routing towards 8.8.8.8;
- no cloud metadata probes: even with usage statistics off, the dashboard's
  ``UsageStatsHead`` (started without the dashboard too) reads
  ``~/ray_bootstrap_config.yaml`` first thing, and when the file is missing it
  asks 169.254.169.254 and metadata.google.internal which cloud it runs on
  (``ray/_common/usage/usage_lib.py``: ``get_cluster_config_to_report`` ->
  ``get_cloud_from_metadata_requests``). Ray's processes are started with
  ``HOME`` pointing at a directory under the temp dir that holds an empty
  bootstrap config, so the file is found and nothing is asked, and nothing is
  written into the user's home. Work run in Ray workers gets the real ``HOME``
  back (:func:`restore_home`). Ray takes its processes' environment from the
  process that starts it, so a private Ray is started by a child process of its
  own (``python -m shoal.cluster.ray_runtime``) and joined: the stand-in
  ``HOME`` is never set in the orchestrator, whose other threads go on working
  while Ray starts;
- its temp dir (sockets, logs) is short and under ``$SHOAL_HOME`` (unix socket
  paths are limited to 107 bytes), falling back to a private dir in /tmp.

The process that called :func:`start` owns the Ray it started: :func:`stop`
ends it, and so does the process's death (the child stops Ray when its stdin,
a pipe from the owner, closes; Ray's processes share the child's fate).
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from shoal.llm.env import LITELLM_ENV
from shoal.paths import Home

log = logging.getLogger(__name__)

_USER_HOME = "SHOAL_USER_HOME"
# Ray's longest unix socket path below its temp dir ("session_<date>_<pid>/sockets/plasma_store").
_RAY_SOCKET_TAIL = 72
_MAX_IPC_PATH = 107
_START_TIMEOUT = 120.0
_lock = threading.Lock()


@dataclass(frozen=True)
class RayInfo:
    address: str
    """The GCS address other drivers can join with (``--ray-address``)."""
    local: bool
    """True if this process started the Ray (and stops it)."""
    start_seconds: float
    """What starting or joining cost."""


_current: RayInfo | None = None
_owner: subprocess.Popen[bytes] | None = None
"""The child process serving the private Ray this process started (see :func:`main`)."""


def safe_environment() -> dict[str, str]:
    """Variables every Ray start or join from shoal sets (before ray is imported)."""
    return {
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_USAGE_STATS_PROMPT_ENABLED": "0",
        **LITELLM_ENV,  # workers import litellm
    }


def temp_dir(home: Home) -> Path:
    """A short directory for Ray's sockets and logs: under SHOAL_HOME when it fits."""
    preferred = home.root / "ray"
    if len(str(preferred)) + _RAY_SOCKET_TAIL <= _MAX_IPC_PATH:
        preferred.mkdir(mode=0o700, exist_ok=True)
        return preferred
    fallback = Path(tempfile.mkdtemp(prefix="shoal-ray-"))
    log.info("SHOAL_HOME is too long for Ray's sockets; using %s", fallback)
    return fallback


def start(home: Home, address: str | None = None, num_cpus: int | None = None) -> RayInfo:
    """Join ``address``, or start a private local Ray; once per process (later calls return it)."""
    global _current
    with _lock:
        if _current is not None:
            return _current
        for key, value in safe_environment().items():
            os.environ[key] = value
        t0 = time.monotonic()
        if address:
            _join(address)
            _current = RayInfo(address, False, time.monotonic() - t0)
        else:
            _current = _start_child(home, num_cpus, t0)
        log.info(
            "ray %s at %s in %.1fs",
            "started" if _current.local else "joined",
            _current.address,
            _current.start_seconds,
        )
        return _current


def _is_loopback(address: str) -> bool:
    import ipaddress

    host = address.removeprefix("ray://").rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _join(address: str) -> None:
    if _is_loopback(address):  # a Ray on this machine: never look for a route out
        os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    import ray

    ray.init(address=address, **_quiet())


def _start_child(home: Home, num_cpus: int | None, t0: float) -> RayInfo:
    """Start a private Ray in a child process (see the module's docstring) and join it."""
    global _owner
    command = [sys.executable, "-m", "shoal.cluster.ray_runtime", "--home", str(home.root)]
    if num_cpus is not None:
        command += ["--num-cpus", str(num_cpus)]
    home.logs.mkdir(mode=0o700, parents=True, exist_ok=True)
    with open(home.logs / "ray.log", "ab") as log_file:
        proc = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log_file
        )
    try:
        address = _read_address(proc, home)
        _join(address)
    except BaseException:
        _end_child(proc)
        raise
    _owner = proc
    return RayInfo(address, True, time.monotonic() - t0)


def _read_address(proc: subprocess.Popen[bytes], home: Home) -> str:
    """The ``address`` line :func:`main` prints once its Ray is up."""
    assert proc.stdout is not None
    deadline = time.monotonic() + _START_TIMEOUT
    while select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))[0]:
        line = proc.stdout.readline().decode()
        if line.startswith("address "):
            return line.split()[1]
        if not line:  # the child ended without one
            break
    why = "did not start in time" if time.monotonic() >= deadline else "failed to start"
    raise RuntimeError(f"a private Ray {why}; see {home.logs / 'ray.log'}")


def _end_child(proc: subprocess.Popen[bytes], wait: float = 30.0) -> None:
    """Close the child's stdin (it stops Ray and exits); kill it if it takes too long."""
    with contextlib.suppress(OSError):
        if proc.stdin is not None:
            proc.stdin.close()
    try:
        proc.wait(wait)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _start_local(home: Home, num_cpus: int | None, t0: float) -> RayInfo:
    """Start Ray in this process (the child of :func:`_start_child`; it sets HOME for Ray)."""
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # read when ray is imported
    import ray

    tmp = temp_dir(home)
    fake_home = tmp / "home"
    fake_home.mkdir(mode=0o700, exist_ok=True)
    (fake_home / "ray_bootstrap_config.yaml").write_text("{}\n")
    real_home = os.environ.get("HOME")
    # Ray copies this process's environment into every process it starts, now
    # (GCS, raylet, dashboard) and later (workers, from the raylet's copy).
    os.environ["HOME"] = str(fake_home)
    if real_home is not None:
        os.environ[_USER_HOME] = real_home
    try:
        context = ray.init(
            num_cpus=num_cpus,
            include_dashboard=False,
            _temp_dir=str(tmp),
            _node_ip_address="127.0.0.1",
            **_quiet(),
        )
    finally:
        if real_home is None:
            os.environ.pop("HOME", None)
        else:
            os.environ["HOME"] = real_home
    return RayInfo(context.address_info["gcs_address"], True, time.monotonic() - t0)


def _quiet() -> dict[str, object]:
    return {"log_to_driver": False, "logging_level": logging.WARNING, "configure_logging": False}


def stop() -> None:
    """Leave Ray; a private local Ray started here ends with it."""
    global _current, _owner
    with _lock:
        if _current is None:
            return
        import ray

        with contextlib.suppress(Exception):
            ray.shutdown()
        if _owner is not None:
            _end_child(_owner)
            _owner = None
        _current = None


def current() -> RayInfo | None:
    return _current


def restore_home() -> None:
    """In a Ray worker: the user's HOME back (the local Ray's processes run with a stand-in)."""
    real = os.environ.get(_USER_HOME)
    if real:
        os.environ["HOME"] = real


def main(argv: list[str] | None = None) -> int:
    """Keep a private local Ray up for other drivers to join (tests, benchmarks).

    ``python -m shoal.cluster.ray_runtime --home H [--num-cpus N]`` prints
    ``address <gcs address>`` and serves until stdin closes or SIGTERM.
    """
    import argparse
    import signal

    parser = argparse.ArgumentParser(prog="shoal-ray")
    parser.add_argument("--home", required=True)
    parser.add_argument("--num-cpus", type=int, default=None)
    args = parser.parse_args(argv)
    # Ctrl-C reaches the whole foreground group: the owner decides when Ray ends (it
    # closes our stdin), as Ray's own processes ignore SIGINT for the same reason.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.umask(0o077)
    home = Home.resolve(args.home).ensure()
    global _current
    with _lock:
        for key, value in safe_environment().items():
            os.environ[key] = value
        info = _current = _start_local(home, args.num_cpus, time.monotonic())
    sys.stdout.write(f"address {info.address} {info.start_seconds:.2f}\n")
    sys.stdout.flush()
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())

    def watch_stdin() -> None:
        sys.stdin.read()
        done.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    done.wait()
    stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
