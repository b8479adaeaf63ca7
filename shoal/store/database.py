"""Opening the DuckDB file: the one writer, and read-only readers.

A file that cannot be opened is told apart, each in one line that says what to
do: held by another process (:class:`DatabaseBusy`), not a database DuckDB can
read (:class:`DatabaseInvalid`: corrupt, truncated, another version), gone from
a home that has had one (:class:`DatabaseMissing`), or no room to write
(:class:`~shoal.store.space.DiskFull`). Nothing here deletes, moves or
overwrites the file.

A home remembers that it has had a database: the writer leaves
``shoal.duckdb.created`` beside it. Without that marker a missing file is a new
home's (created on the first start); with it, the file was lost, and no
orchestrator starts an empty one in its place until the marker is removed.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from shoal.store.migrations import migrate
from shoal.store.space import DiskFull, is_disk_full, reason_of

if TYPE_CHECKING:
    import duckdb

# What DuckDB says of a file that is not a database it can read.
_INVALID = (
    "not a valid DuckDB database",
    "Could not read enough bytes",
    "Corrupt database",
    "checksum",
    "version number",
    "Serialization Error",
)


class DatabaseError(Exception):
    """The database file cannot be used; the message says why and what to do."""


class DatabaseBusy(DatabaseError):
    """Another process holds the database file for writing."""


class DatabaseInvalid(DatabaseError):
    """The file is not a database DuckDB can read: corrupt, truncated, another version."""


class DatabaseMissing(DatabaseError):
    """The home has had a database, and the file is gone."""


def marker(path: Path) -> Path:
    """The file that says a database was created at ``path``."""
    return path.with_name(path.name + ".created")


def missing(path: Path) -> DatabaseMissing | None:
    """The error to report if ``path`` is gone from a home that has had it; else None."""
    if path.exists() or not marker(path).exists():
        return None
    try:
        since = marker(path).read_text().split("\n", 1)[0].strip() or "?"
    except OSError:
        since = "?"
    return DatabaseMissing(
        f"{path} is missing, though this home has had a database since {since}: the tasks, "
        "learnings and costs recorded there are gone unless you restore the file from a "
        f"backup; to start with an empty one instead, remove {marker(path)}"
    )


def unusable(path: Path, exc: BaseException) -> Exception:
    """DuckDB's refusal to open ``path``, as the one-line error shoal reports."""
    text = str(exc).strip().split("\n", 1)[0] or type(exc).__name__
    if "Could not set lock" in text or "Conflicting lock" in text:
        return DatabaseBusy(f"{path} is locked by another process: {text}")
    if is_disk_full(exc):
        return DiskFull(path, reason_of(exc))
    if any(sign in text for sign in _INVALID):
        why = text.removeprefix("IO Error: ").replace(f' "{path}"', "")
        return DatabaseInvalid(
            f"{path} is not a database shoal can read ({why}); it was left as it is: restore "
            f"it from a backup, or move it aside (mv {path} {path}.broken) and remove "
            f"{marker(path)} to start an empty one (the orchestrator's journal replays the "
            "records it had not yet written into it)"
        )
    return DatabaseError(f"cannot use {path}: {text}")


def open_writer(path: Path) -> duckdb.DuckDBPyConnection:
    """Open (creating if needed) the database for writing, migrated, owner-only."""
    import duckdb

    lost = missing(path)
    if lost is not None:
        raise lost
    old_umask = os.umask(0o077)
    try:
        con = duckdb.connect(str(path))
    except duckdb.Error as exc:
        raise unusable(path, exc) from None
    finally:
        os.umask(old_umask)
    try:
        os.chmod(path, 0o600)
        migrate(con)
        _mark(path)
    except Exception as exc:
        con.close()
        if isinstance(exc, duckdb.Error | OSError):
            raise unusable(path, exc) from None
        raise
    return con


def _mark(path: Path) -> None:
    """Leave the marker (also beside a file made before markers existed)."""
    created = marker(path)
    if created.exists():
        return
    since = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    try:
        fd = os.open(created, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    with os.fdopen(fd, "w") as out:
        out.write(
            f"{since}\nshoal created {path.name} here. While this file exists, a missing "
            f"{path.name} is reported instead of replaced by an empty one; remove this file "
            "to start with an empty database.\n"
        )


class Writer:
    """The orchestrator's connection to the file, which can be opened again.

    DuckDB invalidates its whole database instance when a checkpoint fails (a full
    disk while it writes the file): every statement on every cursor then fails
    until the instance is closed and opened again. Cursors are taken from here,
    so after :meth:`reopen` they are all on the new instance.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self.con = open_writer(path)

    def cursor(self) -> duckdb.DuckDBPyConnection:
        with self._lock:
            return self.con.cursor()

    def reopen(self) -> None:
        """Close the instance (every cursor with it) and open the file again.

        Raises what :func:`open_writer` raises; then the next call tries again."""
        with self._lock:
            with contextlib.suppress(Exception):  # an invalidated instance may refuse to close
                self.con.close()
            self.con = open_writer(self.path)

    def close(self) -> None:
        with self._lock:
            self.con.close()


def open_reader(path: Path) -> duckdb.DuckDBPyConnection:
    import duckdb

    try:
        return duckdb.connect(str(path), read_only=True)
    except duckdb.Error as exc:
        raise unusable(path, exc) from None
